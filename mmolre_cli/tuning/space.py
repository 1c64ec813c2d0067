"""The search space of ``mmolre tune``: a YAML file mapping config settings to distributions.

A setting is named as in ``--config`` files, its section optional (``lr`` is ``train.lr``,
``experts.shared`` is ``model.experts.shared``); its value is a list of choices or one of
``{uniform: [low, high]}``, ``{log_uniform: [low, high]}`` (float settings), ``{int: [low, high]}``,
``{log_int: [low, high]}`` (integer settings; ``int`` takes an optional ``step``).
"""

from __future__ import annotations

import copy
import dataclasses
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import yaml

from mmolre_cli.config import RunConfig, build_config, check_components, check_setting, did_you_mean, set_path
from mmolre_cli.errors import UsageError
from mmolre_cli.plugins.registry import Registry

RANGES = {"uniform": float, "log_uniform": float, "int": int, "log_int": int}
#: Settings a study does not search: seeds come from the config (trials) and --final-seeds, the device is the machine's.
FIXED = {("train", "seed"): "trials train with the config's train.seed, the retraining with --final-seeds",
         ("train", "device"): "the device is the machine's, not a hyperparameter"}  # fmt: skip


@dataclass(frozen=True)
class Dimension:
    """One searched setting: its name as written, where it sits in the config, and its distribution."""

    name: str
    path: tuple[str, ...]
    distribution: optuna.distributions.BaseDistribution

    def values(self) -> list[Any]:
        """The values that bound it: every choice, or the two ends of its range."""
        if isinstance(self.distribution, optuna.distributions.CategoricalDistribution):
            return list(self.distribution.choices)
        return [self.distribution.low, self.distribution.high]


