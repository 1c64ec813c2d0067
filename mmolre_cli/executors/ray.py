"""Jobs as Ray tasks: on a running cluster (``--ray-address``) or on a Ray instance started in this process."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from mmolre_cli.errors import UsageError
from mmolre_cli.executors import Failed

INSTALL_HINT = "pip install 'mmolre-cli[ray]'"
#: A task whose worker dies is run once more; then it is recorded as failed and the study goes on.
RETRIES = 1


def import_ray():
    """The ``ray`` module, or a UsageError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise UsageError(f"--executor ray: Ray is not installed; install it with {INSTALL_HINT}") from None
    return ray


class RayExecutor:
    """A Ray task per job, with ``cpus_per_job`` CPUs and ``gpus_per_job`` GPUs reserved for it."""

    def __init__(self, address: str | None, cpus_per_job: float, gpus_per_job: float) -> None:
        if cpus_per_job <= 0 or gpus_per_job < 0:
            raise UsageError("--cpus-per-job must be > 0 and --gpus-per-job ≥ 0")
        ray = import_ray()
        self._ray = ray
        self._started = False
        if not ray.is_initialized():
            try:
                # No address: Ray's embedded default, a local instance that ends with this process.
                ray.init(address=address, include_dashboard=False, logging_level=logging.ERROR)
            except (ConnectionError, ValueError, RuntimeError) as error:
                raise UsageError(f"--ray-address {address}: cannot connect to a Ray cluster ({error})") from None
            self._started = True
        self.threads = max(1, int(cpus_per_job))
        cpus = ray.cluster_resources().get("CPU", 1)
        self.capacity = max(1, int(cpus // cpus_per_job))
        self._options = {
            "num_cpus": cpus_per_job,
            "num_gpus": gpus_per_job,
            "max_retries": RETRIES,  # system failures only: a worker's own exception is not retried
            "retry_exceptions": False,
        }
        self._remote: dict[Callable, Any] = {}
        self._pending: dict[Any, int] = {}
        self._count = 0

    def submit(self, function: Callable[[Any], Any], job: Any) -> int:
        if function not in self._remote:
            self._remote[function] = self._ray.remote(**self._options)(function)
        self._count += 1
        self._pending[self._remote[function].remote(job)] = self._count
        return self._count

    def next_done(self) -> tuple[int, Any]:
        ray = self._ray
        (ref,), _ = ray.wait(list(self._pending), num_returns=1)
        key = self._pending.pop(ref)
        try:
            return key, ray.get(ref)
        except ray.exceptions.RayTaskError as error:  # the job's own code raised: as if it ran here
            cause = error.cause
            raise cause if isinstance(cause, BaseException) else error from None
        except ray.exceptions.RayError as error:  # its worker or node died twice
            return key, Failed(f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}")

    def close(self) -> None:
        for ref in self._pending:
            self._ray.cancel(ref, force=True)
        self._pending.clear()
        if self._started:
            self._ray.shutdown()
            self._started = False
