"""A bank of N gated low-rank experts, computed together.

Each expert is f_n(x) = W2_n · dropout(a ⊙ SiLU(g)) with [a; g] = Conv1d(d→2r, kernel 3, same padding)(x):
the low-rank expert of mmolre with a SwiGLU gate in its bottleneck, so each expert can switch its r
channels on and off per frame. Parameters per expert: 3·d·2r + 2r (first conv) + r·d + d (second) ≈ 7·d·r.
"""

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class GatedLowRankBank(nn.Module):
    """N experts as one wide first convolution (d → N·2r) and one einsum over stacked second-layer weights."""

    def __init__(self, d_model: int, n_experts: int, rank: int, dropout: float = 0.1):
        super().__init__()
        self.n_experts, self.rank = n_experts, rank
        self.up = nn.Conv1d(d_model, n_experts * 2 * rank, kernel_size=3, padding=1)
        self.dropout = nn.Dropout(dropout)
        bound = 1.0 / math.sqrt(rank)  # the init a Conv1d(r→d, k=1) would get
        self.down_weight = nn.Parameter(torch.empty(n_experts, rank, d_model).uniform_(-bound, bound))
        self.down_bias = nn.Parameter(torch.empty(n_experts, d_model).uniform_(-bound, bound))

    def forward(self, x: Tensor, mask: Tensor, weights: Tensor) -> Tensor:
        """x (B, T, d), mask (B, T), weights (B, N) → Σ_n w_n f_n(x): (B, T, d), zero at padding."""
        batch, length, _ = x.shape
        valid = mask[..., None].to(x.dtype)
        # Zeroing padding first keeps the kernel-3 window from carrying padded values into valid frames.
        both = self.up((x * valid).transpose(1, 2)).view(batch, self.n_experts, 2, self.rank, length)  # b n 2 r t
        hidden = self.dropout(both[:, :, 0] * F.silu(both[:, :, 1]))  # b n r t
        # Scaling before the second layer lets one contraction over (n, r) sum the experts' outputs.
        hidden = hidden * weights[:, :, None, None]
        mixed = torch.einsum("bnrt,nrd->btd", hidden, self.down_weight)
        return (mixed + (weights @ self.down_bias)[:, None, :]) * valid


def parameter_count(d_model: int, n_experts: int, rank: int) -> int:
    """Exact parameters of a bank: per expert 6·d·r + 2r (first conv) + r·d + d (second)."""
    return n_experts * (7 * d_model * rank + 2 * rank + d_model)
