"""``mmolre eval``: score a trained run, checkpoint or MLflow run on a split."""

from __future__ import annotations

from pathlib import Path

import typer

from mmolre_cli.cli.common import console, metrics_table, print_json, registry, user_errors, warn
from mmolre_cli.config import did_you_mean
from mmolre_cli.errors import UsageError

SPLIT_NAMES = ("train", "valid", "test")


@user_errors
def evaluate(
    run: str = typer.Argument(..., help="Run directory (one seed or several), checkpoint file, or MLflow run id."),
    data: Path | None = typer.Option(None, help="Prepared HDF5 file (default: the data the run was trained on)."),
    split: str = typer.Option("test", help="Split to score: train, valid or test."),
    tracking_uri: str | None = typer.Option(
        None,
        "--tracking-uri",
        help="MLflow tracking URI for a run id (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the "
        "working directory).",
    ),
    json_output: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Reload trained models and print their metrics on one split (mean ± std over the seeds of a multi-seed run)."""
    if split not in SPLIT_NAMES:
        raise UsageError(
            f"--split: unknown value {split!r} (valid: {', '.join(SPLIT_NAMES)}){did_you_mean(split, SPLIT_NAMES)}"
        )
    from mmolre_cli.training.restore import evaluate_target

    result = evaluate_target(run, registry(), data=data, split=split, tracking_uri=tracking_uri)
    if result.get("left_out_emotions"):
        from mmolre_cli.metrics.mer import left_out_note

        warn(f"{split} split: {left_out_note(result['left_out_emotions'])}")
    if json_output:
        print_json(result)
        return
    if "mean" in result:
        from mmolre_cli.cli.train import spread_table

        title = f"{result['run']} on {Path(result['data']).name}: {len(result['seeds'])} seeds"
        console.print(spread_table(title, {split: result["mean"]}, {split: result["std"]}))
        return
    console.print(metrics_table(f"{result['checkpoint']} on {Path(result['data']).name}", {split: result["metrics"]}))
