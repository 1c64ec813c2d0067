"""Options shared by the commands that run many trainings (``ablate``, ``tune``): where the jobs run."""

from __future__ import annotations

from typing import Annotated

import typer

ExecutorOption = Annotated[
    str,
    typer.Option(
        "--executor", help="Where the jobs run: local (this machine, --jobs processes) or ray (a Ray task per job)."
    ),
]
RayAddressOption = Annotated[
    str | None,
    typer.Option(
        "--ray-address",
        help="Ray cluster to join: auto or HOST:PORT (default: start a local Ray instance). With --executor ray.",
    ),
]
CpusPerJobOption = Annotated[
    float, typer.Option("--cpus-per-job", help="CPUs Ray reserves for each job (and its torch threads).")
]
GpusPerJobOption = Annotated[float, typer.Option("--gpus-per-job", help="GPUs Ray reserves for each job.")]


def executor_from_options(executor: str, jobs: int, address: str | None, cpus: float, gpus: float):
    """The executor the options name (see :func:`mmolre_cli.executors.make_executor`)."""
    from mmolre_cli.executors import make_executor

    return make_executor(executor, jobs, address=address, cpus_per_job=cpus, gpus_per_job=gpus)
