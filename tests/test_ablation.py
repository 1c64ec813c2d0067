"""``mmolre ablate``: every removal changes the model as named, baselines, grids, outputs, resuming."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import queue
import re
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import random_inputs
from rich.console import Console
from typer.testing import CliRunner

from mmolre_cli.ablation import runner as runner_module
from mmolre_cli.ablation.plots import scaled
from mmolre_cli.ablation.results import summarise
from mmolre_cli.ablation.runner import SeedRun, record_plan
from mmolre_cli.ablation.variants import REMOVALS, WHOLE, Plan, Variant, parse_grid, plan_variants
from mmolre_cli.cli.ablate_progress import AblationProgress
from mmolre_cli.cli.app import app
from mmolre_cli.config import build_config, deep_merge
from mmolre_cli.data.canonical import write_canonical
from mmolre_cli.data.synthetic import generate_synthetic
from mmolre_cli.errors import UsageError
from mmolre_cli.model import multitask_loss
from mmolre_cli.model.build import build_model
from mmolre_cli.model.experts import lowrank_parameter_count
from mmolre_cli.model.fusion import ConcatFusion, TaskAdaptiveFusion
from mmolre_cli.model.routers import TopKRouter, UniformRouter
from mmolre_cli.training.seeds import aggregate

SMALL = {"model": {"d_model": 16, "experts": {"shared": 4, "rank": 4}, "topk": 2, "dropout": 0.0}}
FAST = ["--d-model", "16", "--epochs", "2", "--batch-size", "64", "--no-track"]


pytestmark = pytest.mark.usefixtures("fast_runs")


@pytest.fixture
def runner():
    return CliRunner()


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def models(registry, signature, removal: str) -> tuple[torch.nn.Module, dict[str, torch.nn.Module]]:
    """The full model and the removal's model(s) by part, built from the planned configs."""
    plan = plan_variants(SMALL, [removal], [], {}, registry)
    full, variant = plan.variants
    assert full.name == "full" and variant.name == f"no-{removal}"
    build = lambda config: build_model(config.model, signature, registry)  # noqa: E731
    return build(full.parts[WHOLE]), {part: build(config) for part, config in variant.parts.items()}


def blocks(model) -> list:
    return [block for modality in model.unitse.values() for block in modality.blocks]


def check_unitse(full, variant, registry, signature):
    assert variant.unitse is None and full.unitse is not None
    assert n_params(full) - n_params(variant) == n_params(full.unitse)


def check_shared(full, variant, registry, signature):
    assert all(b.shared is None and b.routers is None for b in blocks(variant))
    removed = sum(n_params(b.shared) + n_params(b.routers) for b in blocks(full))
    assert removed > 0 and n_params(full) - n_params(variant) == removed


def check_specific(full, variant, registry, signature):
    assert all(b.specific is None and b.shared is not None for b in blocks(variant))
    removed = sum(n_params(b.specific) for b in blocks(full))
    assert removed > 0 and n_params(full) - n_params(variant) == removed


def check_router(full, variant, registry, signature):
    assert all(isinstance(r, TopKRouter) for b in blocks(full) for r in b.routers.values())
    assert all(isinstance(r, UniformRouter) for b in blocks(variant) for r in b.routers.values())
    assert n_params(full) - n_params(variant) == sum(n_params(b.routers) for b in blocks(full))
    # Uniform weights over all N shared experts, not top-k of them.
    output = variant(*random_inputs(signature))
    assert all((route.weights == 0.25).all() for route in output.routes.values())


def check_fusion(full, variant, registry, signature):
    assert isinstance(full.fusion, TaskAdaptiveFusion) and isinstance(variant.fusion, ConcatFusion)


def check_lowrank(full, variant, registry, signature):
    d, n, r = 16, 4, 4
    assert all(b.shared.hidden == r and b.specific["sa"].hidden == r for b in blocks(full))
    assert all(b.shared.hidden == d and b.specific["sa"].hidden == d for b in blocks(variant))
    bank = blocks(variant)[0].shared
    assert n_params(bank) == lowrank_parameter_count(d, n, d)  # the same shape at full width
    assert n_params(variant) > n_params(full)


