"""The bad-input corpus: every case fails with its exit code and one ``Error:`` line that names what is at
fault, without a traceback, and leaves every file as it was (2: a bad option or config; 1: a bad file)."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml
from cli_checks import assert_fails_cleanly, run_main, snapshot
from typer.testing import CliRunner

from mmolre_cli.cli.app import app
from mmolre_cli.data.canonical import write_canonical
from mmolre_cli.data.synthetic import generate_synthetic


@dataclass(frozen=True)
class Case:
    """``mmolre ARGS`` (``{name}``: a workspace path) run in a directory holding ``files``, with the exit code and
    the fragments its error line must hold."""

    id: str
    args: str
    code: int
    fragments: tuple[str, ...]
    files: tuple[tuple[str, str | bytes], ...] = ()


def case(id: str, args: str, code: int, *fragments: str, files: dict[str, str | bytes] | None = None) -> Case:
    """A Case, with the fragments its error line must hold given inline."""
    return Case(id, args, code, fragments, tuple((files or {}).items()))


#: Options of the small model every workspace run was trained with.
MODEL = "--d-model 16 --epochs 1 --experts shared=2,rank=4 --topk 1 --batch-size 64"
TRAIN_ON = "train --out out --no-track --data"  # followed by the data file
TRAIN = TRAIN_ON + " {data}"


def config(text: str) -> dict[str, str]:
    """The working directory's files for a case run with ``--config cfg.yaml``."""
    return {"cfg.yaml": text}


