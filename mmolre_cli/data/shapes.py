"""Data shapes: feature sizes, sequence lengths and emotion names, from a canonical file, loaded data
or a named dataset (``mosi``, ``mosei``), without reading any features."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmolre_cli.config import unknown_choice
from mmolre_cli.data.canonical import (
    MOSEI_EMOTIONS,
    CanonicalData,
    check_feature_shape,
    check_format,
    check_hdf5_path,
    open_hdf5,
)
from mmolre_cli.errors import DataError, UsageError


@dataclass(frozen=True)
class DataShapes:
    """Per modality the feature size D_m and sequence length T_m; the emotion names; whether the
    data holds emotion labels (MOSI does not, so ``er`` is not trained on it)."""

    source: str
    input_dims: dict[str, int]
    lengths: dict[str, int]
    emotions: list[str]
    emotion_labels: bool

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "input_dims": dict(self.input_dims),
            "lengths": dict(self.lengths),
            "emotions": list(self.emotions),
            "emotion_labels": self.emotion_labels,
        }


#: The MMSA aligned_50 releases (SPEC §4).
LIKE = {
    "mosi": DataShapes(
        "like mosi", {"text": 768, "audio": 5, "vision": 20}, dict.fromkeys(("text", "audio", "vision"), 50),
        list(MOSEI_EMOTIONS), emotion_labels=False,
    ),
    "mosei": DataShapes(
        "like mosei", {"text": 768, "audio": 74, "vision": 35}, dict.fromkeys(("text", "audio", "vision"), 50),
        list(MOSEI_EMOTIONS), emotion_labels=True,
    ),
}  # fmt: skip


def like_shapes(name: str) -> DataShapes:
    """The shapes of a named dataset (``mosi`` or ``mosei``), or a UsageError naming ``--like``."""
    if name not in LIKE:
        raise UsageError(unknown_choice("--like", name, list(LIKE)))
    return LIKE[name]


def has_emotion_labels(emotion: np.ndarray) -> bool:
    """Whether an (N, C) emotion label array knows at least one label (NaN: unknown)."""
    return emotion.size > 0 and bool(np.isfinite(emotion).any())


def _train_shapes(source: str, features: dict[str, tuple], emotions: list[str], emotion: np.ndarray) -> DataShapes:
    """DataShapes from the train split's (N, T, D) feature shapes and its emotion labels."""
    return DataShapes(
        source,
        {m: int(shape[2]) for m, shape in features.items()},
        {m: int(shape[1]) for m, shape in features.items()},
        list(emotions),
        emotion_labels=has_emotion_labels(emotion),
    )


def data_shapes(data: CanonicalData) -> DataShapes:
    """The shapes of loaded data, from its train split."""
    train = data.splits["train"]
    return _train_shapes(data.dataset, {m: x.shape for m, x in train.features.items()}, data.emotions, train.emotion)


def read_shapes(path: str | Path) -> DataShapes:
    """Feature sizes and padded lengths from a canonical file's train split, without reading its features."""
    path, src = Path(path), str(path)
    check_hdf5_path(path, src)
    with open_hdf5(path, src) as f:
        check_format(f, src)
        try:
            modalities, emotions = json.loads(f.attrs["modalities"]), json.loads(f.attrs["emotions"])
            features = {m: f[f"train/features/{m}"].shape for m in modalities}
            emotion = np.asarray(f["train/labels/emotion"][()])
        except (KeyError, TypeError, ValueError) as error:
            raise DataError(f"{src}: not a complete canonical file ({error})") from None
    if any(len(shape) != 3 for shape in features.values()):
        raise DataError(f"{src}: train/features: expected (N, T, D) arrays")
    for m, shape in features.items():
        check_feature_shape(shape, src, f"train/features/{m}")
    return _train_shapes(src, features, emotions, emotion)
