"""Multi-label emotion recognition (MER) metrics and per-emotion threshold tuning."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import f1_score

MER_SUMMARY: tuple[str, ...] = ("WA_mean", "F1w_mean", "F1b_mean", "micro_F1", "elem_acc")

DEFAULT_THRESHOLD_GRID: np.ndarray = np.linspace(-2, 2, 41)


def _checked(logits: np.ndarray, intensities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return float (N, C) logits and intensities (NaN: unknown label) with at least one known label."""
    logits = np.asarray(logits, dtype=float)
    intensities = np.asarray(intensities, dtype=float)
    if logits.ndim != 2 or logits.shape != intensities.shape:
        raise ValueError(f"logits {logits.shape} and intensities {intensities.shape} must be the same (N, C)")
    if np.isnan(intensities).all():
        raise ValueError("no labelled emotion to score")
    return logits, intensities


def left_out_emotions(intensities: np.ndarray, emotions: Sequence[str]) -> dict[str, str]:
    """The emotions that ``WA_mean``, ``F1w_mean`` and ``F1b_mean`` leave out, each with why: without a
    known positive and a known negative label, WA is undefined (and F1 says nothing)."""
    intensities = np.asarray(intensities, dtype=float)
    known = ~np.isnan(intensities)
    positives = (intensities > 0).sum(0)
    negatives = known.sum(0) - positives
    reasons = {}
    for emotion, n_known, n_pos, n_neg in zip(emotions, known.sum(0), positives, negatives, strict=True):
        if n_known == 0:
            reasons[emotion] = "no label"
        elif n_pos == 0 or n_neg == 0:
            reasons[emotion] = "no positive label" if n_pos == 0 else "no negative label"
    return reasons


def left_out_note(reasons: dict[str, str]) -> str:
    """One line naming the emotions ``left_out_emotions`` found (``reasons``) and why."""
    named = ", ".join(f"{emotion} ({why})" for emotion, why in reasons.items())
    return f"WA_mean, F1w_mean and F1b_mean average the other emotions; left out: {named}"


def _weighted_accuracy(truth: np.ndarray, pred: np.ndarray) -> float:
    """Return (TP·N/P + TN) / (2N) for boolean vectors; NaN if either class is absent."""
    pos = int(truth.sum())
    neg = truth.size - pos
    if pos == 0 or neg == 0:
        return float("nan")
    tp = int(np.sum(truth & pred))
    tn = int(np.sum(~truth & ~pred))
    return (tp * neg / pos + tn) / (2 * neg)


def _mean(values: list[float]) -> float:
    """The mean, NaN for no values (without numpy's empty-slice warning)."""
    return float(np.mean(values)) if values else float("nan")


def mer_metrics(
    logits: np.ndarray,
    intensities: np.ndarray,
    emotions: Sequence[str],
    thresholds: np.ndarray | float = 0.0,
) -> dict[str, float]:
    """Return per-emotion ``WA_/F1w_/F1b_/Acc_<emotion>`` and the ``MER_SUMMARY`` averages.

    Truth is ``intensity > 0``, prediction is ``logit > threshold`` (a scalar or one per emotion).
    Labels are masked per emotion: an emotion is scored on the clips that know its label (NaN: unknown),
    ``micro_F1`` and ``elem_acc`` on all known (clip, emotion) labels. The three means average the same
    emotions, those with a known positive and negative label (``left_out_emotions`` names the others,
    whose per-emotion metrics are NaN when no clip knows their label).

    Raises:
        ValueError: on mismatched shapes or when no label is known.
    """
    logits, intensities = _checked(logits, intensities)
    n_classes = logits.shape[1]
    if len(emotions) != n_classes:
        raise ValueError(f"{len(emotions)} emotion names for {n_classes} columns")
    thr = np.asarray(thresholds, dtype=float)
    if thr.ndim != 0 and thr.shape != (n_classes,):
        raise ValueError(f"thresholds must be a scalar or of shape ({n_classes},), got {thr.shape}")

    known = ~np.isnan(intensities)
    truth = intensities > 0
    pred = logits > thr
    left_out = left_out_emotions(intensities, emotions)
    out: dict[str, float] = {}
    wa, f1w, f1b = [], [], []
    for c, emo in enumerate(emotions):
        t, p = truth[known[:, c], c], pred[known[:, c], c]
        if t.size == 0:
            out.update(dict.fromkeys((f"WA_{emo}", f"F1w_{emo}", f"F1b_{emo}", f"Acc_{emo}"), float("nan")))
            continue
        out[f"WA_{emo}"] = _weighted_accuracy(t, p)
        # zero_division=0 keeps absent classes from warning; they then score 0.
        out[f"F1w_{emo}"] = float(f1_score(t, p, average="weighted", zero_division=0))
        out[f"F1b_{emo}"] = float(f1_score(t, p, pos_label=True, average="binary", zero_division=0))
        out[f"Acc_{emo}"] = float(np.mean(t == p))
        if emo not in left_out:
            wa.append(out[f"WA_{emo}"])
            f1w.append(out[f"F1w_{emo}"])
            f1b.append(out[f"F1b_{emo}"])
    out["WA_mean"] = _mean(wa)
    out["F1w_mean"] = _mean(f1w)
    out["F1b_mean"] = _mean(f1b)
    # Over the known labels flattened: the multi-label micro F1 (2·TP / (2·TP + FP + FN) over all cells).
    out["micro_F1"] = float(f1_score(truth[known], pred[known], average="binary", zero_division=0))
    out["elem_acc"] = float(np.mean(truth[known] == pred[known]))
    return out


def tune_thresholds(
    logits: np.ndarray,
    intensities: np.ndarray,
    grid: np.ndarray = DEFAULT_THRESHOLD_GRID,
) -> np.ndarray:
    """Return, per emotion, the grid threshold maximising that emotion's WA.

    Each emotion is tuned on the clips that know its label. Ties go to the threshold closest to 0 (then
    the earlier grid value); an emotion whose WA is undefined (one class absent) gets the grid value closest to 0.
    Only ever pass validation data: tuning on test data leaks labels into the reported score.
    """
    logits, intensities = _checked(logits, intensities)
    grid = np.asarray(grid, dtype=float).ravel()
    if grid.size == 0:
        raise ValueError("threshold grid is empty")
    known = ~np.isnan(intensities)
    truth = intensities > 0
    chosen = np.empty(logits.shape[1])
    for c in range(logits.shape[1]):
        t, scored = truth[known[:, c], c], logits[known[:, c], c]
        scores = np.array([_weighted_accuracy(t, scored > g) for g in grid])
        if np.isnan(scores).all():
            candidates = np.arange(grid.size)
        else:
            candidates = np.flatnonzero(scores == np.nanmax(scores))
        chosen[c] = grid[candidates[np.argmin(np.abs(grid[candidates]))]]
    return chosen
