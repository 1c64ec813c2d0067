"""Rebuilding trained models and scoring them on any split: from a checkpoint file, a run directory
(one seed or several) or an MLflow run."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from mmolre_cli.config import ModelConfig, build_config, component_names
from mmolre_cli.data.canonical import read_canonical
from mmolre_cli.errors import CheckpointError, DataError, MmolreError, UsageError, first_line
from mmolre_cli.metrics import left_out_emotions
from mmolre_cli.model import DataSignature
from mmolre_cli.plugins.registry import Registry
from mmolre_cli.state_files import read_json
from mmolre_cli.training.batches import TensorSplit
from mmolre_cli.training.checkpoint import CHECKPOINT_NAME, LAST_NAME, find_checkpoint, load_checkpoint
from mmolre_cli.training.evaluate import evaluate
from mmolre_cli.training.seeds import SEEDS_NAME, aggregate, seed_dir
from mmolre_cli.training.tracking import PARENT_TAG, RUN_DIR_TAG, check_reachable, default_tracking_uri
from mmolre_cli.training.trainer import build_model, data_path, write_json_atomic

RUN_ID = re.compile(r"[0-9a-f]{32}")


def _from_before_normalize(payload: dict[str, Any], path: Path) -> None:
    """Upgrade in place a checkpoint written before ``model.normalize`` (the code at 04d032a and earlier), whose
    built-in encoders applied LayerNorm to each frame themselves: that is ``normalize: frame``, with the
    LayerNorm's weights moved to ``normalize.<m>.norm``; plugin encoders alone mean ``normalize: none``."""
    model = payload.get("config", {}).get("model")
    if not isinstance(model, dict) or "normalize" in model or not isinstance(payload.get("state_dict"), dict):
        return
    state, modalities = payload["state_dict"], model.get("modalities") or []
    moved = {
        key: f"normalize.{m}.norm.{key[len(prefix) :]}"
        for m in modalities
        for prefix in (f"encoders.{m}.norm.", f"encoders.{m}.input.norm.")  # linear and lstm; transformer
        for key in state
        if key.startswith(prefix)
    }
    normed = {new.split(".")[1] for new in moved.values()}
    if normed and normed != set(modalities):
        raise CheckpointError(
            f"{path}: written before model.normalize, with built-in encoders for {', '.join(sorted(normed))} only; "
            "it cannot be evaluated by this version (retrain it)"
        )
    model["normalize"] = "frame" if normed else "none"
    for old, new in moved.items():
        state[new] = state.pop(old)


def restore_model(run_or_checkpoint: Path, registry: Registry) -> tuple[nn.Module, dict[str, Any]]:
    """The trained model (in eval mode) and its checkpoint payload."""
    path = find_checkpoint(run_or_checkpoint)
    if path.name == LAST_NAME:
        raise CheckpointError(f"{path}: holds what resuming needs, not a model to evaluate; eval {CHECKPOINT_NAME}")
    payload = load_checkpoint(path)
    _from_before_normalize(payload, path)
    try:
        config = build_config(payload["config"], source="config")
        check_plugins_loaded(path, config.model, payload.get("plugins") or [], registry)
        signature = DataSignature(**payload["signature"])
        model = build_model(config, signature, registry)
    except UsageError as error:  # a stored config this version or these plugins cannot build
        raise CheckpointError(f"{path}: {error}") from None
    except MmolreError:
        raise
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: incomplete checkpoint ({type(error).__name__}: {error})") from None
    try:
        model.load_state_dict(payload["state_dict"])
    except (KeyError, RuntimeError) as error:
        lines = str(error).strip().splitlines()
        detail = lines[1] if len(lines) > 1 else lines[0]  # torch heads its report "Error(s) in loading state_dict"
        raise CheckpointError(f"{path}: weights do not match the stored config ({detail.strip()})") from None
    payload["run_config"] = config
    return model.eval(), payload


def check_plugins_loaded(path: Path, model: ModelConfig, recorded: list[dict[str, str]], registry: Registry) -> None:
    """Every component the stored ``model`` uses is registered: a CheckpointError names the first that is not,
    the plugin and package (or file) it came from as ``recorded`` at training, and how to load it otherwise."""
    origins = {(record["kind"], record["name"]): record for record in recorded}
    for kind, name, _ in component_names(model):
        if name in registry.components[kind]:
            continue
        record = origins.get((kind, name))
        if record is None:  # a checkpoint written before mmolre recorded plugins
            source, how = "a plugin", "install its package, or give mmolre --plugins-dir DIR with its file"
        else:
            source = f"plugin {record['plugin']!r} ({record['origin']})"
            what, _, where = record["origin"].partition(" ")
            if what == "package":
                package, _, version = where.rpartition(" ")
                how = f"install it (pip install {package}=={version})"
            else:
                how = f"give mmolre --plugins-dir {Path(where).parent}"
        raise CheckpointError(f"{path}: the model uses {kind} {name!r} from {source}, which is not loaded; {how}")


