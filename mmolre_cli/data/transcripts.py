"""MMSA raw ``label.csv`` transcripts → a text-only canonical dataset, embedded by a text encoder.

Columns (any order, others ignored): ``video_id``, ``clip_id``, ``text``, ``label`` (sentiment
in [-3, 3]) and ``mode`` (train, valid or test); MMSA files also carry ``label_T``, ``label_A``,
``label_V`` and ``annotation``. Ids are ``<video_id>$_$<clip_id>``; emotions are unknown (NaN).

A text encoder (kind ``text_encoder``) is any object with ``encode(texts, seq_len)`` returning
float32 features (N, seq_len, D), zero after each length, and int32 lengths (N,).
"""

from __future__ import annotations

import csv
import math
import os
import re
from pathlib import Path
from typing import Protocol

import numpy as np

from mmolre_cli.data.canonical import MOSEI_EMOTIONS, SENTIMENT_RANGE, SPLITS, CanonicalData, Split
from mmolre_cli.errors import DataError, UsageError

COLUMNS = ("video_id", "clip_id", "text", "label", "mode")
#: A plain decimal number, e.g. -1.5, .5 or 2e-1: no underscores, no words like inf or nan.
_NUMBER = re.compile(r"\s*[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?\s*")


class TextEncoder(Protocol):
    """What a ``text_encoder`` factory builds."""

    def encode(self, texts: list[str], seq_len: int) -> tuple[np.ndarray, np.ndarray]: ...


def read_label_csv(path: str | os.PathLike) -> dict[str, dict[str, list]]:
    """Rows of ``path`` by split: ``{"train": {"ids": [...], "texts": [...], "labels": [...]}, ...}``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    rows: dict[str, dict[str, list]] = {s: {"ids": [], "texts": [], "labels": []} for s in SPLITS}
    first_seen: dict[str, int] = {}  # clip id → the line it is on
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            missing = [c for c in COLUMNS if c not in header]
            if missing:
                raise DataError(f"{path}: header: missing column {missing[0]!r} (needs {', '.join(COLUMNS)})")
            twice = [c for c in COLUMNS if header.count(c) > 1]
            if twice:
                raise DataError(f"{path}: header: column {twice[0]!r} appears {header.count(twice[0])} times")
            for row in reader:
                where = f"{path}: line {reader.line_num}"
                if None in row.values():  # DictReader fills a short row's missing fields with None
                    fields = sum(value is not None for value in row.values())
                    raise DataError(f"{where}: {fields} fields, fewer than the header's {len(header)}")
                if None in row:  # and keeps a long row's extra fields under the key None
                    raise DataError(
                        f"{where}: {len(header) + len(row[None])} fields, more than the header's {len(header)}"
                    )
                split = row["mode"].strip()
                if split not in rows:
                    raise DataError(f"{where}, mode: {split!r} is not one of {', '.join(SPLITS)}")
                if not _NUMBER.fullmatch(row["label"]):
                    raise DataError(f"{where}, label: {row['label']!r} is not a plain decimal number")
                label = float(row["label"])
                lo, hi = SENTIMENT_RANGE
                if not (math.isfinite(label) and lo <= label <= hi):
                    raise DataError(f"{where}, label: {label:g} is not a finite value in [{lo:g}, {hi:g}]")
                clip = f"{row['video_id']}$_${row['clip_id']}"
                if clip in first_seen:
                    raise DataError(
                        f"{where}: video_id {row['video_id']!r}, clip_id {row['clip_id']!r} is also on line "
                        f"{first_seen[clip]} (each clip once)"
                    )
                first_seen[clip] = reader.line_num
                rows[split]["ids"].append(clip)
                rows[split]["texts"].append(row["text"])
                rows[split]["labels"].append(label)
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not a UTF-8 text file ({e.reason} at byte {e.start})") from None
    except csv.Error as e:
        raise DataError(f"{path}: not a CSV file ({e})") from None
    for split, part in rows.items():
        if not part["ids"]:
            raise DataError(f"{path}: mode: no rows for split {split!r}")
    return rows


def check_encoded(returned: object, n: int, seq_len: int, who: str) -> tuple[np.ndarray, np.ndarray]:
    """A text encoder's ``encode`` result as float32 features (n, seq_len, D), zero after each length, and
    int32 lengths (n,) in 1..seq_len, or a DataError naming ``who`` and what it returned instead."""
    arrays = isinstance(returned, tuple) and len(returned) == 2 and all(isinstance(a, np.ndarray) for a in returned)
    if not arrays:
        got = (
            f"({', '.join(type(a).__name__ for a in returned)})"
            if isinstance(returned, tuple)
            else type(returned).__name__
        )
        raise DataError(f"{who}: encode returned {got}, expected two numpy arrays (features, lengths)")
    features, lengths = returned
    if features.ndim != 3 or features.shape[:2] != (n, seq_len) or lengths.shape != (n,):
        raise DataError(
            f"{who}: encode returned features {features.shape} and lengths {lengths.shape} for {n} texts at "
            f"--seq-len {seq_len}, expected ({n}, {seq_len}, D) and ({n},)"
        )
    if features.dtype.kind != "f" or lengths.dtype.kind not in "iu":
        raise DataError(
            f"{who}: encode returned {features.dtype} features and {lengths.dtype} lengths, "
            "expected floats and integers"
        )
    if lengths.size and (lengths.min() < 1 or lengths.max() > seq_len):
        raise DataError(f"{who}: encode returned lengths outside 1..{seq_len} (--seq-len)")
    if features[np.arange(seq_len)[None, :] >= lengths[:, None]].any():
        raise DataError(f"{who}: encode returned features that are not zero after each text's length")
    return features.astype(np.float32, copy=False), lengths.astype(np.int32, copy=False)


def prepare_transcripts(
    path: str | os.PathLike,
    encoder: TextEncoder,
    *,
    seq_len: int = 50,
    dataset: str | None = None,
    who: str = "the text encoder",
) -> CanonicalData:
    """Embed the transcripts of ``path`` with ``encoder`` (``who``, for errors) into a canonical dataset with one
    modality, text."""
    if seq_len < 1:
        raise UsageError(f"--seq-len: must be at least 1, got {seq_len}")
    path = Path(path)
    rows = read_label_csv(path)
    splits = {}
    for split, part in rows.items():
        n = len(part["ids"])
        features, lengths = check_encoded(encoder.encode(part["texts"], seq_len), n, seq_len, who)
        splits[split] = Split(
            ids=np.asarray(part["ids"], dtype=str),
            features={"text": features},
            lengths={"text": lengths},
            sentiment=np.asarray(part["labels"], dtype=np.float32),
            emotion=np.full((n, len(MOSEI_EMOTIONS)), np.nan, dtype=np.float32),
            raw_text=np.asarray(part["texts"], dtype=str),
        )
    return CanonicalData(
        dataset=dataset or path.parent.name.lower() or path.stem,
        source="csv",
        modalities=["text"],
        emotions=list(MOSEI_EMOTIONS),
        splits=splits,
        options={"file": path.name, "seq_len": seq_len},
    )
