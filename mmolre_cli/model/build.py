"""One entry point from a model config to a model: MMoLRE or one of the baselines."""

from __future__ import annotations

import dataclasses

from torch import nn

from mmolre_cli.config import ModelConfig
from mmolre_cli.data.shapes import DataShapes
from mmolre_cli.errors import UsageError
from mmolre_cli.model.baselines import GatedExperts, HardSharing
from mmolre_cli.model.mmolre import Components, DataSignature, MMoLRE, resolve_modalities


def build_model(config: ModelConfig, signature: DataSignature, registry: Components) -> nn.Module:
    """The model ``config.architecture`` names; every one maps (features, lengths) to a ModelOutput."""
    if config.architecture == "mmolre":
        return MMoLRE(config, signature, registry)
    if config.architecture == "hps":
        return HardSharing(config, signature, registry)
    if config.architecture in ("mmoe", "cgc"):
        return GatedExperts(config, signature, registry, task_experts=config.architecture == "cgc")
    raise ValueError(f"unknown model architecture {config.architecture!r}")


def resolve_model(config: ModelConfig, shapes: DataShapes) -> tuple[ModelConfig, DataSignature]:
    """The model config as it runs on data of these shapes (modalities resolved, ``er`` dropped without
    emotion labels), and the data signature to build it with."""
    signature = DataSignature(dict(shapes.input_dims), list(shapes.emotions))
    try:
        modalities = resolve_modalities(config, signature)
    except ValueError as error:
        raise UsageError(f"--modalities: {error}") from None
    for modality in config.encoders:
        if modality not in shapes.input_dims:
            have = ", ".join(shapes.input_dims)
            raise UsageError(f"--encoder {modality}: not a modality of the data (it has {have})")
    tasks = [task for task in config.tasks if task != "er" or shapes.emotion_labels]
    if not tasks:
        raise UsageError("--tasks: the data has no emotion labels, so task 'er' cannot be trained alone")
    signature = DataSignature({m: shapes.input_dims[m] for m in modalities}, list(shapes.emotions))
    return dataclasses.replace(config, modalities=modalities, tasks=tasks), signature
