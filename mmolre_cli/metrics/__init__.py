"""Evaluation metrics for sentiment regression (MSA) and multi-label emotion recognition (MER)."""

from mmolre_cli.metrics.mer import MER_SUMMARY, left_out_emotions, left_out_note, mer_metrics, tune_thresholds
from mmolre_cli.metrics.msa import HIGHER_IS_BETTER, MSA_METRICS, msa_metrics


def higher_is_better(name: str) -> bool:
    """Return False only for ``MAE`` and names containing ``loss``; every other metric is maximised."""
    return not (name == "MAE" or "loss" in name)


__all__ = [
    "HIGHER_IS_BETTER",
    "MER_SUMMARY",
    "MSA_METRICS",
    "higher_is_better",
    "left_out_emotions",
    "left_out_note",
    "mer_metrics",
    "msa_metrics",
    "tune_thresholds",
]
