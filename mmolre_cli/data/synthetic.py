"""Synthetic data with the shapes of CMU-MOSI or CMU-MOSEI, whose two tasks share and conflict.

Every clip has five hidden factors, independent standard normals (``TABLE``, ``FACTORS``):

- ``valence`` (shared, seen in text): raises sentiment and *happy*, lowers *sad*, *anger*,
  *disgust*, *fear*.
- ``engagement``, ``tension``, ``warmth`` (shared intensities, seen in audio and vision): each
  moves sentiment and a few emotions (engagement: *happy*, *anger*, *surprise*; tension lowers
  sentiment and raises *sad*, *fear*, *anger*; warmth: *happy* up, *disgust* and *anger* down).
- ``irony`` (conflict, seen in text): raises sentiment but also *sad* and *disgust*, and lowers
  *happy*, so a single representation shared by both tasks is pulled two ways.

An *intensity* factor shows its magnitude |z| at every carrier frame with a random sign per frame,
so the clip average hides it and only a per-frame nonlinearity (an expert) recovers it; labels use
its magnitude, standardised.

Labels. Sentiment is the weighted sum of the factors plus noise, standardised, scaled to a
MOSI-like spread (std 1.5 before clipping), clipped to [-3, 3] and rounded to multiples of 1/3
(about 9 % of labels are exactly 0, so Has0 and Non0 metrics differ). Each emotion has a latent
score (a weighted sum of factors plus noise, standardised); it is present when the score exceeds a
threshold set from the quantiles of the whole generated set, so prevalences match MOSEI's
(happy 54 %, sad 25 %, anger 21 %, disgust 17 %, surprise 10 %, fear 8 %), with intensity the
excess over the threshold rounded up to a multiple of 1/3, at most 3. Emotion labels are the
scarcer task: only a random ``emotion_labels`` fraction of the training clips (default 50 %, at
least one) keep them, the rest are NaN; valid and test keep all, and sentiment is labelled
everywhere. So the intensities are taught mostly by sentiment labels, which is what makes joint
training worth something. MOSI-like data carry no emotion labels (all NaN), as MOSI itself.

Features. Each modality observes every factor weighted by how well it sees it, plus its own noise,
mixed into its D_m dimensions by a random matrix fixed by the seed. That signal appears only at a
random subset of the clip's time steps (about 30 %, the same steps in every modality, as the data
are word-aligned), on top of a per-clip nuisance offset unrelated to the labels and uniform noise
at every step. Each clip has one random length, from min(10, ``seq_len``) to ``seq_len``, shared
by its modalities; positions after it are exactly zero. No modality sees every factor, so fusion
pays off. docs/ablations.md ("What the built-in synthetic data shows") reports what these data
show under ``mmolre ablate``.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from mmolre_cli import __version__
from mmolre_cli.data.canonical import (
    FORMAT,
    MOSEI_EMOTIONS,
    SPLITS,
    CanonicalData,
    Split,
    feature_memory_limit,
    write_canonical,
)
from mmolre_cli.data.shapes import DataShapes, like_shapes
from mmolre_cli.errors import UsageError


@dataclass(frozen=True)
class Factor:
    """One hidden factor: its weight on sentiment and on each emotion, and how well each modality sees it.

    An *intensity* factor shows its magnitude |z| at each carrier frame with a random sign, so only
    a per-frame nonlinearity recovers it; its labels use that magnitude, standardised.
    """

    name: str
    sentiment: float
    emotions: dict[str, float]
    visibility: dict[str, float]
    intensity: bool = False


TABLE = (
    Factor(
        "valence",
        1.0,
        {"happy": 0.8, "sad": -0.7, "anger": -0.5, "surprise": 0.3, "disgust": -0.5, "fear": -0.4},
        {"text": 0.8, "audio": 0.15, "vision": 0.15},
    ),
    Factor("engagement", 0.6, {"happy": 0.5, "anger": 0.4, "surprise": 0.5}, {"audio": 2.0, "vision": 1.0}, True),
    Factor("tension", -0.6, {"sad": 0.5, "fear": 0.6, "anger": 0.3}, {"audio": 1.2, "vision": 2.0}, True),
    Factor("warmth", 0.5, {"happy": 0.4, "disgust": -0.5, "anger": -0.3}, {"audio": 1.6, "vision": 1.6}, True),
    Factor("irony", 0.4, {"happy": -0.5, "sad": 0.4, "disgust": 0.4}, {"text": 0.6, "audio": 0.1, "vision": 0.2}),
)
FACTORS = tuple(f.name for f in TABLE)
#: Bumped whenever the same options would generate different data, so that cached files regenerate.
GENERATOR = 3

BUILTIN_LIKE = "mosei"
BUILTIN_SCALE = 0.1
BUILTIN_SEED = 0

# Split sizes (train, valid, test) of the MMSA aligned_50 releases; feature sizes and lengths are LIKE's.
_SIZES = {"mosi": (1284, 229, 686), "mosei": (16326, 1871, 4659)}

_SENTIMENT_WEIGHTS = np.array([f.sentiment for f in TABLE], dtype=np.float32)
_EMOTION_WEIGHTS = np.array([[f.emotions.get(e, 0.0) for f in TABLE] for e in MOSEI_EMOTIONS], dtype=np.float32)
_INTENSITY = np.array([f.intensity for f in TABLE])
_PREVALENCE = np.array([0.54, 0.25, 0.21, 0.10, 0.17, 0.08], dtype=np.float32)

_SENTIMENT_NOISE = 0.5  # irreducible, relative to the factor part (std)
_EMOTION_NOISE = 0.5
#: Default fraction of MOSEI-like training clips that keep their emotion labels (valid and test keep all).
EMOTION_LABELS = 0.5
_OBSERVATION_NOISE = 0.6  # per-modality noise on every factor, after its visibility weight
_STEP_NOISE = 1.0
_NUISANCE_DIM = 4
_CARRIER_RATE = 0.3
_MIN_LENGTH = 10
# Features are built in slices of about this many bytes, so that each slice stays in cache.
_BLOCK_BYTES = 1 << 20


def _product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` as a fixed sequence of exactly rounded multiplies and adds, so it has the same bits on every
    machine: a BLAS library's matmul rounds differently with its CPU kernel (vector width, blocking)."""
    term = (lambda j: a[..., j] * b[j]) if b.ndim == 1 else (lambda j: a[..., j, None] * b[j])
    total = term(0)
    for j in range(1, b.shape[0]):
        total += term(j)
    return total


