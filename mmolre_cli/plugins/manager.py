"""Finding plugins (built-ins, entry points in group ``mmolre``, a plugins directory) and filling the registry."""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import importlib.util
import os
import sys
from pathlib import Path

import pluggy

from mmolre_cli.config import did_you_mean
from mmolre_cli.plugins import hookspecs
from mmolre_cli.plugins.contracts import PLUGIN_ERRORS
from mmolre_cli.plugins.registry import BUILTIN, KIND_HOOKS, PluginFailure, Registry

ENTRY_POINT_GROUP = "mmolre"
#: Comma-separated names of the installed (entry-point) plugins to load; set but empty loads none.
ALLOW_LIST_ENV = "MMOLRE_LOAD_PLUGINS"
#: A directory whose every ``*.py`` file is loaded as a plugin named after the file (``--plugins-dir``).
PLUGINS_DIR_ENV = "MMOLRE_PLUGINS_DIR"
#: Set to 1 to print, on stderr, each plugin loaded, each hook call, its implementations and what they registered.
TRACE_ENV = "MMOLRE_TRACE_PLUGINS"
#: The module name of a plugins directory's file starts with this (followed by the file's stem).
DIR_MODULE_PREFIX = "mmolre_plugins_dir_"


def allowed_plugins() -> set[str] | None:
    """The allow-list from the environment, or None when every installed plugin may load."""
    value = os.environ.get(ALLOW_LIST_ENV)
    if value is None:
        return None
    return {name.strip() for name in value.split(",") if name.strip()}


def plugins_dir_from_env() -> Path | None:
    """``$MMOLRE_PLUGINS_DIR``, or None when unset or empty."""
    value = os.environ.get(PLUGINS_DIR_ENV, "").strip()
    return Path(value) if value else None


