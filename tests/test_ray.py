"""``--executor ray``: the same results as ``--executor local`` on a local Ray with 2 CPUs, and a worker
that dies is retried once, then recorded as failed while the other jobs go on."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pytest
from cli_checks import run_main

from mmolre_cli.executors import Failed

ray = pytest.importorskip("ray")

FAST = ["--d-model", "16", "--experts", "shared=2,rank=4", "--topk", "1", "--epochs", "1", "--no-track"]


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    """One local Ray for the module (starting one costs seconds); the helpers below travel by value."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    ray.shutdown()


pytestmark = pytest.mark.usefixtures("fast_runs")


def test_ablate_with_ray_gives_the_results_of_local(tiny_data, tmp_path):
    summaries = {}
    for executor in ("local", "ray"):
        out = tmp_path / executor
        args = ["ablate", "--remove", "unitse", "--seeds", "1,2", "--data", str(tiny_data), "--out", str(out)]
        run = run_main([*args, "--executor", executor, "--json", *FAST])
        assert run.exit_code == 0, run.output
        summaries[executor] = json.loads(run.stdout)
        assert sorted(p.name for p in (out / "runs").iterdir()) == ["full", "no-unitse"]
    local, remote = summaries["local"], summaries["ray"]
    assert [v["name"] for v in remote["variants"]] == ["full", "no-unitse"] and remote["failed"] == {}
    assert [v["runs"] for v in remote["variants"]] == [v["runs"] for v in local["variants"]]


def test_tune_with_ray_gives_the_trials_and_retraining_of_local(tiny_data, tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text("lr: {log_uniform: [1.0e-3, 1.0e-2]}\nrouter: [topk, soft]\n")
    summaries, trials = {}, {}
    for executor in ("local", "ray"):
        out = tmp_path / executor
        args = ["tune", "--space", str(space), "--trials", "3", "--data", str(tiny_data), "--out", str(out)]
        run = run_main([*args, "--final-seeds", "1", "--executor", executor, "--json", *FAST])
        assert run.exit_code == 0, run.output
        summaries[executor] = json.loads(run.stdout)
        trials[executor] = (out / "trials.csv").read_text().splitlines()
    strip = lambda lines: [line.rsplit(",", 2)[0] for line in lines]  # noqa: E731 (without seconds and error)
    assert strip(trials["ray"]) == strip(trials["local"]) and len(trials["ray"]) == 4
    assert summaries["ray"]["best"] == summaries["local"]["best"]
    assert summaries["ray"]["final"]["mean"] == summaries["local"]["final"]["mean"]


def _die_on_first_run(marker: Path) -> str:
    if not marker.exists():
        marker.touch()
        os.kill(os.getpid(), signal.SIGKILL)
    return "retried"


def _negate(value: int) -> int:
    return -value


def _always_die(attempts: Path) -> None:
    with attempts.open("a") as file:
        file.write("run\n")
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_killed_worker_is_retried_once_then_recorded_as_failed_and_the_others_go_on(tmp_path):
    from mmolre_cli.executors.ray import RayExecutor

    executor = RayExecutor(None, 1, 0)
    attempts = tmp_path / "attempts"
    keys = {
        executor.submit(_die_on_first_run, tmp_path / "marker"): "killed once",
        executor.submit(_always_die, attempts): "killed twice",
        executor.submit(_negate, -3): "never killed",
    }
    outcomes = {}
    for _ in keys:
        key, outcome = executor.next_done()
        outcomes[keys[key]] = outcome
    executor.close()
    assert outcomes["killed once"] == "retried" and outcomes["never killed"] == 3
    assert isinstance(outcomes["killed twice"], Failed) and attempts.read_text() == "run\nrun\n"
