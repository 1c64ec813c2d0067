"""Tests for mmolre_cli.metrics against hand-computed values."""

import math

import numpy as np
import pytest
from sklearn.metrics import f1_score

from mmolre_cli.metrics import (
    HIGHER_IS_BETTER,
    MER_SUMMARY,
    MSA_METRICS,
    higher_is_better,
    left_out_emotions,
    left_out_note,
    mer_metrics,
    msa_metrics,
    tune_thresholds,
)

# Any sklearn/numpy warning (ill-defined F1, empty nanmean, constant corrcoef) is a bug here.
pytestmark = pytest.mark.filterwarnings("error")


# ---------------------------------------------------------------- MSA


def test_msa_keys_in_order_and_plain_floats():
    out = msa_metrics(np.array([0.3, -1.2, 2.0]), np.array([0.5, -1.0, 1.5]))
    assert tuple(out) == MSA_METRICS
    assert all(type(v) is float for v in out.values())


def test_acc7_rounds_half_to_even():
    # Labels round half-to-even: 0.5->0, 1.5->2, 2.5->2, -2.5->-2, matching every prediction.
    # Half-away-from-zero would give 1, 2, 3, -3 and only one match (0.25).
    out = msa_metrics(np.array([0.0, 2.0, 2.0, -2.0]), np.array([0.5, 1.5, 2.5, -2.5]))
    assert out["Acc_7"] == 1.0
    assert out["Acc_5"] == 1.0


def test_acc5_clips_to_two_acc7_to_three():
    # Acc_5: labels clip to 2, -2, 1; preds 2.4->2, -1.6->-2, 1.2->1 -> 3/3.
    # Acc_7: labels 3, -3, 1; preds 2, -2, 1 -> 1/3.
    out = msa_metrics(np.array([2.4, -1.6, 1.2]), np.array([3.0, -2.9, 1.0]))
    assert out["Acc_5"] == 1.0
    assert out["Acc_7"] == pytest.approx(1 / 3)


def test_has0_and_non0_differ_and_zero_prediction():
    preds = np.array([-0.5, 0.0, 0.5, 0.5, 0.0])
    labels = np.array([0.0, 0.0, 1.0, -1.0, 2.0])
    out = msa_metrics(preds, labels)
    # Has0 truth >=0: T T T F T; pred >=0: F T T T T -> matches at 1, 2, 4 -> 3/5.
    assert out["Has0_acc_2"] == pytest.approx(0.6)
    # Has0 F1: class T (support 4): TP 3, 4 predicted -> F1 3/4; class F (support 1): F1 0.
    # Weighted: (4*0.75 + 1*0)/5 = 0.6.
    assert out["Has0_F1"] == pytest.approx(0.6)
    # Non0 keeps indices 2, 3, 4: truth >0: T F T; pred >0: T T F (pred 0.0 is negative) -> 1/3.
    assert out["Non0_acc_2"] == pytest.approx(1 / 3)
    # Non0 F1: class T (support 2): TP 1, 2 predicted -> F1 1/2; class F (support 1): F1 0.
    # Weighted: (2*0.5 + 1*0)/3 = 1/3.
    assert out["Non0_F1"] == pytest.approx(1 / 3)


def test_zero_prediction_on_positive_label():
    # pred 0.0 vs label 1.0: >=0 on both sides for Has0 (correct), >0 fails for Non0 (wrong).
    out = msa_metrics(np.array([0.0, -1.0]), np.array([1.0, -1.0]))
    assert out["Has0_acc_2"] == 1.0
    assert out["Non0_acc_2"] == 0.5


def test_has0_weighted_f1_hand_value():
    preds = np.array([1.0, 1.0, 1.0, 1.0, 1.0, -1.0])
    labels = np.array([1.0, 1.0, 1.0, 1.0, -1.0, -1.0])
    out = msa_metrics(preds, labels)
    # Class T (support 4): TP 4, predicted 5 -> P 4/5, R 1, F1 = 2*0.8/1.8 = 8/9.
    # Class F (support 2): TP 1, predicted 1 -> P 1, R 1/2, F1 = 2/3.
    # Weighted: (4*8/9 + 2*2/3)/6 = (32/9 + 12/9)/6 = 22/27 (macro would be 7/9, binary 8/9).
    assert out["Has0_F1"] == pytest.approx(22 / 27)
    assert out["Has0_acc_2"] == pytest.approx(5 / 6)


def test_mae_and_corr():
    out = msa_metrics(np.array([1.0, 2.0, 3.0]), np.array([1.0, 3.0, 2.0]))
    # |0| + |1| + |1| over 3.
    assert out["MAE"] == pytest.approx(2 / 3)
    # Deviations (-1, 0, 1) and (-1, 1, 0): cov sum 1, variance sums 2 and 2 -> r = 1/2.
    assert out["Corr"] == pytest.approx(0.5)


def test_corr_nan_when_constant():
    out = msa_metrics(np.array([0.5, 0.5, 0.5]), np.array([1.0, -1.0, 2.0]))
    assert math.isnan(out["Corr"])


