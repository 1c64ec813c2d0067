"""The plugin system: built-ins through the hooks, third-party plugins, failures, the allow-list,
contracts, a plugins directory and the trace."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import random_inputs
from torch import nn
from typer.testing import CliRunner

from mmolre_cli.cli.app import app
from mmolre_cli.config import ExpertConfig, ModelConfig
from mmolre_cli.model import MMoLRE
from mmolre_cli.model.experts import ConvExpertBank
from mmolre_cli.model.masking import masked_mean
from mmolre_cli.model.routers import Route
from mmolre_cli.plugins import build_registry, get_plugin_manager, hookimpl
from mmolre_cli.plugins.contracts import CONTRACTS, ContractError, PluginError, check_factory, smoke_check
from mmolre_cli.plugins.registry import Component, Registry

BUILTINS = {
    "encoder": {"linear", "transformer", "lstm"},
    "expert": {"lowrank", "dense"},
    "router": {"topk", "noisy_topk", "soft", "uniform"},
    "fusion": {"task_adaptive", "concat", "gated"},
}


def test_builtins_are_registered_through_the_hooks(registry):
    for kind, names in BUILTINS.items():
        assert set(registry.names(kind)) >= names
        assert all(registry.get(kind, name).plugin == "builtin" for name in names)


def test_plugins_json_lists_every_builtin():
    result = CliRunner().invoke(app, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)["components"]
    for kind, names in BUILTINS.items():
        assert {entry["name"] for entry in listed[kind]} >= names


def test_a_third_party_plugin_registers_under_its_own_name():
    class Plugin:
        @staticmethod
        @hookimpl
        def register_experts(register):
            register("tiny", lambda d_model, n_experts, rank, dropout: None, "a test expert")

    pm, failures = get_plugin_manager()
    pm.register(Plugin, name="tiny-plugin")
    registry = build_registry(pm, failures)
    assert registry.get("expert", "tiny").plugin == "tiny-plugin"


def test_a_hook_that_raises_is_reported_by_plugin_name():
    class Broken:
        @staticmethod
        @hookimpl
        def register_routers(register):
            raise RuntimeError("boom")

    pm, failures = get_plugin_manager()
    pm.register(Broken, name="broken-plugin")
    registry = build_registry(pm, failures)
    assert [f.plugin for f in registry.failures] == ["broken-plugin"]
    assert "boom" in registry.failures[0].message()
    assert "topk" in registry.names("router")


def test_duplicate_names_are_refused():
    registry = Registry()
    registry.add("expert", "x", lambda **_: None, plugin="a")
    with pytest.raises(ValueError, match="already registered by plugin 'a'"):
        registry.add("expert", "x", lambda **_: None, plugin="b")


def install_entry_points(site: Path, distribution: str, entry_points: dict[str, str], monkeypatch) -> None:
    """A distribution in ``site``, put on sys.path, whose entry points in group ``mmolre`` are ``entry_points``
    (plugin name → module)."""
    dist = site / f"{distribution.replace('-', '_')}-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[mmolre]\n" + "".join(f"{n} = {m}\n" for n, m in entry_points.items()))
    monkeypatch.syspath_prepend(str(site))


@pytest.fixture
def installed_plugins(tmp_path, monkeypatch):
    """Two entry-point plugins on sys.path: one that works and one that raises on import."""
    (tmp_path / "good_plugin.py").write_text(
        textwrap.dedent(
            """
            from mmolre_cli import hookimpl

            @hookimpl
            def register_fusions(register):
                register("first_modality", lambda d_model, modalities, tasks, dropout: None, "test")
            """
        )
    )
    (tmp_path / "bad_plugin.py").write_text("raise ImportError('missing dependency xyz')\n")
    install_entry_points(tmp_path, "mmolre-test-plugins", {"good": "good_plugin", "bad": "bad_plugin"}, monkeypatch)
    yield
    for name in ("good_plugin", "bad_plugin"):
        sys.modules.pop(name, None)


def test_entry_point_plugins_load_and_a_broken_one_is_reported(installed_plugins):
    registry = build_registry(*get_plugin_manager())
    assert registry.get("fusion", "first_modality").plugin == "good"
    assert [(f.plugin, f.stage) for f in registry.failures] == [("bad", "import")]
    assert "missing dependency xyz" in registry.failures[0].error


def test_the_registry_knows_each_plugin_components_package_or_file(installed_plugins, plugins_dir):
    registry = build_registry(*get_plugin_manager(plugins_dir))
    used = [("fusion", "first_modality"), ("expert", "narrow"), ("expert", "lowrank"), ("expert", "narrow")]
    assert registry.provenance(used) == [
        {"kind": "fusion", "name": "first_modality", "plugin": "good", "origin": "package mmolre-test-plugins 1.0"},
        {"kind": "expert", "name": "narrow", "plugin": "narrow", "origin": f"file {plugins_dir / 'narrow.py'}"},
    ]  # built-ins are mmolre's own; each component once


def test_allow_list_limits_third_party_plugins(installed_plugins, monkeypatch):
    monkeypatch.setenv("MMOLRE_LOAD_PLUGINS", "good")
    registry = build_registry(*get_plugin_manager())
    assert "first_modality" in registry.names("fusion") and registry.failures == []
    monkeypatch.setenv("MMOLRE_LOAD_PLUGINS", "")
    registry = build_registry(*get_plugin_manager())
    assert "first_modality" not in registry.names("fusion") and "task_adaptive" in registry.names("fusion")


# One test per hook: tests/test_docs.py fails when a hook has no ``test_hook_<name>`` here.


def registry_with(plugin: object) -> Registry:
    """A fresh registry with ``plugin`` registered as ``test-plugin``; nothing may fail."""
    pm, failures = get_plugin_manager()
    pm.register(plugin, name="test-plugin")
    registry = build_registry(pm, failures)
    assert registry.failures == []
    return registry


def model_with(registry: Registry, signature, **model: object) -> MMoLRE:
    return MMoLRE(ModelConfig(d_model=16, **model), signature, registry)


class ProjectionEncoder(nn.Module):
    """A third-party encoder: a bare projection, zero at padding."""

    def __init__(self, input_dim: int, d_model: int, dropout: float):
        super().__init__()
        self.project = nn.Linear(input_dim, d_model)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.project(x) * mask[..., None]


class FirstExpertRouter(nn.Module):
    """A third-party router that always sends everything to expert 0."""

    def __init__(self, d_model: int, n_experts: int, topk: int):
        super().__init__()
        self.n_experts = n_experts

    def forward(self, pooled: torch.Tensor) -> Route:
        weights = torch.zeros(pooled.shape[0], self.n_experts)
        weights[:, 0] = 1.0
        return Route(weights, weights, pooled.new_tensor(1.0))


class FirstModalityFusion(nn.Module):
    """A third-party fusion: the masked mean of the first modality."""

    def __init__(self, d_model: int, modalities: list[str], tasks: list[str], dropout: float):
        super().__init__()
        self.first = modalities[0]

    def forward(self, features, masks):
        return masked_mean(features[self.first], masks[self.first])


def test_hook_register_encoders(signature):
    class Plugin:
        @staticmethod
        @hookimpl
        def register_encoders(register):
            register("projection", ProjectionEncoder, "a bare projection")

    registry = registry_with(Plugin)
    smoke_check(registry.get("encoder", "projection"))
    model = model_with(registry, signature, encoder="projection")
    assert all(isinstance(encoder, ProjectionEncoder) for encoder in model.encoders.values())
    assert model(*random_inputs(signature)).predictions["sa"].shape == (6,)


def test_hook_register_experts(signature):
    def narrow(d_model: int, n_experts: int, rank: int, dropout: float) -> ConvExpertBank:
        return ConvExpertBank(d_model, n_experts, hidden=2, dropout=dropout)

    class Plugin:
        @staticmethod
        @hookimpl
        def register_experts(register):
            register("narrow", narrow, "rank-2 experts")

    registry = registry_with(Plugin)
    smoke_check(registry.get("expert", "narrow"))
    model = model_with(registry, signature, experts=ExpertConfig(type="narrow"))
    banks = [m for m in model.modules() if isinstance(m, ConvExpertBank)]
    assert banks and all(bank.hidden == 2 for bank in banks)
    assert model(*random_inputs(signature)).predictions["er"].shape == (6, 6)


def test_hook_register_routers(signature):
    class Plugin:
        @staticmethod
        @hookimpl
        def register_routers(register):
            register("first", FirstExpertRouter, "always expert 0")

    registry = registry_with(Plugin)
    smoke_check(registry.get("router", "first"))
    routes = model_with(registry, signature, router="first")(*random_inputs(signature)).routes
    assert routes and all(route.weights[:, 0].eq(1.0).all() for route in routes.values())


def test_hook_register_fusions(signature):
    class Plugin:
        @staticmethod
        @hookimpl
        def register_fusions(register):
            register("first_modality", FirstModalityFusion, "first modality only")

    registry = registry_with(Plugin)
    smoke_check(registry.get("fusion", "first_modality"))
    model = model_with(registry, signature, fusion="first_modality")
    assert isinstance(model.fusion, FirstModalityFusion)
    assert model(*random_inputs(signature)).predictions["sa"].shape == (6,)


class CharacterCodes:
    """A third-party text encoder: each character's code point, one frame per character."""

    def __init__(self, model: str | None):
        self.scale = float(model or 1.0)

    def encode(self, texts: list[str], seq_len: int):
        lengths = np.array([min(len(text), seq_len) for text in texts], dtype=np.int32)
        features = np.zeros((len(texts), seq_len, 1), dtype=np.float32)
        for row, text in enumerate(texts):
            features[row, : lengths[row], 0] = [ord(c) * self.scale for c in text[:seq_len]]
        return features, lengths


