"""How long ``mmolre --help`` takes, beside a bare interpreter start (``python -c pass``).

    python benchmarks/cli_startup.py [--repeats 20]

Every candidate is a fresh process (``python -m mmolre_cli``, which is what the ``mmolre`` script runs),
started in turn so that load from other processes hits them alike; prints the median wall time of each
and its ratio to ``python -c pass``. Tab completion and ``--help`` pay this start on every call.
"""

from __future__ import annotations

import argparse
import os
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


def wall_time(args: list[str]) -> float:
    """Seconds from starting ``python args`` to its exit (it must succeed)."""
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    options = parser.parse_args()
    seconds: dict[str, list[float]] = {name: [] for name in CANDIDATES}
    for args in CANDIDATES.values():  # warm the file cache
        wall_time(args)
    for _ in range(options.repeats):
        for name, args in CANDIDATES.items():
            seconds[name].append(wall_time(args))
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    bare = medians["python -c pass"]
    print(f"{cpu_name()}, {os.cpu_count()} cores, Python {sys.version.split()[0]}, load {os.getloadavg()[0]:.2f}")
    print(f"median of {options.repeats} runs each, interleaved\n")
    rows = [[name, f"{median:.3f}", f"{median / bare:.1f}×"] for name, median in medians.items()]
    print_table(["command", "seconds", "÷ python -c pass"], rows)


if __name__ == "__main__":
    main()
