"""label.csv transcripts and text encoders: the CSV reader, the plugin kind, the hf encoder."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from cli_checks import assert_fails_cleanly
from typer.testing import CliRunner

from mmolre_cli.cli.app import app
from mmolre_cli.data.canonical import read_canonical
from mmolre_cli.data.transcripts import prepare_transcripts
from mmolre_cli.errors import DataError, UsageError

HEADER = "video_id,clip_id,text,label,label_T,label_A,label_V,annotation,mode\n"
ROWS = [
    "v1,1,the movie was great,2.0,2,2,2,Positive,train\n",
    "v1,2,the movie was bad,-1.5,-1,-1,-1,Negative,train\n",
    "v2,1,i liked it,1.0,1,1,1,Positive,valid\n",
    'v3,1,"the movie, i liked it",0.0,0,0,0,Neutral,test\n',
]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "movie", "was", "great", "bad", "i", "liked", "it"]


def label_csv(path: Path, rows=ROWS, header=HEADER) -> Path:
    path.write_text(header + "".join(rows), encoding="utf-8")
    return path


class WordCounter:
    """A stub encoder: one step per word, each holding the word's length."""

    def encode(self, texts: list[str], seq_len: int) -> tuple[np.ndarray, np.ndarray]:
        features = np.zeros((len(texts), seq_len, 1), dtype=np.float32)
        lengths = np.zeros(len(texts), dtype=np.int32)
        for i, text in enumerate(texts):
            words = text.split()[:seq_len]
            features[i, : len(words), 0] = [len(w) for w in words]
            lengths[i] = len(words)
        return features, lengths


@pytest.fixture
def runner():
    return CliRunner()


def test_prepare_transcripts_embeds_each_split(tmp_path):
    data = prepare_transcripts(label_csv(tmp_path / "label.csv"), WordCounter(), seq_len=3)
    train = data.splits["train"]
    assert (data.source, data.modalities, data.dataset) == ("csv", ["text"], tmp_path.name.lower())
    assert list(train.ids) == ["v1$_$1", "v1$_$2"] and list(data.splits["test"].raw_text) == ["the movie, i liked it"]
    np.testing.assert_array_equal(train.features["text"][0, :, 0], [3, 5, 3])
    np.testing.assert_array_equal(train.sentiment, [2.0, -1.5])
    assert np.isnan(train.emotion).all()


class Returning:
    """A stub encoder that returns what it is given, whatever the texts."""

    def __init__(self, make):
        self.make = make

    def encode(self, texts: list[str], seq_len: int):
        return self.make(len(texts), seq_len)


def padded_after_length(n, seq_len):
    features, lengths = np.ones((n, seq_len, 2)), np.full(n, 1)
    return features, lengths  # float64 ones everywhere: the padding is not zero


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda n, t: np.zeros((n, t, 2), np.float32), "encode returned ndarray, expected two numpy arrays"),
        (lambda n, t: (list(range(n)), np.ones(n)), "encode returned (list, ndarray), expected two numpy arrays"),
        (lambda n, t: (np.zeros((n + 1, t, 2)), np.ones(n + 1)), "for 2 texts at --seq-len 3, expected (2, 3, D)"),
        (lambda n, t: (np.zeros((n, t, 2), "U1"), np.ones(n, int)), "<U1 features and int64 lengths, expected floats"),
        (lambda n, t: (np.zeros((n, t, 2)), np.full(n, t + 1)), "encode returned lengths outside 1..3 (--seq-len)"),
        (padded_after_length, "encode returned features that are not zero after each text's length"),
    ],
)
def test_what_a_text_encoder_returns_is_checked_naming_it(tmp_path, make, fragment):
    path = label_csv(tmp_path / "label.csv")
    with pytest.raises(DataError, match=r"^plugin 'p': text_encoder 'x': ") as error:
        prepare_transcripts(path, Returning(make), seq_len=3, who="plugin 'p': text_encoder 'x'")
    assert fragment in str(error.value)


