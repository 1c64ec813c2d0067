"""The AdamW optimiser, with weight decay on weight matrices only.

Decay pulls a parameter towards 0: right for the weights of linear maps, convolutions and experts,
wrong for parameters whose 0 is no neutral value. These are left undecayed:

- every parameter of a normalisation layer (``LayerNorm``, ``BatchNorm``, ``GroupNorm``, ``RMSNorm``)
  and of an embedding table (``nn.Embedding``, ``nn.EmbeddingBag``);
- biases (a parameter whose name ends in ``bias``) and every parameter with fewer than 2 dimensions;
- the parameters a module names in its ``no_weight_decay`` attribute: the fusions' learned queries
  and modality embeddings (``model/fusion.py``); a plugin's module may name its own.

A pretrained backbone's parameters form groups of their own, at ``train.encoder_lr``.
"""

from __future__ import annotations

import torch
from torch import nn

from mmolre_cli.config import TrainConfig
from mmolre_cli.model.pretrained import is_pretrained

#: Modules none of whose parameters are decayed.
UNDECAYED_MODULES: tuple[type[nn.Module], ...] = (
    nn.LayerNorm,
    nn.GroupNorm,
    nn.RMSNorm,
    nn.modules.batchnorm._NormBase,
    nn.Embedding,
    nn.EmbeddingBag,
)


def decayed(module: nn.Module, name: str, parameter: nn.Parameter) -> bool:
    """Whether ``module``'s own parameter ``name`` gets weight decay (see the module docstring)."""
    return not (
        isinstance(module, UNDECAYED_MODULES)
        or name.endswith("bias")
        or parameter.dim() < 2
        or name in getattr(module, "no_weight_decay", ())
    )


def parameter_groups(model: nn.Module) -> tuple[list[tuple[str, nn.Parameter]], list[tuple[str, nn.Parameter]]]:
    """``model``'s trainable parameters (qualified name, parameter) with weight decay and without, in model order."""
    decay: list[tuple[str, nn.Parameter]] = []
    no_decay: list[tuple[str, nn.Parameter]] = []
    seen: set[int] = set()
    for prefix, module in model.named_modules():
        for name, parameter in module.named_parameters(recurse=False):
            if not parameter.requires_grad or id(parameter) in seen:  # a shared parameter is grouped once
                continue
            seen.add(id(parameter))
            group = decay if decayed(module, name, parameter) else no_decay
            group.append((f"{prefix}.{name}" if prefix else name, parameter))
    return decay, no_decay


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW with ``config.weight_decay`` on the decayed parameters only, at ``config.lr``; a pretrained
    backbone's parameters (``hf_text``, ``hf_audio``) at ``config.encoder_lr`` where that is set."""
    backbones = {id(p) for module in model.modules() if is_pretrained(module) for p in module.backbone.parameters()}
    encoder_lr = config.lr if config.encoder_lr is None else config.encoder_lr
    groups = []
    for members, weight_decay in zip(parameter_groups(model), (config.weight_decay, 0.0), strict=True):
        for on_backbone, lr in ((False, config.lr), (True, encoder_lr)):
            params = [parameter for _, parameter in members if (id(parameter) in backbones) == on_backbone]
            if params:
                groups.append({"params": params, "weight_decay": weight_decay, "lr": lr})
    return torch.optim.AdamW(groups, lr=config.lr)
