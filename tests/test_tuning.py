"""``mmolre tune``: the search space, the study on the validation split only, resuming, concurrent
processes on one storage, the best configuration retrained and tested, and the executors' one-line errors."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from cli_checks import run_main

from mmolre_cli.errors import UsageError
from mmolre_cli.tuning.space import check_space, load_space, parse_dimension
from mmolre_cli.tuning.study import SUMMARY_JSON

SPACE = "lr: {log_uniform: [1.0e-3, 1.0e-2]}\nexperts.rank: {int: [2, 8], step: 2}\nrouter: [topk, soft]\n"
FAST = ["--d-model", "16", "--experts", "shared=2,rank=4", "--topk", "1", "--epochs", "1", "--no-track"]
REPO = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("fast_runs")


@pytest.fixture
def space(tmp_path) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(SPACE)
    return path


def test_space_reads_every_kind_of_distribution_at_its_place_in_the_config():
    dimensions = {d.name: d for d in load_space(REPO / "examples" / "tune_space.yaml")}
    assert dimensions["lr"].path == ("train", "lr")
    assert dimensions["lr"].distribution == optuna.distributions.FloatDistribution(1e-4, 3e-3, log=True)
    assert dimensions["experts.rank"].distribution == optuna.distributions.IntDistribution(8, 64, step=8)
    assert dimensions["experts.shared"].distribution.choices == (2, 4, 8)
    assert dimensions["dropout"].path == ("model", "dropout")
    assert dimensions["task_weights.er"].path == ("model", "task_weights", "er")
    assert parse_dimension("model.blocks", {"log_int": [1, 4]}, "s").distribution.log


@pytest.mark.parametrize(
    ("name", "spec", "message"),
    [
        ("lrr", [1], "'lrr' is not a setting of model or train; did you mean 'lr'?"),
        ("lr", {"log_uniform": [0, 1]}, "lr: log_uniform: low must be > 0"),
        ("lr", {"uniform": [2, 1]}, "low (2.0) must be below high (1.0)"),
        ("topk", {"uniform": [1, 2]}, "topk: a int setting takes int, log_int or a list of choices, not uniform"),
        ("router", {"int": [1, 2]}, "router: a str setting takes a list of choices, not int"),
        ("seed", [1, 2], "seed: not searchable"),
        ("lr", {"normal": [1, 2]}, "lr: expected a list of choices or one of"),
        ("tasks", [["sa"], ["er"]], "expected a non-empty list of distinct plain choices"),
    ],
)
def test_a_bad_space_entry_is_one_line_naming_it(name, spec, message):
    with pytest.raises(UsageError) as error:
        parse_dimension(name, spec, "space.yaml")
    assert message in str(error.value) and "\n" not in str(error.value)


def test_every_choice_is_checked_against_the_registry_before_any_trial(tmp_path, tiny_data, registry):
    (tmp_path / "space.yaml").write_text("router: [topk, topkk]\n")
    with pytest.raises(UsageError, match="--router: unknown .*topkk"):
        check_space(load_space(tmp_path / "space.yaml"), {}, registry, "--space space.yaml")
    out = tmp_path / "out"
    run = run_main(
        ["tune", "--space", str(tmp_path / "space.yaml"), "--data", str(tiny_data), "--out", str(out), *FAST]
    )
    assert run.exit_code == 2 and run.stderr.count("\n") == 1 and "router=topkk" in run.stderr
    assert not out.exists()


def test_the_objective_is_a_validation_metric_of_the_trained_tasks(space, tiny_data, tmp_path):
    for objective, message in (("test.MAE", "tuning sees the validation split only"), ("valid.MAEE", "unknown metric")):
        run = run_main(["tune", "--space", str(space), "--objective", objective, "--data", str(tiny_data), *FAST])
        assert run.exit_code == 2 and message in run.stderr and run.stderr.count("\n") == 1


def test_ray_missing_is_one_line_saying_how_to_install_it(space, tiny_data, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    run = run_main(["ablate", "--remove", "unitse", "--executor", "ray", "--data", str(tiny_data), *FAST])
    assert run.exit_code == 2
    assert run.stderr == "Error: --executor ray: Ray is not installed; install it with pip install 'mmolre-cli[ray]'\n"


def rows(path: Path) -> list[dict[str, str]]:
    with path.open() as file:
        return list(csv.DictReader(file))


def test_tune_selects_on_valid_retrains_the_best_over_seeds_tests_only_then_and_resumes(space, tiny_data, tmp_path):
    out = tmp_path / "study"
    args = ["tune", "--space", str(space), "--data", str(tiny_data), "--out", str(out), "--final-seeds", "1,2", *FAST]
    run = run_main([*args, "--trials", "3", "--objective", "valid.MAE", "--json"])
    assert run.exit_code == 0, run.output
    summary = json.loads(run.stdout)
    trials = rows(out / "trials.csv")
    assert [row["number"] for row in trials] == ["0", "1", "2"] and summary["ran_here"] == [0, 1, 2]
    # The trials never scored the test split; the winner is the lowest validation MAE.
    for row in trials:
        report = json.loads((out / "trials" / f"trial-{row['number']}" / "metrics.json").read_text())
        assert set(report["metrics"]) == {"valid"} and float(row["valid.MAE"]) == report["metrics"]["valid"]["MAE"]
    best = min(trials, key=lambda row: float(row["valid.MAE"]))
    assert summary["best"]["number"] == int(best["number"]) and summary["direction"] == "minimize"
    for name in ("history.png", "importances.png"):
        assert (out / name).read_bytes().startswith(b"\x89PNG")
    # The reported test numbers are the mean ± std of the retrained seeds.
    final = out / f"final-trial-{best['number']}"
    tests = [json.loads((final / f"seed-{s}" / "metrics.json").read_text())["metrics"]["test"] for s in (1, 2)]
    assert summary["final"]["mean"]["test"]["MAE"] == pytest.approx((tests[0]["MAE"] + tests[1]["MAE"]) / 2)
    # best.yaml is a config `mmolre train` takes, and it reproduces the retrained seed 1 exactly.
    again = run_main(
        ["train", "--config", str(out / "best.yaml"), "--out", str(tmp_path / "again"), "--no-track", "--json"]
    )
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["test"] == tests[0]
    # A rerun continues the study: one more trial to reach four, the rest read back.
    rerun = run_main([*args, "--trials", "4", "--objective", "valid.MAE", "--json"])
    assert rerun.exit_code == 0, rerun.output
    assert json.loads(rerun.stdout)["ran_here"] == [3] and len(rows(out / "trials.csv")) == 4
    # Another objective on the same study is refused.
    other = run_main([*args, "--trials", "5", "--objective", "valid.Corr"])
    assert other.exit_code == 2 and "it was run with another objective" in other.stderr


def test_two_processes_on_one_storage_share_the_study_without_counting_a_trial_twice(space, tiny_data, tmp_path):
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    environment = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    commands = [
        [sys.executable, "-m", "mmolre_cli", "tune", "--space", str(space), "--data", str(tiny_data), "--trials", "4",
         "--storage", storage, "--study", "shared", "--out", str(tmp_path / f"out-{i}"), "--final-seeds", "1",
         "--json", *FAST]
        for i in (1, 2)
    ]  # fmt: skip
    processes = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environment) for c in commands]
    outputs = [process.communicate(timeout=600) for process in processes]
    assert all(process.returncode == 0 for process in processes), [err.decode()[-2000:] for _, err in outputs]
    ran = [json.loads(stdout)["ran_here"] for stdout, _ in outputs]
    study = optuna.load_study(study_name="shared", storage=storage)
    numbers = [trial.number for trial in study.trials]
    assert sorted(ran[0] + ran[1]) == numbers  # the union, each trial run by one process only
    assert len(numbers) >= 4 and all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    summaries = [json.loads((tmp_path / f"out-{i}" / SUMMARY_JSON).read_text()) for i in (1, 2)]
    assert max(summary["trials"]["complete"] for summary in summaries) == len(numbers)


class AlwaysPrune(optuna.pruners.BasePruner):
    def prune(self, study, trial) -> bool:
        return True


def test_a_pruned_trial_stops_after_the_epoch_it_reported_and_is_recorded_pruned(
    space, tiny_data, tmp_path, monkeypatch
):
    monkeypatch.setattr("mmolre_cli.tuning.trial.make_pruner", lambda name, epochs: AlwaysPrune())
    out = tmp_path / "study"
    args = ["tune", "--space", str(space), "--data", str(tiny_data), "--out", str(out), "--trials", "2", *FAST]
    run = run_main([*args, "--epochs", "3"])
    assert run.exit_code == 1 and "no trial completed" in run.stderr
    assert [(row["state"], row["epochs"]) for row in rows(out / "trials.csv")] == [("PRUNED", "1")] * 2
    study = optuna.load_study(study_name="tune", storage=f"sqlite:///{out / 'optuna.db'}")
    assert [list(t.intermediate_values) for t in study.trials] == [[1], [1]]
    assert not (out / "trials" / "trial-0" / "metrics.json").exists()