def _settings(kind: Any = RunConfig, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every setting of ``kind`` as a path (mappings such as ``model.task_weights`` as ``…KEY``)."""
    paths = []
    for name, hint in typing.get_type_hints(kind).items():
        if dataclasses.is_dataclass(hint):
            paths += _settings(hint, (*prefix, name))
        else:
            paths.append((*prefix, name))
    return paths


def setting_path(name: str, where: str) -> tuple[str, ...]:
    """Where ``name`` (``lr``, ``experts.shared``, ``model.topk``, ``task_weights.sa``) sits in the config."""
    parts = tuple(name.split("."))
    candidates = [parts] if parts[0] in ("model", "train") else [("model", *parts), ("train", *parts)]
    for path in candidates:
        try:
            check_setting(path, where)
        except UsageError:
            continue
        return path
    names = [".".join(path[1:]) for path in _settings() if path[0] in ("model", "train")]
    raise UsageError(f"{where}: {name!r} is not a setting of model or train{did_you_mean(name, names)}")


def _leaf_type(path: tuple[str, ...]) -> Any:
    kind: Any = RunConfig
    for key in path:
        kind = typing.get_type_hints(kind)[key] if dataclasses.is_dataclass(kind) else typing.get_args(kind)[1]
    return kind


def _number(value: Any, kind: type, where: str) -> int | float:
    """A bound as ``kind`` (YAML reads ``1e-4`` as text: it is accepted)."""
    try:
        if isinstance(value, bool):
            raise ValueError
        number = kind(value) if kind is float else int(str(value))
    except (TypeError, ValueError):
        raise UsageError(f"{where}: expected {kind.__name__} bounds, got {value!r}") from None
    return number


def parse_dimension(name: str, spec: Any, source: str) -> Dimension:
    """One entry of the space file, checked against the config schema."""
    where = f"{source}: {name}"
    path = setting_path(str(name), where)
    if path in FIXED:
        raise UsageError(f"{where}: not searchable ({FIXED[path]})")
    kind = _leaf_type(path)
    if isinstance(spec, list):
        if not spec or any(isinstance(c, (list, dict)) for c in spec) or len({repr(c) for c in spec}) != len(spec):
            raise UsageError(f"{where}: expected a non-empty list of distinct plain choices, got {spec!r}")
        if typing.get_origin(kind) is list:
            raise UsageError(f"{where}: a list setting cannot be searched; fix it in --config")
        return Dimension(name, path, optuna.distributions.CategoricalDistribution(spec))
    ranges = ", ".join(f"{{{key}: [low, high]}}" for key in RANGES)
    if not isinstance(spec, dict) or not (set(spec) & set(RANGES)) or len(set(spec) & set(RANGES)) > 1:
        raise UsageError(f"{where}: expected a list of choices or one of {ranges}, got {spec!r}")
    (range_kind,) = set(spec) & set(RANGES)
    extra = set(spec) - {range_kind} - ({"step"} if range_kind == "int" else set())
    if extra:
        raise UsageError(f"{where}: unknown key {sorted(extra)[0]!r} beside {range_kind}")
    if kind not in (int, float) or (RANGES[range_kind] is float and kind is int):
        valid = "a list of choices" if kind not in (int, float) else "int, log_int or a list of choices"
        raise UsageError(f"{where}: a {getattr(kind, '__name__', kind)} setting takes {valid}, not {range_kind}")
    bounds = spec[range_kind]
    if not isinstance(bounds, list) or len(bounds) != 2:
        raise UsageError(f"{where}: {range_kind}: expected [low, high], got {bounds!r}")
    low, high = (_number(bound, RANGES[range_kind], where) for bound in bounds)
    if not low < high:
        raise UsageError(f"{where}: {range_kind}: low ({low}) must be below high ({high})")
    if range_kind.startswith("log") and low <= 0:
        raise UsageError(f"{where}: {range_kind}: low must be > 0, got {low}")
    if RANGES[range_kind] is float:
        return Dimension(name, path, optuna.distributions.FloatDistribution(low, high, log=range_kind == "log_uniform"))
    step = _number(spec.get("step", 1), int, f"{where}: step")
    if step < 1:
        raise UsageError(f"{where}: step must be at least 1, got {step}")
    distribution = optuna.distributions.IntDistribution(low, high, log=range_kind == "log_int", step=step)
    return Dimension(name, path, distribution)


def load_space(path: Path) -> list[Dimension]:
    """The space file as dimensions, in file order, or a UsageError naming the file and the entry."""
    try:
        values = yaml.safe_load(Path(path).read_text())
    except OSError as error:
        raise UsageError(f"--space {path}: cannot read ({error.strerror or error})") from None
    except (yaml.YAMLError, UnicodeDecodeError):
        raise UsageError(f"--space {path}: not valid YAML") from None
    if not isinstance(values, dict) or not values:
        raise UsageError(f"--space {path}: expected a mapping of settings to distributions")
    space = [parse_dimension(str(name), spec, str(path)) for name, spec in values.items()]
    seen: dict[tuple[str, ...], str] = {}
    for dimension in space:
        if dimension.path in seen:
            raise UsageError(f"--space {path}: {seen[dimension.path]} and {dimension.name} name the same setting")
        seen[dimension.path] = dimension.name
    return space


def apply(values: dict[str, Any], space: list[Dimension], params: dict[str, Any]) -> dict[str, Any]:
    """A copy of the plain config ``values`` with every dimension set to its value in ``params``.

    ``values`` holds every setting (``RunConfig.to_dict()``), so that setting one entry of a mapping
    (``task_weights.er``) keeps the others."""
    values = copy.deepcopy(values)
    for dimension in space:
        set_path(values, dimension.path, params[dimension.name])
    return values


def check_space(space: list[Dimension], values: dict[str, Any], registry: Registry, source: str) -> None:
    """Every value that bounds a dimension builds a config (types, ranges, registered components) with the
    rest of ``values``; ``topk`` beside ``experts.shared`` is checked with a number of experts that fits it."""
    for dimension in space:
        for value in dimension.values():
            point = apply(values, [dimension], {dimension.name: value})
            where = f"{source}: {dimension.name}={value}"
            config = build_config(_fitting_topk(point, dimension.path), source=where)
            try:
                check_components(config, registry)
            except UsageError as error:
                raise UsageError(f"{where}: {error}") from None


def _fitting_topk(values: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    """``values`` with ``topk`` and ``experts.shared`` made compatible around the one at ``path``."""
    model = values.setdefault("model", {})
    defaults = RunConfig().model
    shared = model.get("experts", {}).get("shared", defaults.experts.shared)
    topk = model.get("topk", defaults.topk)
    try:
        if path == ("model", "topk"):
            set_path(values, ("model", "experts", "shared"), max(int(shared), int(topk)))
        elif path == ("model", "experts", "shared"):
            model["topk"] = min(int(shared), int(topk))
    except (TypeError, ValueError):
        pass  # not a number: build_config names the key
    return values
