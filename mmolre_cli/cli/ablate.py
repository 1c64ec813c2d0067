"""``mmolre ablate``: the full model beside its removals, baselines and parameter-grid points."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from mmolre_cli.ablation.variants import BASELINES, REMOVALS, parse_grid, parse_names, plan_variants
from mmolre_cli.cli.common import (
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
    interrupted,
    print_json,
    registry,
    user_errors,
    warn,
)
from mmolre_cli.cli.scale import (
    CpusPerJobOption,
    ExecutorOption,
    GpusPerJobOption,
    RayAddressOption,
    executor_from_options,
)
from mmolre_cli.cli.train import cli_overrides
from mmolre_cli.config import merged_values
from mmolre_cli.errors import UsageError

#: The metrics the terminal table shows; results.csv and results.json hold all of them.
TABLE_COLUMNS = ("Non0_acc_2", "Non0_F1", "Acc_7", "MAE", "Corr", "WA_mean", "F1w_mean")
REMOVE_HELP = f"Parts to remove, one variant each (repeatable, comma lists): {', '.join(REMOVALS)}."
BASELINE_HELP = f"Baselines to train beside the full model (repeatable, comma lists): {', '.join(BASELINES)}."


def _cell(mean: float | None, std: float | None, delta: float | None, higher_better: bool, reference: bool) -> Text:
    if mean is None:
        return Text("–")
    text = Text(f"{mean:.3f}" + (f" ±{std:.3f}" if std is not None else ""))
    if reference or delta is None:
        return text
    colour = "dim" if delta == 0 else "green" if (delta > 0) == higher_better else "red"
    return text.append(f"\nΔ {delta:+.3f}", style=colour)


def _variant_cell(variant: dict[str, Any], reference: bool) -> Text:
    """The variant's name, and below it the seeds whose training diverged (its metrics are those of the epoch
    selected before)."""
    text = Text(variant["name"], style="bold" if reference else "")
    diverged = variant.get("diverged_seeds") or []  # absent from results.json written before it was recorded
    if diverged:
        seeds = ", ".join(map(str, diverged))
        text.append(f"\ndiverged: seed{'s' if len(diverged) > 1 else ''} {seeds}", style="yellow")
    return text


def results_table(summary: dict[str, Any]) -> Table:
    """One row per variant: test mean ± std over seeds and, below, the difference to the reference
    (green: better, red: worse); a variant whose training diverged for some seeds says so under its name."""
    from mmolre_cli.metrics import higher_is_better

    variants = summary["variants"]
    columns = [m for m in TABLE_COLUMNS if any(v["mean"].get(m) is not None for v in variants)]
    seeds = len(summary["seeds"])
    table = Table(title=f"Ablation: test metrics, mean ± std over {seeds} seed{'s' if seeds > 1 else ''}")
    table.add_column("variant", no_wrap=True, min_width=max(len(v["name"]) for v in variants))
    table.add_column("params", justify="right")
    for metric in columns:
        table.add_column(f"{metric} {'↑' if higher_is_better(metric) else '↓'}", justify="right")
    for variant in variants:
        reference = variant["name"] == summary["reference"]
        mean, std, delta = variant["mean"], variant["std"], variant["delta"]
        cells = [_cell(mean.get(m), std.get(m), delta.get(m), higher_is_better(m), reference) for m in columns]
        table.add_row(_variant_cell(variant, reference), f"{variant['n_parameters']:,}", *cells)
    table.caption = f"reference (bold): {summary['reference']}; Δ = variant − reference"
    if any(variant.get("diverged_seeds") for variant in variants):
        table.caption += "; diverged: the training loss became non-finite, metrics are of the epoch selected before"
    return table


@user_errors
def ablate(
    ctx: typer.Context,
    remove: list[str] = typer.Option([], help=REMOVE_HELP),
    baseline: list[str] = typer.Option([], help=BASELINE_HELP),
    grid: list[str] = typer.Option(
        [], help="Parameter study KEY=V1,V2 (repeatable), e.g. shared=1,2,4 topk=1,2; two keys draw a heatmap."
    ),
    seeds: str = typer.Option("1,2,3", help="Comma-separated seeds; every variant trains once per seed."),
    jobs: int = typer.Option(1, min=1, help="Variants trained in parallel processes (--executor local)."),
    executor: ExecutorOption = "local",
    ray_address: RayAddressOption = None,
    cpus_per_job: CpusPerJobOption = 1.0,
    gpus_per_job: GpusPerJobOption = 0.0,
    data: Path | None = typer.Option(None, help="Prepared HDF5 file (default: the built-in synthetic dataset)."),
    config: Path | None = typer.Option(None, "--config", help="YAML config of the full model; flags override it."),
    experts: ExpertsOption = None,
    topk: TopkOption = None,
    router: RouterOption = None,
    fusion: FusionOption = None,
    encoder: EncoderOption = None,
    tasks: TasksOption = None,
    modalities: ModalitiesOption = None,
    d_model: DModelOption = None,
    epochs: int | None = typer.Option(
        None, help="Maximum epochs (early stopping on train.select, the validation loss by default)."
    ),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Mini-batch size."),
    lr: float | None = typer.Option(None, help="Learning rate (AdamW)."),
    device: str | None = typer.Option(None, help="Torch device, e.g. cpu or cuda."),
    deterministic: DeterministicOption = None,
    out: Path | None = typer.Option(
        None, help="Output directory (default: ablations/<date>-<time>); rerunning into it resumes."
    ),
    tracking_uri: TrackingUriOption = None,
    no_track: NoTrackOption = False,
    json_output: bool = typer.Option(False, "--json", help="Print the summary (results.json) instead of the table."),
) -> None:
    """Train the full model and each variant under the same data, seeds and budget, and compare them."""
    from mmolre_cli.ablation.study import run_ablation
    from mmolre_cli.training.seeds import parse_seeds
    from mmolre_cli.training.tracking import tracking_uri as resolve_tracking_uri

    removals = parse_names(remove, "--remove", tuple(REMOVALS))
    baselines = parse_names(baseline, "--baseline", BASELINES)
    study = parse_grid(grid)
    if not (removals or baselines or study):
        raise UsageError("nothing to compare: give --remove, --baseline or --grid")
    seed_list = parse_seeds(seeds)
    overrides = cli_overrides(
        data=data, experts=experts, topk=topk, router=router, fusion=fusion, encoder=encoder, tasks=tasks,
        modalities=modalities, d_model=d_model, epochs=epochs, batch_size=batch_size, lr=lr, seed=None,
        device=device, deterministic=deterministic,
    )  # fmt: skip
    plan = plan_variants(merged_values(config, overrides), removals, baselines, study, registry())
    if len(plan.variants) == 1:
        raise UsageError(f"nothing to compare: {'; '.join(plan.notes) or 'the grid holds the full model alone'}")
    for note in plan.notes:
        err_console.print(f"[cyan]Note:[/cyan] {escape(note)}", markup=True, highlight=False, soft_wrap=True)
    out_dir = out or Path("ablations") / time.strftime("%Y%m%d-%H%M%S")
    uri = None if no_track else resolve_tracking_uri(tracking_uri, out_dir)

    from mmolre_cli.cli.ablate_progress import AblationProgress

    runner = executor_from_options(executor, jobs, ray_address, cpus_per_job, gpus_per_job)
    with AblationProgress(plan, seed_list, err_console) as progress:
        try:
            summary = run_ablation(
                plan, seed_list, out_dir, registry(), executor=runner,
                plugins_dir=ctx.find_root().params.get("plugins_dir"), tracking_uri=uri, warn=warn,
                on_part=progress.on_part, on_epoch=progress.on_epoch,
            )  # fmt: skip
        except KeyboardInterrupt:
            interrupted("the same command (finished runs are kept)", out_dir)
        finally:
            runner.close()
    if json_output:
        print_json(summary)
        return
    console.print(results_table(summary))
    for name, reason in summary["failed"].items():
        warn(f"{name} failed ({reason}) and is not in the table; rerun the same command to train it")
    console.print(f"results: {out_dir}")
    if uri:
        console.print(f"MLflow parent run at {uri}")
