"""MMSA toolkit pickles (``aligned_50.pkl`` / ``unaligned_50.pkl``): a restricted reader and a writer.

Layout: a dict with ``train``/``valid``/``test``, each a dict of ``id`` (``"<video>$_$<clip>"``),
``raw_text``, ``text`` (N, 50, 768), ``text_bert`` (N, 3, 50: token ids, attention mask, segment
ids), ``audio`` (N, T_a, D_a), ``vision`` (N, T_v, D_v), in unaligned files ``audio_lengths`` and
``vision_lengths`` (N,), ``regression_labels`` (N,), ``classification_labels`` and ``annotations``.
Arrays may be float64. ``text_bert`` is optional, as in MMSA's loader with BERT off (feature-only
pickles from other extractors, GloVe or MiniLM text features). Text lengths come from its attention
mask when present; else each clip's text runs up to its last non-zero frame; else, for a split whose
text is all zero, from ``audio_lengths`` when audio shares the text steps. ``options["text_lengths"]``
says which source each split used. A modality without its own ``<m>_lengths`` (an aligned file) takes
the text lengths.

Two keys that MMSA code ignores carry emotion labels through a round trip: a top-level
``emotions`` (list of names) and, per split, ``emotion_labels`` (N, C), NaN where unknown.
Without them (every published file) the emotions are the MOSEI six, all unknown.

A pickle can run code when loaded, so :func:`load_pickle` admits only NumPy arrays, dtypes and
scalars and plain containers: a pickle naming any other global is refused before anything runs. Arrays
are admitted only in the two forms NumPy writes (an empty ``_reconstruct`` filled by its state, or
``_frombuffer``), each checked before NumPy allocates it; a direct ``numpy.ndarray(...)`` call is
refused. Arrays that claim more data than the file holds are refused before anything reads them.
"""

from __future__ import annotations

import builtins
import hashlib
import io
import math
import os
import pickle
from collections import deque
from pathlib import Path

import numpy as np

from mmolre_cli.atomic import atomic_path
from mmolre_cli.data.canonical import (
    EMOTION_RANGE,
    MOSEI_EMOTIONS,
    SENTIMENT_RANGE,
    SPLITS,
    CanonicalData,
    Split,
    check_feature_shape,
    check_split_size,
    check_text,
    check_unique_ids,
)
from mmolre_cli.errors import DataError, first_line

try:
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # NumPy < 2
    from numpy.core import multiarray as _multiarray
    from numpy.core import numeric as _numeric

MODALITIES = ("text", "audio", "vision")
#: SHA-256 of the MMSA releases → (dataset, file).
PUBLISHED = {
    "78e0f8b5ef8ff71558e7307848fc1fa929ecb078203f565ab22b9daab2e02524": ("mosi", "unaligned_50"),
    "d3994fd25681f9c7ad6e9c6596a6fe9b4beb85ff7d478ba978b124139002e5f9": ("mosi", "aligned_50"),
    "ad8b23d50557045e7d47959ce6c5b955d8d983f2979c7d9b7b9226f6dd6fec1f": ("mosei", "unaligned_50"),
    "45eccfb748a87c80ecab9bfac29582e7b1466bf6605ff29d3b338a75120bf791": ("mosei", "aligned_50"),
}
# Feature dims (audio, vision) of the MMSA releases, to name a file that is not a published one.
_DIMS = {(5, 20): "mosi", (74, 35): "mosei", (33, 709): "sims"}
_LENGTH_KEYS = {"audio": "audio_lengths", "vision": "vision_lengths"}
_REQUIRED = ("id", "text", "audio", "vision", "regression_labels")
#: Where each split's text lengths came from (``options["text_lengths"]``).
TEXT_LENGTH_SOURCES = {
    "text_bert": "the text_bert attention mask",
    "text": "the non-zero frames of text",
    "audio_lengths": "audio_lengths",
}
# BERT's [UNK], [CLS] and [SEP] ids: a text_bert synthesised from lengths alone.
_UNK, _CLS, _SEP = 100, 101, 102
_POLARITY = np.array(["Negative", "Neutral", "Positive"], dtype=object)
# Protocol 5 stores arrays as bytearrays that NumPy adopts without a copy when loading.
PROTOCOL = 5
# Cleaning works in slices of about this size, so that its temporaries stay small on GB-sized arrays.
_SCAN_BYTES = 64 << 20


