"""Multi-task baselines of SPEC §3, built from the same encoders, fusions, heads and expert banks as MMoLRE.

- **HPS** (hard parameter sharing): one trunk shared by every task (encoders, ``blocks`` residual dense
  convolution layers per modality, one fusion query), then one head per task.
- **MMoE**: per modality one layer of N dense experts; each task mixes all of them with its own
  softmax gate (Ma et al., KDD 2018).
- **CGC**: MMoE plus one dense expert per task; each task's gate spans the shared experts and its own
  (the single-level form of PLE, Tang et al., RecSys 2020).

The gated baselines keep their papers' form: one expert layer, no residual path and no balance loss.
Their experts therefore start at a Conv1d's default initialisation, not at zero as MMoLRE's and HPS's
residual experts do: every model's predictions depend on its input from the first step, and the encoders
and gates get a gradient from it.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from mmolre_cli.config import ModelConfig
from mmolre_cli.model.experts import ConvExpertBank
from mmolre_cli.model.heads import make_head
from mmolre_cli.model.masking import lengths_to_mask, masked_mean
from mmolre_cli.model.mmolre import (
    Components,
    DataSignature,
    ModelOutput,
    build_encoders,
    encode,
    input_norms,
    resolve_modalities,
)
from mmolre_cli.model.routers import SoftRouter
from mmolre_cli.model.unitse import UniTSE, UniTSEBlock

#: The one pseudo-task HPS builds its shared fusion and trunk layers for.
SHARED = "shared"


class _MultitaskBaseline(nn.Module):
    """Encoders, a fusion built for ``fusion_tasks`` and one head per task, as MMoLRE has them."""

    def __init__(self, config: ModelConfig, signature: DataSignature, registry: Components, fusion_tasks: list[str]):
        super().__init__()
        self.config, self.signature = config, signature
        self.tasks = list(config.tasks)
        self.modalities = resolve_modalities(config, signature)
        d, dropout = config.d_model, config.dropout
        self.encoders = build_encoders(config, signature, registry, self.modalities)
        self.normalize = input_norms(config, signature, self.encoders)
        self.fusion = registry.get("fusion", config.fusion, option="model.fusion").factory(
            d_model=d, modalities=self.modalities, tasks=fusion_tasks, dropout=dropout
        )
        self.heads = nn.ModuleDict({t: make_head(t, d, len(signature.emotions), dropout) for t in self.tasks})

    def _encode(self, features: Mapping[str, Tensor], lengths: Mapping[str, Tensor]):
        masks = {m: lengths_to_mask(lengths[m], features[m].shape[1]) for m in self.modalities}
        encoded = {m: encode(self.encoders[m], self.normalize, m, features[m], masks[m]) for m in self.modalities}
        return {m: h for m, (h, _) in encoded.items()}, {m: mask for m, (_, mask) in encoded.items()}

    def _predict(self, fused: Mapping[str, Tensor]) -> dict[str, Tensor]:
        predictions = {task: self.heads[task](fused[task]) for task in self.tasks}
        if "sa" in predictions:
            predictions["sa"] = predictions["sa"].squeeze(-1)
        return predictions


class HardSharing(_MultitaskBaseline):
    """HPS: every layer up to the heads is shared by all tasks."""

    def __init__(self, config: ModelConfig, signature: DataSignature, registry: Components):
        super().__init__(config, signature, registry, fusion_tasks=[SHARED])
        d = config.d_model

        def layer() -> UniTSEBlock:
            # A UniTSE block with one pseudo-task, no router and one dense expert: Norm(h + f(h)).
            bank = ConvExpertBank(d, 1, hidden=d, dropout=config.experts.dropout)
            return UniTSEBlock(d, [SHARED], None, None, nn.ModuleDict({SHARED: bank}))

        self.trunk = nn.ModuleDict({m: UniTSE([layer() for _ in range(config.blocks)]) for m in self.modalities})

    def forward(self, features: Mapping[str, Tensor], lengths: Mapping[str, Tensor]) -> ModelOutput:
        encoded, masks = self._encode(features, lengths)
        shared = {m: self.trunk[m](encoded[m].unsqueeze(0), masks[m])[0] for m in self.modalities}  # 1 b t d
        fused = self.fusion(shared, masks)[0]
        return ModelOutput(self._predict({task: fused for task in self.tasks}), {})


class GatedExperts(_MultitaskBaseline):
    """MMoE (``task_experts`` False) or CGC (True): soft-gated dense experts, one gate per task."""

    def __init__(self, config: ModelConfig, signature: DataSignature, registry: Components, task_experts: bool):
        super().__init__(config, signature, registry, fusion_tasks=list(config.tasks))
        d, n, dropout = config.d_model, config.experts.shared, config.experts.dropout
        self.n_shared = n

        def bank(n_experts: int) -> ConvExpertBank:
            return ConvExpertBank(d, n_experts, hidden=d, dropout=dropout, zero_start=False)

        self.shared = nn.ModuleDict({m: bank(n) for m in self.modalities})
        self.own = (
            nn.ModuleDict({m: nn.ModuleDict({t: bank(1) for t in self.tasks}) for m in self.modalities})
            if task_experts
            else None
        )
        gated = n + (1 if task_experts else 0)
        self.gates = nn.ModuleDict(
            {m: nn.ModuleDict({t: SoftRouter(d, gated, gated) for t in self.tasks}) for m in self.modalities}
        )

    def forward(self, features: Mapping[str, Tensor], lengths: Mapping[str, Tensor]) -> ModelOutput:
        encoded, masks = self._encode(features, lengths)
        n_tasks, per_task, routes = len(self.tasks), {}, {}
        for m in self.modalities:
            x, mask = encoded[m], masks[m]
            pooled = masked_mean(x, mask)
            for task in self.tasks:
                routes[(m, 0, task)] = self.gates[m][task](pooled)
            weights = torch.stack([routes[(m, 0, task)].weights for task in self.tasks])  # τ b (n + own)
            # Every task's mixture of the shared bank in one call, the tasks stacked along the batch.
            mixed = self.shared[m](
                x.repeat(n_tasks, 1, 1), mask.repeat(n_tasks, 1), weights[..., : self.n_shared].flatten(0, 1)
            ).view(n_tasks, *x.shape)
            if self.own is not None:
                own = [self.own[m][t](x, mask, weights[i, :, self.n_shared :]) for i, t in enumerate(self.tasks)]
                mixed = mixed + torch.stack(own)
            per_task[m] = mixed  # τ b t d
        fused = self.fusion(per_task, masks)
        return ModelOutput(self._predict({task: fused[i] for i, task in enumerate(self.tasks)}), {}, routes)
