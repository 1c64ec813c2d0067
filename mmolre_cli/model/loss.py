"""The multi-task loss: L1 for sentiment, weighted BCE for emotions, plus the routers' balance loss in training."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from mmolre_cli.config import ModelConfig
from mmolre_cli.model.mmolre import ModelOutput


def emotion_pos_weight(emotion: Tensor) -> Tensor:
    """Per-emotion BCE positive weight N_neg / N_pos from the training labels known for that emotion (NaN: unknown)."""
    known = ~torch.isnan(emotion)
    positives = (emotion > 0).sum(0).float()  # NaN > 0 is False
    negatives = known.sum(0) - positives
    return (negatives / positives.clamp(min=1.0)).clamp(min=1e-3, max=1e3)


def labelled(sentiment: Tensor, emotion: Tensor) -> dict[str, Tensor]:
    """Per task, which labels of a batch are known: (B,) for ``sa``, (B, C) for ``er`` (one per emotion, so a
    clip missing one emotion's label still counts for the others). Each task's loss is the mean over its
    known labels, so ``mask.sum()`` is what it is divided by."""
    return {"sa": ~torch.isnan(sentiment), "er": ~torch.isnan(emotion)}


def multitask_loss(
    output: ModelOutput, sentiment: Tensor, emotion: Tensor, config: ModelConfig, pos_weight: Tensor | None
) -> tuple[Tensor, dict[str, Tensor]]:
    """Total loss and its parts. An unknown label (NaN) adds nothing to its task's loss, whatever the
    prediction, and a batch with no known label of a task contributes an exact zero (and zero gradient)."""
    known = labelled(sentiment, emotion)
    parts: dict[str, Tensor] = {}
    if "sa" in output.predictions:
        errors = (output.predictions["sa"] - torch.nan_to_num(sentiment)).abs()
        parts["sa"] = errors.masked_fill(~known["sa"], 0.0).sum() / known["sa"].sum().clamp(min=1)
    if "er" in output.predictions:
        # NaN targets must be replaced, not only masked out: a NaN target's gradient would be NaN even so.
        target = (torch.nan_to_num(emotion) > 0).to(output.predictions["er"].dtype)
        bce = F.binary_cross_entropy_with_logits(
            output.predictions["er"], target, pos_weight=pos_weight, reduction="none"
        )
        parts["er"] = bce.masked_fill(~known["er"], 0.0).sum() / known["er"].sum().clamp(min=1)
    if "balance" in output.aux_losses:
        parts["balance"] = output.aux_losses["balance"]
    return combine(parts, config), parts


def task_loss(parts: Mapping[str, Any], config: ModelConfig) -> Any:
    """The tasks' losses by their weights, without auxiliary terms: the ``loss`` reported and selected on."""
    return sum(config.task_weights.get(task, 1.0) * value for task, value in parts.items() if task != "balance")


def combine(parts: Mapping[str, Any], config: ModelConfig) -> Any:
    """The training objective: :func:`task_loss` plus the balance loss by its coefficient."""
    total = task_loss(parts, config)
    return total + config.balance_coef * parts["balance"] if "balance" in parts else total


@dataclass
class SplitLoss:
    """A whole split's loss from its batches': each task's averaged over its known labels (a batch's mean
    counts by its known labels: clips for ``sa``, clip-emotion pairs for ``er``), the balance loss over all samples."""

    sums: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, parts: Mapping[str, Tensor], sentiment: Tensor, emotion: Tensor) -> None:
        weights = {task: int(mask.sum()) for task, mask in labelled(sentiment, emotion).items()}
        weights["balance"] = len(sentiment)
        for name, value in parts.items():
            self.sums[name] = self.sums.get(name, 0.0) + value.item() * weights[name]
            self.counts[name] = self.counts.get(name, 0) + weights[name]

    def merge(self, other: SplitLoss) -> None:
        for name, value in other.sums.items():
            self.sums[name] = self.sums.get(name, 0.0) + value
            self.counts[name] = self.counts.get(name, 0) + other.counts[name]

    def means(self, config: ModelConfig) -> dict[str, float]:
        """``loss`` (the :func:`task_loss`) and each part; a task with no labelled sample is NaN and left out
        of ``loss``."""
        parts = {name: total / self.counts[name] for name, total in self.sums.items() if self.counts[name]}
        return {"loss": float(task_loss(parts, config)), **{name: parts.get(name, math.nan) for name in self.sums}}
