"""``--compare KEY=V1,V2,…``: a grid of configurations (the cartesian product over keys) and ratios to the first."""

from __future__ import annotations

import itertools
from typing import Any

from mmolre_cli.config import ALIASES, did_you_mean, set_path
from mmolre_cli.errors import UsageError


def parse_compare(values: list[str]) -> list[tuple[str, list[str]]]:
    """``["type=lowrank,dense", "shared=2,4"]`` → [("type", ["lowrank", "dense"]), ("shared", ["2", "4"])]."""
    axes: list[tuple[str, list[str]]] = []
    for value in values:
        key, sep, raw = value.partition("=")
        key = key.strip()
        choices = [item.strip() for item in raw.split(",") if item.strip()]
        if not sep or not choices:
            raise UsageError(f"--compare: expected KEY=V1,V2,..., got {value!r}")
        if key not in ALIASES:
            hint = did_you_mean(key, list(ALIASES))
            raise UsageError(f"--compare: unknown key {key!r} (valid: {', '.join(ALIASES)}){hint}")
        if any(key == seen for seen, _ in axes):
            raise UsageError(f"--compare: key {key!r} given twice; list all its values once")
        axes.append((key, choices))
    return axes


def compare_grid(axes: list[tuple[str, list[str]]]) -> list[dict[str, str]]:
    """Every combination of the axes' values, the first axis varying slowest; one empty setting without axes."""
    keys = [key for key, _ in axes]
    return [dict(zip(keys, combination, strict=True)) for combination in itertools.product(*(v for _, v in axes))]


def settings_overrides(settings: dict[str, str]) -> dict[str, Any]:
    """Short keys and raw values as a partial config (values are typed and checked by ``build_config``)."""
    overrides: dict[str, Any] = {}
    for key, value in settings.items():
        set_path(overrides, ALIASES[key], value)
    return overrides


def summary(row: dict[str, Any]) -> dict[str, float | None]:
    """The figures a comparison shows side by side."""
    flops, timing = row["flops"], row["timing"] or {}
    return {
        "parameters": row["parameters"]["total"],
        "active_parameters": row["parameters"]["active_per_utterance"],
        "forward_flops": flops["forward"]["executed"]["flops"],
        "forward_active_flops": flops["forward"]["active"]["flops"],
        "train_flops": flops["train_step"]["executed"]["flops"],
        "train_active_flops": flops["train_step"]["active"]["flops"],
        "forward_ms": timing["forward"]["median_ms"] if timing else None,
        "train_step_ms": timing["train_step"]["median_ms"] if timing else None,
    }


def ratios(rows: list[dict[str, Any]]) -> list[dict[str, float | None]]:
    """Each row's summary divided by the first row's."""
    first = summary(rows[0])
    out = []
    for row in rows:
        values = summary(row)
        out.append({k: (v / first[k] if v is not None and first[k] else None) for k, v in values.items()})
    return out
