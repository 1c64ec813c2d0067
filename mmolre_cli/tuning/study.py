"""Running a study: ask Optuna for trials, train them with an executor, record every outcome, then write
the best configuration, retrain it over the final seeds and only then test it.

Several processes (on one machine or many) may work on one study through its RDB storage: each asks for
trials while the study holds fewer than the target, so together they run it once.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from mmolre_cli.ablation.runner import PartJob, part_worker, train_part
from mmolre_cli.atomic import remove_temporaries
from mmolre_cli.config import RunConfig, build_config, save_yaml
from mmolre_cli.errors import TrainingError, UsageError
from mmolre_cli.executors import Executor, Failed, Inline
from mmolre_cli.metrics import higher_is_better
from mmolre_cli.plugins.registry import Registry
from mmolre_cli.state_files import read_json
from mmolre_cli.training.seeds import aggregate
from mmolre_cli.training.tracking import Tracker
from mmolre_cli.tuning.report import (
    HISTORY_PNG,
    IMPORTANCES_PNG,
    TRIALS_CSV,
    plot_history,
    plot_importances,
    write_trials,
)
from mmolre_cli.tuning.space import Dimension, apply
from mmolre_cli.tuning.trial import PRUNERS, TrialJob, TrialResult, make_pruner, open_storage, train_trial, trial_worker

BEST_YAML, SUMMARY_JSON, STATE_JSON, STORAGE_NAME = "best.yaml", "tune.json", "tune-state.json", "optuna.db"
Trial = optuna.trial.TrialState
FINISHED = (Trial.COMPLETE, Trial.PRUNED, Trial.FAIL)


@dataclass
class Objective:
    """The validation metric a study optimises, and its direction."""

    metric: str
    higher: bool

    @classmethod
    def parse(cls, value: str, metrics: list[str]) -> Objective:
        """``valid.MAE`` → MAE, minimised; only the validation split, and a metric of the trained tasks."""
        split, _, metric = value.partition(".")
        if split != "valid" or not metric:
            raise UsageError(f"--objective {value}: expected valid.METRIC (tuning sees the validation split only)")
        if metric not in metrics:
            valid = ", ".join(metrics)
            raise UsageError(f"--objective {value}: unknown metric {metric!r} for these tasks (valid: {valid})")
        return cls(metric, higher_is_better(metric))

    @property
    def direction(self) -> str:
        return "maximize" if self.higher else "minimize"


def default_storage(out: Path) -> str:
    return f"sqlite:///{out.resolve() / STORAGE_NAME}"


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def requeue_interrupted(study: optuna.Study) -> list[int]:
    """Fail the running trials of a process of this machine that no longer runs (an interrupted study) and
    ask for their parameters again; their numbers."""
    host = socket.gethostname()
    interrupted = []
    for trial in study.get_trials(deepcopy=False, states=(Trial.RUNNING,)):
        owner_host, _, pid = trial.user_attrs.get("owner", "").rpartition(":")
        if owner_host == host and pid.isdigit() and not _alive(int(pid)):
            study._storage.set_trial_user_attr(trial._trial_id, "interrupted", True)
            study.tell(trial.number, state=Trial.FAIL)
            study.enqueue_trial(trial.params)
            interrupted.append(trial.number)
    return interrupted


def counted(trials: list[optuna.trial.FrozenTrial]) -> int:
    """Trials that count toward ``--trials``: finished, and not failed by an interruption (those are rerun)."""
    return sum(t.state in FINISHED and not t.user_attrs.get("interrupted") for t in trials)


def open_study(
    storage: str,
    name: str,
    objective: Objective,
    space: list[Dimension],
    values: dict[str, Any],
    seed: int,
    pruner: str,
    epochs: int,
) -> optuna.Study:
    """Create the study, or load it when it exists with the same space, objective and base config."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our own lines say what happened
    if pruner not in PRUNERS:
        raise UsageError(f"--pruner: unknown value {pruner!r} (valid: {', '.join(PRUNERS)})")
    for attempt in range(3):
        try:
            study = optuna.create_study(
                storage=open_storage(storage), study_name=name, direction=objective.direction, load_if_exists=True,
                sampler=optuna.samplers.TPESampler(seed=seed), pruner=make_pruner(pruner, epochs),
            )  # fmt: skip
            break
        except (ImportError, ValueError) as error:
            raise UsageError(f"--storage {storage}: cannot open it ({error})") from None
        except Exception as error:  # SQLAlchemy's: a server that does not answer, or another process creating it
            if attempt == 2:
                raise UsageError(f"--storage {storage}: cannot open it ({type(error).__name__}: {error})") from None
            time.sleep(1 + attempt)  # two processes that create one storage at once: the second then loads it
    planned = {
        "space": {d.name: repr(d.distribution) for d in space},
        "objective": f"valid.{objective.metric}",
        "config": build_config(values, source="options").to_dict(),
    }
    stored = study.user_attrs.get("mmolre")
    if stored is None:
        study.set_user_attr("mmolre", planned)
    elif stored != optuna_json(planned):
        changed = next(key for key in planned if stored.get(key) != optuna_json(planned)[key])
        raise UsageError(
            f"--study {name}: it was run with another {changed}; repeat the original options or choose another --study"
        )
    return study


