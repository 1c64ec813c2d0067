"""What every command shares: consoles, the one-line error convention, and metric tables."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mmolre_cli.errors import MmolreError, UsageError

if TYPE_CHECKING:
    from mmolre_cli.config import RunConfig

# Markup off: names, paths and messages come from users and files ("[/x]" would be a markup error);
# the few styled prints opt in and escape what they insert.
console = Console(markup=False)
err_console = Console(stderr=True, markup=False)

#: The metrics a table shows, in order; ``--json`` carries every metric.
TABLE_METRICS = (
    "Has0_acc_2", "Has0_F1", "Non0_acc_2", "Non0_F1", "Acc_5", "Acc_7", "MAE", "Corr",
    "WA_mean", "F1w_mean", "F1b_mean", "micro_F1", "elem_acc", "loss",
)  # fmt: skip


def fail(message: str, code: int = 1) -> None:
    """Print ``Error: message`` as one plain line on stderr and exit with ``code``."""
    sys.stderr.write(f"Error: {' '.join(str(message).split())}\n")
    raise typer.Exit(code)


def user_errors(command: Callable) -> Callable:
    """Turn the user's mistakes (MmolreError), and errors raised in a loaded plugin's code, into one line
    and an exit code instead of a traceback."""
    from mmolre_cli.plugins.contracts import PLUGIN_ERRORS

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except MmolreError as error:
            fail(str(error), error.exit_code)
        except PLUGIN_ERRORS as error:
            blamed = registry().blame(error) if _registry.cache_info().currsize else None
            if blamed is None:
                raise
            fail(f"{blamed}: {type(error).__name__}: {error}")

    return wrapper


#: What torch says of an allocation too large for memory, or of a size too large for its 64-bit integers.
_NO_MEMORY = ("can't allocate memory", "out of memory", "Overflow when unpacking long")


@contextmanager
def fitting_in_memory(config: RunConfig | None, device: Any, run: Path | None = None) -> Iterator[None]:
    """Turn an allocation too large for ``device`` (in a plugin factory too) into a UsageError naming the
    options that size the model and its inputs in ``config`` (or the ``run`` whose stored config does)."""
    from mmolre_cli.plugins.contracts import PluginError

    try:
        yield
    except (MemoryError, RuntimeError, TypeError, PluginError) as error:
        cause = error.__cause__ if isinstance(error, PluginError) else error
        if not (isinstance(cause, MemoryError) or any(text in str(cause) for text in _NO_MEMORY)):
            raise
        if config is None:
            raise UsageError(f"{run}: the model and its inputs do not fit in {device} memory") from None
        model, experts = config.model, config.model.experts
        raise UsageError(
            f"--d-model {model.d_model}, --experts shared={experts.shared},rank={experts.rank},type={experts.type}, "
            f"--batch-size {config.train.batch_size}: the model and its inputs do not fit in {device} memory"
        ) from None


def interrupted(how: str, directory: Path) -> None:
    """End an interrupted command with exit code 130, saying how to continue when it left ``directory``."""
    hint = f"; to continue, run {how}" if Path(directory).is_dir() else ""
    sys.stderr.write(f"Interrupted{hint}\n")
    raise typer.Exit(130)


def warn(message: str) -> None:
    err_console.print(f"[yellow]Warning:[/yellow] {escape(message)}", markup=True, highlight=False, soft_wrap=True)


def json_text(values: Any) -> str:
    """``values`` as the indented strict JSON that ``--json`` prints (NaN as null), ending in a newline."""
    from mmolre_cli.training.trainer import json_safe

    return json.dumps(json_safe(values), indent=2) + "\n"


def print_json(values: Any) -> None:
    sys.stdout.write(json_text(values))


def metric_cell(value: float | None, spread: float | None = None) -> str:
    """A metric as a table shows it: four decimals (``± spread`` when given), ``–`` when undefined."""
    if value is None or value != value:
        return "–"
    return f"{value:.4f}" if spread is None else f"{value:.4f} ± {spread:.4f}"


def metrics_table(title: str, columns: Mapping[str, Mapping[str, float]]) -> Table:
    """A table with one row per metric and one column per split (or variant)."""
    table = Table(title=title)
    table.add_column("metric")
    for name in columns:
        table.add_column(name, justify="right")
    for metric in TABLE_METRICS:
        values = [column.get(metric) for column in columns.values()]
        if all(value is None for value in values):
            continue
        table.add_row(metric, *(metric_cell(v) for v in values))
    return table


@dataclass
class GlobalOptions:
    """The options of ``mmolre`` itself, set by the app callback before any command runs."""

    plugins_dir: Path | None = None


global_options = GlobalOptions()


#: Set for the processes ``train --nproc`` starts: their launcher has warned about the plugins that failed.
PLUGINS_WARNED_ENV = "MMOLRE_PLUGINS_WARNED"


def registry():
    """The plugin registry (with ``mmolre --plugins-dir`` when given), warning once about each failed plugin."""
    return _registry(global_options.plugins_dir)


@functools.lru_cache(maxsize=8)
def _registry(plugins_dir: Path | None):
    from mmolre_cli.plugins import load_registry

    loaded = load_registry(plugins_dir)
    if not os.environ.get(PLUGINS_WARNED_ENV):
        for failure in loaded.failures:
            warn(failure.message())
    return loaded


# Model options shared by every command that builds a model (train, profile, ablate).
ExpertsOption = Annotated[
    list[str] | None, typer.Option(help="Shared experts, e.g. shared=4,rank=32,type=lowrank (repeatable).")
]
TopkOption = Annotated[int | None, typer.Option(help="Shared experts each router keeps per utterance.")]
RouterOption = Annotated[str | None, typer.Option(help="Router name (see `mmolre plugins`).")]
FusionOption = Annotated[str | None, typer.Option(help="Fusion name (see `mmolre plugins`).")]
EncoderOption = Annotated[list[str], typer.Option(help="Encoder for all modalities, or MODALITY=NAME (repeatable).")]
TasksOption = Annotated[str | None, typer.Option(help="Comma-separated tasks: sa, er.")]
ModalitiesOption = Annotated[str | None, typer.Option(help="Comma-separated modalities (default: all in the data).")]
DModelOption = Annotated[int | None, typer.Option("--d-model", help="Model width d.")]
DeterministicOption = Annotated[
    bool | None,
    typer.Option(
        "--deterministic/--no-deterministic",
        help="Deterministic kernels only: torch, cuDNN and cuBLAS (slower on GPU; docs/reliability.md).",
    ),
]

# Tracking options of the commands that train (train, ablate, tune).
TrackingUriOption = Annotated[
    str | None,
    typer.Option(
        "--tracking-uri",
        help="MLflow tracking URI, or 'run' for a store inside the output directory "
        "(default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the working directory).",
    ),
]
NoTrackOption = Annotated[bool, typer.Option("--no-track", help="Do not log to MLflow.")]
