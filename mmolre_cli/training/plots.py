"""Figures of a run, drawn without pyplot (no GUI backend, no global figure state): PNG files only."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from mmolre_cli.atomic import save_figure

#: Validation metrics that curves.png plots per epoch, for the tasks whose metrics the history holds.
CURVE_METRICS = ("valid_MAE", "valid_Corr", "valid_WA_mean")


def history_panels(history: list[dict[str, float]]) -> dict[str, list[str]]:
    """The panels of curves.png (title → the history keys it plots): task losses, balance loss, validation
    metrics, and the learning rate only when it changed."""
    keys = sorted({key for row in history for key in row if key.startswith(("train_loss", "valid_loss"))})
    panels = {
        "task losses": [key for key in keys if not key.endswith("_balance")],
        "balance loss (sum over routers)": [key for key in keys if key.endswith("_balance")],
        "validation metrics": [key for key in CURVE_METRICS if any(key in row for row in history)],
    }
    rates = {row.get("lr") for row in history}
    if len(rates) > 1:
        panels["learning rate"] = ["lr"]
    return {title: plotted for title, plotted in panels.items() if plotted}


def plot_history(history: list[dict[str, float]], path: Path, selected_epoch: int | None = None) -> Path:
    """Save :func:`history_panels` per epoch to ``path``: training (solid) and validation (dashed) losses,
    validation metrics, the learning rate when it changed, and the ``selected_epoch`` marked on each panel."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    epochs = [row["epoch"] for row in history]
    panels = history_panels(history)
    figure = Figure(figsize=(4.4 * len(panels), 3.4))
    figure.subplots_adjust(left=0.05, right=0.98, bottom=0.15, top=0.9, wspace=0.3)
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    quantities = sorted({key.split("_", 1)[1] for key in panels.get("task losses", [])})  # one colour each
    for axis, (title, keys) in zip(axes, panels.items(), strict=True):
        for key in keys:
            values = [row.get(key, np.nan) for row in history]
            if title == "validation metrics":
                axis.plot(epochs, values, marker=".", label=key.removeprefix("valid_"))
                continue
            quantity = key.split("_", 1)[1] if key != "lr" else None
            style = "--" if key.startswith("valid") else "-"
            colour = f"C{quantities.index(quantity)}" if quantity in quantities else None
            axis.plot(epochs, values, style, color=colour, marker=".", label=key)
        if selected_epoch is not None:
            axis.axvline(selected_epoch, color="grey", linestyle=":", label=f"selected (epoch {selected_epoch})")
        axis.set_xlabel("epoch")
        axis.set_title(title, fontsize=9)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.legend(fontsize=7)
    save_figure(figure, path, dpi=110)
    return path


def plot_routing(summary: Mapping[str, Mapping[str, Mapping[str, Mapping[str, list[float]]]]], path: Path, title: str):
    """Save a heatmap per modality (rows) and block (columns) of tasks × experts selection frequency,
    each cell annotated with frequency and mean weight. Returns ``path``, or None when nothing was routed."""
    if not summary:
        return None
    from matplotlib.figure import Figure

    modalities = list(summary)
    blocks = sorted({block for by_block in summary.values() for block in by_block}, key=int)
    tasks = sorted({task for by_block in summary.values() for by_task in by_block.values() for task in by_task})
    n_experts = max(
        len(route["frequency"])
        for by_block in summary.values()
        for by_task in by_block.values()
        for route in by_task.values()
    )
    # Fixed spacing rather than a layout engine, which would double the drawing time.
    figure = Figure(figsize=(1.8 + 0.9 * n_experts * len(blocks), 1.0 + 1.3 * len(tasks) * len(modalities)))
    axes = figure.subplots(len(modalities), len(blocks), squeeze=False, gridspec_kw={"hspace": 0.5, "wspace": 0.3})
    image = None
    for row, modality in enumerate(modalities):
        for column, block in enumerate(blocks):
            axis = axes[row][column]
            by_task = summary[modality].get(block, {})
            frequency = np.full((len(tasks), n_experts), np.nan)
            weight = np.full((len(tasks), n_experts), np.nan)
            for i, task in enumerate(tasks):
                if task in by_task:
                    frequency[i, : len(by_task[task]["frequency"])] = by_task[task]["frequency"]
                    weight[i, : len(by_task[task]["mean_weight"])] = by_task[task]["mean_weight"]
            image = axis.imshow(frequency, vmin=0.0, vmax=1.0, cmap="Blues", aspect="auto")
            for (i, j), value in np.ndenumerate(frequency):
                if value == value:
                    colour = "white" if value > 0.6 else "black"
                    axis.text(
                        j, i, f"{value:.2f}\n{weight[i, j]:.2f}", ha="center", va="center", fontsize=7, color=colour
                    )
            axis.set_xticks(range(n_experts), [f"e{j + 1}" for j in range(n_experts)])
            axis.set_yticks(range(len(tasks)), tasks)
            axis.set_title(f"{modality} · block {block}", fontsize=9)
    figure.colorbar(image, ax=axes.ravel().tolist(), label="selection frequency (cell: frequency / mean weight)")
    figure.suptitle(title, fontsize=10)
    save_figure(figure, path, dpi=110)
    return path
