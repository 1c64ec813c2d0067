"""Reliability: nothing lost on a kill or a failed write, nothing executed from a file, tracking faults
survived, and property tests of the parsers, the canonical-file validator and padding invariance."""

from __future__ import annotations

import errno
import json
import os
import pickle
import random
import re
import shutil
import signal
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from conftest import with_random_experts
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from mmolre_cli.ablation.variants import ALIASES, parse_grid
from mmolre_cli.cli.app import app
from mmolre_cli.config import EXPERT_KEYS, ModelConfig, parse_experts
from mmolre_cli.data.canonical import read_canonical
from mmolre_cli.errors import CheckpointError, DataError, UsageError
from mmolre_cli.model import MMoLRE
from mmolre_cli.state_files import read_json
from mmolre_cli.training.checkpoint import FORMAT, load_checkpoint

TINY = ["--d-model", "16", "--experts", "shared=2,rank=4", "--topk", "1", "--batch-size", "32", "--no-track"]
EXAMPLES = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def runner():
    return CliRunner()


def one_line_error(result, *fragments: str, code: int = 1) -> None:
    """The command failed with ``code``, and stderr ends with its one ``Error:`` line, holding every fragment."""
    assert result.exit_code == code, result.output
    lines = result.stderr.splitlines() or [""]
    assert lines[-1].startswith("Error: ") and sum(line.startswith("Error") for line in lines) == 1, result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def checkpoints_load(run_dir) -> list[int]:
    """Load every checkpoint file in ``run_dir`` (failing the test if one does not) and return their epochs."""
    return [load_checkpoint(path)["epoch"] for path in sorted(run_dir.glob("*.pt"))]


# Crash safety: SIGKILL anywhere, including inside a checkpoint write