def tracing() -> bool:
    """Whether ``$MMOLRE_TRACE_PLUGINS`` asks for a trace (any value but empty, 0, false, no)."""
    return os.environ.get(TRACE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def trace(message: str) -> None:
    """One trace line on stderr, when tracing is on."""
    if tracing():
        sys.stderr.write(f"[mmolre plugins] {message}\n")


def load_plugins_dir(pm: pluggy.PluginManager, directory: Path) -> list[PluginFailure]:
    """Import every ``*.py`` file in ``directory`` (sorted) and register it as a plugin named after its stem."""
    if not directory.is_dir():
        return [PluginFailure(str(directory), "plugins dir", "not a directory")]
    failures: list[PluginFailure] = []
    for path in sorted(directory.glob("*.py")):
        name = path.stem
        if pm.has_plugin(name):
            failures.append(PluginFailure(name, "import", f"{path}: a plugin named {name!r} is already loaded"))
            continue
        module_name = f"{DIR_MODULE_PREFIX}{name}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module  # dataclasses and pickle look classes up through sys.modules
        try:
            spec.loader.exec_module(module)
            pm.register(module, name=name)
        except PLUGIN_ERRORS as error:  # any failure of foreign code is reported, not raised
            sys.modules.pop(module_name, None)
            failures.append(PluginFailure(name, "import", f"{path}: {type(error).__name__}: {error}"))
            continue
        trace(f"loaded {name!r} from {path}")
    return failures


def unknown_allowed(allowed: set[str], installed: list[str]) -> list[PluginFailure]:
    """Names in ``$MMOLRE_LOAD_PLUGINS`` that match no installed plugin (``builtin`` always loads): a misspelt
    name would otherwise load nothing, silently."""
    listed = ", ".join(installed) or "none"
    return [
        PluginFailure(
            name,
            ALLOW_LIST_ENV,
            f"no installed plugin has this name (installed: {listed})" + did_you_mean(name, installed),
        )
        for name in sorted(allowed - set(installed) - {BUILTIN})
    ]


def hook_failures(pm: pluggy.PluginManager, entry_points: set[str]) -> list[PluginFailure]:
    """Plugins whose hook functions lack ``@hookimpl``, entry-point plugins that implement no hook (a plugins
    directory may also hold modules its plugins import), and hook implementations that match no hook (a
    misspelt name): each would otherwise be silently ignored."""
    known = sorted(KIND_HOOKS.values())
    failures = []
    for name, plugin in pm.list_name_plugin():
        callers = pm.get_hookcallers(plugin) or []
        unmarked = [hook for hook in known if callable(getattr(plugin, hook, None)) and not _marked(plugin, hook)]
        if unmarked:
            failures.append(PluginFailure(name, "hooks", f"{', '.join(unmarked)} not marked with @hookimpl"))
        elif not callers and name in entry_points:
            message = f"implements no mmolre hook (mark each with @hookimpl; hooks: {', '.join(known)})"
            failures.append(PluginFailure(name, "hooks", message))
        for caller in callers:
            if not caller.has_spec():
                failures.append(
                    PluginFailure(name, "hooks", f"{caller.name} is not an mmolre hook (hooks: {', '.join(known)})")
                )
    return failures


def _marked(plugin: object, hook: str) -> bool:
    """Whether ``plugin.hook`` carries pluggy's ``@hookimpl`` mark for mmolre, or is the hook's spec itself
    (imported from mmolre's hookspecs, which pluggy leaves alone too)."""
    function = getattr(plugin, hook)
    return any(hasattr(function, f"{hookspecs.PROJECT}_{mark}") for mark in ("impl", "spec"))


def get_plugin_manager(plugins_dir: Path | None = None) -> tuple[pluggy.PluginManager, list[PluginFailure]]:
    """A fresh plugin manager with the built-ins, every allowed entry-point plugin, and every ``*.py`` in
    ``plugins_dir`` (default ``$MMOLRE_PLUGINS_DIR``) registered.

    A plugin that raises on import is returned as a failure instead of taking the caller down.
    """
    from mmolre_cli.plugins import builtin

    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(builtin, name=BUILTIN)
    trace("loaded 'builtin' (built-in components)")
    allowed = allowed_plugins()
    entry_points = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    failures = unknown_allowed(allowed or set(), sorted(set(entry_points.names)))
    loaded: set[str] = set()  # entry-point plugins registered
    for entry_point in entry_points:
        if allowed is not None and entry_point.name not in allowed:
            continue
        if pm.has_plugin(entry_point.name):
            message = f"entry point {entry_point.value}: a plugin named {entry_point.name!r} is already loaded"
            failures.append(PluginFailure(entry_point.name, "import", message))
            continue
        try:
            pm.register(entry_point.load(), name=entry_point.name)
        except PLUGIN_ERRORS as error:  # any failure of foreign code is reported, not raised
            failures.append(PluginFailure(entry_point.name, "import", f"{type(error).__name__}: {error}"))
            continue
        loaded.add(entry_point.name)
        trace(f"loaded {entry_point.name!r} from entry point {entry_point.value}")
    directory = plugins_dir if plugins_dir is not None else plugins_dir_from_env()
    if directory is not None:
        failures += load_plugins_dir(pm, directory)
    failures += hook_failures(pm, loaded)
    for failure in failures:
        trace(failure.message())
    return pm, failures


def plugin_sources(pm: pluggy.PluginManager) -> dict[str, str]:
    """Plugin → the file of its module, or its package's directory (its code may sit in submodules)."""
    sources = {}
    for name, plugin in pm.list_name_plugin():
        file = getattr(plugin, "__file__", None)
        if name != BUILTIN and isinstance(file, str):
            sources[name] = os.path.dirname(file) if os.path.basename(file) == "__init__.py" else file
    return sources


def plugin_origins(pm: pluggy.PluginManager) -> dict[str, str]:
    """Plugin → where it comes from: ``package NAME VERSION`` for an installed one, ``file PATH`` for a file of
    a plugins directory."""
    distributions = {point.name: point.dist for point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}
    origins = {}
    for name, plugin in pm.list_name_plugin():
        module = getattr(plugin, "__name__", "")
        if module.startswith(DIR_MODULE_PREFIX):
            origins[name] = f"file {plugin.__file__}"
        elif name != BUILTIN and distributions.get(name) is not None:
            origins[name] = f"package {distributions[name].name} {distributions[name].version}"
    return origins


def build_registry(pm: pluggy.PluginManager, failures: list[PluginFailure] | None = None) -> Registry:
    """Call every hook implementation with a ``register`` bound to its plugin's name.

    A component refused at registration (bad name, duplicate, factory off its contract) is recorded as
    a failure of its plugin; the plugin's other components still register.
    """
    registry = Registry(failures=list(failures or []), sources=plugin_sources(pm), origins=plugin_origins(pm))
    for kind, hook_name in KIND_HOOKS.items():
        impls = getattr(pm.hook, hook_name).get_hookimpls()
        trace(f"call {hook_name}(register): {', '.join(impl.plugin_name for impl in impls) or 'no implementations'}")
        for impl in impls:
            registered: list[str] = []

            # Calling each implementation alone is what lets the registry say which plugin provided what.
            def register(
                name, factory, description="", _kind=kind, _hook=hook_name, _plugin=impl.plugin_name, _done=registered
            ):
                try:
                    registry.add(_kind, name, factory, plugin=_plugin, description=description)
                except (TypeError, ValueError) as error:
                    message = str(error).removeprefix(f"plugin {_plugin!r}: ")
                    registry.failures.append(PluginFailure(_plugin, _hook, message))
                    trace(f"  {_plugin} → refused {_kind} {name!r}: {message}")
                    return
                _done.append(f"{_kind} {name}")

            try:
                returned = impl.function(register=register)
            except PLUGIN_ERRORS as error:
                registry.failures.append(PluginFailure(impl.plugin_name, hook_name, f"{type(error).__name__}: {error}"))
                trace(f"  {impl.plugin_name} → raised {type(error).__name__}: {error}")
            else:
                if returned is not None and not registered:  # components are registered by calling register
                    message = f"returned a {type(returned).__name__}; call register(name, factory) for each component"
                    registry.failures.append(PluginFailure(impl.plugin_name, hook_name, message))
            trace(f"  {impl.plugin_name} → registered {', '.join(registered) or 'nothing'}")
    return registry


def load_registry(plugins_dir: str | Path | None = None) -> Registry:
    """The process-wide registry, built once per plugins directory (default ``$MMOLRE_PLUGINS_DIR``).

    Tests build fresh ones with :func:`build_registry`.
    """
    directory = Path(plugins_dir) if plugins_dir is not None else plugins_dir_from_env()
    return _cached_registry(directory.resolve() if directory is not None else None)


@functools.lru_cache(maxsize=8)
def _cached_registry(plugins_dir: Path | None) -> Registry:
    # What plugin code prints while it loads goes to stderr: stdout is mmolre's (``--json`` output).
    with contextlib.redirect_stdout(sys.stderr):
        return build_registry(*get_plugin_manager(plugins_dir))
