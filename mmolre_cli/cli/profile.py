"""``mmolre profile``: parameters, MACs/FLOPs (executed and active) and measured speed per configuration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from mmolre_cli.cli.common import (
    DModelOption,
    EncoderOption,
    ExpertsOption,
    FusionOption,
    ModalitiesOption,
    RouterOption,
    TasksOption,
    TopkOption,
    console,
    err_console,
    fitting_in_memory,
    print_json,
    registry,
    user_errors,
)
from mmolre_cli.cli.train import cli_overrides
from mmolre_cli.config import RunConfig, build_config, check_components, deep_merge, merged_values
from mmolre_cli.errors import UsageError
from mmolre_cli.plugins.contracts import PluginError

_PREFIXES = ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))


def human(value: float | None, unit: str = "") -> str:
    """``2460000000, "FLOP"`` → ``2.46 GFLOP``; None → ``–``."""
    if value is None:
        return "–"
    for scale, prefix in _PREFIXES:
        if abs(value) >= scale:
            return f"{value / scale:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}".rstrip()


def configurations(
    base: dict[str, Any], compare: list[str], source: str, device: str
) -> list[tuple[str, dict, RunConfig]]:
    """One config per combination of the ``--compare`` values, checked for profiling on ``device``:
    (label, settings, config)."""
    from mmolre_cli.profiling import compare_grid, parse_compare, settings_overrides

    out = []
    for settings in compare_grid(parse_compare(compare)):
        label = ", ".join(f"{k}={v}" for k, v in settings.items()) or "configured"
        where = f"--compare {label}" if settings else source
        config = build_config(deep_merge(base, settings_overrides(settings)), source=where)
        try:
            check_components(config, registry(), device)
        except PluginError as error:  # a plugin component off its contract at this configuration's sizes
            if not settings:
                raise
            raise PluginError(f"{where}: {error}") from None
        out.append((label, settings, config))
    return out


def describe(report: dict[str, Any]) -> str:
    data = report["data"]
    inputs = ", ".join(f"{m} {d}×{data['lengths'][m]}" for m, d in data["input_dims"].items())
    threads = f" (threads: {report['threads']})" if report.get("threads") else ""
    return (
        f"data: {data['source']} ({inputs}) · device {report['device']}{threads} · {report['precision']} · "
        f"batch {report['batch_size']}"
    )


def detail_tables(row: dict[str, Any]) -> list[Table]:
    """Parameters by component, UniTSE per modality and block, and compute per pass."""
    parameters, forward = row["parameters"], row["flops"]["forward"]
    table = Table(title=f"Parameters — {row['label']}")
    for column, justify in (("component", "left"), ("parameters", "right"), ("share", "right")):
        table.add_column(column, justify=justify)
    total = parameters["total"]
    for group, count in parameters["by_group"].items():
        if count or group != "other":
            table.add_row(group.replace("_", " "), f"{count:,}", f"{100 * count / total:.1f} %")
        if group == "encoders":
            for modality, own in parameters["encoders"].items():
                table.add_row(f"  {modality}", f"{own:,}", f"{100 * own / total:.1f} %")
    table.add_row("total", f"{total:,}", "", style="bold")
    table.add_row("trainable", f"{parameters['trainable']:,}", "")
    table.add_row("active per utterance", f"{parameters['active_per_utterance']:,}", "")
    tables = [table]

    if parameters["unitse"]:
        unitse = Table(title="UniTSE per modality and block (parameters; forward FLOPs at batch 1)")
        for column in ("modality", "block", "shared experts", "task-specific", "routers", "norms", "total", "FLOPs"):
            unitse.add_column(column, justify="left" if column == "modality" else "right")
        for modality, blocks in parameters["unitse"].items():
            for block, flops in zip(blocks, forward["unitse"].get(modality, [{}] * len(blocks)), strict=True):
                unitse.add_row(
                    modality, str(block["block"]), *(f"{block[k]:,}" for k in
                    ("shared_experts", "specific_experts", "routers", "unitse_norms", "total")),
                    human(flops.get("total"), "FLOP"),
                )  # fmt: skip
        tables.append(unitse)

    compute = Table(title="Compute (counted by FlopCounterMode; active = the shared experts routes chose)")
    columns = ("pass", "batch", "executed", "active", "median latency", "throughput", "achieved")
    for column in columns:
        compute.add_column(column, justify="left" if column == "pass" else "right")
    timing = row["timing"] or {}
    names = {"forward": "forward", "forward_batch": "forward", "train_step": "training step"}
    for key, name in names.items():
        counted, measured = row["flops"][key], timing.get(key)
        compute.add_row(
            name, str(counted["batch_size"]),
            f"{human(counted['executed']['macs'], 'MAC')}\n{human(counted['executed']['flops'], 'FLOP')}",
            f"{human(counted['active']['macs'], 'MAC')}\n{human(counted['active']['flops'], 'FLOP')}",
            f"{measured['median_ms']:.2f} ms" if measured else "–",
            f"{measured['throughput_per_s']:.1f} utt/s" if measured else "–",
            human(measured["achieved_flops_per_s"], "FLOP/s") if measured else "–",
        )  # fmt: skip
    tables.append(compute)
    return tables


def compare_table(rows: list[dict[str, Any]]) -> Table:
    """One row per configuration; each cell the value over its ratio to the first row."""
    from mmolre_cli.profiling import summary

    table = Table(title="Configurations (value, then ratio to the first row)")
    columns = ("configuration", "params", "active\nparams", "forward b1\nFLOP", "forward b1\nactive FLOP",
               "train step\nFLOP", "train step\nactive FLOP", "forward b1\nms", "train step\nms")  # fmt: skip
    table.add_column(columns[0], min_width=14, overflow="fold")
    for column in columns[1:]:
        table.add_column(column, justify="right")
    keys = ("parameters", "active_parameters", "forward_flops", "forward_active_flops", "train_flops",
            "train_active_flops", "forward_ms", "train_step_ms")  # fmt: skip
    for row in rows:
        figures, ratio = summary(row), row["ratios"]
        cells = [
            "–" if figures[key] is None
            else f"{figures[key]:.1f}\n×{ratio[key]:.2f}" if key.endswith("_ms")
            else f"{human(figures[key])}\n×{ratio[key]:.2f}"
            for key in keys
        ]  # fmt: skip
        table.add_row("\n".join(f"{k}={v}" for k, v in row["settings"].items()) or row["label"], *cells)
    return table


def print_report(report: dict[str, Any]) -> None:
    console.print(describe(report), highlight=False)
    rows = report["rows"]
    if len(rows) == 1:
        for table in detail_tables(rows[0]):
            console.print(table)
    else:
        console.print(compare_table(rows))
    for row in rows:
        macs, expert = row["check"]["experts_routers_forward_macs"], row["check"]["parameters_per_expert"]
        parts = []
        if macs["relative_error"] is not None:
            parts.append(
                f"experts + routers, forward b1: counter {human(macs['counted'], 'MAC')}, formula "
                f"{human(macs['formula'], 'MAC')} ({100 * macs['relative_error']:.2f} % apart)"
            )
        if expert["formula"] is not None:
            parts.append(f"one expert: {expert['counted']:,} parameters, formula 4·d·h + h + d = {expert['formula']:,}")
        if parts:
            console.print(f"check ({row['label']}): " + "; ".join(parts), highlight=False)
    notes = dict.fromkeys(note for row in rows for note in row["not_counted"])
    for note in notes:
        console.print(f"[yellow]note:[/yellow] {escape(note)}", markup=True, highlight=False)
    if report.get("plot"):
        console.print(f"plot: {report['plot']['file']}")


@user_errors
def profile(
    data: Path | None = typer.Option(None, help="Prepared HDF5 file to take feature sizes and lengths from."),
    like: str | None = typer.Option(None, help="Shapes of a dataset instead of a file: mosi or mosei (default)."),
    config: Path | None = typer.Option(None, "--config", help="YAML config; flags override it."),
    experts: ExpertsOption = None,
    topk: TopkOption = None,
    router: RouterOption = None,
    fusion: FusionOption = None,
    encoder: EncoderOption = None,
    tasks: TasksOption = None,
    modalities: ModalitiesOption = None,
    d_model: DModelOption = None,
    batch_size: int | None = typer.Option(None, "--batch-size", help="Batch size of the training step."),
    compare: list[str] = typer.Option(
        [], help="KEY=V1,V2,... one row per value, e.g. type=lowrank,dense (repeatable: every combination)."
    ),
    plot: Path | None = typer.Option(None, help="Save parameters and FLOPs vs number of experts, lowrank vs dense."),
    device: str | None = typer.Option(None, help="cpu or cuda (default: cuda when present)."),
    threads: int | None = typer.Option(None, min=1, help="CPU threads for torch (default: torch's choice)."),
    precision: str | None = typer.Option(None, help="fp32 (default), bf16 or fp16: autocast of the timed passes."),
    repeats: int = typer.Option(10, min=0, help="Timed repeats per pass (median reported); 0 skips timing."),
    warmup: int = typer.Option(3, min=0, help="Untimed calls before timing."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Count parameters and FLOPs of MMoLRE configurations and time them on this machine."""
    import torch

    from mmolre_cli.data.shapes import like_shapes, read_shapes
    from mmolre_cli.profiling import (
        check_plot_path,
        expert_scaling,
        profile_configuration,
        ratios,
        resolve_device,
        save_plot,
    )

    if plot is not None:
        check_plot_path(plot)
    overrides = cli_overrides(
        data=data, experts=experts, topk=topk, router=router, fusion=fusion, encoder=encoder, tasks=tasks,
        modalities=modalities, d_model=d_model, epochs=None, batch_size=batch_size, lr=None, seed=None, device=None,
        precision=precision,
    )  # fmt: skip
    target = resolve_device(device)
    runs = configurations(merged_values(config, overrides), compare, str(config) if config else "options", str(target))
    data_file = runs[0][2].data
    if data_file and like is not None:
        raise UsageError("--like: give either --data or --like, not both")
    shapes = read_shapes(data_file) if data_file else like_shapes("mosei" if like is None else like)
    if threads is not None:
        torch.set_num_threads(threads)

    rows = []
    for label, settings, run_config in runs:
        if err_console.is_terminal:
            err_console.print(f"profiling {label} …", highlight=False)
        with fitting_in_memory(run_config, target):
            row = profile_configuration(run_config, shapes, registry(), device=target, repeats=repeats, warmup=warmup)
        rows.append({"label": label, "settings": settings, **row})
    for row, ratio in zip(rows, ratios(rows), strict=True):
        row["ratios"] = ratio
    report: dict[str, Any] = {
        "data": shapes.to_dict(),
        "device": str(target),
        "threads": torch.get_num_threads() if target.type == "cpu" else None,
        "precision": runs[0][2].train.precision,
        "batch_size": runs[0][2].train.batch_size,
        "rows": rows,
    }
    if plot is not None:
        model = runs[0][2].model
        with fitting_in_memory(runs[0][2], "cpu"):
            points = expert_scaling(model, shapes, registry())
        title = f"d={model.d_model}, rank={model.experts.rank}, top-k={model.topk} (capped at N), {shapes.source}"
        save_plot(points, plot, title)
        report["plot"] = {"file": str(plot), "points": points}
    if json_output:
        print_json(report)
    else:
        print_report(report)
