"""Plots of an ablation summary: the Figure-2-style heatmap of a two-key grid, and bars for the other variants."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from mmolre_cli.atomic import save_figure
from mmolre_cli.metrics import higher_is_better


def _figure(panels: int, width: float, height: float, columns: int = 4):
    # Figure plus an explicit canvas: no pyplot, so no global state and no GUI backend.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    columns = min(columns, panels)
    rows = math.ceil(panels / columns)
    figure = Figure(figsize=(width * columns, height * rows), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for unused in axes[panels:]:
        unused.set_visible(False)
    return figure, axes


def scaled(values: list[float | None], higher_better: bool) -> list[float | None]:
    """Min-max map to [0, 1] with 1 the best value (the lowest when lower is better); all equal → 1."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return [None] * len(values)
    low, high = min(finite), max(finite)
    out: list[float | None] = []
    for v in values:
        if v is None or not math.isfinite(v):
            out.append(None)
        elif high == low:
            out.append(1.0)
        else:
            fraction = (v - low) / (high - low)
            out.append(fraction if higher_better else 1.0 - fraction)
    return out


def plot_heatmap(summary: dict[str, Any], metrics: list[str], path: Path) -> None:
    """One panel per metric over the two grid keys (rows: first key, columns: second); darker = better,
    each metric scaled to 0–1 on its own, the raw mean written in each cell; skipped points grey."""
    import numpy as np
    from matplotlib import colormaps

    (row_key, row_values), (column_key, column_values) = summary["grid"].items()
    cells = {(v["settings"][row_key], v["settings"][column_key]): v for v in summary["variants"] if v["kind"] == "grid"}
    colours = colormaps["Blues"].with_extremes(bad="#e0e0e0")  # grey: a skipped point
    figure, axes = _figure(len(metrics), 3.2, 2.9)
    for axis, metric in zip(axes, metrics, strict=False):
        points = [(r, c) for r in row_values for c in column_values if (r, c) in cells]
        raw = [cells[point]["mean"].get(metric) for point in points]
        score = dict(zip(points, scaled(raw, higher_is_better(metric)), strict=True))
        image = np.full((len(row_values), len(column_values)), np.nan)
        for (r, c), value in score.items():
            if value is not None:
                image[row_values.index(r), column_values.index(c)] = value
        axis.imshow(np.ma.masked_invalid(image), cmap=colours, vmin=0.0, vmax=1.0, aspect="auto")
        for (r, c), value in zip(points, raw, strict=True):
            if value is None or not math.isfinite(value):
                continue
            dark = (score[(r, c)] or 0.0) > 0.6
            axis.text(
                column_values.index(c), row_values.index(r), f"{value:.3f}",
                ha="center", va="center", fontsize=8, color="white" if dark else "black",
            )  # fmt: skip
        axis.set_title(f"{metric} ({'↑' if higher_is_better(metric) else '↓'})", fontsize=9)
        axis.set_xticks(range(len(column_values)), column_values)
        axis.set_yticks(range(len(row_values)), row_values)
        axis.set_xlabel(column_key)
        axis.set_ylabel(row_key)
    figure.suptitle(f"{summary['split']} metrics over {row_key} × {column_key} (darker = better)")
    save_figure(figure, path, dpi=120)


def plot_bars(summary: dict[str, Any], names: list[str], metrics: list[str], path: Path) -> None:
    """One panel per metric, one bar per variant in ``names`` (mean, std as error bar); the dashed line
    is the reference's mean."""
    variants = {v["name"]: v for v in summary["variants"]}
    reference = variants[summary["reference"]]
    figure, axes = _figure(len(metrics), 3.4, 2.8)
    colours = ["#1f4e79" if name == summary["reference"] else "#7fa7cf" for name in names]
    for axis, metric in zip(axes, metrics, strict=False):
        means = [variants[name]["mean"].get(metric) for name in names]
        errors = [variants[name]["std"].get(metric) or 0.0 for name in names]
        shown = [(m, e) for m, e in zip(means, errors, strict=True) if m is not None and math.isfinite(m)]
        axis.bar(
            range(len(names)), [m if m is not None else math.nan for m in means], yerr=errors, color=colours, capsize=2
        )
        baseline = reference["mean"].get(metric)
        if baseline is not None and math.isfinite(baseline):
            axis.axhline(baseline, color="black", linestyle="--", linewidth=0.8)
        if shown:  # zoom in: the differences between variants are small next to the metrics themselves
            low, high = min(m - e for m, e in shown), max(m + e for m, e in shown)
            margin = 0.15 * (high - low) or 0.05 * abs(high) or 0.05
            axis.set_ylim(low - margin, high + margin)
        axis.set_title(f"{metric} ({'↑' if higher_is_better(metric) else '↓'})", fontsize=9)
        axis.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
    figure.suptitle(f"{summary['split']} metrics, mean ± std over seeds (dashed: {summary['reference']})")
    save_figure(figure, path, dpi=120)
