"""Training one MMoLRE model: select on the validation split, test the one selected checkpoint."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mmolre_cli import __version__
from mmolre_cli.config import RunConfig, save_yaml
from mmolre_cli.data.canonical import CanonicalData, read_canonical
from mmolre_cli.data.synthetic import builtin_dataset_path
from mmolre_cli.errors import CheckpointError, UsageError
from mmolre_cli.model import DataSignature, MMoLRE, emotion_pos_weight, multitask_loss
from mmolre_cli.model.mmolre import resolve_modalities
from mmolre_cli.plugins.registry import Registry
from mmolre_cli.training.batches import TensorSplit
from mmolre_cli.training.checkpoint import CHECKPOINT_NAME, FORMAT, atomic_save
from mmolre_cli.training.evaluate import evaluate, trivial_baseline
from mmolre_cli.training.tracking import Tracker

CONFIG_NAME = "config.yaml"
METRICS_NAME = "metrics.json"


@dataclass
class RunResult:
    """Where the run lives and what it measured (metrics of the selected checkpoint only)."""

    run_dir: Path
    selected_epoch: int
    metrics: dict[str, dict[str, float]]
    trivial_test: dict[str, float]
    history: list[dict[str, float]]
    tracking_run_id: str | None


def data_path(config: RunConfig) -> Path:
    """The configured data file, or the built-in synthetic dataset (generated once, then cached)."""
    return Path(config.data) if config.data else builtin_dataset_path()


def effective_config(config: RunConfig, data: CanonicalData) -> RunConfig:
    """The config as it will run on ``data``: modalities resolved, ``er`` dropped when no emotion labels exist."""
    signature = DataSignature(data.feature_dims(), list(data.emotions))
    try:
        modalities = resolve_modalities(config.model, signature)
    except ValueError as error:
        raise UsageError(f"--modalities: {error}") from None
    tasks = list(config.model.tasks)
    train_emotion = data.splits["train"].emotion
    if "er" in tasks and (train_emotion.size == 0 or not torch.from_numpy(train_emotion).isfinite().all(-1).any()):
        tasks.remove("er")
        if not tasks:
            raise UsageError("--tasks: the data has no emotion labels, so task 'er' cannot be trained alone")
    model = dataclasses.replace(config.model, modalities=modalities, tasks=tasks)
    return dataclasses.replace(config, model=model)


def json_safe(value: Any) -> Any:
    """NaN and infinities as null, so metrics files are strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value


def write_json_atomic(values: dict[str, Any], path: Path) -> None:
    """Strict JSON written to a temporary file and renamed into place."""
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as file:
            json.dump(json_safe(values), file, indent=2)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def prepare_run_dir(out_dir: Path) -> None:
    """Create the run directory; refuse one that already holds a run (nothing is overwritten)."""
    for name in (METRICS_NAME, CHECKPOINT_NAME):
        if (out_dir / name).exists():
            raise CheckpointError(f"{out_dir}: already holds a run ({name}); choose another --out")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"--out {out_dir}: cannot create directory ({error.strerror or error})") from None


def build_model(config: RunConfig, signature: DataSignature, registry: Registry) -> MMoLRE:
    """The model for ``config``; unknown component names become UsageErrors naming the option."""
    return MMoLRE(config.model, signature, registry)


