"""Predicting a split and scoring it with the field's metrics."""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from mmolre_cli.config import ModelConfig
from mmolre_cli.data.shapes import has_emotion_labels
from mmolre_cli.metrics import mer_metrics, msa_metrics
from mmolre_cli.model import ModelOutput, multitask_loss
from mmolre_cli.model.loss import SplitLoss
from mmolre_cli.training.batches import Batch, TensorSplit
from mmolre_cli.training.distributed import SINGLE, Context
from mmolre_cli.training.routing import RoutingStats

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: str | torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Autocast to ``precision`` (``bf16``/``fp16``) on ``device``, or nothing for ``fp32``."""
    if precision not in AUTOCAST_DTYPES:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=AUTOCAST_DTYPES[precision])


def forward(model: nn.Module, batch: Batch, precision: str = "fp32") -> ModelOutput:
    """The model's output on ``batch`` (already on its device), predictions and auxiliary losses in fp32
    whatever ``precision`` the forward pass ran in, so losses and metrics are computed at full precision."""
    with autocast(batch.sentiment.device, precision):
        output = model(batch.features, batch.lengths)
    return ModelOutput(
        {task: value.float() for task, value in output.predictions.items()},
        {name: value.float() for name, value in output.aux_losses.items()},
        output.routes,
    )


@dataclass
class Predictions:
    """Predictions per task over a whole split (in its order), its mean loss parts, and its routing."""

    outputs: dict[str, np.ndarray]
    losses: dict[str, float]
    routing: RoutingStats = field(default_factory=RoutingStats)


@torch.no_grad()
def predict(
    model: nn.Module,
    split: TensorSplit,
    batch_size: int,
    pos_weight: torch.Tensor | None,
    device: str = "cpu",
    *,
    precision: str = "fp32",
    context: Context = SINGLE,
) -> Predictions:
    """Predict ``split``; under data parallelism each rank predicts its share and all ranks get the whole."""
    model.eval()
    config: ModelConfig = model.config
    indices, chunks, losses, routing = [], {task: [] for task in model.tasks}, SplitLoss(), RoutingStats()
    for index in split.batch_indices(batch_size, rank=context.rank, world=context.world):
        batch = split.batch(index).to(device)
        output = forward(model, batch, precision)
        _, parts = multitask_loss(output, batch.sentiment, batch.emotion, config, pos_weight)
        losses.add(parts, batch.sentiment, batch.emotion)
        for task, prediction in output.predictions.items():
            chunks[task].append(prediction.cpu().numpy())
        routing.add(output.routes)
        indices.append(index)
    order = torch.cat(indices).numpy() if indices else np.zeros(0, dtype=np.int64)
    outputs = {task: np.concatenate(parts) if parts else None for task, parts in chunks.items()}
    shares = context.gather((order, outputs, losses, routing))
    if context.active:
        order = np.concatenate([share[0] for share in shares])
        outputs = {
            task: np.concatenate([share[1][task] for share in shares if share[1][task] is not None]) for task in outputs
        }
        losses, routing = SplitLoss(), RoutingStats()
        for share in shares:
            losses.merge(share[2])
            routing.merge(share[3])
    inverse = np.argsort(order, kind="stable")
    return Predictions(
        {task: values[inverse] for task, values in outputs.items()},
        losses.means(config),
        routing,
    )


def score(
    predictions: dict[str, np.ndarray],
    split: TensorSplit,
    config: ModelConfig,
    emotions: list[str],
    thresholds: np.ndarray | None = None,
) -> dict[str, float]:
    """MSA metrics for ``sa`` and MER metrics for ``er`` (logit > threshold, 0 unless tuned thresholds
    are given), each only where the split has such labels; every metric of a task is NaN when one of its
    predictions is not finite (a diverged model's accuracies would be those of a constant guess)."""
    metrics: dict[str, float] = {}
    sentiment, emotion = split.sentiment.numpy(), split.emotion.numpy()
    if "sa" in predictions and np.isfinite(sentiment).any():
        scored = predictions["sa"][np.isfinite(sentiment)]
        metrics.update(_or_undefined(msa_metrics(_finite(predictions["sa"]), sentiment), scored))
    if "er" in predictions and has_emotion_labels(emotion):
        chosen = 0.0 if thresholds is None else thresholds
        scored = predictions["er"][~np.isnan(emotion)]
        metrics.update(_or_undefined(mer_metrics(_finite(predictions["er"]), emotion, emotions, chosen), scored))
    return metrics


def _finite(predictions: np.ndarray) -> np.ndarray:
    """Non-finite predictions as 0, so that metrics computed on them warn of nothing (``_or_undefined``)."""
    return np.nan_to_num(predictions, nan=0.0, posinf=0.0, neginf=0.0)


def _or_undefined(metrics: dict[str, float], scored: np.ndarray) -> dict[str, float]:
    """``metrics``, or all NaN when a prediction they score (a labelled sample's) is not finite."""
    return metrics if np.isfinite(scored).all() else dict.fromkeys(metrics, math.nan)


def metrics_of(
    predictions: Predictions, split: TensorSplit, model: nn.Module, thresholds: np.ndarray | None = None
) -> dict[str, Any]:
    """Losses (``loss``, ``loss_sa``, …) and metrics of predicted ``split``."""
    named = {("loss" if name == "loss" else f"loss_{name}"): value for name, value in predictions.losses.items()}
    return {**named, **score(predictions.outputs, split, model.config, model.signature.emotions, thresholds)}


def evaluate(
    model: nn.Module,
    split: TensorSplit,
    pos_weight: torch.Tensor | None,
    batch_size: int,
    device: str = "cpu",
    *,
    precision: str = "fp32",
    thresholds: np.ndarray | None = None,
    context: Context = SINGLE,
) -> dict[str, Any]:
    """Losses (``loss``, ``loss_sa``, …) and metrics of one split."""
    predictions = predict(model, split, batch_size, pos_weight, device, precision=precision, context=context)
    return metrics_of(predictions, split, model, thresholds)


def trivial_baseline(
    train: TensorSplit, split: TensorSplit, config: ModelConfig, emotions: list[str]
) -> dict[str, float]:
    """Metrics of a predictor that ignores its input: the training mean sentiment for every clip and,
    per emotion, a constant logit log(p / (1 - p)) from the training prevalence p (among its known labels)."""
    n = len(split)
    sentiment = train.sentiment[~train.sentiment.isnan()]
    predictions = {"sa": np.full(n, float(sentiment.mean()) if len(sentiment) else 0.0, dtype=np.float32)}
    known = ~train.emotion.isnan()
    if known.any():
        positives = (train.emotion > 0).double().sum(0)  # per emotion, over the clips that know its label
        prevalence = (positives / known.sum(0).clamp(min=1)).clamp(1e-6, 1 - 1e-6).numpy()
        predictions["er"] = np.tile(np.log(prevalence / (1 - prevalence)), (n, 1))
    return score({t: p for t, p in predictions.items() if t in config.tasks}, split, config, emotions)
