"""What the benchmarks share: interleaved timing (so load from other processes hits every candidate
alike), a description of the machine, and a fixed-width table."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
from collections.abc import Callable

import torch

from mmolre_cli.profiling.timing import time_calls


def interleaved(candidates: dict[str, Callable[[], None]], device: torch.device, repeats: int, warmup: int) -> dict:
    """Median seconds per candidate, timing them in turn ``repeats`` times after ``warmup`` calls each."""
    seconds: dict[str, list[float]] = {name: [] for name in candidates}
    for step in candidates.values():
        time_calls(step, device, 0, warmup)
    for _ in range(repeats):
        for name, step in candidates.items():
            seconds[name] += time_calls(step, device, 1, 0)
    return {name: statistics.median(values) for name, values in seconds.items()}


def cpu_name() -> str:
    """The CPU model as lscpu names it (the platform's processor string where lscpu is missing)."""
    try:
        lines = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines()
        return next(line.split(":", 1)[1].strip() for line in lines if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor() or "unknown CPU"


def machine(device: torch.device) -> str:
    """CPU model and cores (from lscpu), torch threads and version, and the GPU when used."""
    text = f"{cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__} with {torch.get_num_threads()} threads"
    if device.type == "cuda":
        text += f", GPU {torch.cuda.get_device_name(device)}"
    return text


def print_table(header: list[str], rows: list[list[str]]) -> None:
    """Left-aligned first column, right-aligned figures."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    for line in (header, ["-" * w for w in widths], *rows):
        first, *rest = (str(cell) for cell in line)
        print("  ".join([first.ljust(widths[0]), *(cell.rjust(w) for cell, w in zip(rest, widths[1:], strict=True))]))
