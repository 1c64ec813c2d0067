"""Experiment tracking with MLflow, imported only when a run is tracked.

Tracking never stops training: the first MLflow error is reported once and tracking is switched off
for the tracker and every run nested under it, while the run directory keeps every result.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from mmolre_cli.errors import CheckpointError, MmolreError

EXPERIMENT = "mmolre"
PARENT_TAG = "mlflow.parentRunId"


def default_tracking_uri(out_dir: Path) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else a SQLite store inside the output directory."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{out_dir.resolve() / 'mlflow.db'}"


def stored_tracking(uri: str | None, out_dir: Path) -> str | None:
    """How a run directory records where it is tracked: None (not tracked), ``"run"`` (the SQLite store
    inside it, wherever it is moved) or the URI itself."""
    return "run" if uri is not None and uri == f"sqlite:///{out_dir.resolve() / 'mlflow.db'}" else uri


def restored_tracking_uri(stored: str | None, out_dir: Path) -> str | None:
    """The tracking URI that ``stored_tracking`` recorded for ``out_dir``."""
    return f"sqlite:///{out_dir.resolve() / 'mlflow.db'}" if stored == "run" else stored


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


class _Session:
    """What a tracker and the runs nested under it share: the client, the experiment, and the on/off switch."""

    def __init__(self, uri: str | None, out_dir: Path, warn: Callable[[str], None]):
        self.uri, self.out_dir, self.warn = uri, out_dir, warn
        self.enabled = uri is not None
        self.client = None
        self.experiment_id: str | None = None

    def guard(self, action: Callable[[], Any]) -> Any:
        if not self.enabled:
            return None
        try:
            return action()
        except MmolreError:  # the user's to fix (a moved run directory), not MLflow's failure
            raise
        except Exception as error:  # tracking must never take the training run down
            self.enabled = False
            self.warn(f"MLflow tracking at {self.uri} failed and is off for this run: {type(error).__name__}: {error}")
            return None

    def connect(self) -> None:
        if self.client is not None:
            return
        check_reachable(self.uri)
        # MLflow announces every database migration at INFO; our own output says what matters.
        for name in ("mlflow", "alembic"):
            logging.getLogger(name).setLevel(logging.WARNING)
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=self.uri)
        experiment = client.get_experiment_by_name(EXPERIMENT)
        artifacts = (self.out_dir.resolve() / "mlartifacts").as_uri()
        if experiment is None:
            self.experiment_id = client.create_experiment(EXPERIMENT, artifact_location=artifacts)
        elif stored_tracking(self.uri, self.out_dir) == "run" and experiment.artifact_location != artifacts:
            # MLflow stores artifact locations as absolute paths, fixed when the experiment was created.
            old = Path(urlparse(experiment.artifact_location).path).parent
            raise CheckpointError(
                f"{self.out_dir}: moved from {old} after MLflow tracked it there, and its mlflow.db would still "
                f"write artifacts under {old}; move it back to continue it tracked, or continue with --no-track"
            )
        else:
            self.experiment_id = experiment.experiment_id
        self.client = client


class Tracker:
    """One MLflow run, possibly nested under a parent; every method is a no-op once tracking is off."""

    def __init__(
        self,
        uri: str | None,
        out_dir: Path,
        run_name: str,
        on_warning: Callable[[str], None] | None = None,
        *,
        parent: Tracker | None = None,
    ):
        warn = on_warning or (lambda message: warnings.warn(message, stacklevel=3))
        self._session = parent._session if parent is not None else _Session(uri, out_dir, warn)
        self._parent = parent
        self.run_name = run_name
        self.run_id: str | None = None

    @property
    def enabled(self) -> bool:
        return self._session.enabled and (self._parent is None or self._parent.run_id is not None)

    @property
    def uri(self) -> str | None:
        return self._session.uri

    def child(self, run_name: str) -> Tracker:
        """A tracker whose run will be nested under this one (and silent if this one never started)."""
        return Tracker(None, self._session.out_dir, run_name, parent=self)

    def start(self, params: Mapping[str, Any], resume_run_id: str | None = None) -> None:
        """Open the run (or reopen ``resume_run_id``) and log ``params`` flattened to dotted keys."""
        if self.enabled:
            self._session.guard(lambda: self._start(params, resume_run_id))

    def _start(self, params: Mapping[str, Any], resume_run_id: str | None) -> None:
        from mlflow.entities import Param, RunStatus

        session = self._session
        session.connect()
        if resume_run_id is not None:
            session.client.update_run(resume_run_id, status=RunStatus.to_string(RunStatus.RUNNING))
            self.run_id = resume_run_id
            return
        tags = {PARENT_TAG: self._parent.run_id} if self._parent is not None else {}
        run = session.client.create_run(session.experiment_id, run_name=self.run_name, tags=tags)
        self.run_id = run.info.run_id
        values = [Param(key, str(value)[:500]) for key, value in flatten(params).items()]
        for start in range(0, len(values), 100):  # MLflow takes at most 100 parameters per batch
            session.client.log_batch(self.run_id, params=values[start : start + 100])

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if self.run_id is None:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        values = [
            Metric(key, float(value), now, step or 0)
            for key, value in metrics.items()
            if isinstance(value, (int, float)) and value == value
        ]
        self._session.guard(lambda: self._session.client.log_batch(self.run_id, metrics=values))

    def log_artifacts(self, files: list[Path | None]) -> None:
        if self.run_id is None:
            return
        paths = [str(path) for path in files if path is not None and Path(path).exists()]
        self._session.guard(lambda: [self._session.client.log_artifact(self.run_id, path) for path in paths])

    def end(self, status: str = "FINISHED") -> None:
        if self.run_id is not None:
            self._session.guard(lambda: self._session.client.set_terminated(self.run_id, status))
