"""Wall time of a 12-job ablation, ``--executor local --jobs 2`` versus ``--executor ray``; Ray's cost per job.

    python benchmarks/ray_executor.py [--scale 0.01] [--epochs 1] [--d-model 16] [--cpus 2]

The 12 jobs are the grid ``shared=3,4,6,8 × topk=1,2,3`` over one seed (every point is a job), trained on
MOSEI-shaped synthetic data without tracking. Both executors get the same CPUs: two local processes, or a
local Ray instance with ``--cpus`` CPUs and one CPU per job. Ray's start (``ray.init``) is timed apart;
its overhead per job is (Ray wall time − local wall time) / 12.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import torch
from _common import machine, print_table

from mmolre_cli.ablation.study import run_ablation
from mmolre_cli.ablation.variants import plan_variants
from mmolre_cli.data.canonical import write_canonical
from mmolre_cli.data.synthetic import generate_synthetic
from mmolre_cli.executors import Processes
from mmolre_cli.executors.ray import RayExecutor, import_ray
from mmolre_cli.plugins import load_registry

GRID = {"shared": ["3", "4", "6", "8"], "topk": ["1", "2", "3"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.01, help="Synthetic dataset size relative to MOSEI.")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--d-model", type=int, default=16)
    parser.add_argument("--cpus", type=int, default=2, help="Local processes, and CPUs of the local Ray instance.")
    args = parser.parse_args()
    ray = import_ray()
    registry = load_registry()
    with tempfile.TemporaryDirectory(prefix="mmolre-bench-") as temporary:
        root = Path(temporary)
        data = root / "data.h5"
        write_canonical(generate_synthetic(like="mosei", scale=args.scale, seed=3, seq_len=12), data)
        values = {"data": str(data), "model": {"d_model": args.d_model}, "train": {"epochs": args.epochs}}
        plan = plan_variants(values, [], [], GRID, registry)
        jobs = sum(len(variant.parts) for variant in plan.variants)

        started = time.perf_counter()
        run_ablation(plan, [1], root / "local", registry, executor=Processes(args.cpus))
        local = time.perf_counter() - started

        started = time.perf_counter()
        ray.init(num_cpus=args.cpus, include_dashboard=False, logging_level=logging.ERROR)
        ray_start = time.perf_counter() - started
        started = time.perf_counter()
        run_ablation(plan, [1], root / "ray", registry, executor=RayExecutor(None, 1, 0))
        remote = time.perf_counter() - started
        ray.shutdown()

    print(f"{jobs} jobs, grid {GRID}, 1 seed, {args.epochs} epoch(s), d_model {args.d_model}, scale {args.scale}")
    print(machine(torch.device("cpu")))
    print_table(
        ["executor", "wall s", "per job s"],
        [
            [f"local --jobs {args.cpus}", f"{local:.1f}", f"{local / jobs:.2f}"],
            [f"ray ({args.cpus} CPUs, 1 per job)", f"{remote:.1f}", f"{remote / jobs:.2f}"],
        ],
    )
    print(f"ray / local wall time: {remote / local:.2f}")
    print(f"Ray overhead per job: {(remote - local) / jobs:+.2f} s; ray.init (once): {ray_start:.1f} s")


if __name__ == "__main__":
    main()
