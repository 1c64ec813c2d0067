"""How much more would a task learn from more labelled clips? A linear read-out, as docs/ablations.md uses it.

    python docs/experiments/linear_readout.py shipped M1 M2 S1

For each design (``shipped``: the package's generator; otherwise a design of factor_designs.py) it
generates a full-size MOSEI-like file (16,326 training clips, sequence length 20), fits ridge
regression (alpha by leave-one-out over a grid) on the mean-pooled, standardised features of the
first n training clips, and prints the test correlation with the sentiment score and with the
*happy* intensity, per n. The gap between n = 1,633 (the built-in size) and n = 16,326 bounds
what extra labels for the same read-out, the best case of joint training, could add.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import numpy as np
from sklearn.linear_model import RidgeCV

from mmolre_cli.data.canonical import CanonicalData, Split
from mmolre_cli.data.synthetic import generate_synthetic

SIZES = (82, 163, 816, 1633, 16326)


def _designs():
    spec = importlib.util.spec_from_file_location("factor_designs", Path(__file__).with_name("factor_designs.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pooled(split: Split) -> np.ndarray:
    """Every modality's mean over its valid frames, side by side: (N, Σ D_m)."""
    return np.concatenate([x.sum(1) / split.lengths[m][:, None] for m, x in split.features.items()], axis=1)


def readout(data: CanonicalData, sizes: tuple[int, ...] = SIZES) -> dict[str, dict[int, float]]:
    """Test correlation of ridge trained on the first n training clips, per task and n."""
    train, test = data.splits["train"], data.splits["test"]
    x_train, x_test = pooled(train), pooled(test)
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    targets = {"sentiment": (train.sentiment, test.sentiment), "happy": (train.emotion[:, 0], test.emotion[:, 0])}
    result: dict[str, dict[int, float]] = {}
    for task, (y_train, y_test) in targets.items():
        result[task] = {}
        for n in sizes:
            model = RidgeCV(alphas=np.logspace(-1, 5, 13)).fit(x_train[:n], y_train[:n])
            result[task][n] = float(np.corrcoef(model.predict(x_test), y_test)[0, 1])
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("designs", nargs="+")
    args = parser.parse_args()
    designs = _designs()
    print("| data | task | " + " | ".join(f"n = {n:,}" for n in SIZES) + " |")
    print("| --- | --- |" + " ---: |" * len(SIZES))
    for name in args.designs:
        if name == "shipped":
            data = generate_synthetic("mosei", 1.0, 0, 20, emotion_labels=1.0)
        else:
            data = designs.generate(name, 1.0, 20)
        for task, by_size in readout(data).items():
            print(f"| {name} | {task} | " + " | ".join(f"{by_size[n]:.3f}" for n in SIZES) + " |", flush=True)