def test_hook_register_text_encoders():
    class Plugin:
        @staticmethod
        @hookimpl
        def register_text_encoders(register):
            register("codes", CharacterCodes, "character codes")

    component = registry_with(Plugin).get("text_encoder", "codes")
    assert component.plugin == "test-plugin"
    features, lengths = component.factory("0.5").encode(["hi", "hello"], 4)
    assert features.shape == (2, 4, 1) and lengths.tolist() == [2, 4] and features[0, 0, 0] == ord("h") * 0.5


class Loudness:
    """An audio encoder: one frame per 100 samples, holding their mean absolute value."""

    sampling_rate = 8000

    def __init__(self, model):
        self.model = model

    def encode(self, wave: np.ndarray) -> np.ndarray:
        return np.abs(wave[: len(wave) // 100 * 100]).reshape(-1, 100).mean(1, keepdims=True)


def test_hook_register_audio_encoders():
    class Plugin:
        @staticmethod
        @hookimpl
        def register_audio_encoders(register):
            register("loudness", Loudness, "mean absolute value per 100 samples")

    component = registry_with(Plugin).get("audio_encoder", "loudness")
    assert component.plugin == "test-plugin"
    encoder = component.factory("unused")
    frames = encoder.encode(np.r_[np.full(100, -0.5), np.full(150, 0.25)].astype(np.float32))
    assert encoder.sampling_rate == 8000 and frames.tolist() == [[0.5], [0.25]]


# Contracts: checked when a plugin registers, and by a smoke run on demand.


def test_a_factory_off_its_contract_is_refused_naming_the_plugin():
    class Plugin:
        @staticmethod
        @hookimpl
        def register_experts(register):
            register("no_rank", lambda d_model, n_experts: None, "forgets rank and dropout")
            register("needs_more", lambda d_model, n_experts, rank, dropout, width: None)
            register("fine", lambda d_model, n_experts, rank, dropout, width=2: None)

    pm, failures = get_plugin_manager()
    pm.register(Plugin, name="sloppy")
    registry = build_registry(pm, failures)
    messages = [f.message() for f in registry.failures]
    assert len(messages) == 2 and all(m.startswith("plugin 'sloppy' failed at register_experts") for m in messages)
    assert "does not accept rank, dropout" in messages[0] and "requires width" in messages[1]
    assert registry.get("expert", "fine").plugin == "sloppy"


def test_registry_add_checks_every_kind_with_a_contract():
    registry = Registry()
    with pytest.raises(ContractError, match=r"plugin 'p': router 'r'.*does not accept n_experts, topk"):
        registry.add("router", "r", lambda d_model: None, plugin="p")
    registry.add("router", "keywords", lambda **options: None, plugin="p")
    registry.add("fusion", "cls", FirstModalityFusion, plugin="p")
    check_factory("text_encoder", "hf", lambda model_path: None, plugin="p")  # no contract: accepted as is


def test_every_kind_has_a_contract_describing_the_models_call():
    assert {kind: contract.describe() for kind, contract in CONTRACTS.items()} == {
        "encoder": "factory(*, input_dim, d_model, dropout)",
        "expert": "factory(*, d_model, n_experts, rank, dropout)",
        "router": "factory(*, d_model, n_experts, topk)",
        "fusion": "factory(*, d_model, modalities, tasks, dropout)",
    }


LEAKY_EXPERT = """
import torch
from torch import nn

from mmolre_cli import hookimpl


class LeakyBank(nn.Module):
    \"\"\"Forgets to zero padding before its kernel-3 convolution.\"\"\"

    def __init__(self, d_model, n_experts, rank, dropout):
        super().__init__()
        self.n_experts = n_experts
        self.conv = nn.Conv1d(d_model, n_experts * d_model, kernel_size=3, padding=1)

    def forward(self, x, mask, weights):
        batch, length, width = x.shape
        out = self.conv(x.transpose(1, 2)).view(batch, self.n_experts, width, length)
        return torch.einsum("bndt,bn->btd", out, weights) * mask[..., None]


@hookimpl
def register_experts(register):
    register("leaky", LeakyBank)
"""


@pytest.fixture
def leaky_dir(tmp_path):
    """A plugins directory holding one expert that lets padding leak."""
    (tmp_path / "leaky.py").write_text(LEAKY_EXPERT)
    return tmp_path


def test_smoke_check_names_the_plugin_and_the_broken_promise(registry, leaky_dir):
    leaky = build_registry(*get_plugin_manager(leaky_dir)).get("expert", "leaky")
    with pytest.raises(ContractError, match="plugin 'leaky': expert 'leaky': padded frames leak"):
        smoke_check(leaky)
    not_a_module = Component("router", "plain", lambda d_model, n_experts, topk: object(), "p")
    with pytest.raises(ContractError, match="not a torch nn.Module"):
        smoke_check(not_a_module)
    for component in registry:
        smoke_check(component)


def test_smoke_check_sees_a_leak_in_a_bank_that_starts_at_zero():
    class LeaksFromZero(ConvExpertBank):
        """The built-in bank, but every frame reaches the kernel-3 window: a leak its zero start hides."""

        def forward(self, x, mask, weights):
            return super().forward(x, torch.ones_like(mask), weights) * mask[..., None]

    leaky = Component(
        "expert",
        "leaks_from_zero",
        lambda d_model, n_experts, rank, dropout: LeaksFromZero(d_model, n_experts, rank, dropout),
        "p",
    )
    with pytest.raises(ContractError, match="padded frames leak"):
        smoke_check(leaky)


# One-off plugins: a directory of *.py files, and a trace of what each hook registered.

NARROW_EXPERT = """
from mmolre_cli import hookimpl


def narrow_experts(d_model, n_experts, rank, dropout):
    from mmolre_cli.model.experts import ConvExpertBank

    return ConvExpertBank(d_model, n_experts, hidden=max(1, rank // 2), dropout=dropout)


@hookimpl
def register_experts(register):
    register("narrow", narrow_experts, "half-rank experts")
"""


@pytest.fixture
def plugins_dir(tmp_path):
    """One good plugin file, one that raises on import, one with a misspelt hook."""
    directory = tmp_path / "my_plugins"
    directory.mkdir()
    (directory / "narrow.py").write_text(NARROW_EXPERT)
    (directory / "broken.py").write_text("raise RuntimeError('half-written plugin')\n")
    (directory / "typo.py").write_text(
        "from mmolre_cli import hookimpl\n\n@hookimpl\ndef register_expert(register): ...\n"
    )
    return directory


def test_plugins_dir_loads_every_file_and_reports_failures_by_name(plugins_dir):
    registry = build_registry(*get_plugin_manager(plugins_dir))
    assert registry.get("expert", "narrow").plugin == "narrow"
    assert sorted((f.plugin, f.stage) for f in registry.failures) == [("broken", "import"), ("typo", "hooks")]
    assert "half-written plugin" in registry.failures[0].error
    assert "register_expert is not an mmolre hook" in registry.failures[1].error


def test_plugins_dir_from_the_environment(plugins_dir, monkeypatch):
    monkeypatch.setenv("MMOLRE_PLUGINS_DIR", str(plugins_dir))
    assert "narrow" in build_registry(*get_plugin_manager()).names("expert")


def test_plugins_dir_option_and_trace(plugins_dir, monkeypatch):
    monkeypatch.setenv("MMOLRE_TRACE_PLUGINS", "1")
    result = CliRunner().invoke(app, ["--plugins-dir", str(plugins_dir), "plugins", "--json"])
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)
    assert {"name": "narrow", "plugin": "narrow", "description": "half-rank experts"} in listed["components"]["expert"]
    assert {f["plugin"] for f in listed["failures"]} == {"broken", "typo"}
    assert f"loaded 'narrow' from {plugins_dir / 'narrow.py'}" in result.stderr
    assert "call register_experts(register): builtin" in result.stderr
    assert "  narrow → registered expert narrow" in result.stderr
    assert "  builtin → registered expert lowrank, expert dense" in result.stderr
    assert "plugin 'broken' failed at import" in result.stderr


def test_plugins_check_fails_on_a_broken_component(leaky_dir):
    result = CliRunner().invoke(app, ["--plugins-dir", str(leaky_dir), "plugins", "--check", "--json"])
    assert result.exit_code == 1, result.output
    checks = {c["name"]: c["check"] for c in json.loads(result.stdout)["components"]["expert"]}
    assert checks["lowrank"] == "ok" and "plugin 'leaky': expert 'leaky': padded frames leak" in checks["leaky"]


def forget_registries() -> None:
    """Clear the CLI's cached registries, so the next command loads the plugins again."""
    from mmolre_cli.cli import common
    from mmolre_cli.plugins import manager

    common._registry.cache_clear()
    manager._cached_registry.cache_clear()


@pytest.fixture
def failing_plugins(tmp_path, monkeypatch, tiny_data):
    """Three entry-point plugins: one raises on import, one inside its hook, one inside its factory; the
    CLI's cached registries are cleared around the test."""
    (tmp_path / "fails_on_import.py").write_text("raise ImportError('needs xyz,\\nwhich is not installed')\n")
    (tmp_path / "fails_in_hook.py").write_text(
        "from mmolre_cli import hookimpl\n\n@hookimpl\ndef register_routers(register):\n    raise KeyError('oops')\n"
    )
    (tmp_path / "fails_in_factory.py").write_text(
        textwrap.dedent(
            """
            from mmolre_cli import hookimpl

            def boom(d_model, n_experts, rank, dropout):
                raise RuntimeError("out of cheese")

            @hookimpl
            def register_experts(register):
                register("boom", boom, "always fails")
            """
        )
    )
    names = ("fails_on_import", "fails_in_hook", "fails_in_factory")
    install_entry_points(tmp_path, "mmolre-failing-plugins", {name: name for name in names}, monkeypatch)
    forget_registries()
    yield ["--data", str(tiny_data), "--d-model", "16", "--epochs", "1", "--no-track"]
    forget_registries()
    for name in names:
        sys.modules.pop(name, None)


def test_failing_plugins_are_named_in_one_line_each_and_the_cli_keeps_working(failing_plugins, tmp_path):
    runner = CliRunner()
    listed = runner.invoke(app, ["plugins"])
    assert listed.exit_code == 0, listed.output
    warnings = [line for line in listed.stderr.splitlines() if line.startswith("Warning:")]
    assert warnings == [
        "Warning: plugin 'fails_on_import' failed at import: ImportError: needs xyz, which is not installed",
        "Warning: plugin 'fails_in_hook' failed at register_routers: KeyError: 'oops'",
    ]
    built = runner.invoke(app, ["train", *failing_plugins, "--experts", "type=boom", "--out", str(tmp_path / "a")])
    assert built.exit_code == 1 and "Traceback" not in built.output
    assert built.stderr.splitlines()[-1] == (
        "Error: plugin 'fails_in_factory': expert 'boom': factory raised RuntimeError: out of cheese"
    )
    trained = runner.invoke(app, ["train", *failing_plugins, "--out", str(tmp_path / "b")])
    assert trained.exit_code == 0, trained.output
    assert (tmp_path / "b" / "metrics.json").is_file()


def test_the_allow_list_excludes_failing_plugins(failing_plugins, monkeypatch, tmp_path):
    monkeypatch.setenv("MMOLRE_LOAD_PLUGINS", "fails_in_hook")
    runner = CliRunner()
    listed = runner.invoke(app, ["plugins"])
    assert listed.exit_code == 0 and "fails_on_import" not in listed.stderr and "fails_in_hook" in listed.stderr
    monkeypatch.setenv("MMOLRE_LOAD_PLUGINS", "")
    forget_registries()
    listed = runner.invoke(app, ["plugins"])
    assert listed.exit_code == 0 and "Warning" not in listed.stderr and "boom" not in listed.stdout
    built = runner.invoke(app, ["train", *failing_plugins, "--experts", "type=boom", "--out", str(tmp_path / "a")])
    assert built.exit_code == 2 and "--experts type: unknown value 'boom'" in built.stderr


def test_an_empty_plugins_dir_is_refused_not_taken_for_the_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "helper.py").write_text("open('ran', 'w').close()\n")
    refused = CliRunner().invoke(app, ["--plugins-dir", "", "plugins", "--json"])
    assert refused.exit_code == 2 and refused.stderr.splitlines() == ["Error: --plugins-dir: empty value"]
    monkeypatch.setenv("MMOLRE_PLUGINS_DIR", "")
    assert CliRunner().invoke(app, ["plugins", "--json"]).exit_code == 0
    assert not (tmp_path / "ran").exists()


