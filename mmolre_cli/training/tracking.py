"""Experiment tracking with MLflow, imported only when a run is tracked.

Tracking never stops training: the first MLflow error is reported once and tracking is switched off
for the tracker and every run nested under it, while the run directory keeps every result.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import socket
import subprocess
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from mmolre_cli.errors import CheckpointError, MmolreError

EXPERIMENT = "mmolre"
PARENT_TAG = "mlflow.parentRunId"
#: ``--tracking-uri run``: a SQLite store inside the run directory, as MLflow's ``sqlite:///<run dir>/mlflow.db``.
RUN_STORE = "run"
#: Tags naming where a tracked run's files are: the run directory, and the selected checkpoint inside it
#: (the checkpoint is not copied into the store; ``mmolre eval RUN_ID`` finds it through these).
RUN_DIR_TAG = "mmolre.run_dir"
CHECKPOINT_TAG = "mmolre.checkpoint"


def default_tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if set, else MLflow's own default of one store per working directory: the
    SQLite file ``mlflow.db`` there (as an absolute path, so a run resumed elsewhere tracks to it)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd().resolve() / 'mlflow.db'}"


def run_store_uri(out_dir: Path) -> str:
    """The SQLite store inside the run directory ``out_dir`` (``--tracking-uri run``)."""
    return f"sqlite:///{out_dir.resolve() / 'mlflow.db'}"


def tracking_uri(given: str | None, out_dir: Path) -> str:
    """The URI ``--tracking-uri`` gives (``run``: the run directory's own store), or the default one."""
    if given == RUN_STORE:
        return run_store_uri(out_dir)
    return given or default_tracking_uri()


def stored_tracking(uri: str | None, out_dir: Path) -> str | None:
    """How a run directory records where it is tracked: None (not tracked), ``"run"`` (the SQLite store
    inside it, wherever it is moved) or the URI itself."""
    return RUN_STORE if uri is not None and uri == run_store_uri(out_dir) else uri


def restored_tracking_uri(stored: str | None, out_dir: Path) -> str | None:
    """The tracking URI that ``stored_tracking`` recorded for ``out_dir``."""
    return run_store_uri(out_dir) if stored == RUN_STORE else stored


def experiment_name(data: str | Path) -> str:
    """The MLflow experiment of runs on the data file ``data``: its name without the extension (``mosi``)."""
    return Path(data).stem


@functools.lru_cache(maxsize=8)
def _file_sha256(path: Path, size: int, modified: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    """The SHA-256 of the file at ``path``, read once per content (size and modification time)."""
    stat = Path(path).stat()
    return _file_sha256(Path(path).resolve(), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=1)
def source_commit() -> tuple[str, bool] | None:
    """The git commit mmolre runs from and whether its tracked files differ from it, when mmolre runs from
    a checkout of its repository (not from an installed copy); None otherwise."""
    root = Path(__file__).resolve().parents[2]
    try:
        top = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--show-toplevel", "HEAD"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.split()  # fmt: skip
        if len(top) != 2 or Path(top[0]).resolve() != root:
            return None
        changed = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return top[1], bool(changed)


def run_tags(data: Path, out_dir: Path, plugins: list[dict[str, str]]) -> dict[str, str]:
    """What a tracked run records to be reproduced: the mmolre version and, when run from a checkout, its git
    commit; the SHA-256 of the data file; each plugin package (or file) whose components the model uses; and
    where its run directory and selected checkpoint are."""
    from mmolre_cli import __version__

    tags = {
        "mmolre.version": __version__,
        "mmolre.data": str(Path(data).resolve()),
        "mmolre.data_sha256": file_sha256(data),
        RUN_DIR_TAG: str(out_dir.resolve()),
    }
    commit = source_commit()
    if commit is not None:
        tags["mlflow.source.git.commit"] = commit[0]  # what the MLflow UI shows as the run's source version
        tags["mmolre.git_dirty"] = str(commit[1]).lower()
    tags.update({f"mmolre.plugin.{record['plugin']}": record["origin"] for record in plugins})
    return tags


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

    def __init__(self, uri: str | None, out_dir: Path, warn: Callable[[str], None], experiment: str):
        self.uri, self.out_dir, self.warn, self.experiment = uri, out_dir, warn, experiment
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
        experiment = client.get_experiment_by_name(self.experiment)
        # Beside a SQLite store, as MLflow puts them (a server chooses its own place).
        store = Path(self.uri.removeprefix("sqlite:///")).parent if self.uri.startswith("sqlite:///") else None
        artifacts = (store.resolve() / "mlartifacts").as_uri() if store is not None else None
        if experiment is None:
            self.experiment_id = client.create_experiment(self.experiment, artifact_location=artifacts)
        elif stored_tracking(self.uri, self.out_dir) == RUN_STORE and experiment.artifact_location != artifacts:
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
        experiment: str = EXPERIMENT,
    ):
        warn = on_warning or (lambda message: warnings.warn(message, stacklevel=3))
        self._session = parent._session if parent is not None else _Session(uri, out_dir, warn, experiment)
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

    def start(
        self, params: Mapping[str, Any], resume_run_id: str | None = None, tags: Mapping[str, str] | None = None
    ) -> None:
        """Open the run (or reopen ``resume_run_id``) and log ``params`` flattened to dotted keys, and ``tags``."""
        if self.enabled:
            self._session.guard(lambda: self._start(params, resume_run_id, dict(tags or {})))

    def _start(self, params: Mapping[str, Any], resume_run_id: str | None, tags: dict[str, str]) -> None:
        from mlflow.entities import Param, RunStatus

        session = self._session
        session.connect()
        if resume_run_id is not None:
            session.client.update_run(resume_run_id, status=RunStatus.to_string(RunStatus.RUNNING))
            # Runs nested under it go to its experiment, whatever this session's is named.
            session.experiment_id = session.client.get_run(resume_run_id).info.experiment_id
            self.run_id = resume_run_id
            return
        if self._parent is not None:
            tags[PARENT_TAG] = self._parent.run_id
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

    def set_tags(self, tags: Mapping[str, str]) -> None:
        if self.run_id is None:
            return
        self._session.guard(lambda: [self._session.client.set_tag(self.run_id, k, v) for k, v in tags.items()])

    def end(self, status: str = "FINISHED") -> None:
        if self.run_id is not None:
            self._session.guard(lambda: self._session.client.set_terminated(self.run_id, status))
