"""``mmolre tune``: a hyperparameter study on the validation split, the best configuration retrained and tested."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.markup import escape

from mmolre_cli.cli.common import (
    DModelOption,
    EncoderOption,
    ExpertsOption,
    FusionOption,
    ModalitiesOption,
    NoTrackOption,
    RouterOption,
    TasksOption,
    TopkOption,
    TrackingUriOption,
    console,
    err_console,
    interrupted,
    print_json,
    registry,
    user_errors,
    warn,
)
from mmolre_cli.cli.scale import (
    CpusPerJobOption,
    ExecutorOption,
    GpusPerJobOption,
    RayAddressOption,
    executor_from_options,
)
from mmolre_cli.cli.train import cli_overrides, spread_table
from mmolre_cli.config import build_config, check_components, check_device, deep_merge, load_yaml
from mmolre_cli.errors import UsageError


@user_errors
def tune(
    ctx: typer.Context,
    space: Path = typer.Option(
        ..., help="YAML search space: config settings → distributions (examples/tune_space.yaml)."
    ),
    trials: int = typer.Option(20, min=1, help="Trials the study holds when done (a rerun continues toward it)."),
    objective: str = typer.Option(
        "valid.loss",
        help="Validation metric to optimise; its direction comes from its name (valid.MAE ↓, valid.Corr ↑).",
    ),
    pruner: str = typer.Option(
        "median", help="Prune trials on the per-epoch validation loss: median, hyperband, none."
    ),
    sampler_seed: int = typer.Option(0, "--sampler-seed", help="Seed of the TPE sampler."),
    study: str = typer.Option("tune", "--study", help="Study name in the storage."),
    storage: str | None = typer.Option(
        None, help="Optuna RDB URL shared by every process of the study (default: sqlite:///<out>/optuna.db)."
    ),
    final_seeds: str = typer.Option("1,2,3", "--final-seeds", help="Seeds the best configuration is retrained with."),
    jobs: int | None = typer.Option(
        None,
        min=1,
        help="Trials at once (default: 1 with --executor local; the cluster's CPUs / --cpus-per-job with ray).",
    ),
    executor: ExecutorOption = "local",
    ray_address: RayAddressOption = None,
    cpus_per_job: CpusPerJobOption = 1.0,
    gpus_per_job: GpusPerJobOption = 0.0,
    data: Path | None = typer.Option(None, help="Prepared HDF5 file (default: the built-in synthetic dataset)."),
    config: Path | None = typer.Option(
        None, "--config", help="YAML base config; flags override it, the space varies it."
    ),
    experts: ExpertsOption = None,
    topk: TopkOption = None,
    router: RouterOption = None,
    fusion: FusionOption = None,
    encoder: EncoderOption = None,
    tasks: TasksOption = None,
    modalities: ModalitiesOption = None,
    d_model: DModelOption = None,
    epochs: int | None = typer.Option(None, help="Maximum epochs of every trial and of the retraining."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Mini-batch size."),
    lr: float | None = typer.Option(None, help="Learning rate (AdamW), unless the space searches it."),
    device: str | None = typer.Option(None, help="Torch device, e.g. cpu or cuda."),
    out: Path | None = typer.Option(
        None, help="Output directory (default: tunes/<date>-<time>); rerunning into it resumes."
    ),
    tracking_uri: TrackingUriOption = None,
    no_track: NoTrackOption = False,
    json_output: bool = typer.Option(False, "--json", help="Print the summary (tune.json) instead of the table."),
) -> None:
    """Search hyperparameters on the validation split (Optuna), then retrain the best configuration over
    --final-seeds and test it: the test metrics reported are those of the retrained seeds only."""
    from mmolre_cli.data.shapes import like_shapes, read_shapes
    from mmolre_cli.data.synthetic import BUILTIN_LIKE
    from mmolre_cli.model.build import resolve_model
    from mmolre_cli.training.schedule import selectable_metrics
    from mmolre_cli.training.seeds import parse_seeds
    from mmolre_cli.training.tracking import tracking_uri as resolve_tracking_uri
    from mmolre_cli.tuning.space import check_space, load_space
    from mmolre_cli.tuning.study import Objective, run_study

    seeds = parse_seeds(final_seeds)
    overrides = cli_overrides(
        data=data, experts=experts, topk=topk, router=router, fusion=fusion, encoder=encoder, tasks=tasks,
        modalities=modalities, d_model=d_model, epochs=epochs, batch_size=batch_size, lr=lr, seed=None,
        device=device,
    )  # fmt: skip
    base = build_config(deep_merge(load_yaml(config) if config else {}, overrides), source=str(config or "options"))
    values = base.to_dict()
    check_device(base.train.device)
    check_components(base, registry())
    dimensions = load_space(space)
    check_space(dimensions, values, registry(), f"--space {space}")
    shapes = read_shapes(base.data) if base.data else like_shapes(BUILTIN_LIKE)
    model, signature = resolve_model(base.model, shapes)
    goal = Objective.parse(objective, selectable_metrics(model.tasks, signature.emotions))
    if executor == "local" and (cpus_per_job != 1.0 or gpus_per_job != 0.0):
        raise UsageError("--cpus-per-job, --gpus-per-job: only with --executor ray")
    out_dir = out or Path("tunes") / time.strftime("%Y%m%d-%H%M%S")
    uri = None if no_track else resolve_tracking_uri(tracking_uri, out_dir)

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err_console, disable=not err_console.is_terminal, transient=True) as bar:
        task = bar.add_task("tuning", total=trials)

        def on_epoch(number: int, summary: dict[str, float]) -> None:
            bar.update(task, description=f"trial {number}, epoch {summary['epoch']}")

        def on_trial(result, study_now) -> None:
            from mmolre_cli.tuning.study import FINISHED, counted

            finished = study_now.get_trials(deepcopy=False, states=FINISHED)
            pruned = sum(t.state.name == "PRUNED" for t in finished)
            complete = [t for t in finished if t.state.name == "COMPLETE"]
            best = study_now.best_value if complete else None
            best_text = "–" if best is None else f"{best:.4f}"
            if result is not None:
                value = "pruned" if result.value is None else f"{goal.metric} {result.value:.4f}"
                bar.console.print(f"trial {result.number}: {value} ({result.epochs} epochs)", highlight=False)
            bar.update(
                task, completed=counted(finished),
                description=escape(f"best {goal.metric} {best_text}, {pruned} pruned"),
            )  # fmt: skip

        runner = executor_from_options(executor, jobs or 1, ray_address, cpus_per_job, gpus_per_job)
        if jobs is not None:
            runner.capacity = jobs
        try:
            summary = run_study(
                dimensions, values, goal, out_dir, registry(), trials=trials, study_name=study, storage=storage,
                seed=sampler_seed, pruner=pruner, final_seeds=seeds, executor=runner,
                plugins_dir=ctx.find_root().params.get("plugins_dir"), tracking_uri=uri, warn=warn,
                on_trial=on_trial, on_epoch=on_epoch,
            )  # fmt: skip
        except KeyboardInterrupt:
            interrupted("the same command (finished trials are kept in the study)", out_dir)
        finally:
            runner.close()
    if json_output:
        print_json(summary)
        return
    best, final = summary["best"], summary["final"]
    params = ", ".join(f"{name}={value}" for name, value in best["params"].items())
    console.print(f"best trial {best['number']}: valid.{goal.metric} {best['value']:.4f} with {params}")
    title = (
        f"Best configuration retrained over seeds {', '.join(map(str, final['seeds']))}: mean ± std "
        "(test scored only now)"
    )
    console.print(spread_table(title, final["mean"], final["std"]))
    console.print(f"best config: {summary['best_config']}  (mmolre train --config {summary['best_config']})")
    console.print(f"results: {out_dir}")
    if uri:
        console.print(f"MLflow parent run at {uri}")