def check_block2(full, variant, registry, signature):
    assert all(len(m.blocks) == 2 for m in full.unitse.values())
    assert all(len(m.blocks) == 1 for m in variant.unitse.values())


def check_balance(full, variant, registry, signature):
    # Same network; only the loss loses its balance term.
    assert n_params(full) == n_params(variant)
    output = full(*random_inputs(signature))
    sentiment, emotion = torch.randn(6), torch.rand(6, 6)
    with_balance, parts = multitask_loss(output, sentiment, emotion, full.config, None)
    without, _ = multitask_loss(output, sentiment, emotion, variant.config, None)
    assert variant.config.balance_coef == 0.0
    torch.testing.assert_close(with_balance - without, full.config.balance_coef * parts["balance"])


CHECKS = {
    "unitse": check_unitse,
    "shared": check_shared,
    "specific": check_specific,
    "router": check_router,
    "fusion": check_fusion,
    "lowrank": check_lowrank,
    "block2": check_block2,
    "balance": check_balance,
}


def test_every_removal_has_a_structural_test():
    assert set(CHECKS) | {"mtl"} == set(REMOVALS)


@pytest.mark.parametrize("removal", sorted(CHECKS))
def test_removal_changes_the_model_as_named(registry, signature, removal):
    full, parts = models(registry, signature, removal)
    assert list(parts) == [WHOLE]
    CHECKS[removal](full, parts[WHOLE], registry, signature)


def test_removing_mtl_trains_one_single_task_model_per_task(registry, signature):
    full, parts = models(registry, signature, "mtl")
    assert list(parts) == ["sa", "er"] and full.tasks == ["sa", "er"]
    for task, model in parts.items():
        assert model.tasks == [task] and list(model.heads) == [task]
        assert model.fusion.queries.shape[0] == 1  # one task query, not two
        assert all(list(b.routers) == [task] and list(b.specific) == [task] for b in blocks(model))
        assert set(model(*random_inputs(signature)).predictions) == {task}


@pytest.mark.parametrize("select,sa_select,er_select", [("WA_mean", "loss", "WA_mean"), ("Corr", "Corr", "loss")])
def test_each_single_task_model_selects_on_its_own_metric(registry, select, sa_select, er_select):
    values = {**SMALL, "train": {"select": select}}
    parts = plan_variants(values, ["mtl"], [], {}, registry).variants[1].parts
    assert parts["sa"].train.select == sa_select and parts["er"].train.select == er_select


def test_removing_mtl_on_data_without_emotion_labels_fails_before_training(registry, tiny_mosi):
    with pytest.raises(UsageError, match=f"--remove mtl: {tiny_mosi} has no emotion labels"):
        plan_variants({**SMALL, "data": str(tiny_mosi)}, ["mtl"], [], {}, registry)


def test_baselines_are_built_as_named(registry, signature):
    plan = plan_variants(SMALL, [], ["hps", "mmoe", "cgc"], {}, registry)
    built = {v.name: build_model(v.parts[WHOLE].model, signature, registry) for v in plan.variants}
    hps, mmoe, cgc = built["hps"], built["mmoe"], built["cgc"]
    # HPS: nothing before the heads belongs to a task.
    task_specific = [name for name, _ in hps.named_parameters() if ".sa." in f".{name}." or ".er." in f".{name}."]
    assert task_specific and all(name.startswith("heads.") for name in task_specific)
    assert hps.fusion.queries.shape[0] == 1
    # MMoE: dense shared experts, a softmax gate per task over them; CGC adds one expert per task.
    for model in (mmoe, cgc):
        assert all(bank.hidden == 16 and bank.n_experts == 4 for bank in model.shared.values())
    assert mmoe.own is None and all(gate.gate.out_features == 4 for g in mmoe.gates.values() for gate in g.values())
    assert all(gate.gate.out_features == 5 for g in cgc.gates.values() for gate in g.values())
    assert n_params(cgc) > n_params(mmoe)
    for model in built.values():
        output = model(*random_inputs(signature))
        loss, _ = multitask_loss(output, torch.randn(6), torch.rand(6, 6), model.config, None)
        loss.backward()
        assert output.predictions["sa"].shape == (6,) and output.predictions["er"].shape == (6, 6)


