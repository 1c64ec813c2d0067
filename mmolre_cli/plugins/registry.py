"""The one registry of components: the source of CLI choices, config validation and ``mmolre plugins``."""

from __future__ import annotations

import functools
import os
import re
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from mmolre_cli.config import SmokeSizes, did_you_mean, unknown_choice
from mmolre_cli.errors import MmolreError, UsageError
from mmolre_cli.plugins.contracts import (
    CONTRACTS,
    PLUGIN_ERRORS,
    Component,
    ContractError,
    PluginError,
    check_factory,
    module_problems,
    smoke_check,
)

#: Component kind → the hook that registers it.
KIND_HOOKS = {
    "encoder": "register_encoders",
    "expert": "register_experts",
    "router": "register_routers",
    "fusion": "register_fusions",
    "text_encoder": "register_text_encoders",
    "audio_encoder": "register_audio_encoders",
}
KINDS = tuple(KIND_HOOKS)
#: The plugin name of mmolre's own components.
BUILTIN = "builtin"


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that could not be imported or whose hook raised."""

    plugin: str
    stage: str
    error: str

    def message(self) -> str:
        """One line, however many lines the plugin's error had."""
        return " ".join(f"plugin {self.plugin!r} failed at {self.stage}: {self.error}".split())


@dataclass
class Registry:
    """Components by kind and name, plus the plugins that failed while filling it."""

    components: dict[str, dict[str, Component]] = field(default_factory=lambda: {k: {} for k in KINDS})
    failures: list[PluginFailure] = field(default_factory=list)
    checked: set[tuple[str, str, SmokeSizes]] = field(default_factory=set)  # plugin components checked, at sizes
    sources: dict[str, str] = field(default_factory=dict)  # plugin → its module file or package directory
    origins: dict[str, str] = field(default_factory=dict)  # plugin → "package NAME VERSION" or "file PATH"

    def add(self, kind: str, name: str, factory: Callable, *, plugin: str, description: str = "") -> None:
        """Add a component; a bad name, a duplicate or a factory off its kind's contract raises."""
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"{kind} name must be an identifier, got {name!r}")
        if not callable(factory):
            raise TypeError(f"{kind} {name!r}: factory is not callable")
        check_factory(kind, name, factory, plugin)
        existing = self.components[kind].get(name)
        if existing is not None:
            raise ValueError(f"{kind} {name!r} is already registered by plugin {existing.plugin!r}")
        reporting = _reporting(factory, f"plugin {plugin!r}: {kind} {name!r}", builds_module=kind in CONTRACTS)
        self.components[kind][name] = Component(kind, name, reporting, plugin, description)

    def names(self, kind: str) -> list[str]:
        return sorted(self.components[kind])

    def get(self, kind: str, name: str, *, option: str | None = None) -> Component:
        """The component, or a UsageError naming the option, the closest valid name and where plugins come from."""
        try:
            return self.components[kind][name]
        except KeyError:
            message = unknown_choice(option or kind, name, self.names(kind))
            if not did_you_mean(name, self.names(kind)):  # not a typo: maybe a plugin's component
                message += f"; no loaded plugin provides {kind} {name!r} (install it, or give mmolre --plugins-dir DIR)"
            raise UsageError(message) from None

    def provenance(self, used: Iterable[tuple[str, str]]) -> list[dict[str, str]]:
        """For each (kind, name) in ``used`` that a plugin provides (not mmolre itself), once: the kind, the
        name, the plugin and where it comes from (a package and its version, or a file)."""
        records: list[dict[str, str]] = []
        for kind, name in dict.fromkeys(used):
            component = self.components[kind].get(name)
            if component is not None and component.plugin != BUILTIN:
                origin = self.origins.get(component.plugin, "unknown origin")
                records.append({"kind": kind, "name": name, "plugin": component.plugin, "origin": origin})
        return records

    def check_contracts(self, components: Iterable[Component], sizes: SmokeSizes) -> None:
        """Smoke-check each plugin's component at a run's ``sizes`` (as ``mmolre plugins --check`` does at tiny
        ones; built-ins have their tests), once per registry, before the run uses it: a PluginError names the
        first that fails its kind's contract."""
        for component in components:
            key = (component.kind, component.name, sizes)
            if component.plugin == BUILTIN or key in self.checked:
                continue
            try:
                smoke_check(component, sizes)
            except ContractError as error:
                raise PluginError(str(error)) from None
            self.checked.add(key)

    def blame(self, error: BaseException) -> str | None:
        """``plugin 'x' (file:line)`` for the innermost frame of ``error``'s traceback in a plugin's code; an
        error re-raised from a worker process (``ablate --jobs``) is looked up in the worker's traceback."""
        frames = [(frame.filename, frame.lineno) for frame in traceback.extract_tb(error.__traceback__)]
        if type(error.__cause__).__name__ == "_RemoteTraceback":  # concurrent.futures: the worker's, as text
            frames += [
                (name, int(line)) for name, line in re.findall(r'File "([^"]+)", line (\d+)', str(error.__cause__))
            ]
        for filename, line in reversed(frames):
            for plugin, source in self.sources.items():
                if filename == source or filename.startswith(source + os.sep):
                    return f"plugin {plugin!r} ({filename}:{line})"
        return None

    def __iter__(self) -> Iterator[Component]:
        for kind in KINDS:
            yield from (self.components[kind][name] for name in self.names(kind))


def _reporting(factory: Callable, who: str, *, builds_module: bool) -> Callable:
    """``factory``, with whatever it raises (other than an MmolreError, already one line for the user), and a
    result that is no torch nn.Module when ``builds_module``, turned into a PluginError whose message starts
    with ``who``."""

    @functools.wraps(factory)
    def build(*args, **kwargs):
        try:
            built = factory(*args, **kwargs)
        except MmolreError:
            raise
        except PLUGIN_ERRORS as error:  # foreign code: any failure is the plugin's, reported by name
            raise PluginError(f"{who}: factory raised {type(error).__name__}: {error}") from error
        if builds_module and (problems := module_problems(built, "the factory")):
            raise PluginError(f"{who}: {problems[0]}")
        return built

    return build
