"""The multi-task loss: L1 for sentiment, weighted BCE for emotions, plus the routers' balance loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mmolre_cli.config import ModelConfig
from mmolre_cli.model.mmolre import ModelOutput


def emotion_pos_weight(emotion: Tensor) -> Tensor:
    """Per-emotion BCE positive weight N_neg / N_pos from training labels (NaN rows ignored)."""
    known = ~torch.isnan(emotion).any(-1)
    present = (emotion[known] > 0).float()
    positives = present.sum(0)
    negatives = present.shape[0] - positives
    return (negatives / positives.clamp(min=1.0)).clamp(min=1e-3, max=1e3)


def multitask_loss(
    output: ModelOutput, sentiment: Tensor, emotion: Tensor, config: ModelConfig, pos_weight: Tensor | None
) -> tuple[Tensor, dict[str, Tensor]]:
    """Total loss and its parts. A sample without a task's label adds nothing to that task's loss,
    and a batch with no such label contributes an exact zero (and zero gradient) for that task."""
    parts: dict[str, Tensor] = {}
    if "sa" in output.predictions:
        known = ~torch.isnan(sentiment)
        errors = (output.predictions["sa"] - torch.nan_to_num(sentiment)).abs() * known
        parts["sa"] = errors.sum() / known.sum().clamp(min=1)
    if "er" in output.predictions:
        known = ~torch.isnan(emotion).any(-1, keepdim=True)
        # NaN targets must be replaced, not just masked: NaN · 0 is still NaN.
        target = (torch.nan_to_num(emotion) > 0).to(output.predictions["er"].dtype)
        bce = F.binary_cross_entropy_with_logits(
            output.predictions["er"], target, pos_weight=pos_weight, reduction="none"
        )
        parts["er"] = (bce * known).sum() / (known.sum() * bce.shape[-1]).clamp(min=1)
    total = sum(config.task_weights.get(task, 1.0) * value for task, value in parts.items())
    if "balance" in output.aux_losses:
        parts["balance"] = output.aux_losses["balance"]
        total = total + config.balance_coef * parts["balance"]
    return total, parts