CASES = [
    # --experts and the other model options
    case("experts-unknown-key", f"{TRAIN} --experts sharde=4", 2, "--experts: unknown key 'sharde'", "mean 'shared'?"),
    case("experts-not-an-integer", f"{TRAIN} --experts shared=two", 2, "--experts shared: expected int, got 'two'"),
    case("experts-zero", f"{TRAIN} --experts shared=0", 2, "--experts shared: must be at least 1, got 0"),
    case("experts-negative-rank", f"{TRAIN} --experts rank=-3", 2, "--experts rank: must be at least 1, got -3"),
    case("experts-not-key-value", f"{TRAIN} --experts shared", 2, "--experts: expected KEY=VALUE, got 'shared'"),
    case("experts-dropout-out-of-range", f"{TRAIN} --experts dropout=1.5", 2, "model.experts.dropout", "got 1.5"),
    case("topk-above-shared", f"{TRAIN} --experts shared=2 --topk 3", 2, "topk (3) cannot exceed", "experts (2)"),
    case("topk-zero", f"{TRAIN} --topk 0", 2, "model.topk must be at least 1, got 0"),
    case("encoder-unknown", f"{TRAIN} --encoder linaer", 2, "--encoder: unknown value 'linaer'", "mean 'linear'?"),
    case("encoder-unknown-for-modality", f"{TRAIN} --encoder text=lstn", 2, "--encoder text:", "mean 'lstm'?"),
    case("encoder-no-name", f"{TRAIN} --encoder =lstm", 2, "--encoder: expected NAME or MODALITY=NAME, got '=lstm'"),
    case("expert-type-unknown", f"{TRAIN} --experts type=lowrnak", 2, "--experts type:", "mean 'lowrank'?"),
    case("router-unknown", f"{TRAIN} --router topq", 2, "--router: unknown value 'topq'", "mean 'topk'?"),
    case("fusion-unknown", f"{TRAIN} --fusion task_adaptiv", 2, "--fusion: unknown", "mean 'task_adaptive'?"),
    case("task-unknown", f"{TRAIN} --tasks sa,xx", 2, "model.tasks: unknown task 'xx' (valid: sa, er)"),
    case("modality-not-in-data", f"{TRAIN} --modalities text,smell", 2, "--modalities:", "'smell'"),
    case("schedule-unknown", f"{TRAIN} --schedule cosin", 2, "train.schedule: unknown value 'cosin'", "'cosine'?"),
    case("precision-unknown", f"{TRAIN} --precision fp8", 2, "train.precision: unknown value 'fp8'"),
    case("select-unknown", f"{TRAIN} --select accuracy", 2, "--select: unknown metric 'accuracy'"),
    case("seed-and-seeds", f"{TRAIN} --seed 1 --seeds 1,2", 2, "--seed and --seeds: give one"),
    case("seeds-not-integers", f"{TRAIN} --seeds 1,x", 2, "--seeds:", "'1,x'"),
    case("nproc-zero", f"{TRAIN} --nproc 0", 2, "--nproc: must be at least 1, got 0"),
    case("lr-nan", f"{TRAIN} --lr nan", 2, "options: train.lr must be a positive finite number, got nan"),
    case("model-beyond-memory", f"{TRAIN} --d-model 1000000000000000", 2, "--d-model 1000000000000000, --experts",
         "--batch-size 64: the model and its inputs do not fit in cpu memory"),
    case("seed-negative", f"{TRAIN} --seed -1", 2, "options: train.seed must be in [0, 4294967295], got -1"),
    case("seeds-empty-item", f"{TRAIN} --seeds 1,,2", 2, "--seeds: empty item in '1,,2'"),
    case("seeds-too-large", f"{TRAIN} --seeds 1,5000000000", 2, "--seeds: each seed must be in [0, 4294967295]"),
    case("device-unknown", f"{TRAIN} --device meta", 2, "train.device: unknown device 'meta' (valid: cpu, cuda"),
    case("device-without-cuda", f"{TRAIN} --device cuda:7", 2, "--device cuda:7:"),
    case("tasks-empty", f"{TRAIN} --tasks ''", 2, "--tasks: empty value"),
    case("out-empty", "train --data {data} --out '' --no-track", 2, "--out: empty value"),
    case("out-empty-after-equals", "train --data {data} --out= --no-track", 2, "--out: empty value"),
    case("argument-empty", "data info ''", 2, "empty argument after 'info'"),
    case("tasks-twice", f"{TRAIN} --tasks sa,sa", 2, "model.tasks: 'sa' given twice"),
    case("lr-zero", f"{TRAIN} --lr 0", 2, "train.lr must be a positive finite number, got 0.0"),
    case("resume-with-options", "train --resume {run} --epochs 3", 2, "--resume", "give no other training options"),
    case("split-unknown", "eval {run} --split tset", 2, "--split: unknown value 'tset'", "did you mean 'test'?"),
    case("like-unknown", "profile --like mosa --repeats 0", 2, "--like: unknown value 'mosa'", "mean 'mosi'?"),
    # Typer's own parse errors
    case("option-not-an-integer", f"{TRAIN} --epochs abc", 2, "--epochs: invalid value 'abc'", "valid integer"),
    case("option-not-a-number", f"{TRAIN} --lr fast", 2, "--lr: invalid value 'fast'", "valid number"),
    case("option-below-its-range", "profile --threads 0", 2, "--threads: invalid value '0'", "or equal to 1"),
    case("option-unknown", f"{TRAIN} --epoch 3", 2, "no such option --epoch (did you mean --epochs?)"),
    case("option-without-value", f"{TRAIN} --epochs", 2, "'--epochs' requires an argument"),
    case("argument-missing", "eval", 2, "Missing argument 'run'"),
    case("argument-extra", "prepare synthetic --out new.h5 --force 3", 2, "unexpected extra argument", "3"),
    case("command-unknown", "trian", 2, "No such command 'trian'", "Did you mean 'train'?"),
    # YAML configs
    case("yaml-unknown-key", f"{TRAIN} --config cfg.yaml", 2, "cfg.yaml: unknown key 'modle'", "did you mean 'model'?",
         files=config("modle:\n  topk: 2\n")),
    case("yaml-unknown-nested-key", f"{TRAIN} --config cfg.yaml", 2, "cfg.yaml: train: unknown key 'epoch'",
         "did you mean 'epochs'?", files=config("train:\n  epoch: 3\n")),
    case("yaml-string-for-int", f"{TRAIN} --config cfg.yaml", 2, "cfg.yaml: train.epochs: expected int, got 'many'",
         files=config("train:\n  epochs: many\n")),
    case("yaml-bool-for-int", f"{TRAIN} --config cfg.yaml", 2, "cfg.yaml: train.epochs: expected int, got True",
         files=config("train:\n  epochs: true\n")),
    case("yaml-scalar-for-list", f"{TRAIN} --config cfg.yaml", 2, "cfg.yaml: model.tasks: expected a list, got 'sa'",
         files=config("model:\n  tasks: sa\n")),
    case("yaml-scalar-for-mapping", f"{TRAIN} --config cfg.yaml", 2, "cfg.yaml: model.experts: expected a mapping",
         files=config("model:\n  experts: 4\n")),
    case("yaml-unknown-router", f"{TRAIN} --config cfg.yaml", 2, "unknown value 'topq'", "did you mean 'topk'?",
         files=config("model:\n  router: topq\n")),
    case("yaml-negative-lr", f"{TRAIN} --config cfg.yaml", 2,
         "cfg.yaml: train.lr must be a positive finite number, got -1.0",
         files=config("train: {lr: -1}\n")),
    case("yaml-list-section", f"{TRAIN} --config cfg.yaml", 2, "cfg.yaml: train: expected a mapping, got []",
         files=config("train: []\n")),
    case("yaml-no-modalities", f"{TRAIN} --config cfg.yaml", 2,
         "cfg.yaml: model.modalities must name at least one modality", files=config("model: {modalities: []}\n")),
    case("yaml-weight-of-unknown-task", f"{TRAIN} --config cfg.yaml", 2,
         "cfg.yaml: model.task_weights: unknown task 'xx'", files=config("model: {task_weights: {xx: 1}}\n")),
    case("yaml-negative-balance", f"{TRAIN} --config cfg.yaml", 2,
         "cfg.yaml: model.balance_coef must be a finite number ≥ 0, got -5.0",
         files=config("model: {balance_coef: -5}\n")),
    case("yaml-empty-data-path", f"{TRAIN_ON.replace(' --data', '')} --config cfg.yaml", 2,
         "cfg.yaml: data: empty path", files=config("data: ''\n")),
    case("yaml-invalid", f"{TRAIN} --config cfg.yaml", 2,
         "cfg.yaml: not valid YAML at line 3: expected the node content, but found '<stream end>' "
         "(while parsing a flow node)", files=config("model:\n  topk: [\n")),
    case("yaml-bad-indent", f"{TRAIN} --config cfg.yaml", 2,
         "cfg.yaml: not valid YAML at line 3: mapping values are not allowed here",
         files=config("train:\n  epochs: 3\n   lr: 0.1\n")),
    case("yaml-list-at-top", f"{TRAIN} --config cfg.yaml", 2, "cfg.yaml: expected a mapping at the top level, got list",
         files=config("- model\n- train\n")),
    case("yaml-python-tag", f"{TRAIN} --config cfg.yaml", 2, "cfg.yaml: not valid YAML at line 1: could not "
         "determine a constructor for the tag 'tag:yaml.org,2002:python/object/apply:os.system'",
         files=config("model: !!python/object/apply:os.system ['true']\n")),
    case("config-not-text", f"{TRAIN} --config cfg.yaml", 2, "cfg.yaml: not a YAML config (not UTF-8 text)",
         files={"cfg.yaml": b"\x89HDF\r\n\x1a\n\xff\xfe"}),
    case("config-data-missing", "train --out out --no-track --config conf/cfg.yaml", 1,
         "conf/cfg.yaml: data: data/mosi.h5: file not found (relative to the config file: conf/data/mosi.h5)",
         files={"conf/cfg.yaml": "data: data/mosi.h5\n", "data/mosi.h5": ""}),
    case("config-missing", f"{TRAIN} --config none.yaml", 2, "none.yaml: cannot read config file"),
    case("config-is-a-directory", f"{TRAIN} --config .", 2, ".: cannot read config file"),
    # data files
    case("data-missing", f"{TRAIN_ON} none.h5", 1, "none.h5: file not found"),
    case("data-empty-file", TRAIN_ON + " {empty}", 1, "{empty}: not an HDF5 file"),
    case("data-truncated", TRAIN_ON + " {truncated}", 1, "{truncated}: unreadable HDF5 file"),
    case("data-not-hdf5", TRAIN_ON + " {csv}", 1, "{csv}: not an HDF5 file"),
    case("data-foreign-hdf5", TRAIN_ON + " {foreign_h5}", 1, "{foreign_h5}: /format: missing"),
    case("data-infinite-label", TRAIN_ON + " {inf_label}", 1,
         "{inf_label}: train/labels/sentiment: infinite value at sample 3"),
    case("data-nan-feature", TRAIN_ON + " {nan_feature}", 1,
         "{nan_feature}: valid/features/audio: non-finite value at sample 0"),
    case("data-empty-split", TRAIN_ON + " {empty_split}", 1,
         "{empty_split}: valid: empty split (no samples)"),
    case("data-valid-unlabelled", TRAIN_ON + " {unlabelled_valid}", 1,
         "{unlabelled_valid}: valid: no sentiment labels, so task 'sa' cannot be selected"),
    case("data-is-a-directory", f"{TRAIN_ON} .", 1, ".: is a directory"),
    case("info-truncated", "data info {truncated}", 1, "{truncated}: unreadable HDF5 file"),
    case("export-infinite-label", "export mmsa {inf_label} --out out.pkl", 1, "{inf_label}: train/labels/sentiment"),
    case("profile-truncated", "profile --data {truncated} --repeats 0", 1, "{truncated}", "unreadable HDF5 file"),
    case("eval-other-feature-sizes", "eval {run} --data {mosi}", 1,
         "{mosi}: test/features/audio: feature size 5 differs from the checkpoint's 74"),
    case("eval-empty-split", "eval {run} --data {empty_split} --split valid", 1, "{empty_split}: valid: empty split"),
    case("prepare-existing-output", "prepare synthetic --out {mosi} --scale 0.01", 1, "{mosi}: already exists"),
    case("prepare-emotion-labels", "prepare synthetic --out new.h5 --emotion-labels 0", 2,
         "--emotion-labels: must be a fraction in (0, 1], got 0.0"),
    case("export-existing-output", "export mmsa {mosi} --out {csv}", 1, "{csv}: already exists"),
    # checkpoints
    case("checkpoint-garbage", "eval {garbage_pt}", 1, "{garbage_pt}: not a readable checkpoint"),
    case("checkpoint-hdf5", "eval {mosi}", 1, "{mosi}: not a readable checkpoint (not a torch archive)"),
    case("checkpoint-truncated", "eval {truncated_pt}", 1, "{truncated_pt}: not a readable checkpoint"),
    case("checkpoint-foreign", "eval {foreign_pt}", 1, "{foreign_pt}: not an mmolre checkpoint"),
    case("checkpoint-other-config", "eval {other_config_pt}", 1, "{other_config_pt}: weights do not match",
         "size mismatch for"),
    case("checkpoint-needs-missing-plugin", "eval {needs_plugin_pt}", 1,
         "{needs_plugin_pt}: the model uses expert 'explode' from a plugin, which is not loaded",
         "give mmolre --plugins-dir DIR"),
    # A component named like a built-in ('lowrank') is a missing plugin's, not a typo to correct.
    case("checkpoint-needs-recorded-plugin", "eval {gelu_pt}", 1,
         "{gelu_pt}: the model uses expert 'gelu_lowrank' from plugin 'gelu' (package mmolre-gelu 0.3), "
         "which is not loaded; install it (pip install mmolre-gelu==0.3)"),
    case("checkpoint-not-in-run-dir", "eval {no_checkpoint}", 1, "checkpoint.pt: no checkpoint found"),
    case("eval-resume-state", "eval {run}/last.pt", 1, "{run}/last.pt: holds what resuming needs",
         "eval checkpoint.pt"),
    case("eval-ablation-directory", "eval {ablation}", 1, "{ablation}: an ablation directory", "{ablation}/runs/NAME"),
    case("eval-training-data-gone", "eval {data_gone_pt}", 1, "gone.h5: file not found", "give --data"),
    case("eval-run-id-without-database", "eval 0123456789abcdef0123456789abcdef --tracking-uri sqlite:///none.db", 1,
         "sqlite:///none.db: no such tracking database"),
    case("runs-no-directory", "runs nowhere", 2, "nowhere: no such directory"),
    case("runs-none-finished", "runs {interrupted}", 2, "{interrupted}: no finished runs"),
    case("runs-store-missing", "runs --tracking-uri sqlite:///none.db", 2,
         "--tracking-uri sqlite:///none.db: no such tracking database"),
    case("encoder-for-no-modality", f"{TRAIN} --encoder smell=lstm", 2, "--encoder smell: not a modality of the data"),
    case("prepare-existing-output-through-missing-dir", "prepare synthetic --out nowhere/../old.h5 --scale 0.01", 1,
         "nowhere/../old.h5: already exists", files={"old.h5": b"kept"}),
    case("eval-damaged-seeds-json", "eval {damaged_multi}", 1, "{damaged_multi}/seeds.json: damaged (not valid JSON)"),
    case("resume-damaged-seeds-json", "train --resume {damaged_multi}", 1, "{damaged_multi}/seeds.json: damaged"),
    case("resume-other-config", "train --resume {changed} --no-track", 1, "last.pt: written with another config"),
    case("resume-not-a-run", "train --resume {no_checkpoint}", 1, "{no_checkpoint}: not a run directory"),
    case("resume-finished-run", "train --resume {run}", 1, "{run}: the run is complete"),
    # output directories
    case("out-holds-a-finished-run", "train --data {data} " + MODEL + " --out {run}", 1,
         "{run}: already holds a run (metrics.json)"),
    case("out-holds-a-finished-multi-seed-run", "train --data {data} " + MODEL + " --out {multi} --no-track", 1,
         "{multi}: already holds a run (seeds.json)"),
    case("out-holds-a-run-for-seeds", "train --data {data} " + MODEL + " --seeds 1,2 --out {run} --no-track", 1,
         "{run}: already holds a run"),
    case("out-holds-an-interrupted-run", "train --data {data} " + MODEL + " --out {interrupted} --no-track", 1,
         "{interrupted}: holds an interrupted run", "--resume"),
    case("out-is-a-file", "train --data {data} --out {mosi} --no-track", 2, "--out {mosi}: cannot create directory"),
    # ablate
    case("grid-group", "ablate --data {data} --out out --grid model.experts=1,2", 2,
         "--grid: model.experts is a group of settings; name one, such as model.experts.shared"),
    case("grid-seed", "ablate --data {data} --out out --grid train.seed=1,2", 2,
         "--grid train.seed: seeds come from --seeds"),
    case("grid-same-setting-twice", "ablate --data {data} --out out --grid d_model=8 --grid model.d_model=16", 2,
         "--grid: d_model and model.d_model name the same setting"),
    case("grid-select-of-untrained-task", "ablate --data {data} --out out --tasks sa --grid train.select=MAE,WA_mean",
         2,
         "--grid train.select=WA_mean: --select: unknown metric 'WA_mean' for tasks sa"),
    case("ablate-nothing-left", "ablate --data {data} --out out --router uniform --remove router", 2,
         "nothing to compare: --remove router: skipped, the full model already runs without it"),
    case("grid-not-a-number", "ablate --data {data} --out out --grid topk=1,b", 2,
         "--grid topk=b: model.topk: expected int, got 'b'"),
    # plugins
    case("plugins-dir-missing", "--plugins-dir none plugins", 2, "--plugins-dir: dir 'none' does not exist"),
    case("plugins-dir-is-a-file", "--plugins-dir {mosi} plugins", 2, "--plugins-dir: dir '{mosi}' is a file"),
    case("plugin-factory-raises", "--plugins-dir {plugins} " + TRAIN + " --experts type=explode", 1,
         "plugin 'explosive_expert': expert 'explode': factory raised RuntimeError: boom"),
    case("plugin-factory-raises-for-seeds", "--plugins-dir {plugins} " + TRAIN + " --seeds 1,2 --experts type=explode",
         1, "factory raised RuntimeError: boom"),
    case("plugin-not-loaded", f"{TRAIN} --experts type=explode", 2, "--experts type: unknown value 'explode'"),
]  # fmt: skip

