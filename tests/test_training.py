"""Research-grade training: selection, schedules, seeds, exact resume, MLflow runs, routing analysis, DDP."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mmolre_cli.cli.app import app
from mmolre_cli.config import TrainConfig
from mmolre_cli.data.canonical import Split, read_canonical, write_canonical
from mmolre_cli.errors import UsageError
from mmolre_cli.metrics import tune_thresholds
from mmolre_cli.training.checkpoint import load_checkpoint
from mmolre_cli.training.schedule import PLATEAU_PATIENCE, Schedule, Selection

TINY = ["--d-model", "16", "--experts", "shared=2,rank=4", "--topk", "1", "--batch-size", "32"]
# Four epochs with dropout, a cosine schedule and tuned thresholds: every piece of state a resume must restore.
RESUMABLE = [*TINY, "--epochs", "4", "--patience", "9", "--schedule", "cosine", "--tune-thresholds", "--no-track"]


@pytest.fixture(scope="module")
def runner():
    return CliRunner()


def train(runner, *args):
    result = runner.invoke(app, ["train", *map(str, args)])
    assert result.exit_code == 0, result.output
    return result


def report(run_dir):
    return json.loads((run_dir / "metrics.json").read_text())


def without_time(history):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


@pytest.fixture(scope="module")
def reference(runner, tiny_data, tmp_path_factory):
    """An uninterrupted run of RESUMABLE."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    train(runner, "--data", tiny_data, *RESUMABLE, "--out", run_dir)
    return run_dir


@pytest.fixture(scope="module")
def seeds_run(runner, tiny_data, tmp_path_factory):
    """Two seeds, tracked in the run directory's MLflow store; and the same command again, untracked."""
    base = tmp_path_factory.mktemp("seeds")
    args = ["--data", tiny_data, *TINY, "--epochs", "2", "--seeds", "1,2"]
    first = train(runner, *args, "--out", base / "a", "--tracking-uri", f"sqlite:///{base / 'a' / 'mlflow.db'}")
    again = train(runner, *args, "--out", base / "b", "--no-track")
    return base / "a", first.stdout, again.stdout


# Selection and schedules


def test_selection_follows_the_metric_direction_and_never_picks_nan():
    by_loss = Selection.for_metric("loss", ["sa", "er"], ["happy"])
    assert [by_loss.update(v, e) for e, v in enumerate([2.0, 1.5, 1.7, math.nan], 1)] == [True, True, False, False]
    assert (by_loss.best, by_loss.epoch) == (1.5, 2)
    by_accuracy = Selection.for_metric("Non0_acc_2", ["sa"], [])
    assert [by_accuracy.update(v, e) for e, v in enumerate([math.nan, 0.6, 0.5, 0.7], 1)] == [True, True, False, True]
    assert by_accuracy.epoch == 4
    with pytest.raises(UsageError, match="--select: unknown metric 'WA_mean'"):
        Selection.for_metric("WA_mean", ["sa"], [])


def test_cosine_warms_up_then_decays_to_zero_and_plateau_halves():
    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([weight], lr=1.0)
    schedule = Schedule(optimizer, TrainConfig(epochs=3, schedule="cosine", warmup_epochs=1), 2, higher=False)
    rates = []
    for _ in range(6):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert rates[:3] == pytest.approx([0.5, 1.0, 1.0]) and rates[3] < 1.0 and rates[5] < 0.2
    assert rates == sorted(rates[:2]) + sorted(rates[2:], reverse=True)

    optimizer = torch.optim.SGD([weight], lr=1.0)
    schedule = Schedule(optimizer, TrainConfig(schedule="plateau"), 2, higher=True)
    for value in [0.5] + [0.4] * (PLATEAU_PATIENCE + 1):
        schedule.end_epoch(value)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.5)