def test_a_text_encoders_arrays_are_stored_as_float32_and_int32(tmp_path):
    returned = Returning(lambda n, t: (np.zeros((n, t, 2)), np.full(n, t, dtype=np.int64)))
    train = prepare_transcripts(label_csv(tmp_path / "label.csv"), returned, seq_len=3).splits["train"]
    assert (train.features["text"].dtype, train.lengths["text"].dtype) == (np.float32, np.int32)


def test_the_example_transcripts_parse():
    example = Path(__file__).resolve().parents[1] / "examples" / "transcripts" / "label.csv"
    data = prepare_transcripts(example, WordCounter(), seq_len=12, dataset="demo")
    assert {name: split.size for name, split in data.splits.items()} == {"train": 4, "valid": 2, "test": 2}


BAD_CSV = {
    "missing column": (dict(header=HEADER.replace("mode", "split")), "header: missing column 'mode'"),
    "bad mode": (dict(rows=[*ROWS, "v4,1,x,0,0,0,0,Neutral,dev\n"]), "line 6, mode: 'dev' is not one of"),
    "label not a number": (dict(rows=[*ROWS, "v4,1,x,abc,0,0,0,Neutral,test\n"]), "line 6, label: 'abc'"),
    "label with an underscore": (
        dict(rows=[*ROWS, "v4,1,x,-1_5,0,0,0,Neutral,test\n"]),
        "line 6, label: '-1_5' is not a plain decimal number",
    ),
    "nan label": (dict(rows=[*ROWS, "v4,1,x,nan,0,0,0,Neutral,test\n"]), "line 6, label: 'nan' is not a plain"),
    "non-finite label": (dict(rows=[*ROWS, "v4,1,x,1e999,0,0,0,Neutral,test\n"]), "line 6, label: inf is not a finite"),
    "label out of range": (dict(rows=[*ROWS, "v4,1,x,3.5,0,0,0,Neutral,test\n"]), "line 6, label: 3.5 is not a finite"),
    "short row": (dict(rows=[*ROWS, "v4,1,x\n"]), "line 6: 3 fields, fewer than the header's 9"),
    "long row": (
        dict(rows=[*ROWS, "v4,1,x,0,0,0,0,Neutral,test,more\n"]),
        "line 6: 10 fields, more than the header's 9",
    ),
    "column twice": (dict(header=HEADER.replace("label_T", "label")), "header: column 'label' appears 2 times"),
    "missing split": (dict(rows=ROWS[:2] + ROWS[3:]), "mode: no rows for split 'valid'"),
    "clip twice": (
        dict(rows=[*ROWS, "v1,2,again,0,0,0,0,Neutral,test\n"]),
        "line 6: video_id 'v1', clip_id '2' is also on line 3 (each clip once)",
    ),
}


@pytest.fixture
def word_counter(monkeypatch):
    """``--text-encoder hf`` builds a WordCounter, whatever ``--model`` says."""
    monkeypatch.setattr("mmolre_cli.data.text_encoders.HFTextEncoder", lambda model: WordCounter())


@pytest.mark.parametrize("case", list(BAD_CSV))
def test_bad_csv_fails_in_one_line_naming_file_and_field(runner, tmp_path, word_counter, case):
    kwargs, fragment = BAD_CSV[case]
    path, out = label_csv(tmp_path / "label.csv", **kwargs), tmp_path / "out.h5"
    result = runner.invoke(app, ["prepare", "csv", str(path), "--model", "words", "--out", str(out)])
    assert_fails_cleanly(result, f"Error: {path}: ", fragment, out=out, code=1)


def test_text_encoders_are_a_plugin_kind(registry):
    assert registry.get("text_encoder", "hf").plugin == "builtin"


