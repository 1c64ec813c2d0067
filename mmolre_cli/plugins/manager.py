"""Finding plugins (built-ins, entry points in group ``mmolre``) and filling the registry from them."""

from __future__ import annotations

import functools
import importlib.metadata
import os

import pluggy

from mmolre_cli.plugins import hookspecs
from mmolre_cli.plugins.registry import KIND_HOOKS, PluginFailure, Registry

ENTRY_POINT_GROUP = "mmolre"
#: Comma-separated names of the third-party plugins to load; set but empty loads none.
ALLOW_LIST_ENV = "MMOLRE_LOAD_PLUGINS"


def allowed_plugins() -> set[str] | None:
    """The allow-list from the environment, or None when every installed plugin may load."""
    value = os.environ.get(ALLOW_LIST_ENV)
    if value is None:
        return None
    return {name.strip() for name in value.split(",") if name.strip()}


def get_plugin_manager() -> tuple[pluggy.PluginManager, list[PluginFailure]]:
    """A fresh plugin manager with the built-ins and every allowed entry-point plugin registered.

    A plugin that raises on import is returned as a failure instead of taking the caller down.
    """
    from mmolre_cli.plugins import builtin

    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(builtin, name="builtin")
    failures: list[PluginFailure] = []
    allowed = allowed_plugins()
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if allowed is not None and entry_point.name not in allowed:
            continue
        if pm.has_plugin(entry_point.name):
            continue
        try:
            pm.register(entry_point.load(), name=entry_point.name)
        except Exception as error:  # any failure of foreign code is reported, not raised
            failures.append(PluginFailure(entry_point.name, "import", f"{type(error).__name__}: {error}"))
    return pm, failures


def build_registry(pm: pluggy.PluginManager, failures: list[PluginFailure] | None = None) -> Registry:
    """Call every hook implementation with a ``register`` bound to its plugin's name."""
    registry = Registry(failures=list(failures or []))
    for kind, hook_name in KIND_HOOKS.items():
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            # Calling each implementation alone is what lets the registry say which plugin provided what.
            def register(name, factory, description="", _kind=kind, _plugin=impl.plugin_name):
                registry.add(_kind, name, factory, plugin=_plugin, description=description)

            try:
                impl.function(register=register)
            except Exception as error:
                stage = f"{hook_name}"
                registry.failures.append(PluginFailure(impl.plugin_name, stage, f"{type(error).__name__}: {error}"))
    return registry


@functools.lru_cache(maxsize=1)
def load_registry() -> Registry:
    """The process-wide registry (built once); tests build fresh ones with :func:`build_registry`."""
    return build_registry(*get_plugin_manager())
