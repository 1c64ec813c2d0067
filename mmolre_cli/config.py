"""Run configuration: typed dataclasses, strict loading from YAML/dicts, and command-line overrides.

Precedence: defaults < ``--config FILE.yaml`` < command-line flags. Every mistake is a one-line
:class:`UsageError` that names the key or option at fault.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mmolre_cli.atomic import atomic_path
from mmolre_cli.errors import DataError, UsageError


@dataclass
class ExpertConfig:
    """Shared experts of every UniTSE block: how many, their rank, their registered type."""

    shared: int = 4  # shared experts per UniTSE block
    rank: int = 32  # inner width (rank r) of each low-rank expert
    type: str = "lowrank"  # registered expert type (`mmolre plugins`), e.g. lowrank, dense
    dropout: float = 0.1  # dropout inside each expert


@dataclass
class PretrainedConfig:
    """Local Hugging Face model directories of the ``hf_text`` and ``hf_audio`` encoders, trained in the model."""

    text: str | None = None  # directory of the hf_text model (tokenizer included)
    audio: str | None = None  # directory of the hf_audio model (feature extractor included)
    freeze_layers: int = 0  # fix the embeddings and the first n layers; 0 trains all
    gradient_checkpointing: bool = False  # recompute activations in backward: less memory, more time


@dataclass
class ModelConfig:
    """The MMoLRE architecture; component names are looked up in the plugin registry."""

    architecture: str = "mmolre"  # model family, one of ARCHITECTURES (the others are baselines)
    d_model: int = 128  # width d of every token after its encoder
    modalities: list[str] | None = None  # modalities used; null: every modality the data holds
    tasks: list[str] = field(default_factory=lambda: ["sa", "er"])  # tasks trained jointly, among TASK_NAMES
    encoder: str = "linear"  # registered encoder of every modality (`mmolre plugins`)
    encoders: dict[str, str] = field(default_factory=dict)  # per-modality overrides of ``encoder`` (MODALITY: NAME)
    normalize: str = "feature"  # input features before the encoders: one of NORMALIZE (docs/normalization.md)
    experts: ExpertConfig = field(default_factory=ExpertConfig)
    topk: int = 2  # shared experts each router keeps per utterance
    router: str = "topk"  # registered router (`mmolre plugins`)
    fusion: str = "task_adaptive"  # registered fusion of the modalities per task (`mmolre plugins`)
    blocks: int = 2  # stacked UniTSE blocks
    dropout: float = 0.1  # dropout on tokens between blocks
    unitse: bool = True  # UniTSE blocks; false feeds the encoded tokens straight to the fusion
    shared_experts: bool = True  # the routed shared experts of each block
    specific_experts: bool = True  # each modality's own (private) expert in each block
    balance_coef: float = 0.01  # weight of the routers' load-balancing loss
    #: weight of each task's loss in the joint loss
    task_weights: dict[str, float] = field(default_factory=lambda: {"sa": 1.0, "er": 1.0})
    pretrained: PretrainedConfig = field(default_factory=PretrainedConfig)

    def encoder_for(self, modality: str) -> str:
        return self.encoders.get(modality, self.encoder)


#: Learning-rate schedules: constant, linear warm-up then cosine decay to 0, halve on a validation plateau.
SCHEDULES = ("constant", "cosine", "plateau")
#: Input normalisation before the encoders: none, LayerNorm across each frame's features, or z-scores per
#: feature with the training split's statistics (see mmolre_cli/model/normalize.py).
NORMALIZE = ("none", "frame", "feature")
#: Numeric precisions of the forward pass.
PRECISIONS = ("fp32", "bf16", "fp16")

#: Model families ``model.architecture`` accepts: MMoLRE and the baselines of SPEC §3.
ARCHITECTURES = ("mmolre", "hps", "mmoe", "cgc")
#: The tasks a model can train: sentiment analysis and emotion recognition.
TASK_NAMES = ("sa", "er")
#: Devices ``train.device`` accepts.
DEVICE = re.compile(r"cpu|cuda(:\d+)?")
#: Seeds are NumPy's: 0 to 2**32 - 1.
MAX_SEED = 2**32 - 1


@dataclass
class TrainConfig:
    """Optimisation and selection; model selection always uses the validation split."""

    epochs: int = 30  # most epochs; early stopping (``patience``) usually ends sooner
    batch_size: int = 64  # clips per optimisation step (over all processes)
    lr: float = 1e-3  # AdamW learning rate
    weight_decay: float = 1e-4  # AdamW weight decay
    patience: int = 4  # epochs without improvement of ``select`` before stopping
    grad_clip: float = 1.0  # max gradient norm; 0 turns clipping off
    seed: int = 1  # seed of initialisation, dropout and batch order, 0 to 2**32 - 1
    device: str = "cpu"  # torch device: cpu, cuda or cuda:N
    select: str = "loss"  # validation metric that selects the checkpoint (direction from its name)
    schedule: str = "constant"  # learning rate: one of SCHEDULES
    warmup_epochs: int = 1  # linear warm-up before the cosine decay
    precision: str = "fp32"  # one of PRECISIONS; bf16/fp16 autocast the forward pass
    tune_thresholds: bool = False  # tune MER thresholds on the validation split of the selected checkpoint
    deterministic: bool = False  # deterministic kernels only (torch, cuDNN, cuBLAS): docs/reliability.md
    encoder_lr: float | None = None  # learning rate of the pretrained (hf_text, hf_audio) encoders; None: lr


@dataclass
class RunConfig:
    """Everything a training run needs; ``data`` None means the built-in synthetic dataset."""

    data: str | None = None  # prepared HDF5 file; null: the built-in synthetic dataset
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


#: Short names accepted by ``--experts`` and parameter grids → their place in :class:`RunConfig`.
ALIASES = {
    "shared": ("model", "experts", "shared"),
    "rank": ("model", "experts", "rank"),
    "type": ("model", "experts", "type"),
    "dropout": ("model", "experts", "dropout"),
    "topk": ("model", "topk"),
    "router": ("model", "router"),
    "fusion": ("model", "fusion"),
    "d_model": ("model", "d_model"),
    "blocks": ("model", "blocks"),
}
EXPERT_KEYS = ("shared", "rank", "type", "dropout")


def did_you_mean(value: object, valid: list[str] | tuple[str, ...]) -> str:
    """``"; did you mean 'x'?"`` for the valid name closest to ``value``, or nothing when none is close."""
    close = difflib.get_close_matches(str(value), valid, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def unknown_choice(what: str, value: object, valid: list[str]) -> str:
    """The one-line message for a value that is not among ``valid``, suggesting the closest one."""
    return f"{what}: unknown value {value!r} (valid: {', '.join(valid)}){did_you_mean(value, valid)}"


def _type_name(kind: Any) -> str:
    return getattr(kind, "__name__", str(kind))


def _at(source: str, path: str) -> str:
    """Where a value sits, for messages: ``cfg.yaml: model.topk``, or just ``source`` at the top."""
    return f"{source}: {path}" if path else source


def _child(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def _coerce(value: Any, kind: Any, source: str, path: str = "") -> Any:
    """``value`` as ``kind`` (a field annotation), or a UsageError naming ``source`` and the key ``path``."""
    where = _at(source, path)
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(kind)
        if value is None and type(None) in options:
            return None
        return _coerce(value, next(o for o in options if o is not type(None)), source, path)
    if dataclasses.is_dataclass(kind):
        if not isinstance(value, dict):
            raise UsageError(f"{where}: expected a mapping, got {value!r}")
        return _from_dict(kind, value, source, path)
    if origin is list:
        if not isinstance(value, list):
            raise UsageError(f"{where}: expected a list, got {value!r}")
        (item,) = typing.get_args(kind)
        return [_coerce(v, item, source, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise UsageError(f"{where}: expected a mapping, got {value!r}")
        key_kind, item = typing.get_args(kind)
        return {_coerce(k, key_kind, source, path): _coerce(v, item, source, _child(path, k)) for k, v in value.items()}
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif kind is str:
        if isinstance(value, str):
            return value
    raise UsageError(f"{where}: expected {_type_name(kind)}, got {value!r}")


def _from_dict(cls: type, values: dict[str, Any], source: str, path: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in values:
        if key not in names:
            hint = did_you_mean(key, names)
            raise UsageError(f"{_at(source, path)}: unknown key {key!r} (valid: {', '.join(names)}){hint}")
    return cls(**{key: _coerce(value, hints[key], source, _child(path, key)) for key, value in values.items()})


def check_setting(path: tuple[str, ...], where: str) -> None:
    """Refuse a dotted path (``model.experts.rank``) that does not name one setting of :class:`RunConfig`."""
    kind: Any = RunConfig
    for depth, key in enumerate(path):
        if dataclasses.is_dataclass(kind):
            hints = typing.get_type_hints(kind)
            if key not in hints:
                names = list(hints)
                hint = did_you_mean(key, names)
                raise UsageError(
                    f"{where}: {_child('.'.join(path[:depth]), key)} is not a setting (valid: {', '.join(names)}){hint}"
                )
            kind = hints[key]
        elif typing.get_origin(kind) is dict:
            kind = typing.get_args(kind)[1]  # one entry of a mapping such as model.task_weights
        else:
            raise UsageError(f"{where}: {'.'.join(path[:depth])} is one setting; it has no key {key!r}")
    if dataclasses.is_dataclass(kind):
        example = ".".join((*path, dataclasses.fields(kind)[0].name))
        raise UsageError(f"{where}: {'.'.join(path)} is a group of settings; name one, such as {example}")
    if typing.get_origin(kind) is dict:
        raise UsageError(f"{where}: {'.'.join(path)} is a mapping; name one entry, such as {'.'.join(path)}.KEY")


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``base`` with ``override`` merged in, nested mappings merged key by key."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def set_path(values: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    """Set a nested key in a plain dict, creating the mappings on the way."""
    for key in path[:-1]:
        values = values.setdefault(key, {})
    values[path[-1]] = value


def load_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML config file as a dict of correctly typed values (safe loader only), or a UsageError naming the file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise UsageError(f"{path}: cannot read config file ({error.strerror or error})") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not a YAML config (not UTF-8 text)") from None
    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise UsageError(f"{path}: not valid YAML{yaml_problem(error)}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise UsageError(f"{path}: expected a mapping at the top level, got {type(values).__name__}")
    # A section whose keys are all commented out (``model:``) is an empty one.
    values = {key: {} if value is None and key in ("model", "train") else value for key, value in values.items()}
    # Types are checked here, where the file alone is at fault; ranges after the command's flags are merged in.
    _from_dict(RunConfig, values, str(path))
    if values.get("data") and not Path(values["data"]).is_absolute():
        values["data"] = str(path.parent / values["data"])  # a config file's paths are relative to it
    return values


def yaml_problem(error: Exception) -> str:
    """Where and what PyYAML found wrong, as `` at line 3: mapping values are not allowed here``, with what it
    was parsing when that started elsewhere; nothing when it says neither."""
    mark, problem = getattr(error, "problem_mark", None), getattr(error, "problem", None)
    where = f" at line {mark.line + 1}" if mark else ""
    if not problem:
        return where
    context, started = getattr(error, "context", None), getattr(error, "context_mark", None)
    if context and started is not None and (mark is None or started.line != mark.line):
        context += f" started at line {started.line + 1}"
    return f"{where}: {problem}" + (f" ({context})" if context else "")


def merged_values(config: Path | None, overrides: dict[str, Any]) -> dict[str, Any]:
    """The config file's values (none without one) with the command's ``overrides`` merged in. A data file
    that the config file names and the command does not override must exist: a DataError names the config
    file, its key and the path as written there otherwise."""
    if config is None:
        return deep_merge({}, overrides)
    values = load_yaml(config)
    if values.get("data") and "data" not in overrides and not Path(values["data"]).exists():
        written = yaml.safe_load(Path(config).read_text())["data"]
        resolved = "" if written == values["data"] else f" (relative to the config file: {values['data']})"
        raise DataError(f"{config}: data: {written}: file not found{resolved}")
    return deep_merge(values, overrides)


def build_config(values: dict[str, Any], *, source: str = "config") -> RunConfig:
    """A checked RunConfig from plain values (YAML plus overrides)."""
    config = _from_dict(RunConfig, values, source)
    check_ranges(config, source)
    return config


def check_ranges(config: RunConfig, source: str = "config") -> None:
    """Value checks that types alone do not catch (component names are checked against the registry)."""
    model, train = config.model, config.train
    positive = {
        "model.d_model": model.d_model,
        "model.experts.shared": model.experts.shared,
        "model.experts.rank": model.experts.rank,
        "model.topk": model.topk,
        "model.blocks": model.blocks,
        "train.epochs": train.epochs,
        "train.batch_size": train.batch_size,
        "train.patience": train.patience,
    }
    for key, value in positive.items():
        if value < 1:
            raise UsageError(f"{source}: {key} must be at least 1, got {value}")
    for key, value in {"model.dropout": model.dropout, "model.experts.dropout": model.experts.dropout}.items():
        if not 0.0 <= value < 1.0:
            raise UsageError(f"{source}: {key} must be in [0, 1), got {value}")
    if model.topk > model.experts.shared:
        raise UsageError(
            f"{source}: topk ({model.topk}) cannot exceed the number of shared experts ({model.experts.shared})"
        )
    if model.architecture not in ARCHITECTURES:
        raise UsageError(
            f"{source}: model.architecture: unknown {model.architecture!r} (valid: {', '.join(ARCHITECTURES)})"
            f"{did_you_mean(model.architecture, ARCHITECTURES)}"
        )
    if not model.tasks:
        raise UsageError(f"{source}: model.tasks must name at least one task")
    _check_names("model.tasks", model.tasks, TASK_NAMES, source)
    _check_names("model.task_weights", list(model.task_weights), TASK_NAMES, source)
    if model.modalities is not None:
        if not model.modalities:
            raise UsageError(f"{source}: model.modalities must name at least one modality (unset means all)")
        _check_names("model.modalities", model.modalities, None, source)
    if config.data is not None and not config.data.strip():
        raise UsageError(f"{source}: data: empty path (unset means the built-in dataset)")
    for key, lr in (("train.lr", train.lr), ("train.encoder_lr", train.encoder_lr)):
        if lr is not None and not (math.isfinite(lr) and lr > 0):
            raise UsageError(f"{source}: {key} must be a positive finite number, got {lr}")
    if model.pretrained.freeze_layers < 0:
        raise UsageError(f"{source}: model.pretrained.freeze_layers must be ≥ 0, got {model.pretrained.freeze_layers}")
    nonnegative = {
        "train.weight_decay": train.weight_decay,
        "train.grad_clip": train.grad_clip,
        "train.warmup_epochs": train.warmup_epochs,
        "model.balance_coef": model.balance_coef,
        **{f"model.task_weights.{task}": weight for task, weight in model.task_weights.items()},
    }
    for key, value in nonnegative.items():
        if not (math.isfinite(value) and value >= 0):
            raise UsageError(f"{source}: {key} must be a finite number ≥ 0, got {value}")
    if not 0 <= train.seed <= MAX_SEED:
        raise UsageError(f"{source}: train.seed must be in [0, {MAX_SEED}], got {train.seed}")
    if not DEVICE.fullmatch(train.device):
        raise UsageError(f"{source}: train.device: unknown device {train.device!r} (valid: cpu, cuda, cuda:N)")
    choices = (
        ("train.schedule", train.schedule, SCHEDULES),
        ("train.precision", train.precision, PRECISIONS),
        ("model.normalize", model.normalize, NORMALIZE),
    )
    for key, value, valid in choices:
        if value not in valid:
            hint = did_you_mean(value, valid)
            raise UsageError(f"{source}: {key}: unknown value {value!r} (valid: {', '.join(valid)}){hint}")


def _check_names(key: str, names: list[str], valid: tuple[str, ...] | None, source: str) -> None:
    """Each of ``names`` once, and (unless ``valid`` is None) among the tasks ``valid``."""
    for i, name in enumerate(names):
        if valid is not None and name not in valid:
            raise UsageError(f"{source}: {key}: unknown task {name!r} (valid: {', '.join(valid)})")
        if name in names[:i]:
            raise UsageError(f"{source}: {key}: {name!r} given twice")


def parse_assignments(values: list[str], option: str, valid: tuple[str, ...]) -> dict[str, str]:
    """``["shared=4,rank=32", "type=dense"]`` → {"shared": "4", ...}; unknown keys are refused."""
    parsed: dict[str, str] = {}
    for value in values:
        for item in filter(None, (part.strip() for part in value.split(","))):
            key, sep, raw = item.partition("=")
            key = key.strip()
            if not sep or not raw.strip():
                raise UsageError(f"{option}: expected KEY=VALUE, got {item!r}")
            if key not in valid:
                raise UsageError(f"{option}: unknown key {key!r} (valid: {', '.join(valid)}){did_you_mean(key, valid)}")
            parsed[key] = raw.strip()
    return parsed


def parse_experts(values: list[str]) -> dict[str, Any]:
    """``--experts`` values (either form, repeatable) → typed overrides of ``model.experts``."""
    raw = parse_assignments(values, "--experts", EXPERT_KEYS)
    hints = typing.get_type_hints(ExpertConfig)
    typed = {key: _coerce(value, hints[key], f"--experts {key}") for key, value in raw.items()}
    for key in ("shared", "rank"):
        if key in typed and typed[key] < 1:
            raise UsageError(f"--experts {key}: must be at least 1, got {typed[key]}")
    return typed


def parse_encoders(values: list[str]) -> dict[str, Any]:
    """``--encoder transformer`` (every modality) or ``--encoder text=transformer`` → model overrides."""
    overrides: dict[str, Any] = {}
    for value in values:
        for item in filter(None, (part.strip() for part in value.split(","))):
            modality, sep, name = item.partition("=")
            if not sep:
                overrides["encoder"] = item
            elif not modality.strip() or not name.strip():
                raise UsageError(f"--encoder: expected NAME or MODALITY=NAME, got {item!r}")
            else:
                overrides.setdefault("encoders", {})[modality.strip()] = name.strip()
    return overrides


def parse_list(value: str, option: str) -> list[str]:
    """A comma-separated option value as a list of non-empty names."""
    items = [item.strip() for item in value.split(",") if item.strip()]
    if not items:
        raise UsageError(f"{option}: expected a comma-separated list, got {value!r}")
    return items


def save_yaml(config: RunConfig, path: Path) -> None:
    """``config`` as YAML at ``path``, written atomically."""
    with atomic_path(path) as temporary:
        temporary.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))


def check_device(device: str) -> None:
    """The CUDA device ``device`` names (``cuda``, ``cuda:N``) exists on this machine (a UsageError naming
    ``--device`` otherwise); ``cpu`` always does."""
    if device.startswith("cuda"):
        import torch  # only here: the rest of the config layer runs without it

        count, index = torch.cuda.device_count(), int(device.partition(":")[2] or 0)
        if index >= count:
            found = f"this machine has {count} CUDA device(s)" if count else "CUDA is not available on this machine"
            raise UsageError(f"--device {device}: {found}")


@dataclass(frozen=True)
class SmokeSizes:
    """What a smoke check builds a component with: tiny by default (``mmolre plugins --check``), or a run's
    own model sizes and device, checked before the run starts."""

    d_model: int = 8
    n_experts: int = 4
    rank: int = 2
    topk: int = 2
    modalities: tuple[str, ...] = ("text", "audio")
    tasks: tuple[str, ...] = ("sa", "er")
    device: str = "cpu"
    input_dim: int = 5
    frames: int = 6  # the longest row of the smoke batch; the others hold half of them and one


#: The most frames a run's plugin check feeds a component, however long the run's sequences.
SMOKE_FRAMES = 64


def component_names(model: ModelConfig) -> list[tuple[str, str, str]]:
    """(kind, name, the option that sets it) of every registered component ``model`` uses."""
    names = [("encoder", model.encoder, "--encoder")]
    names += [("encoder", name, f"--encoder {modality}") for modality, name in model.encoders.items()]
    names += [("expert", model.experts.type, "--experts type"), ("router", model.router, "--router")]
    return [*names, ("fusion", model.fusion, "--fusion")]


def check_components(config: RunConfig, registry, device: str | None = None, frames: int | None = None) -> None:
    """Every component name in ``config`` is registered (a UsageError naming the option otherwise), and every
    plugin component among them passes its kind's contract at the model's sizes, on ``device`` (default
    ``train.device``), on sequences as long as the data's ``frames`` (at most :data:`SMOKE_FRAMES`; default:
    the tiny check's): a PluginError naming the plugin otherwise."""
    model = config.model
    used = [registry.get(kind, name, option=option) for kind, name, option in component_names(model)]
    sizes = SmokeSizes(
        d_model=model.d_model,
        n_experts=model.experts.shared,
        rank=model.experts.rank,
        topk=model.topk,
        modalities=tuple(model.modalities or ("text", "audio", "vision")),
        tasks=tuple(model.tasks),
        device=device or config.train.device,
        frames=min(frames, SMOKE_FRAMES) if frames else SmokeSizes.frames,
    )
    registry.check_contracts(used, sizes)
