"""Unimodal encoders: pre-extracted features (B, T, D_m) → (B, T, d), zero at padded positions.

Each zeroes padded input frames first, so that no value there (NaN or inf included) enters a computation.
They receive features already normalised as ``model.normalize`` says (mmolre_cli/model/normalize.py).
"""

import math

import torch
from torch import Tensor, nn

from mmolre_cli.model.masking import attendable, zero_padding


class LinearEncoder(nn.Module):
    """Project each frame's features to the model width."""

    def __init__(self, input_dim: int, d_model: int, dropout: float = 0.1):
        super().__init__()
        self.project = nn.Linear(input_dim, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        return zero_padding(self.dropout(self.project(zero_padding(x, mask))), mask)


def sinusoidal_positions(length: int, d_model: int, device: torch.device) -> Tensor:
    """(T, d) fixed sinusoidal position codes, as in the original Transformer."""
    position = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    frequency = torch.exp(torch.arange(0, d_model, 2, device=device) * (-math.log(10000.0) / d_model))
    codes = torch.zeros(length, d_model, device=device)
    codes[:, 0::2] = torch.sin(position * frequency)
    codes[:, 1::2] = torch.cos(position * frequency)[:, : d_model // 2]
    return codes


class TransformerEncoder(nn.Module):
    """Project, add position codes, then one pre-norm Transformer layer that ignores padding."""

    def __init__(self, input_dim: int, d_model: int, dropout: float = 0.1, layers: int = 1, heads: int = 4):
        super().__init__()
        self.input = LinearEncoder(input_dim, d_model, dropout)
        layer = nn.TransformerEncoderLayer(
            d_model, heads, dim_feedforward=2 * d_model, dropout=dropout, batch_first=True, norm_first=True
        )
        # The nested-tensor fast path changes padded outputs between train and eval; we mask them anyway.
        self.layers = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        h = self.input(x, mask) + sinusoidal_positions(x.shape[1], self.input.project.out_features, x.device)
        return zero_padding(self.layers(h, src_key_padding_mask=attendable(mask)), mask)


class LSTMEncoder(nn.Module):
    """A bidirectional LSTM over the valid frames only (packed), projected to the model width. A clip
    without frames runs over one zero frame (packing needs one), and its output is zeroed."""

    def __init__(self, input_dim: int, d_model: int, dropout: float = 0.1):
        super().__init__()
        self.lstm = nn.LSTM(input_dim, d_model, batch_first=True, bidirectional=True)
        self.project = nn.Linear(2 * d_model, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        lengths = mask.sum(1).clamp(min=1).cpu()
        x = zero_padding(x, mask)
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        return zero_padding(self.dropout(self.project(out)), mask)
