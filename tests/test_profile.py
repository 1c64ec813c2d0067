"""``mmolre profile``: counts against formulas, component sums, active vs executed, the CLI."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from mmolre_cli.cli.app import app
from mmolre_cli.config import ExpertConfig, ModelConfig, RunConfig, TrainConfig
from mmolre_cli.data.shapes import like_shapes, read_shapes
from mmolre_cli.model.experts import ConvExpertBank, runs_routed_only
from mmolre_cli.model.routers import TopKRouter
from mmolre_cli.plugins import build_registry, get_plugin_manager
from mmolre_cli.profiling import compare_grid, expert_scaling, parse_compare, profile_configuration, save_plot
from mmolre_cli.profiling.flops import count
from mmolre_cli.profiling.formulas import expert_bank_macs, expert_parameters, router_macs

TINY = ["--d-model", "16", "--experts", "shared=4,rank=4", "--topk", "2", "--batch-size", "4", "--repeats", "0",
        "--modalities", "text,audio"]  # fmt: skip


def tiny_config(**model) -> RunConfig:
    values = {"d_model": 16, "experts": ExpertConfig(shared=4, rank=4), "topk": 2, "modalities": ["text", "audio"]}
    values.update(model)
    return RunConfig(model=ModelConfig(**values), train=TrainConfig(batch_size=4))


def profile(registry, repeats: int = 0, like: str = "mosei", **model) -> dict:
    config = tiny_config(**model)
    return profile_configuration(config, like_shapes(like), registry, device=torch.device("cpu"), repeats=repeats)


@pytest.mark.parametrize("hidden", ["lowrank", "dense"])
@pytest.mark.parametrize("routed", [None, 1, 2])
def test_counter_agrees_with_the_formulas_for_experts_and_routers(hidden, routed):
    d, n, rows, length = 24, 4, 5, 7
    width = 4 if hidden == "lowrank" else d
    bank = ConvExpertBank(d, n, width, dropout=0.0).eval()
    x, mask = torch.randn(rows, length, d), torch.ones(rows, length, dtype=torch.bool)
    scores = torch.rand(rows, n)
    if routed is None:
        weights = scores
    else:  # each row keeps its ``routed`` best experts: below N/4 the bank runs only those
        weights = torch.zeros_like(scores).scatter(-1, scores.topk(routed, -1).indices, 1.0 / routed)
    counted = count(lambda: bank(x, mask, weights))[0] / 2
    assert counted == pytest.approx(expert_bank_macs(rows, length, d, n, width, routed), rel=0.01)
    ran = n if routed is None or not runs_routed_only(n, routed, width, length) else routed
    assert counted == pytest.approx(expert_bank_macs(rows, length, d, n, width) * ran / n, rel=0.01)
    router = TopKRouter(d, n, topk=2)
    assert count(lambda: router(torch.randn(rows, d)))[0] / 2 == pytest.approx(
        router_macs(rows, d, n, "topk"), rel=0.01
    )


@pytest.mark.parametrize("expert_type,router", [("lowrank", "topk"), ("dense", "soft")])
def test_model_check_counter_vs_formula_within_one_percent(registry, expert_type, router):
    row = profile(registry, experts=ExpertConfig(shared=4, rank=4, type=expert_type), router=router)
    macs, expert = row["check"]["experts_routers_forward_macs"], row["check"]["parameters_per_expert"]
    assert macs["formula"] > 0 and macs["relative_error"] < 0.01
    assert expert["counted"] == expert["formula"]
    if router == "soft":  # every expert is used: nothing is idle
        assert row["parameters"]["active_per_utterance"] == row["parameters"]["total"]
        assert row["flops"]["forward"]["active"] == row["flops"]["forward"]["executed"]


def test_paper_width_expert_parameters():
    """At d = 768: the low-rank expert has 4·d·r parameters plus biases, the dense one 4·d² plus biases."""
    d, r = 768, 64
    with torch.device("meta"):
        lowrank, dense = ConvExpertBank(d, 1, r), ConvExpertBank(d, 1, d)
    assert sum(p.numel() for p in lowrank.parameters()) == 4 * d * r + r + d == expert_parameters(d, r)
    assert sum(p.numel() for p in dense.parameters()) == 4 * d * d + 2 * d == expert_parameters(d, d)


def test_component_parameters_and_flops_add_up_to_the_totals(registry):
    row = profile(registry, encoder="transformer")
    parameters, forward = row["parameters"], row["flops"]["forward"]
    assert sum(parameters["by_group"].values()) == parameters["total"] == parameters["trainable"]
    assert sum(parameters["encoders"].values()) == parameters["by_group"]["encoders"]
    for group in ("shared_experts", "specific_experts", "routers", "unitse_norms"):
        per_block = sum(block[group] for blocks in parameters["unitse"].values() for block in blocks)
        assert per_block == parameters["by_group"][group] > 0
    assert list(parameters["unitse"]) == ["text", "audio"] and len(parameters["unitse"]["text"]) == 2  # blocks
    assert sum(forward["by_group"].values()) == forward["executed"]["flops"]
    assert forward["by_group"]["other"] == 0 and forward["by_group"]["shared_experts"] > 0


@pytest.mark.parametrize("topk", [1, 2, 4])
def test_active_keeps_k_over_n_of_the_shared_experts_and_executed_is_what_ran(registry, topk):
    row = profile(registry, topk=topk)
    parameters, flops = row["parameters"], row["flops"]
    shared = parameters["by_group"]["shared_experts"]
    assert parameters["active_per_utterance"] == round(parameters["total"] - shared * (1 - topk / 4))
    full = profile(registry, topk=4)["flops"]  # every expert runs and is active
    assert full["forward"]["active"] == full["forward"]["executed"]
    all_shared = full["forward"]["by_group"]["shared_experts"]
    expected_active = full["forward"]["executed"]["flops"] - all_shared * (1 - topk / 4)
    assert flops["forward"]["active"]["flops"] == pytest.approx(expected_active, abs=2)
    for key in ("forward", "forward_batch", "train_step"):
        assert flops[key]["active"]["flops"] <= flops[key]["executed"]["flops"]
    # tiny_config's rank 4, MOSEI's length 50
    if runs_routed_only(4, topk, hidden=4, length=50):  # the bank ran only the chosen experts: nothing idle ran
        assert flops["forward"]["by_group"]["shared_experts"] == pytest.approx(all_shared * topk / 4, abs=2)
        for key in ("forward", "forward_batch", "train_step"):
            assert flops[key]["active"]["flops"] == pytest.approx(flops[key]["executed"]["flops"], abs=2)
    else:  # all four ran, the unchosen weighted by zero
        assert flops["forward"]["executed"] == full["forward"]["executed"]
        assert flops["train_step"]["executed"] == full["train_step"]["executed"]
        if topk < 4:
            assert flops["train_step"]["active"]["flops"] < flops["train_step"]["executed"]["flops"]


class TopKWithoutAttribute(torch.nn.Module):
    """A plugin's top-k router, which need not say k anywhere profile could read it."""

    def __init__(self, d_model: int, n_experts: int, topk: int):
        super().__init__()
        self.inner = TopKRouter(d_model, n_experts, topk)

    def forward(self, pooled):
        return self.inner(pooled)


