"""Input normalisation: per-feature statistics of the training split's valid frames, kept in the checkpoint."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cli_checks import assert_fails_cleanly
from typer.testing import CliRunner

from mmolre_cli.cli.app import app
from mmolre_cli.config import build_config
from mmolre_cli.data.canonical import read_canonical
from mmolre_cli.errors import UsageError
from mmolre_cli.model.masking import lengths_to_mask
from mmolre_cli.model.normalize import InputNorm, feature_statistics
from mmolre_cli.training.restore import evaluate_checkpoint, restore_model
from mmolre_cli.training.trainer import train_run


def _frames(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(20, 7, 4) features on real-extractor scales (Hz, log energy, a small coefficient, a constant), with
    large garbage after each clip's length."""
    rng = np.random.default_rng(seed)
    x = np.stack(
        [
            rng.normal(200, 40, (20, 7)),
            rng.normal(-8, 1.5, (20, 7)),
            rng.normal(0.1, 0.01, (20, 7)),
            np.full((20, 7), 3.0),
        ],
        axis=2,
    ).astype(np.float32)
    lengths = rng.integers(1, 8, 20).astype(np.int32)  # the model reads a length-0 clip as one frame
    x[np.arange(7)[None, :] >= lengths[:, None]] = 1e6
    return x, lengths


def test_statistics_come_from_valid_frames_and_constant_features_are_only_centred():
    x, lengths = _frames()
    mean, std, constant = feature_statistics(x, lengths)
    valid = x[np.arange(7)[None, :] < lengths[:, None]].astype(np.float64)
    np.testing.assert_allclose(mean, valid.mean(0), rtol=1e-12)
    np.testing.assert_allclose(std[:3], valid[:, :3].std(0), rtol=1e-9)
    assert constant.tolist() == [False, False, False, True] and std[3] == 1.0
    norm = InputNorm("feature", 4)
    norm.mean.copy_(torch.from_numpy(mean))
    norm.std.copy_(torch.from_numpy(std))
    features, mask = torch.from_numpy(x), lengths_to_mask(torch.from_numpy(lengths).long(), 7)
    z = norm(features, mask)
    assert torch.equal(z[~mask], torch.zeros_like(z[~mask]))  # padding is 0, whatever it held
    np.testing.assert_allclose(z[mask][:, :3].mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(z[mask][:, :3].std(0, unbiased=False), 1, atol=1e-4)
    assert torch.equal(z[mask][:, 3], torch.zeros_like(z[mask][:, 3]))


def test_feature_keeps_a_frames_offset_and_scale_that_frame_removes():
    x, lengths = _frames()
    features, mask = torch.from_numpy(x), lengths_to_mask(torch.from_numpy(lengths).long(), 7)
    louder = features * 1.5 + 2.0  # every feature of every frame: a gain and an offset
    frame, feature = InputNorm("frame", 4), InputNorm("feature", 4)
    assert torch.allclose(frame(louder, mask)[..., :3], frame(features, mask)[..., :3], atol=1e-3)
    assert not torch.allclose(feature(louder, mask), feature(features, mask), atol=1e-3)


def test_the_statistics_travel_in_the_checkpoint_and_are_applied_at_eval(tiny_data, tmp_path, registry):
    values = {"data": str(tiny_data), "model": {"d_model": 8, "blocks": 1}, "train": {"epochs": 1}}
    result = train_run(build_config(values), tmp_path / "run", registry)
    model, _ = restore_model(tmp_path / "run", registry)
    train = read_canonical(tiny_data, splits=("train",)).splits["train"]
    for m in ("text", "audio", "vision"):
        mean, std, _ = feature_statistics(train.features[m], train.lengths[m])
        assert torch.equal(model.normalize[m].mean, torch.from_numpy(mean).float())
        assert torch.equal(model.normalize[m].std, torch.from_numpy(std).float())
    evaluated = evaluate_checkpoint(tmp_path / "run", registry)["metrics"]
    np.testing.assert_equal(evaluated, result.metrics["test"])


def test_normalize_is_a_config_key_and_an_option():
    assert build_config({}).model.normalize == "feature"
    assert build_config({"model": {"normalize": "none"}}).model.normalize == "none"
    with pytest.raises(UsageError, match="model.normalize: unknown value 'frames'.*did you mean 'frame'"):
        build_config({"model": {"normalize": "frames"}})
    result = CliRunner().invoke(app, ["train", "--normalize", "zscore", "--epochs", "1"])
    assert_fails_cleanly(result, "model.normalize: unknown value 'zscore'", "none, frame, feature")


def test_a_checkpoint_from_before_normalize_evaluates_as_frame(tiny_data, tmp_path, registry):
    values = {
        "data": str(tiny_data),
        "model": {"d_model": 8, "blocks": 1, "normalize": "frame"},
        "train": {"epochs": 1},
    }
    result = train_run(build_config(values), tmp_path / "run", registry)
    payload = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    del payload["config"]["model"]["normalize"]  # as written at 04d032a: the LayerNorm inside each encoder
    state = payload["state_dict"]
    for key in [key for key in state if key.startswith("normalize.")]:
        _, m, _, name = key.split(".")
        state[f"encoders.{m}.norm.{name}"] = state.pop(key)
    torch.save(payload, tmp_path / "old.pt")
    evaluated = evaluate_checkpoint(tmp_path / "old.pt", registry, data=tiny_data)["metrics"]
    np.testing.assert_equal(evaluated, result.metrics["test"])
