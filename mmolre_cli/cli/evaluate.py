"""``mmolre eval``: score a trained run or checkpoint on a split."""

from __future__ import annotations

from pathlib import Path

import typer

from mmolre_cli.cli.common import console, metrics_table, print_json, registry, user_errors
from mmolre_cli.errors import UsageError

SPLIT_NAMES = ("train", "valid", "test")


@user_errors
def evaluate(
    run: Path = typer.Argument(..., help="Run directory or checkpoint file."),
    data: Path | None = typer.Option(None, help="Prepared HDF5 file (default: the data the run was trained on)."),
    split: str = typer.Option("test", help="Split to score: train, valid or test."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Reload a trained model and print its metrics on one split."""
    if split not in SPLIT_NAMES:
        raise UsageError(f"--split: unknown value {split!r} (valid: {', '.join(SPLIT_NAMES)})")
    from mmolre_cli.training.restore import evaluate_checkpoint

    result = evaluate_checkpoint(run, registry(), data=data, split=split)
    if json_output:
        print_json(result)
        return
    console.print(metrics_table(f"{result['checkpoint']} on {Path(result['data']).name}", {split: result["metrics"]}))
