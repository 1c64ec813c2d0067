"""Where the jobs of a study run: in this process, in spawned local processes, or as Ray tasks.

Every executor has one interface: ``submit(function, job)`` returns a key, and ``next_done()`` returns the
key and outcome of a finished job (its result, or :class:`Failed` when its worker died twice). An exception
raised by the job's own code is raised again by ``next_done``, as if the job had run here.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing import get_context
from typing import Any, Protocol

from mmolre_cli.errors import UsageError

EXECUTORS = ("local", "ray")

#: In a worker process of :class:`Processes`: the queue to its parent's ``events`` (None in any other process).
_to_parent = None


def _connect(queue: Any) -> None:
    """A :class:`Processes` worker's initializer: :func:`report_to_parent` puts on ``queue``."""
    global _to_parent
    _to_parent = queue


def report_to_parent(item: Any) -> None:
    """Send ``item`` (picklable) from a local worker process to :attr:`Processes.events`; nothing elsewhere."""
    if _to_parent is not None:
        _to_parent.put(item)


@dataclass(frozen=True)
class Failed:
    """A job whose worker died (a killed process, a lost node) on its first run and on its one retry."""

    reason: str


class Executor(Protocol):
    #: How many jobs run at once (a study submits no more than this before one finishes).
    capacity: int
    #: Torch threads for each job's process; None keeps the process's default.
    threads: int | None

    def submit(self, function: Callable[[Any], Any], job: Any) -> int: ...

    def next_done(self) -> tuple[int, Any]: ...

    def close(self) -> None:
        """Cancel what has not finished and release the workers (again: nothing)."""


class Inline:
    """Jobs run one at a time in this process, when submitted (callbacks and the registry stay live)."""

    capacity, threads = 1, None

    def __init__(self) -> None:
        self._done: list[tuple[int, Any]] = []
        self._count = 0

    def submit(self, function: Callable[[Any], Any], job: Any) -> int:
        self._count += 1
        self._done.append((self._count, function(job)))
        return self._count

    def next_done(self) -> tuple[int, Any]:
        return self._done.pop(0)

    def close(self) -> None:
        self._done.clear()


class Processes:
    """Jobs in ``workers`` spawned processes that share this machine's CPU threads."""

    def __init__(self, workers: int) -> None:
        self.capacity = workers
        self.threads = max(1, (os.cpu_count() or 1) // workers)
        # Spawned, not forked: a fork would copy torch's thread pools and the open MLflow connection.
        context = get_context("spawn")
        #: What the workers send with :func:`report_to_parent` (a study's epochs, for its progress display).
        self.events = context.Queue()
        self._pool = ProcessPoolExecutor(
            max_workers=workers, mp_context=context, initializer=_connect, initargs=(self.events,)
        )
        self._futures: dict[Future, int] = {}
        self._keys = itertools.count(1)

    def submit(self, function: Callable[[Any], Any], job: Any) -> int:
        key = next(self._keys)
        self._futures[self._pool.submit(function, job)] = key
        return key

    def next_done(self) -> tuple[int, Any]:
        done, _ = wait(self._futures, return_when=FIRST_COMPLETED)
        future = next(iter(done))
        return self._futures.pop(future), future.result()

    def close(self) -> None:
        # Start no job whose result nobody will read, and stop the running ones: a SIGINT sent to this
        # process alone (or an error here) would leave them training. A study writes its files atomically,
        # so a rerun resumes them. (The processes are private to the pool until Python 3.14.)
        workers = list((self._pool._processes or {}).values())
        self._pool.shutdown(wait=False, cancel_futures=True)
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.join()


def make_executor(
    name: str,
    jobs: int = 1,
    *,
    address: str | None = None,
    cpus_per_job: float = 1.0,
    gpus_per_job: float = 0.0,
) -> Executor:
    """The executor ``--executor name`` asks for: ``local`` (``jobs`` processes; 1: this process) or
    ``ray`` (a Ray task per job, on the cluster at ``address``, else on a Ray instance started here)."""
    if name not in EXECUTORS:
        raise UsageError(f"--executor: unknown value {name!r} (valid: {', '.join(EXECUTORS)})")
    if name == "local":
        if address is not None:
            raise UsageError("--ray-address: only with --executor ray")
        return Inline() if jobs == 1 else Processes(jobs)
    from mmolre_cli.executors.ray import RayExecutor

    return RayExecutor(address, cpus_per_job, gpus_per_job)
