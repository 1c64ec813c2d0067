"""Rebuilding a trained model from its checkpoint and scoring it on any split of a data file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmolre_cli.config import build_config
from mmolre_cli.data.canonical import read_canonical
from mmolre_cli.errors import CheckpointError, DataError, MmolreError
from mmolre_cli.model import DataSignature, MMoLRE
from mmolre_cli.plugins.registry import Registry
from mmolre_cli.training.batches import TensorSplit
from mmolre_cli.training.checkpoint import find_checkpoint, load_checkpoint
from mmolre_cli.training.evaluate import evaluate
from mmolre_cli.training.trainer import data_path


def restore_model(run_or_checkpoint: Path, registry: Registry) -> tuple[MMoLRE, dict[str, Any]]:
    """The trained model (in eval mode) and its checkpoint payload."""
    path = find_checkpoint(run_or_checkpoint)
    payload = load_checkpoint(path)
    try:
        config = build_config(payload["config"], source=f"{path}: config")
        signature = DataSignature(**payload["signature"])
        model = MMoLRE(config.model, signature, registry)
    except MmolreError:
        raise
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: incomplete checkpoint ({type(error).__name__}: {error})") from None
    try:
        model.load_state_dict(payload["state_dict"])
    except (KeyError, RuntimeError) as error:
        first = str(error).strip().splitlines()[0]
        raise CheckpointError(f"{path}: weights do not match the stored config ({first})") from None
    payload["run_config"] = config
    return model.eval(), payload


def evaluate_checkpoint(
    run_or_checkpoint: Path, registry: Registry, *, data: Path | None = None, split: str = "test"
) -> dict[str, Any]:
    """Losses and metrics of a trained model on one split (default: the data it was trained on)."""
    model, payload = restore_model(run_or_checkpoint, registry)
    path = data or data_path(payload["run_config"])
    dataset = read_canonical(path, splits=(split,))
    dims = dataset.feature_dims()
    for modality, expected in model.signature.input_dims.items():
        if dims.get(modality) != expected:
            raise DataError(
                f"{path}: {split}/features/{modality}: feature size {dims.get(modality)} differs from the "
                f"checkpoint's {expected}"
            )
    tensors = TensorSplit.from_split(dataset.splits[split], model.modalities)
    metrics = evaluate(model, tensors, payload["pos_weight"], payload["run_config"].train.batch_size)
    return {
        "checkpoint": str(find_checkpoint(run_or_checkpoint)),
        "data": str(path),
        "split": split,
        "metrics": metrics,
    }
