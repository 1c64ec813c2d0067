"""Training one model per seed, each in its own run directory, and reporting mean ± std over seeds.

Layout: ``<out>/seeds.json`` (the seeds and the config they share), ``<out>/config.yaml``,
``<out>/seed-<n>/`` (one trainer run directory per seed) and, once finished, ``<out>/summary.json``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mmolre_cli.atomic import remove_temporaries
from mmolre_cli.config import MAX_SEED, RunConfig, build_config, component_names, load_yaml, save_yaml
from mmolre_cli.data.shapes import read_shapes
from mmolre_cli.errors import CheckpointError, TrainingError, UsageError
from mmolre_cli.model.build import resolve_model
from mmolre_cli.plugins.registry import Registry
from mmolre_cli.state_files import read_json
from mmolre_cli.training.checkpoint import LAST_NAME, load_checkpoint
from mmolre_cli.training.distributed import setup
from mmolre_cli.training.tracking import (
    Tracker,
    default_tracking_uri,
    experiment_name,
    restored_tracking_uri,
    run_tags,
    stored_tracking,
)
from mmolre_cli.training.trainer import (
    CONFIG_NAME,
    METRICS_NAME,
    SEEDS_NAME,
    RunResult,
    build_model,
    data_path,
    prepare_run_dir,
    train_run,
    write_json_atomic,
)

SUMMARY_NAME = "summary.json"

Metrics = dict[str, dict[str, float]]  # split → metric → value


@dataclass
class SeedsResult:
    """Every seed's run and, per split and metric, the mean and sample standard deviation over seeds."""

    run_dir: Path
    runs: list[RunResult]
    mean: Metrics
    std: Metrics
    tracking_run_id: str | None


def seed_dir(out_dir: Path, seed: int) -> Path:
    return out_dir / f"seed-{seed}"


def aggregate(metrics: Sequence[Metrics]) -> tuple[Metrics, Metrics]:
    """Mean and sample standard deviation (n − 1; 0 for one seed) of every metric all runs report."""
    mean: Metrics = {}
    std: Metrics = {}
    for split in metrics[0]:
        names = [name for name in metrics[0][split] if all(name in run.get(split, {}) for run in metrics)]
        for name in names:
            values = [math.nan if run[split][name] is None else float(run[split][name]) for run in metrics]
            centre = math.fsum(values) / len(values)
            spread = math.fsum((v - centre) ** 2 for v in values) / (len(values) - 1) if len(values) > 1 else 0.0
            mean.setdefault(split, {})[name] = centre
            std.setdefault(split, {})[name] = math.sqrt(spread)
    return mean, std


#: What ``read_result`` needs from a run's ``metrics.json``.
RESULT_KEYS = ("selected_epoch", "metrics", "trivial_test", "history", "seed", "routing", "thresholds")


def read_result(run_dir: Path) -> RunResult:
    """The result of a finished run, from its ``metrics.json``."""
    report = read_json(run_dir / METRICS_NAME, RESULT_KEYS)
    return RunResult(
        run_dir, report["selected_epoch"], report["metrics"], report["trivial_test"], report["history"],
        report.get("tracking_run_id"), report["seed"], report["routing"], report["thresholds"],
    )  # fmt: skip


def check_model_builds(config: RunConfig, registry: Registry) -> None:
    """Build the model once from the data's feature sizes (read without the features), so that a
    configuration that cannot build fails before the multi-seed directory is written."""
    model, signature = resolve_model(config.model, read_shapes(data_path(config)))
    build_model(dataclasses.replace(config, model=model), signature, registry)