def test_a_bad_plugins_dir_from_the_environment_names_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("MMOLRE_PLUGINS_DIR", str(tmp_path / "none"))
    missing = CliRunner().invoke(app, ["plugins"])
    assert missing.exit_code == 2
    assert missing.stderr.splitlines() == [f"Error: MMOLRE_PLUGINS_DIR: dir '{tmp_path / 'none'}' does not exist"]
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("MMOLRE_PLUGINS_DIR", str(tmp_path / "file"))
    a_file = CliRunner().invoke(app, ["plugins"])
    assert a_file.exit_code == 2 and a_file.stderr.splitlines() == [
        f"Error: MMOLRE_PLUGINS_DIR: dir '{tmp_path / 'file'}' is a file"
    ]


def test_system_exit_in_plugin_code_is_the_plugins_failure_not_mmolres_exit(plugins_dir):
    (plugins_dir / "exits.py").write_text("import sys\n\nsys.exit(0)\n")
    forget_registries()
    listed = CliRunner().invoke(app, ["--plugins-dir", str(plugins_dir), "plugins", "--json"])
    forget_registries()
    assert listed.exit_code == 0 and "narrow" in listed.stdout
    assert f"Warning: plugin 'exits' failed at import: {plugins_dir / 'exits.py'}: SystemExit: 0" in listed.stderr

    def exits(d_model, n_experts, topk):
        sys.exit(3)

    class Plugin:
        @staticmethod
        @hookimpl
        def register_routers(register):
            register("exits", exits)

        @staticmethod
        @hookimpl
        def register_fusions(register):
            sys.exit("usage: plugin.py [-h]")

    pm, failures = get_plugin_manager()
    pm.register(Plugin, name="exiting")
    registry = build_registry(pm, failures)
    assert [f.message() for f in registry.failures] == [
        "plugin 'exiting' failed at register_fusions: SystemExit: usage: plugin.py [-h]"
    ]
    with pytest.raises(PluginError, match=r"^plugin 'exiting': router 'exits': factory raised SystemExit: 3$"):
        registry.get("router", "exits").factory(d_model=8, n_experts=2, topk=1)
    with pytest.raises(ContractError, match=r"^plugin 'exiting': router 'exits': factory raised SystemExit: 3$"):
        smoke_check(registry.get("router", "exits"))


