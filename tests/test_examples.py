"""Every example config and the library-API example script run, one epoch, on tiny synthetic data."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from mmolre_cli.config import build_config, load_yaml
from mmolre_cli.data.canonical import read_canonical, write_canonical
from mmolre_cli.data.synthetic import generate_synthetic

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
# The *_raw configs need raw text, waveforms and model directories: tests/test_raw_inputs.py runs them.
# tune_space.yaml is a search space, not a run config: tests/test_tuning.py reads it.
CONFIGS = sorted(
    path for path in EXAMPLES.glob("*.yaml") if not path.stem.endswith("_raw") and path.stem != "tune_space"
)


def load_script(name: str = "train_and_evaluate"):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    """A tiny MOSI-like and MOSEI-like file (1% of the clips, 12 frames)."""
    root = tmp_path_factory.mktemp("examples")
    files = {}
    for like in ("mosi", "mosei"):
        files[like] = root / f"{like}.h5"
        write_canonical(generate_synthetic(like=like, scale=0.01, seed=5, seq_len=12), files[like])
    return files


def test_there_are_paper_and_cpu_configs_for_both_datasets():
    assert {path.stem for path in CONFIGS} >= {"mosi_paper", "mosi_cpu", "mosei_paper", "mosei_cpu"}
    for name in ("mosi_paper", "mosei_paper"):
        model = build_config(load_yaml(EXAMPLES / f"{name}.yaml")).model
        assert model.d_model == 768 and model.modalities == ["text", "audio"]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda path: path.stem)
def test_each_example_config_trains_and_evaluates(config, tiny, tmp_path):
    like = "mosi" if config.stem.startswith("mosi_") else "mosei"
    metrics = load_script().run(config, tmp_path / "run", data=tiny[like], epochs=1)
    assert "Non0_acc_2" in metrics and "MAE" in metrics
    assert ("WA_mean" in metrics) == (like == "mosei")


def test_the_real_scale_script_writes_real_extractor_scales_and_speaker_disjoint_splits(tmp_path):
    out = tmp_path / "real.h5"
    load_script("real_scale_features").main(["--out", str(out), "--speakers", "10", "--clips-per-speaker", "3"])
    data = read_canonical(out)
    train = data.splits["train"]
    valid = np.arange(40)[None, :] < train.lengths["audio"][:, None]
    pitch = train.features["audio"][..., 0][valid & (train.features["audio"][..., 1] == 1)]
    assert 80 < pitch.mean() < 260 and pitch.std() > 20  # Hz, two speaker registers
    assert np.abs(train.features["audio"][..., 2:10][valid]).max() < 1  # the small voice-quality coefficients
    assert 100 < train.features["vision"][..., 17:][valid].mean() < 400  # the face box in pixels
    speakers = {name: {i.split("_")[0] for i in split.ids} for name, split in data.splits.items()}
    assert not (speakers["train"] & speakers["test"]) and not (speakers["train"] & speakers["valid"])
    assert {name: len(s) for name, s in speakers.items()} == {"train": 6, "valid": 1, "test": 3}