def test_select_a_metric_keeps_its_best_epoch(runner, tiny_data, tmp_path):
    run_dir = tmp_path / "run"
    train(runner, "--data", tiny_data, *TINY, "--epochs", "3", "--select", "Non0_acc_2", "--out", run_dir, "--no-track")
    values = report(run_dir)
    accuracy = [row["valid_Non0_acc_2"] for row in values["history"]]
    assert values["selection"]["metric"] == "Non0_acc_2" and values["selection"]["direction"] == "max"
    assert values["selected_epoch"] == 1 + accuracy.index(max(accuracy))
    assert load_checkpoint(run_dir)["epoch"] == values["selected_epoch"]


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--select", "accuracy"], "--select: unknown metric 'accuracy'"),
        (["--precision", "fp16"], "--precision fp16: needs a CUDA device"),
        (["--precision", "fp8"], "train.precision: unknown value 'fp8'"),
        (["--schedule", "step"], "train.schedule: unknown value 'step'"),
        (["--seeds", "1,x"], "--seeds: expected"),
        (["--nproc", "0"], "--nproc: must be at least 1"),
    ],
)
def test_bad_training_options_fail_in_one_line_and_write_nothing(runner, tiny_data, tmp_path, args, fragment):
    out = tmp_path / "never"
    result = runner.invoke(app, ["train", "--data", str(tiny_data), *TINY, "--out", str(out), "--no-track", *args])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0]
    assert not out.exists()


def test_a_diverging_run_stops_with_one_line_and_fails_its_mlflow_run(runner, tiny_data, tmp_path):
    import mlflow

    run_dir = tmp_path / "run"
    uri = f"sqlite:///{run_dir.resolve() / 'mlflow.db'}"
    diverging = ["--data", str(tiny_data), *TINY, "--lr", "1e30", "--tracking-uri", uri, "--out", str(run_dir)]
    result = runner.invoke(app, ["train", *diverging])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.startswith(f"Error: {run_dir}: the training loss is nan in epoch 1 (step ")
    assert result.stderr.rstrip().endswith(
        "training diverged; train a new run (another --out) with a lower --lr or --grad-clip"
    )
    assert not (run_dir / "metrics.json").exists()
    client = mlflow.MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    assert run.info.status == "FAILED"


def test_metrics_are_undefined_when_a_scored_prediction_is_not_finite_and_only_then():
    from mmolre_cli.config import ModelConfig
    from mmolre_cli.training.batches import TensorSplit
    from mmolre_cli.training.evaluate import score

    rng = np.random.default_rng(0)
    sentiment = torch.tensor(rng.uniform(-3, 3, 40), dtype=torch.float32)
    emotion = torch.tensor(rng.uniform(0, 3, (40, 6)) * (rng.random((40, 6)) < 0.4), dtype=torch.float32)
    emotion[:10] = float("nan")  # ten clips without emotion labels
    split = TensorSplit({}, {}, sentiment, emotion)
    predictions = {"sa": rng.normal(size=40), "er": rng.normal(size=(40, 6))}
    emotions = ["happy", "sad", "anger", "surprise", "disgust", "fear"]
    reference = score(predictions, split, ModelConfig(), emotions)
    predictions["er"][3] = np.nan  # an unlabelled clip's logit: no metric scores it
    assert score(predictions, split, ModelConfig(), emotions) == reference
    predictions["er"][20], predictions["sa"][5] = np.nan, np.inf  # scored predictions
    undefined = score(predictions, split, ModelConfig(), emotions)
    assert set(undefined) == set(reference) and all(math.isnan(value) for value in undefined.values())


def test_bf16_autocast_trains_on_cpu(runner, tiny_data, tmp_path):
    run_dir = tmp_path / "run"
    train(runner, "--data", tiny_data, *TINY, "--epochs", "1", "--precision", "bf16", "--out", run_dir, "--no-track")
    assert math.isfinite(report(run_dir)["metrics"]["test"]["MAE"])


# Thresholds and routing


