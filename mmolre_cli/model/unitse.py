"""UniTSE: unimodal task-specific feature extraction, a stack of shared + task-specific expert blocks.

Per block and task τ:  h_τ ← Norm(h_τ + f_ts,τ(h_τ) + Σ_{n ∈ TopK(g_τ)} ĝ_τ,n · f_sh,n(h_τ)).
Task features travel stacked as one tensor (τ, B, T, d).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mmolre_cli.model.masking import masked_mean, zero_padding
from mmolre_cli.model.routers import Route


class UniTSEBlock(nn.Module):
    """One block: a shared expert bank and its per-task routers, one expert per task, a norm per task."""

    def __init__(
        self,
        d_model: int,
        tasks: list[str],
        shared: nn.Module | None,
        routers: nn.ModuleDict | None,
        specific: nn.ModuleDict | None,
    ):
        super().__init__()
        self.tasks = list(tasks)
        self.shared, self.routers, self.specific = shared, routers, specific
        self.norms = nn.ModuleDict({task: nn.LayerNorm(d_model) for task in tasks})

    def forward(self, h: Tensor, mask: Tensor) -> tuple[Tensor, dict[str, Route]]:
        """h (τ, B, T, d), mask (B, T) → new h (τ, B, T, d) and each task's route."""
        n_tasks, batch, length, width = h.shape
        h = zero_padding(h, mask)
        update = torch.zeros_like(h)
        routes: dict[str, Route] = {}
        if self.shared is not None:
            pooled = masked_mean(h, mask)  # τ b d: one routing decision per utterance
            routes = {task: self.routers[task](pooled[i]) for i, task in enumerate(self.tasks)}
            weights = torch.stack([routes[task].weights for task in self.tasks])  # τ b n
            # Both tasks go through the shared bank in one call, stacked along the batch.
            shared_out = self.shared(h.reshape(-1, length, width), mask.repeat(n_tasks, 1), weights.flatten(0, 1))
            update = update + shared_out.view_as(h)
        if self.specific is not None:
            own = h.new_ones(batch, 1)
            update = update + torch.stack([self.specific[t](h[i], mask, own) for i, t in enumerate(self.tasks)])
        out = torch.stack([self.norms[task](h[i] + update[i]) for i, task in enumerate(self.tasks)])
        return zero_padding(out, mask), routes


class UniTSE(nn.Module):
    """The stacked blocks of one modality."""

    def __init__(self, blocks: list[UniTSEBlock]):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)

    def forward(self, h: Tensor, mask: Tensor) -> tuple[Tensor, list[dict[str, Route]]]:
        routes = []
        for block in self.blocks:
            h, block_routes = block(h, mask)
            routes.append(block_routes)
        return h, routes
