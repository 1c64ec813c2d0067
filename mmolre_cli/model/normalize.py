"""Input normalisation of pre-extracted features, before the encoders (``model.normalize``).

- ``feature`` (default): z-scores per modality and feature, with the mean and standard deviation of
  the training split's valid frames. They are buffers, so they travel in the checkpoint and are
  applied unchanged at evaluation. A feature constant on those frames is only centred.
- ``frame``: LayerNorm across each frame's own features. A frame then loses its own offset and
  scale (loudness, a speaker's pitch), and small-scale features count little beside large ones.
- ``none``: the features as they are.

Padded positions are 0 after every mode.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

# Cleaning-sized slices: the statistics of GB-sized arrays need no full-size float64 copy.
_SCAN_BYTES = 64 << 20
# A standard deviation this small relative to the mean (or absolutely) is a constant feature stored in float32.
_RELATIVE_FLOOR, _ABSOLUTE_FLOOR = 1e-6, 1e-12


class InputNorm(nn.Module):
    """(B, T, D) features and (B, T) mask → normalised features, 0 at padded positions."""

    def __init__(self, mode: str, input_dim: int):
        super().__init__()
        self.mode = mode
        self.norm = nn.LayerNorm(input_dim) if mode == "frame" else None
        if mode == "feature":
            # Identity until fit_statistics() sets them (or a checkpoint's state dict does).
            self.register_buffer("mean", torch.zeros(input_dim))
            self.register_buffer("std", torch.ones(input_dim))

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        if self.mode == "frame":
            x = self.norm(x)
        elif self.mode == "feature":
            x = (x - self.mean) / self.std
        return torch.where(mask[..., None], x, 0.0)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}"


def build_input_norms(mode: str, input_dims: dict[str, int], modalities: list[str]) -> nn.ModuleDict:
    """One :class:`InputNorm` per modality."""
    return nn.ModuleDict({m: InputNorm(mode, input_dims[m]) for m in modalities})


def feature_statistics(features: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, standard deviation (std 1 where constant) and the constant-feature mask (D,) over the valid,
    finite frames of ``features`` (N, T, D) with ``lengths`` (N,); two passes in float64, in slices."""
    n, steps, dim = features.shape
    step = max(1, _SCAN_BYTES // max(1, features[0].nbytes))
    positions = np.arange(steps)

    def valid_frames():
        for start in range(0, n, step):
            frames = features[start : start + step][positions[None, :] < lengths[start : start + step, None]]
            frames = frames.astype(np.float64)
            yield frames, np.isfinite(frames)

    total, count = np.zeros(dim), np.zeros(dim)
    for frames, finite in valid_frames():
        total += np.where(finite, frames, 0).sum(0)
        count += finite.sum(0)
    mean = total / np.maximum(count, 1)
    squares = np.zeros(dim)
    for frames, finite in valid_frames():
        squares += np.square(np.where(finite, frames - mean, 0)).sum(0)
    std = np.sqrt(squares / np.maximum(count, 1))
    constant = std <= np.maximum(_RELATIVE_FLOOR * np.abs(mean), _ABSOLUTE_FLOOR)
    return mean, np.where(constant, 1.0, std), constant


def fit_statistics(norms: nn.ModuleDict, features: dict[str, np.ndarray], lengths: dict[str, np.ndarray]) -> dict:
    """Set every ``feature`` norm's statistics from the training split; returns, per modality, the
    indices of the features constant on its valid frames."""
    constant = {}
    for m, norm in norms.items():
        if norm.mode != "feature":
            continue
        mean, std, flat = feature_statistics(features[m], lengths[m])
        norm.mean.copy_(torch.from_numpy(mean))
        norm.std.copy_(torch.from_numpy(std))
        constant[m] = np.flatnonzero(flat).tolist()
    return constant
