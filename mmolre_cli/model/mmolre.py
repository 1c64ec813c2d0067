"""The MMoLRE model: encoders → UniTSE per modality → task-adaptive fusion → task heads."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from torch import Tensor, nn

from mmolre_cli.config import ModelConfig
from mmolre_cli.model.heads import make_head
from mmolre_cli.model.masking import lengths_to_mask
from mmolre_cli.model.normalize import build_input_norms
from mmolre_cli.model.pretrained import is_pretrained, takes_pretrained
from mmolre_cli.model.routers import Route
from mmolre_cli.model.unitse import UniTSE, UniTSEBlock


class Components(Protocol):
    """What a model is built from: the factory of a component by kind and name, with the option that chose it
    for messages. The plugin registry (``mmolre_cli.plugins.registry.Registry``, a layer above) is one."""

    def get(self, kind: str, name: str, *, option: str | None = None) -> Registered: ...


class Registered(Protocol):
    factory: Callable[..., Any]


@dataclass(frozen=True)
class DataSignature:
    """What the model needs to know about the data: feature sizes per modality and emotion names."""

    input_dims: dict[str, int]
    emotions: list[str]

    def to_dict(self) -> dict:
        return {"input_dims": dict(self.input_dims), "emotions": list(self.emotions)}


@dataclass
class ModelOutput:
    """``predictions`` per task (sa: (B,), er: (B, C) logits); ``aux_losses`` by name, unweighted;
    ``routes`` keyed ``(modality, block, task)`` for routing analysis."""

    predictions: dict[str, Tensor]
    aux_losses: dict[str, Tensor]
    routes: dict[tuple[str, int, str], Route] = field(default_factory=dict)


def resolve_modalities(config: ModelConfig, signature: DataSignature) -> list[str]:
    """The configured modalities (all of the data's when unset), in the data's order."""
    if config.modalities is None:
        return list(signature.input_dims)
    missing = [m for m in config.modalities if m not in signature.input_dims]
    if missing:
        raise ValueError(f"modalities {missing} are not in the data (it has {list(signature.input_dims)})")
    return list(config.modalities)


def build_encoders(
    config: ModelConfig, signature: DataSignature, registry: Components, modalities: list[str]
) -> nn.ModuleDict:
    """One registered encoder per modality, projecting its features to the model width; a factory that takes
    ``pretrained`` (``hf_text``, ``hf_audio``) gets ``config.pretrained``."""

    def build(modality: str) -> nn.Module:
        option = f"model.encoders.{modality}" if modality in config.encoders else "model.encoder"
        factory = registry.get("encoder", config.encoder_for(modality), option=option).factory
        extra = {"pretrained": config.pretrained} if takes_pretrained(factory) else {}
        return factory(
            input_dim=signature.input_dims[modality], d_model=config.d_model, dropout=config.dropout, **extra
        )

    return nn.ModuleDict({m: build(m) for m in modalities})


def input_norms(config: ModelConfig, signature: DataSignature, encoders: nn.ModuleDict) -> nn.ModuleDict:
    """``model.normalize`` for each modality whose encoder reads pre-extracted features (raw input is left as is)."""
    featured = [m for m, encoder in encoders.items() if not is_pretrained(encoder)]
    return build_input_norms(config.normalize, signature.input_dims, featured)


def encode(encoder: nn.Module, norms: nn.ModuleDict, m: str, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """(B, T, d) encoded and its mask: the input's, or the encoder's own where it returns one (an encoder on
    raw input, whose output steps are not its input's). Features are normalised first where ``norms`` has ``m``."""
    out = encoder(norms[m](x, mask) if m in norms else x, mask)
    return out if isinstance(out, tuple) else (out, mask)


class MMoLRE(nn.Module):
    """Multimodal Mixture of Low-Rank Experts for joint sentiment analysis and emotion recognition."""

    def __init__(self, config: ModelConfig, signature: DataSignature, registry: Components):
        super().__init__()
        self.config, self.signature = config, signature
        self.tasks = list(config.tasks)
        self.modalities = resolve_modalities(config, signature)
        d, dropout = config.d_model, config.dropout
        self.encoders = build_encoders(config, signature, registry, self.modalities)
        self.normalize = input_norms(config, signature, self.encoders)
        self.unitse = (
            nn.ModuleDict({m: UniTSE([self._block(registry) for _ in range(config.blocks)]) for m in self.modalities})
            if config.unitse
            else None
        )
        self.fusion = registry.get("fusion", config.fusion, option="model.fusion").factory(
            d_model=d, modalities=self.modalities, tasks=self.tasks, dropout=dropout
        )
        self.heads = nn.ModuleDict({t: make_head(t, d, len(signature.emotions), dropout) for t in self.tasks})

    def _block(self, registry: Components) -> UniTSEBlock:
        config, experts = self.config, self.config.experts
        expert = registry.get("expert", experts.type, option="model.experts.type").factory
        shared = routers = specific = None
        if config.shared_experts:
            shared = expert(
                d_model=config.d_model, n_experts=experts.shared, rank=experts.rank, dropout=experts.dropout
            )
            router = registry.get("router", config.router, option="model.router").factory
            routers = nn.ModuleDict(
                {t: router(d_model=config.d_model, n_experts=experts.shared, topk=config.topk) for t in self.tasks}
            )
        if config.specific_experts:
            specific = nn.ModuleDict(
                {
                    t: expert(d_model=config.d_model, n_experts=1, rank=experts.rank, dropout=experts.dropout)
                    for t in self.tasks
                }
            )
        return UniTSEBlock(config.d_model, self.tasks, shared, routers, specific)

    def forward(self, features: Mapping[str, Tensor], lengths: Mapping[str, Tensor]) -> ModelOutput:
        """features {m: (B, T_m, D_m)}, lengths {m: (B,)} → predictions, auxiliary losses, routes."""
        masks = {m: lengths_to_mask(lengths[m], features[m].shape[1]) for m in self.modalities}
        n_tasks = len(self.tasks)
        per_task, routes = {}, {}
        for m in self.modalities:
            encoded, masks[m] = encode(self.encoders[m], self.normalize, m, features[m], masks[m])  # b t d
            h = encoded.unsqueeze(0).expand(n_tasks, *encoded.shape)  # τ b t d: every task starts equal
            if self.unitse is not None:
                h, block_routes = self.unitse[m](h, masks[m])
                for block, by_task in enumerate(block_routes):
                    routes.update({(m, block, task): route for task, route in by_task.items()})
            per_task[m] = h
        fused = self.fusion(per_task, masks)  # τ b d
        predictions = {task: self.heads[task](fused[i]) for i, task in enumerate(self.tasks)}
        if "sa" in predictions:
            predictions["sa"] = predictions["sa"].squeeze(-1)
        aux = {}
        if routes:
            aux["balance"] = sum(route.balance_loss for route in routes.values())
        return ModelOutput(predictions, aux, routes)
