"""Multi-label emotion recognition (MER) metrics and per-emotion threshold tuning."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import f1_score

MER_SUMMARY: tuple[str, ...] = ("WA_mean", "F1w_mean", "F1b_mean", "micro_F1", "elem_acc")

DEFAULT_THRESHOLD_GRID: np.ndarray = np.linspace(-2, 2, 41)


def _labelled(logits: np.ndarray, intensities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return float (N, C) logits and intensities, without rows having any NaN intensity."""
    logits = np.asarray(logits, dtype=float)
    intensities = np.asarray(intensities, dtype=float)
    if logits.ndim != 2 or logits.shape != intensities.shape:
        raise ValueError(f"logits {logits.shape} and intensities {intensities.shape} must be the same (N, C)")
    keep = ~np.isnan(intensities).any(axis=1)
    if not keep.any():
        raise ValueError("no fully labelled rows to score")
    return logits[keep], intensities[keep]


def _weighted_accuracy(truth: np.ndarray, pred: np.ndarray) -> float:
    """Return (TP·N/P + TN) / (2N) for boolean vectors; NaN if either class is absent."""
    pos = int(truth.sum())
    neg = truth.size - pos
    if pos == 0 or neg == 0:
        return float("nan")
    tp = int(np.sum(truth & pred))
    tn = int(np.sum(~truth & ~pred))
    return (tp * neg / pos + tn) / (2 * neg)


def _nanmean(values: list[float]) -> float:
    # np.nanmean warns on an all-NaN slice.
    arr = np.asarray(values, dtype=float)
    return float(np.nanmean(arr)) if (~np.isnan(arr)).any() else float("nan")


def mer_metrics(
    logits: np.ndarray,
    intensities: np.ndarray,
    emotions: Sequence[str],
    thresholds: np.ndarray | float = 0.0,
) -> dict[str, float]:
    """Return per-emotion ``WA_/F1w_/F1b_/Acc_<emotion>`` and the ``MER_SUMMARY`` averages.

    Truth is ``intensity > 0``, prediction is ``logit > threshold`` (a scalar or one per emotion).
    Rows with any NaN intensity are dropped.

    Raises:
        ValueError: on mismatched shapes or when no labelled row is left.
    """
    logits, intensities = _labelled(logits, intensities)
    n_classes = logits.shape[1]
    if len(emotions) != n_classes:
        raise ValueError(f"{len(emotions)} emotion names for {n_classes} columns")
    thr = np.asarray(thresholds, dtype=float)
    if thr.ndim != 0 and thr.shape != (n_classes,):
        raise ValueError(f"thresholds must be a scalar or of shape ({n_classes},), got {thr.shape}")

    truth = intensities > 0
    pred = logits > thr
    out: dict[str, float] = {}
    wa, f1w, f1b = [], [], []
    for c, emo in enumerate(emotions):
        t, p = truth[:, c], pred[:, c]
        wa.append(_weighted_accuracy(t, p))
        # zero_division=0 keeps absent classes from warning; they then score 0.
        f1w.append(float(f1_score(t, p, average="weighted", zero_division=0)))
        f1b.append(float(f1_score(t, p, pos_label=True, average="binary", zero_division=0)))
        out[f"WA_{emo}"] = wa[-1]
        out[f"F1w_{emo}"] = f1w[-1]
        out[f"F1b_{emo}"] = f1b[-1]
        out[f"Acc_{emo}"] = float(np.mean(t == p))
    out["WA_mean"] = _nanmean(wa)
    out["F1w_mean"] = _nanmean(f1w)
    out["F1b_mean"] = _nanmean(f1b)
    out["micro_F1"] = float(f1_score(truth, pred, average="micro", zero_division=0))
    out["elem_acc"] = float(np.mean(truth == pred))
    return out


def tune_thresholds(
    logits: np.ndarray,
    intensities: np.ndarray,
    grid: np.ndarray = DEFAULT_THRESHOLD_GRID,
) -> np.ndarray:
    """Return, per emotion, the grid threshold maximising that emotion's WA.

    Ties go to the threshold closest to 0 (then the earlier grid value); an emotion whose
    WA is undefined (one class absent) gets the grid value closest to 0.
    Only ever pass validation data: tuning on test data leaks labels into the reported score.
    """
    logits, intensities = _labelled(logits, intensities)
    grid = np.asarray(grid, dtype=float).ravel()
    if grid.size == 0:
        raise ValueError("threshold grid is empty")
    truth = intensities > 0
    chosen = np.empty(logits.shape[1])
    for c in range(logits.shape[1]):
        scores = np.array([_weighted_accuracy(truth[:, c], logits[:, c] > g) for g in grid])
        if np.isnan(scores).all():
            candidates = np.arange(grid.size)
        else:
            candidates = np.flatnonzero(scores == np.nanmax(scores))
        chosen[c] = grid[candidates[np.argmin(np.abs(grid[candidates]))]]
    return chosen
