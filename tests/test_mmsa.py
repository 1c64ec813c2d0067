"""MMSA pickles: the restricted unpickler, prepare/export round trip, cleaning, bad input, data info."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from cli_checks import assert_fails_cleanly, snapshot
from typer.testing import CliRunner

from mmolre_cli.cli.app import app
from mmolre_cli.config import build_config
from mmolre_cli.data import mmsa
from mmolre_cli.data.canonical import MOSEI_EMOTIONS, SPLITS, read_canonical, write_canonical
from mmolre_cli.data.synthetic import generate_synthetic
from mmolre_cli.errors import DataError
from mmolre_cli.training.trainer import train_run

try:  # how NumPy pickles contiguous arrays under protocol 5
    from numpy._core.numeric import _frombuffer
except ImportError:  # NumPy < 2
    from numpy.core.numeric import _frombuffer

SIZES = {"train": 5, "valid": 3, "test": 4}


@pytest.fixture
def runner():
    return CliRunner()


def mmsa_dict(aligned: bool = True, seed: int = 0) -> dict:
    """A small MMSA-layout dict with float64 arrays, as the toolkit's files have."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, n in SIZES.items():
        lengths = rng.integers(1, 7, size=n)
        mask = (np.arange(6)[None, :] < lengths[:, None]).astype(np.float64)
        steps = {"audio": 6 if aligned else 9, "vision": 6 if aligned else 8}
        part = {
            "id": np.array([f"{name}{i}$_${i}" for i in range(n)], dtype=object),
            "raw_text": np.array([f"clip {i}" for i in range(n)], dtype=object),
            "text": rng.standard_normal((n, 6, 4)) * mask[..., None],
            "text_bert": np.stack([mask * 7, mask, np.zeros_like(mask)], axis=1),
            "regression_labels": rng.uniform(-3, 3, n),
            "classification_labels": np.zeros(n),
            "annotations": np.array(["Neutral"] * n, dtype=object),
        }
        for m, dim in (("audio", 3), ("vision", 2)):
            m_lengths = lengths if aligned else rng.integers(1, steps[m] + 1, size=n)
            valid = np.arange(steps[m])[None, :] < m_lengths[:, None]
            part[m] = rng.standard_normal((n, steps[m], dim)) * valid[..., None]
            if not aligned:
                part[f"{m}_lengths"] = list(m_lengths)  # MMSA stores plain lists
        out[name] = part
    return out


def dump(obj: object, path: Path, protocol: int = 4) -> Path:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)
    return path


def test_round_trip_synthetic_export_prepare_gives_identical_data(runner, tmp_path):
    source = write_canonical(generate_synthetic("mosei", scale=0.002, seed=5, seq_len=9), tmp_path / "syn.h5")
    pkl, back = tmp_path / "aligned_50.pkl", tmp_path / "back.h5"
    assert runner.invoke(app, ["export", "mmsa", str(source), "--out", str(pkl)]).exit_code == 0
    result = runner.invoke(app, ["prepare", "mmsa", str(pkl), "--out", str(back)])
    assert result.exit_code == 0, result.output
    a, b = read_canonical(source), read_canonical(back)
    assert (b.modalities, b.emotions, b.options["layout"]) == (a.modalities, a.emotions, "aligned")
    for name in SPLITS:
        x, y = a.splits[name], b.splits[name]
        np.testing.assert_array_equal(x.ids, y.ids)
        np.testing.assert_array_equal(x.sentiment, y.sentiment)
        np.testing.assert_array_equal(x.emotion, y.emotion)
        assert y.raw_text is None
        for m in a.modalities:
            assert y.features[m].dtype == np.float32
            np.testing.assert_array_equal(x.features[m], y.features[m])
            np.testing.assert_array_equal(x.lengths[m], y.lengths[m])