def test_prepare_csv_reports_encoder_and_model_problems_in_one_line(runner, tmp_path, monkeypatch):
    path, out = label_csv(tmp_path / "label.csv"), tmp_path / "out.h5"
    unknown = runner.invoke(app, ["prepare", "csv", str(path), "--text-encoder", "hff", "--out", str(out)])
    assert_fails_cleanly(unknown, "--text-encoder: unknown value 'hff'", out=out)
    no_model = runner.invoke(app, ["prepare", "csv", str(path), "--out", str(out)])
    assert_fails_cleanly(no_model, "--model: the hf text encoder needs a local model directory", out=out)
    missing = tmp_path / "no-such-model"
    result = runner.invoke(app, ["prepare", "csv", str(path), "--model", str(missing), "--out", str(out)])
    assert_fails_cleanly(result, str(missing), "model directory not found", out=out)
    monkeypatch.setitem(sys.modules, "transformers", None)  # as if the hf extra were not installed
    with pytest.raises(UsageError, match=r"transformers is not installed \(pip install 'mmolre-cli\[hf\]'\)"):
        from mmolre_cli.data.text_encoders import HFTextEncoder

        HFTextEncoder(tmp_path)


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    """A randomly initialised two-head, one-layer BERT and its tokenizer, saved to a directory."""
    transformers = pytest.importorskip("transformers")
    directory = tmp_path_factory.mktemp("tiny-bert")
    vocab = directory / "vocab.txt"
    vocab.write_text("\n".join(VOCAB) + "\n")
    transformers.BertTokenizerFast(vocab_file=str(vocab)).save_pretrained(directory)
    config = transformers.BertConfig(
        vocab_size=len(VOCAB), hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16
    )
    transformers.BertModel(config).save_pretrained(directory)
    return directory


def test_prepare_csv_with_the_hf_encoder_on_a_tiny_bert(runner, tmp_path, tiny_bert):
    path, out = label_csv(tmp_path / "label.csv"), tmp_path / "out.h5"
    args = ["prepare", "csv", str(path), "--model", str(tiny_bert), "--seq-len", "5", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    data = read_canonical(out)
    train, test = data.splits["train"], data.splits["test"]
    # [CLS] the movie was great [SEP] is 6 tokens, truncated to 5; "the movie, i liked it" has an [UNK] comma.
    np.testing.assert_array_equal(train.lengths["text"], [5, 5])
    np.testing.assert_array_equal(data.splits["valid"].lengths["text"], [5])
    assert train.features["text"].shape == (2, 5, 8) and np.abs(train.features["text"]).min() > 0
    assert test.features["text"].shape == (1, 5, 8)
    assert data.options["text_encoder"] == "hf" and data.options["model"] == str(tiny_bert)


def test_hf_encoder_pads_with_zeros_after_the_tokens(tiny_bert):
    from mmolre_cli.data.text_encoders import HFTextEncoder

    features, lengths = HFTextEncoder(tiny_bert, batch_size=1).encode(["great", "i liked it"], seq_len=8)
    np.testing.assert_array_equal(lengths, [3, 5])
    assert not features[0, 3:].any() and np.abs(features[0, :3]).min() > 0
    assert features.dtype == np.float32 and lengths.dtype == np.int32


@pytest.mark.parametrize(
    "seq_len, message",
    [
        (600, "--seq-len 600: the text encoder takes at most 512 tokens"),
        (2, "--seq-len 2: the text encoder needs at least 3 tokens (2 special tokens and one of text)"),
        (1, "--seq-len 1: the text encoder needs at least 3 tokens"),
    ],
)
def test_hf_encoder_refuses_a_seq_len_it_cannot_take(runner, tmp_path, tiny_bert, seq_len, message):
    path, out = label_csv(tmp_path / "label.csv"), tmp_path / "out.h5"
    args = ["prepare", "csv", str(path), "--model", str(tiny_bert), "--seq-len", str(seq_len), "--out", str(out)]
    assert_fails_cleanly(runner.invoke(app, args), message, out=out, code=2)


def test_a_directory_without_a_model_is_a_one_line_error(runner, tmp_path, tiny_bert):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "out.h5"
    args = ["prepare", "csv", str(label_csv(tmp_path / "label.csv")), "--model", str(empty), "--out", str(out)]
    assert_fails_cleanly(runner.invoke(app, args), str(empty), "cannot load a model and tokenizer", out=out)
