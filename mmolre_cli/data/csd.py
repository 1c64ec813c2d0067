"""CMU-MultimodalSDK computational sequences (``.csd``) → word-aligned segments in standard folds.

A sequence is an HDF5 file with one root group named after it, holding
``data/<video_id>/features`` (n, dim), ``data/<video_id>/intervals`` (n, 2: start and end in
seconds) and ``metadata/<key>``. Preparation takes one sequence per modality, the text one
word-level (its intervals are the reference), plus the label sequence: MOSEI's ``All Labels``
(7 columns: sentiment, happy, sad, anger, surprise, disgust, fear) or MOSI's ``Opinion Segment
Labels`` (1 column: sentiment).

- Each label row is a segment, with id ``<video>$_$<row>``; its words are the reference words
  that overlap it. Segments without a word are dropped (the count is reported).
- A segment keeps its first ``seq_len`` words (``keep="last"``: its last), padded at the end.
- Each modality is aligned to those words by averaging, per word, the frames that overlap it
  (start < word end and end > word start), zero where none does. The text sequence gives its
  own rows. Non-finite feature values are replaced by 0 before averaging (the count is reported).
- Videos go to train/valid/test by the SDK's standard folds (shipped with the package) or a
  ``folds`` JSON file. Fold videos absent from any sequence are an error unless ``allow_missing``.
"""

from __future__ import annotations

import json
import os
from contextlib import ExitStack
from importlib import resources
from pathlib import Path

import h5py
import numpy as np

from mmolre_cli.data.canonical import (
    EMOTION_RANGE,
    MOSEI_EMOTIONS,
    SENTIMENT_RANGE,
    SPLITS,
    CanonicalData,
    Split,
    feature_memory_limit,
)
from mmolre_cli.errors import DataError, UsageError, first_line

#: Label columns per dataset: sentiment, then the MOSEI emotions in MOSEI_EMOTIONS order.
LABEL_COLUMNS = {"mosi": 1, "mosei": 1 + len(MOSEI_EMOTIONS)}
KEEP = ("first", "last")


class Sequence:
    """One open computational sequence; :meth:`read` returns a video's validated rows."""

    def __init__(self, path: Path, stack: ExitStack) -> None:
        self.src = str(path)
        if not path.exists():
            raise DataError(f"{path}: file not found")
        if path.is_dir() or not h5py.is_hdf5(path):
            raise DataError(f"{path}: not an HDF5 file (a .csd computational sequence is one)")
        try:
            f = stack.enter_context(h5py.File(path, "r"))
            objects = {key: f.get(key) for key in f}  # None where a link leads nowhere
        except (OSError, RuntimeError) as e:
            raise DataError(f"{path}: unreadable HDF5 file (truncated or corrupt?): {first_line(e)}") from None
        broken = next((key for key, obj in objects.items() if obj is None), None)
        if broken is not None:
            raise DataError(f"{path}: /{broken}: cannot be opened (a broken soft or external link?)")
        roots = [key for key, obj in objects.items() if isinstance(obj, h5py.Group)]
        if len(roots) != 1:
            raise DataError(f"{path}: /: expected one root group named after the sequence, found {len(roots)}")
        self.name = roots[0]
        data = f[self.name].get("data")
        if not isinstance(data, h5py.Group):
            raise DataError(f"{path}: {self.name}/data: missing group")
        self.data = data
        self.videos = set(data)
        self._dim: tuple[str, int] | None = None

    def columns(self) -> int:
        """The feature dim, that of the first video by name (0 when there is none); every video must match it."""
        if self._dim is None:
            for vid in sorted(self.videos):
                self._dim = (vid, int(self._features(vid).shape[1]))
                break
        return self._dim[1] if self._dim is not None else 0

    def _dataset(self, vid: str, name: str) -> h5py.Dataset:
        obj = self.data[vid].get(name) if isinstance(self.data.get(vid), h5py.Group) else None
        if not isinstance(obj, h5py.Dataset):
            raise DataError(f"{self.src}: {self.name}/data/{vid}/{name}: missing dataset")
        return obj

    def _features(self, vid: str) -> h5py.Dataset:
        features = self._dataset(vid, "features")
        if features.ndim != 2 or features.dtype.kind not in "fiu":
            raise DataError(
                f"{self.src}: {self.name}/data/{vid}/features: expected numbers (n, dim), "
                f"got {features.dtype} {features.shape}"
            )
        return features

    def read(self, vid: str) -> tuple[np.ndarray, np.ndarray]:
        """``(features (n, dim), intervals (n, 2) float64)`` of ``vid``, checked."""
        where = f"{self.name}/data/{vid}"
        try:
            x = self._features(vid)[()]
            t = self._dataset(vid, "intervals")[()]
        except (OSError, RuntimeError) as e:
            raise DataError(f"{self.src}: {where}: unreadable (truncated file?): {first_line(e)}") from None
        if t.shape != (len(x), 2) or t.dtype.kind not in "fiu":
            raise DataError(f"{self.src}: {where}/intervals: expected numbers ({len(x)}, 2), got {t.dtype} {t.shape}")
        t = t.astype(np.float64)
        if not np.isfinite(t).all() or (t[:, 1] < t[:, 0]).any():
            raise DataError(f"{self.src}: {where}/intervals: non-finite, or an end before its start")
        if x.shape[1] != self.columns():
            raise DataError(
                f"{self.src}: {where}/features: feature dim {x.shape[1]} differs from {self._dim[0]}'s {self._dim[1]}"
            )
        return x, t


