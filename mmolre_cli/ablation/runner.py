"""Training the variants of a plan over seeds, in this process or in spawned ones, resumably.

Each part of a variant (``mtl`` has one per task, every other variant one) is a multi-seed run
directory ``runs/<variant>[-<part>]`` of :func:`mmolre_cli.training.seeds.train_seeds`, tracked as a
child of the ablation's parent run with a child per seed; ``plan.json`` records what each variant
was planned with. A rerun into the same output directory reads finished parts back, resumes an
interrupted one and trains the rest.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from mmolre_cli.ablation.variants import WHOLE, Plan, Variant
from mmolre_cli.atomic import atomic_path
from mmolre_cli.config import RunConfig
from mmolre_cli.errors import UsageError
from mmolre_cli.plugins.registry import Registry
from mmolre_cli.state_files import read_json
from mmolre_cli.training.tracking import Tracker

PLAN_NAME = "plan.json"


@dataclass
class SeedRun:
    """What one seed of one part measured: metrics of its selected checkpoint, by split."""

    seed: int
    metrics: dict[str, dict[str, float | None]]
    n_parameters: int
    selected_epoch: int
    diverged: str | None = None  # where the training loss first was not finite, after the selected epoch


@dataclass
class PartJob:
    """Everything a worker process needs to train one part of one variant over all seeds."""

    config: RunConfig
    seeds: list[int]
    out: Path  # the ablation's output directory
    directory: Path  # the part's multi-seed run directory
    tracking_uri: str | None
    parent_run_id: str | None
    threads: int | None  # torch threads of a worker process; None keeps the default
    plugins_dir: Path | None  # the worker builds its own registry, with the same plugins


def part_directory(out: Path, variant: Variant, part: str) -> Path:
    return out / "runs" / (variant.slug if part == WHOLE else f"{variant.slug}-{part}")


def is_finished(directory: Path) -> bool:
    from mmolre_cli.training.seeds import SUMMARY_NAME

    return (directory / SUMMARY_NAME).is_file()


def finished_parts(out: Path) -> list[tuple[dict[str, Any], Path]]:
    """Every finished part directory under ``out`` with the seeds and config it was trained with, in
    name order: how a new variant finds its twin trained by an earlier invocation (say ``full``, where a
    grid now names that model ``topk=2``)."""
    from mmolre_cli.training.seeds import SEEDS_NAME

    parts = []
    for manifest in sorted((out / "runs").glob(f"*/{SEEDS_NAME}")):
        if is_finished(manifest.parent):
            stored = read_json(manifest, ("seeds", "config"))
            parts.append(({"seeds": stored["seeds"], "config": stored["config"]}, manifest.parent))
    return parts


def train_part(
    job: PartJob,
    registry: Registry,
    parent: Tracker,
    *,
    warn: Callable[[str], None] | None = None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> list[SeedRun]:
    """Every seed of one part, trained, resumed or read back, in seed order."""
    from mmolre_cli.training.seeds import SEEDS_NAME, read_result, seed_dir, train_seeds
    from mmolre_cli.training.trainer import METRICS_NAME

    if is_finished(job.directory):
        results = [read_result(seed_dir(job.directory, seed)) for seed in job.seeds]
    else:
        resume = (job.directory / SEEDS_NAME).is_file()
        if job.directory.exists() and not resume:
            shutil.rmtree(job.directory)  # stopped before it recorded anything to resume from
        # A diverging variant is one result of the study (warned about, stopped after that epoch), not its end.
        trained = train_seeds(
            job.config, job.seeds, job.directory, registry, parent=parent, resume=resume, stop_if_diverged=False,
            on_epoch=on_epoch, warn=warn,
        )  # fmt: skip
        results = trained.runs
    runs = []
    for result in results:
        report = read_json(result.run_dir / METRICS_NAME, ("n_parameters",))
        seed_run = SeedRun(result.seed, result.metrics, report["n_parameters"], result.selected_epoch)
        runs.append(dataclasses.replace(seed_run, diverged=report.get("diverged")))
    return runs


def _print_warning(message: str) -> None:
    sys.stderr.write(f"Warning: {message}\n")


def _worker(job: PartJob) -> list[SeedRun]:
    """A spawned process's entry point: its own registry, its share of CPU threads, the parent run reopened."""
    import torch

    from mmolre_cli.plugins import load_registry

    if job.threads:
        torch.set_num_threads(job.threads)
    parent = Tracker(job.tracking_uri, job.out, job.directory.name, on_warning=_print_warning)
    if job.parent_run_id:
        parent.start({}, resume_run_id=job.parent_run_id)
    return train_part(job, load_registry(job.plugins_dir), parent, warn=_print_warning)


