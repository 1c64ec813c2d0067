"""The AdamW optimiser, with weight decay on weight matrices only.

Decay pulls a parameter towards 0: right for the weights of linear maps, convolutions and experts,
wrong for parameters whose 0 is no neutral value. These are left undecayed:

- every parameter of a normalisation layer (``LayerNorm``, ``BatchNorm``, ``GroupNorm``, ``RMSNorm``)
  and of an embedding table (``nn.Embedding``, ``nn.EmbeddingBag``);
- biases (a parameter whose name ends in ``bias``) and every parameter with fewer than 2 dimensions;
- the parameters a module names in its ``no_weight_decay`` attribute: the fusions' learned queries
  and modality embeddings (``model/fusion.py``); a plugin's module may name its own.
"""

from __future__ import annotations

import torch
from torch import nn

from mmolre_cli.config import TrainConfig

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
    """AdamW at ``config.lr``: ``config.weight_decay`` on the first group, none on the second."""
    decay, no_decay = parameter_groups(model)
    groups = [
        {"params": [parameter for _, parameter in decay], "weight_decay": config.weight_decay},
        {"params": [parameter for _, parameter in no_decay], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=config.lr)