def test_msa_drops_nan_labels():
    # The wild prediction sits on the NaN label and must not count.
    out = msa_metrics(np.array([[1.0, 100.0, -1.0]]), np.array([1.0, np.nan, -1.0]))
    assert out["MAE"] == 0.0
    assert out["Has0_acc_2"] == 1.0
    assert out["Acc_7"] == 1.0


def test_msa_errors():
    with pytest.raises(ValueError):
        msa_metrics(np.array([1.0, 2.0]), np.array([np.nan, np.nan]))
    with pytest.raises(ValueError):
        msa_metrics(np.array([1.0, 2.0]), np.array([1.0]))


def test_non0_nan_when_all_labels_zero():
    out = msa_metrics(np.array([0.2, -0.3]), np.array([0.0, 0.0]))
    assert math.isnan(out["Non0_acc_2"])
    assert math.isnan(out["Non0_F1"])
    assert out["Has0_acc_2"] == 0.5


def test_higher_is_better():
    assert HIGHER_IS_BETTER["MAE"] is False
    assert all(HIGHER_IS_BETTER[k] for k in MSA_METRICS if k != "MAE")
    assert not higher_is_better("MAE")
    assert not higher_is_better("val_loss")
    assert higher_is_better("Corr")
    assert all(higher_is_better(k) for k in MER_SUMMARY)


# ---------------------------------------------------------------- MER


def test_weighted_accuracy_and_f1_hand_case():
    # 3 positives then 5 negatives; TP = 2, TN = 4.
    logits = np.array([1, 1, -1, -1, -1, -1, -1, 1], dtype=float)[:, None]
    intens = np.array([1, 1, 1, 0, 0, 0, 0, 0], dtype=float)[:, None]
    out = mer_metrics(logits, intens, ["joy"])
    # (TP*N/P + TN)/(2N) = (2*5/3 + 4)/10 = 11/15.
    assert out["WA_joy"] == pytest.approx(11 / 15)
    # Right decisions: 2 + 4 of 8.
    assert out["Acc_joy"] == pytest.approx(0.75)
    # Binary: TP 2, FP 1, FN 1 -> P = R = 2/3.
    assert out["F1b_joy"] == pytest.approx(2 / 3)
    # Class F (support 5): TP 4, predicted 5 -> F1 4/5. Weighted: (3*2/3 + 5*4/5)/8 = 0.75.
    assert out["F1w_joy"] == pytest.approx(0.75)


def _small_matrix() -> tuple[np.ndarray, np.ndarray]:
    # truth [[1,0],[1,1],[0,0],[0,1]]; pred [[1,1],[0,1],[0,0],[0,0]].
    intens = np.array([[0.33, 0.0], [2.0, 1.0], [0.0, 0.0], [0.0, 0.66]])
    logits = np.array([[1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0], [-1.0, -1.0]])
    return logits, intens


def test_micro_f1_elem_acc_and_means():
    logits, intens = _small_matrix()
    out = mer_metrics(logits, intens, ["a", "b"])
    # TP 2 (r0a, r1b), FP 1 (r0b), FN 2 (r1a, r3b) -> 2*2/(2*2 + 1 + 2) = 4/7.
    assert out["micro_F1"] == pytest.approx(4 / 7)
    # Matching cells: r0a, r1b, r2a, r2b, r3a -> 5/8.
    assert out["elem_acc"] == pytest.approx(5 / 8)
    # a: P=N=2, TP 1, TN 2 -> (1 + 2)/4; b: TP 1, TN 1 -> (1 + 1)/4. Mean 5/8.
    assert out["WA_a"] == pytest.approx(0.75)
    assert out["WA_b"] == pytest.approx(0.5)
    assert out["WA_mean"] == pytest.approx(5 / 8)
    # a: TP 1, FP 0, FN 1 -> 2/3; b: TP 1, FP 1, FN 1 -> 1/2. Mean 7/12.
    assert out["F1b_mean"] == pytest.approx(7 / 12)
    assert set(MER_SUMMARY) <= set(out)


def test_mer_masks_labels_per_emotion():
    logits, intens = _small_matrix()
    # A row wrong on both emotions, whose label of a is unknown: it scores for b only.
    logits_nan = np.vstack([logits, [5.0, 5.0]])
    intens_nan = np.vstack([intens, [np.nan, 0.0]])
    out = mer_metrics(logits_nan, intens_nan, ["a", "b"])
    alone_a = mer_metrics(logits[:, :1], intens[:, :1], ["a"])
    alone_b = mer_metrics(logits_nan[:, 1:], intens_nan[:, 1:], ["b"])
    for name in ("WA", "F1w", "F1b", "Acc"):
        assert out[f"{name}_a"] == alone_a[f"{name}_a"] and out[f"{name}_b"] == alone_b[f"{name}_b"]
    # b with the extra row: TP 1, TN 1 of P = 2, N = 3 -> (1·3/2 + 1)/6 = 5/12; a still 3/4.
    assert out["WA_b"] == pytest.approx(5 / 12)
    assert out["WA_mean"] == pytest.approx((3 / 4 + 5 / 12) / 2)
    # micro-F1 and element accuracy over the 9 known cells: one more FP and one more wrong cell.
    assert out["micro_F1"] == pytest.approx(2 * 2 / (2 * 2 + 2 + 2))
    assert out["elem_acc"] == pytest.approx(5 / 9)
    with pytest.raises(ValueError):
        mer_metrics(logits[:1], np.full((1, 2), np.nan), ["a", "b"])


