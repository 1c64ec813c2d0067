"""A split of the canonical file as tensors, served in mini-batches trimmed to their longest sequence."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

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
    """One split's arrays as tensors (sharing memory with the NumPy arrays), restricted to some modalities.

    A modality whose encoder runs on raw input holds that input instead of features: (N, S) tensors, or a
    list of N unpadded 1-D tensors (waveforms) padded batch by batch."""

    features: dict[str, Tensor | list[Tensor]]
    lengths: dict[str, Tensor]
    sentiment: Tensor
    emotion: Tensor

    @classmethod
    def from_split(
        cls,
        split: Split,
        modalities: list[str],
        encoders: Mapping[str, nn.Module] | None = None,
        audio_rate: int | None = None,
    ) -> TensorSplit:
        """``split``'s features, or, for a modality whose encoder in ``encoders`` has ``inputs``, the raw
        input it makes of the split (``audio_rate``: the sampling rate of ``split.raw_audio``)."""
        features, lengths = {}, {}
        for m in modalities:
            encoder = encoders[m] if encoders is not None and m in encoders else None
            if hasattr(encoder, "inputs"):
                features[m], lengths[m] = encoder.inputs(split, audio_rate)
            else:
                features[m], lengths[m] = torch.from_numpy(split.features[m]), torch.from_numpy(split.lengths[m])
        return cls(
            features,
            {m: x.long() for m, x in lengths.items()},
            torch.from_numpy(split.sentiment),
            torch.from_numpy(split.emotion),
        )

    def __len__(self) -> int:
        return len(self.sentiment)

    def batch_indices(
        self, batch_size: int, generator: torch.Generator | None = None, rank: int = 0, world: int = 1
    ) -> list[Tensor]:
        """Sample indices of each mini-batch: in order, or shuffled by ``generator``.

        With ``world`` > 1 each global mini-batch is dealt out over the ranks and this returns rank
        ``rank``'s share, so together the ranks see every sample once, in as many steps as one process
        would take. A last global batch too small to give every rank a sample joins the one before it,
        since every rank must step its optimiser together. ``generator`` must be in the same state on every rank.
        """
        n = len(self)
        order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
        starts = list(range(0, n, batch_size))
        if world > 1 and len(starts) > 1 and n - starts[-1] < world:
            starts.pop()
        ends = [*starts[1:], n]
        chunks = (order[start:end][rank::world] for start, end in zip(starts, ends, strict=True))
        return [chunk for chunk in chunks if len(chunk)]  # empty only for a split smaller than ``world``

    def batch(self, index: Tensor) -> Batch:
        """The samples at ``index``; padding beyond their longest sequence is cut."""
        lengths = {m: x[index] for m, x in self.lengths.items()}
        longest = {m: max(int(x.max()), 1) for m, x in lengths.items()}
        features = {
            m: x[index, : longest[m]] if isinstance(x, Tensor) else _padded([x[i] for i in index.tolist()], longest[m])
            for m, x in self.features.items()
        }
        return Batch(features, lengths, self.sentiment[index], self.emotion[index])


def _padded(rows: list[Tensor], length: int) -> Tensor:
    """1-D tensors as one (B, length) tensor, zero after each."""
    out = rows[0].new_zeros(len(rows), length)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out
