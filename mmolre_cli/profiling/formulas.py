"""Analytic parameter and MAC counts of the built-in experts and routers, to cross-check the counter."""

from __future__ import annotations

from mmolre_cli.config import ModelConfig
from mmolre_cli.model.experts import runs_routed_only

_TOP_K_ROUTERS = ("topk", "noisy_topk")  # the built-in routers that give each utterance exactly k experts


def expert_parameters(d_model: int, hidden: int) -> int:
    """One expert: Conv1d(d→h, k 3) has 3·d·h + h, Conv1d(h→d, k 1) has h·d + d; 4·d·h plus biases."""
    return 4 * d_model * hidden + hidden + d_model


def expert_bank_macs(
    rows: int, length: int, d_model: int, n_experts: int, hidden: int, routed: int | None = None
) -> int:
    """Forward MACs of a built-in bank of N experts on (rows, T, d) when each row uses ``routed`` of them
    (default all): per expert that runs, both convolutions at every frame and the weighted second-layer
    bias (d). All N run unless the bank runs only the routed ones (``runs_routed_only``)."""
    executed = n_experts if routed is None or not runs_routed_only(n_experts, routed, hidden, length) else routed
    return rows * executed * (length * hidden * 4 * d_model + d_model)


def router_macs(rows: int, d_model: int, n_experts: int, router: str) -> int | None:
    """Forward MACs (eval mode) of a built-in router on ``rows`` pooled vectors; None for other routers."""
    gated = {"topk", "noisy_topk", "soft"}  # one Linear(d→N) each; the noise layer runs only in training
    if router == "uniform":
        return 0
    return rows * d_model * n_experts if router in gated else None


def expert_hidden(config: ModelConfig) -> int | None:
    """Hidden width of the configured expert type (rank for ``lowrank``, d for ``dense``); None for plugins."""
    return {"lowrank": config.experts.rank, "dense": config.d_model}.get(config.experts.type)


def unitse_macs(config: ModelConfig, lengths: dict[str, int], batch: int) -> int | None:
    """Forward MACs of every UniTSE expert and router for ``batch`` utterances (eval mode), or None
    when a component has no formula here (a plugin expert or router)."""
    hidden = expert_hidden(config)
    if not config.unitse:
        return 0
    if hidden is None:
        return None
    d, n, rows = config.d_model, config.experts.shared, len(config.tasks) * batch
    total = 0
    for modality in config.modalities or lengths:
        length = lengths[modality]
        per_block = 0
        if config.shared_experts:
            routers = router_macs(batch, d, n, config.router)
            if routers is None:
                return None
            routed = config.topk if config.router in _TOP_K_ROUTERS else n
            per_block += expert_bank_macs(rows, length, d, n, hidden, routed) + len(config.tasks) * routers
        if config.specific_experts:
            per_block += len(config.tasks) * expert_bank_macs(batch, length, d, 1, hidden)
        total += config.blocks * per_block
    return total
