"""`mmolre prepare mmsa` on a MOSEI-sized aligned pickle: wall time and peak memory vs the pickle's size.

    python benchmarks/prepare_mmsa.py [--workdir DIR] [--keep]

(with --workdir and --keep, a second run reuses the pickle.)

Makes MOSEI-like synthetic data at full size (22,856 clips of 50 steps; text 768, audio 74,
vision 35), exports it with `mmolre export mmsa`, then times `mmolre prepare mmsa` on that pickle
in a fresh process and reads that process's peak resident memory (wait4's ru_maxrss), so the
setup steps do not count; it also reports the CPU seconds and the load average before and after,
since other processes on a shared machine stretch the wall time. Target (issue 3): under 60 s
and under twice the pickle's size.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import cpu_name

CLI = [sys.executable, "-m", "mmolre_cli"]


def run(args: list[str]) -> None:
    subprocess.run([*CLI, *args], check=True, stdout=subprocess.DEVNULL)


def measured(args: list[str]) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds (user + system) and peak RSS bytes of ``mmolre args`` in a child of its own."""
    start = time.perf_counter()
    child = subprocess.Popen([*CLI, *args])
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise SystemExit(f"mmolre {' '.join(args)} failed with exit code {child.returncode}")
    return seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024  # ru_maxrss is in KiB on Linux


def machine() -> str:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpu_name()}, {os.cpu_count()} cores, {memory:.0f} GiB RAM, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, help="Where the ~12 GB of files go (default: a temporary folder).")
    parser.add_argument("--keep", action="store_true", help="Keep the files.")
    options = parser.parse_args()
    workdir = options.workdir or Path(tempfile.mkdtemp(prefix="mmolre-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    source, pickle_path, out = workdir / "mosei.h5", workdir / "aligned_50.pkl", workdir / "prepared.h5"
    try:
        if not pickle_path.exists():  # a --keep'd pickle in --workdir is reused
            run(["prepare", "synthetic", "--like", "mosei", "--scale", "1", "--out", str(source), "--force"])
            run(["export", "mmsa", str(source), "--out", str(pickle_path), "--force"])
            source.unlink()
        os.sync()  # the setup's pending writeback would otherwise compete with the measured writes
        load_before = os.getloadavg()[0]
        seconds, cpu, peak = measured(["prepare", "mmsa", str(pickle_path), "--out", str(out), "--force"])
        size = pickle_path.stat().st_size
        result = {
            "clips": 22856,
            "pickle_bytes": size,
            "wall_seconds": round(seconds, 1),
            "cpu_seconds": round(cpu, 1),
            # Other processes' load stretches wall time; CPU seconds are what the conversion itself costs.
            "load_average_1min": [round(load_before, 1), round(os.getloadavg()[0], 1)],
            "peak_rss_bytes": peak,
            "peak_over_pickle": round(peak / size, 2),
            "machine": machine(),
        }
        print(json.dumps(result, indent=2))
        verdict = {True: "met", False: "MISSED"}
        print(f"target: < 60 s {verdict[seconds < 60]}; peak < 2x the pickle {verdict[peak < 2 * size]}")
    finally:
        if not options.keep:
            for path in (source, pickle_path, out):
                path.unlink(missing_ok=True)
            if options.workdir is None:
                workdir.rmdir()


if __name__ == "__main__":
    main()
