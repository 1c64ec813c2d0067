"""What an ablation trains: the full model, its named removals, the baselines and parameter-grid points.

Every variant is the full model's config with one change, so all of them share data, seeds and budget.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mmolre_cli.config import (
    ALIASES,
    ARCHITECTURES,
    ModelConfig,
    RunConfig,
    build_config,
    check_components,
    check_device,
    check_setting,
    did_you_mean,
    parse_list,
    set_path,
)
from mmolre_cli.errors import UsageError
from mmolre_cli.plugins.contracts import PluginError

if TYPE_CHECKING:
    from mmolre_cli.plugins.registry import Registry

#: The part name of a variant trained as one model; ``mtl`` trains one part per task instead.
WHOLE = "all"


def _model(**changes: Any) -> Callable[[ModelConfig], dict[str, ModelConfig]]:
    return lambda model: {WHOLE: dataclasses.replace(model, **changes)}


def _dense(model: ModelConfig) -> dict[str, ModelConfig]:
    return {WHOLE: dataclasses.replace(model, experts=dataclasses.replace(model.experts, type="dense"))}


def _single_tasks(model: ModelConfig) -> dict[str, ModelConfig]:
    if len(model.tasks) < 2:
        raise UsageError(f"--remove mtl: the full model must train two tasks, it trains {model.tasks}")
    return {task: dataclasses.replace(model, tasks=[task]) for task in model.tasks}


@dataclass(frozen=True)
class Removal:
    """A named switch of SPEC §3: what it removes, and the model config(s) without it, by part."""

    help: str
    apply: Callable[[ModelConfig], dict[str, ModelConfig]]


REMOVALS: dict[str, Removal] = {
    "unitse": Removal("no UniTSE: encoder output goes straight to fusion", _model(unitse=False)),
    "shared": Removal("no shared experts (nor routers)", _model(shared_experts=False)),
    "specific": Removal("no task-specific experts", _model(specific_experts=False)),
    "router": Removal("uniform weights over all shared experts", _model(router="uniform")),
    "fusion": Removal("concat fusion instead of task-adaptive", _model(fusion="concat")),
    "lowrank": Removal("dense experts instead of low-rank", _dense),
    "block2": Removal("one UniTSE block instead of two", _model(blocks=1)),
    "balance": Removal("no load-balancing loss (coefficient 0)", _model(balance_coef=0.0)),
    "mtl": Removal("each task trained alone; sa and er metrics come from separate models", _single_tasks),
}

#: Baselines ``--baseline`` accepts: every architecture but MMoLRE itself.
BASELINES = tuple(name for name in ARCHITECTURES if name != "mmolre")


@dataclass
class Variant:
    """One row of the comparison: ``parts`` maps a part name (``all``, or a task for ``mtl``) to its config."""

    name: str
    kind: str  # "full", "removal", "baseline" or "grid"
    parts: dict[str, RunConfig]
    settings: dict[str, str] = field(default_factory=dict)  # grid key → value

    @property
    def slug(self) -> str:
        """The variant's directory name: its name with anything but letters, digits, ``.``, ``_``, ``-`` as ``-``."""
        return re.sub(r"[^A-Za-z0-9._-]", "-", self.name.replace(",", "_").replace("=", "-"))


@dataclass
class Plan:
    """The variants to train (the reference first), the grid (keys and values in order), notes on what was skipped."""

    variants: list[Variant]
    grid: dict[str, list[str]]
    notes: list[str]

    @property
    def reference(self) -> Variant:
        return self.variants[0]


def parse_names(values: list[str], option: str, valid: tuple[str, ...]) -> list[str]:
    """Repeatable, comma-separated names, each checked against ``valid``; duplicates dropped."""
    names: list[str] = []
    for value in values:
        for name in parse_list(value, option):
            if name not in valid:
                hint = did_you_mean(name, valid)
                raise UsageError(f"{option}: unknown name {name!r} (valid: {', '.join(valid)}){hint}")
            if name not in names:
                names.append(name)
    return names


def grid_path(key: str) -> tuple[str, ...]:
    """Where a grid key lives in the config: a short alias (``shared``) or a dotted path (``model.blocks``)."""
    if key in ALIASES:
        return ALIASES[key]
    if key.startswith(("model.", "train.")) and all(key.split(".")):
        check_setting(tuple(key.split(".")), "--grid")
        return tuple(key.split("."))
    hint = did_you_mean(key, list(ALIASES))
    raise UsageError(
        f"--grid: unknown key {key!r} (valid: {', '.join(ALIASES)}, or a dotted path such as model.balance_coef){hint}"
    )


def parse_grid(values: list[str]) -> dict[str, list[str]]:
    """``["shared=1,2,4", "topk=1,2"]`` → {"shared": ["1", "2", "4"], "topk": ["1", "2"]}."""
    grid: dict[str, list[str]] = {}
    keys: dict[tuple[str, ...], str] = {}  # each setting's key as given
    for value in values:
        key, sep, raw = value.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"--grid: expected KEY=V1,V2,…, got {value!r}")
        path = grid_path(key)
        if path == ("train", "seed"):
            raise UsageError("--grid train.seed: seeds come from --seeds (every variant trains once per seed)")
        if key in grid:
            raise UsageError(f"--grid: key {key!r} given twice")
        if path in keys:
            raise UsageError(f"--grid: {keys[path]} and {key} name the same setting")
        keys[path] = key
        grid[key] = list(dict.fromkeys(parse_list(raw, f"--grid {key}")))
    return grid