PLUGIN = """from mmolre_cli.plugins import hookimpl


def explode(*, d_model, n_experts, rank, dropout):
    raise RuntimeError("boom")


@hookimpl
def register_experts(register):
    register("explode", explode)
"""


def edited_checkpoint(source: Path, target: Path, **model: object) -> None:
    """A copy of the checkpoint ``source`` whose stored model config has ``model`` merged in."""
    payload = torch.load(source, weights_only=True)
    payload["config"]["model"].update(model)
    torch.save(payload, target)


def empty_split(path: Path, split: str) -> None:
    """Every dataset of ``split`` in the canonical file ``path`` replaced by an empty one of its type."""
    with h5py.File(path, "r+") as f:
        names: list[str] = []
        f[split].visititems(lambda name, item: names.append(name) if isinstance(item, h5py.Dataset) else None)
        for name in names:
            dataset = f[split][name]
            shape, dtype = (0, *dataset.shape[1:]), dataset.dtype
            del f[split][name]
            f[split].create_dataset(name, shape=shape, dtype=dtype)


#: The workspace: what each ``{name}`` of a case stands for.
WORKSPACE = {
    "data": "mosei.h5", "mosi": "mosi.h5", "truncated": "truncated.h5", "inf_label": "inf_label.h5",
    "nan_feature": "nan_feature.h5", "empty_split": "empty_split.h5", "empty": "empty.h5", "csv": "labels.csv",
    "foreign_h5": "foreign.h5", "run": "run", "multi": "multi", "interrupted": "interrupted", "changed": "changed",
    "no_checkpoint": "no_checkpoint", "garbage_pt": "garbage.pt", "truncated_pt": "truncated.pt",
    "foreign_pt": "foreign.pt", "other_config_pt": "other_config.pt", "needs_plugin_pt": "needs_plugin.pt",
    "plugins": "plugins", "damaged_multi": "damaged_multi", "ablation": "ablation", "data_gone_pt": "data_gone.pt",
    "gelu_pt": "gelu.pt",
    "unlabelled_valid": "unlabelled_valid.h5",
}  # fmt: skip


