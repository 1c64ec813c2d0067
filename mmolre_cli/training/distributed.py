"""Data-parallel training across processes started by ``torchrun`` (gloo on CPU, NCCL on CUDA).

Every rank sees the same shuffled order and takes its share of each global mini-batch, so an epoch
visits every training sample exactly once across ranks, as in one process. Evaluation predictions
are gathered from all ranks, so metrics always cover the full split. Only rank 0 writes files.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Context:
    """This process's place in the job: ``rank`` of ``world`` processes, ``local_rank`` on its node."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Whether this process writes files and talks to the tracking server."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def gather(self, value: Any) -> list[Any]:
        """``value`` from every rank, in rank order (just ``[value]`` in one process)."""
        if not self.active:
            return [value]
        gathered: list[Any] = [None] * self.world
        dist.all_gather_object(gathered, value)
        return gathered

    def all_agree(self, ok: bool) -> bool:
        """True only if ``ok`` is true on every rank, so all ranks take the same branch."""
        return all(self.gather(ok))


SINGLE = Context()


def setup(device: str) -> tuple[Context, str]:
    """Join the process group ``torchrun`` describes in the environment (if any) and pick this rank's device.

    A single process (no ``WORLD_SIZE`` > 1) gets :data:`SINGLE` and ``device`` unchanged.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return SINGLE, device
    context = Context(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    cuda = torch.device(device).type == "cuda"
    if cuda:
        device = f"cuda:{context.local_rank}"
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    # Expert weights with a size-1 dimension get gradients whose stride there differs from DDP's bucket;
    # a size-1 dimension's stride is never used, so the reducer's layout warning is noise.
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    return context, device


def shutdown() -> None:
    """Leave the process group, if this process joined one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def launch(nproc: int, arguments: Sequence[str]) -> int:
    """Run ``mmolre <arguments>`` in ``nproc`` local processes under torchrun; its exit code."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    # One thread per process, or the ranks fight over the same cores.
    env = {"OMP_NUM_THREADS": "1", **os.environ}
    return subprocess.run([*command, "-m", "mmolre_cli", *arguments], env=env).returncode