def test_mer_means_average_the_same_emotions_and_name_the_others():
    logits, intens = _small_matrix()
    # c has no positive label, d no known label at all: both leave every mean, and are named.
    logits4 = np.hstack([logits, [[1.0], [-1.0], [1.0], [-1.0]], [[1.0], [1.0], [-1.0], [-1.0]]])
    intens4 = np.hstack([intens, np.zeros((4, 1)), np.full((4, 1), np.nan)])
    out = mer_metrics(logits4, intens4, ["a", "b", "c", "d"])
    two = mer_metrics(logits, intens, ["a", "b"])
    for name in ("WA_mean", "F1w_mean", "F1b_mean"):
        assert out[name] == two[name]
    assert math.isnan(out["WA_c"]) and out["F1w_c"] == pytest.approx(2 / 3)  # computed, but not averaged
    assert all(math.isnan(out[f"{name}_d"]) for name in ("WA", "F1w", "F1b", "Acc"))
    reasons = left_out_emotions(intens4, ["a", "b", "c", "d"])
    assert reasons == {"c": "no positive label", "d": "no label"}
    assert left_out_note(reasons).endswith("left out: c (no positive label), d (no label)")
    assert left_out_emotions(1 - np.isnan(intens4[:, :3]), ["a", "b", "c"]) == {
        "a": "no negative label",
        "b": "no negative label",
        "c": "no negative label",
    }


def test_mer_summary_matches_the_formulas_where_every_label_is_known():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(40, 6))
    intens = np.where(rng.random((40, 6)) < 0.3, rng.uniform(0.1, 3, (40, 6)), 0.0)
    out = mer_metrics(logits, intens, list("abcdef"))
    truth, pred = intens > 0, logits > 0
    assert out["micro_F1"] == f1_score(truth, pred, average="micro")
    assert out["elem_acc"] == np.mean(truth == pred)
    assert out["WA_mean"] == np.mean([out[f"WA_{c}"] for c in "abcdef"])
    assert out["F1w_mean"] == np.mean([f1_score(truth[:, c], pred[:, c], average="weighted") for c in range(6)])


def test_thresholds_scalar_vs_array():
    logits = np.array([[0.5, 0.5], [-0.5, -0.5]])
    intens = np.array([[1.0, 0.0], [0.0, 0.0]])
    # Scalar 0: both columns fire on row 0 -> the b cell is wrong -> 3/4.
    assert mer_metrics(logits, intens, ["a", "b"], 0.0)["elem_acc"] == 0.75
    assert mer_metrics(logits, intens, ["a", "b"], np.zeros(2))["elem_acc"] == 0.75
    # Per-emotion [0, 1]: b no longer fires -> all 4 right.
    out = mer_metrics(logits, intens, ["a", "b"], np.array([0.0, 1.0]))
    assert out["elem_acc"] == 1.0
    # b has no positives: its WA is undefined and the mean skips it without warning.
    assert math.isnan(out["WA_b"])
    assert out["WA_mean"] == 1.0
    # Scalar 1: nothing fires -> only the a cell of row 0 is wrong.
    assert mer_metrics(logits, intens, ["a", "b"], 1.0)["elem_acc"] == 0.75
    with pytest.raises(ValueError):
        mer_metrics(logits, intens, ["a", "b"], np.zeros(3))
    with pytest.raises(ValueError):
        mer_metrics(logits, intens, ["a"])


def test_tune_thresholds_separates():
    # a: perfect for thresholds in [0.35, 0.75) -> grid 0.4..0.7, closest to 0 is 0.4.
    # b: perfect in [-1.25, -0.8) -> grid -1.2..-0.9, closest to 0 is -0.9.
    # c: perfect in [-0.5, 0.5) -> 0 itself.
    logits = np.array(
        [
            [0.75, -0.8, 0.5],
            [1.2, -0.45, 0.5],
            [0.15, -1.5, -0.5],
            [0.35, -1.25, -0.5],
            [-1.0, -1.25, -0.5],
        ]
    )
    intens = np.array([[1, 1, 1], [1, 1, 1], [0, 0, 0], [0, 0, 0], [0, 0, 0]], dtype=float)
    thr = tune_thresholds(logits, intens)
    assert thr == pytest.approx([0.4, -0.9, 0.0])
    assert mer_metrics(logits, intens, ["a", "b", "c"], thr)["WA_mean"] == 1.0