def _topk_exceeds_shared(values: dict[str, Any]) -> bool:
    model = values["model"]
    try:
        return int(model["topk"]) > int(model["experts"]["shared"])
    except (TypeError, ValueError):
        return False  # not a number: build_config reports it with the key's name


def _with_model(config: RunConfig, model: ModelConfig) -> RunConfig:
    return dataclasses.replace(config, model=model)


def _selection_for(config: RunConfig, task: str) -> RunConfig:
    """A single-task part keeps the full model's ``train.select`` when it is a metric of ``task`` (or the
    total loss), and otherwise selects on its own loss."""
    from mmolre_cli.training.schedule import selectable_metrics

    sentiment_only = set(selectable_metrics(["sa"], [])) - {"loss"}
    select = config.train.select
    if select == "loss" or (select in sentiment_only) == (task == "sa"):
        return config
    return dataclasses.replace(config, train=dataclasses.replace(config.train, select="loss"))


def plan_variants(
    values: dict[str, Any],
    removals: list[str],
    baselines: list[str],
    grid: dict[str, list[str]],
    registry: Registry,
) -> Plan:
    """Every variant's checked config, from the full model's plain config ``values`` (file plus flags).

    A grid point equal to the full model becomes the reference; removals that change nothing and
    ``topk > shared`` grid points are skipped with a note. Data, model and training are imported here, so
    that the names and parsers above load without torch (``mmolre --help`` shows them).
    """
    from mmolre_cli.data.shapes import like_shapes, read_shapes
    from mmolre_cli.data.synthetic import BUILTIN_LIKE
    from mmolre_cli.model.build import resolve_model
    from mmolre_cli.training.schedule import Selection

    full = build_config(values, source="options")
    shapes = read_shapes(full.data) if full.data else like_shapes(BUILTIN_LIKE)

    def check(config: RunConfig) -> None:
        """Registered components, an existing device, and a ``train.select`` metric of the tasks it trains
        on these data (``er`` dropped where they hold no emotion labels, as training does)."""
        check_device(config.train.device)  # first: the plugin components are checked on it
        check_components(config, registry, frames=max(shapes.lengths.values()))
        model, signature = resolve_model(config.model, shapes)
        Selection.for_metric(config.train.select, model.tasks, signature.emotions)

    check(full)
    if removals and full.model.architecture != "mmolre":
        raise UsageError(f"--remove: removals apply to MMoLRE, but model.architecture is {full.model.architecture!r}")
    if "mtl" in removals and "er" in full.model.tasks and not shapes.emotion_labels:
        raise UsageError(f"--remove mtl: {full.data} has no emotion labels, so there is no second task to train alone")
    notes: list[str] = []
    variants: list[Variant] = []
    for name in removals:
        parts = {part: _with_model(full, model) for part, model in REMOVALS[name].apply(full.model).items()}
        parts = {part: config if part == WHOLE else _selection_for(config, part) for part, config in parts.items()}
        if parts == {WHOLE: full}:
            notes.append(f"--remove {name}: skipped, the full model already runs without it")
            continue
        for config in parts.values():
            check(config)
        variants.append(Variant(f"no-{name}", "removal", parts))
    for name in baselines:
        model = dataclasses.replace(full.model, architecture=name)
        variants.append(Variant(name, "baseline", {WHOLE: _with_model(full, model)}))
    reference = Variant("full", "full", {WHOLE: full})
    paths = {key: grid_path(key) for key in grid}
    # product() of no lists is one empty combination: without a grid there are no grid points.
    for combination in itertools.product(*grid.values()) if grid else ():
        settings = dict(zip(grid, combination, strict=True))
        label = ",".join(f"{key}={value}" for key, value in settings.items())
        point = full.to_dict()  # every setting, so that a grid over one entry of a mapping keeps the others
        for key, value in settings.items():
            set_path(point, paths[key], value)
        if _topk_exceeds_shared(point):
            notes.append(f"--grid {label}: skipped, topk cannot exceed the number of shared experts")
            continue
        config = build_config(point, source=f"--grid {label}")
        try:
            check(config)
        except UsageError as error:
            raise UsageError(f"--grid {label}: {error}") from None
        except PluginError as error:  # a plugin component off its contract at this point's sizes
            raise PluginError(f"--grid {label}: {error}") from None
        twin = next((v.name for v in variants if v.kind == "grid" and v.parts[WHOLE] == config), None)
        if twin is not None:  # say model.unitse=true,yes
            notes.append(f"--grid {label}: skipped, the same model as {twin}")
            continue
        variant = Variant(label, "grid", {WHOLE: config}, settings)
        if config == full and reference.kind == "full":
            reference = variant  # the full model is one of the grid points: train it once
        variants.append(variant)
    return Plan([reference, *(v for v in variants if v is not reference)], grid, notes)
