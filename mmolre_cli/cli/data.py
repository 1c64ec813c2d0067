"""``mmolre data``: inspect prepared datasets."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from mmolre_cli.cli.common import console, user_errors
from mmolre_cli.cli.help import App

data_app = App(help="Inspect prepared datasets.", no_args_is_help=True)


def _number(value: float | None, form: str) -> str:
    return "–" if value is None else format(value, form)


_CLEANED = {"nonfinite": "non-finite", "padding": "non-zero padding"}


def _cleaned(what: str, counts: dict[str, int]) -> str:
    detail = ", ".join(f"{m} {n}" for m, n in counts.items() if n)
    return f"{sum(counts.values())} {_CLEANED.get(what, what)}" + (f" ({detail})" if detail else "")


@data_app.command("info")
@user_errors
def info(
    file: Path = typer.Argument(..., help="Canonical HDF5 file."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Validate a canonical file and show its splits, shapes, label ranges, emotion prevalence and cleaning."""
    from mmolre_cli.data.canonical import read_canonical, summarize

    data = read_canonical(file)
    summary = summarize(data) | {"options": data.options}
    if json_output:
        # Plain json: summaries hold no NaN, and common.print_json would import torch.
        typer.echo(json.dumps(summary, indent=2))
        return
    splits = summary["splits"]
    table = Table(title=f"{summary['dataset']} ({summary['source']})")
    table.add_column("")
    for name in splits:
        table.add_column(name, justify="right")
    rows = {"samples": [str(s["size"]) for s in splits.values()]}
    for m in summary["modalities"]:
        rows[f"{m} steps×dims"] = ["×".join(map(str, s["features"][m][1:])) for s in splits.values()]
    for stat in ("min", "max", "mean"):
        rows[f"sentiment {stat}"] = [_number(s["sentiment"][stat], ".2f") for s in splits.values()]
    rows["sentiment known"] = [f"{s['sentiment']['known']:.0%}" for s in splits.values()]
    rows["emotions known"] = [f"{s['emotion']['known']:.0%}" for s in splits.values()]
    for e in summary["emotions"]:
        rows[f"{e} prevalence"] = [_number(s["emotion"]["prevalence"][e], ".0%") for s in splits.values()]
    for label, values in rows.items():
        table.add_row(label, *values)
    console.print(table)
    text_lengths = data.options.get("text_lengths") if isinstance(data.options, dict) else None
    if isinstance(text_lengths, dict) and text_lengths:
        from mmolre_cli.data.mmsa import describe_text_lengths

        console.print(describe_text_lengths(text_lengths), highlight=False)
    cleaned = data.options.get("cleaned") if isinstance(data.options, dict) else None
    if cleaned:
        parts = "; ".join(_cleaned(what, counts) for what, counts in cleaned.items())
        console.print(f"feature values set to 0 at preparation: {parts}", highlight=False)