def test_keyboard_interrupt_in_plugin_code_still_stops_mmolre(tmp_path):
    (tmp_path / "interrupted.py").write_text("raise KeyboardInterrupt\n")
    with pytest.raises(KeyboardInterrupt):
        get_plugin_manager(tmp_path)


NONE_ROUTER = """
from mmolre_cli import hookimpl


def make(d_model, n_experts, topk):
    return None


@hookimpl
def register_routers(register):
    register("myrouter", make, "builds nothing")
"""


def test_a_factory_that_builds_no_module_fails_the_build_in_one_line(tmp_path, tiny_data):
    directory = tmp_path / "pd"
    directory.mkdir()
    (directory / "nonerouter.py").write_text(NONE_ROUTER)
    out = tmp_path / "o1"
    options = ["--data", str(tiny_data), "--d-model", "16", "--epochs", "1", "--no-track", "--out", str(out)]
    forget_registries()
    built = CliRunner().invoke(app, ["--plugins-dir", str(directory), "train", *options, "--router", "myrouter"])
    forget_registries()
    assert built.exit_code == 1 and "Traceback" not in built.output
    assert built.stderr.splitlines()[-1] == (
        "Error: plugin 'nonerouter': router 'myrouter': the factory built a NoneType, not a torch nn.Module"
    )
    assert not out.exists()