def train_run(
    config: RunConfig,
    out_dir: Path,
    registry: Registry,
    *,
    tracking_uri: str | None = None,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
    warn: Callable[[str], None] | None = None,
) -> RunResult:
    """Train, keep the checkpoint with the lowest validation loss, and score it on valid and test.

    ``progress(done, total)`` is called after every optimisation step and ``on_epoch`` with each
    epoch's summary. Everything the run produces is written into ``out_dir``.
    """
    path = data_path(config)
    data = read_canonical(path)
    config = dataclasses.replace(effective_config(config, data), data=str(path) if config.data else None)
    signature = DataSignature({m: data.feature_dims()[m] for m in config.model.modalities}, list(data.emotions))
    train_cfg = config.train
    torch.manual_seed(train_cfg.seed)
    model = build_model(config, signature, registry).to(train_cfg.device)
    prepare_run_dir(out_dir)
    save_yaml(config, out_dir / CONFIG_NAME)

    splits = {name: TensorSplit.from_split(data.splits[name], config.model.modalities) for name in data.splits}
    pos_weight = emotion_pos_weight(splits["train"].emotion).to(train_cfg.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=train_cfg.lr, weight_decay=train_cfg.weight_decay)
    shuffle = torch.Generator().manual_seed(train_cfg.seed)
    steps_per_epoch = math.ceil(len(splits["train"]) / train_cfg.batch_size)
    total_steps = steps_per_epoch * train_cfg.epochs

    tracker = Tracker(tracking_uri, out_dir, out_dir.name, on_warning=warn)
    tracker.start({**config.to_dict(), "n_parameters": sum(p.numel() for p in model.parameters())})

    def checkpoint(epoch: int) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "mmolre_version": __version__,
            "config": config.to_dict(),
            "signature": signature.to_dict(),
            "pos_weight": pos_weight.cpu(),
            "epoch": epoch,
            "state_dict": model.state_dict(),
        }

    history: list[dict[str, float]] = []
    best_loss, best_epoch, step = math.inf, 0, 0
    for epoch in range(1, train_cfg.epochs + 1):
        started = time.perf_counter()
        model.train()
        sums: dict[str, float] = {}
        for batch in splits["train"].batches(train_cfg.batch_size, shuffle):
            batch = batch.to(train_cfg.device)
            output = model(batch.features, batch.lengths)
            loss, parts = multitask_loss(output, batch.sentiment, batch.emotion, config.model, pos_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), train_cfg.grad_clip)
            optimizer.step()
            for name, value in {"loss": loss, **parts}.items():
                key = "train_loss" if name == "loss" else f"train_loss_{name}"
                sums[key] = sums.get(key, 0.0) + value.item() * len(batch.sentiment)
            step += 1
            if progress:
                progress(step, total_steps)
        summary = {"epoch": epoch, **{k: v / len(splits["train"]) for k, v in sums.items()}}
        valid = evaluate(model, splits["valid"], pos_weight, train_cfg.batch_size, train_cfg.device)
        summary.update({f"valid_{k}": v for k, v in valid.items()})
        summary["seconds"] = time.perf_counter() - started
        history.append(summary)
        tracker.log_metrics({k: v for k, v in summary.items() if k != "epoch"}, step=epoch)
        if on_epoch:
            on_epoch(summary)
        if valid["loss"] < best_loss:
            best_loss, best_epoch = valid["loss"], epoch
            atomic_save(checkpoint(epoch), out_dir / CHECKPOINT_NAME)
        elif epoch - best_epoch >= train_cfg.patience:
            break

    # Test metrics come from the one checkpoint selected on validation loss, never from the last epoch.
    model.load_state_dict(torch.load(out_dir / CHECKPOINT_NAME, weights_only=True)["state_dict"])
    metrics = {
        name: evaluate(model, splits[name], pos_weight, train_cfg.batch_size, train_cfg.device)
        for name in ("valid", "test")
    }
    report = {
        "mmolre_version": __version__,
        "data": str(path),
        "selection": "lowest validation loss",
        "selected_epoch": best_epoch,
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "metrics": metrics,
        "trivial_test": trivial_baseline(splits["train"], splits["test"], config.model, signature.emotions),
        "history": history,
    }
    write_json_atomic(report, out_dir / METRICS_NAME)
    tracker.log_metrics({f"test_{k}": v for k, v in metrics["test"].items()})
    tracker.log_artifacts([out_dir / CONFIG_NAME, out_dir / METRICS_NAME, out_dir / CHECKPOINT_NAME])
    tracker.end()
    return RunResult(out_dir, best_epoch, metrics, report["trivial_test"], history, tracker.run_id)
