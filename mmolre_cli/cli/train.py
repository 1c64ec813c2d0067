"""``mmolre train``: train MMoLRE (for one seed or several, in one process or several) and print its test metrics."""

from __future__ import annotations

import functools
import io
import os
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.table import Table

from mmolre_cli.cli.common import (
    PLUGINS_WARNED_ENV,
    TABLE_METRICS,
    DeterministicOption,
    DModelOption,
    EncoderOption,
    ExpertsOption,
    FusionOption,
    ModalitiesOption,
    NoTrackOption,
    RouterOption,
    TasksOption,
    TopkOption,
    TrackingUriOption,
    console,
    err_console,
    fitting_in_memory,
    global_options,
    interrupted,
    json_text,
    metric_cell,
    metrics_table,
    registry,
    user_errors,
    warn,
)
from mmolre_cli.config import (
    NORMALIZE,
    PRECISIONS,
    SCHEDULES,
    RunConfig,
    build_config,
    check_components,
    check_device,
    merged_values,
    parse_encoders,
    parse_experts,
    parse_list,
    save_yaml,
)
from mmolre_cli.errors import UsageError

#: The plain-text record of what ``train`` showed, in the run directory.
LOG_NAME = "train.log"

if TYPE_CHECKING:
    from mmolre_cli.training.seeds import SeedsResult
    from mmolre_cli.training.trainer import RunResult


def cli_overrides(
    *,
    data: Path | None,
    experts: list[str] | None,
    topk: int | None,
    router: str | None,
    fusion: str | None,
    encoder: list[str] | None,
    tasks: str | None,
    modalities: str | None,
    d_model: int | None,
    epochs: int | None,
    batch_size: int | None,
    lr: float | None,
    seed: int | None,
    device: str | None,
    weight_decay: float | None = None,
    patience: int | None = None,
    grad_clip: float | None = None,
    select: str | None = None,
    schedule: str | None = None,
    warmup_epochs: int | None = None,
    precision: str | None = None,
    tune_thresholds: bool | None = None,
    deterministic: bool | None = None,
    normalize: str | None = None,
    encoder_lr: float | None = None,
) -> dict[str, Any]:
    """The flags a user gave, as a partial config (flags left out do not override the file)."""
    model: dict[str, Any] = {
        "topk": topk,
        "router": router,
        "fusion": fusion,
        "d_model": d_model,
        "normalize": normalize,
        "tasks": parse_list(tasks, "--tasks") if tasks is not None else None,
        "modalities": parse_list(modalities, "--modalities") if modalities is not None else None,
    }
    model = {key: value for key, value in model.items() if value is not None}
    if experts:
        model["experts"] = parse_experts(experts)
    model.update(parse_encoders(encoder or []))
    train = {
        "epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed, "device": device,
        "weight_decay": weight_decay, "patience": patience, "grad_clip": grad_clip, "select": select,
        "schedule": schedule, "warmup_epochs": warmup_epochs, "precision": precision,
        "tune_thresholds": tune_thresholds, "deterministic": deterministic, "encoder_lr": encoder_lr,
    }  # fmt: skip
    overrides: dict[str, Any] = {"model": model, "train": {k: v for k, v in train.items() if v is not None}}
    if data is not None:
        overrides["data"] = str(data)
    return overrides


def longest_sequence(config: RunConfig) -> int:
    """The longest sequence, in frames, of the data ``config`` trains on (read without the features)."""
    from mmolre_cli.data.shapes import like_shapes, read_shapes
    from mmolre_cli.data.synthetic import BUILTIN_LIKE

    shapes = read_shapes(config.data) if config.data else like_shapes(BUILTIN_LIKE)
    return max(shapes.lengths.values())


def default_run_dir() -> Path:
    """``runs/<date>-<time>``, with a counter when that name is taken."""
    base = Path("runs") / time.strftime("%Y%m%d-%H%M%S")
    candidate, counter = base, 1
    while candidate.exists():
        counter += 1
        candidate = base.with_name(f"{base.name}-{counter}")
    return candidate