def test_an_allow_list_name_that_matches_no_installed_plugin_is_reported(installed_plugins, monkeypatch):
    monkeypatch.setenv("MMOLRE_LOAD_PLUGINS", "goood,builtin")
    forget_registries()
    listed = CliRunner().invoke(app, ["plugins"])
    forget_registries()
    assert listed.exit_code == 0
    warnings = [line for line in listed.stderr.splitlines() if line.startswith("Warning:")]
    assert len(warnings) == 1 and warnings[0].startswith(
        "Warning: plugin 'goood' failed at MMOLRE_LOAD_PLUGINS: no installed plugin has this name (installed: "
    )
    assert warnings[0].endswith("; did you mean 'good'?")


# Plugin code at run time: checked before training, named when it fails during training

LATE_FAILURES = """
import torch
from torch import nn

from mmolre_cli import hookimpl


class Float64Bank(nn.Module):
    def __init__(self, d_model, n_experts, rank, dropout):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x, mask, weights):
        return (x * self.scale * mask[..., None]).double()


class ShortOnlyBank(Float64Bank):
    def forward(self, x, mask, weights):
        if x.shape[0] > 3:  # the contract's smoke check runs on 3 rows (and on the run's own lengths)
            raise RuntimeError("cannot handle more than 3 rows")
        return x * self.scale * mask[..., None] * weights.sum(-1)[:, None, None]


@hookimpl
def register_experts(register):
    register("float64", Float64Bank)
    register("shortonly", ShortOnlyBank)
"""


