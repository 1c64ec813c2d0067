"""Learning-rate schedules and checkpoint selection on a validation metric."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from mmolre_cli.config import TrainConfig
from mmolre_cli.errors import UsageError
from mmolre_cli.metrics import MER_SUMMARY, MSA_METRICS, higher_is_better

#: ``plateau`` halves the learning rate after this many epochs without improvement of the selected metric.
PLATEAU_PATIENCE = 1
PLATEAU_FACTOR = 0.5


def selectable_metrics(tasks: list[str], emotions: list[str]) -> list[str]:
    """Validation metrics ``--select`` may name for these tasks (losses, MSA, MER summaries and per emotion)."""
    names = ["loss", *(f"loss_{task}" for task in tasks)]
    if "sa" in tasks:
        names += MSA_METRICS
    if "er" in tasks:
        names += [*MER_SUMMARY, *(f"{kind}_{e}" for e in emotions for kind in ("WA", "F1w", "F1b", "Acc"))]
    return names


@dataclass
class Selection:
    """The best validation value of ``metric`` so far and its epoch (0: none yet); NaN never improves."""

    metric: str
    higher: bool
    best: float | None = None
    epoch: int = 0

    @classmethod
    def for_metric(cls, metric: str, tasks: list[str], emotions: list[str]) -> Selection:
        valid = selectable_metrics(tasks, emotions)
        if metric not in valid:
            raise UsageError(
                f"--select: unknown metric {metric!r} for tasks {', '.join(tasks)} (valid: {', '.join(valid)})"
            )
        return cls(metric, higher_is_better(metric))

    def update(self, value: float | None, epoch: int) -> bool:
        """Record ``value`` of ``epoch``; whether it is the new best (the first epoch always is)."""
        value = math.nan if value is None else float(value)
        if self.best is None or (value == value and (self.best != self.best or self._better(value, self.best))):
            self.best, self.epoch = value, epoch
            return True
        return False

    def _better(self, value: float, best: float) -> bool:
        return value > best if self.higher else value < best

    def state_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "higher": self.higher, "best": self.best, "epoch": self.epoch}


class Schedule:
    """The learning rate of ``config.schedule``: ``constant``; ``cosine`` (linear warm-up over
    ``warmup_epochs``, then cosine decay to 0 at the last epoch), stepped after every batch; or
    ``plateau`` (×``PLATEAU_FACTOR`` after ``PLATEAU_PATIENCE`` epochs without improvement), stepped per epoch."""

    def __init__(self, optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int, higher: bool):
        self.per_step: torch.optim.lr_scheduler.LambdaLR | None = None
        self.per_epoch: torch.optim.lr_scheduler.ReduceLROnPlateau | None = None
        if config.schedule == "cosine":
            warmup = config.warmup_epochs * steps_per_epoch
            decay = max(1, config.epochs * steps_per_epoch - warmup)

            def factor(step: int) -> float:
                if step < warmup:
                    return (step + 1) / warmup
                return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / decay)))

            self.per_step = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        elif config.schedule == "plateau":
            self.per_epoch = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode="max" if higher else "min", factor=PLATEAU_FACTOR, patience=PLATEAU_PATIENCE
            )

    def step(self) -> None:
        """After an optimisation step."""
        if self.per_step is not None:
            self.per_step.step()

    def end_epoch(self, value: float | None) -> None:
        """After an epoch's validation, with the selected metric's value."""
        if self.per_epoch is not None:
            self.per_epoch.step(math.nan if value is None else value)

    def state_dict(self) -> dict[str, Any]:
        scheduler = self.per_step or self.per_epoch
        return scheduler.state_dict() if scheduler is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        scheduler = self.per_step or self.per_epoch
        if scheduler is not None:
            scheduler.load_state_dict(state)
