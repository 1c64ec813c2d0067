"""Training one model: select on the validation split, test the one selected checkpoint, resume exactly.

A run directory holds ``config.yaml`` (the effective config), ``checkpoint.pt`` (the selected weights),
``last.pt`` (the state after the last finished epoch), and, once finished, ``metrics.json`` and plots
(``mmolre train`` adds ``train.log``, what it showed).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mmolre_cli import __version__
from mmolre_cli.atomic import atomic_path, remove_temporaries
from mmolre_cli.config import ModelConfig, RunConfig, component_names, save_yaml
from mmolre_cli.data.canonical import CanonicalData, read_canonical
from mmolre_cli.data.shapes import data_shapes
from mmolre_cli.data.synthetic import builtin_dataset_path
from mmolre_cli.errors import CheckpointError, DataError, TrainingError, UsageError
from mmolre_cli.metrics import left_out_emotions, left_out_note, tune_thresholds
from mmolre_cli.model import DataSignature, ModelOutput, emotion_pos_weight, multitask_loss
from mmolre_cli.model.build import build_model as build_architecture
from mmolre_cli.model.build import resolve_model
from mmolre_cli.model.loss import SplitLoss, combine, labelled
from mmolre_cli.model.normalize import fit_statistics
from mmolre_cli.plugins.registry import Registry
from mmolre_cli.training import distributed
from mmolre_cli.training.batches import Batch, TensorSplit
from mmolre_cli.training.checkpoint import (
    CHECKPOINT_NAME,
    FORMAT,
    LAST_NAME,
    atomic_save,
    load_checkpoint,
    rng_state,
    set_rng_state,
)
from mmolre_cli.training.evaluate import forward, metrics_of, predict, trivial_baseline
from mmolre_cli.training.optimizer import build_optimizer
from mmolre_cli.training.plots import plot_history, plot_routing
from mmolre_cli.training.schedule import Schedule, Selection
from mmolre_cli.training.tracking import CHECKPOINT_TAG, Tracker, experiment_name, run_tags, stored_tracking

CONFIG_NAME = "config.yaml"
METRICS_NAME = "metrics.json"
SEEDS_NAME = "seeds.json"  # the manifest of a multi-seed run (training.seeds)
CURVES_NAME = "curves.png"


@dataclass
class RunResult:
    """Where the run lives and what it measured (metrics of the selected checkpoint only)."""

    run_dir: Path
    selected_epoch: int
    metrics: dict[str, dict[str, float]]
    trivial_test: dict[str, float]
    history: list[dict[str, float]]
    tracking_run_id: str | None
    seed: int = 1
    routing: dict[str, Any] = dataclasses.field(default_factory=dict)
    thresholds: dict[str, float] | None = None


def data_path(config: RunConfig) -> Path:
    """The configured data file, or the built-in synthetic dataset (generated once, then cached)."""
    return Path(config.data) if config.data else builtin_dataset_path()


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
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(json_safe(values), indent=2))


def check_run_dir(out_dir: Path, resume: bool = False) -> None:
    """Refuse a directory that holds a run (nothing is overwritten), or, to resume, one that holds none."""
    if resume:
        if not (out_dir / CONFIG_NAME).is_file():
            raise CheckpointError(f"{out_dir}: not a run directory (no {CONFIG_NAME}); nothing to resume")
        if (out_dir / METRICS_NAME).exists():
            raise CheckpointError(f"{out_dir}: the run is complete ({METRICS_NAME}); nothing to resume")
        return
    if (out_dir / LAST_NAME).exists() and not (out_dir / METRICS_NAME).exists():
        raise CheckpointError(f"{out_dir}: holds an interrupted run; continue it with --resume {out_dir}")
    for name in (METRICS_NAME, CHECKPOINT_NAME, SEEDS_NAME):
        if (out_dir / name).exists():
            raise CheckpointError(f"{out_dir}: already holds a run ({name}); choose another --out")


def prepare_run_dir(out_dir: Path, resume: bool = False) -> None:
    """:func:`check_run_dir`, then create the directory, or clear the temporaries a killed write left there."""
    check_run_dir(out_dir, resume)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"--out {out_dir}: cannot create directory ({error.strerror or error})") from None
    remove_temporaries(out_dir)


def build_model(config: RunConfig, signature: DataSignature, registry: Registry) -> nn.Module:
    """The model for ``config``; unknown component names become UsageErrors naming the option."""
    return build_architecture(config.model, signature, registry)


def seed_everything(seed: int) -> None:
    """Seed every generator a model or plugin may draw from."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_deterministic(warn: Callable[[str], None]) -> None:
    """Deterministic kernels for the rest of this process: ``torch.use_deterministic_algorithms`` (an op
    without a deterministic kernel raises), cuDNN without autotuning, and the cuBLAS workspace they need
    (``CUBLAS_WORKSPACE_CONFIG``, unless set already: it must be set before CUDA is first used)."""
    if "CUBLAS_WORKSPACE_CONFIG" not in os.environ:
        if torch.cuda.is_initialized():
            warn("--deterministic: CUDA was in use before CUBLAS_WORKSPACE_CONFIG was set; set it to :4096:8 in "
                 "the environment, or cuBLAS may stay non-deterministic")  # fmt: skip
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