def test_a_plugin_component_is_checked_before_training_and_named_when_it_fails_during_it(tmp_path, tiny_data):
    directory = tmp_path / "pd"
    directory.mkdir()
    (directory / "late.py").write_text(LATE_FAILURES)
    common = ["--plugins-dir", str(directory), "train", "--data", str(tiny_data), "--d-model", "16", "--no-track"]
    forget_registries()
    runner = CliRunner()
    refused = runner.invoke(app, [*common, "--epochs", "1", "--experts", "type=float64", "--out", str(tmp_path / "a")])
    failed = runner.invoke(app, [*common, "--epochs", "1", "--experts", "type=shortonly", "--out", str(tmp_path / "b")])
    forget_registries()
    assert refused.exit_code == 1 and "Traceback" not in refused.output and not (tmp_path / "a").exists()
    assert refused.stderr.splitlines()[-1] == (
        "Error: plugin 'late': expert 'float64': output is torch.float64 on cpu, "
        "expected the input's torch.float32 on cpu"
    )
    assert failed.exit_code == 1 and "Traceback" not in failed.output
    line = LATE_FAILURES.splitlines().index('            raise RuntimeError("cannot handle more than 3 rows")')
    assert failed.stderr.splitlines()[-1] == (
        f"Error: plugin 'late' ({directory / 'late.py'}:{line + 1}): RuntimeError: cannot handle more than 3 rows"
    )