@pytest.fixture(scope="session")
def workspace(tmp_path_factory) -> dict[str, str]:
    """Every file the cases point at, made once: data files, finished and interrupted runs, checkpoints, a plugin."""
    root = tmp_path_factory.mktemp("bad-input")
    paths = {name: root / file for name, file in WORKSPACE.items()}
    write_canonical(generate_synthetic(like="mosei", scale=0.01, seed=5, seq_len=4), paths["data"])
    write_canonical(generate_synthetic(like="mosi", scale=0.01, seed=6, seq_len=4), paths["mosi"])
    for name in ("inf_label", "nan_feature", "empty_split"):
        shutil.copy(paths["mosi"], paths[name])
    with h5py.File(paths["inf_label"], "r+") as f:
        f["train/labels/sentiment"][3] = np.inf
    with h5py.File(paths["nan_feature"], "r+") as f:
        f["valid/features/audio"][0, 0, 0] = np.nan
    empty_split(paths["empty_split"], "valid")
    shutil.copy(paths["data"], paths["unlabelled_valid"])
    with h5py.File(paths["unlabelled_valid"], "r+") as f:
        f["valid/labels/sentiment"][...] = np.nan
    paths["truncated"].write_bytes(paths["mosi"].read_bytes()[:4096])
    paths["empty"].write_bytes(b"")
    paths["csv"].write_text("video_id,clip_id,label\nv1,1,0.5\n")
    with h5py.File(paths["foreign_h5"], "w") as f:
        f["x"] = np.zeros(3)

    for args in (f"--out {paths['run']}", f"--seeds 1 --out {paths['multi']}"):
        trained = run_main(shlex.split(f"train --data {paths['data']} {MODEL} --no-track {args}"))
        assert trained.exit_code == 0, trained.output
    checkpoint = paths["run"] / "checkpoint.pt"
    paths["garbage_pt"].write_bytes(b"not a checkpoint")
    paths["truncated_pt"].write_bytes(checkpoint.read_bytes()[:4096])
    torch.save({"weights": torch.zeros(2)}, paths["foreign_pt"])
    edited_checkpoint(checkpoint, paths["other_config_pt"], d_model=32)
    edited_checkpoint(checkpoint, paths["needs_plugin_pt"], experts={"shared": 2, "rank": 4, "type": "explode"})
    edited_checkpoint(checkpoint, paths["gelu_pt"], experts={"shared": 2, "rank": 4, "type": "gelu_lowrank"})
    payload = torch.load(paths["gelu_pt"], weights_only=True)
    payload["plugins"] = [
        {"kind": "expert", "name": "gelu_lowrank", "plugin": "gelu", "origin": "package mmolre-gelu 0.3"}
    ]
    torch.save(payload, paths["gelu_pt"])
    paths["no_checkpoint"].mkdir()
    for name in ("interrupted", "changed"):
        shutil.copytree(paths["run"], paths[name])
        (paths[name] / "metrics.json").unlink()
    shutil.copytree(paths["multi"], paths["damaged_multi"])
    (paths["ablation"] / "runs").mkdir(parents=True)
    payload = torch.load(checkpoint, weights_only=True)
    payload["config"]["data"] = "gone.h5"  # as if trained elsewhere on a relative path
    torch.save(payload, paths["data_gone_pt"])
    (paths["damaged_multi"] / "seeds.json").write_text("{not json")
    values = yaml.safe_load((paths["changed"] / "config.yaml").read_text())
    values["train"]["lr"] *= 2
    (paths["changed"] / "config.yaml").write_text(yaml.safe_dump(values))

    paths["plugins"].mkdir()
    (paths["plugins"] / "explosive_expert.py").write_text(PLUGIN)
    assert run_main(["--plugins-dir", str(paths["plugins"]), "plugins"]).exit_code == 0  # compiles it once
    return {"root": str(root), **{name: str(path) for name, path in paths.items()}}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_fails_cleanly(case, workspace, tmp_path, monkeypatch):
    """One line on stderr, nothing on stdout, the case's exit code, and no file created or changed anywhere."""
    monkeypatch.chdir(tmp_path)
    for name, content in case.files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    before = snapshot(tmp_path, Path(workspace["root"]))
    result = run_main(shlex.split(case.args.format(**workspace)))
    assert_fails_cleanly(result, *(fragment.format(**workspace) for fragment in case.fragments), code=case.code)
    assert result.stdout == ""
    assert snapshot(tmp_path, Path(workspace["root"])) == before


