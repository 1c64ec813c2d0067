"""Do the two tasks' routers share the shared experts, divide them, or choose independently?

    python docs/experiments/route_agreement.py ABLATION_DIR DATA.h5

For every run under ``ABLATION_DIR/runs/<variant>/`` (a directory of ``mmolre ablate``), it loads
the selected checkpoint, routes the test split of ``DATA.h5`` and prints, per UniTSE block and
modality, the mean share of a sentiment route's k experts that the emotion route of the same
utterance also chose: 1 means the same experts, 0 disjoint ones, and k / N what independent uniform
choices give (0.5 for top-2 of 4). docs/ablations.md uses it for the `specific` removal.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from mmolre_cli.data.canonical import CanonicalData, read_canonical
from mmolre_cli.plugins import build_registry, get_plugin_manager
from mmolre_cli.training.batches import TensorSplit
from mmolre_cli.training.evaluate import forward
from mmolre_cli.training.restore import restore_model


def agreement(run: Path, data: CanonicalData, split: str = "test") -> dict[str, float]:
    """``{"modality block": share}`` for the run's selected checkpoint (blocks counted from 1)."""
    model, payload = restore_model(run, build_registry(*get_plugin_manager()))
    tensors = TensorSplit.from_split(data.splits[split], payload["run_config"].model.modalities)
    with torch.no_grad():
        routes = forward(model, tensors.batch(torch.arange(len(tensors)))).routes
    chosen = {key: route.weights > 0 for key, route in routes.items()}
    shares = {}
    for modality, block, task in sorted(chosen):
        if task == "sa" and (modality, block, "er") in chosen:
            sa, er = chosen[modality, block, "sa"], chosen[modality, block, "er"]
            shares[f"{modality} {block + 1}"] = ((sa & er).sum(1) / sa.sum(1)).float().mean().item()
    return shares


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ablation_dir", type=Path)
    parser.add_argument("data", type=Path)
    args = parser.parse_args()
    data = read_canonical(args.data)
    for variant in sorted(p for p in (args.ablation_dir / "runs").iterdir() if p.is_dir()):
        runs = sorted(p.parent for p in variant.glob("**/checkpoint.pt"))
        means = []
        for run in runs:
            shares = agreement(run, data)
            if not shares:
                break  # no shared routes for both tasks (e.g. no-mtl, no-shared)
            means.append(sum(shares.values()) / len(shares))
            cells = "  ".join(f"{cell} {share:.2f}" for cell, share in shares.items())
            print(f"{variant.name} {run.relative_to(variant)}: {cells}  mean {means[-1]:.3f}")
        if means:
            print(f"{variant.name}: mean over {len(means)} runs {sum(means) / len(means):.3f}")


if __name__ == "__main__":
    main()