def test_a_plugin_that_registers_nothing_or_returns_its_components_is_reported(tmp_path, monkeypatch):
    installed, directory = tmp_path / "site", tmp_path / "pd"
    installed.mkdir()
    directory.mkdir()
    (installed / "hookless.py").write_text("VERSION = 1\n")
    install_entry_points(installed, "mmolre-odd-plugins", {"builtin": "hookless", "hookless": "hookless"}, monkeypatch)
    hook = "from mmolre_cli import hookimpl\n\n@hookimpl\ndef register_routers(register):\n"
    (directory / "returning.py").write_text(hook + "    return [('r', None)]\n")
    # A hook that registers and also returns what register returned, and a module the others import: fine.
    (directory / "registering.py").write_text(
        hook + "    return [register('mine', lambda d_model, n_experts, topk: None)]\n"
    )
    (directory / "_shared.py").write_text("CONSTANT = 1\n")
    (directory / "unmarked.py").write_text("def register_experts(register):\n    register('x', None)\n")
    (directory / "starry.py").write_text("from mmolre_cli.plugins.hookspecs import *  # the specs are not hooks\n")
    pm, failures = get_plugin_manager(directory)
    sys.modules.pop("hookless", None)
    messages = [failure.message() for failure in build_registry(pm, failures).failures]
    loaded = "a plugin named 'builtin' is already loaded"
    assert messages[0] == f"plugin 'builtin' failed at import: entry point hookless: {loaded}"
    assert messages[1].startswith("plugin 'hookless' failed at hooks: implements no mmolre hook (mark each with")
    assert messages[2] == "plugin 'unmarked' failed at hooks: register_experts not marked with @hookimpl"
    returned = "returned a list; call register(name, factory) for each component"
    assert messages[3:] == [f"plugin 'returning' failed at register_routers: {returned}"]


def test_what_a_plugin_prints_while_loading_stays_out_of_json_output(tmp_path):
    (tmp_path / "chatty.py").write_text("print('chatty plugin loaded')\n")
    forget_registries()
    listed = CliRunner().invoke(app, ["--plugins-dir", str(tmp_path), "plugins", "--json"])
    forget_registries()
    assert listed.exit_code == 0 and "chatty plugin loaded" in listed.stderr
    assert "expert" in json.loads(listed.stdout)["components"]


class OnlyTop1Router(nn.Module):
    """A switch router: top-1 only, its probabilities and balance loss kept in float64."""

    def __init__(self, d_model: int, n_experts: int, topk: int):
        super().__init__()
        if topk != 1:
            raise ValueError(f"a switch router routes to one expert: use --topk 1, got {topk}")
        self.gate = nn.Linear(d_model, n_experts)

    def forward(self, pooled):
        probs = self.gate(pooled).double().softmax(-1)
        top = probs.max(-1, keepdim=True)
        weights = torch.zeros_like(probs).scatter(-1, top.indices, top.values).to(pooled.dtype)
        return Route(weights, probs, probs.mean(0).square().sum() * probs.shape[-1])


def sixteen_head_encoder(input_dim: int, d_model: int, dropout: float) -> nn.Module:
    if d_model % 16:
        raise ValueError(f"16 heads need d_model divisible by 16, got {d_model}")
    return ProjectionEncoder(input_dim, d_model, dropout)


def test_the_check_before_a_run_builds_plugin_components_at_the_runs_sizes(tiny_data):
    from mmolre_cli.config import build_config, check_components

    registry = build_registry(*get_plugin_manager())
    registry.add("router", "switch", OnlyTop1Router, plugin="switches")
    registry.add("encoder", "heads16", sixteen_head_encoder, plugin="attention")
    model = {"d_model": 16, "experts": {"shared": 2}, "topk": 1, "router": "switch", "encoder": "heads16"}
    check_components(build_config({"data": str(tiny_data), "model": model}), registry)
    with pytest.raises(PluginError, match="router 'switch': factory raised ValueError: .* use --topk 1, got 2"):
        check_components(build_config({"model": {**model, "topk": 2}}), registry)
    with pytest.raises(PluginError, match="encoder 'heads16': factory raised ValueError: .* got 24"):
        check_components(build_config({"model": {**model, "d_model": 24}}), registry)


