"""The canonical HDF5 file: one prepared dataset, its splits, features and labels (SPEC §4).

Layout (``FORMAT``)::

    /                 attrs: format, dataset, source, modalities (JSON list), emotions (JSON list),
                             created_by, options (JSON object of the preparation options)
    /<split>/ids                    variable-length UTF-8 strings (N,), no NUL, unique in the whole file
    /<split>/features/<m>           float32 (N, T_m, D_m), T_m and D_m ≥ 1, zero at padded positions
    /<split>/lengths/<m>            int32 (N,), in [0, T_m]
    /<split>/labels/sentiment       float32 (N,), in [-3, 3], NaN = unknown
    /<split>/labels/emotion         float32 (N, C) intensities in [0, 3], NaN = unknown
    /<split>/raw_text               optional, variable-length UTF-8 strings (N,), no NUL
    /<split>/raw_audio              optional, variable-length float32 (N,): one mono waveform per sample,
                                    finite, at least one value, at the root attribute raw_audio_rate (Hz)

for every split in ``SPLITS``. A file with ``raw_audio`` has format ``FORMAT_RAW_AUDIO`` (version 2, which
adds it and the root attribute ``raw_audio_rate``); one without has ``FORMAT``. Both are read. Every
problem with a file raises ``DataError`` with a one-line message that names the file and the field.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from mmolre_cli import __version__
from mmolre_cli.atomic import atomic_path
from mmolre_cli.errors import DataError, UsageError, first_line

FORMAT = "mmolre-canonical/1"
FORMAT_RAW_AUDIO = "mmolre-canonical/2"
#: The formats this version reads.
FORMATS = (FORMAT, FORMAT_RAW_AUDIO)
SPLITS = ("train", "valid", "test")
MOSEI_EMOTIONS = ("happy", "sad", "anger", "surprise", "disgust", "fear")
SENTIMENT_RANGE = (-3.0, 3.0)
EMOTION_RANGE = (0.0, 3.0)

# Feature chunks of about 2 MiB: large enough for full reads at disk speed, small enough that
# reading a few samples does not pull in megabytes it does not need.
_CHUNK_BYTES = 2 << 20
# Validation scans features in slices of about this size to bound temporary memory on GB-sized data.
_SCAN_BYTES = 64 << 20


@dataclass
class Split:
    """One split: ids, per-modality features and lengths, labels (NaN where unknown)."""

    ids: np.ndarray
    features: dict[str, np.ndarray]
    lengths: dict[str, np.ndarray]
    sentiment: np.ndarray
    emotion: np.ndarray
    raw_text: np.ndarray | None = None
    raw_audio: np.ndarray | None = None  # object array of float32 waveforms (N,)

    @property
    def size(self) -> int:
        """Number of samples."""
        return len(self.ids)


@dataclass
class CanonicalData:
    """A prepared dataset: what a canonical file holds, in memory."""

    dataset: str
    source: str
    modalities: list[str]
    emotions: list[str]
    splits: dict[str, Split]
    options: dict = field(default_factory=dict)
    created_by: str = f"mmolre {__version__}"
    raw_audio_rate: int | None = None  # sampling rate of every split's raw_audio, in Hz

    @property
    def format(self) -> str:
        """The format version this data needs: ``FORMAT_RAW_AUDIO`` when a split keeps waveforms."""
        return FORMAT_RAW_AUDIO if any(s.raw_audio is not None for s in self.splits.values()) else FORMAT

    def feature_dims(self) -> dict[str, int]:
        """Feature dimension D_m of each modality (equal in every split)."""
        first = next(iter(self.splits.values()))
        return {m: int(first.features[m].shape[2]) for m in self.modalities}


def _describe(a: np.ndarray) -> str:
    return f"{a.dtype} {tuple(a.shape)}"


def _check_strings(a: object, src: str, where: str, n: int | None) -> int:
    if not isinstance(a, np.ndarray) or a.ndim != 1 or a.dtype.kind not in "UO":
        got = _describe(a) if isinstance(a, np.ndarray) else type(a).__name__
        raise DataError(f"{src}: {where}: expected strings (N,), got {got}")
    if a.dtype.kind == "O" and not all(isinstance(s, str) for s in a):
        raise DataError(f"{src}: {where}: expected strings (N,), got non-string objects")
    if n is not None and len(a) != n:
        raise DataError(f"{src}: {where}: {len(a)} entries, but ids has {n}")
    check_text(a, src, where)
    return len(a)


def feature_memory_limit(samples: float, values: int) -> tuple[int, int] | None:
    """The longest sequence length whose float32 features, ``samples`` × length × ``values``, fit in this
    machine's physical memory, and that memory in bytes; None where it cannot be read (no sysconf: Windows)."""
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None
    return int(memory // (4 * samples * max(1, values))), memory


def check_text(strings: np.ndarray, src: str, where: str) -> None:
    """Refuse strings that HDF5 cannot store: one with a NUL character or a lone surrogate (not UTF-8)."""
    for i, s in enumerate(strings):
        if "\0" in s:
            raise DataError(f"{src}: {where}: sample {i} holds a NUL character")
        try:
            s.encode("utf-8")
        except UnicodeEncodeError:
            raise DataError(f"{src}: {where}: sample {i} is not valid UTF-8 text") from None


def check_split_size(n: int, src: str, name: str) -> None:
    """Refuse a split without samples."""
    if n == 0:
        raise DataError(f"{src}: {name}: empty split (no samples)")


def check_feature_shape(shape: tuple[int, ...], src: str, where: str) -> None:
    """Refuse (N, T, D) features without time steps (T = 0) or without feature dimensions (D = 0)."""
    if shape[1] == 0:
        raise DataError(f"{src}: {where}: zero time steps")
    if shape[2] == 0:
        raise DataError(f"{src}: {where}: zero feature dimensions")


def check_unique_ids(ids: dict[str, np.ndarray], src: str, key: str) -> None:
    """Refuse an id that appears twice in a split or in two splits (``ids``: split → ids, at ``key``)."""
    seen: dict[str, tuple[str, int]] = {}
    for name, values in ids.items():
        for i, value in enumerate(values.tolist()):
            if value in seen:
                first, j = seen[value]
                what = f"appears twice (samples {j} and {i})" if first == name else f"is also in {first}"
                raise DataError(f"{src}: {name}/{key}: {value!r} {what}")
            seen[value] = (name, i)


def _check_array(a: object, src: str, where: str, dtype: type, shape: str, ndim: int) -> np.ndarray:
    if not isinstance(a, np.ndarray) or a.dtype != dtype or a.ndim != ndim:
        got = _describe(a) if isinstance(a, np.ndarray) else type(a).__name__
        raise DataError(f"{src}: {where}: expected {np.dtype(dtype)} {shape}, got {got}")
    return a


def _check_rows(a: np.ndarray, n: int, src: str, where: str) -> None:
    if a.shape[0] != n:
        raise DataError(f"{src}: {where}: {a.shape[0]} samples, but ids has {n}")


def _check_labels(a: np.ndarray, lo: float, hi: float, src: str, where: str) -> None:
    # NaN means "unknown" and is allowed; anything else must be a finite value in range.
    bad = ~np.isnan(a) & ~((a >= lo) & (a <= hi))
    if bad.any():
        idx = np.argwhere(bad)[0]
        value = a[tuple(idx)]
        kind = "infinite value" if np.isinf(value) else f"value {value:g} outside [{lo:g}, {hi:g}]"
        raise DataError(f"{src}: {where}: {kind} at sample {idx[0]} (NaN marks unknown)")


def _check_features(x: np.ndarray, lengths: np.ndarray, src: str, where: str) -> None:
    step = max(1, _SCAN_BYTES // max(1, x[0].nbytes))
    positions = np.arange(x.shape[1])
    for start in range(0, len(x), step):
        block = x[start : start + step]
        # A float64 sum of float32 values cannot overflow, so it is finite exactly when every value
        # is, without the full-size boolean temporary of np.isfinite(block).all().
        if not np.isfinite(block.sum(dtype=np.float64)):
            i = start + int(np.argwhere(~np.isfinite(block))[0, 0])
            raise DataError(f"{src}: {where}: non-finite value at sample {i}")
        padded = positions[None, :] >= lengths[start : start + step, None]
        if np.count_nonzero(block[padded]):
            i = start + int(np.argwhere((block != 0).any(axis=2) & padded)[0, 0])
            raise DataError(f"{src}: {where}: non-zero value after the length of sample {i} (padding must be zero)")


def _check_split(data: CanonicalData, name: str, split: Split, src: str) -> None:
    n = _check_strings(split.ids, src, f"{name}/ids", None)
    check_split_size(n, src, name)
    for key, table in (("features", split.features), ("lengths", split.lengths)):
        extra = sorted(set(table) - set(data.modalities))
        if extra:
            raise DataError(f"{src}: {name}/{key}/{extra[0]}: modality not listed in modalities {data.modalities}")
    for m in data.modalities:
        fwhere, lwhere = f"{name}/features/{m}", f"{name}/lengths/{m}"
        if m not in split.features:
            raise DataError(f"{src}: {fwhere}: missing")
        if m not in split.lengths:
            raise DataError(f"{src}: {lwhere}: missing")
        x = _check_array(split.features[m], src, fwhere, np.float32, "(N, T, D)", 3)
        lengths = _check_array(split.lengths[m], src, lwhere, np.int32, "(N,)", 1)
        _check_rows(x, n, src, fwhere)
        check_feature_shape(x.shape, src, fwhere)
        _check_rows(lengths, n, src, lwhere)
        if (lengths < 0).any() or (lengths > x.shape[1]).any():
            raise DataError(
                f"{src}: {lwhere}: lengths must lie in [0, {x.shape[1]}], got {lengths.min()}..{lengths.max()}"
            )
        _check_features(x, lengths, src, fwhere)
    where = f"{name}/labels/sentiment"
    sentiment = _check_array(split.sentiment, src, where, np.float32, "(N,)", 1)
    _check_rows(sentiment, n, src, where)
    _check_labels(sentiment, *SENTIMENT_RANGE, src, where)
    where = f"{name}/labels/emotion"
    emotion = _check_array(split.emotion, src, where, np.float32, f"(N, {len(data.emotions)})", 2)
    _check_rows(emotion, n, src, where)
    if emotion.shape[1] != len(data.emotions):
        raise DataError(f"{src}: {where}: {emotion.shape[1]} columns, but emotions lists {len(data.emotions)}")
    _check_labels(emotion, *EMOTION_RANGE, src, where)
    if split.raw_text is not None:
        _check_strings(split.raw_text, src, f"{name}/raw_text", n)
    if split.raw_audio is not None:
        _check_waveforms(split.raw_audio, src, f"{name}/raw_audio", n)


def _check_waveforms(waves: object, src: str, where: str, n: int) -> None:
    if not isinstance(waves, np.ndarray) or waves.dtype != object or waves.shape != (n,):
        got = _describe(waves) if isinstance(waves, np.ndarray) else type(waves).__name__
        raise DataError(f"{src}: {where}: expected {n} waveforms (an object array (N,)), got {got}")
    for i, wave in enumerate(waves):
        if not isinstance(wave, np.ndarray) or wave.dtype != np.float32 or wave.ndim != 1 or not len(wave):
            got = _describe(wave) if isinstance(wave, np.ndarray) else type(wave).__name__
            raise DataError(f"{src}: {where}: sample {i}: expected a non-empty float32 waveform, got {got}")
        if not np.isfinite(wave.sum(dtype=np.float64)):
            raise DataError(f"{src}: {where}: non-finite value at sample {i}")


def _check_names(names: object, src: str, where: str) -> None:
    if (
        not isinstance(names, list)
        or not all(isinstance(s, str) and s and "/" not in s for s in names)
        or len(set(names)) != len(names)
    ):
        raise DataError(f"{src}: {where}: expected a list of distinct non-empty names without '/', got {names!r}")


def validate(data: CanonicalData, *, source: str) -> None:
    """Check ``data`` against the canonical layout; raise ``DataError`` naming ``source`` and the field."""
    for attr in ("dataset", "source", "created_by"):
        if not isinstance(getattr(data, attr), str):
            raise DataError(f"{source}: /{attr}: expected a string, got {getattr(data, attr)!r}")
    _check_names(data.modalities, source, "/modalities")
    if not data.modalities:
        raise DataError(f"{source}: /modalities: no modalities")
    _check_names(data.emotions, source, "/emotions")
    if not isinstance(data.options, dict):
        raise DataError(f"{source}: /options: expected a JSON object, got {type(data.options).__name__}")
    try:
        json.dumps(data.options, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise DataError(f"{source}: /options: not JSON-serialisable ({e})") from None
    unknown = sorted(set(data.splits) - set(SPLITS))
    if unknown:
        raise DataError(f"{source}: {unknown[0]}: unknown split (expected one of {', '.join(SPLITS)})")
    if not data.splits:
        raise DataError(f"{source}: /: no splits")
    for name, split in data.splits.items():
        _check_split(data, name, split, source)
    if data.format == FORMAT_RAW_AUDIO and not (isinstance(data.raw_audio_rate, int) and data.raw_audio_rate > 0):
        raise DataError(f"{source}: /raw_audio_rate: expected a positive sampling rate, got {data.raw_audio_rate!r}")
    check_unique_ids({name: split.ids for name, split in data.splits.items()}, source, "ids")
    first_name, first = next(iter(data.splits.items()))
    for name, split in data.splits.items():
        for m in data.modalities:
            d, d0 = split.features[m].shape[2], first.features[m].shape[2]
            if d != d0:
                raise DataError(f"{source}: {name}/features/{m}: feature dim {d} differs from {first_name}'s {d0}")


def _string_dataset(group: h5py.Group, name: str, values: np.ndarray) -> None:
    group.create_dataset(name, data=np.asarray(values, dtype=object), dtype=h5py.string_dtype())


def _write_split(group: h5py.Group, split: Split) -> None:
    _string_dataset(group, "ids", split.ids)
    for m, x in split.features.items():
        rows = int(min(len(x), max(1, _CHUNK_BYTES // max(1, x[0].nbytes))))
        group.create_dataset(f"features/{m}", data=x, chunks=(rows, *x.shape[1:]))
        group.create_dataset(f"lengths/{m}", data=split.lengths[m])
    group.create_dataset("labels/sentiment", data=split.sentiment)
    group.create_dataset("labels/emotion", data=split.emotion)
    if split.raw_text is not None:
        _string_dataset(group, "raw_text", split.raw_text)
    if split.raw_audio is not None:
        group.create_dataset("raw_audio", data=split.raw_audio, dtype=h5py.vlen_dtype(np.float32))


def write_canonical(data: CanonicalData, path: str | os.PathLike, *, force: bool = False) -> Path:
    """Validate ``data`` and write it to ``path`` atomically (a temporary file, then a rename).

    Refuses an existing ``path`` unless ``force``. Returns the path written.
    """
    path = Path(path)
    if path.resolve().exists() and not force:  # resolved: "missing/../x.h5" is x.h5
        raise DataError(f"{path}: already exists (use --force to overwrite)")
    validate(data, source=str(path))
    missing = [s for s in SPLITS if s not in data.splits]
    if missing:
        raise DataError(f"{path}: {missing[0]}: missing split (a canonical file holds {', '.join(SPLITS)})")
    with atomic_path(path) as temporary, h5py.File(temporary, "w") as f:
        f.attrs["format"] = data.format
        if data.format == FORMAT_RAW_AUDIO:
            f.attrs["raw_audio_rate"] = data.raw_audio_rate
        f.attrs["dataset"] = data.dataset
        f.attrs["source"] = data.source
        f.attrs["modalities"] = json.dumps(data.modalities)
        f.attrs["emotions"] = json.dumps(data.emotions)
        f.attrs["created_by"] = data.created_by
        f.attrs["options"] = json.dumps(data.options, sort_keys=True)
        for name in SPLITS:
            _write_split(f.create_group(name), data.splits[name])
    return path


def _attr(f: h5py.File, name: str, src: str) -> str:
    if name not in f.attrs:
        raise DataError(f"{src}: /{name}: missing root attribute (not an mmolre canonical file?)")
    value = f.attrs[name]
    if isinstance(value, bytes | np.bytes_):
        value = value.decode("utf-8")
    if not isinstance(value, str):
        raise DataError(f"{src}: /{name}: expected a string attribute, got {value!r}")
    return value


def check_format(f: h5py.File, src: str) -> str:
    """The canonical format an open file declares; a DataError when it declares none or another."""
    fmt = _attr(f, "format", src)
    if fmt not in FORMATS:
        raise DataError(f"{src}: /format: expected {' or '.join(map(repr, FORMATS))}, got {fmt!r}")
    return fmt


def _json_attr(f: h5py.File, name: str, src: str) -> object:
    try:
        return json.loads(_attr(f, name, src))
    except json.JSONDecodeError as e:
        raise DataError(f"{src}: /{name}: invalid JSON ({e.msg})") from None


def _dataset(group: h5py.Group, name: str, src: str) -> h5py.Dataset:
    obj = group.get(name)
    if not isinstance(obj, h5py.Dataset):
        what = "missing dataset" if obj is None else "expected a dataset, got a group"
        raise DataError(f"{src}: {group.name.lstrip('/')}/{name}: {what}")
    return obj


def _read_strings(group: h5py.Group, name: str, src: str) -> np.ndarray:
    ds = _dataset(group, name, src)
    if h5py.check_string_dtype(ds.dtype) is None:
        raise DataError(f"{src}: {ds.name.lstrip('/')}: expected strings (N,), got {ds.dtype} {ds.shape}")
    # Bytes that are not UTF-8 become lone surrogates, which validation reports by sample.
    return np.asarray(ds.asstr(errors="surrogateescape")[()], dtype=str)


def _read_split(f: h5py.File, name: str, modalities: list[str], src: str) -> Split:
    group = f.get(name)
    if not isinstance(group, h5py.Group):
        raise DataError(f"{src}: {name}: missing split group")

    def read(field_name: str) -> np.ndarray:
        return np.asarray(_dataset(group, field_name, src)[()])

    return Split(
        ids=_read_strings(group, "ids", src),
        features={m: read(f"features/{m}") for m in modalities},
        lengths={m: read(f"lengths/{m}") for m in modalities},
        sentiment=read("labels/sentiment"),
        emotion=read("labels/emotion"),
        raw_text=_read_strings(group, "raw_text", src) if "raw_text" in group else None,
        raw_audio=read("raw_audio") if "raw_audio" in group else None,
    )


@contextmanager
def open_hdf5(path: Path, src: str) -> Iterator[h5py.File]:
    """``path`` opened for reading; h5py's errors on a truncated or damaged file become one DataError."""
    try:
        with h5py.File(path, "r") as f:
            yield f
    except (OSError, RuntimeError) as e:  # raised from deep inside h5py, sometimes as RuntimeError
        raise DataError(f"{src}: unreadable HDF5 file (truncated or corrupt?): {first_line(e)}") from e


def check_hdf5_path(path: Path, src: str) -> None:
    """A DataError unless ``path`` is an HDF5 file (not missing, not a directory)."""
    if not path.exists():
        raise DataError(f"{src}: file not found")
    if path.is_dir():
        raise DataError(f"{src}: is a directory, not a canonical HDF5 file")
    if not h5py.is_hdf5(path):
        raise DataError(f"{src}: not an HDF5 file")


def read_canonical(path: str | os.PathLike, *, splits: Iterable[str] = SPLITS) -> CanonicalData:
    """Read and validate a canonical file (only the named ``splits``; a single name is accepted)."""
    path = Path(path)
    src = str(path)
    splits = (splits,) if isinstance(splits, str) else tuple(splits)
    unknown = [s for s in splits if s not in SPLITS]
    if unknown:
        raise UsageError(f"splits: unknown split {unknown[0]!r} (expected {', '.join(SPLITS)})")
    check_hdf5_path(path, src)
    with open_hdf5(path, src) as f:
        fmt = check_format(f, src)
        modalities = _json_attr(f, "modalities", src)
        emotions = _json_attr(f, "emotions", src)
        _check_names(modalities, src, "/modalities")
        _check_names(emotions, src, "/emotions")
        data = CanonicalData(
            dataset=_attr(f, "dataset", src),
            source=_attr(f, "source", src),
            modalities=modalities,
            emotions=emotions,
            splits={s: _read_split(f, s, modalities, src) for s in splits},
            options=_json_attr(f, "options", src),
            created_by=_attr(f, "created_by", src),
            raw_audio_rate=int(f.attrs["raw_audio_rate"]) if "raw_audio_rate" in f.attrs else None,
        )
    if fmt == FORMAT and data.format == FORMAT_RAW_AUDIO:
        raise DataError(f"{src}: /format: {FORMAT!r} files hold no raw_audio (that is {FORMAT_RAW_AUDIO!r})")
    validate(data, source=src)
    return data


def _stats(values: np.ndarray) -> dict[str, float | None]:
    if values.size == 0:
        return {"min": None, "max": None, "mean": None}
    return {"min": float(values.min()), "max": float(values.max()), "mean": float(values.mean())}


def summarize(data: CanonicalData) -> dict:
    """A JSON-ready summary: per split size, feature shapes, label statistics and coverage."""
    splits = {}
    for name, split in data.splits.items():
        known_sentiment = split.sentiment[~np.isnan(split.sentiment)]
        known_emotion = ~np.isnan(split.emotion)
        with np.errstate(invalid="ignore", divide="ignore"):
            prevalence = (split.emotion > 0).sum(axis=0) / known_emotion.sum(axis=0)
        complete = known_emotion.all(axis=1) if data.emotions else np.zeros(split.size, dtype=bool)
        splits[name] = {
            "size": split.size,
            "features": {m: list(split.features[m].shape) for m in data.modalities},
            "sentiment": {"known": float(len(known_sentiment) / split.size), **_stats(known_sentiment)},
            "emotion": {
                "known": float(complete.mean()),
                "prevalence": {
                    e: None if np.isnan(p) else float(p) for e, p in zip(data.emotions, prevalence, strict=True)
                },
            },
        }
    return {
        "format": data.format,
        "dataset": data.dataset,
        "source": data.source,
        "modalities": list(data.modalities),
        "emotions": list(data.emotions),
        "feature_dims": data.feature_dims(),
        "splits": splits,
    }