def test_active_counts_the_experts_a_plugin_router_chose():
    registry = build_registry(*get_plugin_manager())
    registry.add("router", "plugin_topk", TopKWithoutAttribute, plugin="test")
    builtin, plugin = profile(registry, topk=1), profile(registry, topk=1, router="plugin_topk")
    assert plugin["parameters"]["active_per_utterance"] == builtin["parameters"]["active_per_utterance"]
    assert plugin["parameters"]["active_per_utterance"] < plugin["parameters"]["total"]
    for key in ("forward", "forward_batch", "train_step"):
        assert plugin["flops"][key]["active"] == builtin["flops"][key]["active"]


def test_lstm_is_reported_as_not_counted_with_an_estimate(registry):
    notes = profile(registry, encoders={"audio": "lstm"})["not_counted"]
    assert any(note.startswith("encoders.audio.lstm (LSTM)") and "analytic estimate" in note for note in notes)
    assert any("element-wise" in note for note in notes)


def test_timing_reports_medians_and_achieved_flops(registry):
    timing = profile(registry, repeats=1)["timing"]
    for key in ("forward", "forward_batch", "train_step"):
        assert timing[key]["repeats"] == 1 and timing[key]["median_ms"] > 0 and timing[key]["achieved_flops_per_s"] > 0