def _standardise(a: np.ndarray) -> np.ndarray:
    return (a - a.mean(axis=0)) / a.std(axis=0)


def _features(
    rng: np.random.Generator,
    mixing: np.random.Generator,
    m: str,
    dim: int,
    shown: np.ndarray,
    valid: np.ndarray,
    frames: np.ndarray,
) -> np.ndarray:
    """Modality ``m``'s features (N, T, dim); ``frames`` (N, T, k_intensity) is each intensity's
    per-frame sign at carrier frames and 0 elsewhere; ``valid`` (N, T) marks frames within the clip."""
    n, t = valid.shape
    k = shown.shape[1]
    projection = mixing.standard_normal((k, dim), dtype=np.float32) / np.float32(np.sqrt(k))
    nuisance_map = mixing.standard_normal((_NUISANCE_DIM, dim), dtype=np.float32) / np.float32(np.sqrt(_NUISANCE_DIM))
    visibility = np.array([f.visibility.get(m, 0.0) for f in TABLE], dtype=np.float32)
    # Noise after the visibility weights, so that a weakly seen factor is buried in it, not just scaled.
    observed = shown * visibility + _OBSERVATION_NOISE * rng.standard_normal(shown.shape, dtype=np.float32)
    steady = _product(observed[:, ~_INTENSITY], projection[~_INTENSITY])  # shown unchanged at every carrier frame
    offset = _product(rng.standard_normal((n, _NUISANCE_DIM), dtype=np.float32), nuisance_map)
    x = np.empty((n, t, dim), dtype=np.float32)
    rows = max(1, _BLOCK_BYTES // (t * dim * 4))
    for s in range(0, n, rows):
        block = x[s : s + rows]
        # Uniform noise of variance _STEP_NOISE**2: several times cheaper to draw than Gaussian.
        rng.random(out=block, dtype=np.float32)
        block -= np.float32(0.5)
        block *= np.float32(_STEP_NOISE * np.sqrt(12))
        signs = frames[s : s + rows]
        block += (signs != 0).any(-1, keepdims=True) * steady[s : s + rows, None, :]
        block += _product(signs * observed[s : s + rows, None, _INTENSITY], projection[_INTENSITY])
        block += offset[s : s + rows, None, :]
        block *= valid[s : s + rows, :, None]
    return x


def _generate(
    like: str, scale: float, seed: int, seq_len: int | None, emotion_labels: float = EMOTION_LABELS
) -> tuple[CanonicalData, np.ndarray]:
    """``generate_synthetic`` plus the hidden factors (N_total, len(FACTORS)), splits in SPLITS order."""
    shape = like_shapes(like)
    if not (math.isfinite(scale) and scale > 0):
        raise UsageError(f"--scale: must be a positive finite number, got {scale}")
    seq_len = _padded_length(shape) if seq_len is None else seq_len
    if seq_len < 1:
        raise UsageError(f"--seq-len: must be at least 1, got {seq_len}")
    if seed < 0:
        raise UsageError(f"--seed: must be non-negative, got {seed}")
    if not 0 < emotion_labels <= 1:
        raise UsageError(f"--emotion-labels: must be a fraction in (0, 1], got {emotion_labels}")
    _check_memory(like, scale, seq_len)
    sizes = [max(8, round(n * scale)) for n in _SIZES[like]]
    n = sum(sizes)
    clip_seed, mix_seed, *modality_seeds = np.random.SeedSequence(seed).spawn(2 + len(shape.input_dims))
    rng = np.random.default_rng(clip_seed)
    mixing = np.random.default_rng(mix_seed)

    factors = rng.standard_normal((n, len(FACTORS)), dtype=np.float32)
    shown = factors.copy()
    shown[:, _INTENSITY] = np.abs(factors[:, _INTENSITY])
    # Labels see an intensity as its half-normal magnitude, standardised.
    drivers = factors.copy()
    drivers[:, _INTENSITY] = (shown[:, _INTENSITY] - np.sqrt(2 / np.pi)) / np.sqrt(1 - 2 / np.pi)
    sentiment = _standardise(
        _product(drivers, _SENTIMENT_WEIGHTS) + _SENTIMENT_NOISE * rng.standard_normal(n, dtype=np.float32)
    )
    # Adding 0.0 turns the -0.0 that rounding produces into 0.0.
    sentiment = np.round(np.clip(np.float32(1.5) * sentiment, -3, 3) * 3) / np.float32(3) + np.float32(0)
    score = _standardise(
        _product(drivers, _EMOTION_WEIGHTS.T)
        + _EMOTION_NOISE * rng.standard_normal((n, len(MOSEI_EMOTIONS)), dtype=np.float32)
    )
    # quantile gives a (level, emotion) grid; each emotion needs only its own level.
    threshold = np.quantile(score, 1 - _PREVALENCE, axis=0).diagonal().astype(np.float32)
    emotion = np.clip(np.ceil((score - threshold) * 3) / 3, 0, 3).astype(np.float32)
    if shape.emotion_labels:
        unlabelled = rng.permutation(sizes[0])[max(1, round(emotion_labels * sizes[0])) :]
        emotion[unlabelled] = np.nan
    else:
        emotion.fill(np.nan)

    low = min(_MIN_LENGTH, seq_len)
    lengths = rng.integers(low, seq_len + 1, size=n, dtype=np.int32)
    valid = np.arange(seq_len)[None, :] < lengths[:, None]
    carrier = (rng.random((n, seq_len), dtype=np.float32) < _CARRIER_RATE) & valid
    # Every clip shows its factors at least once.
    carrier[np.arange(n), (rng.random(n) * lengths).astype(np.int64)] = True
    signs = np.where(rng.random((n, seq_len, int(_INTENSITY.sum())), dtype=np.float32) < 0.5, -1, 1)
    frames = (signs * carrier[..., None]).astype(np.float32)
    features = {
        m: _features(np.random.default_rng(ms), mixing, m, dim, shown, valid.astype(np.float32), frames)
        for (m, dim), ms in zip(shape.input_dims.items(), modality_seeds, strict=True)
    }

    data = CanonicalData(
        dataset=f"synthetic-{like}",
        source="synthetic",
        modalities=list(shape.input_dims),
        emotions=list(MOSEI_EMOTIONS),
        splits=split_clips(like, sizes, features, lengths, sentiment, emotion),
        options=_options(like, scale, seed, seq_len, emotion_labels),
    )
    return data, factors


def _check_memory(like: str, scale: float, seq_len: int) -> None:
    """Refuse, naming ``--scale`` and ``--seq-len``, features too large for this machine's physical memory."""
    clips = sum(max(8, np.round(n * scale)) for n in _SIZES[like])  # as the split sizes, but inf when too many
    values = sum(like_shapes(like).input_dims.values())
    limit = feature_memory_limit(clips, values)
    if limit is None:  # unknown memory: the allocation itself decides
        return
    most, memory = limit
    if seq_len > most:
        fix = f"--seq-len can be at most {most} at this --scale" if most else "lower --scale"
        raise UsageError(
            f"--scale {scale:g}, --seq-len {seq_len}: the features ({clips:.6g} clips × {seq_len} steps × {values} "
            f"float32 values) would not fit in this machine's memory ({memory / 2**30:.0f} GiB); {fix}"
        )


def _padded_length(shape: DataShapes) -> int:
    """The padded length of a dataset's release (every modality's is the same)."""
    return max(shape.lengths.values())


def _options(like: str, scale: float, seed: int, seq_len: int, emotion_labels: float) -> dict[str, object]:
    """The options a generated file records: what it was asked for, and the generator that made it."""
    return {
        "like": like,
        "scale": scale,
        "seed": seed,
        "seq_len": seq_len,
        "emotion_labels": emotion_labels,
        "generator": GENERATOR,
    }


def split_clips(
    like: str,
    sizes: list[int],
    features: dict[str, np.ndarray],
    lengths: np.ndarray,
    sentiment: np.ndarray,
    emotion: np.ndarray,
) -> dict[str, Split]:
    """Generated clips, in order, cut into SPLITS of ``sizes``; ids ``synthetic_<like>_<index>$_$0``."""
    ids = np.char.mod(f"synthetic_{like}_%05d$_$0", np.arange(sum(sizes)))
    bounds = np.cumsum([0, *sizes])
    return {
        name: Split(
            ids=ids[a:b],
            features={m: x[a:b] for m, x in features.items()},
            lengths={m: lengths[a:b].copy() for m in features},
            sentiment=sentiment[a:b],
            emotion=emotion[a:b],
        )
        for name, a, b in zip(SPLITS, bounds[:-1], bounds[1:], strict=True)
    }


def generate_synthetic(
    like: str = "mosei",
    scale: float = 1.0,
    seed: int = 0,
    seq_len: int | None = None,
    emotion_labels: float = EMOTION_LABELS,
) -> CanonicalData:
    """Generate a MOSI- or MOSEI-shaped dataset (``scale`` multiplies split sizes, at least 8 each).

    ``emotion_labels`` is the fraction of MOSEI-like training clips that keep their emotion labels.
    """
    return _generate(like, scale, seed, seq_len, emotion_labels)[0]


def _is_builtin(path: Path) -> bool:
    seq_len = _padded_length(like_shapes(BUILTIN_LIKE))
    builtin = _options(BUILTIN_LIKE, BUILTIN_SCALE, BUILTIN_SEED, seq_len, EMOTION_LABELS)
    try:
        with h5py.File(path, "r") as f:
            # A file from another mmolre version, generator or default may hold different data.
            return (
                f.attrs.get("format") == FORMAT
                and f.attrs.get("source") == "synthetic"
                and f.attrs.get("created_by") == f"mmolre {__version__}"
                and json.loads(f.attrs.get("options", "{}")) == builtin
            )
    except (OSError, ValueError):
        return False


def builtin_dataset_path(cache_dir: Path | None = None) -> Path:
    """Path of the default dataset (MOSEI-like, scale 0.1, seed 0), generated once into the cache.

    The cache is ``cache_dir``, else ``$MMOLRE_CACHE_DIR``, else ``~/.cache/mmolre``.
    """
    if cache_dir is None:
        cache_dir = Path(os.environ.get("MMOLRE_CACHE_DIR") or Path.home() / ".cache" / "mmolre")
    path = Path(cache_dir).expanduser() / f"synthetic-{BUILTIN_LIKE}-s{BUILTIN_SCALE}-seed{BUILTIN_SEED}.h5"
    if not _is_builtin(path):
        data = generate_synthetic(BUILTIN_LIKE, BUILTIN_SCALE, BUILTIN_SEED)
        write_canonical(data, path, force=True)
    return path