def training_loss(
    output: ModelOutput,
    batch: Batch,
    config: ModelConfig,
    pos_weight: torch.Tensor | None,
    context: distributed.Context = distributed.SINGLE,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One step's objective and its parts (each task's mean over this rank's labelled clips).

    Under data parallelism a task's summed loss on each rank is divided by the count of clips labelled
    for it on all ranks and multiplied by the number of ranks, which DDP's averaging of the ranks'
    gradients undoes: the step's gradient is that of one process on the whole global batch, however
    the labels fall among the ranks. The balance loss stays each rank's own (it is not a sum over clips).
    """
    loss, parts = multitask_loss(output, batch.sentiment, batch.emotion, config, pos_weight)
    if not context.active:
        return loss, parts
    known = labelled(batch.sentiment, batch.emotion)
    tasks = [task for task in known if task in parts]
    counts = torch.stack([known[task].sum() for task in tasks]).float()
    shares = counts * context.world / context.sum(counts).clamp(min=1)
    scaled = {task: parts[task] * share for task, share in zip(tasks, shares, strict=True)}
    return combine({**parts, **scaled}, config), parts


def check_labelled(data: CanonicalData, tasks: list[str], path: Path) -> None:
    """Every task has labels to train on and to select the checkpoint by (a task without any would be
    trained on nothing, or selected on the other task's loss alone)."""
    for split, use in (("train", "trained"), ("valid", "selected")):
        labels = {"sa": data.splits[split].sentiment, "er": data.splits[split].emotion}
        for task in tasks:
            if not np.isfinite(labels[task]).any():
                name = "sentiment" if task == "sa" else "emotion"
                raise DataError(f"{path}: {split}: no {name} labels, so task '{task}' cannot be {use} (--tasks)")


def check_precision(precision: str, device: str) -> None:
    if precision == "fp16" and torch.device(device).type != "cuda":
        raise UsageError("--precision fp16: needs a CUDA device (CPU autocast supports bf16; use bf16 or fp32)")


def train_run(
    config: RunConfig,
    out_dir: Path,
    registry: Registry,
    *,
    tracking_uri: str | None = None,
    parent: Tracker | None = None,
    resume: bool = False,
    stop_if_diverged: bool = True,
    score_test: bool = True,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
    warn: Callable[[str], None] | None = None,
    last: dict[str, Any] | None = None,
) -> RunResult:
    """Train, keep the checkpoint best on ``config.train.select`` over the validation split, and score it
    on valid and test. Under ``torchrun`` every rank calls this; only rank 0 writes files and tracks.

    ``resume`` continues the interrupted run in ``out_dir`` from its ``last.pt`` (same config) and ends with exactly
    the metrics of an uninterrupted run (``last``: that ``last.pt``, when read already). The run is tracked as a
    child of ``parent`` when given, else in a run of its own at ``tracking_uri`` (None: not tracked).
    ``progress(done, total)`` is called after every optimisation step and ``on_epoch`` with each epoch's summary,
    after its state is saved (so an exception there interrupts the run resumably). A training loss that is not
    finite stops the run with a TrainingError (its MLflow run marked failed), or, without ``stop_if_diverged``, is
    warned about and ends training after that epoch (the metrics are then the checkpoint selected before's).
    Without ``score_test`` the test split is never predicted (a tuning trial sees the validation split only).
    """
    warn = warn or (lambda message: warnings.warn(message, stacklevel=2))
    if config.train.deterministic:
        make_deterministic(warn)
    context, device = distributed.setup(config.train.device)
    path = data_path(config)
    data = read_canonical(path)
    # Modalities resolved and ``er`` dropped when the data hold no emotion labels.
    model_config, signature = resolve_model(config.model, data_shapes(data))
    # The data path as an absolute one: config.yaml's paths are read relative to the run directory.
    config = dataclasses.replace(config, model=model_config, data=str(path.resolve()) if config.data else None)
    check_labelled(data, config.model.tasks, path)
    train_cfg = config.train
    check_precision(train_cfg.precision, device)
    selection = Selection.for_metric(train_cfg.select, config.model.tasks, signature.emotions)
    check_run_dir(out_dir, resume)
    if resume and last is None and (out_dir / LAST_NAME).is_file():
        last = load_checkpoint(out_dir / LAST_NAME)
    if last is not None and last["config"] != config.to_dict():
        raise CheckpointError(f"{out_dir / LAST_NAME}: written with another config than {out_dir / CONFIG_NAME}")

    seed_everything(train_cfg.seed)
    model = build_model(config, signature, registry)
    # Statistics of the training split's valid frames only; buffers, so checkpoints carry them to evaluation.
    train_split = data.splits["train"]
    constant = fit_statistics(model.normalize, train_split.features, train_split.lengths)
    model.to(device)
    splits = {
        name: TensorSplit.from_split(split, config.model.modalities, model.encoders, data.raw_audio_rate)
        for name, split in data.splits.items()
    }
    train = splits["train"]
    if len(train) < context.world:
        raise UsageError(f"the training split has {len(train)} samples, fewer than the {context.world} processes")
    if context.main:  # only once the model is built: a run that cannot start leaves no directory behind
        prepare_run_dir(out_dir, resume)
        save_yaml(config, out_dir / CONFIG_NAME)
    pos_weight = emotion_pos_weight(train.emotion).to(device)
    optimizer = build_optimizer(model, train_cfg)
    steps_per_epoch = len(train.batch_indices(train_cfg.batch_size, rank=context.rank, world=context.world))
    schedule = Schedule(optimizer, train_cfg, steps_per_epoch, selection.higher)
    scaler = torch.amp.GradScaler(torch.device(device).type, enabled=train_cfg.precision == "fp16")
    shuffle = torch.Generator().manual_seed(train_cfg.seed)
    trained = nn.parallel.DistributedDataParallel(model) if context.active else model
    n_parameters = sum(p.numel() for p in model.parameters())
    plugins = registry.provenance((kind, name) for kind, name, _ in component_names(config.model))

    history: list[dict[str, float]] = []
    first_epoch, stopped, diverged = 1, False, ""
    if last is not None:
        model.load_state_dict(last["model"])
        try:
            optimizer.load_state_dict(last["optimizer"])
        except ValueError:  # another layout of parameter groups: a last.pt of an older version
            raise CheckpointError(
                f"{out_dir / LAST_NAME}: its optimiser state does not fit this version's parameter groups "
                f"(written by mmolre {last.get('mmolre_version', '?')}); train a new run"
            ) from None
        schedule.load_state_dict(last["schedule"])
        scaler.load_state_dict(last["scaler"])
        selection = Selection(**last["selection"])
        history, first_epoch, stopped = list(last["history"]), last["epoch"] + 1, last["stopped"]
        diverged = last.get("diverged") or ""
        if len(last["rng"]) != context.world:
            warn(f"resuming with {context.world} processes a run saved with {len(last['rng'])}: not bit-identical")
        set_rng_state(last["rng"][context.rank % len(last["rng"])], shuffle)

    tracker = parent.child(out_dir.name) if parent is not None and context.main else None
    tracker = tracker or Tracker(
        tracking_uri if context.main else None, out_dir, out_dir.name, on_warning=warn, experiment=experiment_name(path)
    )
    tags = None
    if tracker.enabled:  # hashing the data file is for tracking alone
        tags = {**run_tags(path, out_dir, plugins), CHECKPOINT_TAG: str((out_dir / CHECKPOINT_NAME).resolve())}
    tracker.start(
        {**config.to_dict(), "n_parameters": n_parameters, "world_size": context.world},
        resume_run_id=last["tracking_run_id"] if last is not None else None,
        tags=tags,
    )

    def selected_payload(epoch: int) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "mmolre_version": __version__,
            "config": config.to_dict(),
            "signature": signature.to_dict(),
            "pos_weight": pos_weight.cpu(),
            "epoch": epoch,
            "selection": selection.state_dict(),
            "thresholds": None,
            "plugins": plugins,
            "state_dict": model.state_dict(),
        }

    def resume_payload(epoch: int, rngs: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "mmolre_version": __version__,
            "config": config.to_dict(),
            "epoch": epoch,
            "stopped": stopped,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "schedule": schedule.state_dict(),
            "scaler": scaler.state_dict(),
            "selection": selection.state_dict(),
            "rng": rngs,
            "history": history,
            "tracking_run_id": tracker.run_id,
            "tracking": stored_tracking(tracker.uri, out_dir),
            "diverged": diverged,
        }

    step, total_steps = (first_epoch - 1) * steps_per_epoch, steps_per_epoch * train_cfg.epochs
    for epoch in range(first_epoch, train_cfg.epochs + 1):
        if stopped:
            break
        started = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        trained.train()
        losses, seen = SplitLoss(), 0
        for index in train.batch_indices(train_cfg.batch_size, shuffle, context.rank, context.world):
            batch = train.batch(index).to(device)
            output = forward(trained, batch, train_cfg.precision)
            loss, parts = training_loss(output, batch, config.model, pos_weight, context)
            if not (diverged or torch.isfinite(loss)):
                diverged = f"{out_dir}: the training loss is {loss.item()} in epoch {epoch} (step {step + 1})"
                if stop_if_diverged:
                    tracker.end("FAILED")
                    kept = f" (its last.pt holds epoch {epoch - 1})" if epoch > 1 else ""
                    raise TrainingError(
                        f"{diverged}: training diverged{kept}; train a new run (another --out) with a lower --lr "
                        "or --grad-clip"
                    )
                warn(
                    f"{diverged}: training diverged and stops after this epoch; its metrics are those of the "
                    "checkpoint selected before (undefined if none was)"
                )
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if train_cfg.grad_clip > 0:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), train_cfg.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            schedule.step()
            losses.add(parts, batch.sentiment, batch.emotion)
            seen += len(index)
            step += 1
            if progress:
                progress(step, total_steps)
        shares, losses = context.gather((losses, seen)), SplitLoss()
        for share in shares:
            losses.merge(share[0])
        summary = {"epoch": epoch, "lr": lr, "train_samples": sum(share[1] for share in shares)}
        for name, value in losses.means(config.model).items():
            summary["train_loss" if name == "loss" else f"train_loss_{name}"] = value
        valid = metrics_of(
            predict(model, splits["valid"], train_cfg.batch_size, pos_weight, device,
                    precision=train_cfg.precision, context=context),
            splits["valid"], model,
        )  # fmt: skip
        summary.update({f"valid_{k}": v for k, v in valid.items()})
        improved = selection.update(valid.get(selection.metric), epoch)
        schedule.end_epoch(valid.get(selection.metric))
        stopped = epoch - selection.epoch >= train_cfg.patience or bool(diverged)  # nothing later can be selected
        summary["seconds"] = time.perf_counter() - started
        history.append(summary)
        rngs = context.gather(rng_state(shuffle))
        if context.main:
            # The selected checkpoint first: a crash between the two writes then repeats this epoch on resume.
            if improved:
                atomic_save(selected_payload(epoch), out_dir / CHECKPOINT_NAME)
            atomic_save(resume_payload(epoch, rngs), out_dir / LAST_NAME)
        tracker.log_metrics({k: v for k, v in summary.items() if k != "epoch"}, step=epoch)
        if on_epoch:
            on_epoch(summary)

    # Test metrics come from the one checkpoint selected on the validation split, never from the last epoch.
    context.barrier()
    selected = torch.load(out_dir / CHECKPOINT_NAME, map_location="cpu", weights_only=True)
    model.load_state_dict(selected["state_dict"])
    options = {"precision": train_cfg.precision, "context": context}
    valid_predictions = predict(model, splits["valid"], train_cfg.batch_size, pos_weight, device, **options)
    thresholds = None
    if train_cfg.tune_thresholds:
        if "er" in valid_predictions.outputs:
            thresholds = tune_thresholds(valid_predictions.outputs["er"], splits["valid"].emotion.numpy())
        else:
            warn("--tune-thresholds: there is no emotion task, so there are no thresholds to tune")
    predictions = {"valid": valid_predictions}
    if score_test:
        predictions["test"] = predict(model, splits["test"], train_cfg.batch_size, pos_weight, device, **options)
    metrics = {name: metrics_of(p, splits[name], model, thresholds) for name, p in predictions.items()}
    routing = {name: p.routing.summary() for name, p in predictions.items()}
    # The emotions the MER means leave out (no positive or no negative label), named in the report and a warning.
    left_out = {
        name: reasons
        for name in metrics
        if "WA_mean" in metrics[name]
        and (reasons := left_out_emotions(splits[name].emotion.numpy(), signature.emotions))
    }
    for name, reasons in left_out.items():
        if context.main:
            warn(f"{name} split: {left_out_note(reasons)}")
    named_thresholds = (
        dict(zip(signature.emotions, thresholds.tolist(), strict=True)) if thresholds is not None else None
    )
    report = {
        "mmolre_version": __version__,
        "data": str(path),
        "seed": train_cfg.seed,
        "selection": {**selection.state_dict(), "direction": "max" if selection.higher else "min"},
        "selected_epoch": selection.epoch,
        "thresholds": named_thresholds,
        "n_parameters": n_parameters,
        "world_size": context.world,
        # Features constant on the training split's valid frames, which per-feature z-scoring only centres.
        "constant_features": constant,
        "plugins": plugins,
        "tracking_run_id": tracker.run_id,
        "samples": {name: len(split) for name, split in splits.items()},
        "metrics": metrics,
        "trivial_test": trivial_baseline(train, splits["test"], config.model, signature.emotions) if score_test else {},
        "left_out_emotions": left_out or None,
        "routing": routing,
        "history": history,
        "diverged": diverged or None,  # where the training loss first was not finite (ablate trains on)
    }
    if context.main:
        if thresholds is not None:
            atomic_save({**selected, "thresholds": torch.from_numpy(thresholds)}, out_dir / CHECKPOINT_NAME)
        plots = [plot_history(history, out_dir / CURVES_NAME, selection.epoch or None)]
        plots += [
            plot_routing(routing[name], out_dir / f"routing_{name}.png", f"routing on {name}") for name in routing
        ]
        write_json_atomic(report, out_dir / METRICS_NAME)
        tracker.log_metrics({f"test_{k}": v for k, v in metrics.get("test", {}).items()})
        # The checkpoint stays in the run directory alone: the run's tags give its path (CHECKPOINT_TAG).
        tracker.log_artifacts([out_dir / CONFIG_NAME, out_dir / METRICS_NAME, *plots])
        tracker.end()
    context.barrier()
    return RunResult(
        out_dir, selection.epoch, metrics, report["trivial_test"], history, tracker.run_id,
        train_cfg.seed, routing, named_thresholds,
    )  # fmt: skip
