"""Sentiment (MSA) regression metrics, matching MMSA's ``__eval_mosei_regression``."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import f1_score

MSA_METRICS: tuple[str, ...] = (
    "Has0_acc_2",
    "Has0_F1",
    "Non0_acc_2",
    "Non0_F1",
    "Acc_5",
    "Acc_7",
    "MAE",
    "Corr",
)

HIGHER_IS_BETTER: dict[str, bool] = {name: name != "MAE" for name in MSA_METRICS}


def _weighted_f1(truth: np.ndarray, pred: np.ndarray) -> float:
    # zero_division=0 gives the value sklearn's default gives, minus its warning.
    return float(f1_score(truth, pred, average="weighted", zero_division=0))


def _multiclass_acc(pred: np.ndarray, label: np.ndarray, bound: float) -> float:
    # np.round rounds half to even, as MMSA does; the clip keeps outliers in the end classes.
    pred_cls = np.round(np.clip(pred, -bound, bound))
    label_cls = np.round(np.clip(label, -bound, bound))
    return float(np.mean(pred_cls == label_cls))


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    # np.corrcoef divides by zero (and warns) when a side is constant.
    if x.size < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def msa_metrics(predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Return the ``MSA_METRICS`` for flattened sentiment predictions against labels.

    Entries whose label is NaN are dropped first. ``Non0_*`` are NaN when no label is non-zero.

    Raises:
        ValueError: if the sizes differ or no labelled entry is left.
    """
    pred = np.asarray(predictions, dtype=float).ravel()
    label = np.asarray(labels, dtype=float).ravel()
    if pred.shape != label.shape:
        raise ValueError(f"predictions have {pred.size} entries but labels have {label.size}")
    keep = ~np.isnan(label)
    pred, label = pred[keep], label[keep]
    if label.size == 0:
        raise ValueError("no labelled entries to score")

    has0_truth, has0_pred = label >= 0, pred >= 0
    nonzero = label != 0
    # MMSA uses > 0 on both sides here, so a prediction of exactly 0 counts as negative.
    non0_truth, non0_pred = label[nonzero] > 0, pred[nonzero] > 0
    has_non0 = bool(nonzero.any())

    return {
        "Has0_acc_2": float(np.mean(has0_truth == has0_pred)),
        "Has0_F1": _weighted_f1(has0_truth, has0_pred),
        "Non0_acc_2": float(np.mean(non0_truth == non0_pred)) if has_non0 else float("nan"),
        "Non0_F1": _weighted_f1(non0_truth, non0_pred) if has_non0 else float("nan"),
        "Acc_5": _multiclass_acc(pred, label, 2.0),
        "Acc_7": _multiclass_acc(pred, label, 3.0),
        "MAE": float(np.mean(np.abs(pred - label))),
        "Corr": _pearson(pred, label),
    }
