"""The command line end to end: prepare, train, eval, tracking, and one-line errors."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from mmolre_cli.cli.app import app

FAST = ["--epochs", "2", "--d-model", "16", "--experts", "shared=2,rank=4", "--topk", "1", "--batch-size", "32"]


@pytest.fixture
def runner():
    return CliRunner()


def test_version(runner):
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.startswith("mmolre ")


def test_prepare_synthetic_writes_a_readable_file(runner, tmp_path):
    from mmolre_cli.data.canonical import read_canonical

    out = tmp_path / "s.h5"
    result = runner.invoke(app, ["prepare", "synthetic", "--like", "mosi", "--scale", "0.01", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert read_canonical(out).dataset.startswith("synthetic")


def test_names_that_look_like_rich_markup_print_as_they_are(runner, tmp_path):
    """Paths and dataset names come from users: ``[/x]`` in one is text, not a markup error."""
    out = tmp_path / "w[/x].h5"
    prepared = runner.invoke(app, ["prepare", "synthetic", "--scale", "0.01", "--seq-len", "4", "--out", str(out)])
    assert prepared.exit_code == 0 and f"wrote {out}" in prepared.stdout.replace("\n", "")
    info = runner.invoke(app, ["data", "info", str(out)])
    assert info.exit_code == 0 and "synthetic-mosei" in info.stdout


def test_prepare_synthetic_keeps_emotion_labels_on_the_fraction_asked(runner, tmp_path):
    import numpy as np

    from mmolre_cli.data.canonical import read_canonical
    from mmolre_cli.data.synthetic import EMOTION_LABELS

    kept = {}
    for fraction in (None, "1"):
        out = tmp_path / f"{fraction}.h5"
        extra = [] if fraction is None else ["--emotion-labels", fraction]
        args = ["prepare", "synthetic", "--scale", "0.01", "--seq-len", "4", "--out", str(out), *extra]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        data = read_canonical(out)
        kept[fraction] = (data.options["emotion_labels"], (~np.isnan(data.splits["train"].emotion[:, 0])).mean())
    assert kept[None] == (EMOTION_LABELS, pytest.approx(EMOTION_LABELS, abs=0.01))
    assert kept["1"] == (1.0, 1.0)


def test_train_then_eval_reproduces_the_test_metrics(runner, tiny_data, tmp_path):
    run_dir = tmp_path / "run"
    result = runner.invoke(app, ["train", "--data", str(tiny_data), *FAST, "--out", str(run_dir), "--no-track"])
    assert result.exit_code == 0, result.output
    assert "Corr" in result.stdout
    for name in ("config.yaml", "checkpoint.pt", "metrics.json"):
        assert (run_dir / name).is_file()
    report = json.loads((run_dir / "metrics.json").read_text())
    assert 1 <= report["selected_epoch"] <= 2 and len(report["history"]) == 2
    evaluated = runner.invoke(app, ["eval", str(run_dir), "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    metrics = json.loads(evaluated.stdout)["metrics"]
    for key in ("MAE", "Corr", "Acc_7", "WA_mean", "micro_F1", "loss"):
        assert metrics[key] == pytest.approx(report["metrics"]["test"][key], rel=1e-6)


def test_training_is_deterministic_for_a_seed(runner, tiny_data, tmp_path):
    reports = []
    for name in ("a", "b"):
        args = ["train", "--data", str(tiny_data), *FAST, "--seed", "7", "--out", str(tmp_path / name), "--no-track"]
        assert runner.invoke(app, args).exit_code == 0
        reports.append(json.loads((tmp_path / name / "metrics.json").read_text())["metrics"])
    assert reports[0] == reports[1]


def test_mosi_like_data_trains_sentiment_only(runner, tiny_mosi, tmp_path):
    result = runner.invoke(
        app, ["train", "--data", str(tiny_mosi), *FAST, "--out", str(tmp_path / "r"), "--json", "--no-track"]
    )
    assert result.exit_code == 0, result.output
    test = json.loads(result.stdout)["test"]
    assert "Corr" in test and "WA_mean" not in test


def test_two_train_runs_in_one_directory_share_its_mlflow_store_each_tagged(runner, tiny_data, tmp_path):
    """As MLflow itself: one store (``mlflow.db``) per working directory, an experiment per dataset; every run
    tagged with the mmolre version, the git commit it ran from and the data's SHA-256; the checkpoint stays in
    the run directory (its path a tag, not a second copy), and ``eval RUN_ID`` finds it without options."""
    import hashlib
    import subprocess
    from pathlib import Path

    import mlflow

    from mmolre_cli import __version__

    for name in ("a", "b"):
        args = ["train", "--data", str(tiny_data), *FAST, "--epochs", "1", "--out", str(tmp_path / name)]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
    assert not (tmp_path / "a" / "mlflow.db").exists()
    # A client, not mlflow.set_tracking_uri: that also sets MLFLOW_TRACKING_URI, which would leak into later tests.
    client = mlflow.MlflowClient(f"sqlite:///{Path.cwd() / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    assert sorted(run.info.run_name for run in runs) == ["a", "b"]
    digest = hashlib.sha256(tiny_data.read_bytes()).hexdigest()
    source = Path(__file__).resolve().parents[1]
    commit = subprocess.run(["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    for run in runs:
        tags = run.data.tags
        assert tags["mmolre.version"] == __version__ and tags["mmolre.data_sha256"] == digest
        assert tags["mlflow.source.git.commit"] == commit.strip() and len(commit.strip()) == 40
        assert tags["mmolre.checkpoint"] == str((tmp_path / run.info.run_name / "checkpoint.pt").resolve())
        assert run.data.params["model.experts.shared"] == "2"
        assert "test_Corr" in run.data.metrics and "valid_loss" in run.data.metrics
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"config.yaml", "metrics.json"} <= artifacts and "checkpoint.pt" not in artifacts
    run = runs[0]
    evaluated = runner.invoke(app, ["eval", run.info.run_id, "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    stored = json.loads((tmp_path / run.info.run_name / "metrics.json").read_text())["metrics"]["test"]
    assert json.loads(evaluated.stdout)["metrics"]["MAE"] == pytest.approx(stored["MAE"], rel=1e-6)


def test_tracking_uri_run_keeps_a_store_inside_the_run_directory(runner, tiny_data, tmp_path):
    run_dir = tmp_path / "own"
    args = ["train", "--data", str(tiny_data), *FAST, "--epochs", "1", "--out", str(run_dir), "--tracking-uri", "run"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    from pathlib import Path

    assert (run_dir / "mlflow.db").is_file() and not (Path.cwd() / "mlflow.db").exists()


def test_unreachable_tracking_server_warns_and_training_completes(runner, tiny_data, tmp_path):
    run_dir = tmp_path / "r"
    args = ["train", "--data", str(tiny_data), *FAST, "--epochs", "1", "--out", str(run_dir)]
    result = runner.invoke(app, [*args, "--tracking-uri", "http://127.0.0.1:9"])
    assert result.exit_code == 0, result.output
    assert "MLflow tracking" in result.stderr and (run_dir / "metrics.json").is_file()


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--router", "topp"], "--router: unknown value 'topp'"),
        (["--fusion", "sum"], "--fusion: unknown value 'sum'"),
        (["--experts", "type=sparse"], "--experts type: unknown value 'sparse'"),
        (["--experts", "experts=4"], "--experts: unknown key 'experts'"),
        (["--experts", "shared=2", "--topk", "3"], "topk (3) cannot exceed"),
        (["--encoder", "text=bert"], "--encoder text: unknown value 'bert'"),
    ],
)
def test_bad_options_fail_in_one_line_and_write_nothing(runner, tiny_data, tmp_path, args, fragment):
    out = tmp_path / "never"
    result = runner.invoke(app, ["train", "--data", str(tiny_data), "--out", str(out), *args])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0] and "Traceback" not in result.output
    assert not out.exists()


def test_a_finished_run_is_never_overwritten(runner, tiny_data, tmp_path):
    run_dir = tmp_path / "run"
    args = ["train", "--data", str(tiny_data), *FAST, "--epochs", "1", "--out", str(run_dir), "--no-track"]
    assert runner.invoke(app, args).exit_code == 0
    before = (run_dir / "metrics.json").read_bytes()
    again = runner.invoke(app, args)
    assert again.exit_code == 1 and "already holds a run" in again.stderr
    assert (run_dir / "metrics.json").read_bytes() == before


def test_an_interrupted_run_says_how_to_continue(runner, tiny_data, tmp_path, monkeypatch):
    """Ctrl-C (KeyboardInterrupt) ends with exit code 130 and the command that resumes the run."""
    from mmolre_cli.training import trainer

    def interrupt_after_the_first_epoch(config, out_dir, registry, *, on_epoch=None, **options):
        out_dir.mkdir(parents=True)
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "train_run", interrupt_after_the_first_epoch)
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "--data", str(tiny_data), "--epochs", "1", "--no-track", "--out", str(out)])
    assert result.exit_code == 130
    assert result.stderr == f"Interrupted; to continue, run mmolre train --resume {out}\n"
