"""Task heads: ``sa`` → one sentiment score, ``er`` → one logit per emotion."""

from torch import nn


def make_head(task: str, d_model: int, n_emotions: int, dropout: float) -> nn.Module:
    """A two-layer MLP from the fused task vector to the task's outputs."""
    outputs = 1 if task == "sa" else n_emotions
    return nn.Sequential(nn.Linear(d_model, d_model), nn.GELU(), nn.Dropout(dropout), nn.Linear(d_model, outputs))