def test_the_console_script_reports_a_parse_error_in_one_line():
    """``python -m mmolre_cli`` (the console script's ``main()``) in a process of its own: one line, exit 2."""
    result = subprocess.run(
        [sys.executable, "-m", "mmolre_cli", "train", "--epoch", "3"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert result.stderr == "Error: no such option --epoch (did you mean --epochs?)\n"


def test_the_test_runner_sees_the_errors_users_see():
    """CliRunner (which calls the app, not ``main()``) gets the very same one-line error and exit code."""
    args = ["train", "--epochs", "abc"]
    through_main, through_runner = run_main(args), CliRunner().invoke(app, args)
    assert (through_runner.exit_code, through_runner.stderr) == (through_main.exit_code, through_main.stderr)
    assert through_main.stderr.startswith("Error: --epochs: invalid value 'abc'")


def test_help_version_and_no_arguments_still_work():
    """``--help`` and ``--version`` exit 0; ``mmolre`` alone shows the help (exit 2, as Typer does), no error line."""
    version, help_, bare = run_main(["--version"]), run_main(["train", "--help"]), run_main([])
    assert (version.exit_code, version.stdout.split()[0]) == (0, "mmolre")
    assert help_.exit_code == 0 and "--epochs" in help_.stdout and help_.stderr == ""
    assert bare.exit_code == 2 and "Usage: mmolre" in bare.stdout and "Error" not in bare.output
