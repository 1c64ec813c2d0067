"""Expert banks: N convolutional experts of one block, computed together.

Each expert is Conv1d(d→h, kernel 3, same padding) → activation → dropout → Conv1d(h→d, kernel 1);
h = r for the low-rank expert (≈ 4·d·r parameters) and h = d for the dense one (≈ 4·d²).
A bank returns the *mixture* Σ_n w_n · f_n(x) for per-utterance weights w (B, N).
"""

import math

import torch
from torch import Tensor, nn


class ConvExpertBank(nn.Module):
    """N experts as one wide first convolution and one einsum over stacked second-layer weights."""

    def __init__(self, d_model: int, n_experts: int, hidden: int, dropout: float = 0.1):
        super().__init__()
        self.n_experts, self.hidden = n_experts, hidden
        self.up = nn.Conv1d(d_model, n_experts * hidden, kernel_size=3, padding=1)
        self.activation = nn.GELU()
        self.dropout = nn.Dropout(dropout)
        bound = 1.0 / math.sqrt(hidden)  # the same init a Conv1d(h→d, k=1) would get
        self.down_weight = nn.Parameter(torch.empty(n_experts, hidden, d_model).uniform_(-bound, bound))
        self.down_bias = nn.Parameter(torch.empty(n_experts, d_model).uniform_(-bound, bound))

    def forward(self, x: Tensor, mask: Tensor, weights: Tensor) -> Tensor:
        """x (B, T, d), mask (B, T), weights (B, N) → Σ_n w_n f_n(x): (B, T, d), zero at padding."""
        batch, length, _ = x.shape
        valid = mask[..., None].to(x.dtype)
        # Zeroing padding first keeps the kernel-3 window from carrying padded values into valid frames.
        hidden = self.dropout(self.activation(self.up((x * valid).transpose(1, 2))))  # b (n h) t
        hidden = hidden.view(batch, self.n_experts, self.hidden, length) * weights[:, :, None, None]
        # Scaling before the second layer lets one contraction over (n, h) sum the experts' outputs.
        mixed = torch.einsum("bnht,nhd->btd", hidden, self.down_weight)
        return (mixed + (weights @ self.down_bias)[:, None, :]) * valid


def lowrank_parameter_count(d_model: int, n_experts: int, rank: int) -> int:
    """Exact parameters of a low-rank bank: per expert 3·d·r + r (first conv) + r·d + d (second)."""
    return n_experts * (4 * d_model * rank + rank + d_model)
