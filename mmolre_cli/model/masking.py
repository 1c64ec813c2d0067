"""Padding masks, and the masked operations every component that sees padded sequences uses.

A mask is bool (B, T), True at valid frames. A clip whose modality has length 0 has an empty row: that
modality is absent for the clip. Masks are applied by selection (``masked_fill``), never by multiplying,
so whatever a padded position holds, NaN and ±inf included, reaches no valid output (NaN · 0 is NaN).
"""

import torch
from torch import Tensor


def lengths_to_mask(lengths: Tensor, max_len: int) -> Tensor:
    """(B,) lengths → (B, T) bool, True at valid positions; a row of length 0 is all False."""
    positions = torch.arange(max_len, device=lengths.device)
    return positions[None, :] < lengths[:, None]


def zero_padding(x: Tensor, mask: Tensor) -> Tensor:
    """x (..., B, T, d) with every padded frame (mask (B, T) False) set to exactly 0."""
    return x.masked_fill(~mask[..., None], 0.0)


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean over time of valid positions: x (..., B, T, d), mask (B, T) → (..., B, d); 0 for an empty row."""
    count = mask.sum(-1, keepdim=True).clamp(min=1).to(x.dtype)  # b 1
    return zero_padding(x, mask).sum(-2) / count


def masked_softmax(scores: Tensor, valid: Tensor) -> Tensor:
    """Softmax over the last axis of the ``valid`` entries only (broadcast to ``scores``); 0 elsewhere,
    and all 0 in a row without a valid entry (where a softmax over -inf would give NaN)."""
    floor = torch.finfo(scores.dtype).min
    return scores.masked_fill(~valid, floor).softmax(-1).masked_fill(~valid, 0.0)


def attendable(mask: Tensor) -> Tensor:
    """A key padding mask (True: ignore) for attention over ``mask``'s valid frames. A row without any is
    left unmasked, so that its softmax stays finite; its output must be discarded (``zero_padding``)."""
    return ~mask & mask.any(-1, keepdim=True)
