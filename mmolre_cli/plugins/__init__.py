"""The plugin system: hook specifications, the registry, and the built-in components' plugin."""

from mmolre_cli.plugins.contracts import Component
from mmolre_cli.plugins.hookspecs import hookimpl
from mmolre_cli.plugins.manager import build_registry, get_plugin_manager, load_registry
from mmolre_cli.plugins.registry import KINDS, PluginFailure, Registry

__all__ = [
    "KINDS",
    "Component",
    "PluginFailure",
    "Registry",
    "build_registry",
    "get_plugin_manager",
    "hookimpl",
    "load_registry",
]