def test_cli_compare_lowrank_dense_json_rows_and_ratios():
    result = CliRunner().invoke(app, ["profile", *TINY, "--compare", "type=lowrank,dense", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    low, dense = report["rows"]
    assert [low["label"], dense["label"]] == ["type=lowrank", "type=dense"]
    assert low["ratios"]["parameters"] == 1.0 and dense["ratios"]["parameters"] > 1.0
    assert dense["ratios"]["forward_flops"] == pytest.approx(
        dense["flops"]["forward"]["executed"]["flops"] / low["flops"]["forward"]["executed"]["flops"]
    )
    assert low["check"]["parameters_per_expert"]["counted"] == 4 * 16 * 4 + 4 + 16
    assert dense["check"]["parameters_per_expert"]["counted"] == 4 * 16 * 16 + 2 * 16
    for row in report["rows"]:
        assert row["flops"]["forward"]["executed"]["flops"] == 2 * row["flops"]["forward"]["executed"]["macs"]


def test_compare_is_a_cartesian_product():
    grid = compare_grid(parse_compare(["type=lowrank,dense", "shared=2,4"]))
    assert grid == [{"type": t, "shared": s} for t in ("lowrank", "dense") for s in ("2", "4")]
    assert compare_grid([]) == [{}]


@pytest.mark.parametrize(
    "like,dims,tasks",
    [
        ("mosi", {"text": 768, "audio": 5, "vision": 20}, ["sa"]),
        ("mosei", {"text": 768, "audio": 74, "vision": 35}, ["sa", "er"]),
    ],
)
def test_cli_like_shapes(like, dims, tasks):
    arguments = ["profile", *TINY[:-2], "--like", like, "--json"]  # every modality of the data
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["data"]["input_dims"] == dims and set(report["data"]["lengths"].values()) == {50}
    assert report["rows"][0]["model"]["tasks"] == tasks


def test_shapes_from_a_canonical_file(tiny_data):
    shapes = read_shapes(tiny_data)
    assert shapes.input_dims == {"text": 768, "audio": 74, "vision": 35}
    assert set(shapes.lengths.values()) == {12} and shapes.emotion_labels


@pytest.mark.parametrize(
    "arguments,message",
    [
        (["--compare", "tpye=lowrank,dense"], "--compare: unknown key 'tpye'"),
        (["--compare", "type"], "--compare: expected KEY=V1,V2"),
        (["--compare", "shared=1,2", "--topk", "2"], "topk (2) cannot exceed"),
        (["--like", "iemocap"], "--like: unknown value 'iemocap'"),
        (["--batch-size", "10000000000"], ", --batch-size 10000000000: the model and its inputs do not fit in"),
        (["--d-model", "1000000000000000"], "--d-model 1000000000000000, --experts shared=4,rank=32,type=lowrank, "),
        (["--experts", "rank=1000000000000000"], "rank=1000000000000000,type=lowrank, --batch-size 64: the model"),
    ],
)
def test_cli_bad_options_are_one_line_errors(arguments, message):
    result = CliRunner().invoke(app, ["profile", "--repeats", "0", *arguments])
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and message in result.stderr


def test_a_config_written_on_a_gpu_machine_profiles_on_the_device_profile_chooses(tmp_path):
    """``profile`` has its own ``--device``: a run config's ``train.device: cuda`` is not checked here."""
    config = tmp_path / "config.yaml"
    config.write_text("train: {device: cuda}\n")
    result = CliRunner().invoke(app, ["profile", *TINY, "--config", str(config), "--device", "cpu"])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("name", ["out.xyz", "data.h5"])
def test_cli_plot_format_is_checked_before_profiling(tmp_path, monkeypatch, name):
    def profiled(*args, **kwargs):
        raise AssertionError("profiled before checking --plot")

    monkeypatch.setattr("mmolre_cli.profiling.profile_configuration", profiled)
    plot = tmp_path / name
    result = CliRunner().invoke(app, ["profile", *TINY, "--plot", str(plot)])
    assert result.exit_code == 2, result.output
    suffix = name.rpartition(".")[2]
    assert result.stderr.startswith(f"Error: --plot {plot}: unsupported format '{suffix}' (supported: ")
    assert result.stderr.count("\n") == 1 and "png, " in result.stderr and not list(tmp_path.iterdir())


def test_cli_plot_into_a_directory_is_refused_before_profiling(tmp_path, monkeypatch):
    monkeypatch.setattr("mmolre_cli.profiling.profile_configuration", lambda *a, **k: pytest.fail("profiled"))
    result = CliRunner().invoke(app, ["profile", *TINY, "--plot", str(tmp_path)])
    assert result.exit_code == 2 and result.stderr == f"Error: --plot {tmp_path}: is a directory\n"


def test_plot_of_parameters_and_flops_against_experts(registry, tmp_path):
    points = expert_scaling(tiny_config().model, like_shapes("mosei"), registry, counts=(1, 2))
    assert [(p["type"], p["shared"], p["topk"]) for p in points] == [
        ("lowrank", 1, 1), ("lowrank", 2, 2), ("dense", 1, 1), ("dense", 2, 2)
    ]  # fmt: skip
    assert points[1]["parameters"] > points[0]["parameters"] and points[2]["parameters"] > points[0]["parameters"]
    save_plot(points, tmp_path / "scaling.png", "test")
    assert (tmp_path / "scaling.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_tables():
    result = CliRunner().invoke(app, ["profile", *TINY])
    assert result.exit_code == 0, result.output
    assert "active per utterance" in result.stdout and "not counted" in result.stdout


def test_profile_runs_the_model_once_per_count(registry, monkeypatch):
    """Counted forward passes at batch 1 and at the batch size, and one counted training step: three in all
    (the shares of the experts the routes chose come from the first)."""
    from mmolre_cli.profiling import report

    built, calls = report.real_model, []

    def counted(*args, **kwargs):
        model = built(*args, **kwargs)
        model.register_forward_pre_hook(lambda module, inputs: calls.append(module.training))
        return model

    monkeypatch.setattr(report, "real_model", counted)
    result = profile(registry)
    assert calls == [False, False, True]
    assert 0 < result["parameters"]["active_per_utterance"] < result["parameters"]["total"]  # top-k shares used