def parse_seeds(value: str) -> list[int]:
    """``"1,2,3"`` → [1, 2, 3]: distinct integers, or a UsageError naming ``--seeds``."""
    items = value.split(",")
    if any(not item.strip() for item in items):
        raise UsageError(f"--seeds: empty item in {value!r}; expected comma-separated integers such as 1,2,3")
    try:
        seeds = [int(item) for item in items]
    except ValueError:
        raise UsageError(f"--seeds: expected comma-separated integers, got {value!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise UsageError(f"--seeds: expected distinct comma-separated integers, got {value!r}")
    for seed in seeds:
        if not 0 <= seed <= MAX_SEED:
            raise UsageError(f"--seeds: each seed must be in [0, {MAX_SEED}], got {seed}")
    return seeds


def train_seeds(
    config: RunConfig,
    seeds: Sequence[int],
    out_dir: Path,
    registry: Registry,
    *,
    tracking_uri: str | None = None,
    parent: Tracker | None = None,
    resume: bool = False,
    stop_if_diverged: bool = True,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
    warn: Callable[[str], None] | None = None,
) -> SeedsResult:
    """Train ``config`` once per seed into ``<out_dir>/seed-<n>/`` and aggregate their metrics.

    Tracked as one MLflow run (a child of ``parent`` when given, else at ``tracking_uri``) with a child
    run per seed. ``resume`` reads back finished seeds, resumes an interrupted one and trains the rest.
    ``on_epoch(seed, summary)`` follows every epoch of every seed; ``stop_if_diverged`` is ``train_run``'s.
    """
    seeds = list(seeds)
    manifest_path = out_dir / SEEDS_NAME
    context, _ = setup(config.train.device)
    if resume:
        if not manifest_path.is_file():
            raise CheckpointError(f"{out_dir}: not a multi-seed run directory (no {SEEDS_NAME}); nothing to resume")
        if (out_dir / SUMMARY_NAME).exists():
            raise CheckpointError(f"{out_dir}: the run is complete ({SUMMARY_NAME}); nothing to resume")
        manifest = read_json(manifest_path, ("seeds", "config"))
        if context.main:
            remove_temporaries(out_dir)
    else:
        if manifest_path.exists():
            raise CheckpointError(f"{out_dir}: already holds a run ({SEEDS_NAME}); choose another --out")
        check_model_builds(config, registry)
        if context.main:
            prepare_run_dir(out_dir)
        manifest = {"seeds": seeds, "config": config.to_dict(), "tracking_run_id": None}

    data = data_path(config)
    tracker = parent.child(out_dir.name) if parent is not None else None
    tracker = tracker or Tracker(tracking_uri, out_dir, out_dir.name, warn, experiment=experiment_name(data))
    if context.main:
        plugins = registry.provenance((kind, name) for kind, name, _ in component_names(config.model))
        tags = run_tags(data, out_dir, plugins) if tracker.enabled else None
        tracker.start({**config.to_dict(), "seeds": ",".join(map(str, seeds))}, manifest["tracking_run_id"], tags)
        tracking = stored_tracking(tracker.uri, out_dir)
        write_json_atomic({**manifest, "tracking_run_id": tracker.run_id, "tracking": tracking}, manifest_path)
        save_yaml(config, out_dir / CONFIG_NAME)

    runs = []
    for seed in seeds:
        directory = seed_dir(out_dir, seed)
        if (directory / METRICS_NAME).is_file():
            runs.append(read_result(directory))
            continue
        seeded = dataclasses.replace(config, train=dataclasses.replace(config.train, seed=seed))
        try:
            run = train_run(
                seeded, directory, registry, parent=tracker, resume=resume and (directory / CONFIG_NAME).is_file(),
                stop_if_diverged=stop_if_diverged,
                on_epoch=(lambda summary, s=seed: on_epoch(s, summary)) if on_epoch else None,
                progress=progress, warn=warn,
            )  # fmt: skip
        except TrainingError:
            tracker.end("FAILED")
            raise
        runs.append(run)

    mean, std = aggregate([run.metrics for run in runs])
    if context.main:
        summary = {
            "seeds": seeds,
            "mean": mean,
            "std": std,
            "runs": {str(run.seed): {"selected_epoch": run.selected_epoch, "metrics": run.metrics} for run in runs},
            "trivial_test": runs[0].trivial_test,
        }
        write_json_atomic(summary, out_dir / SUMMARY_NAME)
        for split in ("valid", "test"):
            tracker.log_metrics({f"{split}_{name}_mean": value for name, value in mean.get(split, {}).items()})
            tracker.log_metrics({f"{split}_{name}_std": value for name, value in std.get(split, {}).items()})
        tracker.log_artifacts([out_dir / CONFIG_NAME, out_dir / SUMMARY_NAME])
        tracker.end()
    return SeedsResult(out_dir, runs, mean, std, tracker.run_id)


def interrupted_checkpoint(run_dir: Path) -> dict | None:
    """The ``last.pt`` of the interrupted one-seed run in ``run_dir``, read once for :func:`resumed_tracking_uri`
    and :func:`resume_run`; None for a multi-seed run directory or when no epoch finished."""
    if (run_dir / SEEDS_NAME).is_file() or not (run_dir / LAST_NAME).is_file():
        return None
    return load_checkpoint(run_dir / LAST_NAME)


def resumed_tracking_uri(run_dir: Path, last: dict | None = None) -> str | None:
    """Where the interrupted run in ``run_dir`` is tracked: as it was started (not at all, after
    ``--no-track``), or at the default URI when it recorded nothing (no epoch finished yet). ``last``: its
    :func:`interrupted_checkpoint`, when read already."""
    if (run_dir / SEEDS_NAME).is_file():
        recorded = read_json(run_dir / SEEDS_NAME, ("seeds", "config"))
    else:
        recorded = last if last is not None else interrupted_checkpoint(run_dir) or {}
    return restored_tracking_uri(recorded["tracking"], run_dir) if "tracking" in recorded else default_tracking_uri()


def resume_run(
    run_dir: Path,
    registry: Registry,
    *,
    tracking_uri: str | None = None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
    warn: Callable[[str], None] | None = None,
    last: dict | None = None,
) -> RunResult | SeedsResult:
    """Continue the interrupted run in ``run_dir`` (one seed or several) with its stored config; ``last``: its
    :func:`interrupted_checkpoint`, when read already."""
    if (run_dir / SEEDS_NAME).is_file():
        manifest = read_json(run_dir / SEEDS_NAME, ("seeds", "config"))
        config = build_config(manifest["config"], source=str(run_dir / SEEDS_NAME))
        return train_seeds(
            config, manifest["seeds"], run_dir, registry, tracking_uri=tracking_uri, resume=True,
            on_epoch=on_epoch, progress=progress, warn=warn,
        )  # fmt: skip
    path = run_dir / CONFIG_NAME
    if not path.is_file():
        raise CheckpointError(f"{run_dir}: not a run directory (no {CONFIG_NAME}); nothing to resume")
    config = build_config(load_yaml(path), source=str(path))
    return train_run(
        config, run_dir, registry, tracking_uri=tracking_uri, resume=True,
        on_epoch=(lambda summary: on_epoch(config.train.seed, summary)) if on_epoch else None,
        progress=progress, warn=warn, last=last,
    )  # fmt: skip