def spread_table(
    title: str,
    mean: Mapping[str, Mapping[str, float]],
    std: Mapping[str, Mapping[str, float]],
    trivial: Mapping[str, float] | None = None,
) -> Table:
    """A table with one row per metric, one ``mean ± std`` column per split and, when given, the trivial
    predictor's test metrics (the same for every seed: it depends on the data only)."""
    table = Table(title=title)
    table.add_column("metric")
    for name in mean:
        table.add_column(f"{name} (mean ± std)", justify="right")
    if trivial is not None:
        table.add_column("trivial (test)", justify="right")
    for metric in TABLE_METRICS:
        cells = [metric_cell(mean[split].get(metric), std[split].get(metric)) for split in mean]
        if all(cell == "–" for cell in cells):
            continue
        if trivial is not None:
            cells.append(metric_cell(trivial.get(metric)))
        table.add_row(metric, *cells)
    return table


def relaunch(
    nproc: int,
    run_config: RunConfig | None,
    run_dir: Path,
    seeds: str | None,
    resume: Path | None,
    uri: str | None,
    json_output: bool,
) -> None:
    """Run this command again in ``nproc`` processes under torchrun, with the resolved config (or ``--resume``),
    and exit with their code. A new run's data, model and run directory are checked here first."""
    from mmolre_cli.training.distributed import launch
    from mmolre_cli.training.seeds import check_model_builds
    from mmolre_cli.training.trainer import check_run_dir

    registry()  # warns here about failed plugins, once: the workers' registries fail alike and stay quiet
    if resume is None:
        check_model_builds(run_config, registry())
        check_run_dir(run_dir)
    plugins_dir = global_options.plugins_dir
    prefix = ["--plugins-dir", str(plugins_dir)] if plugins_dir else []
    tracking = ["--no-track"] if uri is None else ["--tracking-uri", uri]
    with tempfile.TemporaryDirectory(prefix="mmolre-launch-") as temporary:
        if resume is not None:
            arguments = ["train", "--resume", str(resume)]
        else:
            config_file = Path(temporary) / "config.yaml"
            save_yaml(run_config, config_file)
            arguments = ["train", "--config", str(config_file), "--out", str(run_dir)]
            arguments += ["--seeds", seeds] if seeds else []
        os.environ[PLUGINS_WARNED_ENV] = "1"  # the workers inherit it
        try:
            code = launch(nproc, [*prefix, *arguments, *tracking, *(["--json"] if json_output else [])])
        finally:
            del os.environ[PLUGINS_WARNED_ENV]
    if code:
        raise typer.Exit(code)


