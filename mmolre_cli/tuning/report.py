"""What a study leaves for people: ``trials.csv``, the optimisation history and the parameter importances."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import optuna

from mmolre_cli.atomic import atomic_path

TRIALS_CSV, HISTORY_PNG, IMPORTANCES_PNG = "trials.csv", "history.png", "importances.png"


def write_trials(trials: list[optuna.trial.FrozenTrial], names: list[str], objective: str, path: Path) -> None:
    """One row per trial: number, state, the objective (complete trials), every parameter, epochs, seconds, error."""
    header = ["number", "state", objective, *names, "epochs", "seconds", "error"]
    with atomic_path(path) as temporary, temporary.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        for trial in trials:
            value = trial.value if trial.state == optuna.trial.TrialState.COMPLETE else None
            seconds = trial.duration.total_seconds() if trial.duration else None
            writer.writerow(
                [trial.number, trial.state.name, "" if value is None else repr(value)]
                + [trial.params.get(name, "") for name in names]
                + [trial.user_attrs.get("epochs", ""), "" if seconds is None else f"{seconds:.1f}"]
                + [trial.user_attrs.get("error", "")]
            )


def plot_history(trials: list[optuna.trial.FrozenTrial], objective: str, higher: bool, path: Path) -> None:
    """The objective of every complete trial by trial number, and the best so far."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.ticker import MaxNLocator

    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE and math.isfinite(t.value)]
    pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in trials)
    best, running = [], None
    for trial in complete:
        running = trial.value if running is None else (max if higher else min)(running, trial.value)
        best.append(running)
    figure, axis = plt.subplots(figsize=(6, 3.6))
    axis.scatter([t.number for t in complete], [t.value for t in complete], s=18, label="trial")
    axis.step([t.number for t in complete], best, where="post", color="tab:red", label="best so far")
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.set_xlabel("trial")
    axis.set_ylabel(f"{objective} ({'↑' if higher else '↓'})")
    axis.set_title(f"Optimisation history: {len(complete)} complete, {pruned} pruned", fontsize=10)
    axis.legend(fontsize=8)
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=120)
    plt.close(figure)


def plot_importances(study: optuna.Study, names: list[str], seed: int, path: Path) -> str | None:
    """Bars of each parameter's fANOVA importance over the complete trials; the reason when there is none."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
    try:
        importances = optuna.importance.get_param_importances(study, evaluator=evaluator, params=names)
    except (ValueError, RuntimeError) as error:  # fewer than two complete trials, or nothing varied
        return f"no parameter importances ({error})"
    figure, axis = plt.subplots(figsize=(6, 0.5 + 0.4 * len(importances)))
    labels = list(importances)[::-1]
    axis.barh(labels, [importances[name] for name in labels], color="tab:blue")
    axis.set_xlabel("importance (fANOVA, share of the objective's variance)")
    axis.set_title("Parameter importances", fontsize=10)
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=120)
    plt.close(figure)
    return None
