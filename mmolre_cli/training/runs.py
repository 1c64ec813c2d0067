"""A results table across finished runs, as MMSA's results CSVs: one row per run (a multi-seed run is one row,
its test metrics the mean over seeds), the config settings that differ between the runs, and test metrics.

Runs come from a directory (every finished run under it) or from an MLflow tracking store (every top-level run).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mmolre_cli.atomic import atomic_path
from mmolre_cli.errors import MmolreError, UsageError
from mmolre_cli.state_files import read_json
from mmolre_cli.training.seeds import SEEDS_NAME, SUMMARY_NAME, seed_dir
from mmolre_cli.training.tracking import PARENT_TAG, flatten
from mmolre_cli.training.trainer import CONFIG_NAME, METRICS_NAME

#: Folders where MLflow keeps artifacts (copies of a run's files) beside its store.
MLFLOW_FOLDERS = ("mlartifacts", "mlruns")
#: Settings every run has its own value of, shown as their own columns rather than as config differences.
NOT_SETTINGS = ("train.seed",)


@dataclass
class RunRow:
    """One finished run: where it is, its seeds, its flattened config, and its test metrics (mean and spread
    over seeds for a multi-seed run; no spread for one model)."""

    name: str
    seeds: list[int]
    config: dict[str, Any]
    test: dict[str, float]
    spread: dict[str, float] = field(default_factory=dict)
    selected_epoch: int | None = None


def runs_in_directory(directory: Path, warn: Callable[[str], None]) -> list[RunRow]:
    """Every finished run under ``directory`` (itself included), by path; the seeds of a multi-seed run are
    its row, not rows of their own. A run whose files cannot be read is warned about and left out."""
    if not directory.is_dir():
        raise UsageError(f"{directory}: no such directory")
    rows = []
    for marker in sorted([*directory.rglob(METRICS_NAME), *directory.rglob(SUMMARY_NAME)]):
        run_dir = marker.parent
        if marker.name == METRICS_NAME and (run_dir.parent / SEEDS_NAME).is_file():
            continue  # one seed of a multi-seed run
        if set(MLFLOW_FOLDERS) & set(marker.relative_to(directory).parts):
            continue  # a copy MLflow keeps as an artifact
        name = str(run_dir.relative_to(directory)) if run_dir != directory else run_dir.name
        try:
            rows.append(_read_run(run_dir, marker, name))
        except MmolreError as error:
            warn(f"{error}; left out")
    return rows


def _read_run(run_dir: Path, marker: Path, name: str) -> RunRow:
    if marker.name == SUMMARY_NAME:
        summary = read_json(marker, ("seeds", "mean", "std"))
        # The first seed's config as it ran (modalities resolved, data absolute), as a single run stores it.
        config = _read_config(seed_dir(run_dir, summary["seeds"][0]) / CONFIG_NAME)
        test, spread = summary["mean"].get("test", {}), summary["std"].get("test", {})
        return RunRow(name, list(summary["seeds"]), flatten(config), _numbers(test), _numbers(spread))
    report = read_json(marker, ("metrics", "seed", "selected_epoch"))
    test = _numbers(report["metrics"].get("test", {}))
    config = flatten(_read_config(run_dir / CONFIG_NAME))
    return RunRow(name, [report["seed"]], config, test, selected_epoch=report["selected_epoch"])


def _read_config(path: Path) -> dict[str, Any]:
    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise UsageError(f"{path}: cannot read ({type(error).__name__})") from None
    if not isinstance(config, dict):
        raise UsageError(f"{path}: not a run's config (no mapping)")
    return config


def runs_in_store(tracking_uri: str) -> list[RunRow]:
    """Every finished top-level run in the MLflow store at ``tracking_uri`` (a multi-seed run is one row, its
    seeds nested under it), oldest first, named ``experiment/run name``."""
    import logging

    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from mmolre_cli.errors import first_line
    from mmolre_cli.training.tracking import check_reachable

    database = tracking_uri.removeprefix("sqlite:///") if tracking_uri.startswith("sqlite:///") else None
    if database is not None and not Path(database).is_file():  # MLflow would create an empty one
        raise UsageError(f"--tracking-uri {tracking_uri}: no such tracking database")
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        check_reachable(tracking_uri)
        client = MlflowClient(tracking_uri)
        experiments = {e.experiment_id: e.name for e in client.search_experiments()}
        runs = client.search_runs(list(experiments), order_by=["attributes.start_time ASC"]) if experiments else []
    except (MlflowException, OSError) as error:
        raise UsageError(f"--tracking-uri {tracking_uri}: {first_line(error)}") from None
    rows = []
    for run in runs:
        if PARENT_TAG in run.data.tags or run.info.status != "FINISHED" or run.info.run_name.startswith("ablate-"):
            continue
        params = dict(run.data.params)
        seeds = params.pop("seeds", None) or params.get("train.seed", "")
        config = {key: value for key, value in params.items() if key not in ("n_parameters", "world_size")}
        test, spread = {}, {}  # a single model logs test_MAE; a multi-seed run test_MAE_mean and test_MAE_std
        for key, value in run.data.metrics.items():
            if key.startswith("test_"):
                name = key.removeprefix("test_")
                if name.endswith("_std"):
                    spread[name.removesuffix("_std")] = value
                else:
                    test[name.removesuffix("_mean")] = value
        name = f"{experiments[run.info.experiment_id]}/{run.info.run_name}"
        rows.append(RunRow(name, [int(s) for s in str(seeds).split(",") if s.strip()], config, test, spread))
    return rows


def _numbers(metrics: dict[str, Any]) -> dict[str, float]:
    """The metrics that are numbers (NaN for an undefined one, stored as null)."""
    return {
        key: math.nan if value is None else float(value)
        for key, value in metrics.items()
        if value is None or isinstance(value, (int, float))
    }


def config_differences(rows: Iterable[RunRow]) -> list[str]:
    """The settings whose values differ between ``rows`` (one missing from a run counts as differing)."""
    rows = list(rows)
    keys = sorted({key for row in rows for key in row.config} - set(NOT_SETTINGS))
    return [key for key in keys if len({repr(row.config.get(key)) for row in rows}) > 1]


def write_runs_csv(rows: list[RunRow], metrics: list[str], path: Path) -> None:
    """``rows`` as CSV at ``path``: run, seeds, selected epoch, the differing settings, then each test metric
    and its standard deviation over seeds (empty for a single model)."""
    settings = config_differences(rows)
    header = ["run", "seeds", "selected_epoch", *settings]
    header += [column for metric in metrics for column in (f"test_{metric}", f"test_{metric}_std")]
    with atomic_path(path) as temporary, open(temporary, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        for row in rows:
            cells = [row.name, ",".join(map(str, row.seeds)), "" if row.selected_epoch is None else row.selected_epoch]
            cells += [row.config.get(key, "") for key in settings]
            for metric in metrics:
                cells += [_cell(row.test.get(metric)), _cell(row.spread.get(metric))]
            writer.writerow(cells)


def _cell(value: float | None) -> str:
    return "" if value is None or value != value else repr(value)