def record_plan(plan: Plan, seeds: list[int], out: Path) -> None:
    """Add the plan's variants to ``plan.json``; refuse one stored there with other configs or seeds."""
    path = out / PLAN_NAME
    stored: dict[str, Any] = read_json(path) if path.is_file() else {}
    for variant in plan.variants:
        # Through JSON, so it compares equal to the stored form.
        planned = json.loads(json.dumps({"seeds": seeds, **{p: c.to_dict() for p, c in variant.parts.items()}}))
        if stored.setdefault(variant.name, planned) != planned:
            raise UsageError(
                f"--out {out}: variant {variant.name!r} was run there with other settings or seeds; "
                "choose another --out or repeat the original options"
            )
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(stored, indent=2))


def run_plan(
    plan: Plan,
    seeds: list[int],
    out: Path,
    registry: Registry,
    parent: Tracker,
    *,
    jobs: int = 1,
    plugins_dir: Path | None = None,
    warn: Callable[[str], None] | None = None,
    on_part: Callable[[Variant, str, list[SeedRun], bool], None] | None = None,
    on_epoch: Callable[[Variant, str, int, dict[str, float]], None] | None = None,
) -> dict[str, dict[str, list[SeedRun]]]:
    """Train every part of every variant over ``seeds``, nested under ``parent``.

    Returns {variant name: {part: runs in seed order}}. ``on_part(variant, part, runs, reused)``
    follows every part (``reused``: read back from an earlier invocation); ``on_epoch(variant, part,
    seed, summary)`` every epoch, in this process only. With ``jobs`` > 1 the parts run in that many
    spawned processes, which share the CPU threads and load plugins from ``plugins_dir`` (as ``registry`` was).
    """
    record_plan(plan, seeds, out)
    threads = None if jobs == 1 else max(1, (os.cpu_count() or 1) // jobs)

    trained_parts = finished_parts(out)

    def directory(variant: Variant, part: str, config: RunConfig) -> Path:
        own = part_directory(out, variant, part)
        if is_finished(own):
            return own
        # Through JSON, so it compares equal to the stored form.
        wanted = json.loads(json.dumps({"seeds": list(seeds), "config": config.to_dict()}))
        return next((twin for trained, twin in trained_parts if trained == wanted), own)

    work = [
        (variant, part, PartJob(
            config, list(seeds), out, directory(variant, part, config), parent.uri, parent.run_id, threads,
            plugins_dir,
        ))
        for variant in plan.variants
        for part, config in variant.parts.items()
    ]  # fmt: skip
    results: dict[str, dict[str, list[SeedRun]]] = {variant.name: {} for variant in plan.variants}
    reused = {job.directory: is_finished(job.directory) for _, _, job in work}

    def finished(variant: Variant, part: str, job: PartJob, runs: list[SeedRun]) -> None:
        results[variant.name][part] = runs
        if on_part:
            on_part(variant, part, runs, reused[job.directory])

    if jobs == 1:
        for variant, part, job in work:
            report = (lambda seed, summary, v=variant, p=part: on_epoch(v, p, seed, summary)) if on_epoch else None
            finished(variant, part, job, train_part(job, registry, parent, warn=warn, on_epoch=report))
        return results
    # Spawned, not forked: a fork would copy torch's thread pools and the open MLflow connection.
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn"))
    try:
        futures = {pool.submit(_worker, job): (variant, part, job) for variant, part, job in work}
        for future in as_completed(futures):
            finished(*futures[future], future.result())
    except BaseException:
        # Start no part whose result nobody will read, and stop the running ones: a SIGINT sent to this
        # process alone (or an error here) would leave them training. Their files are written atomically,
        # so a rerun resumes them. (The processes are private to the pool until Python 3.14.)
        workers = list((pool._processes or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.join()
        raise
    pool.shutdown()
    return results