def evaluate_checkpoint(
    run_or_checkpoint: Path, registry: Registry, *, data: Path | None = None, split: str = "test"
) -> dict[str, Any]:
    """Losses and metrics of a trained model on one split (default: the data it was trained on),
    with the MER thresholds stored in the checkpoint (0 unless tuned on the validation split)."""
    model, payload = restore_model(run_or_checkpoint, registry)
    path = data or data_path(payload["run_config"])
    if data is None and not Path(path).exists():
        raise DataError(f"{path}: file not found (the run's training data, as given when it was trained); give --data")
    dataset = read_canonical(path, splits=(split,))
    dims = dataset.feature_dims()
    for modality, expected in model.signature.input_dims.items():
        if dims.get(modality) != expected:
            raise DataError(
                f"{path}: {split}/features/{modality}: feature size {dims.get(modality)} differs from the "
                f"checkpoint's {expected}"
            )
    tensors = TensorSplit.from_split(dataset.splits[split], model.modalities, model.encoders, dataset.raw_audio_rate)
    thresholds = payload.get("thresholds")
    thresholds = None if thresholds is None else thresholds.numpy().astype(np.float64)
    run_config = payload["run_config"]
    metrics = evaluate(
        model, tensors, payload["pos_weight"], run_config.train.batch_size, precision=run_config.train.precision,
        thresholds=thresholds,
    )  # fmt: skip
    return {
        "checkpoint": str(find_checkpoint(run_or_checkpoint)),
        "data": str(path),
        "split": split,
        "thresholds": None if thresholds is None else thresholds.tolist(),
        "metrics": metrics,
        "left_out_emotions": left_out_emotions(tensors.emotion.numpy(), model.signature.emotions)
        if "WA_mean" in metrics
        else {},
    }


def evaluate_seeds(
    run_dir: Path, registry: Registry, *, data: Path | None = None, split: str = "test"
) -> dict[str, Any]:
    """Every seed of a multi-seed run on one split, and the mean and std over seeds."""
    seeds = read_json(run_dir / SEEDS_NAME, ("seeds",))["seeds"]
    results = {seed: evaluate_checkpoint(seed_dir(run_dir, seed), registry, data=data, split=split) for seed in seeds}
    mean, std = aggregate([{split: result["metrics"]} for result in results.values()])
    return {
        "run": str(run_dir),
        "data": next(iter(results.values()))["data"],
        "split": split,
        "seeds": {str(seed): result["metrics"] for seed, result in results.items()},
        "mean": mean[split],
        "std": std[split],
        "left_out_emotions": next(iter(results.values()))["left_out_emotions"],  # the same data for every seed
    }


def download_run(run_id: str, tracking_uri: str, destination: Path) -> Path:
    """The MLflow run's run directory (where its tags say it is), or for a run that logged its checkpoints as
    artifacts, the selected checkpoint, or a multi-seed parent run's directory of its children's checkpoints,
    downloaded under ``destination``."""
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    database = tracking_uri.removeprefix("sqlite:///") if tracking_uri.startswith("sqlite:///") else None
    if database is not None and not Path(database).is_file():  # MLflow would create an empty one
        raise CheckpointError(
            f"MLflow run {run_id} at {tracking_uri}: no such tracking database (run eval where you trained, "
            "or give --tracking-uri)"
        )
    try:
        check_reachable(tracking_uri)
        client = MlflowClient(tracking_uri)
        run = client.get_run(run_id)
        run_dir = run.data.tags.get(RUN_DIR_TAG)
        if run_dir is not None:  # the checkpoints stayed in the run directory
            if not (Path(run_dir) / SEEDS_NAME).is_file() and not (Path(run_dir) / CHECKPOINT_NAME).is_file():
                raise CheckpointError(
                    f"MLflow run {run_id}: its run directory {run_dir} holds no {CHECKPOINT_NAME} (moved or deleted?); "
                    "eval the run directory where it is now"
                )
            return Path(run_dir)
        if any(item.path == CHECKPOINT_NAME for item in client.list_artifacts(run_id)):
            return Path(
                mlflow.artifacts.download_artifacts(
                    run_id=run_id, artifact_path=CHECKPOINT_NAME, dst_path=str(destination), tracking_uri=tracking_uri
                )
            )
        children = client.search_runs([run.info.experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{run_id}'")
        seeds = sorted(int(child.data.params["train.seed"]) for child in children)
        if not seeds:
            raise CheckpointError(f"MLflow run {run_id}: has no {CHECKPOINT_NAME} and no child runs that do")
        for child in children:
            mlflow.artifacts.download_artifacts(
                run_id=child.info.run_id, artifact_path=CHECKPOINT_NAME,
                dst_path=str(seed_dir(destination, int(child.data.params["train.seed"]))), tracking_uri=tracking_uri,
            )  # fmt: skip
    except (MlflowException, OSError) as error:
        raise CheckpointError(f"MLflow run {run_id} at {tracking_uri}: {first_line(error)}") from None
    write_json_atomic({"seeds": seeds}, destination / SEEDS_NAME)
    return destination


def evaluate_target(
    target: str, registry: Registry, *, data: Path | None = None, split: str = "test", tracking_uri: str | None = None
) -> dict[str, Any]:
    """Score a checkpoint file, a run directory (every seed of a multi-seed one) or an MLflow run id.

    The result has ``metrics`` for one model, or ``seeds``, ``mean`` and ``std`` for several.
    """
    path = Path(target)
    if path.exists():
        if path.is_dir() and (path / SEEDS_NAME).is_file():
            return evaluate_seeds(path, registry, data=data, split=split)
        return evaluate_checkpoint(path, registry, data=data, split=split)
    if not RUN_ID.fullmatch(target):
        raise UsageError(f"{target}: no such run directory or checkpoint, and not an MLflow run id")
    tracking_uri = tracking_uri or default_tracking_uri()
    with tempfile.TemporaryDirectory(prefix="mmolre-eval-") as temporary:
        local = download_run(target, tracking_uri, Path(temporary))
        result = evaluate_target(str(local), registry, data=data, split=split)
    return {**result, **({"checkpoint": target} if "checkpoint" in result else {"run": target})}