def test_grid_skips_topk_above_shared_and_reuses_the_full_model(registry):
    grid = parse_grid(["shared=1,2,4", "topk=1,2"])
    plan = plan_variants(SMALL, [], [], grid, registry)
    assert [v.name for v in plan.variants] == [
        "shared=4,topk=2",  # equal to the full model: the reference, trained once
        "shared=1,topk=1",
        "shared=2,topk=1",
        "shared=2,topk=2",
        "shared=4,topk=1",
    ]
    assert plan.notes == ["--grid shared=1,topk=2: skipped, topk cannot exceed the number of shared experts"]
    assert plan.variants[1].parts[WHOLE].model.experts.shared == 1


@pytest.mark.parametrize(
    "values, fragment",
    [
        (["nope=1,2"], "unknown key 'nope'"),
        (["shared"], "expected KEY=V1,V2"),
        (["shared=1", "shared=2"], "given twice"),
        (["model.experts=1,2"], "model.experts is a group of settings; name one, such as model.experts.shared"),
        (["model.topk.x=1"], "model.topk is one setting; it has no key 'x'"),
        (["model.experts.rnak=1"], "model.experts.rnak is not a setting .*did you mean 'rank'"),
        (["model.task_weights=1"], "model.task_weights is a mapping; name one entry"),
    ],
)
def test_bad_grids_are_refused(values, fragment):
    with pytest.raises(UsageError, match=fragment):
        parse_grid(values)


@pytest.mark.parametrize(
    "value, message",
    [
        ("type=bogus", "--grid type=bogus: --experts type: unknown value 'bogus'"),
        ("topk=b", "--grid topk=b: model.topk: expected int, got 'b'"),
        ("model.task_weights.er=x", "--grid model.task_weights.er=x: model.task_weights.er: expected float, got 'x'"),
    ],
)
def test_grid_values_are_checked_before_training(registry, value, message):
    with pytest.raises(UsageError) as error:
        plan_variants(SMALL, [], [], parse_grid([value]), registry)
    assert str(error.value).startswith(message)


def test_grid_values_that_spell_the_same_model_train_it_once(registry):
    plan = plan_variants(SMALL, [], [], parse_grid(["model.unitse=true,yes", "blocks=1"]), registry)
    assert [variant.name for variant in plan.variants] == ["full", "model.unitse=true,blocks=1"]
    assert plan.notes == ["--grid model.unitse=yes,blocks=1: skipped, the same model as model.unitse=true,blocks=1"]


def test_a_grid_over_one_entry_of_a_mapping_sets_that_entry(registry):
    plan = plan_variants(SMALL, [], [], parse_grid(["model.task_weights.er=0.5,1"]), registry)
    weights = [variant.parts[WHOLE].model.task_weights for variant in plan.variants]
    assert weights == [{"sa": 1.0, "er": 1.0}, {"sa": 1.0, "er": 0.5}]


def test_heatmap_scale_respects_direction():
    assert scaled([0.5, 0.7, None, 0.6], higher_better=True) == pytest.approx([0.0, 1.0, None, 0.5])
    assert scaled([0.5, 0.7, 0.6], higher_better=False) == pytest.approx([1.0, 0.0, 0.5])


