"""Routers: one decision per utterance over the N shared experts of a block, with a balance loss."""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class Route:
    """weights (B, N): mixing weights, zero for unused experts; probs (B, N): the router's full
    softmax; balance_loss: a scalar that equals 1.0 for a perfectly even router."""

    weights: Tensor
    probs: Tensor
    balance_loss: Tensor


def switch_balance_loss(probs: Tensor, chosen: Tensor) -> Tensor:
    """Switch-Transformer balance loss E · Σ_i f_i · P_i.

    f_i is the fraction of routing slots (B·k of them) that went to expert i and P_i the mean router
    probability of expert i over the batch; both are 1/E for a perfectly even router, giving 1.0.
    """
    n_experts = probs.shape[-1]
    counts = torch.zeros_like(probs[0]).scatter_add_(
        0, chosen.flatten(), torch.ones_like(chosen.flatten(), dtype=probs.dtype)
    )
    fractions = counts / chosen.numel()
    return n_experts * (fractions * probs.mean(0)).sum()


class TopKRouter(nn.Module):
    """Keep the k highest-scoring experts; softmax over the kept k (k = 1: the plain softmax probability,
    so the router still gets a gradient). ``noisy`` adds Shazeer-style learned noise while training."""

    def __init__(self, d_model: int, n_experts: int, topk: int, noisy: bool = False):
        super().__init__()
        if not 1 <= topk <= n_experts:
            raise ValueError(f"topk must be in [1, {n_experts}], got {topk}")
        self.topk = topk
        self.gate = nn.Linear(d_model, n_experts)
        self.noise = nn.Linear(d_model, n_experts) if noisy else None

    def forward(self, pooled: Tensor) -> Route:
        logits = self.gate(pooled)
        probs = logits.softmax(-1)
        if self.noise is not None and self.training:
            logits = logits + torch.randn_like(logits) * F.softplus(self.noise(pooled))
        top_logits, chosen = logits.topk(self.topk, dim=-1)
        if self.topk == 1:
            kept = logits.softmax(-1).gather(-1, chosen)
        else:
            kept = top_logits.softmax(-1)
        weights = torch.zeros_like(logits).scatter(-1, chosen, kept)
        return Route(weights, probs, switch_balance_loss(probs, chosen))


class SoftRouter(nn.Module):
    """MMoE-style gate: every expert, weighted by the softmax; balance loss E · Σ_i P_i² (1.0 when even)."""

    def __init__(self, d_model: int, n_experts: int, topk: int):
        super().__init__()
        self.gate = nn.Linear(d_model, n_experts)

    def forward(self, pooled: Tensor) -> Route:
        probs = self.gate(pooled).softmax(-1)
        mean = probs.mean(0)
        return Route(probs, probs, probs.shape[-1] * (mean * mean).sum())


class UniformRouter(nn.Module):
    """Every expert with weight 1/N and nothing learned: the ablation without a router."""

    def __init__(self, d_model: int, n_experts: int, topk: int):
        super().__init__()
        self.n_experts = n_experts

    def forward(self, pooled: Tensor) -> Route:
        weights = pooled.new_full((pooled.shape[0], self.n_experts), 1.0 / self.n_experts)
        return Route(weights, weights, pooled.new_tensor(1.0))
