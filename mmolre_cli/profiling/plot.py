"""Parameters and FLOPs against the number of shared experts, low-rank vs dense."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from mmolre_cli.atomic import save_figure
from mmolre_cli.config import ModelConfig
from mmolre_cli.data.shapes import DataShapes
from mmolre_cli.errors import UsageError
from mmolre_cli.model.build import resolve_model
from mmolre_cli.plugins.registry import Registry
from mmolre_cli.profiling.components import parameter_report
from mmolre_cli.profiling.flops import count_forward, random_batch
from mmolre_cli.profiling.report import real_model

EXPERT_COUNTS = (1, 2, 4, 8, 16)


def expert_scaling(
    config: ModelConfig, shapes: DataShapes, registry: Registry, counts: tuple[int, ...] = EXPERT_COUNTS
) -> list[dict[str, Any]]:
    """For ``lowrank`` and ``dense`` and each N: total and active parameters, forward FLOPs at batch 1
    executed and active (top-k capped at N)."""
    points = []
    for expert_type in ("lowrank", "dense"):
        for n in counts:
            experts = dataclasses.replace(config.experts, shared=n, type=expert_type)
            changed = dataclasses.replace(config, experts=experts, topk=min(config.topk, n))
            model_config, signature = resolve_model(changed, shapes)
            model = real_model(model_config, signature, registry, "cpu")
            forward = count_forward(model, random_batch(shapes, model_config.modalities, 1, "cpu", model.encoders))
            parameters = parameter_report(model, forward["chosen_shares"])
            points.append(
                {
                    "type": expert_type,
                    "shared": n,
                    "topk": model_config.topk,
                    "parameters": parameters["total"],
                    "active_parameters": parameters["active_per_utterance"],
                    "forward_flops": forward["executed"]["flops"],
                    "forward_active_flops": forward["active"]["flops"],
                }
            )
    return points


def check_plot_path(path: Path) -> None:
    """Refuse, naming ``--plot``, a file whose suffix names no format matplotlib saves (none means png)."""
    from matplotlib.backend_bases import FigureCanvasBase

    if path.is_dir():
        raise UsageError(f"--plot {path}: is a directory")
    supported = FigureCanvasBase.get_supported_filetypes()
    suffix = path.suffix.lstrip(".").lower() or "png"
    if suffix not in supported:
        raise UsageError(f"--plot {path}: unsupported format {suffix!r} (supported: {', '.join(sorted(supported))})")


def save_plot(points: list[dict[str, Any]], path: Path, title: str) -> None:
    """Two panels (parameters, forward FLOPs) against N; solid = total/executed, dashed = active."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for expert_type, colour in (("lowrank", "tab:blue"), ("dense", "tab:red")):
        mine = [p for p in points if p["type"] == expert_type]
        n = [p["shared"] for p in mine]
        for axis, key, scale, style, what in (
            (left, "parameters", 1e6, "o-", "total"),
            (left, "active_parameters", 1e6, "o--", "active"),
            (right, "forward_flops", 1e9, "o-", "executed"),
            (right, "forward_active_flops", 1e9, "o--", "active"),
        ):
            axis.plot(n, [p[key] / scale for p in mine], style, color=colour, label=f"{expert_type} {what}")
    for axis, label in ((left, "parameters (M)"), (right, "forward FLOPs, batch 1 (GFLOP)")):
        axis.set_xscale("log", base=2)
        axis.set_xlabel("shared experts per block (N)")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    try:
        save_figure(figure, path, dpi=120)
    finally:
        plt.close(figure)
