"""Multimodal fusion: per-task features of every modality → one vector per task.

Every fusion takes ``features`` {modality: (τ, B, T_m, d)} and ``masks`` {modality: (B, T_m)} and
returns (τ, B, d), in the order of the ``tasks`` it was built with. A modality without a valid frame
for a clip (length 0) is absent for that clip: it gets no attention, no gate weight and a zero pooled vector.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from mmolre_cli.model.masking import attendable, masked_mean, masked_softmax, zero_padding


def pooled_modalities(modalities: list[str], features: Mapping[str, Tensor], masks: Mapping[str, Tensor]) -> Tensor:
    """Masked mean of each modality: (τ, B, M, d)."""
    return torch.stack([masked_mean(features[m], masks[m]) for m in modalities], dim=2)


def present_modalities(modalities: list[str], masks: Mapping[str, Tensor]) -> Tensor:
    """Which modalities each clip has at least one valid frame of: (B, M) bool."""
    return torch.stack([masks[m].any(-1) for m in modalities], dim=1)


class TaskAdaptiveFusion(nn.Module):
    """A learned query per task attends over all modalities' frames (modality embeddings added,
    padding masked); a per-task softmax gate over the pooled modalities is added to the result."""

    #: Queries and embeddings, not weights: no weight decay on them (``training/optimizer.py``).
    no_weight_decay = ("queries", "modality_embedding", "gate")

    def __init__(self, d_model: int, modalities: list[str], tasks: list[str], dropout: float = 0.1, heads: int = 4):
        super().__init__()
        self.modalities = list(modalities)
        self.queries = nn.Parameter(torch.randn(len(tasks), d_model) * 0.02)
        self.modality_embedding = nn.Parameter(torch.randn(len(modalities), d_model) * 0.02)
        self.attention = nn.MultiheadAttention(d_model, heads, dropout=dropout, batch_first=True)
        self.gate = nn.Parameter(torch.zeros(len(tasks), d_model))
        self.norm = nn.LayerNorm(d_model)

    def forward(self, features: Mapping[str, Tensor], masks: Mapping[str, Tensor]) -> Tensor:
        n_tasks, batch = features[self.modalities[0]].shape[:2]
        frames = torch.cat(
            [zero_padding(features[m], masks[m]) + self.modality_embedding[i] for i, m in enumerate(self.modalities)],
            dim=2,
        ).flatten(0, 1)  # (τ b) t d
        valid = torch.cat([masks[m] for m in self.modalities], dim=1)  # b t
        query = self.queries[:, None, None, :].expand(n_tasks, batch, 1, -1).flatten(0, 1)
        ignored = attendable(valid).repeat(n_tasks, 1)
        attended, _ = self.attention(query, frames, frames, key_padding_mask=ignored, need_weights=False)
        # A clip without any frame attended to nothing.
        attended = attended.view(n_tasks, batch, -1).masked_fill(~valid.any(-1)[:, None], 0.0)
        pooled = pooled_modalities(self.modalities, features, masks)  # τ b m d
        present = present_modalities(self.modalities, masks)
        gate = masked_softmax(torch.einsum("tbmd,td->tbm", pooled, self.gate), present)
        gated = torch.einsum("tbm,tbmd->tbd", gate, pooled)
        return self.norm(attended + gated)


class ConcatFusion(nn.Module):
    """Masked mean of each modality (zero when absent), concatenated and projected by a per-task linear layer."""

    def __init__(self, d_model: int, modalities: list[str], tasks: list[str], dropout: float = 0.1):
        super().__init__()
        self.modalities = list(modalities)
        self.weight = nn.Parameter(torch.empty(len(tasks), len(modalities) * d_model, d_model))
        nn.init.xavier_uniform_(self.weight)
        self.bias = nn.Parameter(torch.zeros(len(tasks), 1, d_model))
        self.dropout = nn.Dropout(dropout)

    def forward(self, features: Mapping[str, Tensor], masks: Mapping[str, Tensor]) -> Tensor:
        pooled = pooled_modalities(self.modalities, features, masks).flatten(2)  # τ b (m d)
        return self.dropout(torch.baddbmm(self.bias, pooled, self.weight))


class GatedFusion(nn.Module):
    """Per-task softmax weights over the pooled modalities present, computed from the pooled features."""

    #: Each task's query over the pooled modalities: no weight decay (``training/optimizer.py``).
    no_weight_decay = ("score",)

    def __init__(self, d_model: int, modalities: list[str], tasks: list[str], dropout: float = 0.1):
        super().__init__()
        self.modalities = list(modalities)
        self.score = nn.Parameter(torch.zeros(len(tasks), d_model))
        self.bias = nn.Parameter(torch.zeros(len(tasks), 1, len(modalities)))

    def forward(self, features: Mapping[str, Tensor], masks: Mapping[str, Tensor]) -> Tensor:
        pooled = pooled_modalities(self.modalities, features, masks)  # τ b m d
        scores = torch.einsum("tbmd,td->tbm", pooled, self.score) + self.bias
        gate = masked_softmax(scores, present_modalities(self.modalities, masks))
        return torch.einsum("tbm,tbmd->tbd", gate, pooled)
