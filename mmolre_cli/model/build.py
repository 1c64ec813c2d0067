"""One entry point from a model config to a model: MMoLRE or one of the baselines."""

from __future__ import annotations

from torch import nn

from mmolre_cli.config import ModelConfig
from mmolre_cli.model.baselines import GatedExperts, HardSharing
from mmolre_cli.model.mmolre import DataSignature, MMoLRE
from mmolre_cli.plugins.registry import Registry


def build_model(config: ModelConfig, signature: DataSignature, registry: Registry) -> nn.Module:
    """The model ``config.architecture`` names; every one maps (features, lengths) to a ModelOutput."""
    if config.architecture == "mmolre":
        return MMoLRE(config, signature, registry)
    if config.architecture == "hps":
        return HardSharing(config, signature, registry)
    if config.architecture in ("mmoe", "cgc"):
        return GatedExperts(config, signature, registry, task_experts=config.architecture == "cgc")
    raise ValueError(f"unknown model architecture {config.architecture!r}")