def optuna_json(values: Any) -> Any:
    """``values`` as the storage gives it back (JSON)."""
    import json

    return json.loads(json.dumps(values))


def run_study(
    space: list[Dimension],
    values: dict[str, Any],
    objective: Objective,
    out: Path,
    registry: Registry,
    *,
    trials: int,
    study_name: str,
    storage: str | None = None,
    seed: int = 0,
    pruner: str = "median",
    final_seeds: list[int] = (1, 2, 3),
    executor: Executor | None = None,
    plugins_dir: Path | None = None,
    tracking_uri: str | None = None,
    warn: Callable[[str], None] | None = None,
    on_trial: Callable[[TrialResult | None, optuna.Study], None] | None = None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> dict[str, Any]:
    """Run the study until it holds ``trials`` finished trials, then write ``best.yaml``, retrain the best
    configuration over ``final_seeds`` and test it; the summary written to ``tune.json``.

    ``values`` is the plain base config (file plus flags); each trial sets the space's settings in it.
    ``on_trial(result, study)`` follows every trial this process ran (result None: it failed); ``on_epoch(
    trial number, summary)`` every epoch of a trial trained in this process.
    """
    from mmolre_cli.training.trainer import write_json_atomic

    warn = warn or (lambda message: None)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"--out {out}: cannot create directory ({error.strerror or error})") from None
    remove_temporaries(out)
    storage = storage or default_storage(out)
    epochs = build_config(values, source="options").train.epochs
    study = open_study(storage, study_name, objective, space, values, seed, pruner, epochs)
    for number in requeue_interrupted(study):
        warn(f"trial {number} was interrupted; its parameters are tried again")
    executor = executor or Inline()

    state_path = out / STATE_JSON
    state = read_json(state_path) if state_path.is_file() else {}
    parent = Tracker(tracking_uri, out, f"tune-{study_name}", on_warning=warn)
    previous = state.get("parent_run_id") if state.get("tracking_uri") == tracking_uri else None
    parent.start({"study": study_name, "objective": f"valid.{objective.metric}", "trials": trials,
                  "space": {d.name: repr(d.distribution) for d in space}}, resume_run_id=previous)  # fmt: skip
    write_json_atomic({"parent_run_id": parent.run_id, "tracking_uri": tracking_uri}, state_path)
    distributions = {d.name: d.distribution for d in space}
    mine: list[int] = []
    status = "FAILED"
    try:
        pending: dict[int, TrialJob] = {}

        def submit(trial: optuna.trial.Trial) -> None:
            trial.set_user_attr("owner", _owner())
            try:
                config = build_config(apply(values, space, trial.params), source=f"trial {trial.number}")
            except UsageError as error:  # say topk above the number of shared experts
                trial.set_user_attr("error", str(error))
                study.tell(trial, state=Trial.FAIL)
                warn(f"trial {trial.number}: {error}; recorded as failed")
                return
            job = TrialJob(
                trial.number, trial._trial_id, config, out / "trials" / f"trial-{trial.number}", storage,
                study_name, pruner, objective.higher, objective.metric, out, parent.uri, parent.run_id,
                executor.threads, plugins_dir,
            )  # fmt: skip
            if isinstance(executor, Inline):
                report = (lambda summary, n=trial.number: on_epoch(n, summary)) if on_epoch else None
                function = lambda job: train_trial(job, registry, parent, warn=warn, on_epoch=report)  # noqa: E731
            else:
                function = trial_worker
            pending[executor.submit(function, job)] = job
            mine.append(trial.number)

        while True:
            while len(pending) < executor.capacity:
                current = study.get_trials(deepcopy=False)
                if counted(current) + sum(t.state == Trial.RUNNING for t in current) >= trials:
                    break
                submit(study.ask(distributions))
            if not pending:
                break
            key, outcome = executor.next_done()
            job = pending.pop(key)
            if isinstance(outcome, Failed):
                study._storage.set_trial_user_attr(job.trial_id, "error", f"worker died twice: {outcome.reason}")
                study.tell(job.number, state=Trial.FAIL)
                warn(f"trial {job.number}: its worker died twice ({outcome.reason}); recorded as failed")
                outcome = None
            else:
                study._storage.set_trial_user_attr(job.trial_id, "epochs", outcome.epochs)
                if outcome.state == "PRUNED":
                    study.tell(job.number, state=Trial.PRUNED)
                elif outcome.value is None:
                    study._storage.set_trial_user_attr(job.trial_id, "error", f"valid {objective.metric} undefined")
                    study.tell(job.number, state=Trial.FAIL)
                else:
                    study.tell(job.number, outcome.value)
            if on_trial:
                on_trial(outcome, study)
        summary = finish(study, space, values, objective, out, registry, parent, executor, final_seeds,
                         plugins_dir=plugins_dir, seed=seed, warn=warn)  # fmt: skip
        summary["ran_here"] = mine
        write_json_atomic(summary, out / SUMMARY_JSON)
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        executor.close()
        parent.end(status)
    return summary