def test_exported_pickle_has_the_mmsa_layout(tmp_path):
    data = generate_synthetic("mosi", scale=0.01, seed=1, seq_len=7)
    obj = pickle.loads(mmsa.write_mmsa(data, tmp_path / "x.pkl", source="syn.h5").read_bytes())
    part, split = obj["train"], data.splits["train"]
    assert {"id", "raw_text", "text", "text_bert", "audio", "vision", "regression_labels"} <= set(part)
    assert {"classification_labels", "annotations"} <= set(part) and "audio_lengths" not in part
    ids, mask, segments = part["text_bert"].transpose(1, 0, 2)
    np.testing.assert_array_equal(mask.sum(axis=1), split.lengths["text"])
    assert (ids[:, 0] == 101).all() and (ids[np.arange(len(ids)), split.lengths["text"] - 1] == 102).all()
    assert (ids[mask == 0] == 0).all() and not segments.any()


def test_unaligned_layout_round_trips_with_per_modality_lengths(tmp_path):
    data = mmsa.read_mmsa(dump(mmsa_dict(aligned=False), tmp_path / "unaligned_50.pkl"))
    assert data.options["layout"] == "unaligned"
    source = mmsa_dict(aligned=False)
    for name in SPLITS:
        split = data.splits[name]
        np.testing.assert_array_equal(split.lengths["audio"], source[name]["audio_lengths"])
        np.testing.assert_array_equal(split.lengths["text"], source[name]["text_bert"][:, 1].sum(axis=1))
        np.testing.assert_array_equal(split.features["vision"], source[name]["vision"].astype(np.float32))
    again = mmsa.read_mmsa(mmsa.write_mmsa(data, tmp_path / "again.pkl", source="x"))
    for name in SPLITS:
        for m in data.modalities:
            np.testing.assert_array_equal(again.splits[name].features[m], data.splits[name].features[m])
            np.testing.assert_array_equal(again.splits[name].lengths[m], data.splits[name].lengths[m])
    assert again.options["layout"] == "unaligned"