def test_a_metric_undefined_for_one_seed_is_undefined_in_the_summary_as_in_train_seeds():
    seeds = ((1, math.nan, 0.9), (2, 0.5, 1.0), (3, 0.3, 0.8))
    runs = [SeedRun(seed, {"test": {"Corr": corr, "MAE": mae}, "valid": {}}, 10, 1) for seed, corr, mae in seeds]
    (full,) = summarise(Plan([Variant("full", "full", {WHOLE: None})], {}, []), {"full": {WHOLE: runs}})["variants"]
    assert full["mean"]["Corr"] is None and full["std"]["Corr"] is None and full["delta"]["Corr"] is None
    mean, std = aggregate([{"test": run.metrics["test"]} for run in runs])
    assert full["mean"]["MAE"] == pytest.approx(0.9) == mean["test"]["MAE"]
    assert full["std"]["MAE"] == pytest.approx(0.1) == std["test"]["MAE"]
    (alone,) = summarise(Plan([Variant("full", "full", {WHOLE: None})], {}, []), {"full": {WHOLE: runs[1:2]}})[
        "variants"
    ]
    assert alone["mean"]["MAE"] == 1.0 and alone["std"]["MAE"] is None  # one seed: no spread


def test_unknown_removal_fails_in_one_line_listing_valid_names(runner, tmp_path):
    result = runner.invoke(app, ["ablate", "--remove", "unitse,bogus", "--out", str(tmp_path / "a")])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "'bogus'" in lines[0] and ", ".join(REMOVALS) in lines[0]
    assert not (tmp_path / "a").exists()