def align(features: np.ndarray, intervals: np.ndarray, words: np.ndarray) -> np.ndarray:
    """Average the frames that overlap each word interval, zero where none does: (len(words), dim) float32.

    A frame overlaps a word when it starts before the word ends and ends after the word starts.
    """
    order = np.argsort(intervals[:, 0], kind="stable")
    starts, ends = intervals[order, 0], intervals[order, 1]
    x = features[order].astype(np.float64)
    # Frames [0, hi) start before the word ends.
    hi = np.searchsorted(starts, words[:, 1], side="left")
    out = np.zeros((len(words), x.shape[1]), dtype=np.float64)
    if np.all(np.diff(ends) >= 0):
        # Regular frames: those ending after the word starts are [lo, n), so the overlap is one range.
        lo = np.minimum(np.searchsorted(ends, words[:, 0], side="right"), hi)
        total = np.concatenate([np.zeros((1, x.shape[1])), np.cumsum(x, axis=0)])
        counts = hi - lo
        np.divide(total[hi] - total[lo], counts[:, None], out=out, where=counts[:, None] > 0)
    else:
        for i, (word_start, h) in enumerate(zip(words[:, 0], hi, strict=True)):
            overlapping = ends[:h] > word_start
            if overlapping.any():
                out[i] = x[:h][overlapping].mean(axis=0)
    return out.astype(np.float32)


def _replace_nonfinite(x: np.ndarray) -> tuple[np.ndarray, int]:
    bad = ~np.isfinite(x) if x.dtype.kind == "f" else None
    if bad is None or not bad.any():
        return x, 0
    x = x.copy()
    x[bad] = 0
    return x, int(bad.sum())


def standard_folds() -> dict[str, dict[str, list[str]]]:
    """The CMU-MultimodalSDK standard folds shipped with the package: dataset → split → video ids."""
    text = resources.files("mmolre_cli").joinpath("resources/cmu_standard_folds.json").read_text("utf-8")
    return json.loads(text)["datasets"]


