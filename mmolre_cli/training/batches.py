"""A split of the canonical file as tensors, served in mini-batches trimmed to their longest sequence."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from mmolre_cli.data.canonical import Split


@dataclass
class Batch:
    """features {m: (B, T_m, D_m)}, lengths {m: (B,)}, sentiment (B,), emotion (B, C); NaN = unknown."""

    features: dict[str, Tensor]
    lengths: dict[str, Tensor]
    sentiment: Tensor
    emotion: Tensor

    def to(self, device: torch.device | str) -> Batch:
        return Batch(
            {m: x.to(device) for m, x in self.features.items()},
            {m: x.to(device) for m, x in self.lengths.items()},
            self.sentiment.to(device),
            self.emotion.to(device),
        )


@dataclass
class TensorSplit:
    """One split's arrays as tensors (sharing memory with the NumPy arrays), restricted to some modalities."""

    features: dict[str, Tensor]
    lengths: dict[str, Tensor]
    sentiment: Tensor
    emotion: Tensor

    @classmethod
    def from_split(cls, split: Split, modalities: list[str]) -> TensorSplit:
        return cls(
            {m: torch.from_numpy(split.features[m]) for m in modalities},
            {m: torch.from_numpy(split.lengths[m]).long() for m in modalities},
            torch.from_numpy(split.sentiment),
            torch.from_numpy(split.emotion),
        )

    def __len__(self) -> int:
        return len(self.sentiment)

    def batches(self, batch_size: int, generator: torch.Generator | None = None) -> Iterator[Batch]:
        """Mini-batches in order, or shuffled by ``generator``; padding beyond the batch's longest is cut."""
        order = torch.randperm(len(self), generator=generator) if generator is not None else torch.arange(len(self))
        for start in range(0, len(self), batch_size):
            index = order[start : start + batch_size]
            lengths = {m: x[index] for m, x in self.lengths.items()}
            longest = {m: max(int(x.max()), 1) for m, x in lengths.items()}
            features = {m: x[index, : longest[m]] for m, x in self.features.items()}
            yield Batch(features, lengths, self.sentiment[index], self.emotion[index])