def test_grid_study_writes_heatmap_and_every_combination_and_seed(runner, tiny_data, tmp_path):
    out = tmp_path / "grid"
    args = ["ablate", "--data", str(tiny_data), "--grid", "shared=1,2,4", "--grid", "topk=1,2", "--seeds", "1,2"]
    result = runner.invoke(app, [*args, *FAST, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "skipped" in result.stderr and (out / "heatmap.png").stat().st_size > 0
    with (out / "results.csv").open() as file:
        rows = list(csv.DictReader(file))
    valid = {(s, k) for s in ("1", "2", "4") for k in ("1", "2") if int(k) <= int(s)}
    assert sorted((r["shared"], r["topk"], r["seed"]) for r in rows) == sorted(
        (s, k, seed) for s, k in valid for seed in ("1", "2")
    )
    assert all(r["test_MAE"] and r["test_WA_mean"] for r in rows)
    summary = json.loads((out / "results.json").read_text())
    assert summary["reference"] == "shared=4,topk=2"
    # Rerunning into the same directory trains nothing again.
    again = runner.invoke(app, [*args, *FAST, "--out", str(out)])
    assert again.exit_code == 0 and again.stderr.count("read back") == len(valid)
    assert json.loads((out / "results.json").read_text())["variants"] == summary["variants"]


def test_a_variant_equal_to_one_trained_earlier_in_the_directory_is_read_back(runner, tiny_data, tmp_path):
    out, common = tmp_path / "abl", ["ablate", "--data", str(tiny_data), "--seeds", "1", *FAST, "--topk", "2"]
    assert runner.invoke(app, [*common, "--remove", "balance", "--out", str(out)]).exit_code == 0
    # The grid point topk=2 is the full model trained above: read back from runs/full, not trained.
    result = runner.invoke(app, [*common, "--grid", "topk=1,2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "topk=2: read back" in result.stderr and "topk=1: trained" in result.stderr
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["full", "no-balance", "topk-1"]
    full = json.loads((out / "runs" / "full" / "summary.json").read_text())["mean"]["test"]
    summary = json.loads((out / "results.json").read_text())
    (point,) = [v for v in summary["variants"] if v["name"] == "topk=2"]
    assert point["mean"]["MAE"] == pytest.approx(full["MAE"])


def test_an_output_directory_refuses_other_settings_for_a_variant_it_holds(registry, tmp_path):
    record_plan(plan_variants(SMALL, ["block2"], [], {}, registry), [1], tmp_path)
    # More variants are fine (they are added); the same variant with another config or seeds is not.
    record_plan(plan_variants(SMALL, ["block2", "fusion"], [], {}, registry), [1], tmp_path)
    changed = deep_merge(SMALL, {"train": {"lr": 0.01}})
    for values, seeds in ((changed, [1]), (SMALL, [1, 2])):
        with pytest.raises(UsageError, match="variant 'full' was run there with other settings or seeds"):
            record_plan(plan_variants(values, ["block2"], [], {}, registry), seeds, tmp_path)


def test_remove_unitse_with_no_other_option_runs_on_the_builtin_data(runner, tmp_path, monkeypatch):
    # A tiny stand-in for the built-in dataset (16 training clips), where the trainer looks it up.
    builtin = tmp_path / "builtin.h5"
    write_canonical(generate_synthetic(like="mosei", scale=0.001, seq_len=12), builtin)
    monkeypatch.setattr("mmolre_cli.training.trainer.builtin_dataset_path", lambda: builtin)
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["ablate", "--remove", "unitse"])
    assert result.exit_code == 0, result.output
    assert "full" in result.stdout and "no-unitse" in result.stdout and "MAE" in result.stdout
    # Progress: a first line before any training, then one line per run with the count and the time left.
    lines = result.stderr.splitlines()
    assert lines[0] == "ablation: 2 variant parts × 3 seeds = 6 runs"
    runs = [line for line in lines if " runs done, " in line]
    assert [line.partition(":")[0] for line in runs] == [
        f"{v}, seed {s}" for v in ("full", "no-unitse") for s in (1, 2, 3)
    ]
    assert runs[0].split(": ")[1].startswith("1/6 runs done, 5 to go, 0:0") and runs[0].endswith(" left")
    assert runs[-1].split(": ")[1].startswith("6/6 runs done, 0 to go")
    (out,) = (tmp_path / "ablations").iterdir()
    summary = json.loads((out / "results.json").read_text())
    assert [v["name"] for v in summary["variants"]] == ["full", "no-unitse"] and summary["seeds"] == [1, 2, 3]
    assert (out / "bars.png").is_file() and (tmp_path / "mlflow.db").is_file()  # the working directory's store
    import mlflow

    client = mlflow.tracking.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs(client.get_experiment_by_name("builtin").experiment_id)
    parent = {r.info.run_id for r in runs if r.info.run_name.startswith("ablate-")}
    variants = {r.info.run_id: r.info.run_name for r in runs if r.data.tags.get("mlflow.parentRunId") in parent}
    seeds = [r for r in runs if r.data.tags.get("mlflow.parentRunId") in variants]
    assert len(parent) == 1 and sorted(variants.values()) == ["full", "no-unitse"] and len(seeds) == 6


def test_a_diverging_variant_is_a_result_of_the_study_not_its_end(runner, tiny_data, tmp_path):
    out = tmp_path / "abl"
    args = ["ablate", "--data", str(tiny_data), "--seeds", "1", *FAST, "--grid", "train.lr=0.001,1e30"]
    result = runner.invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "the training loss is nan in epoch 1" in result.stderr and "training diverged" in result.stderr
    variants = {v["name"]: v for v in json.loads((out / "results.json").read_text())["variants"]}
    diverged, reference = variants["train.lr=1e30"]["mean"], variants["train.lr=0.001"]["mean"]
    assert set(diverged) == set(reference) and all(value is None for value in diverged.values())
    assert reference["MAE"] is not None and reference["micro_F1"] is not None
    run = json.loads((out / "runs" / "train.lr-1e30" / "seed-1" / "metrics.json").read_text())
    assert "the training loss is nan in epoch 1 (step " in run["diverged"]


def test_a_plugin_component_off_its_contract_at_one_grid_point_names_the_point():
    from mmolre_cli.model.routers import TopKRouter
    from mmolre_cli.plugins import build_registry, get_plugin_manager
    from mmolre_cli.plugins.contracts import PluginError

    def at_most_four(d_model: int, n_experts: int, topk: int):
        if n_experts > 4:
            raise ValueError(f"at most 4 experts, got {n_experts}")
        return TopKRouter(d_model, n_experts, topk)

    registry = build_registry(*get_plugin_manager())
    registry.add("router", "small", at_most_four, plugin="picky")
    values = deep_merge(SMALL, {"model": {"router": "small"}})
    with pytest.raises(PluginError, match=r"^--grid shared=8: plugin 'picky': router 'small': factory raised"):
        plan_variants(values, [], [], parse_grid(["shared=4,8"]), registry)


def test_a_variant_whose_worker_died_twice_is_left_out_and_listed_as_failed(tiny_data, tmp_path, registry):
    from mmolre_cli.ablation.study import run_ablation
    from mmolre_cli.executors import Failed, Inline

    class DyingOnUnitse(Inline):
        """Runs parts here, except that the no-unitse part's worker "dies" twice."""

        def submit(self, function, job):
            if job.directory.name == "no-unitse":
                self._count += 1
                self._done.append((self._count, Failed("WorkerCrashedError: killed")))
                return self._count
            return super().submit(function, job)

    values = deep_merge(SMALL, {"data": str(tiny_data), "train": {"epochs": 1}})
    plan = plan_variants(values, ["unitse", "specific"], [], {}, registry)
    summary = run_ablation(plan, [1], tmp_path, registry, executor=DyingOnUnitse())
    assert [v["name"] for v in summary["variants"]] == ["full", "no-specific"]
    assert summary["failed"] == {"no-unitse": "no-unitse: WorkerCrashedError: killed"}
    assert json.loads((tmp_path / "results.json").read_text())["failed"] == summary["failed"]


def fake_plan(seeds_epochs: int = 30) -> Plan:
    config = build_config({"train": {"epochs": seeds_epochs}})
    return Plan(
        [Variant("full", "full", {WHOLE: config}), Variant("mtl", "removal", {"sa": config, "er": config})], {}, []
    )


def test_the_ablation_display_shows_runs_done_and_left_the_running_epoch_and_the_time_left():
    config = build_config({"train": {"epochs": 30}})
    full, mtl = Variant("full", "full", {WHOLE: config}), Variant("mtl", "removal", {"sa": config, "er": config})
    plan = Plan([full, mtl], {}, [])
    console = Console(file=io.StringIO(), force_terminal=True, width=160)
    progress = AblationProgress(plan, [1, 2], console)

    def screen() -> str:
        capture = Console(file=io.StringIO(), width=160, color_system=None)
        capture.print(progress.progress.get_renderable())
        return capture.file.getvalue()

    assert "0/6 runs done, 6 to go" in screen() and "estimating" in screen()
    progress.on_epoch(full, WHOLE, 1, {"epoch": 1})
    progress.on_epoch(full, WHOLE, 1, {"epoch": 2})
    assert "full, seed 1: epoch 2 of ≤30 done" in screen() and "≤" in screen().partition("runs done")[2]
    assert progress.epochs_left() == 28 + 30 + 2 * 2 * 30
    progress.on_epoch(full, WHOLE, 2, {"epoch": 1})  # seed 1 stopped early
    progress.on_epoch(mtl, "sa", 1, {"epoch": 1})  # a second part running at once (--jobs)
    assert "1/6 runs done, 5 to go" in screen() and "mtl (sa alone), seed 1: epoch 1" in screen()
    progress.on_part(full, WHOLE, [SeedRun(1, {}, 10, 1), SeedRun(2, {}, 10, 1)], False)
    assert "2/6 runs done, 4 to go" in screen() and "full, seed" not in screen()
    assert re.search(r"~\d:\d\d:\d\d left", screen())


def test_epochs_of_worker_processes_reach_on_epoch(tiny_data, tmp_path, registry, monkeypatch):
    """--jobs: a worker puts each epoch on the queue its initializer was given; a thread of the parent relays it."""
    from mmolre_cli import executors

    events = queue.Queue()
    monkeypatch.setattr(executors, "_to_parent", None)
    executors._connect(events)
    config = build_config(deep_merge(SMALL, {"data": str(tiny_data), "train": {"epochs": 2}}))
    job = runner_module.PartJob(config, [1, 2], tmp_path, tmp_path / "runs" / "full", None, None, None, None)
    runner_module.part_worker(job)
    events.put(None)
    seen = []
    variant = Variant("full", "full", {WHOLE: config})
    runner_module._relay(events, {str(job.directory): (variant, WHOLE)}, lambda *event: seen.append(event))
    assert [(v.name, part, seed, summary["epoch"]) for v, part, seed, summary in seen] == [
        ("full", WHOLE, seed, epoch) for seed in (1, 2) for epoch in (1, 2)
    ]


def test_the_results_table_marks_a_variant_that_diverged_after_its_selected_epoch():
    from rich.console import Console

    from mmolre_cli.cli.ablate import results_table

    def runs(diverged: str | None) -> list[SeedRun]:
        metrics = {"test": {"Corr": 0.5, "MAE": 0.9}, "valid": {}}
        return [SeedRun(1, metrics, 10, 2), SeedRun(2, metrics, 10, 2, diverged=diverged)]

    plan = Plan([Variant("full", "full", {WHOLE: None}), Variant("no-shared", "removal", {WHOLE: None})], {}, [])
    summary = summarise(plan, {"full": {WHOLE: runs(None)}, "no-shared": {WHOLE: runs("loss nan in epoch 3")}})
    assert [v["diverged_seeds"] for v in summary["variants"]] == [[], [2]]
    summary["seeds"] = [1, 2]  # run_ablation adds them
    console = Console(width=200, record=True)
    console.print(results_table(summary))
    lines = console.export_text().splitlines()
    marked = [line for line in lines if "diverged: seed" in line]
    assert len(marked) == 1 and "diverged: seed 2" in marked[0]
    assert lines[lines.index(marked[0]) - 1].lstrip("│ ").startswith("no-shared")  # under its variant's name


def spawned_workers(parent: int) -> set[int]:
    """The ids of live processes that ``parent`` started with multiprocessing's spawn."""
    found = set()
    for entry in os.scandir("/proc"):
        try:
            with open(os.path.join(entry.path, "stat")) as stat, open(os.path.join(entry.path, "cmdline"), "rb") as cmd:
                ppid, arguments = int(stat.read().rpartition(")")[2].split()[1]), cmd.read()
        except (OSError, ValueError, IndexError):  # not a process, or one that has just ended
            continue
        if ppid == parent and b"spawn_main" in arguments:
            found.add(int(entry.name))
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigint_to_the_main_ablate_process_alone_stops_its_workers(tiny_data, tmp_path):
    out, config = tmp_path / "abl", tmp_path / "long.yaml"
    config.write_text("train: {epochs: 2000, patience: 2000}\n")  # far longer than the test waits
    options = ["--d-model", "16", "--batch-size", "64", "--no-track", "--remove", "unitse", "--seeds", "1"]
    command = [sys.executable, "-m", "mmolre_cli", "ablate", "--data", str(tiny_data), "--config", str(config)]
    log = tmp_path / "stderr.txt"  # not a pipe: a worker left running would hold it open
    with log.open("w") as stderr:
        main = subprocess.Popen([*command, *options, "--jobs", "2", "--out", str(out)], stdout=stderr, stderr=stderr)
    workers: set[int] = set()
    try:
        deadline = time.monotonic() + 180
        while len(list(out.glob("runs/*/seeds.json"))) < 2 and main.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        workers = spawned_workers(main.pid)
        main.send_signal(signal.SIGINT)  # to the main process alone, not its process group
        main.wait(timeout=60)
        deadline = time.monotonic() + 30
        while any(os.path.exists(f"/proc/{pid}") for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = {pid for pid in workers if os.path.exists(f"/proc/{pid}")}
    finally:
        for pid in workers:  # on failure: leave nothing running
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        main.kill()
        main.wait()
    assert main.returncode == 130, log.read_text()
    assert len(workers) == 2 and left == set(), log.read_text()
    assert "Interrupted; to continue, run the same command" in log.read_text()
