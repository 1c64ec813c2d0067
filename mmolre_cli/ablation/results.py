"""Per-seed rows and per-variant summaries (mean ± std over seeds, difference to the reference), as CSV and JSON."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from mmolre_cli.ablation.runner import SeedRun
from mmolre_cli.ablation.variants import WHOLE, Plan
from mmolre_cli.atomic import atomic_path
from mmolre_cli.metrics import MER_SUMMARY, MSA_METRICS, higher_is_better
from mmolre_cli.training.seeds import aggregate

#: The metrics tables and plots compare; the CSV and JSON keep every metric.
SUMMARY_METRICS = (*MSA_METRICS, *MER_SUMMARY)
#: Metrics of a joint model that single-task parts cannot reproduce, dropped when parts are combined.
JOINT_ONLY = ("loss", "loss_balance")

SPLITS = ("test", "valid")


def combine_parts(parts: dict[str, list[SeedRun]]) -> list[dict[str, Any]]:
    """One row per seed: {"seed", "n_parameters", "diverged", "test": {...}, "valid": {...}}.

    A variant trained in per-task parts (``mtl``) takes each task's metrics from that task's model,
    counts the parameters of all of them, and has diverged where one of them did.
    """
    if list(parts) == [WHOLE]:
        return [
            {
                "seed": run.seed,
                "n_parameters": run.n_parameters,
                "diverged": run.diverged,
                **{s: dict(run.metrics[s]) for s in SPLITS},
            }
            for run in parts[WHOLE]
        ]
    rows = []
    for runs in zip(*parts.values(), strict=True):
        row: dict[str, Any] = {
            "seed": runs[0].seed,
            "n_parameters": sum(run.n_parameters for run in runs),
            "diverged": next((run.diverged for run in runs if run.diverged), None),
        }
        for split in SPLITS:
            row[split] = {
                key: value for run in runs for key, value in run.metrics[split].items() if key not in JOINT_ONLY
            }
        rows.append(row)
    return rows


def _json_number(value: float) -> float | None:
    return value if math.isfinite(value) else None


def summarise(plan: Plan, results: dict[str, dict[str, list[SeedRun]]]) -> dict[str, Any]:
    """The whole ablation as one JSON-ready dict; ``variants`` in plan order, the reference first."""
    variants = []
    for variant in plan.variants:
        rows = combine_parts(results[variant.name])
        # As ``train --seeds`` aggregates: a metric undefined (NaN) for one seed is undefined (None) in the mean.
        means, stds = aggregate([{"test": row["test"]} for row in rows])
        mean = {name: _json_number(value) for name, value in means["test"].items()}
        # One seed has no sample standard deviation (aggregate's 0 would print as a spread).
        std = {name: _json_number(value) if len(rows) > 1 else None for name, value in stds["test"].items()}
        variants.append(
            {
                "name": variant.name,
                "kind": variant.kind,
                "settings": variant.settings,
                "n_parameters": rows[0]["n_parameters"],
                "mean": mean,
                "std": std,
                "diverged_seeds": [row["seed"] for row in rows if row["diverged"]],
                "runs": rows,
            }
        )
    reference = variants[0]["mean"]
    for summary in variants:
        summary["delta"] = {
            name: value - reference[name] if value is not None and reference.get(name) is not None else None
            for name, value in summary["mean"].items()
        }
    return {
        "reference": plan.reference.name,
        "split": "test",
        "grid": plan.grid,
        "notes": plan.notes,
        "higher_is_better": {name: higher_is_better(name) for name in SUMMARY_METRICS},
        "variants": variants,
    }


def write_csv(summary: dict[str, Any], path: Path) -> None:
    """One row per variant and seed: variant, kind, grid settings, seed, parameters, test_* and valid_* metrics."""
    rows = [(variant, row) for variant in summary["variants"] for row in variant["runs"]]
    metrics = {split: list(dict.fromkeys(k for _, row in rows for k in row[split])) for split in SPLITS}
    header = [
        "variant",
        "kind",
        *summary["grid"],
        "seed",
        "n_parameters",
        *(f"{split}_{name}" for split in SPLITS for name in metrics[split]),
    ]
    with atomic_path(path) as temporary, temporary.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        for variant, row in rows:
            settings = [variant["settings"].get(key, "") for key in summary["grid"]]
            values = [row[split].get(name) for split in SPLITS for name in metrics[split]]
            writer.writerow(
                [variant["name"], variant["kind"], *settings, row["seed"], row["n_parameters"]]
                + ["" if v is None or v != v else repr(float(v)) for v in values]
            )
