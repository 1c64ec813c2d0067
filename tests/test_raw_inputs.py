"""Raw text and raw audio through pretrained Hugging Face encoders: ``prepare csv --audio-dir``, training on
the frozen features, fine-tuning hf_text and hf_audio inside the model, eval from a fresh process, profile.

The models are tiny and random, built from a config and saved with ``save_pretrained``: nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from cli_checks import assert_fails_cleanly

from mmolre_cli.config import PretrainedConfig
from mmolre_cli.data.canonical import FORMAT_RAW_AUDIO, read_canonical

transformers = pytest.importorskip("transformers")
soundfile = pytest.importorskip("soundfile")

ROOT = Path(__file__).resolve().parents[1]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "movie", "was", "great", "bad", "i", "liked", "it"]
RATE = 16000
#: (video, clip, text, label, mode, seconds, file rate, channels)
CLIPS = [
    ("v1", 1, "the movie was great", 2.0, "train", 0.6, RATE, 1),
    ("v1", 2, "the movie was bad", -1.5, "train", 0.5, 22050, 2),
    ("v2", 1, "i liked it", 1.0, "train", 0.7, RATE, 1),
    ("v2", 2, "it was bad", -2.0, "train", 0.4, RATE, 1),
    ("v3", 1, "great movie", 1.5, "train", 0.5, RATE, 1),
    ("v3", 2, "bad bad movie", -0.5, "train", 0.6, RATE, 1),
    ("v4", 1, "i liked the movie", 2.5, "valid", 0.5, RATE, 1),
    ("v4", 2, "the movie was bad", -1.0, "valid", 0.4, RATE, 1),
    ("v5", 1, "it was great", 0.5, "test", 0.6, RATE, 1),
    ("v5", 2, "i liked it", -0.5, "test", 0.5, RATE, 1),
]


def write_clip(path: Path, seconds: float, rate: int, channels: int, seed: int) -> None:
    """A tone in noise, ``seconds`` long, as 16-bit PCM WAV."""
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(seed)
    wave = 0.3 * np.sin(2 * np.pi * (200 + 50 * seed) * t) + 0.05 * rng.standard_normal(len(t))
    frames = np.stack([wave * (1 - 0.5 * c) for c in range(channels)], axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, frames, rate, subtype="PCM_16")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    """label.csv, one WAV per clip under Raw/<video>/<clip>.wav, a tiny RoBERTa and a tiny Data2VecAudio."""
    root = tmp_path_factory.mktemp("raw")
    rows = ["video_id,clip_id,text,label,label_T,label_A,label_V,annotation,mode"]
    for i, (video, clip, text, label, mode, seconds, rate, channels) in enumerate(CLIPS):
        rows.append(f"{video},{clip},{text},{label},0,0,0,x,{mode}")
        write_clip(root / "Raw" / video / f"{clip}.wav", seconds, rate, channels, seed=i)
    (root / "label.csv").write_text("\n".join(rows) + "\n")

    text = root / "tiny-roberta"
    text.mkdir()
    (text / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    transformers.BertTokenizerFast(vocab_file=str(text / "vocab.txt"), model_max_length=24).save_pretrained(text)
    torch.manual_seed(0)
    roberta = transformers.RobertaConfig(
        vocab_size=len(VOCAB), hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=32, pad_token_id=0,
    )  # fmt: skip
    transformers.RobertaModel(roberta).save_pretrained(text)

    audio = root / "tiny-data2vec"
    data2vec = transformers.Data2VecAudioConfig(
        hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        conv_dim=(16, 16), conv_stride=(10, 8), conv_kernel=(10, 8), num_conv_pos_embeddings=4,
        num_conv_pos_embedding_groups=2, conv_pos_kernel_size=5, mask_time_prob=0.0, layerdrop=0.0,
    )  # fmt: skip
    transformers.Data2VecAudioModel(data2vec).save_pretrained(audio)
    transformers.Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=RATE, padding_value=0.0, do_normalize=True, return_attention_mask=True
    ).save_pretrained(audio)
    return {"root": root, "csv": root / "label.csv", "audio_dir": root / "Raw", "text": text, "audio": audio}


def prepare_args(corpus, out: Path, *extra: str) -> list[str]:
    return [
        "prepare", "csv", str(corpus["csv"]), "--model", str(corpus["text"]), "--seq-len", "8",
        "--audio-dir", str(corpus["audio_dir"]), "--audio-model", str(corpus["audio"]), "--audio-len", "6",
        "--out", str(out), *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def prepared(corpus) -> Path:
    from cli_checks import run_main

    out = corpus["root"] / "mosi_raw.h5"
    result = run_main(prepare_args(corpus, out))
    assert result.exit_code == 0, result.output
    return out


def test_prepare_csv_makes_text_audio_and_waveforms(prepared):
    data = read_canonical(prepared)
    train = data.splits["train"]
    assert data.modalities == ["text", "audio"] and data.format == FORMAT_RAW_AUDIO and data.raw_audio_rate == RATE
    assert train.features["audio"].shape == (6, 6, 16)
    # 0.4 s or more at 200 frames per second: always more frames than the 6 steps they are averaged into.
    np.testing.assert_array_equal(train.lengths["audio"], [6] * 6)
    # The 22050 Hz stereo clip is mixed to mono and resampled to the model's 16 kHz: 0.5 s is 8000 samples.
    assert [len(w) for w in train.raw_audio] == [int(s * RATE) for *_, s, _, _ in CLIPS[:6]]
    stereo, rate = soundfile.read(prepared.parent / "Raw" / "v1" / "2.wav", dtype="float32")
    from scipy.signal import resample_poly

    np.testing.assert_allclose(train.raw_audio[1], resample_poly(stereo.mean(1), 320, 441), atol=1e-6)
    assert data.options["audio"] == {
        "dir": str(prepared.parent / "Raw"), "sampling_rate": RATE, "align": "pool", "audio_len": 6,
        "max_seconds": 60.0, "waveforms": True, "encoder": "hf", "model": str(prepared.parent / "tiny-data2vec"),
    }  # fmt: skip


def test_audio_aligned_to_text_has_one_step_per_token(corpus, tmp_path):
    from cli_checks import run_main

    out = tmp_path / "aligned.h5"
    result = run_main(prepare_args(corpus, out, "--audio-align", "text", "--no-waveforms"))
    assert result.exit_code == 0, result.output
    data = read_canonical(out)
    for split in data.splits.values():
        np.testing.assert_array_equal(split.lengths["audio"], split.lengths["text"])
        assert split.features["audio"].shape[1] == 8 and split.raw_audio is None
    assert data.options["audio"]["align"] == "text" and data.format == "mmolre-canonical/1"


def broken(kind: str, corpus, tmp_path: Path) -> tuple[list[str], str]:
    """A copy of the audio folder with one problem, the arguments that meet it, and what the error names."""
    import shutil

    audio_dir = tmp_path / "Raw"

    shutil.copytree(corpus["audio_dir"], audio_dir)
    clip = audio_dir / "v2" / "1.wav"
    model = str(corpus["audio"])
    extra: list[str] = []
    if kind == "corrupt":
        clip.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" + bytes(64))
        expected = ["clip v2$_$1", "1.wav", "unreadable audio file"]
    elif kind == "missing":
        clip.unlink()
        expected = ["clip v2$_$1: no audio file", "1.wav or .flac"]
    elif kind == "empty":
        soundfile.write(clip, np.zeros((0, 1)), RATE)
        expected = ["clip v2$_$1", "empty audio"]
    elif kind == "rate":
        soundfile.write(clip, np.zeros((4000, 1)), 4000)
        expected = ["clip v2$_$1", "sampling rate 4000 Hz is below 8000 Hz"]
    elif kind == "long":
        extra = ["--max-seconds", "0.65"]
        expected = ["clip v2$_$1", "0.7 s long, longer than --max-seconds 0.65"]
    else:  # a model directory without a feature extractor
        model = str(tmp_path / "no-extractor")
        shutil.copytree(corpus["audio"], model)
        os.remove(Path(model) / "preprocessor_config.json")
        expected = [model, "no feature extractor (preprocessor_config.json"]
    args = prepare_args({**corpus, "audio_dir": audio_dir, "audio": model}, tmp_path / "out.h5", *extra)
    return args, expected


@pytest.mark.parametrize("kind", ["corrupt", "missing", "empty", "rate", "long", "no_extractor"])
def test_bad_audio_is_one_line_naming_the_culprit_and_writes_nothing(corpus, tmp_path, kind):
    from cli_checks import run_main

    args, expected = broken(kind, corpus, tmp_path)
    assert_fails_cleanly(run_main(args), *expected, out=tmp_path / "out.h5")


def test_frozen_features_train_on_text_and_audio(prepared, tmp_path):
    from cli_checks import run_main

    args = ["train", "--data", str(prepared), "--modalities", "text,audio", "--d-model", "16", "--epochs", "1",
            "--batch-size", "4", "--out", str(tmp_path / "run"), "--no-track", "--json"]  # fmt: skip
    result = run_main(args)
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert np.isfinite(metrics["test"]["MAE"])


def raw_config(corpus, prepared, tmp_path: Path, name: str = "mosi_paper_raw", **pretrained) -> Path:
    """The example config with the tiny models' directories filled in, at test sizes."""
    values = yaml.safe_load((ROOT / "examples" / f"{name}.yaml").read_text())
    values["data"] = str(prepared)
    values["model"].update(d_model=16, experts={"shared": 2, "rank": 4, "type": "lowrank"}, blocks=1)
    values["model"]["pretrained"].update(text=str(corpus["text"]), audio=str(corpus["audio"]), **pretrained)
    values["train"].update(epochs=1, batch_size=4, lr=1e-3, encoder_lr=1e-3, warmup_epochs=0, schedule="constant")
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def test_paper_config_fine_tunes_the_encoders_and_eval_reproduces_it(corpus, prepared, tmp_path):
    from cli_checks import run_main

    config = raw_config(corpus, prepared, tmp_path, freeze_layers=1, gradient_checkpointing=True)
    run = tmp_path / "run"
    result = run_main(["train", "--config", str(config), "--out", str(run), "--no-track", "--json"])
    assert result.exit_code == 0, result.output
    trained = torch.load(run / "checkpoint.pt", weights_only=True)["state_dict"]
    for modality, cls in (("text", transformers.RobertaModel), ("audio", transformers.Data2VecAudioModel)):
        initial = cls.from_pretrained(corpus[modality]).state_dict()
        stored = {k.removeprefix(f"encoders.{modality}.backbone."): v for k, v in trained.items()
                  if k.startswith(f"encoders.{modality}.backbone.")}  # fmt: skip
        assert stored.keys() == {k for k in initial if not k.startswith("pooler.")}  # the unused pooler is dropped
        changed = {k for k in stored if not torch.equal(initial[k], stored[k])}
        layers = "encoder.layer." if modality == "text" else "encoder.layers."
        # freeze_layers 1: the embeddings and layer 0 are fixed, layer 1 trained.
        assert changed and all(k.startswith(f"{layers}1.") for k in changed), sorted(changed)[:5]

    # eval in a fresh process reproduces the run's test metrics exactly.
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    evaluated = subprocess.run(
        [sys.executable, "-m", "mmolre_cli", "eval", str(run), "--json"], capture_output=True, text=True, env=env
    )
    assert evaluated.returncode == 0, evaluated.stderr
    stored = json.loads((run / "metrics.json").read_text())["metrics"]["test"]
    assert json.loads(evaluated.stdout)["metrics"] == stored


