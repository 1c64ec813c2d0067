"""Running a planned ablation end to end: train, summarise, write results and plots, track the parent run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmolre_cli.ablation.plots import plot_bars, plot_heatmap
from mmolre_cli.ablation.results import SUMMARY_METRICS, summarise, write_csv
from mmolre_cli.ablation.runner import SeedRun, run_plan
from mmolre_cli.ablation.variants import WHOLE, Plan, Variant
from mmolre_cli.atomic import remove_temporaries
from mmolre_cli.errors import TrainingError, UsageError
from mmolre_cli.plugins.registry import Registry
from mmolre_cli.state_files import read_json
from mmolre_cli.training.tracking import Tracker, experiment_name

if TYPE_CHECKING:
    from mmolre_cli.executors import Executor

RESULTS_CSV, RESULTS_JSON = "results.csv", "results.json"
HEATMAP, BARS = "heatmap.png", "bars.png"
STATE_NAME = "ablation.json"


def _plots(summary: dict[str, Any], out: Path) -> list[Path]:
    """The heatmap of a two-key grid, and bars for every other variant beside the reference."""
    metrics = [m for m in SUMMARY_METRICS if any(v["mean"].get(m) is not None for v in summary["variants"])]
    files = []
    names = [v["name"] for v in summary["variants"]]
    if len(summary["grid"]) == 2:
        plot_heatmap(summary, metrics, out / HEATMAP)
        files.append(out / HEATMAP)
        names = [v["name"] for v in summary["variants"] if v["kind"] != "grid" or v["name"] == summary["reference"]]
    if len(names) > 1:
        plot_bars(summary, names, metrics, out / BARS)
        files.append(out / BARS)
    return files


def run_ablation(
    plan: Plan,
    seeds: list[int],
    out: Path,
    registry: Registry,
    *,
    executor: Executor | None = None,
    plugins_dir: Path | None = None,
    tracking_uri: str | None = None,
    warn: Callable[[str], None] | None = None,
    on_part: Callable[[Variant, str, list[SeedRun], bool], None] | None = None,
    on_epoch: Callable[[Variant, str, int, dict[str, float]], None] | None = None,
) -> dict[str, Any]:
    """Train every variant of ``plan`` over ``seeds`` into ``out`` (resuming what is there) and return the
    summary written to ``results.json``. ``on_part`` and ``on_epoch`` report progress, and ``executor`` runs
    the parts, as in :func:`run_plan`. A variant whose worker died twice is left out of the summary and
    listed under ``failed`` (a rerun trains it); the reference's failure is a TrainingError."""
    from mmolre_cli.training.trainer import data_path, write_json_atomic

    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"--out {out}: cannot create directory ({error.strerror or error})") from None
    remove_temporaries(out)  # left by an earlier invocation killed inside a write
    state_path = out / STATE_NAME
    state = read_json(state_path) if state_path.is_file() else {}
    experiment = experiment_name(data_path(plan.reference.parts[WHOLE]))
    parent = Tracker(tracking_uri, out, f"ablate-{out.name}", on_warning=warn, experiment=experiment)
    params = {
        "seeds": seeds,
        "variants": [v.name for v in plan.variants],
        "config": plan.reference.parts[WHOLE].to_dict(),
    }
    # A rerun reopens its parent run, if it tracks to the same place.
    previous = state.get("parent_run_id") if state.get("tracking_uri") == tracking_uri else None
    parent.start(params, resume_run_id=previous)
    write_json_atomic({"parent_run_id": parent.run_id, "tracking_uri": tracking_uri}, state_path)
    status = "FAILED"
    try:
        results, failed = run_plan(
            plan,
            seeds,
            out,
            registry,
            parent,
            executor=executor,
            plugins_dir=plugins_dir,
            warn=warn,
            on_part=on_part,
            on_epoch=on_epoch,
        )
        if plan.reference.name in failed:
            raise TrainingError(
                f"{plan.reference.name}: {failed[plan.reference.name]}: the reference failed, so nothing can be "
                f"compared; rerun the same command to train it (finished variants are kept in {out})"
            )
        trained = Plan([v for v in plan.variants if v.name not in failed], plan.grid, plan.notes)
        summary = {**summarise(trained, results), "seeds": seeds, "failed": failed}
        write_json_atomic(summary, out / RESULTS_JSON)
        write_csv(summary, out / RESULTS_CSV)
        files = [out / RESULTS_CSV, out / RESULTS_JSON, *_plots(summary, out)]
        slugs = {variant.name: variant.slug for variant in plan.variants}
        parent.log_metrics(
            {f"{slugs[v['name']]}.{name}": v["mean"].get(name) for v in summary["variants"] for name in SUMMARY_METRICS}
        )
        parent.log_artifacts(files)
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        parent.end(status)
    return summary
