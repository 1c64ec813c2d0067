"""Expert banks: N convolutional experts of one block, computed together.

Each expert is Conv1d(d→h, kernel 3, same padding) → activation → dropout → Conv1d(h→d, kernel 1);
h = r for the low-rank expert (≈ 4·d·r parameters) and h = d for the dense one (≈ 4·d²).
A bank returns the *mixture* Σ_n w_n · f_n(x) for per-utterance weights w (B, N).
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmolre_cli.model.masking import zero_padding


class ConvExpertBank(nn.Module):
    """N experts as one wide first layer and one matrix product over stacked second-layer weights.

    The first layer keeps a Conv1d's parameters (``up``: (N·h, d, 3)) but runs as a matrix product
    over the three neighbouring frames laid side by side (frames last, as the data arrive): no
    transposes, and on CPU a training step 15–50 % faster than the convolution kernel's.

    When every utterance uses few of the experts (``runs_routed_only``: a top-k router with k ≤ N/4,
    narrow experts), only those run: each utterance gathers its k experts' weights and one batched
    product per layer computes them, so the work falls to k/N. Otherwise all N run, the unchosen
    weighted by zero.

    With ``zero_start`` (for a bank on a residual path, as in UniTSE) the second layer starts at zero, as
    LoRA's B: every expert starts as its block's identity path and the first layer gets a gradient from
    the second step on (docs/ablations.md, seventh round). Without it, at a Conv1d's default initialisation.
    """

    def __init__(self, d_model: int, n_experts: int, hidden: int, dropout: float = 0.1, zero_start: bool = True):
        super().__init__()
        self.n_experts, self.hidden = n_experts, hidden
        self.up = nn.Conv1d(d_model, n_experts * hidden, kernel_size=3, padding=1)
        self.activation = nn.GELU()
        self.dropout = nn.Dropout(dropout)
        self.down_weight = nn.Parameter(torch.zeros(n_experts, hidden, d_model))
        self.down_bias = nn.Parameter(torch.zeros(n_experts, d_model))
        if not zero_start:
            # A bank on no residual path starts as a Conv1d(h→d, kernel 1) does, so that its output sees x.
            bound = hidden**-0.5
            nn.init.uniform_(self.down_weight, -bound, bound)
            nn.init.uniform_(self.down_bias, -bound, bound)

    def forward(self, x: Tensor, mask: Tensor, weights: Tensor) -> Tensor:
        """x (B, T, d), mask (B, T), weights (B, N) → Σ_n w_n f_n(x): (B, T, d), zero at padding."""
        # Zeroing padding first keeps the kernel-3 window from carrying padded values into valid frames.
        padded = F.pad(zero_padding(x, mask), (0, 0, 1, 1))  # b (t+2) d: the convolution's zero padding
        windows = padded.unfold(1, 3, 1).transpose(2, 3).flatten(2)  # b t (k d)
        routed = max(1, int(weights.count_nonzero(-1).max()))
        if runs_routed_only(self.n_experts, routed, self.hidden, x.shape[1]):
            return zero_padding(self._routed(windows, weights, routed), mask)
        return zero_padding(self._all(windows, weights), mask)

    def _all(self, windows: Tensor, weights: Tensor) -> Tensor:
        """Every expert on every frame; the weights scale the hidden units, so one product sums the experts."""
        batch, length, _ = windows.shape
        width = self.down_weight.shape[2]
        kernel = self.up.weight.permute(2, 1, 0).reshape(3 * width, -1)  # (k d) (n h)
        hidden = self.dropout(self.activation(torch.addmm(self.up.bias, windows.reshape(batch * length, -1), kernel)))
        hidden = hidden.view(batch, length, self.n_experts, self.hidden) * weights[:, None, :, None]
        mixed = hidden.view(batch * length, -1) @ self.down_weight.view(-1, width)
        return mixed.view(batch, length, width) + (weights @ self.down_bias)[:, None, :]

    def _routed(self, windows: Tensor, weights: Tensor, routed: int) -> Tensor:
        """Only each utterance's ``routed`` highest-weighted experts (all of its non-zero ones)."""
        batch, length, _ = windows.shape
        n, h, width = self.n_experts, self.hidden, self.down_weight.shape[2]
        kept, chosen = weights.topk(routed, dim=-1)  # b k
        # Hidden units come out frames last, (b, k·h, t), so that every gathered weight is used as laid out.
        up = self.up.weight.view(n, h, width, 3).transpose(2, 3).reshape(n, -1)  # per expert h × (3·d)
        up = F.embedding(chosen, up).view(batch, routed * h, 3 * width)
        up_bias = F.embedding(chosen, self.up.bias.view(n, h)).view(batch, -1, 1)
        hidden = self.dropout(self.activation(torch.baddbmm(up_bias, up, windows.contiguous().transpose(1, 2))))
        hidden = (hidden.view(batch, routed, h, length) * kept[:, :, None, None]).view(batch, -1, length)
        down = F.embedding(chosen, self.down_weight.view(n, -1)).view(batch, routed * h, width)
        down_bias = torch.bmm(kept[:, None, :], F.embedding(chosen, self.down_bias))  # b 1 d
        return torch.bmm(hidden.transpose(1, 2), down) + down_bias


def runs_routed_only(n_experts: int, routed: int, hidden: int, length: int) -> bool:
    """Whether a bank computes only the ``routed`` (k) experts each utterance uses rather than all N.

    Only when k ≤ N/4 (measured on CPU: above that, gathering each utterance's expert weights costs
    more than skipping the other experts saves) and the gathered weights, k·4·d·h per utterance, take
    at most twice the memory of the frames they multiply, T·3d: k·h ≤ 1.5·T.
    """
    return 4 * routed <= n_experts and 2 * routed * hidden <= 3 * length


def lowrank_parameter_count(d_model: int, n_experts: int, rank: int) -> int:
    """Exact parameters of a low-rank bank: per expert 3·d·r + r (first conv) + r·d + d (second)."""
    return n_experts * (4 * d_model * rank + rank + d_model)