def test_encoder_learning_rate_and_what_is_frozen(corpus):
    from mmolre_cli.config import TrainConfig
    from mmolre_cli.model.pretrained import HFAudioModel, HFTextModel
    from mmolre_cli.training.optimizer import build_optimizer

    settings = PretrainedConfig(text=str(corpus["text"]), audio=str(corpus["audio"]), freeze_layers=2)
    text = HFTextModel(8, 0.0, settings)
    assert not any(p.requires_grad for p in text.backbone.parameters())  # 2 of 2 layers: all fixed
    audio = HFAudioModel(8, 0.0, PretrainedConfig(audio=str(corpus["audio"])))
    model = torch.nn.ModuleDict({"text": text, "audio": audio})
    groups = build_optimizer(model, TrainConfig(lr=1e-3, encoder_lr=1e-5)).param_groups
    count = {lr: sum(p.numel() for g in groups if g["lr"] == lr for p in g["params"]) for lr in (1e-3, 1e-5)}
    assert count[1e-5] == sum(p.numel() for p in audio.backbone.parameters())  # text's backbone is frozen
    assert count[1e-3] == 2 * (16 * 8 + 8)  # the two projections


def test_audio_frames_ignore_the_padding_of_shorter_clips(corpus, prepared):
    from mmolre_cli.model.pretrained import HFAudioModel
    from mmolre_cli.training.batches import TensorSplit

    encoder = HFAudioModel(8, 0.0, PretrainedConfig(audio=str(corpus["audio"]))).eval()
    data = read_canonical(prepared, splits="train")
    split = TensorSplit.from_split(data.splits["train"], ["audio"], {"audio": encoder}, data.raw_audio_rate)
    batch = split.batch(torch.tensor([0, 3]))  # 0.6 s and 0.4 s: the second padded
    with torch.no_grad():
        together, mask = encoder(batch.features["audio"], batch.lengths["audio"][:, None] > torch.arange(9600))
        alone, _ = encoder(batch.features["audio"][1:, :6400], torch.ones(1, 6400, dtype=torch.bool))
    frames = int(mask[1].sum())
    # The frames of the clip alone, and zeros after them (their values differ a little: the stacked
    # positional convolutions of Data2VecAudio see the padded frames, as in Hugging Face's own batches).
    assert frames == alone.shape[1] < mask.shape[1] and mask[0].all()
    assert together[1, :frames].abs().min() > 0 and not together[1, frames:].any()


