"""``mmolre runs``: one table of the finished runs under a directory, or in an MLflow tracking store."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from mmolre_cli.cli.common import TABLE_METRICS, console, metric_cell, print_json, user_errors, warn
from mmolre_cli.errors import UsageError

#: The test metrics the table shows (those of README's table); ``--csv`` and ``--json`` carry every one.
SHOWN_METRICS = ("MAE", "Corr", "Has0_acc_2", "Non0_acc_2", "Acc_7", "WA_mean", "micro_F1")


@user_errors
def runs(
    directory: Path = typer.Argument(Path("runs"), help="Directory to list the finished runs under."),
    tracking_uri: str | None = typer.Option(
        None, "--tracking-uri", help="List the runs in this MLflow tracking store instead of a directory."
    ),
    csv_file: Path | None = typer.Option(None, "--csv", help="Also write the table to this CSV file."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Compare finished runs: the config settings that differ between them and their test metrics (mean ± std
    over seeds for a multi-seed run), one row per run."""
    from mmolre_cli.training.runs import config_differences, runs_in_directory, runs_in_store, write_runs_csv

    if csv_file is not None and csv_file.is_dir():
        raise UsageError(f"--csv {csv_file}: is a directory")
    rows = runs_in_store(tracking_uri) if tracking_uri else runs_in_directory(directory, warn)
    where = tracking_uri or str(directory)
    if not rows:
        raise UsageError(f"{where}: no finished runs")
    metrics = [metric for metric in TABLE_METRICS if any(metric in row.test for row in rows)]
    settings = config_differences(rows)
    if csv_file is not None:
        write_runs_csv(rows, metrics, csv_file)
    if json_output:
        print_json(
            [
                {"run": row.name, "seeds": row.seeds, "selected_epoch": row.selected_epoch,
                 "config": {key: row.config.get(key) for key in settings}, "test": row.test, "test_std": row.spread}
                for row in rows
            ]
        )  # fmt: skip
        return
    shown = [metric for metric in SHOWN_METRICS if metric in metrics]
    table = Table(title=f"{len(rows)} runs in {where}: settings that differ, test metrics (mean ± std over seeds)")
    for column in ["run", "seeds", "settings", *shown]:
        table.add_column(column, justify="right" if column in shown else "left")
    for row in rows:
        cells = [row.name, ",".join(map(str, row.seeds))]
        cells.append("\n".join(f"{key}={row.config.get(key, '–')}" for key in settings) or "–")
        cells += [metric_cell(row.test.get(metric), row.spread.get(metric)) for metric in shown]
        table.add_row(*cells)
    if console.is_terminal:  # a terminal's table fits its width
        console.print(table)
    else:  # written to a file or a pipe, it is as wide as its cells
        width = Measurement.get(console, console.options.update(width=10_000), table).maximum
        Console(file=sys.stdout, width=width, markup=False).print(table)
    if csv_file is not None:
        console.print(f"table written to {csv_file}")