@user_errors
def train(
    data: Path | None = typer.Option(None, help="Prepared HDF5 file (default: the built-in synthetic dataset)."),
    config: Path | None = typer.Option(None, "--config", help="YAML config; flags override it."),
    experts: ExpertsOption = None,
    topk: TopkOption = None,
    router: RouterOption = None,
    fusion: FusionOption = None,
    encoder: EncoderOption = None,
    tasks: TasksOption = None,
    modalities: ModalitiesOption = None,
    d_model: DModelOption = None,
    normalize: str | None = typer.Option(
        None,
        help=f"Input features before the encoders: {', '.join(NORMALIZE)} (default feature: z-scores per feature "
        "from the training split).",
    ),
    epochs: int | None = typer.Option(None, help="Maximum epochs (early stopping on the --select metric)."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Mini-batch size (over all processes)."),
    lr: float | None = typer.Option(None, help="Learning rate (AdamW)."),
    encoder_lr: float | None = typer.Option(
        None, "--encoder-lr", help="Learning rate of the pretrained hf_text/hf_audio encoders (default: --lr)."
    ),
    weight_decay: float | None = typer.Option(None, "--weight-decay", help="AdamW weight decay."),
    schedule: str | None = typer.Option(None, help=f"Learning-rate schedule: {', '.join(SCHEDULES)}."),
    warmup_epochs: int | None = typer.Option(None, "--warmup-epochs", help="Linear warm-up epochs of 'cosine'."),
    grad_clip: float | None = typer.Option(None, "--grad-clip", help="Max gradient norm (0: no clipping)."),
    select: str | None = typer.Option(
        None, help="Validation metric that selects the checkpoint, e.g. loss, Non0_acc_2, WA_mean."
    ),
    patience: int | None = typer.Option(None, help="Epochs without improvement of --select before stopping."),
    precision: str | None = typer.Option(None, help=f"Forward precision: {', '.join(PRECISIONS)} (fp16: CUDA only)."),
    tune_thresholds: bool | None = typer.Option(
        None, "--tune-thresholds/--no-tune-thresholds", help="Tune MER thresholds on the validation split."
    ),
    seed: int | None = typer.Option(None, help="Random seed."),
    deterministic: DeterministicOption = None,
    seeds: str | None = typer.Option(
        None, help="Comma-separated seeds: one model each in <out>/seed-<n>/, reported as mean ± std."
    ),
    device: str | None = typer.Option(None, help="Torch device, e.g. cpu or cuda."),
    nproc: int | None = typer.Option(None, help="Train data-parallel in this many local processes (torchrun)."),
    out: Path | None = typer.Option(None, help="Run directory (default: runs/<date>-<time>)."),
    resume: Path | None = typer.Option(
        None, help="Continue the interrupted run in this directory, tracked where it was (or not, after --no-track)."
    ),
    tracking_uri: TrackingUriOption = None,
    no_track: NoTrackOption = False,
    json_output: bool = typer.Option(False, "--json", help="Print the final metrics as JSON."),
) -> None:
    """Train MMoLRE, select on the validation split, and report the selected checkpoint's test metrics."""
    from mmolre_cli.training.seeds import interrupted_checkpoint, parse_seeds, resumed_tracking_uri
    from mmolre_cli.training.tracking import tracking_uri as resolve_tracking_uri

    overrides = cli_overrides(
        data=data, experts=experts, topk=topk, router=router, fusion=fusion, encoder=encoder, tasks=tasks,
        modalities=modalities, d_model=d_model, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
        device=device, weight_decay=weight_decay, patience=patience, grad_clip=grad_clip, select=select,
        schedule=schedule, warmup_epochs=warmup_epochs, precision=precision, tune_thresholds=tune_thresholds,
        deterministic=deterministic,
        normalize=normalize,
        encoder_lr=encoder_lr,
    )  # fmt: skip
    seed_list = parse_seeds(seeds) if seeds is not None else None
    if seed_list and seed is not None:
        raise UsageError("--seed and --seeds: give one (--seeds trains one model per seed)")
    if resume is not None:
        given = config or out or seeds or seed is not None or overrides != {"model": {}, "train": {}}
        if given:
            raise UsageError(
                "--resume continues a run with its stored config and seeds: give no other training options"
            )
        run_config, run_dir = None, resume
    else:
        run_config = build_config(merged_values(config, overrides), source=str(config) if config else "options")
        check_device(run_config.train.device)  # first: the plugin components are checked on it
        check_components(run_config, registry(), frames=longest_sequence(run_config))
        run_dir = out or default_run_dir()
    if nproc is not None and nproc < 1:
        raise UsageError(f"--nproc: must be at least 1, got {nproc}")
    last = interrupted_checkpoint(resume) if resume is not None and not nproc else None  # read once, used twice
    if resume is not None and not no_track and tracking_uri is None:
        uri = resumed_tracking_uri(resume, last)
    else:
        uri = None if no_track else resolve_tracking_uri(tracking_uri, run_dir)
    device = run_config.train.device if run_config is not None else "the run's device"
    if nproc:
        with fitting_in_memory(run_config, device, resume):  # the launcher builds the model once to check it
            relaunch(nproc, run_config, run_dir, seeds, resume, uri, json_output)
        return

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from mmolre_cli.training.distributed import shutdown
    from mmolre_cli.training.seeds import resume_run, train_seeds
    from mmolre_cli.training.trainer import train_run

    main = int(os.environ.get("RANK", "0")) == 0  # under torchrun only rank 0 prints
    log = TerminalLog(run_dir / LOG_NAME if main else None)

    def warn_and_log(message: str) -> None:
        warn(message)
        log.add(f"Warning: {message}")

    columns = (TextColumn("[bold]training"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err_console, disable=not (main and err_console.is_terminal), transient=True) as bar:
        task = bar.add_task("train", total=None)

        def on_epoch(seed_of_run: int, summary: dict[str, float]) -> None:
            label = f"seed {seed_of_run}  " if seed_list or resume else ""
            line = (
                f"{label}epoch {summary['epoch']:>3}  train loss {summary['train_loss']:.4f}  "
                f"valid loss {summary['valid_loss']:.4f}  ({summary['seconds']:.1f} s)"
            )
            log.add(line)
            if main and not json_output:
                err_console.print(line, highlight=False)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        options = {"tracking_uri": uri, "progress": progress, "warn": warn_and_log}
        try:
            with fitting_in_memory(run_config, device, resume):
                if resume is not None:
                    result = resume_run(resume, registry(), on_epoch=on_epoch, last=last, **options)
                elif seed_list:
                    result = train_seeds(run_config, seed_list, run_dir, registry(), on_epoch=on_epoch, **options)
                else:
                    one_seed = functools.partial(on_epoch, run_config.train.seed)
                    result = train_run(run_config, run_dir, registry(), on_epoch=one_seed, **options)
        except KeyboardInterrupt:
            interrupted(f"mmolre train --resume {resume or run_dir}", resume or run_dir)
        finally:
            shutdown()
    if main:
        report(result, uri, json_output, log)


class TerminalLog:
    """What ``train`` shows, appended as plain text to ``path`` (``<run dir>/train.log``; None: nowhere). Lines
    wait until the run has created its directory, so that a run that cannot start leaves no file behind."""

    def __init__(self, path: Path | None):
        self.path, self.pending = path, []

    def add(self, text: str) -> None:
        if self.path is None:
            return
        self.pending.append(text.rstrip("\n") + "\n")
        if self.path.parent.is_dir():
            with open(self.path, "a", encoding="utf-8") as file:
                file.writelines(self.pending)
            self.pending.clear()

    def show(self, renderable: Any) -> None:
        """Print ``renderable`` (text or a rich table) on stdout, and add it to the log as plain text."""
        console.print(renderable)
        if self.path is not None:
            plain = Console(file=io.StringIO(), width=console.width, color_system=None, markup=False)
            plain.print(renderable)
            self.add(plain.file.getvalue())


def report(result: RunResult | SeedsResult, uri: str | None, json_output: bool, log: TerminalLog) -> None:
    """Print a finished run, and add it to its log: one model's metrics, or mean ± std over seeds."""
    from mmolre_cli.training.seeds import SeedsResult

    def show_json(values: dict[str, Any]) -> None:
        log.add(json_text(values))
        sys.stdout.write(json_text(values))

    if isinstance(result, SeedsResult):
        if json_output:
            show_json(
                {
                    "run_dir": str(result.run_dir),
                    "seeds": [run.seed for run in result.runs],
                    "mean": result.mean,
                    "std": result.std,
                    "runs": {str(run.seed): run.metrics for run in result.runs},
                    "trivial_test": result.runs[0].trivial_test,
                }
            )
            return
        title = f"MMoLRE — {len(result.runs)} seeds ({', '.join(str(run.seed) for run in result.runs)})"
        log.show(spread_table(title, result.mean, result.std, result.runs[0].trivial_test))
    elif json_output:
        show_json(
            {
                "run_dir": str(result.run_dir),
                "selected_epoch": result.selected_epoch,
                **result.metrics,
                "trivial_test": result.trivial_test,
            }
        )
        return
    else:
        columns = {**result.metrics, "trivial (test)": result.trivial_test}
        log.show(metrics_table(f"MMoLRE — selected epoch {result.selected_epoch}", columns))
    log.show(f"run directory: {result.run_dir}")
    if result.tracking_run_id:
        log.show(f"MLflow run {result.tracking_run_id} at {uri}")
