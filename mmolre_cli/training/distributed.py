"""Data-parallel training across processes started by ``torchrun`` (gloo on CPU, NCCL on CUDA).

Every rank sees the same shuffled order and takes its share of each global mini-batch, so an epoch
visits every training sample exactly once across ranks, as in one process. Evaluation predictions
are gathered from all ranks, so metrics always cover the full split. Only rank 0 writes files.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import sys
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
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

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """``values`` summed over the ranks (``values`` itself in one process)."""
        if not self.active:
            return values
        total = values.clone()
        dist.all_reduce(total)
        return total

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
    # The launcher forwards SIGINT to stop the run: end at once, as on SIGTERM, rather than unwind
    # (and report errors) while a peer that already stopped leaves a collective hanging.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    # When a rank fails, the agent stops the others with SIGTERM: one already exiting (its error
    # printed) keeps its own exit code, which the launcher reports instead of the others' output.
    atexit.register(signal.signal, signal.SIGTERM, signal.SIG_IGN)
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
    """Run ``mmolre <arguments>`` in ``nproc`` local processes under torchrun's agent, which runs here with
    its logging off; 0, the exit code of the lowest rank that failed by itself, or 128 + the signal that
    stopped the launch (SIGINT, SIGTERM, SIGHUP or SIGQUIT: every worker has ended by then).

    Rank 0 writes to this process's stderr; another rank's stderr is shown only when it failed and rank 0 did not.
    """
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    stops = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)  # the agent's handlers replace ours
    handlers = {sig: signal.getsignal(sig) for sig in stops}
    logging_off = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    with tempfile.TemporaryDirectory(prefix="mmolre-workers-") as logs:
        redirects = ",".join(f"{rank}:2" for rank in range(1, nproc)) or "0"  # 2: stderr to a file
        # torchrun also gives the workers OMP_NUM_THREADS=1 (unless set), so they do not fight over cores.
        options = ["--standalone", f"--nproc_per_node={nproc}", f"--log_dir={logs}", f"--redirects={redirects}"]
        try:
            torchrun.run(torchrun.parse_args([*options, "-m", "mmolre_cli", *arguments]))
        except SignalException as stop:
            return 128 + stop.sigval
        except ChildFailedError as error:
            codes = {rank: failure.exitcode for rank, failure in error.failures.items()}
            # The agent stops the ranks still running with SIGTERM: the failure is among the others.
            rank = min((rank for rank, code in codes.items() if code != -signal.SIGTERM), default=min(codes))
            if rank:
                for log in Path(logs).glob(f"*/attempt_*/{rank}/stderr.log"):
                    sys.stderr.write(log.read_text())
            return codes[rank] if codes[rank] > 0 else 128 - codes[rank]  # -N: ended by signal N
        finally:
            logging.disable(logging_off)
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
    return 0
