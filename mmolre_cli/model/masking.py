"""Padding masks and masked pooling, shared by every component that sees padded sequences."""

import torch
from torch import Tensor


def lengths_to_mask(lengths: Tensor, max_len: int) -> Tensor:
    """(B,) lengths → (B, T) bool, True at valid positions. Length 0 counts as 1 so no row is empty."""
    positions = torch.arange(max_len, device=lengths.device)
    return positions[None, :] < lengths.clamp(min=1)[:, None]


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean over time of valid positions: x (..., B, T, d), mask (B, T) → (..., B, d)."""
    weights = mask.to(x.dtype)[..., None]
    return (x * weights).sum(-2) / weights.sum(-2).clamp(min=1.0)
