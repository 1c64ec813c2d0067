"""The plugin system: built-ins through the hooks, third-party plugins, failures, the allow-list."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest
from typer.testing import CliRunner

from mmolre_cli.cli.app import app
from mmolre_cli.plugins import build_registry, get_plugin_manager, hookimpl
from mmolre_cli.plugins.registry import Registry

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
    dist = tmp_path / "mmolre_test_plugins-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mmolre-test-plugins\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[mmolre]\ngood = good_plugin\nbad = bad_plugin\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    for name in ("good_plugin", "bad_plugin"):
        sys.modules.pop(name, None)


def test_entry_point_plugins_load_and_a_broken_one_is_reported(installed_plugins):
    registry = build_registry(*get_plugin_manager())
    assert registry.get("fusion", "first_modality").plugin == "good"
    assert [(f.plugin, f.stage) for f in registry.failures] == [("bad", "import")]
    assert "missing dependency xyz" in registry.failures[0].error


def test_allow_list_limits_third_party_plugins(installed_plugins, monkeypatch):
    monkeypatch.setenv("MMOLRE_LOAD_PLUGINS", "good")
    registry = build_registry(*get_plugin_manager())
    assert "first_modality" in registry.names("fusion") and registry.failures == []
    monkeypatch.setenv("MMOLRE_LOAD_PLUGINS", "")
    registry = build_registry(*get_plugin_manager())
    assert "first_modality" not in registry.names("fusion") and "task_adaptive" in registry.names("fusion")