def test_without_text_bert_text_lengths_come_from_the_text_frames_and_are_reported(runner, tmp_path):
    obj = mmsa_dict()
    expected = {name: part.pop("text_bert")[:, 1].sum(axis=1).astype(int) for name, part in obj.items()}
    text = obj["train"]["text"]
    longest = int(np.argmax(expected["train"]))
    text[longest, 1] = 0  # an all-zero frame inside the clip is a frame, not the end of it
    out = tmp_path / "out.h5"
    result = runner.invoke(app, ["prepare", "mmsa", str(dump(obj, tmp_path / "glove.pkl")), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "text lengths from the non-zero frames of text" in result.stdout
    data = read_canonical(out)
    assert data.options["text_lengths"] == dict.fromkeys(SPLITS, "text")
    for name in SPLITS:
        for m in ("text", "audio", "vision"):  # aligned: audio and vision take the text lengths
            np.testing.assert_array_equal(data.splits[name].lengths[m], expected[name])
    info = runner.invoke(app, ["data", "info", str(out)])
    assert "text lengths from the non-zero frames of text" in info.stdout
    with_bert = mmsa.read_mmsa(dump(mmsa_dict(), tmp_path / "bert.pkl"))
    assert mmsa.describe_text_lengths(with_bert.options["text_lengths"]) == (
        "text lengths from the text_bert attention mask"
    )


def test_all_zero_text_takes_audio_lengths_when_audio_shares_its_steps(tmp_path):
    obj = mmsa_dict()
    for part in obj.values():
        del part["text_bert"]
        part["text"][:] = 0
    with pytest.raises(DataError, match="train/text: all zero, and there is neither text_bert nor audio_lengths"):
        mmsa.read_mmsa(dump(obj, tmp_path / "a.pkl"))
    lengths = {name: np.arange(len(part["id"])) % 7 for name, part in obj.items()}
    for name, part in obj.items():
        part["audio_lengths"] = lengths[name]
    obj["test"]["text"][0, 0, 0] = 1.0  # this split has text to count
    data = mmsa.read_mmsa(dump(obj, tmp_path / "b.pkl"))
    assert data.options["text_lengths"] == {"train": "audio_lengths", "valid": "audio_lengths", "test": "text"}
    np.testing.assert_array_equal(data.splits["train"].lengths["text"], lengths["train"])
    assert data.splits["test"].lengths["text"][0] == 1
    assert mmsa.describe_text_lengths(data.options["text_lengths"]) == (
        "text lengths from train: audio_lengths; valid: audio_lengths; test: the non-zero frames of text"
    )


def test_training_without_text_bert_matches_training_with_it(runner, tmp_path, registry):
    source = write_canonical(generate_synthetic("mosei", scale=0.002, seed=3, seq_len=6), tmp_path / "syn.h5")
    with_bert = tmp_path / "with_bert.pkl"
    assert runner.invoke(app, ["export", "mmsa", str(source), "--out", str(with_bert)]).exit_code == 0
    obj = pickle.loads(with_bert.read_bytes())
    for name in SPLITS:
        del obj[name]["text_bert"]
    without = dump(obj, tmp_path / "without_bert.pkl")
    runs = []
    for pkl in (without, with_bert):
        h5 = tmp_path / f"{pkl.stem}.h5"
        assert runner.invoke(app, ["prepare", "mmsa", str(pkl), "--out", str(h5)]).exit_code == 0
        config = build_config({"data": str(h5), "model": {"d_model": 8, "blocks": 1}, "train": {"epochs": 1}})
        runs.append(train_run(config, tmp_path / pkl.stem, registry))
    assert read_canonical(tmp_path / "without_bert.h5").options["text_lengths"]["train"] == "text"
    np.testing.assert_equal(runs[0].metrics, runs[1].metrics)  # NaN (an undefined metric) equals NaN here
    assert np.isfinite(runs[0].metrics["test"]["MAE"])


def test_non_finite_values_and_padding_are_zeroed_and_counted(runner, tmp_path):
    obj = mmsa_dict()
    audio = obj["train"]["audio"]
    audio[0, 0, :3] = [-np.inf, np.inf, np.nan]
    lengths = obj["train"]["text_bert"][:, 1].sum(axis=1).astype(int)
    short = int(np.argmin(lengths))
    obj["train"]["vision"][short, 5, 0] = 2.5  # after the clip's text length (< 6): padding in an aligned file
    out = tmp_path / "out.h5"
    result = runner.invoke(app, ["prepare", "mmsa", str(dump(obj, tmp_path / "a.pkl")), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "replaced 3 non-finite feature values by 0 (audio 3)" in result.stdout
    assert "replaced 1 non-zero padding feature values by 0 (vision 1)" in result.stdout
    data = read_canonical(out)
    assert (data.splits["train"].features["audio"][0, 0, :3] == 0).all()
    assert data.options["cleaned"]["nonfinite"] == {"text": 0, "audio": 3, "vision": 0}
    assert data.dataset == "a" and data.emotions == list(MOSEI_EMOTIONS)
    assert np.isnan(data.splits["test"].emotion).all()


def test_a_published_file_is_recognised_by_its_sha256(runner, tmp_path, monkeypatch):
    path = dump(mmsa_dict(), tmp_path / "aligned_50.pkl")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    monkeypatch.setitem(mmsa.PUBLISHED, digest, ("mosei", "aligned_50"))
    result = runner.invoke(app, ["prepare", "mmsa", str(path), "--out", str(tmp_path / "o.h5")])
    assert result.exit_code == 0, result.output
    assert "recognised the published MMSA file MOSEI aligned_50" in result.stdout
    data = read_canonical(tmp_path / "o.h5")
    assert (data.dataset, data.options["sha256"]) == ("mosei", digest)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_the_restricted_unpickler_admits_numpy_and_plain_containers(tmp_path, protocol):
    obj = {
        "f": np.arange(6, dtype=np.float64).reshape(2, 3),
        "o": np.array(["a", "b"], dtype=object),
        "u": np.array(["xy"]),
        "scalar": np.float32(1.5),
        "dtype": np.dtype("int16"),
        "plain": [1, 2.0, "s", b"b", (None, True), {3}, frozenset({4})],
        "ragged": np.array([np.zeros(2), np.arange(3.0)], dtype=object),
        "arrays": [np.ones((2, 1)), np.array(["c"], dtype=object)],
    }
    loaded, digest = mmsa.load_pickle(dump(obj, tmp_path / "p.pkl", protocol))
    assert digest == hashlib.sha256((tmp_path / "p.pkl").read_bytes()).hexdigest()
    np.testing.assert_array_equal(loaded["f"], obj["f"])
    for got, expected in zip([*loaded["ragged"], *loaded["arrays"]], [*obj["ragged"], *obj["arrays"]], strict=True):
        assert type(got) is np.ndarray  # nested arrays come out as arrays, not as what built them
        np.testing.assert_array_equal(got, expected)
    assert list(loaded["o"]) == ["a", "b"] and loaded["u"][0] == "xy"
    assert loaded["scalar"] == np.float32(1.5) and loaded["dtype"] == np.dtype("int16")
    assert loaded["plain"] == obj["plain"]


class _CreatesFile:
    """Unpickling this would create ``path`` (through io.open)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


class _CallsNumpy:
    """A NumPy global that is not an array constructor: numpy.load on a path."""

    def __reduce__(self):
        return (np.load, ("/nonexistent",))


def test_a_pickle_naming_another_global_is_refused_before_it_runs(runner, tmp_path):
    created = tmp_path / "pwned"
    payload = mmsa_dict()
    payload["train"]["raw_text"] = _CreatesFile(created)
    path = dump(payload, tmp_path / "evil.pkl")
    out = tmp_path / "out.h5"
    result = runner.invoke(app, ["prepare", "mmsa", str(path), "--out", str(out)])
    assert_fails_cleanly(result, str(path), "io.open", "refused", out=out)
    assert not created.exists()
    pickle.loads(path.read_bytes())  # the payload is live: a plain unpickler creates the file
    assert created.exists()
    with pytest.raises(DataError, match="numpy.load"):
        mmsa.load_pickle(dump(_CallsNumpy(), tmp_path / "np.pkl"))


def test_an_array_built_by_ndarray_new_is_refused_before_allocating(tmp_path):
    # NEWOBJ calls numpy.ndarray.__new__(numpy.ndarray, (2**40,), object): 8 TiB of pointers, filled.
    args = pickle.dumps(((2**40,), np.dtype(object)), protocol=2)[2:-1]
    path = tmp_path / "newobj.pkl"
    path.write_bytes(b"\x80\x02cnumpy\nndarray\n" + args + pickle.NEWOBJ + pickle.STOP)
    with pytest.raises(DataError, match=r"calls numpy.ndarray\(...\) directly.*before allocating"):
        mmsa.load_pickle(path)


def _bad(mutate):
    def make(tmp_path: Path) -> Path:
        obj = mmsa_dict()
        mutate(obj)
        return dump(obj, tmp_path / "bad.pkl")

    return make


def _write_bytes(data: bytes):
    def make(tmp_path: Path) -> Path:
        path = tmp_path / "bad.pkl"
        path.write_bytes(data)
        return path

    return make


def _truncated(tmp_path: Path) -> Path:
    full = pickle.dumps(mmsa_dict(), protocol=4)
    return _write_bytes(full[: len(full) // 2])(tmp_path)


def _set(split: str, key: str, value):
    def mutate(obj):
        obj[split][key] = value(obj) if callable(value) else value

    return mutate


def _set_id(split: str, index: int, value: str):
    def mutate(obj):
        obj[split]["id"][index] = value

    return mutate


class _StridedBomb:
    """An (n, 10**7, 10**7) float32 array, 400 TB per sample, made of 4 bytes by zero strides (numpy.ndarray
    called directly)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __reduce__(self):
        return (np.ndarray, ((self.n, 10**7, 10**7), np.dtype("f4"), b"\0" * 4, 0, (0, 0, 0)))


class _SharedBuffer:
    """A 64 KiB array over a buffer that the pickle stores once and every such array shares (NumPy's own
    ``_frombuffer``, as protocol 5 writes arrays)."""

    BUFFER = b"\0" * (1 << 16)

    def __reduce__(self):
        return (_frombuffer, (self.BUFFER, np.dtype("f4"), (1 << 14,), "C"))


class _Huge:
    """An uninitialised array of 4 EiB, more than any machine can allocate, reconstructed at full shape."""

    def __reduce__(self):
        return (mmsa._multiarray._reconstruct, (np.ndarray, (2**62,), b"b"))


class _ObjectArray:
    """An object array of 2**40 elements (8 TiB of pointers) from ``numpy.ndarray(shape, object)``, which
    allocates and fills before any check."""

    def __reduce__(self):
        return (np.ndarray, ((2**40,), np.dtype(object)))


class _ShortObjectState:
    """An object array whose state claims ``shape`` but lists 2 items: NumPy reads past the list (a crash)."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape

    def __reduce__(self):
        state = (1, self.shape, np.dtype(object), False, ["a", "b"])
        return (mmsa._multiarray._reconstruct, (np.ndarray, (0,), b"b"), state)


def _strided_bomb(obj):
    for part in obj.values():
        n = len(part["id"])
        part["vision"], part["vision_lengths"] = _StridedBomb(n), np.full(n, 3)


def _no_steps(obj):
    for part in obj.values():
        part["audio"], part["audio_lengths"] = part["audio"][:, :0], np.zeros(len(part["id"]))


def _empty_split(obj):
    for key, value in obj["valid"].items():
        obj["valid"][key] = value[:0]


BAD_INPUT = {
    "missing file": (lambda tmp_path: tmp_path / "absent.pkl", ["file not found"]),
    "not a pickle": (_write_bytes(b"video_id,clip_id\n"), ["not a pickle"]),
    "truncated": (_truncated, ["not a pickle, or truncated"]),
    "not a dict": (_write_bytes(pickle.dumps([1, 2])), ["/: expected a dict"]),
    "missing split": (_bad(lambda obj: obj.pop("valid")), ["valid: missing split"]),
    "missing key": (_bad(lambda obj: obj["test"].pop("audio")), ["test/audio: missing key"]),
    "first dims disagree": (
        _bad(_set("train", "audio", lambda obj: obj["train"]["audio"][:-1])),
        ["train/audio: 4 samples, but id has 5"],
    ),
    "dims differ between splits": (
        _bad(_set("valid", "vision", lambda obj: np.zeros((3, 6, 5)))),
        ["valid/vision: feature dim 5 differs from train's 2"],
    ),
    "non-finite label": (
        _bad(_set("test", "regression_labels", np.array([0.0, np.nan, 1.0, 2.0]))),
        ["test/regression_labels: non-finite value nan at sample 1"],
    ),
    "sentiment out of range": (
        _bad(_set("train", "regression_labels", np.array([0.0, 1.0, 3.5, 2.0, 0.0]))),
        ["train/regression_labels: value 3.5 outside [-3, 3] at sample 2"],
    ),
    "too few emotion columns": (
        _bad(
            lambda obj: (
                obj.update(emotions=list(MOSEI_EMOTIONS)),
                [obj[s].update(emotion_labels=np.zeros((n, 5))) for s, n in SIZES.items()],
            )
        ),
        ["train/emotion_labels: 5 columns, but emotions lists 6"],
    ),
    "bad attention mask": (
        _bad(_set("train", "text_bert", lambda obj: obj["train"]["text_bert"] * 2)),
        ["train/text_bert: the attention mask"],
    ),
    "unaligned steps without lengths": (
        _bad(_set("train", "audio", np.zeros((5, 9, 3)))),
        ["train/audio: 9 steps, but text has 6 and there is no audio_lengths"],
    ),
    "array with zero strides": (_bad(_strided_bomb), ["calls numpy.ndarray(...) directly", "before allocating"]),
    "arrays sharing one buffer": (
        _bad(_set("train", "audio", [_SharedBuffer() for _ in range(100)])),
        ["train/audio[1]: refused a float32 (16384,) array", "but the file has"],
    ),
    "array reconstructed at full size": (
        _bad(_set("test", "text", _Huge())),
        ["reconstructs a non-empty array of shape (4611686018427387904,)", "before allocating"],
    ),
    "object array called into being": (
        _bad(_set("test", "raw_text", _ObjectArray())),
        ["calls numpy.ndarray(...) directly", "before allocating"],
    ),
    "object array state shorter than its shape": (
        _bad(_set("train", "raw_text", _ShortObjectState((5,)))),
        ["an object array of shape (5,) whose state holds 2 items", "before allocating"],
    ),
    "object array state of 2**40 items": (
        _bad(_set("train", "raw_text", _ShortObjectState((2**40,)))),
        ["an object array of shape (1099511627776,) whose state holds 2 items"],
    ),
    "zero time steps": (_bad(_no_steps), ["train/audio: zero time steps"]),
    "zero feature dimensions": (
        _bad(_set("train", "vision", np.zeros((5, 6, 0)))),
        ["train/vision: zero feature dimensions"],
    ),
    "empty split": (_bad(_empty_split), ["valid: empty split (no samples)"]),
    "NUL in an id": (_bad(_set_id("train", 0, "a\x00b$_$1")), ["train/id: sample 0 holds a NUL character"]),
    "lone surrogate in an id": (
        _bad(_set_id("test", 2, "a\udcffb$_$1")),
        ["test/id: sample 2 is not valid UTF-8 text"],
    ),
    "NUL in raw_text": (
        _bad(_set("valid", "raw_text", np.array(["a", "b\x00c", "d"], dtype=object))),
        ["valid/raw_text: sample 1 holds a NUL character"],
    ),
    "ragged list of features": (
        _bad(_set("train", "audio", [np.zeros((i + 1, 3)) for i in range(5)])),
        ["train/audio: expected a numeric array with 3 dimensions, got a list of rows of different shapes"],
    ),
    "ragged object array of features": (
        _bad(_set("train", "audio", lambda obj: np.array([np.zeros((i + 1, 3)) for i in range(5)], dtype=object))),
        ["train/audio: expected a numeric array with 3 dimensions, got object (5,)"],
    ),
    "list of arrays as ids": (
        _bad(_set("train", "id", [np.zeros((2, 5)), np.zeros((2, 6))])),
        ["train/id: expected strings (N,), got non-string objects"],
    ),
    "same id twice in a split": (
        _bad(_set_id("train", 3, "train1$_$1")),
        ["train/id: 'train1$_$1' appears twice (samples 1 and 3)"],
    ),
    "id in two splits": (
        _bad(_set("test", "id", lambda obj: np.concatenate([obj["valid"]["id"][:1], obj["test"]["id"][1:]]))),
        ["test/id: 'valid0$_$0' is also in valid"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_fails_in_one_line_naming_file_and_field(runner, tmp_path, case):
    make, fragments = BAD_INPUT[case]
    path = make(tmp_path)
    out = tmp_path / "new" / "out.h5"
    result = runner.invoke(app, ["prepare", "mmsa", str(path), "--out", str(out)])
    assert_fails_cleanly(result, str(path), *fragments, out=out)
    assert not out.parent.exists()


def test_running_out_of_memory_while_converting_is_one_line(runner, tmp_path, monkeypatch):
    def fail(*args):
        raise MemoryError("Unable to allocate 8.00 GiB for an array")

    monkeypatch.setattr(mmsa, "_clean", fail)
    path, out = dump(mmsa_dict(), tmp_path / "a.pkl"), tmp_path / "out.h5"
    result = runner.invoke(app, ["prepare", "mmsa", str(path), "--out", str(out)])
    assert_fails_cleanly(result, f"{path}: train: not enough memory to convert it (Unable to allocate", out=out)


def test_an_existing_output_is_refused_without_force(runner, tmp_path):
    path = dump(mmsa_dict(), tmp_path / "a.pkl")
    out = tmp_path / "out.h5"
    out.write_text("keep me")
    result = runner.invoke(app, ["prepare", "mmsa", str(path), "--out", str(out)])
    assert_fails_cleanly(result, str(out), "already exists")
    assert out.read_text() == "keep me"
    assert runner.invoke(app, ["prepare", "mmsa", str(path), "--out", str(out), "--force"]).exit_code == 0
    assert read_canonical(out).source == "mmsa"


def test_export_refuses_data_it_cannot_express(runner, tmp_path, tiny_mosi):
    out = tmp_path / "x.pkl"
    existing = tmp_path / "existing.pkl"
    existing.write_bytes(b"old")
    result = runner.invoke(app, ["export", "mmsa", str(tiny_mosi), "--out", str(existing)])
    assert_fails_cleanly(result, str(existing), "already exists")
    data = generate_synthetic("mosi", scale=0.01, seed=2, seq_len=5)
    data.modalities = ["text", "audio"]
    for split in data.splits.values():
        del split.features["vision"], split.lengths["vision"]
    text_audio = write_canonical(data, tmp_path / "ta.h5")
    result = runner.invoke(app, ["export", "mmsa", str(text_audio), "--out", str(out)])
    assert_fails_cleanly(result, str(text_audio), "/modalities", "vision is missing", out=out)
    data = generate_synthetic("mosi", scale=0.01, seed=2, seq_len=5)
    data.splits["test"].sentiment[2] = np.nan
    unknown = write_canonical(data, tmp_path / "nan.h5")
    result = runner.invoke(app, ["export", "mmsa", str(unknown), "--out", str(out)])
    assert_fails_cleanly(result, str(unknown), "test/labels/sentiment: unknown (NaN) at sample 2", out=out)


@pytest.mark.parametrize(
    "command,source,out",
    [("export", "t3.h5", "t3.h5"), ("export", "t3.h5", "link.h5"), ("export", "t3.h5", "x/../t3.h5"),
     ("prepare", "a.pkl", "a.pkl")],
)  # fmt: skip
def test_an_output_that_is_the_input_is_refused_before_writing(runner, tmp_path, tiny_mosi, command, source, out):
    (tmp_path / "t3.h5").write_bytes(tiny_mosi.read_bytes())
    (tmp_path / "link.h5").symlink_to(tmp_path / "t3.h5")
    dump(mmsa_dict(), tmp_path / "a.pkl")
    before = snapshot(tmp_path)
    result = runner.invoke(app, [command, "mmsa", str(tmp_path / source), "--out", str(tmp_path / out), "--force"])
    assert_fails_cleanly(result, f"--out {tmp_path / out}: is the input file", code=2)
    assert snapshot(tmp_path) == before


def test_data_info_prints_a_table_and_json(runner, tmp_path):
    out = tmp_path / "o.h5"
    obj = mmsa_dict()
    obj["valid"]["audio"][1, 0, 0] = -np.inf
    assert runner.invoke(app, ["prepare", "mmsa", str(dump(obj, tmp_path / "a.pkl")), "--out", str(out)]).exit_code == 0
    table = runner.invoke(app, ["data", "info", str(out)])
    assert table.exit_code == 0, table.output
    assert "samples" in table.stdout and "sentiment max" in table.stdout and "happy prevalence" in table.stdout
    assert "1 non-finite (audio 1)" in table.stdout
    info = json.loads(runner.invoke(app, ["data", "info", str(out), "--json"]).stdout)
    assert info["splits"]["train"]["size"] == 5 and info["feature_dims"] == {"text": 4, "audio": 3, "vision": 2}
    assert info["options"]["cleaned"]["nonfinite"]["audio"] == 1
    missing = runner.invoke(app, ["data", "info", str(tmp_path / "none.h5")])
    assert_fails_cleanly(missing, "none.h5", "file not found")


def test_no_temporary_file_is_left_when_writing_fails(tmp_path, monkeypatch):
    data = generate_synthetic("mosi", scale=0.01, seed=2, seq_len=5)

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(mmsa.pickle, "dump", fail)
    with pytest.raises(DataError, match="No space left"):
        mmsa.write_mmsa(data, tmp_path / "x.pkl", source="s")
    assert os.listdir(tmp_path) == []
