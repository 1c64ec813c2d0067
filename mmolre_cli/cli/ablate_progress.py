"""What ``mmolre ablate`` shows while it trains: runs done and remaining, each running seed's epoch, the time.

A run is one seed of one part of one variant. On a terminal this is one rich display, from the start; elsewhere
(a log file, CI) a line when the study starts and one as each run finishes.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn, TimeElapsedColumn
from rich.text import Text

from mmolre_cli.ablation.variants import WHOLE, Plan, Variant


def label(variant: Variant, part: str) -> str:
    """A part as messages name it: the variant, or ``mtl (sa alone)`` for one task of ``mtl``."""
    return variant.name if part == WHOLE else f"{variant.name} ({part} alone)"


def clock(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}"


class _Remaining(ProgressColumn):
    """The estimated time left, recomputed at every refresh."""

    def __init__(self, progress: AblationProgress) -> None:
        super().__init__()
        self.owner = progress

    def render(self, task: Task) -> Text:
        return Text(self.owner.remaining() if task.id == self.owner.overall else "", style="progress.remaining")


class AblationProgress:
    """Progress of an ablation over ``seeds``, fed by ``run_plan``'s ``on_epoch`` and ``on_part`` callbacks.

    Runs done counts every seed of a finished part and, in a running part, the seeds before the one whose
    epochs arrive. The remaining time is the mean wall time per trained run times the runs left; before the
    first run ends it is a bound from the time per epoch, as if every run used all its epochs (``≤``).
    """

    def __init__(self, plan: Plan, seeds: Sequence[int], console: Console) -> None:
        self.seeds = list(seeds)
        self.max_epochs = {(v.name, p): c.train.epochs for v in plan.variants for p, c in v.parts.items()}
        self.total = len(self.max_epochs) * len(self.seeds)
        self.console = console
        self.start = time.monotonic()
        self.finished = 0  # runs of finished parts
        self.reused = 0  # of those, read back from an earlier invocation rather than trained
        self.epochs_trained = 0  # by this invocation
        self.running: dict[tuple[str, str], tuple[int, int]] = {}  # (variant, part) → (seed, last epoch)
        self.rows: dict[tuple[str, str], Any] = {}
        self.waiting = set(self.max_epochs)  # parts that have not finished
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[runs]}"),
            TimeElapsedColumn(),
            _Remaining(self),
        )
        self.progress = Progress(*columns, console=console, disable=not console.is_terminal, transient=True)
        self.overall = self.progress.add_task("ablation", total=self.total, runs=self._runs_text())

    def __enter__(self) -> AblationProgress:
        self.progress.__enter__()
        parts = len(self.max_epochs)
        self.progress.console.print(
            f"ablation: {parts} variant part{'s' if parts > 1 else ''} × {len(self.seeds)} "
            f"seed{'s' if len(self.seeds) > 1 else ''} = {self.total} runs",
            highlight=False,
        )
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)

    def done(self) -> int:
        """Runs finished: whole parts, and the seeds before the running one in each running part."""
        # Snapshots (atomic in CPython): rich's refresh thread calls this while callbacks change the state.
        return self.finished + sum(self.seeds.index(seed) for seed, _ in tuple(self.running.values()))

    def remaining(self) -> str:
        elapsed, done = time.monotonic() - self.start, self.done()
        trained = done - self.reused
        if done >= self.total:
            return "0:00:00 left"
        if trained > 0:
            return f"~{clock(elapsed / trained * (self.total - done))} left"
        if self.epochs_trained:
            return f"≤{clock(elapsed / self.epochs_trained * self.epochs_left())} left"
        return "estimating…"

    def epochs_left(self) -> int:
        """Epochs left if no run stopped early: all of each waiting part, the rest of each running one."""
        left, running = 0, dict(self.running)
        for key in tuple(self.waiting):
            most, seeds_left = self.max_epochs[key], len(self.seeds)
            if key in running:
                seed, epoch = running[key]
                seeds_left -= self.seeds.index(seed) + 1
                left += most - epoch
            left += seeds_left * most
        return left

    def _runs_text(self) -> str:
        done = self.done()
        return f"{done}/{self.total} runs done, {self.total - done} to go"

    def _update(self) -> None:
        self.progress.update(self.overall, completed=self.done(), runs=self._runs_text())

    def _run_finished(self, what: str) -> None:
        """A line per finished run where there is no live display (it shows the same)."""
        if not self.console.is_terminal:
            elapsed = clock(time.monotonic() - self.start)
            self.console.print(f"{what}: {self._runs_text()}, {elapsed} elapsed, {self.remaining()}", highlight=False)

    def on_epoch(self, variant: Variant, part: str, seed: int, summary: dict[str, float]) -> None:
        key, epoch = (variant.name, part), int(summary["epoch"])
        previous = self.running.get(key)
        self.running[key] = (seed, epoch)
        self.epochs_trained += 1
        if previous is not None and previous[0] != seed:
            self._run_finished(f"{label(variant, part)}, seed {previous[0]}")
        description = escape(f"  {label(variant, part)}, seed {seed}: epoch {epoch} of ≤{self.max_epochs[key]} done")
        if key not in self.rows:
            self.rows[key] = self.progress.add_task(description, total=self.max_epochs[key], runs="")
        self.progress.update(self.rows[key], description=description, completed=epoch)
        self._update()

    def on_part(self, variant: Variant, part: str, runs: list, reused: bool) -> None:
        key = (variant.name, part)
        last = self.running.pop(key, None)
        self.waiting.discard(key)
        if key in self.rows:
            self.progress.remove_task(self.rows.pop(key))
        self.finished += len(self.seeds)
        self.reused += len(self.seeds) if reused else 0
        selected = ", ".join(f"seed {run.seed}: epoch {run.selected_epoch}" for run in runs)
        how = "read back from an earlier run" if reused else "trained"
        self.progress.console.print(f"{label(variant, part)}: {how} (selected {selected})", highlight=False)
        if not reused:
            self._run_finished(f"{label(variant, part)}, seed {last[0] if last else self.seeds[-1]}")
        self._update()
