"""One trial of a study: train its configuration on the training split, select and score it on the
validation split only, report the validation loss of every epoch to the study's pruner."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import optuna

from mmolre_cli.ablation.runner import open_worker, print_warning
from mmolre_cli.config import RunConfig
from mmolre_cli.plugins.registry import Registry
from mmolre_cli.training.tracking import Tracker

PRUNERS = ("median", "hyperband", "none")
#: The MLflow tag that records how a trial ended.
STATE_TAG = "optuna.state"


def make_pruner(name: str, epochs: int) -> optuna.pruners.BasePruner:
    """``--pruner``: the median rule, successive halving (Hyperband, over ``epochs``), or none."""
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2)  # epochs count from 1
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(epochs, 1))
    return optuna.pruners.NopPruner()


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """The RDB storage at ``url``; SQLite waits for a lock held by another process instead of failing."""
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None
    return optuna.storages.RDBStorage(url, engine_kwargs=engine)


@dataclass
class TrialJob:
    """Everything a worker needs to train one trial, in this process or another."""

    number: int
    trial_id: int
    config: RunConfig
    directory: Path  # the trial's run directory
    storage: str  # the study's RDB URL: the worker reports to it and asks it whether to prune
    study: str
    pruner: str
    higher: bool  # the objective's direction: the pruner compares −loss when the objective is maximised
    objective: str  # the validation metric the study optimises
    out: Path
    tracking_uri: str | None
    parent_run_id: str | None
    threads: int | None
    plugins_dir: Path | None


@dataclass
class TrialResult:
    """How a trial ended (COMPLETE or PRUNED), its objective value and its selected checkpoint's validation metrics."""

    number: int
    state: str
    value: float | None
    epochs: int
    valid: dict[str, float | None] = field(default_factory=dict)


def _tag(parent: Tracker, run_id: str | None, name: str, state: str, status: str | None = None) -> None:
    run = parent.child(name)
    run.run_id = run_id
    run.set_tags({STATE_TAG: state})
    if status:
        run.end(status)


def train_trial(
    job: TrialJob,
    registry: Registry,
    parent: Tracker,
    *,
    warn: Callable[[str], None] | None = None,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
) -> TrialResult:
    """Train (or, after a killed worker, resume) the trial; pruned when the study's pruner says so after an epoch."""
    from mmolre_cli.training.checkpoint import LAST_NAME, load_checkpoint
    from mmolre_cli.training.seeds import read_result
    from mmolre_cli.training.trainer import CONFIG_NAME, METRICS_NAME, train_run

    study = optuna.load_study(
        study_name=job.study, storage=open_storage(job.storage),
        pruner=make_pruner(job.pruner, job.config.train.epochs),
    )  # fmt: skip
    # Optuna gives a trial by its storage id; the driver passes the id of the trial it asked for.
    trial = optuna.trial.Trial(study, job.trial_id)

    def report(summary: dict[str, float]) -> None:
        loss = summary["valid_loss"]
        trial.report(-loss if job.higher else loss, summary["epoch"])
        if on_epoch:
            on_epoch(summary)
        if trial.should_prune():  # raised after the epoch's state is saved: the run directory stays consistent
            raise optuna.TrialPruned(f"trial {job.number} pruned after epoch {summary['epoch']}")

    if (job.directory / METRICS_NAME).is_file():  # finished, but its process died before the study heard of it
        result = read_result(job.directory)
    else:
        try:
            result = train_run(
                job.config, job.directory, registry, parent=parent, resume=(job.directory / CONFIG_NAME).is_file(),
                stop_if_diverged=False, score_test=False, on_epoch=report, warn=warn,
            )  # fmt: skip
        except optuna.TrialPruned:
            last = load_checkpoint(job.directory / LAST_NAME)
            _tag(parent, last.get("tracking_run_id"), job.directory.name, "PRUNED", "KILLED")
            return TrialResult(job.number, "PRUNED", None, last["epoch"])
    _tag(parent, result.tracking_run_id, job.directory.name, "COMPLETE")
    valid = result.metrics["valid"]
    return TrialResult(job.number, "COMPLETE", valid.get(job.objective), len(result.history), valid)


def trial_worker(job: TrialJob) -> TrialResult:
    """A trial's job in another process (spawned, or a Ray task)."""
    registry, parent = open_worker(
        job.threads, job.tracking_uri, job.out, job.directory.name, job.parent_run_id, job.plugins_dir
    )
    return train_trial(job, registry, parent, warn=print_warning)
