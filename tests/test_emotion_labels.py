"""Emotion labels are masked per emotion: a clip missing one emotion's label trains and scores the others."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import EMOTIONS
from typer.testing import CliRunner

from mmolre_cli.cli.app import app
from mmolre_cli.config import ModelConfig
from mmolre_cli.data.canonical import read_canonical, write_canonical
from mmolre_cli.model import ModelOutput, emotion_pos_weight, multitask_loss
from mmolre_cli.model.loss import SplitLoss

NAN = float("nan")


def partly_labelled() -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and intensities of 4 clips × 6 emotions: clip 1 misses one label, clip 3 all of them."""
    generator = torch.Generator().manual_seed(0)
    emotion = torch.rand(4, 6, generator=generator) * 3 * (torch.rand(4, 6, generator=generator) < 0.5)
    emotion[1, 2] = NAN
    emotion[3] = NAN
    return torch.randn(4, 6, generator=generator, requires_grad=True), emotion


def test_the_emotion_loss_averages_the_known_labels_only():
    logits, emotion = partly_labelled()
    pos_weight = torch.linspace(0.5, 3.0, 6)
    config = ModelConfig(tasks=["er"])
    _, parts = multitask_loss(ModelOutput({"er": logits}, {}), torch.zeros(4), emotion, config, pos_weight)
    known = ~emotion.isnan()
    target = (emotion.nan_to_num() > 0).float()
    cells = F.binary_cross_entropy_with_logits(logits, target, pos_weight=pos_weight, reduction="none")
    assert parts["er"].item() == pytest.approx(cells[known].mean().item())  # 17 labels: clip 1's other five count
    parts["er"].backward()
    assert (logits.grad[~known] == 0).all() and (logits.grad[known] != 0).all()


def test_a_split_loss_over_batches_is_the_mean_over_its_known_emotion_labels():
    logits, emotion = partly_labelled()
    config = ModelConfig(tasks=["er"])
    whole = multitask_loss(ModelOutput({"er": logits}, {}), torch.zeros(4), emotion, config, None)[1]["er"]
    losses = SplitLoss()
    for rows in (slice(0, 2), slice(2, 4)):
        _, parts = multitask_loss(ModelOutput({"er": logits[rows]}, {}), torch.zeros(2), emotion[rows], config, None)
        losses.add(parts, torch.zeros(2), emotion[rows])
    assert losses.means(config)["er"] == pytest.approx(whole.item())
    assert losses.counts["er"] == 17


def test_positive_weights_count_each_emotion_over_its_known_labels():
    emotion = torch.tensor([[1.0, 0.0], [NAN, 2.0], [0.0, NAN], [0.0, 0.0], [NAN, NAN]])
    # happy: 1 positive of 3 known -> 2; sad: 1 of 3 -> 2. Dropping every partly labelled clip would give 1 and 1.
    torch.testing.assert_close(emotion_pos_weight(emotion), torch.tensor([2.0, 2.0]))


@pytest.fixture(scope="module")
def gappy_data(tiny_data, tmp_path_factory):
    """The tiny file with about one label in four unknown for 'sad' and 'fear' in every split, and no clip
    of the test split with 'anger' present."""
    data = read_canonical(tiny_data)
    rng = np.random.default_rng(0)
    for name, split in data.splits.items():
        emotion = split.emotion.copy()
        known = ~np.isnan(emotion).any(-1)
        for column in (EMOTIONS.index("sad"), EMOTIONS.index("fear")):
            emotion[known & (rng.random(len(emotion)) < 0.25), column] = np.nan
        if name == "test":
            emotion[:, EMOTIONS.index("anger")] = np.where(known, 0.0, np.nan)
        split.emotion = emotion
    path = tmp_path_factory.mktemp("gappy") / "gappy.h5"
    write_canonical(data, path)
    return path


def test_training_and_scoring_with_labels_missing_per_emotion(gappy_data, tmp_path):
    runner = CliRunner()
    run_dir = tmp_path / "run"
    args = ["--data", gappy_data, "--d-model", "16", "--experts", "shared=2,rank=4", "--topk", "1", "--epochs", "1"]
    result = runner.invoke(app, ["train", *map(str, args), "--no-track", "--out", str(run_dir)])
    assert result.exit_code == 0, result.output
    # One line names the emotion the test means leave out.
    assert "test split: WA_mean, F1w_mean and F1b_mean average the other emotions; left out: anger (no positive" in (
        " ".join(result.output.split())
    )
    report = json.loads((run_dir / "metrics.json").read_text())
    assert report["left_out_emotions"] == {"test": {"anger": "no positive label"}}
    test = report["metrics"]["test"]
    scored = [e for e in EMOTIONS if e != "anger"]
    for name in ("WA", "F1w", "F1b"):
        assert test[f"{name}_mean"] == pytest.approx(np.mean([test[f"{name}_{e}"] for e in scored]))
    evaluated = runner.invoke(app, ["eval", str(run_dir), "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    assert "left out: anger (no positive label)" in " ".join(evaluated.output.split())
