"""Predicting a split and scoring it with the field's metrics."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mmolre_cli.config import ModelConfig
from mmolre_cli.metrics import mer_metrics, msa_metrics
from mmolre_cli.model import MMoLRE, multitask_loss
from mmolre_cli.training.batches import TensorSplit


@torch.no_grad()
def predict(
    model: MMoLRE, split: TensorSplit, batch_size: int, pos_weight: torch.Tensor | None, device: str = "cpu"
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Predictions per task over the whole split, and its sample-weighted mean loss parts."""
    model.eval()
    outputs: dict[str, list[np.ndarray]] = {task: [] for task in model.tasks}
    sums: dict[str, float] = {}
    for batch in split.batches(batch_size):
        batch = batch.to(device)
        output = model(batch.features, batch.lengths)
        total, parts = multitask_loss(output, batch.sentiment, batch.emotion, model.config, pos_weight)
        size = len(batch.sentiment)
        for name, value in {"loss": total, **parts}.items():
            sums[name] = sums.get(name, 0.0) + float(value) * size
        for task, prediction in output.predictions.items():
            outputs[task].append(prediction.float().cpu().numpy())
    losses = {name: value / len(split) for name, value in sums.items()}
    return {task: np.concatenate(chunks) for task, chunks in outputs.items()}, losses


def score(
    predictions: dict[str, np.ndarray], split: TensorSplit, config: ModelConfig, emotions: list[str]
) -> dict[str, float]:
    """MSA metrics for ``sa`` and MER metrics for ``er``, each only where the split has such labels."""
    metrics: dict[str, float] = {}
    sentiment, emotion = split.sentiment.numpy(), split.emotion.numpy()
    if "sa" in predictions and np.isfinite(sentiment).any():
        metrics.update(msa_metrics(predictions["sa"], sentiment))
    if "er" in predictions and np.isfinite(emotion).all(-1).any():
        metrics.update(mer_metrics(predictions["er"], emotion, emotions))
    return metrics


def evaluate(
    model: MMoLRE, split: TensorSplit, pos_weight: torch.Tensor | None, batch_size: int, device: str = "cpu"
) -> dict[str, Any]:
    """Losses (``loss``, ``loss_sa``, …) and metrics of one split."""
    predictions, losses = predict(model, split, batch_size, pos_weight, device)
    named = {("loss" if name == "loss" else f"loss_{name}"): value for name, value in losses.items()}
    return {**named, **score(predictions, split, model.config, model.signature.emotions)}


def trivial_baseline(train: TensorSplit, split: TensorSplit, config: ModelConfig, emotions: list[str]) -> dict[str, float]:
    """Metrics of a predictor that ignores its input: the training mean sentiment for every clip and,
    per emotion, a constant logit log(p / (1 - p)) from the training prevalence p."""
    n = len(split)
    sentiment = train.sentiment[~train.sentiment.isnan()]
    predictions = {"sa": np.full(n, float(sentiment.mean()) if len(sentiment) else 0.0, dtype=np.float32)}
    known = ~train.emotion.isnan().any(-1)
    if known.any():
        prevalence = (train.emotion[known] > 0).double().mean(0).clamp(1e-6, 1 - 1e-6).numpy()
        predictions["er"] = np.tile(np.log(prevalence / (1 - prevalence)), (n, 1))
    return score({t: p for t, p in predictions.items() if t in config.tasks}, split, config, emotions)
