"""Experiment tracking with MLflow, imported only when a run is tracked.

Tracking never stops training: the first MLflow error is reported once and tracking is switched off,
while the run directory keeps every result.
"""

from __future__ import annotations

import os
import socket
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

EXPERIMENT = "mmolre"


def default_tracking_uri(out_dir: Path) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else a SQLite store inside the output directory."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{out_dir.resolve() / 'mlflow.db'}"


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings → dotted keys, as MLflow parameters."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def check_reachable(uri: str, timeout: float = 3.0) -> None:
    """Fail fast for an HTTP tracking server that does not answer (MLflow itself retries for minutes)."""
    parsed = urlparse(uri)
    if parsed.scheme in ("http", "https"):
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        with socket.create_connection((parsed.hostname, port), timeout=timeout):
            pass


class Tracker:
    """One MLflow run; every method is a no-op once disabled or after an error."""

    def __init__(self, uri: str | None, out_dir: Path, run_name: str, on_warning=None):
        self.enabled = uri is not None
        self.uri, self.out_dir, self.run_name = uri, out_dir, run_name
        self.run_id: str | None = None
        self._warn = on_warning or (lambda message: warnings.warn(message, stacklevel=2))
        self._mlflow = None

    def _guard(self, action, *args, **kwargs):
        if not self.enabled:
            return None
        try:
            return action(*args, **kwargs)
        except Exception as error:  # tracking must never take the training run down
            self.enabled = False
            self._warn(f"MLflow tracking at {self.uri} failed and is off for this run: {type(error).__name__}: {error}")
            return None

    def start(self, params: Mapping[str, Any]) -> None:
        self._guard(self._start, params)

    def _start(self, params: Mapping[str, Any]) -> None:
        check_reachable(self.uri)
        import mlflow

        self._mlflow = mlflow
        mlflow.set_tracking_uri(self.uri)
        experiment = mlflow.get_experiment_by_name(EXPERIMENT)
        if experiment is None:
            artifacts = (self.out_dir.resolve() / "mlartifacts").as_uri()
            experiment_id = mlflow.create_experiment(EXPERIMENT, artifact_location=artifacts)
        else:
            experiment_id = experiment.experiment_id
        run = mlflow.start_run(experiment_id=experiment_id, run_name=self.run_name)
        self.run_id = run.info.run_id
        mlflow.log_params({key: str(value)[:500] for key, value in flatten(params).items()})

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        finite = {k: float(v) for k, v in metrics.items() if v is not None and v == v}
        self._guard(lambda: self._mlflow.log_metrics(finite, step=step))

    def log_artifacts(self, files: list[Path]) -> None:
        self._guard(lambda: [self._mlflow.log_artifact(str(path)) for path in files if path.exists()])

    def end(self, status: str = "FINISHED") -> None:
        self._guard(lambda: self._mlflow.end_run(status=status))
