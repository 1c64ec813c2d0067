"""Wall-clock timing with warm-up and the median of repeats; CUDA events on a GPU."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def time_calls(step: Callable[[], None], device: torch.device, repeats: int, warmup: int) -> list[float]:
    """Seconds of each of ``repeats`` calls of ``step`` after ``warmup`` untimed ones.

    On CUDA each call is bracketed by events and waited for, so the time is the GPU's, not the launch's.
    """
    for _ in range(warmup):
        step()
    seconds = []
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            step()
            end.record()
            end.synchronize()
            seconds.append(start.elapsed_time(end) / 1e3)
        return seconds
    for _ in range(repeats):
        started = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - started)
    return seconds


def summarize(seconds: list[float], batch: int, flops: int) -> dict[str, float]:
    """Median, fastest and slowest time; utterances per second and achieved FLOP/s at the median."""
    median = statistics.median(seconds)
    return {
        "median_ms": median * 1e3,
        "min_ms": min(seconds) * 1e3,
        "max_ms": max(seconds) * 1e3,
        "repeats": len(seconds),
        "throughput_per_s": batch / median,
        "achieved_flops_per_s": flops / median,
    }