def run_killed(args: list[str], *, in_write: int | None = None, after: float | None = None) -> int:
    """Run ``mmolre ARGS`` in a forked child (no second torch import) and SIGKILL it ``after`` seconds, or
    inside its ``in_write``-th checkpoint write: the temporary is cut to half its size (the write cut
    short) and the child killed before the rename. Returns the child's return code (-9 when killed)."""
    pid = os.fork()
    if pid == 0:  # the child never returns into pytest
        try:
            torch.set_num_threads(1)  # OpenMP's thread pool does not survive a fork
            if in_write:
                replace, seen = os.replace, []

                def replace_or_die(src, dst):
                    if str(dst).endswith(".pt"):
                        seen.append(dst)
                        if len(seen) == in_write:
                            os.truncate(src, os.path.getsize(src) // 2)
                            os.kill(os.getpid(), signal.SIGKILL)
                    replace(src, dst)

                os.replace = replace_or_die
            os._exit(CliRunner().invoke(app, args).exit_code)
        finally:
            os._exit(70)
    deadline = time.monotonic() + (after if after is not None else 120)
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    assert after is not None, "the child hung"
    return code


@pytest.fixture
def one_thread():
    """Torch on one thread, as in the forked children, so that every piece of a run sums in the same order."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_sigkill_at_random_points_and_inside_checkpoint_writes_never_loses_a_checkpoint(
    runner, tiny_data, tmp_path, one_thread
):
    rng = random.Random(8)
    args = ["--data", str(tiny_data), *TINY, "--epochs", "3", "--patience", "9", "--schedule", "cosine"]
    reference = tmp_path / "reference"
    assert runner.invoke(app, ["train", *args, "--out", str(reference)]).exit_code == 0
    run_dir = tmp_path / "run"
    # Epoch 1 writes checkpoint.pt then last.pt: the kill lands in one of them, the file itself untouched.
    assert run_killed(["train", *args, "--out", str(run_dir)], in_write=rng.randint(1, 2)) == -signal.SIGKILL
    assert [p.name for p in run_dir.glob(".*.pt.*.tmp")] != [], "the kill did not land inside a write"
    assert checkpoints_load(run_dir) in ([], [1])
    resume = ["train", "--resume", str(run_dir), "--no-track"]
    assert run_killed(resume, in_write=rng.randint(1, 2)) == -signal.SIGKILL
    checkpoints_load(run_dir)
    for delay in (rng.uniform(0.1, 2.5) for _ in range(3)):
        code = run_killed(resume, after=delay)
        assert code in (0, -signal.SIGKILL)
        checkpoints_load(run_dir)
        if (run_dir / "metrics.json").exists():  # finished, before the kill or while printing its report
            break
    if not (run_dir / "metrics.json").exists():
        result = runner.invoke(app, resume)
        assert result.exit_code == 0, result.output
    finished = json.loads((run_dir / "metrics.json").read_text())
    assert checkpoints_load(run_dir) == [finished["selected_epoch"], 3]
    assert finished["metrics"] == json.loads((reference / "metrics.json").read_text())["metrics"]
    assert list(run_dir.glob(".*.tmp")) == [], "a resume clears the temporaries that killed writes left"


# Failed writes: disk full (ENOSPC) and no permission (EACCES)


@pytest.fixture
def fail_writes(monkeypatch):
    """``fail_writes(name, code, after=0)``: the atomic writes of files called ``name`` fail with ``code``
    once ``after`` of them succeeded. ENOSPC comes from the kernel at the first write (the temporary is
    a link to /dev/full); EACCES when the temporary is created, as in a read-only directory."""
    mkstemp = tempfile.mkstemp

    def install(name: str, code: int, after: int = 0) -> None:
        calls = []

        def failing(*args, **kwargs):
            if kwargs.get("prefix") != f".{name}.":
                return mkstemp(*args, **kwargs)
            calls.append(name)
            if len(calls) <= after:
                return mkstemp(*args, **kwargs)
            if code == errno.EACCES:
                raise PermissionError(code, os.strerror(code), str(kwargs["dir"]))
            handle, temporary = mkstemp(*args, **kwargs)
            os.close(handle)
            os.unlink(temporary)
            os.symlink("/dev/full", temporary)
            return os.open(temporary, os.O_WRONLY), temporary

        monkeypatch.setattr(tempfile, "mkstemp", failing)

    return install


def snapshot(directory) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir()) if path.is_file()}


def test_a_failed_checkpoint_write_names_the_file_and_keeps_the_previous_epoch(
    runner, tiny_data, tmp_path, fail_writes, monkeypatch
):
    run_dir = tmp_path / "run"
    fail_writes("last.pt", errno.ENOSPC, after=1)
    result = runner.invoke(app, ["train", "--data", str(tiny_data), *TINY, "--epochs", "2", "--out", str(run_dir)])
    one_line_error(result, f"{run_dir / 'last.pt'}: cannot write: No space left on device")
    assert sorted(p.name for p in run_dir.iterdir()) == ["checkpoint.pt", "config.yaml", "last.pt", "train.log"]
    assert load_checkpoint(run_dir / "last.pt")["epoch"] == 1
    monkeypatch.undo()
    resumed = runner.invoke(app, ["train", "--resume", str(run_dir), "--no-track"])
    assert resumed.exit_code == 0, resumed.output
    best, last = checkpoints_load(run_dir)  # checkpoint.pt, last.pt
    assert last == 2 and best == json.loads((run_dir / "metrics.json").read_text())["selected_epoch"]


def test_a_failed_metrics_write_keeps_the_checkpoints_and_resume_writes_it(
    runner, tiny_data, tmp_path, fail_writes, monkeypatch
):
    run_dir = tmp_path / "run"
    fail_writes("metrics.json", errno.EACCES)
    result = runner.invoke(app, ["train", "--data", str(tiny_data), *TINY, "--epochs", "1", "--out", str(run_dir)])
    one_line_error(result, f"{run_dir / 'metrics.json'}: cannot write: Permission denied")
    assert not (run_dir / "metrics.json").exists() and checkpoints_load(run_dir) == [1, 1]
    before = snapshot(run_dir)
    monkeypatch.undo()
    resumed = runner.invoke(app, ["train", "--resume", str(run_dir), "--no-track"])
    assert resumed.exit_code == 0, resumed.output
    assert json.loads((run_dir / "metrics.json").read_text())["selected_epoch"] == 1
    assert snapshot(run_dir)["last.pt"] == before["last.pt"]


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES])
def test_a_failed_prepare_leaves_the_existing_file_unchanged(runner, tmp_path, fail_writes, code):
    out = tmp_path / "data.h5"
    out.write_bytes(b"the earlier file")
    fail_writes("data.h5", code)
    args = ["prepare", "synthetic", "--like", "mosei", "--scale", "0.01", "--seq-len", "8", "--out", str(out)]
    one_line_error(runner.invoke(app, [*args, "--force"]), f"{out}: cannot write: {os.strerror(code)}")
    assert snapshot(tmp_path) == {"data.h5": b"the earlier file"}


ABLATE = ["ablate", *TINY, "--epochs", "1", "--remove", "unitse", "--seeds", "1"]


def test_a_failed_ablation_results_write_keeps_the_trained_variants(
    runner, tiny_data, tmp_path, fail_writes, monkeypatch
):
    out = tmp_path / "ablation"
    args = [*ABLATE, "--data", str(tiny_data), "--out", str(out)]
    fail_writes("results.csv", errno.ENOSPC)
    one_line_error(runner.invoke(app, args), f"{out / 'results.csv'}: cannot write: No space left on device")
    trained = {path: path.read_bytes() for path in (out / "runs").rglob("*") if path.is_file()}
    assert sorted(path.name for path in (out / "runs").iterdir()) == ["full", "no-unitse"]
    assert not list(out.rglob("*.tmp"))
    assert (out / "results.json").is_file() and not (out / "results.csv").exists()
    monkeypatch.undo()
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (out / "results.csv").is_file()
    assert all(path.read_bytes() == content for path, content in trained.items())


def test_an_unwritable_ablation_plan_stops_before_training(runner, tiny_data, tmp_path, fail_writes):
    out = tmp_path / "ablation"
    fail_writes("plan.json", errno.EACCES)
    result = runner.invoke(app, [*ABLATE, "--data", str(tiny_data), "--out", str(out)])
    one_line_error(result, f"{out / 'plan.json'}: cannot write: Permission denied")
    assert [path.name for path in out.iterdir()] == ["ablation.json"]


# Hostile files: nothing in a file the user is handed can run code


class WritesMarker:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_would_run_a_shell_command_is_refused(runner, tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"train": {"id": WritesMarker(marker)}}))
    result = runner.invoke(app, ["prepare", "mmsa", str(path), "--out", str(tmp_path / "out.h5")])
    one_line_error(result, str(path), "refused")
    assert not marker.exists() and not (tmp_path / "out.h5").exists()
    pickle.loads(path.read_bytes())  # the payload is live: a plain unpickler runs it
    assert marker.exists()


@pytest.fixture(scope="module")
def finished_run(runner, tiny_data, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    result = runner.invoke(app, ["train", "--data", str(tiny_data), *TINY, "--epochs", "1", "--out", str(run_dir)])
    assert result.exit_code == 0, result.output
    return run_dir


def test_a_checkpoint_that_would_run_code_is_refused_by_eval_and_resume(runner, finished_run, tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "state_dict": WritesMarker(marker)}, evil)
    one_line_error(runner.invoke(app, ["eval", str(evil)]), str(evil), "refused to load: it would run code")
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    (run_dir / "metrics.json").unlink()
    shutil.copy(evil, run_dir / "last.pt")
    result = runner.invoke(app, ["train", "--resume", str(run_dir), "--no-track"])
    one_line_error(result, str(run_dir / "last.pt"), "refused to load")
    assert not marker.exists()
    torch.load(evil, weights_only=False)  # the payload is live: an unrestricted load runs it
    assert marker.exists()


def test_a_yaml_config_with_a_python_tag_is_refused(runner, tiny_data, tmp_path):
    marker = tmp_path / "pwned"
    config = tmp_path / "evil.yaml"
    config.write_text(f"model: !!python/object/apply:os.system ['touch {marker}']\n")
    result = runner.invoke(app, ["train", "--data", str(tiny_data), "--config", str(config), "--out", str(tmp_path)])
    one_line_error(result, str(config), code=2)
    assert not marker.exists() and not (tmp_path / "config.yaml").exists()


# Tracking faults never stop training


def test_a_tracking_store_failing_mid_run_warns_once_and_training_completes(runner, tiny_data, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    log_batch, metric_batches = MlflowClient.log_batch, []

    def fails_after_the_first_metrics(self, *args, **kwargs):
        if kwargs.get("metrics"):
            metric_batches.append(kwargs["metrics"])
            if len(metric_batches) > 1:
                raise OSError(errno.ENOSPC, "database or disk is full")
        return log_batch(self, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, "log_batch", fails_after_the_first_metrics)
    run_dir = tmp_path / "run"
    args = ["--data", str(tiny_data), *TINY[:-1], "--epochs", "2", "--out", str(run_dir)]
    result = runner.invoke(app, ["train", *args, "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"])
    assert result.exit_code == 0, result.output
    assert result.stderr.count("MLflow tracking at") == 1 and "database or disk is full" in result.stderr
    assert len(metric_batches) == 2  # off after the failure: the test metrics were not sent
    assert json.loads((run_dir / "metrics.json").read_text())["history"][-1]["epoch"] == 2
    assert checkpoints_load(run_dir) == [json.loads((run_dir / "metrics.json").read_text())["selected_epoch"], 2]


# Property tests

identifiers = st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True)
expert_values = st.fixed_dictionaries(
    {},
    optional={
        "shared": st.integers(1, 64),
        "rank": st.integers(1, 512),
        "type": identifiers,
        "dropout": st.floats(0, 1, allow_nan=False),
    },
)


@EXAMPLES
@given(values=expert_values, data=st.data())
def test_experts_round_trip_through_any_spelling(values, data):
    items = [f"{' ' * data.draw(st.integers(0, 2))}{key}={value}" for key, value in values.items()]
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(items) - 1)), max_size=2)))
    groups = [items[a:b] for a, b in zip([0, *cuts], [*cuts, len(items)], strict=True)]
    assert parse_experts([",".join(group) for group in groups]) == values


@EXAMPLES
@given(values=st.lists(st.text(alphabet="sharedtypkn=,.-0123456789 \tx", max_size=24), max_size=3))
def test_experts_parser_raises_only_usage_errors(values):
    try:
        parsed = parse_experts(values)
    except UsageError:
        return
    assert set(parsed) <= set(EXPERT_KEYS)
    assert all(parsed[key] >= 1 for key in ("shared", "rank") if key in parsed)


@pytest.mark.parametrize("value", ["shared=0", "rank=two", "widht=3", "shared", "type=", "shared=1.5"])
def test_invalid_experts_raise_usage_errors(value):
    with pytest.raises(UsageError, match="--experts"):
        parse_experts([value])


grid_values = st.lists(st.from_regex(r"[a-z0-9_.]{1,6}", fullmatch=True), min_size=1, max_size=4, unique=True)


@EXAMPLES
@given(grid=st.dictionaries(st.sampled_from(sorted(ALIASES)), grid_values, max_size=3))
def test_grid_round_trips(grid):
    assert parse_grid([f"{key}={','.join(values)}" for key, values in grid.items()]) == grid


@EXAMPLES
@given(values=st.lists(st.text(alphabet="sharedtopkmdl.=, 12x", max_size=20), max_size=3))
def test_grid_parser_raises_only_usage_errors(values):
    try:
        grid = parse_grid(values)
    except UsageError:
        return
    assert all(items and len(set(items)) == len(items) for items in grid.values())


@pytest.fixture(scope="module")
def canonical_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("canonical") / "valid.h5"
    result = CliRunner().invoke(
        app, ["prepare", "synthetic", "--like", "mosei", "--scale", "0.01", "--seq-len", "8", "--out", str(path)]
    )
    assert result.exit_code == 0, result.output
    return path


def _replace(f: h5py.File, name: str, value: np.ndarray) -> None:
    del f[name]
    f[name] = value


CORRUPTIONS = {
    "missing dataset": lambda f, name, rng: f.__delitem__(name),
    "missing attribute": lambda f, name, rng: f.attrs.__delitem__(rng.choice(sorted(f.attrs))),
    "float64 dtype": lambda f, name, rng: _replace(f, name, f[name][()].astype(np.float64)),
    "string dtype": lambda f, name, rng: _replace(f, name, np.array([b"x"] * len(f[name]))),
    "first axis dropped": lambda f, name, rng: _replace(f, name, f[name][()][0]),
    "a dimension added": lambda f, name, rng: _replace(f, name, f[name][()][..., None]),
    "a row dropped": lambda f, name, rng: _replace(f, name, f[name][()][1:]),
    "infinite value": lambda f, name, rng: _replace(f, name, np.full_like(f[name][()], np.inf)),
}
FIELDS = ["features/text", "features/audio", "lengths/vision", "labels/sentiment", "labels/emotion"]


@EXAMPLES
@given(
    corruption=st.sampled_from(sorted(CORRUPTIONS)),
    split=st.sampled_from(["train", "valid", "test"]),
    field=st.sampled_from(FIELDS),
    seed=st.integers(0, 2**16),
)
def test_every_corruption_of_a_canonical_file_raises_a_data_error(
    canonical_file, tmp_path, corruption, split, field, seed
):
    path = tmp_path / f"corrupt-{seed}.h5"
    shutil.copy(canonical_file, path)
    with h5py.File(path, "r+") as f:
        if corruption == "infinite value" and field.startswith("lengths"):
            _replace(f, f"{split}/{field}", np.full(len(f[f"{split}/{field}"]), 10**6, dtype=np.int32))
        else:
            CORRUPTIONS[corruption](f, f"{split}/{field}", random.Random(seed))
    with pytest.raises(DataError, match=str(path)):
        read_canonical(path)


@EXAMPLES
@given(
    encoder=st.sampled_from(["linear", "transformer", "lstm"]),
    router=st.sampled_from(["topk", "soft", "uniform"]),
    fusion=st.sampled_from(["task_adaptive", "concat", "gated"]),
    lengths=st.lists(st.integers(1, 6), min_size=1, max_size=4),
    extra=st.integers(1, 5),
    seed=st.integers(0, 2**16),
)
def test_appended_padding_frames_do_not_change_any_output(
    registry, signature, encoder, router, fusion, lengths, extra, seed
):
    torch.manual_seed(seed)
    config = ModelConfig(d_model=16, encoder=encoder, router=router, fusion=fusion, topk=1)
    model = with_random_experts(MMoLRE(config, signature, registry).eval(), seed)
    generator = torch.Generator().manual_seed(seed)
    valid = torch.tensor(lengths)
    length = max(lengths)
    features = {
        m: torch.randn(len(lengths), length, dim, generator=generator)
        * (torch.arange(length)[None, :] < valid[:, None])[..., None]
        for m, dim in signature.input_dims.items()
    }
    padded = {m: torch.cat([x, torch.zeros(x.shape[0], extra, x.shape[2])], dim=1) for m, x in features.items()}
    lengths_by_modality = {m: valid for m in features}
    with torch.no_grad():
        short, long = model(features, lengths_by_modality), model(padded, lengths_by_modality)
    for task, prediction in short.predictions.items():
        torch.testing.assert_close(long.predictions[task], prediction, rtol=1e-5, atol=1e-5)


def test_every_test_named_in_the_reliability_doc_exists():
    root = Path(__file__).resolve().parents[1]
    text = (root / "docs" / "reliability.md").read_text()
    named, current = [], None
    for file, test in re.findall(r"`(tests/\w+\.py)?::(test_\w+)`", text):
        current = file or current
        named.append((current, test))
    assert len(named) >= 20
    defined = {file: set(re.findall(r"^def (test_\w+)\(", (root / file).read_text(), re.M)) for file, _ in named}
    assert [f"{file}::{test}" for file, test in named if test not in defined[file]] == []


def test_the_reliability_doc_names_real_corpus_cases_and_their_number():
    from test_bad_input import CASES

    text = (Path(__file__).resolve().parents[1] / "docs" / "reliability.md").read_text()
    ids = {case.id for case in CASES}
    named = re.findall(r"`([a-z0-9]+(?:-[a-z0-9]+)+)`", text.split("tests/test_bad_input.py` cases", 1)[1][:400])
    assert named and set(named) <= ids, set(named) - ids
    assert int(re.search(r"(\d+) today", text).group(1)) == len(CASES)


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "cannot read"),
        ("{not json", "damaged (not valid JSON)"),
        ("[1, 2]", "damaged (expected a JSON object, got list)"),
        ('{"config": {}}', "damaged (no 'seeds')"),
    ],
)
def test_a_damaged_state_file_is_named_in_one_line(tmp_path, content, message):
    path = tmp_path / "seeds.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(CheckpointError) as error:
        read_json(path, ("seeds", "config"))
    assert str(error.value) == f"{path}: {message}" or str(error.value).startswith(f"{path}: {message}")


def test_a_state_file_with_every_key_reads_back(tmp_path):
    (tmp_path / "seeds.json").write_text('{"seeds": [1], "config": {}}')
    assert read_json(tmp_path / "seeds.json", ("seeds", "config")) == {"seeds": [1], "config": {}}
