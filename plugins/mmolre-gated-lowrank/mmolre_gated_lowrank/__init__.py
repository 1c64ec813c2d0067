"""mmolre plugin: the ``gated_lowrank`` expert, a low-rank expert with a SwiGLU bottleneck.

The model is imported when a bank is built, so ``mmolre plugins`` does not import torch.
"""

from mmolre_cli import hookimpl

__version__ = "0.1.0"


def gated_lowrank_experts(d_model: int, n_experts: int, rank: int, dropout: float):
    """The expert factory: a bank of ``n_experts`` gated low-rank experts of bottleneck ``rank``."""
    from mmolre_gated_lowrank.bank import GatedLowRankBank

    return GatedLowRankBank(d_model, n_experts, rank, dropout)


@hookimpl
def register_experts(register):
    register(
        "gated_lowrank",
        gated_lowrank_experts,
        "Conv1d(d→2r, k3) → SwiGLU → Conv1d(r→d, k1); ≈ 7·d·r params",
    )
