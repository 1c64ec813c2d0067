"""``mmolre train``: train one MMoLRE model and print its test metrics."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer

from mmolre_cli.cli.common import console, err_console, metrics_table, print_json, registry, user_errors, warn
from mmolre_cli.config import (
    build_config,
    check_components,
    deep_merge,
    load_yaml,
    parse_encoders,
    parse_experts,
    parse_list,
)


def cli_overrides(
    *,
    data: Path | None,
    experts: list[str],
    topk: int | None,
    router: str | None,
    fusion: str | None,
    encoder: list[str],
    tasks: str | None,
    modalities: str | None,
    d_model: int | None,
    epochs: int | None,
    batch_size: int | None,
    lr: float | None,
    seed: int | None,
    device: str | None,
) -> dict[str, Any]:
    """The flags a user gave, as a partial config (flags left out do not override the file)."""
    model: dict[str, Any] = {
        "topk": topk,
        "router": router,
        "fusion": fusion,
        "d_model": d_model,
        "tasks": parse_list(tasks, "--tasks") if tasks else None,
        "modalities": parse_list(modalities, "--modalities") if modalities else None,
    }
    model = {key: value for key, value in model.items() if value is not None}
    if experts:
        model["experts"] = parse_experts(experts)
    model.update(parse_encoders(encoder))
    train = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed, "device": device}
    overrides: dict[str, Any] = {"model": model, "train": {k: v for k, v in train.items() if v is not None}}
    if data is not None:
        overrides["data"] = str(data)
    return overrides


def default_run_dir() -> Path:
    """``runs/<date>-<time>``, with a counter when that name is taken."""
    base = Path("runs") / time.strftime("%Y%m%d-%H%M%S")
    candidate, counter = base, 1
    while candidate.exists():
        counter += 1
        candidate = base.with_name(f"{base.name}-{counter}")
    return candidate


@user_errors
def train(
    data: Path | None = typer.Option(None, help="Prepared HDF5 file (default: the built-in synthetic dataset)."),
    config: Path | None = typer.Option(None, "--config", help="YAML config; flags override it."),
    experts: list[str] = typer.Option([], help="Shared experts, e.g. shared=4,rank=32,type=lowrank (repeatable)."),
    topk: int | None = typer.Option(None, help="Shared experts each router keeps per utterance."),
    router: str | None = typer.Option(None, help="Router name (see `mmolre plugins`)."),
    fusion: str | None = typer.Option(None, help="Fusion name (see `mmolre plugins`)."),
    encoder: list[str] = typer.Option([], help="Encoder for all modalities, or MODALITY=NAME (repeatable)."),
    tasks: str | None = typer.Option(None, help="Comma-separated tasks: sa, er."),
    modalities: str | None = typer.Option(None, help="Comma-separated modalities (default: all in the data)."),
    d_model: int | None = typer.Option(None, "--d-model", help="Model width d."),
    epochs: int | None = typer.Option(None, help="Maximum epochs (early stopping on validation loss)."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Mini-batch size."),
    lr: float | None = typer.Option(None, help="Learning rate (AdamW)."),
    seed: int | None = typer.Option(None, help="Random seed."),
    device: str | None = typer.Option(None, help="Torch device, e.g. cpu or cuda."),
    out: Path | None = typer.Option(None, help="Run directory (default: runs/<date>-<time>)."),
    tracking_uri: str | None = typer.Option(
        None, "--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///<out>/mlflow.db)."
    ),
    no_track: bool = typer.Option(False, "--no-track", help="Do not log to MLflow."),
    json_output: bool = typer.Option(False, "--json", help="Print the final metrics as JSON."),
) -> None:
    """Train MMoLRE, select on the validation split, and report the selected checkpoint's test metrics."""
    from mmolre_cli.training.tracking import default_tracking_uri
    from mmolre_cli.training.trainer import train_run

    values = load_yaml(config) if config else {}
    overrides = cli_overrides(
        data=data, experts=experts, topk=topk, router=router, fusion=fusion, encoder=encoder, tasks=tasks,
        modalities=modalities, d_model=d_model, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
        device=device,
    )  # fmt: skip
    run_config = build_config(deep_merge(values, overrides), source=str(config) if config else "options")
    components = registry()
    check_components(run_config, components)
    run_dir = out or default_run_dir()
    uri = None if no_track else (tracking_uri or default_tracking_uri(run_dir))

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("[bold]training"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err_console, disable=not err_console.is_terminal, transient=True) as bar:
        task = bar.add_task("train", total=None)

        def on_epoch(summary: dict[str, float]) -> None:
            if not json_output:
                err_console.print(
                    f"epoch {summary['epoch']:>3}  train loss {summary['train_loss']:.4f}  "
                    f"valid loss {summary['valid_loss']:.4f}  ({summary['seconds']:.1f} s)",
                    highlight=False,
                )

        result = train_run(
            run_config, run_dir, components, tracking_uri=uri, on_epoch=on_epoch,
            progress=lambda done, total: bar.update(task, completed=done, total=total), warn=warn,
        )  # fmt: skip
    if json_output:
        print_json({
            "run_dir": str(result.run_dir),
            "selected_epoch": result.selected_epoch,
            **result.metrics,
            "trivial_test": result.trivial_test,
        })
        return
    columns = {**result.metrics, "trivial (test)": result.trivial_test}
    console.print(metrics_table(f"MMoLRE — selected epoch {result.selected_epoch}", columns))
    console.print(f"run directory: {result.run_dir}")
    if result.tracking_run_id:
        console.print(f"MLflow run {result.tracking_run_id} at {uri}")