def test_thresholds_are_tuned_on_validation_only_and_used_for_test(runner, reference):
    from mmolre_cli.plugins import load_registry
    from mmolre_cli.training.restore import restore_model

    values = report(reference)
    stored = load_checkpoint(reference)["thresholds"]
    assert stored is not None and list(values["thresholds"].values()) == pytest.approx(stored.tolist())
    model, payload = restore_model(reference, load_registry())
    from mmolre_cli.data.canonical import read_canonical
    from mmolre_cli.training.batches import TensorSplit
    from mmolre_cli.training.evaluate import predict

    valid = TensorSplit.from_split(read_canonical(payload["config"]["data"]).splits["valid"], model.modalities)
    logits = predict(model, valid, 32, payload["pos_weight"]).outputs["er"]
    assert np.array_equal(tune_thresholds(logits, valid.emotion.numpy()), stored.numpy())
    evaluated = runner.invoke(app, ["eval", str(reference), "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    for key, value in values["metrics"]["test"].items():
        assert json.loads(evaluated.stdout)["metrics"][key] == pytest.approx(value, rel=1e-6, nan_ok=True), key


def test_curves_show_validation_metrics_and_the_learning_rate_only_when_it_changes(reference, tmp_path):
    from mmolre_cli.training.plots import history_panels, plot_history

    history = report(reference)["history"]
    panels = history_panels(history)  # a cosine schedule: the rate changes
    assert panels["validation metrics"] == ["valid_MAE", "valid_Corr", "valid_WA_mean"]
    assert panels["learning rate"] == ["lr"] and "valid_loss" in panels["task losses"]
    constant = [{**row, "lr": 1e-3} for row in history]
    sentiment_only = [{k: v for k, v in row.items() if "WA_mean" not in k} for row in constant]
    assert "learning rate" not in history_panels(constant)
    assert history_panels(sentiment_only)["validation metrics"] == ["valid_MAE", "valid_Corr"]
    assert plot_history(constant, tmp_path / "curves.png", selected_epoch=2).stat().st_size > 0
    assert (reference / "curves.png").is_file()


def test_a_run_keeps_a_plain_text_log_of_what_the_terminal_showed(reference):
    log = (reference / "train.log").read_text()
    epochs = [line for line in log.splitlines() if line.startswith("epoch ")]
    assert len(epochs) == 4 and "train loss" in epochs[0] and "valid loss" in epochs[0]
    selected = report(reference)["selected_epoch"]
    assert f"MMoLRE — selected epoch {selected}" in log and f"run directory: {reference}" in log
    assert "\x1b[" not in log  # plain text: no terminal colour codes


def test_routing_frequencies_and_weights_per_task_block_and_modality(reference):
    routing = report(reference)["routing"]
    for split in ("valid", "test"):
        assert set(routing[split]) == {"text", "audio", "vision"}
        for by_block in routing[split].values():
            assert set(by_block) == {"1", "2"}
            for by_task in by_block.values():
                assert set(by_task) == {"sa", "er"}
                for route in by_task.values():
                    assert len(route["frequency"]) == 2 and sum(route["frequency"]) == pytest.approx(1.0)  # top-1
                    assert all(0 < w <= f for w, f in zip(route["mean_weight"], route["frequency"], strict=True))
        assert (reference / f"routing_{split}.png").read_bytes().startswith(b"\x89PNG")


# Resume


class Interrupt(Exception):
    """Raised from ``on_epoch`` to interrupt a run after an epoch is saved."""


def interrupted_run(reference, run_dir, stop_epoch, tracking_uri=None):
    """``reference``'s config trained into ``run_dir`` until ``stop_epoch`` is saved, then interrupted."""
    from mmolre_cli.config import build_config
    from mmolre_cli.plugins import load_registry
    from mmolre_cli.training.trainer import train_run

    def stop(summary):
        if summary["epoch"] == stop_epoch:
            raise Interrupt

    config = build_config(json.loads(json.dumps(load_checkpoint(reference)["config"])))
    with pytest.raises(Interrupt):
        train_run(config, run_dir, load_registry(), tracking_uri=tracking_uri, on_epoch=stop)


def test_interrupted_run_resumes_to_exactly_the_uninterrupted_metrics(runner, tiny_data, reference, tmp_path):
    from mmolre_cli.plugins import load_registry
    from mmolre_cli.training.seeds import resume_run

    run_dir = tmp_path / "run"
    interrupted_run(reference, run_dir, stop_epoch=2)
    assert load_checkpoint(run_dir / "last.pt")["epoch"] == 2 and not (run_dir / "metrics.json").exists()
    again = runner.invoke(app, ["train", "--data", str(tiny_data), *TINY, "--out", str(run_dir), "--no-track"])
    assert again.exit_code == 1 and "continue it with --resume" in again.stderr

    resume_run(run_dir, load_registry())
    resumed, uninterrupted = report(run_dir), report(reference)
    assert resumed["metrics"] == uninterrupted["metrics"]
    assert without_time(resumed["history"]) == without_time(uninterrupted["history"])
    done = runner.invoke(app, ["train", "--resume", str(run_dir)])
    assert done.exit_code == 1 and "nothing to resume" in done.stderr


def test_sigkill_in_the_second_epoch_then_resume_matches_the_uninterrupted_run(runner, tiny_data, reference, tmp_path):
    run_dir = tmp_path / "killed"
    command = [sys.executable, "-m", "mmolre_cli", "train", "--data", str(tiny_data), *RESUMABLE, "--out", str(run_dir)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (run_dir / "last.pt").exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(process.pid, signal.SIGKILL)  # the first epoch is saved: this lands in the second
    finally:
        process.wait()
    assert process.returncode == -signal.SIGKILL and not (run_dir / "metrics.json").exists()
    result = runner.invoke(app, ["train", "--resume", str(run_dir), "--no-track"])
    assert result.exit_code == 0, result.output
    assert report(run_dir)["metrics"] == report(reference)["metrics"]


def test_resume_refuses_other_training_options(runner, reference):
    result = runner.invoke(app, ["train", "--resume", str(reference), "--epochs", "9"])
    assert result.exit_code == 2 and "--resume continues a run with its stored config" in result.stderr


@pytest.mark.parametrize("tracked", [False, True], ids=["no-track", "tracked"])
def test_resume_tracks_as_the_run_was_started(runner, reference, tmp_path, tracked):
    import mlflow

    run_dir = tmp_path / "run"
    uri = f"sqlite:///{run_dir.resolve() / 'mlflow.db'}"
    interrupted_run(reference, run_dir, stop_epoch=1, tracking_uri=uri if tracked else None)
    result = runner.invoke(app, ["train", "--resume", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert ("MLflow run" in result.stdout) == tracked and (run_dir / "mlflow.db").exists() == tracked
    if tracked:  # the interrupted MLflow run was continued, not a second one started
        client = mlflow.MlflowClient(uri)
        (run,) = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
        assert run.info.status == "FINISHED" and run.info.run_id == report(run_dir)["tracking_run_id"]
        assert len(client.get_metric_history(run.info.run_id, "valid_loss")) == 4


def test_resume_reads_last_pt_once(runner, reference, tmp_path, monkeypatch):
    from mmolre_cli.training import checkpoint, seeds, trainer

    run_dir = tmp_path / "run"
    interrupted_run(reference, run_dir, stop_epoch=1, tracking_uri=f"sqlite:///{run_dir.resolve() / 'mlflow.db'}")
    reads = []

    def counted(path, *args, **kwargs):
        reads.append(os.path.basename(path))
        return checkpoint.load_checkpoint(path, *args, **kwargs)

    for module in (seeds, trainer):  # every module that reads checkpoints for train --resume
        monkeypatch.setattr(module, "load_checkpoint", counted)
    result = runner.invoke(app, ["train", "--resume", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert reads.count("last.pt") == 1 and "MLflow run" in result.stdout


def test_resume_refuses_a_moved_run_whose_mlflow_store_writes_artifacts_under_the_old_path(runner, reference, tmp_path):
    import shutil

    old, moved = tmp_path / "run", tmp_path / "moved"
    interrupted_run(reference, old, stop_epoch=1, tracking_uri=f"sqlite:///{old.resolve() / 'mlflow.db'}")
    shutil.move(old, moved)
    result = runner.invoke(app, ["train", "--resume", str(moved)])
    assert result.exit_code == 1 and len(result.stderr.splitlines()) == 1
    assert f"{moved}: moved from {old.resolve()}" in result.stderr and "--no-track" in result.stderr
    assert not old.exists() and not (moved / "metrics.json").exists()  # nothing written at either place


# Seeds and MLflow


def table(stdout):
    return stdout[: stdout.index("run directory:")]


def test_seeds_print_mean_and_std_and_rerun_identically(seeds_run):
    run_dir, first, again = seeds_run
    assert "mean ± std" in first and "±" in first.split("Corr")[1].splitlines()[0]
    assert table(first) == table(again)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary == json.loads((run_dir.parent / "b" / "summary.json").read_text())
    seeds = [report(run_dir / f"seed-{seed}")["metrics"]["test"]["MAE"] for seed in (1, 2)]
    assert seeds[0] != seeds[1]
    assert summary["mean"]["test"]["MAE"] == pytest.approx(np.mean(seeds))
    assert summary["std"]["test"]["MAE"] == pytest.approx(np.std(seeds, ddof=1))
    # The trivial predictor beside the seeds' mean, as beside a single run.
    trivial = report(run_dir / "seed-1")["trivial_test"]["MAE"]
    assert "trivial (test)" in first and first.split("MAE")[1].split("│")[3].strip() == f"{trivial:.4f}"


def test_mlflow_has_a_parent_run_and_a_child_per_seed(seeds_run):
    import mlflow

    run_dir = seeds_run[0]
    client = mlflow.MlflowClient(f"sqlite:///{run_dir / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    (parent,) = [run for run in runs if "mlflow.parentRunId" not in run.data.tags]
    children = [run for run in runs if run.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(child.data.params["train.seed"] for child in children) == ["1", "2"] and len(runs) == 3
    assert parent.data.params["seeds"] == "1,2" and "test_Corr_mean" in parent.data.metrics
    child = children[0]
    assert {"lr", "train_loss_sa", "train_loss_er", "train_loss_balance", "valid_loss", "test_Corr"} <= set(
        child.data.metrics
    )
    assert len(client.get_metric_history(child.info.run_id, "valid_loss")) == 2
    artifacts = {item.path for item in client.list_artifacts(child.info.run_id)}
    assert {"config.yaml", "metrics.json", "curves.png", "routing_test.png"} <= artifacts
    assert "checkpoint.pt" not in artifacts  # it stays in the run directory, whose path the run's tags give
    assert child.data.tags["mmolre.run_dir"] == str((run_dir / f"seed-{child.data.params['train.seed']}").resolve())
    assert parent.data.tags["mmolre.run_dir"] == str(run_dir.resolve()) and "mmolre.data_sha256" in parent.data.tags


def test_eval_accepts_a_multi_seed_directory_and_mlflow_run_ids(runner, seeds_run):
    import mlflow

    run_dir = seeds_run[0]
    summary = json.loads((run_dir / "summary.json").read_text())
    uri = f"sqlite:///{run_dir / 'mlflow.db'}"
    shown = runner.invoke(app, ["eval", str(run_dir)])
    assert shown.exit_code == 0 and "±" in shown.stdout, shown.output
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("tiny").experiment_id
    (parent,) = client.search_runs([experiment], filter_string="tags.mlflow.runName = 'a'")
    for target in (str(run_dir), parent.info.run_id):
        result = runner.invoke(app, ["eval", target, "--json", "--tracking-uri", uri])
        assert result.exit_code == 0, result.output
        evaluated = json.loads(result.stdout)
        assert set(evaluated["seeds"]) == {"1", "2"}
        assert evaluated["mean"]["Corr"] == pytest.approx(summary["mean"]["test"]["Corr"], rel=1e-6)
    child = report(run_dir / "seed-2")
    result = runner.invoke(app, ["eval", child["tracking_run_id"], "--json", "--tracking-uri", uri])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["metrics"]["MAE"] == pytest.approx(child["metrics"]["test"]["MAE"], rel=1e-6)


def test_runs_tables_finished_runs_with_differing_settings_and_test_metrics(runner, reference, seeds_run, tmp_path):
    import csv
    import shutil

    runs_dir = tmp_path / "runs"
    shutil.copytree(reference, runs_dir / "one")
    shutil.copytree(seeds_run[0], runs_dir / "seeds")
    result = runner.invoke(app, ["runs", str(runs_dir), "--csv", str(tmp_path / "runs.csv")])
    assert result.exit_code == 0, result.output
    rows = {row["run"]: row for row in csv.DictReader((tmp_path / "runs.csv").open())}
    assert sorted(rows) == ["one", "seeds"]  # a multi-seed run is one row, not one per seed
    one, seeds = report(runs_dir / "one"), json.loads((runs_dir / "seeds" / "summary.json").read_text())
    assert float(rows["one"]["test_MAE"]) == one["metrics"]["test"]["MAE"] and rows["one"]["test_MAE_std"] == ""
    assert float(rows["seeds"]["test_Corr"]) == seeds["mean"]["test"]["Corr"]
    assert float(rows["seeds"]["test_Corr_std"]) == seeds["std"]["test"]["Corr"]
    assert rows["one"]["seeds"] == "1" and rows["seeds"]["seeds"] == "1,2"
    assert rows["one"]["selected_epoch"] == str(one["selected_epoch"])
    # Only settings that differ: the epochs and schedule do, the data and the model width do not.
    assert {"train.epochs", "train.schedule"} <= set(rows["one"]) and "model.d_model" not in rows["one"]
    assert (rows["one"]["train.epochs"], rows["seeds"]["train.epochs"]) == ("4", "2")
    assert "train.schedule=cosine" in result.stdout and "train.schedule=constant" in result.stdout
    assert f"{seeds['mean']['test']['MAE']:.4f} ± {seeds['std']['test']['MAE']:.4f}" in result.stdout
    tracked = runner.invoke(app, ["runs", "--tracking-uri", f"sqlite:///{seeds_run[0] / 'mlflow.db'}", "--json"])
    assert tracked.exit_code == 0, tracked.output
    (row,) = json.loads(tracked.stdout)
    assert row["run"] == "tiny/a" and row["seeds"] == [1, 2]
    assert row["test"]["Corr"] == pytest.approx(seeds["mean"]["test"]["Corr"])


# Distributed


@pytest.mark.distributed
def test_two_process_ddp_sees_every_sample_once_and_scores_the_full_splits(runner, tiny_data, tmp_path):
    run_dir = tmp_path / "ddp"
    train(runner, "--data", tiny_data, *TINY, "--epochs", "2", "--nproc", "2", "--out", run_dir, "--no-track")
    values = report(run_dir)
    assert values["world_size"] == 2
    assert [row["train_samples"] for row in values["history"]] == [values["samples"]["train"]] * 2
    # One process scoring the saved checkpoint on the whole test split reproduces the gathered metrics.
    evaluated = runner.invoke(app, ["eval", str(run_dir), "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    single = json.loads(evaluated.stdout)["metrics"]
    for key in ("Has0_acc_2", "Non0_acc_2", "Acc_7", "MAE", "Corr", "WA_mean", "F1w_mean", "micro_F1", "loss_sa"):
        assert single[key] == pytest.approx(values["metrics"]["test"][key], rel=1e-5), key


def test_nproc_checks_the_data_and_the_run_directory_before_starting_workers(runner, tiny_data, tmp_path):
    # Workers' errors would reach the real stderr, not the runner's: these come from the launcher.
    missing, done = tmp_path / "none.h5", tmp_path / "done"
    result = runner.invoke(app, ["train", "--data", str(missing), *TINY, "--nproc", "2", "--out", str(tmp_path / "a")])
    assert result.exit_code == 1 and result.stderr == f"Error: {missing}: file not found\n"
    done.mkdir()
    (done / "metrics.json").write_text("{}")
    result = runner.invoke(app, ["train", "--data", str(tiny_data), *TINY, "--nproc", "2", "--out", str(done)])
    assert result.exit_code == 1 and "already holds a run (metrics.json)" in result.stderr


def first_sample(split):
    """``split`` cut to its first sample."""
    features = {m: x[:1] for m, x in split.features.items()}
    lengths = {m: n[:1] for m, n in split.lengths.items()}
    return Split(split.ids[:1], features, lengths, split.sentiment[:1], split.emotion[:1])


@pytest.mark.distributed
def test_nproc_reports_an_error_of_every_worker_once_with_its_exit_code(tiny_data, tmp_path):
    data = read_canonical(tiny_data)
    data.splits = {name: first_sample(split) for name, split in data.splits.items()}
    write_canonical(data, tmp_path / "one.h5")
    options = [*TINY, "--epochs", "1", "--nproc", "2", "--out", str(tmp_path / "run"), "--no-track"]
    command = [sys.executable, "-m", "mmolre_cli", "train", "--data", str(tmp_path / "one.h5"), *options]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if "Error" in line]
    assert errors == ["Error: the training split has 1 samples, fewer than the 2 processes"], result.stderr
    assert "Traceback" not in result.stderr and "Root Cause" not in result.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.distributed
def test_nproc_warns_once_about_a_plugin_that_failed_to_load(tiny_data, tmp_path):
    """The launcher warns; the workers, whose registries fail alike, do not repeat it (rank 0 writes here)."""
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "broken.py").write_text("raise RuntimeError('half-written plugin')\n")
    data = read_canonical(tiny_data)  # one sample: the workers stop with an error right after loading plugins
    data.splits = {name: first_sample(split) for name, split in data.splits.items()}
    write_canonical(data, tmp_path / "one.h5")
    options = [*TINY, "--epochs", "1", "--nproc", "2", "--out", str(tmp_path / "run"), "--no-track"]
    command = [sys.executable, "-m", "mmolre_cli", "--plugins-dir", str(plugins), "train", "--data"]
    result = subprocess.run([*command, str(tmp_path / "one.h5"), *options], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "fewer than the 2 processes" in result.stderr, result.stderr
    assert result.stderr.count("plugin 'broken' failed at import") == 1, result.stderr


def processes_naming(path):
    """The ids of live processes with ``path`` as one of their command-line arguments."""
    found = set()
    for entry in os.scandir("/proc"):
        try:
            with open(os.path.join(entry.path, "cmdline"), "rb") as cmdline:
                arguments = cmdline.read().split(b"\0")
        except OSError:  # not a process, or one that has just ended
            continue
        if os.fsencode(path) in arguments:
            found.add(int(entry.name))
    return found


@pytest.mark.distributed
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigint_stops_every_worker_of_a_two_process_run_and_resume_completes(runner, tiny_data, tmp_path):
    run_dir = tmp_path / "stopped"
    options = [*TINY, "--epochs", "6", "--patience", "6", "--nproc", "2", "--out", str(run_dir), "--no-track"]
    command = [sys.executable, "-m", "mmolre_cli", "train", "--data", str(tiny_data), *options]
    log = tmp_path / "stderr.txt"  # not a pipe: a worker left running would hold it open
    with log.open("w") as stderr:
        launcher = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        deadline = time.monotonic() + 120
        while not (run_dir / "last.pt").exists() and launcher.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        workers = processes_naming(run_dir) - {launcher.pid}
        launcher.send_signal(signal.SIGINT)  # the first epoch is saved: this lands in a later one
        launcher.wait(timeout=60)
    finally:
        launcher.kill()
        launcher.wait()
    stderr = log.read_text()
    assert launcher.returncode == 130, stderr
    assert len(workers) >= 2 and not processes_naming(run_dir)  # the launcher returned after its workers ended
    assert "Error" not in stderr and "Traceback" not in stderr
    assert not (run_dir / "metrics.json").exists()
    result = runner.invoke(app, ["train", "--resume", str(run_dir), "--no-track"])
    assert result.exit_code == 0, result.output
    assert len(report(run_dir)["history"]) == 6