def load_folds(path: str | os.PathLike, dataset: str) -> dict[str, list[str]]:
    """Folds from a JSON file: ``{"train": [...], "valid": [...], "test": [...]}`` or the shipped layout."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        obj = json.loads(path.read_text("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise DataError(f"{path}: not a JSON file ({first_line(e)})") from None
    where = ""
    if isinstance(obj, dict) and "datasets" in obj:
        where = f"datasets/{dataset}/"
        obj = obj["datasets"].get(dataset) if isinstance(obj["datasets"], dict) else None
        if obj is None:
            raise DataError(f"{path}: {where.rstrip('/')}: missing")
    return _check_folds(obj, str(path), where)


def _check_folds(obj: object, src: str, where: str) -> dict[str, list[str]]:
    if not isinstance(obj, dict):
        raise DataError(f"{src}: {where or '/'}: expected an object with {', '.join(SPLITS)}")
    seen: dict[str, str] = {}
    for split in SPLITS:
        ids = obj.get(split)
        if not isinstance(ids, list) or not ids or not all(isinstance(v, str) for v in ids):
            raise DataError(f"{src}: {where}{split}: expected a non-empty list of video ids")
        for vid in ids:
            if vid in seen:
                again = "listed twice" if seen[vid] == split else f"also in {seen[vid]}"
                raise DataError(f"{src}: {where}{split}: video {vid!r} is {again}")
            seen[vid] = split
    return {split: obj[split] for split in SPLITS}


def _segments(
    labels: Sequence, text: Sequence, vid: str, seq_len: int, keep: str
) -> tuple[list[tuple[int, np.ndarray, np.ndarray]], int]:
    """``(row, word indices, label row)`` per label row of ``vid`` that has words (in time order), and the row count."""
    y, segments = labels.read(vid)
    where = f"{labels.name}/data/{vid}/features"
    for columns, (lo, hi) in ((slice(0, 1), SENTIMENT_RANGE), (slice(1, None), EMOTION_RANGE)):
        values = y[:, columns]
        bad = ~((values >= lo) & (values <= hi))
        if bad.any():
            row, col = np.argwhere(bad)[0]
            name = ("sentiment", *MOSEI_EMOTIONS)[columns.start + col]
            raise DataError(
                f"{labels.src}: {where}: {name} {values[row, col]:g} at row {row} "
                f"is not a finite value in [{lo:g}, {hi:g}]"
            )
    _, words = text.read(vid)
    order = np.argsort(words[:, 0], kind="stable")
    out = []
    for row, (start, end) in enumerate(segments):
        inside = order[(words[order, 0] < end) & (words[order, 1] > start)]
        if len(inside):
            out.append((row, inside[:seq_len] if keep == "first" else inside[-seq_len:], y[row]))
    return out, len(y)


def read_csd(
    sequences: dict[str, str | os.PathLike],
    labels: str | os.PathLike,
    *,
    dataset: str | None = None,
    seq_len: int = 50,
    keep: str = "first",
    folds: str | os.PathLike | None = None,
    allow_missing: bool = False,
) -> CanonicalData:
    """Prepare segments from ``sequences`` (modality → .csd; ``text`` is the word reference) and ``labels``.

    ``dataset`` (mosi or mosei) defaults to what the label column count says.
    """
    if "text" not in sequences:
        raise UsageError("--text: the word-level text sequence is required (its intervals are the reference)")
    if seq_len < 1:
        raise UsageError(f"--seq-len: must be at least 1, got {seq_len}")
    if keep not in KEEP:
        raise UsageError(f"--keep: expected first or last, got {keep!r}")
    if dataset is not None and dataset not in LABEL_COLUMNS:
        raise UsageError(f"--dataset: expected mosi or mosei, got {dataset!r}")
    with ExitStack() as stack:
        label_seq = Sequence(Path(labels), stack)
        seqs = {m: Sequence(Path(p), stack) for m, p in sequences.items()}
        columns = label_seq.columns()
        if dataset is None:
            dataset = {n: name for name, n in LABEL_COLUMNS.items()}.get(columns)
            if dataset is None:
                raise DataError(
                    f"{label_seq.src}: {label_seq.name}/data: {columns} label columns; "
                    "expected 1 (MOSI: sentiment) or 7 (MOSEI: sentiment and 6 emotions)"
                )
        if columns != LABEL_COLUMNS[dataset]:
            raise DataError(
                f"{label_seq.src}: {label_seq.name}/data: {columns} label columns, "
                f"but {dataset} labels have {LABEL_COLUMNS[dataset]}"
            )
        split_videos = load_folds(folds, dataset) if folds is not None else standard_folds()[dataset]
        fold_src = str(folds) if folds is not None else f"standard {dataset} folds"
        present = label_seq.videos.intersection(*(s.videos for s in seqs.values()))
        fold_ids = [vid for split in SPLITS for vid in split_videos[split]]
        absent = [vid for vid in fold_ids if vid not in present]
        if absent and not allow_missing:
            raise DataError(
                f"{_missing(absent[0], label_seq, seqs)}; {len(absent)} of {len(fold_ids)} video ids "
                f"of the {fold_src} are absent from the data (use --allow-missing to continue without them)"
            )
        report = {"nonfinite": dict.fromkeys(seqs, 0), "dropped_segments": 0}
        # Labels and word intervals are small: every segment is planned first, so the features can be
        # sized before they are allocated, once per split.
        plans = {}
        for split in SPLITS:
            videos = [v for v in split_videos[split] if v in present]
            if not videos:
                raise DataError(
                    f"{_missing(split_videos[split][0], label_seq, seqs)}; no {split} video of the {fold_src} "
                    f"is in every sequence, so {split} would be empty"
                )
            plans[split] = _plan(videos, label_seq, seqs["text"], seq_len, keep, report)
            if not any(segments for _, segments in plans[split]):
                raise DataError(
                    f"{label_seq.src}: {label_seq.name}/data: no label row of the {len(videos)} {split} videos "
                    f"overlaps a word, so {split} would be empty"
                )
        _check_memory(sum(len(segments) for plan in plans.values() for _, segments in plan), seqs, seq_len)
        splits = {split: _read_split(plan, seqs, seq_len, report) for split, plan in plans.items()}
    return CanonicalData(
        dataset=dataset,
        source="csd",
        modalities=list(seqs),
        emotions=list(MOSEI_EMOTIONS),
        splits=splits,
        options={
            "files": {m: Path(p).name for m, p in sequences.items()} | {"labels": Path(labels).name},
            "seq_len": seq_len,
            "keep": keep,
            "folds": fold_src,
            "absent_fold_videos": len(absent),
            "unassigned_videos": len(present - set(fold_ids)),
            "dropped_segments": report["dropped_segments"],
            "cleaned": {"nonfinite": report["nonfinite"]},
        },
    )


def _missing(vid: str, labels: Sequence, seqs: dict[str, Sequence]) -> str:
    """``file: path: missing`` for the first sequence without ``vid``."""
    seq = next(s for s in (labels, *seqs.values()) if vid not in s.videos)
    return f"{seq.src}: {seq.name}/data/{vid}: missing"


def _plan(
    videos: list[str], labels: Sequence, text: Sequence, seq_len: int, keep: str, report: dict
) -> list[tuple[str, list]]:
    """``(video, its segments)`` for each of ``videos``, counting the dropped segments in ``report``."""
    plan = []
    for vid in videos:
        segments, rows = _segments(labels, text, vid, seq_len, keep)
        report["dropped_segments"] += rows - len(segments)
        plan.append((vid, segments))
    return plan


def _check_memory(n: int, seqs: dict[str, Sequence], seq_len: int) -> None:
    """Refuse, naming ``--seq-len``, features of ``n`` segments too large for this machine's physical memory."""
    values = sum(seq.columns() for seq in seqs.values())
    limit = feature_memory_limit(n, values)
    if limit is None:  # unknown memory: the allocation itself decides
        return
    most, memory = limit
    if seq_len > most:
        raise UsageError(
            f"--seq-len {seq_len}: the features ({n} segments × {seq_len} steps × {values} float32 values) would "
            f"not fit in this machine's memory ({memory / 2**30:.0f} GiB); --seq-len can be at most {most}"
        )


