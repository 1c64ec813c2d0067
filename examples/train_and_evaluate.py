"""Build, train and evaluate MMoLRE through the library API (no command line).

python examples/train_and_evaluate.py examples/mosei_cpu.yaml --out runs/example
python examples/train_and_evaluate.py examples/mosi_cpu.yaml --data data/mosi.h5 --epochs 2 --out runs/mosi
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mmolre_cli.config import build_config, deep_merge, load_yaml
from mmolre_cli.plugins import load_registry
from mmolre_cli.training.restore import evaluate_checkpoint
from mmolre_cli.training.trainer import train_run


def run(config_file: Path, out: Path, *, data: Path | None = None, epochs: int | None = None) -> dict[str, Any]:
    """Train with ``config_file`` (``data`` and ``epochs`` overriding it) and return the reloaded test metrics."""
    overrides: dict[str, Any] = {"train": {"epochs": epochs} if epochs else {}}
    if data is not None:
        overrides["data"] = str(data)
    config = build_config(deep_merge(load_yaml(config_file), overrides), source=str(config_file))
    registry = load_registry()  # built-ins plus every installed plugin, e.g. mmolre-gated-lowrank
    result = train_run(config, out, registry, tracking_uri=None)  # None: no MLflow run
    print(f"selected epoch {result.selected_epoch}, run directory {result.run_dir}")
    # Reloading the checkpoint, as `mmolre eval` does, must give the metrics the run reported.
    return evaluate_checkpoint(out, registry, data=data, split="test")["metrics"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path, help="YAML config, e.g. examples/mosei_cpu.yaml")
    parser.add_argument("--out", type=Path, required=True, help="run directory (must not hold a run yet)")
    parser.add_argument("--data", type=Path, help="prepared HDF5 file (overrides the config's)")
    parser.add_argument("--epochs", type=int, help="maximum epochs (overrides the config's)")
    args = parser.parse_args()
    metrics = run(args.config, args.out, data=args.data, epochs=args.epochs)
    for name in ("Has0_acc_2", "Non0_acc_2", "Non0_F1", "Acc_7", "MAE", "Corr", "WA_mean", "F1w_mean"):
        if name in metrics:
            print(f"{name:>12}  {metrics[name]:.4f}")


if __name__ == "__main__":
    main()