def test_an_error_in_plugin_code_in_a_worker_process_is_blamed_on_the_plugin(tmp_path, monkeypatch):
    import concurrent.futures
    import importlib
    import multiprocessing

    (tmp_path / "workerplugin.py").write_text("def run():\n    raise RuntimeError('in a worker')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("workerplugin")
    registry = Registry(sources={"workerplugin": str(tmp_path / "workerplugin.py")})
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as pool:
        with pytest.raises(RuntimeError, match="in a worker") as error:
            pool.submit(module.run).result()
    sys.modules.pop("workerplugin", None)
    assert registry.blame(error.value) == f"plugin 'workerplugin' ({tmp_path / 'workerplugin.py'}:2)"


def test_a_plugin_bank_equal_to_a_builtin_one_passes_the_check_at_a_papers_width():
    from mmolre_cli.config import SmokeSizes
    from mmolre_cli.plugins.builtin import dense_experts

    registry = build_registry(*get_plugin_manager())
    registry.add("expert", "p_dense", dense_experts, plugin="copies")
    # Outputs reach the hundreds with redrawn parameters: the tolerances follow their scale.
    registry.check_contracts([registry.get("expert", "p_dense")], SmokeSizes(d_model=512, n_experts=8))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_missing_device_is_named_before_plugin_components_are_checked_on_it(tmp_path, tiny_data):
    (tmp_path / "late.py").write_text(LATE_FAILURES)
    forget_registries()
    result = CliRunner().invoke(
        app,
        ["--plugins-dir", str(tmp_path), "train", "--data", str(tiny_data), "--experts", "type=shortonly",
         "--device", "cuda", "--no-track", "--out", str(tmp_path / "run")],
    )  # fmt: skip
    forget_registries()
    assert result.exit_code == 2 and result.stderr == "Error: --device cuda: CUDA is not available on this machine\n"


class SlightlyLeakyBank(nn.Module):
    """A linear bank that adds a thousandth of the mean over every frame, padding included."""

    def __init__(self, d_model: int, n_experts: int, rank: int, dropout: float):
        super().__init__()
        self.experts = nn.ModuleList(nn.Linear(d_model, d_model) for _ in range(n_experts))

    def forward(self, x, mask, weights):
        out = sum(weights[:, n, None, None] * expert(x) for n, expert in enumerate(self.experts))
        return (out + 1e-3 * x.mean(1, keepdim=True)) * mask[..., None]


@pytest.mark.parametrize("d_model", [8, 512])
def test_a_small_leak_is_seen_at_any_width(d_model):
    from mmolre_cli.config import SmokeSizes

    registry = build_registry(*get_plugin_manager())
    registry.add("expert", "leaky", SlightlyLeakyBank, plugin="leaks")
    with pytest.raises(ContractError, match="padded frames leak into valid frames' output"):
        smoke_check(registry.get("expert", "leaky"), SmokeSizes(d_model=d_model))


WINDOWED = """
from torch import nn

from mmolre_cli import hookimpl


class Windowed(nn.Module):
    def __init__(self, input_dim, d_model):
        super().__init__()
        self.project = nn.Linear(input_dim, d_model)

    def forward(self, x, mask):
        if x.shape[1] < 8:
            raise ValueError(f"needs windows of 8 frames, got {x.shape[1]}")
        return self.project(x) * mask[..., None]


@hookimpl
def register_encoders(register):
    register("windowed", lambda input_dim, d_model, dropout: Windowed(input_dim, d_model), "8-frame windows")
"""


def test_the_pre_run_plugin_check_uses_the_runs_own_sequence_length(tmp_path, tiny_data):
    """An encoder that needs 8 frames fails the tiny check (6 frames) but trains on 12-frame data."""
    from mmolre_cli.cli.app import app

    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "windowed.py").write_text(WINDOWED)
    runner = CliRunner()
    tiny = runner.invoke(app, ["--plugins-dir", str(plugins), "plugins", "--check"])
    assert tiny.exit_code == 1 and "needs windows of 8 frames, got 6" in tiny.stderr
    args = ["--plugins-dir", str(plugins), "train", "--data", str(tiny_data), "--encoder", "windowed"]
    args += ["--d-model", "16", "--epochs", "1", "--no-track", "--out", str(tmp_path / "run")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
