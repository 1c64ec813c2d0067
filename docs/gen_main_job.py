"""Rerun the README's main job over several seeds and rewrite the README's table of what it reaches.

    python docs/gen_main_job.py                 # seeds 1-5: about 5 × 1.5 min on an idle 2-core CPU
    python docs/gen_main_job.py --seeds 1,2,3

It runs ``mmolre train --experts shared=4 --topk 2 --seeds …`` (the main job once per seed; seed 1 is the
main job itself), then replaces what stands between the ``main-job`` markers in README.md with the test
metrics as mean ± std over the seeds, seed 1's own, the trivial predictor's, the epochs each seed selected
and stopped at, and the machine and kernels it ran on. docs/performance.md ("Numbers across machines")
says why the README gives a spread rather than one run's figures.
"""

from __future__ import annotations

import json
import platform
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parents[1] / "README.md"
MAIN_JOB = ["train", "--experts", "shared=4", "--topk", "2"]
START, END = "<!-- main-job:start (python docs/gen_main_job.py) -->", "<!-- main-job:end -->"
COLUMNS = ("MAE", "Corr", "Has0_acc_2", "Non0_acc_2", "Acc_7", "WA_mean", "micro_F1")


def cell(value: float | None, spread: float | None = None) -> str:
    if value is None:
        return "–"
    return f"{value:.4f}" if spread is None else f"{value:.4f} ± {spread:.4f}"


def machine() -> str:
    """The CPU, torch build, its kernel level and thread count: what moves the last digits (docs/performance.md)."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        names = [line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")]
        cpu = names[0].partition(":")[2].strip() if names else cpu
    except OSError:
        pass
    return (
        f"{cpu}, torch {torch.__version__} with {torch.backends.cpu.get_cpu_capability()} kernels, "
        f"{torch.get_num_threads()} threads"
    )


def render(result: dict[str, Any], runs: dict[int, dict[str, Any]], where: str) -> str:
    """The README block for ``result`` (``train --seeds --json``) and each seed's ``metrics.json`` in ``runs``."""
    seeds = result["seeds"]
    command = " ".join(["mmolre", *MAIN_JOB, "--seeds", ",".join(map(str, seeds))])
    epochs = ", ".join(f"{runs[s]['selected_epoch']}/{len(runs[s]['history'])}" for s in seeds)
    mean, std, trivial = result["mean"]["test"], result["std"]["test"], result["trivial_test"]
    first = runs[seeds[0]]["metrics"]["test"]

    def row(name: str, cells: list[str]) -> str:
        return f"| {name} | " + " | ".join(cells) + " |"

    lines = [
        START,
        f"`{command}` trains the main job once per seed ({where}). Selected / last epoch of seeds "
        f"{', '.join(map(str, seeds))}: {epochs}. Test split:",
        "",
        row("test split", list(COLUMNS)),
        row("---", ["---"] * len(COLUMNS)),
        row(f"MMoLRE, mean ± std over {len(seeds)} seeds", [cell(mean.get(c), std.get(c)) for c in COLUMNS]),
        row(f"MMoLRE, seed {seeds[0]} (the main job)", [cell(first.get(c)) for c in COLUMNS]),
        row("trivial predictor", [cell(trivial.get(c)) for c in COLUMNS]),
        END,
    ]
    return "\n".join(lines)


def replace_block(text: str, block: str) -> str:
    """``text`` with what stands between the markers (themselves included) replaced by ``block``."""
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise SystemExit(f"{README}: no block between {START!r} and {END!r}")
    return pattern.sub(lambda _: block, text)


def main(argv: list[str]) -> int:
    seeds = argv[argv.index("--seeds") + 1] if "--seeds" in argv else "1,2,3,4,5"
    with tempfile.TemporaryDirectory(prefix="mmolre-main-job-") as temporary:
        out = Path(temporary) / "run"
        command = [sys.executable, "-m", "mmolre_cli", *MAIN_JOB, "--seeds", seeds, "--no-track", "--json"]
        completed = subprocess.run([*command, "--out", str(out)], stdout=subprocess.PIPE, text=True, check=True)
        result = json.loads(completed.stdout)
        runs = {s: json.loads((out / f"seed-{s}" / "metrics.json").read_text()) for s in result["seeds"]}
    README.write_text(replace_block(README.read_text(), render(result, runs, f"measured on {machine()}")))
    print(f"rewrote the main-job table of {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
