"""How ``--help`` reads: flags without a ``<bool>`` type, arguments in capitals, and config defaults shown.

Every Typer app of the CLI is an :class:`App`, so each command and group registered through it gets this
style. An option named like a setting of :class:`~mmolre_cli.config.RunConfig` (``--epochs`` for
``train.epochs``, ``--experts`` for ``model.experts``) whose own default is None overrides that setting
only when given, so its help shows the setting's default, read from the config classes.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import typing
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

from mmolre_cli.config import RunConfig

#: A required argument as Typer writes it in a usage line: ``{run}``.
_BRACED = re.compile(r"\{([^{}]+)\}")


@functools.cache
def settings_by_name() -> dict[str, str]:
    """Setting or group name → its dotted key (``epochs`` → ``train.epochs``), for names used once in
    :class:`RunConfig` (``dropout`` names two settings and is left out)."""
    found: dict[str, list[str]] = {}

    def walk(cls: type, prefix: str) -> None:
        for name, kind in typing.get_type_hints(cls).items():
            found.setdefault(name, []).append(prefix + name)
            if dataclasses.is_dataclass(kind):
                walk(kind, f"{prefix}{name}.")

    walk(RunConfig, "")
    return {name: keys[0] for name, keys in found.items() if len(keys) == 1}


def setting_default(key: str) -> Any:
    """The default of one config setting (``train.epochs``), or of a group (``model.experts``) as a dict."""
    value: Any = RunConfig()
    for part in key.split("."):
        value = getattr(value, part)
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value


def as_option(value: Any) -> str:
    """A setting's value as an option writes it: lists and groups comma-separated (``sa,er``;
    ``shared=4,rank=32``), booleans on/off."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, dict):
        return ",".join(f"{k}={as_option(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ",".join(as_option(v) for v in value)
    return str(value)


def _show_setting_default(param: Any) -> None:
    """Append the config default to the help of an option that overrides a setting only when given (and whose
    help does not already say what its absence means)."""
    key = settings_by_name().get(param.name or "")
    if key is None or param.default not in (None, [], ()) or "default" in (param.help or "").lower():
        return
    value = setting_default(key)
    if value is not None:
        param.help = f"{param.help or ''} Default: {as_option(value)}.".lstrip()


class HelpStyle:
    """Mixed into a Typer command or group: no type shown on flags (they take no value), ``RUN`` rather than
    ``{run}`` for a required argument in the usage line, and config defaults on the options that override them."""

    def get_params(self, ctx):
        params = super().get_params(ctx)
        for param in params:
            if getattr(param, "_help_styled", False):
                continue
            param._help_styled = True
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""  # the help shows the metavar, when set, in place of the type
            if param.param_type_name == "option":
                _show_setting_default(param)
        return params

    def collect_usage_pieces(self, ctx) -> list[str]:
        return [_BRACED.sub(lambda m: m[1].upper(), piece) for piece in super().collect_usage_pieces(ctx)]


class Command(HelpStyle, TyperCommand):
    """A command with the CLI's help style."""


class Group(HelpStyle, TyperGroup):
    """A group of commands with the CLI's help style."""


class App(typer.Typer):
    """A Typer app whose groups and commands (those registered through it) have the CLI's help style."""

    def __init__(self, *, cls: type[TyperGroup] = Group, **options: Any) -> None:
        super().__init__(cls=cls, **options)

    def command(self, *args: Any, cls: type[TyperCommand] = Command, **options: Any):
        return super().command(*args, cls=cls, **options)