def test_profile_counts_the_pretrained_encoders(corpus, prepared, tmp_path):
    from cli_checks import run_main

    config = raw_config(corpus, prepared, tmp_path)
    args = ["profile", "--config", str(config), "--batch-size", "2", "--repeats", "0", "--warmup", "0", "--json"]
    result = run_main(args)
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout)["rows"][0]
    backbones = sum(
        p.numel()
        for cls, key in ((transformers.RobertaModel, "text"), (transformers.Data2VecAudioModel, "audio"))
        for name, p in cls.from_pretrained(corpus[key]).named_parameters()
        if not name.startswith("pooler.")  # RoBERTa's pooler is unused, so dropped
    )
    encoders = row["parameters"]["encoders"]
    assert sum(encoders.values()) == backbones + 2 * (16 * 16 + 16)
    assert row["flops"]["forward"]["by_group"]["encoders"] > 0


def test_bf16_autocast_runs_the_encoders(corpus):
    from mmolre_cli.model.pretrained import HFAudioModel, HFTextModel

    settings = PretrainedConfig(text=str(corpus["text"]), audio=str(corpus["audio"]))
    for encoder, x in (
        (HFTextModel(8, 0.0, settings), torch.tensor([[2, 5, 6, 3, 0]])),
        (HFAudioModel(8, 0.0, settings), torch.randn(1, 4000)),
    ):
        mask = x != 0 if x.dtype == torch.long else torch.ones_like(x, dtype=torch.bool)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            h, out_mask = encoder(x, mask)
        h.float().sum().backward()
        assert h.dtype == torch.bfloat16 and torch.isfinite(h.float()).all() and out_mask.any()
        assert encoder.project.weight.grad is not None


@pytest.mark.parametrize("name", ["mosi_paper_raw", "mosei_paper_raw"])
def test_paper_raw_configs_are_the_papers_setup_with_placeholder_directories(name):
    from mmolre_cli.config import build_config, load_yaml

    model = build_config(load_yaml(ROOT / "examples" / f"{name}.yaml")).model
    assert model.d_model == 768 and model.modalities == ["text", "audio"]
    assert model.encoders == {"text": "hf_text", "audio": "hf_audio"}
    assert (model.pretrained.text, model.pretrained.audio) == ("models/roberta-base", "models/data2vec-audio-base")