def best_config(values: dict[str, Any], space: list[Dimension], params: dict[str, Any]) -> RunConfig:
    """The base config with the best trial's parameters, its data path absolute (the file moves with no cwd)."""
    config = build_config(apply(values, space, params), source="best trial")
    if config.data:
        config.data = str(Path(config.data).resolve())
    return config


def finish(
    study: optuna.Study,
    space: list[Dimension],
    values: dict[str, Any],
    objective: Objective,
    out: Path,
    registry: Registry,
    parent: Tracker,
    executor: Executor,
    final_seeds: list[int],
    *,
    plugins_dir: Path | None,
    seed: int,
    warn: Callable[[str], None],
) -> dict[str, Any]:
    """``trials.csv``, the plots, ``best.yaml``, and the best configuration retrained over ``final_seeds``
    and tested (once for the study: a process that finds it retrained reads it back)."""
    trials = study.get_trials(deepcopy=False)
    names = [d.name for d in space]
    write_trials(trials, names, f"valid.{objective.metric}", out / TRIALS_CSV)
    plot_history(trials, f"valid.{objective.metric}", objective.higher, out / HISTORY_PNG)
    note = plot_importances(study, names, seed, out / IMPORTANCES_PNG)
    if note:
        warn(note)
    states = {state.name.lower(): sum(t.state == state for t in trials) for state in (*FINISHED, Trial.RUNNING)}
    if not states["complete"]:
        raise TrainingError(f"study {study.study_name}: no trial completed ({states}); see {out / TRIALS_CSV}")
    if states["running"]:
        warn(
            f"{states['running']} trial(s) still run in other processes: the best of the {states['complete']} complete "
            "ones is retrained; the last process to finish (or a rerun) sees them all"
        )
    best = study.best_trial
    config = best_config(values, space, best.params)
    save_yaml(config, out / BEST_YAML)
    directory = out / f"final-trial-{best.number}"
    job = PartJob(config, list(final_seeds), out, directory, parent.uri, parent.run_id, executor.threads, plugins_dir)
    # One process retrains; another that gets here reads its result back (train_part does).
    with open(out / ".final.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if isinstance(executor, Inline):
            runs = train_part(job, registry, parent, warn=warn)
        else:
            executor.submit(part_worker, job)
            _, runs = executor.next_done()
            if isinstance(runs, Failed):
                raise TrainingError(f"{directory}: the retraining's worker died twice ({runs.reason}); rerun to retry")
    mean, std = aggregate([run.metrics for run in runs])
    parent.log_metrics({f"final_test_{k}_mean": v for k, v in mean["test"].items()})
    parent.log_metrics({f"best_valid_{objective.metric}": best.value})
    parent.log_artifacts([out / BEST_YAML, out / TRIALS_CSV, out / HISTORY_PNG, out / IMPORTANCES_PNG])
    return {
        "study": study.study_name,
        "objective": f"valid.{objective.metric}",
        "direction": objective.direction,
        "trials": states,
        "best": {"number": best.number, "value": best.value, "params": best.params},
        "best_config": str(out / BEST_YAML),
        "final": {
            "run_dir": str(directory),
            "seeds": list(final_seeds),
            "mean": mean,
            "std": std,
            "runs": {str(run.seed): run.metrics for run in runs},
        },
    }
