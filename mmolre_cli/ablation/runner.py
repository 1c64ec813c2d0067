"""Training the variants of a plan over seeds, in this process or in spawned ones, resumably.

Each part of a variant (``mtl`` has one per task, every other variant one) is a multi-seed run
directory ``runs/<variant>[-<part>]`` of :func:`mmolre_cli.training.seeds.train_seeds`, tracked as a
child of the ablation's parent run with a child per seed; ``plan.json`` records what each variant
was planned with. A rerun into the same output directory reads finished parts back, resumes an
interrupted one and trains the rest, whichever executor ran the earlier invocation.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmolre_cli.ablation.variants import WHOLE, Plan, Variant
from mmolre_cli.atomic import atomic_path
from mmolre_cli.config import RunConfig
from mmolre_cli.errors import UsageError
from mmolre_cli.executors import report_to_parent
from mmolre_cli.plugins.registry import Registry
from mmolre_cli.state_files import read_json
from mmolre_cli.training.tracking import Tracker

if TYPE_CHECKING:
    from mmolre_cli.executors import Executor

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


def print_warning(message: str) -> None:
    """How a worker process warns: one line on its stderr."""
    sys.stderr.write(f"Warning: {message}\n")


def open_worker(
    threads: int | None,
    tracking_uri: str | None,
    out: Path,
    name: str,
    parent_run_id: str | None,
    plugins_dir: Path | None,
) -> tuple[Registry, Tracker]:
    """What a job in another process starts with: its share of CPU threads, its own registry (with the
    plugins of ``plugins_dir``), and the MLflow parent run ``parent_run_id`` reopened."""
    import torch

    from mmolre_cli.plugins import load_registry

    if threads:
        torch.set_num_threads(threads)
    parent = Tracker(tracking_uri, out, name, on_warning=print_warning)
    if parent_run_id:
        parent.start({}, resume_run_id=parent_run_id)
    return load_registry(plugins_dir), parent


def part_worker(job: PartJob) -> list[SeedRun]:
    """A part's job in another process (spawned, or a Ray task)."""
    registry, parent = open_worker(
        job.threads, job.tracking_uri, job.out, job.directory.name, job.parent_run_id, job.plugins_dir
    )

    def on_epoch(seed: int, summary: dict[str, float]) -> None:
        report_to_parent((str(job.directory), seed, summary))

    return train_part(job, registry, parent, warn=print_warning, on_epoch=on_epoch)


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
    executor: Executor | None = None,
    plugins_dir: Path | None = None,
    warn: Callable[[str], None] | None = None,
    on_part: Callable[[Variant, str, list[SeedRun], bool], None] | None = None,
    on_epoch: Callable[[Variant, str, int, dict[str, float]], None] | None = None,
) -> tuple[dict[str, dict[str, list[SeedRun]]], dict[str, str]]:
    """Train every part of every variant over ``seeds``, nested under ``parent``, one job per part.

    Returns {variant name: {part: runs in seed order}} and {variant name: why it failed} for the variants
    a part of which failed (its worker died twice). ``on_part(variant, part, runs, reused)`` follows every
    part (``reused``: read back from an earlier invocation); ``on_epoch(variant, part, seed, summary)``
    every epoch of a part trained in this process or in a local worker process (called from a thread of
    this one). ``executor`` (default: this process; closed here only on an error) runs the parts; in other
    processes they load plugins from ``plugins_dir`` (as ``registry`` was).
    """
    from mmolre_cli.executors import Failed, Inline

    record_plan(plan, seeds, out)
    executor = executor or Inline()

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
            config, list(seeds), out, directory(variant, part, config), parent.uri, parent.run_id, executor.threads,
            plugins_dir,
        ))
        for variant in plan.variants
        for part, config in variant.parts.items()
    ]  # fmt: skip
    results: dict[str, dict[str, list[SeedRun]]] = {variant.name: {} for variant in plan.variants}
    failed: dict[str, str] = {}
    reused = {job.directory: is_finished(job.directory) for _, _, job in work}

    def in_this_process(variant: Variant, part: str) -> Callable[[PartJob], list[SeedRun]]:
        report = (lambda seed, summary: on_epoch(variant, part, seed, summary)) if on_epoch else None
        return lambda job: train_part(job, registry, parent, warn=warn, on_epoch=report)

    submitted: dict[int, tuple[Variant, str, PartJob]] = {}
    events = getattr(executor, "events", None)
    listener = None
    if events is not None:  # local worker processes report their epochs there; drained even if no one listens
        parts = {str(job.directory): (variant, part) for variant, part, job in work}
        listener = threading.Thread(target=_relay, args=(events, parts, on_epoch), daemon=True)
        listener.start()
    try:
        while work or submitted:
            while work and len(submitted) < executor.capacity:
                variant, part, job = work.pop(0)
                function = in_this_process(variant, part) if isinstance(executor, Inline) else part_worker
                submitted[executor.submit(function, job)] = (variant, part, job)
            key, outcome = executor.next_done()
            variant, part, job = submitted.pop(key)
            if isinstance(outcome, Failed):
                failed[variant.name] = f"{job.directory.name}: {outcome.reason}"
                if warn:
                    warn(f"{variant.name}: its worker died twice ({outcome.reason}); recorded as failed")
                continue
            results[variant.name][part] = outcome
            if on_part:
                on_part(variant, part, outcome, reused[job.directory])
    except BaseException:
        executor.close()  # start no part whose result nobody will read
        raise
    finally:
        if listener is not None:
            events.put(None)
            listener.join()
    return {name: parts for name, parts in results.items() if name not in failed}, failed


def _relay(queue, parts: dict[str, tuple[Variant, str]], on_epoch: Callable | None) -> None:
    """Call ``on_epoch`` (if any) for each epoch the worker processes put on ``queue``, until a None; a worker
    whose queue nobody read would block on exit once the pipe is full."""
    while (item := queue.get()) is not None:
        directory, seed, summary = item
        if on_epoch is not None:
            on_epoch(*parts[directory], seed, summary)