def describe_text_lengths(sources: dict[str, str]) -> str:
    """``options["text_lengths"]`` in words: one source, or each split's."""
    named = {split: TEXT_LENGTH_SOURCES.get(source, source) for split, source in sources.items()}
    if len(set(named.values())) == 1:
        return f"text lengths from {next(iter(named.values()))}"
    return "text lengths from " + "; ".join(f"{split}: {source}" for split, source in named.items())


class ForbiddenGlobal(pickle.UnpicklingError):
    """A pickle named a global outside the allow-list."""


def _encode_latin1(text: str, encoding: str) -> bytes:
    # Protocol-2 pickles spell bytes as _codecs.encode(str, "latin1"); no other codec is needed.
    if encoding != "latin1":
        raise ForbiddenGlobal(f"_codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


class RefusedArray(pickle.UnpicklingError):
    """A pickle builds an array in a way NumPy never writes, or with a state that does not fit it."""


class _ArrayClass:
    """Stands for ``numpy.ndarray`` in a pickle: what ``_reconstruct`` names, but not constructible, since
    ``numpy.ndarray(shape, object)`` would allocate (and fill) an array of any size before any check."""

    def __new__(cls, *args, **kwargs):
        raise RefusedArray("the pickle calls numpy.ndarray(...) directly (NumPy never writes that)")


class _PendingArray:
    """What ``_reconstruct`` returns: the array NumPy would build, once its state (pickle's BUILD) is checked.
    :func:`_resolve_arrays` puts ``array`` in its place after loading."""

    __slots__ = ("array",)
    __hash__ = None  # unhashable, as an array is

    def __init__(self) -> None:
        self.array = _multiarray._reconstruct(np.ndarray, (0,), b"b")

    def __setstate__(self, state: object) -> None:
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise RefusedArray(f"an array state that is not NumPy's ({type(state).__name__})")
        shape, dtype, _, data = state[-4:]
        shape = (shape,) if isinstance(shape, int) else shape
        if not isinstance(shape, tuple) or not all(isinstance(n, int) and n >= 0 for n in shape):
            raise RefusedArray(f"an array state with the shape {shape!r}")
        if isinstance(dtype, np.dtype) and dtype.hasobject:
            # NumPy allocates the whole shape for an object array and reads as many items as it has: a
            # shorter list would make it read past the list's end.
            if dtype != np.dtype(object) or not isinstance(data, list) or len(data) != math.prod(shape):
                count = len(data) if isinstance(data, list) else type(data).__name__
                raise RefusedArray(f"an object array of shape {shape} whose state holds {count} items")
        self.array.__setstate__(state)


def _reconstruct(subtype: object, shape: object, dtype: object) -> _PendingArray:
    # NumPy writes _reconstruct(ndarray, (0,), b"b") and then the array's state; a non-empty shape
    # would allocate that array here, before anything can check it.
    shape = (shape,) if isinstance(shape, int) else shape
    if subtype is not _ArrayClass or not (isinstance(shape, tuple) and 0 in shape):
        raise RefusedArray(f"the pickle reconstructs a non-empty array of shape {shape!r} (NumPy writes (0,))")
    return _PendingArray()


_CONTAINERS = ("set", "frozenset")  # the plain containers that pickles build through a global
_ALLOWED = {
    ("numpy", "ndarray"): _ArrayClass,
    ("numpy", "dtype"): np.dtype,
    # Protocols below 3 write Python 2's module names.
    **{(module, name): getattr(builtins, name) for module in ("builtins", "__builtin__") for name in _CONTAINERS},
    ("_codecs", "encode"): _encode_latin1,
    # NumPy 2 moved numpy.core to numpy._core; pickles name either.
    **{
        (f"{package}.multiarray", name): value
        for package in ("numpy.core", "numpy._core")
        for name, value in (("_reconstruct", _reconstruct), ("scalar", _multiarray.scalar))
    },
    **{(f"{package}.numeric", "_frombuffer"): _numeric._frombuffer for package in ("numpy.core", "numpy._core")},
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise ForbiddenGlobal(f"{module}.{name}") from None


class _HashingReader(io.RawIOBase):
    """A raw reader that feeds every byte it reads to ``digest``, so hashing costs no second pass."""

    def __init__(self, raw: io.RawIOBase, digest: hashlib._Hash) -> None:
        self._raw = raw
        self._digest = digest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int | None:
        n = self._raw.readinto(buffer)
        if n:
            self._digest.update(memoryview(buffer)[:n])
        return n


def _check_input(path: Path) -> None:
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, not a file")


def _resolve_arrays(obj: object, path: Path, size: int) -> object:
    """``obj`` with each pending array replaced by its array, refusing the array at which the arrays
    claim more bytes than the file's ``size``: overlapping buffers let a few pickled bytes pose as
    terabytes. Arrays of Python objects count through their items."""
    if isinstance(obj, _PendingArray):
        obj = obj.array
    total, seen = 0, set()
    queue = deque([("", obj)])  # a queue, not recursion: a pickle can nest lists deeper than Python recurses
    while queue:
        key, value = queue.popleft()
        if id(value) in seen:  # a pickle can share an object or hold a cycle
            continue
        seen.add(id(value))
        if isinstance(value, dict):
            children = [(f"{key}/{k}" if key else str(k), k, v) for k, v in value.items()]
        elif isinstance(value, list | tuple):
            children = [(f"{key}[{i}]", i, v) for i, v in enumerate(value)]
        elif isinstance(value, np.ndarray) and value.dtype.hasobject:
            children = [(f"{key}[{i}]", i, v) for i, v in enumerate(value.flat)]
        else:
            children = []
        for where, place, child in children:
            if isinstance(child, _PendingArray):
                if isinstance(value, tuple):
                    raise DataError(f"{path}: {where}: an array inside a tuple (MMSA pickles hold none)")
                child = child.array
                if isinstance(value, np.ndarray):
                    value.flat[place] = child
                else:
                    value[place] = child
            queue.append((where, child))
        if isinstance(value, np.ndarray) and not value.dtype.hasobject:
            total += value.nbytes
            if total > size:
                raise DataError(
                    f"{path}: {key or '/'}: refused a {_describe(value)} array: the arrays up to it claim "
                    f"{total:,} bytes, but the file has {size:,} (overlapping buffers?)"
                )
    return obj


def load_pickle(path: str | os.PathLike) -> tuple[object, str]:
    """Unpickle ``path`` admitting only NumPy arrays, dtypes, scalars and plain containers.

    Returns the object and the file's SHA-256 (hex). Any other global is refused before it runs, and
    arrays that claim more data than the file holds are refused before anything reads them.
    """
    path = Path(path)
    _check_input(path)
    digest = hashlib.sha256()
    try:
        with open(path, "rb", buffering=0) as raw, io.BufferedReader(_HashingReader(raw, digest), 1 << 20) as f:
            obj = _RestrictedUnpickler(f).load()
            while f.read(1 << 20):  # hash whatever follows the pickle, too
                pass
            size = os.fstat(raw.fileno()).st_size
    except RefusedArray as e:
        raise DataError(f"{path}: {e}; refused before allocating it") from None
    except ForbiddenGlobal as e:
        raise DataError(
            f"{path}: pickle names the global {e}; refused before running anything "
            "(only NumPy arrays and plain containers are admitted)"
        ) from None
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e.strerror or e}") from None
    except MemoryError as e:
        raise DataError(f"{path}: not enough memory to load it ({first_line(e)})") from None
    except Exception as e:
        # Only allow-listed callables can run, so whatever else fails is a damaged or foreign file.
        raise DataError(f"{path}: not a pickle, or truncated ({first_line(e)})") from None
    return _resolve_arrays(obj, path, size), digest.hexdigest()


def _strings(value: object, src: str, where: str, n: int | None) -> np.ndarray:
    # fromiter keeps each item as it is, where asarray would try to stack a list of arrays.
    a = np.fromiter(value, dtype=object, count=len(value)) if isinstance(value, list) else value
    if not isinstance(a, np.ndarray) or a.ndim != 1 or a.dtype.kind not in "UO":
        raise DataError(f"{src}: {where}: expected strings (N,), got {_describe(value)}")
    if a.dtype.kind == "O" and not all(isinstance(s, str) for s in a):
        raise DataError(f"{src}: {where}: expected strings (N,), got non-string objects")
    if n is not None and len(a) != n:
        raise DataError(f"{src}: {where}: {len(a)} entries, but id has {n}")
    check_text(a, src, where)
    return a.astype(str)


def _describe(value: object) -> str:
    return f"{value.dtype} {tuple(value.shape)}" if isinstance(value, np.ndarray) else type(value).__name__


def _numeric(value: object, src: str, where: str, ndim: int, n: int) -> np.ndarray:
    a, got = value, _describe(value)
    if isinstance(value, list):
        try:
            a = np.asarray(value)
        except ValueError:  # NumPy cannot stack rows of different shapes
            got = "a list of rows of different shapes"
    if not isinstance(a, np.ndarray) or a.ndim != ndim or a.dtype.kind not in "fiub":
        raise DataError(f"{src}: {where}: expected a numeric array with {ndim} dimensions, got {got}")
    if a.shape[0] != n:
        raise DataError(f"{src}: {where}: {a.shape[0]} samples, but id has {n}")
    return a


def _check_range(a: np.ndarray, lo: float, hi: float, src: str, where: str, *, unknown_ok: bool) -> None:
    bad = ~((a >= lo) & (a <= hi))
    if unknown_ok:
        bad &= ~np.isnan(a)
    if bad.any():
        i = tuple(np.argwhere(bad)[0])
        v = a[i]
        what = f"non-finite value {v}" if not np.isfinite(v) else f"value {v:g} outside [{lo:g}, {hi:g}]"
        raise DataError(f"{src}: {where}: {what} at sample {i[0]}")


def _clean(x: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, int, int]:
    """``x`` as writable float32 with non-finite values and padding set to 0, and how many of each."""
    x = np.require(x, np.float32, "W")  # no copy for a float32 array loaded from a pickle
    positions = np.arange(x.shape[1])
    step = max(1, _SCAN_BYTES // max(1, x[0].nbytes))
    nonfinite = padding = 0
    for start in range(0, len(x), step):
        block = x[start : start + step]
        # A float64 sum of float32 values is finite exactly when every value is, with no full-size temporary.
        with np.errstate(invalid="ignore"):  # inf + -inf
            finite = np.isfinite(block.sum(dtype=np.float64))
        if not finite:
            bad = ~np.isfinite(block)
            nonfinite += int(np.count_nonzero(bad))
            block[bad] = 0
        padded = positions[None, :] >= lengths[start : start + step, None]
        if padded.any():
            count = int(np.count_nonzero(block[padded]))
            if count:
                padding += count
                block[padded] = 0
    return x, nonfinite, padding


def _lengths(value: object, src: str, where: str, n: int, steps: int) -> np.ndarray:
    a = _numeric(value, src, where, 1, n)
    if a.dtype.kind == "f" and not np.array_equal(a, np.round(a)):
        raise DataError(f"{src}: {where}: expected whole numbers")
    if len(a) and (a.min() < 0 or a.max() > steps):
        raise DataError(f"{src}: {where}: lengths must lie in [0, {steps}], got {a.min():g}..{a.max():g}")
    return a.astype(np.int32)


def _frames_in_use(x: np.ndarray) -> np.ndarray:
    """Per sample, one past its last frame holding a value other than 0 (NaN counts as a value)."""
    used = np.empty(len(x), np.int32)
    step = max(1, _SCAN_BYTES // max(1, x[0].nbytes))
    for start in range(0, len(x), step):
        nonzero = (x[start : start + step] != 0).any(axis=2)  # b t
        last = x.shape[1] - np.argmax(nonzero[:, ::-1], axis=1)
        used[start : start + step] = np.where(nonzero.any(axis=1), last, 0)
    return used


def _text_lengths(part: dict, text: np.ndarray, src: str, name: str, n: int) -> tuple[np.ndarray, str]:
    """The split's text lengths and their source (a key of TEXT_LENGTH_SOURCES)."""
    steps = text.shape[1]
    if "text_bert" in part:
        text_bert = _numeric(part.pop("text_bert"), src, f"{name}/text_bert", 3, n)
        if text_bert.shape[1] != 3:
            raise DataError(
                f"{src}: {name}/text_bert: expected (N, 3, L) token ids, mask, segments, got {_describe(text_bert)}"
            )
        if text_bert.shape[2] != steps:
            raise DataError(f"{src}: {name}/text_bert: {text_bert.shape[2]} steps, but text has {steps}")
        mask = text_bert[:, 1, :]
        if not np.isin(mask, (0, 1)).all():
            raise DataError(f"{src}: {name}/text_bert: the attention mask (row 1) holds values other than 0 and 1")
        return np.count_nonzero(mask, axis=1).astype(np.int32), "text_bert"
    in_use = _frames_in_use(text)
    if in_use.any():
        return in_use, "text"
    key = _LENGTH_KEYS["audio"]
    if key not in part:
        raise DataError(f"{src}: {name}/text: all zero, and there is neither text_bert nor {key} to give text lengths")
    audio_steps = part["audio"].shape[1] if isinstance(part.get("audio"), np.ndarray) else None
    if audio_steps != steps:
        raise DataError(
            f"{src}: {name}/text: all zero and without text_bert, and {key} count {audio_steps} audio steps, "
            f"not the {steps} text steps"
        )
    return _lengths(part[key], src, f"{name}/{key}", n, steps), "audio_lengths"


def _read_split(
    part: object, name: str, src: str, emotions: list[str], dims: dict[str, tuple[str, int]], report: dict
) -> Split:
    if not isinstance(part, dict):
        raise DataError(f"{src}: {name}: expected a dict of arrays, got {type(part).__name__}")
    required = (*_REQUIRED, "emotion_labels") if report["emotion_labels"] else _REQUIRED
    for key in required:
        if key not in part:
            raise DataError(f"{src}: {name}/{key}: missing key")
    ids = _strings(part.pop("id"), src, f"{name}/id", None)
    n = len(ids)
    check_split_size(n, src, name)
    features, lengths = {}, {}
    for m in MODALITIES:
        where = f"{name}/{m}"
        x = _numeric(part.pop(m), src, where, 3, n)
        check_feature_shape(x.shape, src, where)
        first, dim = dims.setdefault(m, (name, x.shape[2]))
        if x.shape[2] != dim:
            raise DataError(f"{src}: {where}: feature dim {x.shape[2]} differs from {first}'s {dim}")
        key = _LENGTH_KEYS.get(m)
        if m == "text":
            lengths[m], report["text_lengths"][name] = _text_lengths(part, x, src, name, n)
        elif key in part:
            report["layout"] = "unaligned"
            lengths[m] = _lengths(part.pop(key), src, f"{name}/{key}", n, x.shape[1])
        elif x.shape[1] != features["text"].shape[1]:
            raise DataError(
                f"{src}: {where}: {x.shape[1]} steps, but text has {features['text'].shape[1]}"
                + (f" and there is no {key}" if key else "")
            )
        else:
            lengths[m] = lengths["text"].copy()
        features[m], nonfinite, padding = _clean(x, lengths[m])
        del x  # a converted float64 original is freed here, before the next modality is converted
        report["nonfinite"][m] += nonfinite
        report["padding"][m] += padding
    where = f"{name}/regression_labels"
    sentiment = _numeric(part.pop("regression_labels"), src, where, 1, n)
    _check_range(sentiment, *SENTIMENT_RANGE, src, where, unknown_ok=False)
    if report["emotion_labels"]:
        where = f"{name}/emotion_labels"
        emotion = _numeric(part.pop("emotion_labels"), src, where, 2, n)
        if emotion.shape[1] != len(emotions):
            raise DataError(f"{src}: {where}: {emotion.shape[1]} columns, but emotions lists {len(emotions)}")
        _check_range(emotion, *EMOTION_RANGE, src, where, unknown_ok=True)
    else:
        emotion = np.full((n, len(emotions)), np.nan, dtype=np.float32)
    raw_text = _strings(part.pop("raw_text"), src, f"{name}/raw_text", n) if "raw_text" in part else None
    return Split(
        ids=ids,
        features=features,
        lengths=lengths,
        sentiment=sentiment.astype(np.float32),
        emotion=emotion.astype(np.float32),
        # An all-empty raw_text is what export writes for a file without one.
        raw_text=raw_text if raw_text is not None and any(raw_text) else None,
    )


def read_mmsa(path: str | os.PathLike, *, dataset: str | None = None) -> CanonicalData:
    """Read an MMSA pickle into canonical form, cleaning features (non-finite values and padding → 0).

    ``dataset`` defaults to the published file's dataset, else a guess from the feature dims,
    else the file name. ``options`` records the file, its SHA-256, the published file it matches,
    the layout and how many values were cleaned per modality.
    """
    path = Path(path)
    src = str(path)
    obj, sha256 = load_pickle(path)
    if not isinstance(obj, dict):
        raise DataError(f"{src}: /: expected a dict with {', '.join(SPLITS)}, got {type(obj).__name__}")
    for name in SPLITS:
        if name not in obj:
            raise DataError(f"{src}: {name}: missing split")
    emotions = list(MOSEI_EMOTIONS)
    if "emotions" in obj:
        emotions = obj["emotions"]
        if not isinstance(emotions, list) or not all(isinstance(e, str) for e in emotions):
            raise DataError(f"{src}: emotions: expected a list of emotion names, got {type(emotions).__name__}")
    report = {
        "layout": "aligned",
        "emotion_labels": "emotions" in obj,
        "nonfinite": dict.fromkeys(MODALITIES, 0),
        "padding": dict.fromkeys(MODALITIES, 0),
        "text_lengths": {},
    }
    dims: dict[str, tuple[str, int]] = {}
    splits = {}
    for name in SPLITS:
        try:
            # pop: the pickle's arrays of a split are released as soon as that split is converted.
            splits[name] = _read_split(obj.pop(name), name, src, emotions, dims, report)
        except MemoryError as e:
            raise DataError(f"{src}: {name}: not enough memory to convert it ({first_line(e)})") from None
    check_unique_ids({name: split.ids for name, split in splits.items()}, src, "id")
    published = PUBLISHED.get(sha256)
    if dataset is None:
        guessed = _DIMS.get((dims["audio"][1], dims["vision"][1]))
        dataset = published[0] if published else guessed or path.stem
    return CanonicalData(
        dataset=dataset,
        source="mmsa",
        modalities=list(MODALITIES),
        emotions=emotions,
        splits=splits,
        options={
            "file": path.name,
            "sha256": sha256,
            "published": f"{published[0].upper()} {published[1]}" if published else None,
            "layout": report["layout"],
            "text_lengths": report["text_lengths"],
            "cleaned": {"nonfinite": report["nonfinite"], "padding": report["padding"]},
        },
    )


def _text_bert(lengths: np.ndarray, steps: int) -> np.ndarray:
    """Token ids, attention mask and segment ids (N, 3, steps) consistent with ``lengths``."""
    n = len(lengths)
    mask = np.arange(steps)[None, :] < lengths[:, None]
    ids = np.where(mask, _UNK, 0)
    rows = np.arange(n)
    ids[rows[lengths > 0], 0] = _CLS
    ids[rows[lengths > 1], lengths[lengths > 1] - 1] = _SEP
    return np.stack([ids, mask, np.zeros_like(ids)], axis=1).astype(np.int64)


def _mmsa_split(split: Split, name: str, src: str, aligned: bool, emotions: bool) -> dict:
    missing = np.flatnonzero(np.isnan(split.sentiment))
    if len(missing):
        raise DataError(
            f"{src}: {name}/labels/sentiment: unknown (NaN) at sample {missing[0]}; MMSA files need every sentiment"
        )
    polarity = (np.sign(split.sentiment) + 1).astype(np.int64)  # 0 negative, 1 neutral, 2 positive
    raw_text = split.raw_text if split.raw_text is not None else np.full(split.size, "")
    part = {
        "id": np.asarray(split.ids, dtype=object),
        "raw_text": np.asarray(raw_text, dtype=object),
        "text": split.features["text"],
        "text_bert": _text_bert(split.lengths["text"], split.features["text"].shape[1]),
        "audio": split.features["audio"],
        "vision": split.features["vision"],
        "regression_labels": split.sentiment,
        "classification_labels": polarity,
        "annotations": _POLARITY[polarity],
    }
    if not aligned:
        part.update({key: split.lengths[m] for m, key in _LENGTH_KEYS.items()})
    if emotions:
        part["emotion_labels"] = split.emotion
    return part


def _is_aligned(data: CanonicalData) -> bool:
    """True when every modality shares the text steps and lengths in every split (MMSA's aligned layout)."""
    return all(
        split.features[m].shape[1] == split.features["text"].shape[1]
        and np.array_equal(split.lengths[m], split.lengths["text"])
        for split in data.splits.values()
        for m in MODALITIES
    )


def write_mmsa(data: CanonicalData, path: str | os.PathLike, *, source: str, force: bool = False) -> Path:
    """Write ``data`` (read from ``source``) as an MMSA pickle, aligned when modalities share steps and lengths.

    Writes a temporary file and renames it; refuses an existing ``path`` unless ``force``. The
    text_bert token ids are placeholders ([CLS] [UNK]… [SEP]) consistent with the text lengths.
    """
    path = Path(path)
    if path.resolve().exists() and not force:  # resolved: "missing/../x.pkl" is x.pkl
        raise DataError(f"{path}: already exists (use --force to overwrite)")
    missing = [m for m in MODALITIES if m not in data.modalities]
    if missing:
        raise DataError(f"{source}: /modalities: MMSA pickles need text, audio and vision; {missing[0]} is missing")
    aligned = _is_aligned(data)
    obj: dict = {
        name: _mmsa_split(split, name, source, aligned, bool(data.emotions)) for name, split in data.splits.items()
    }
    if data.emotions:
        obj["emotions"] = list(data.emotions)
    with atomic_path(path) as temporary, open(temporary, "wb") as f:
        pickle.dump(obj, f, protocol=PROTOCOL)
    return path