def _read_split(plan: list[tuple[str, list]], seqs: dict[str, Sequence], seq_len: int, report: dict) -> Split:
    """The split of ``plan``'s segments, aligned; non-finite feature values counted in ``report``."""
    n = sum(len(segments) for _, segments in plan)
    ids = np.empty(n, dtype=object)
    lengths = np.zeros(n, dtype=np.int32)
    y = np.full((n, 1 + len(MOSEI_EMOTIONS)), np.nan, dtype=np.float32)
    features = {m: np.zeros((n, seq_len, seq.columns()), dtype=np.float32) for m, seq in seqs.items()}
    i = 0
    for vid, segments in plan:
        frames = {}
        for m, seq in seqs.items():
            x, t = seq.read(vid)
            x, count = _replace_nonfinite(x)
            report["nonfinite"][m] += count
            frames[m] = (x, t)
        words = frames["text"][1]
        for row, index, label in segments:
            ids[i] = f"{vid}$_${row}"
            lengths[i] = len(index)
            y[i, : len(label)] = label
            for m, (x, t) in frames.items():
                # The text sequence is the reference: its own rows, no averaging.
                features[m][i, : len(index)] = x[index] if m == "text" else align(x, t, words[index])
            i += 1
    return Split(
        ids=ids.astype(str),
        features=features,
        lengths={m: lengths.copy() for m in seqs},
        sentiment=y[:, 0].copy(),
        emotion=y[:, 1:].copy(),
    )
