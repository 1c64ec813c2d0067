"""How long ``mmolre --help`` takes, beside a bare interpreter start (``python -c pass``).

    python benchmarks/cli_startup.py [--repeats 20]

Every candidate is a fresh process (``python -m mmolre_cli``, which is what the ``mmolre`` script runs),
started in turn so that load from other processes hits them alike; prints the median wall time and CPU
time (user + system, which load from other processes changes less) of each, and their ratios to
``python -c pass``. Tab completion and ``--help`` pay this start on every call.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time

from _common import cpu_name, print_table

CANDIDATES = {
    "python -c pass": ["-c", "pass"],
    "mmolre --help": ["-m", "mmolre_cli", "--help"],
    "mmolre train --help": ["-m", "mmolre_cli", "train", "--help"],
    "mmolre ablate --help": ["-m", "mmolre_cli", "ablate", "--help"],
}


def cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_times(args: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds of ``python args`` from start to exit (it must succeed)."""
    cpu, start = cpu_of_children(), time.perf_counter()
    subprocess.run([sys.executable, *args], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start, cpu_of_children() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    options = parser.parse_args()
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in CANDIDATES}
    for args in CANDIDATES.values():  # warm the file cache
        run_times(args)
    for _ in range(options.repeats):
        for name, args in CANDIDATES.items():
            times[name].append(run_times(args))
    wall = {name: statistics.median(wall for wall, _ in values) for name, values in times.items()}
    cpu = {name: statistics.median(cpu for _, cpu in values) for name, values in times.items()}
    bare = "python -c pass"
    print(f"{cpu_name()}, {os.cpu_count()} cores, Python {sys.version.split()[0]}, load {os.getloadavg()[0]:.2f}")
    print(f"median of {options.repeats} runs each, interleaved\n")
    rows = [
        [name] + [cell for of in (wall, cpu) for cell in (f"{of[name]:.3f}", f"{of[name] / of[bare]:.1f}×")]
        for name in CANDIDATES
    ]
    print_table(["command", "wall s", "÷ bare", "CPU s", "÷ bare"], rows)


if __name__ == "__main__":
    main()
