"""Generate the MOSEI-shaped files of the third round of docs/ablations.md (not part of the package).

    python docs/experiments/factor_designs.py M1 --scale 0.1 --seq-len 20 --out m1.h5

Every design is a table of hidden factors, each a standard normal with a weight on sentiment, a
weight on each emotion and a visibility per modality, as in ``mmolre_cli.data.synthetic``; labels,
prevalences, carrier frames, nuisance offsets and padding follow that generator. What a design can
change: per-modality frame noise (``step_noise``), the label noises, the fraction of training clips
that keep their emotion labels (``known``), and *intensity* factors, shown by each carrier frame
with a random sign so that only a per-frame magnitude recovers them.
"""

from __future__ import annotations

import argparse

import numpy as np

from mmolre_cli.data.canonical import MOSEI_EMOTIONS, CanonicalData, write_canonical
from mmolre_cli.data.shapes import like_shapes
from mmolre_cli.data.synthetic import (
    _CARRIER_RATE,
    _MIN_LENGTH,
    _NUISANCE_DIM,
    _PREVALENCE,
    _SIZES,
    _standardise,
    split_clips,
)

# The shipped generator's MOSEI shapes, prevalences and frame structure, so that only the factors differ.
DIMS, SIZES = like_shapes("mosei").input_dims, _SIZES["mosei"]


def factor(sentiment: float, emotions: dict[str, float], visibility: dict[str, float], intensity: bool = False) -> dict:
    return {
        "sentiment": sentiment,
        "emotions": [emotions.get(e, 0.0) for e in MOSEI_EMOTIONS],
        "visibility": visibility,
        "intensity": intensity,
    }


# M: every factor linear; valence, the largest weight of both tasks, is seen well only in text.
_M_FACTORS = {
    "valence": factor(
        1.0,
        {"happy": 1.0, "sad": -0.9, "anger": -0.7, "surprise": 0.4, "disgust": -0.7, "fear": -0.6},
        {"text": 0.8, "audio": 0.15, "vision": 0.15},
    ),
    "opinion": factor(0.4, {}, {"text": 0.6, "audio": 0.1, "vision": 0.1}),
    "appraisal": factor(0.3, {}, {"text": 0.2, "vision": 0.6}),
    "arousal": factor(
        0, {"anger": 0.4, "surprise": 0.4, "fear": 0.3, "sad": -0.2}, {"text": 0.1, "audio": 0.8, "vision": 0.3}
    ),
    "novelty": factor(0, {"surprise": 0.5, "happy": 0.2}, {"text": 0.1, "audio": 0.2, "vision": 0.8}),
    "threat": factor(0, {"fear": 0.5, "sad": 0.3}, {"text": 0.1, "audio": 0.5, "vision": 0.6}),
    "hostility": factor(0, {"anger": 0.4, "disgust": 0.4}, {"text": 0.1, "audio": 0.5, "vision": 0.7}),
    "irony": factor(0.4, {"happy": -0.5, "sad": 0.4, "disgust": 0.4}, {"text": 0.6, "audio": 0.1, "vision": 0.2}),
}
# D1: sentiment-only and emotion-only factors are intensities in audio and vision; 10 % emotion labels.
_D1_FACTORS = {
    "valence": factor(
        1.0,
        {"happy": 1.2, "sad": -1.0, "anger": -0.8, "surprise": 0.5, "disgust": -0.8, "fear": -0.7},
        {"text": 0.7, "audio": 0.1, "vision": 0.1},
    ),
    "opinion": factor(0.6, {}, {"text": 0.2, "audio": 1.0, "vision": 0.6}, intensity=True),
    "appraisal": factor(0.5, {}, {"text": 0.2, "audio": 0.5, "vision": 1.0}, intensity=True),
    "arousal": factor(
        0,
        {"anger": 0.4, "surprise": 0.4, "fear": 0.3, "sad": -0.3},
        {"text": 0.1, "audio": 1.0, "vision": 0.4},
        intensity=True,
    ),
    "novelty": factor(0, {"surprise": 0.5, "happy": 0.2}, {"text": 0.1, "audio": 0.3, "vision": 1.0}, intensity=True),
    "threat": factor(0, {"fear": 0.5, "sad": 0.3}, {"text": 0.1, "audio": 0.6, "vision": 0.8}, intensity=True),
    "hostility": factor(0, {"anger": 0.4, "disgust": 0.4}, {"text": 0.1, "audio": 0.5, "vision": 1.0}, intensity=True),
    "irony": factor(0.4, {"happy": -0.5, "sad": 0.4, "disgust": 0.4}, {"text": 0.8, "audio": 0.2, "vision": 0.2}),
}
# S: three intensities in audio and vision that both tasks use, with other weights per task.
_S_FACTORS = {
    "valence": factor(
        1.0,
        {"happy": 0.8, "sad": -0.7, "anger": -0.5, "surprise": 0.3, "disgust": -0.5, "fear": -0.4},
        {"text": 0.8, "audio": 0.15, "vision": 0.15},
    ),
    "engagement": factor(
        0.6, {"happy": 0.5, "anger": 0.4, "surprise": 0.5}, {"audio": 1.0, "vision": 0.5}, intensity=True
    ),
    "tension": factor(-0.6, {"sad": 0.5, "fear": 0.6, "anger": 0.3}, {"audio": 0.6, "vision": 1.0}, intensity=True),
    "warmth": factor(
        0.5, {"happy": 0.4, "disgust": -0.5, "anger": -0.3}, {"audio": 0.8, "vision": 0.8}, intensity=True
    ),
    "irony": factor(0.4, {"happy": -0.5, "sad": 0.4, "disgust": 0.4}, {"text": 0.6, "audio": 0.1, "vision": 0.2}),
}
_M = {"factors": _M_FACTORS, "sentiment_noise": 0.5, "emotion_noise": 0.5, "observation_noise": 0.6}
DESIGNS = {
    "M1": {**_M, "step_noise": {"text": 3.0}},
    "M2": {**_M, "step_noise": {"text": 5.0}},
    "M1-30": {**_M, "step_noise": {"text": 3.0}, "known": 0.3},
    "S1": {"factors": _S_FACTORS, "sentiment_noise": 0.5, "emotion_noise": 0.5, "observation_noise": 0.6},
    "D1": {
        "factors": _D1_FACTORS,
        "sentiment_noise": 0.6,
        "emotion_noise": 0.5,
        "observation_noise": 0.6,
        "known": 0.1,
    },
}
DESIGNS["D1-all"] = {**DESIGNS["D1"], "known": 1.0}


def intensities_seen(times: float) -> dict:
    """The S factors with every intensity ``times`` as visible in each modality."""
    return {
        name: {**f, "visibility": {m: times * v for m, v in f["visibility"].items()}} if f["intensity"] else f
        for name, f in _S_FACTORS.items()
    }


# S2: S1 with the intensities twice as visible, so that each carrier frame shows them clearly.
DESIGNS["S2"] = {**DESIGNS["S1"], "factors": intensities_seen(2)}
# S3: S2 with noisier emotion labels, so that an emotion-only model learns the intensities from less.
DESIGNS["S3"] = {**DESIGNS["S2"], "emotion_noise": 1.0}
# S4: S3 with the intensities 1.5 times as visible as in S1 instead of twice.
DESIGNS["S4"] = {**DESIGNS["S3"], "factors": intensities_seen(1.5)}
# S5: S3 plus two sentiment-only intensities, so that the sentiment stream needs features of its own.
DESIGNS["S5"] = {
    **DESIGNS["S3"],
    "factors": {
        **DESIGNS["S3"]["factors"],
        "opinion": factor(0.5, {}, {"audio": 2.0, "vision": 1.0}, intensity=True),
        "appraisal": factor(0.5, {}, {"audio": 1.0, "vision": 2.0}, intensity=True),
    },
}
# S6: S5 with emotion label noise between S2's and S3's.
DESIGNS["S6"] = {**DESIGNS["S5"], "emotion_noise": 0.75}
# S7: S2 with emotion labels on 30 % of the training clips, so that sentiment labels teach most of the intensities.
DESIGNS["S7"] = {**DESIGNS["S2"], "known": 0.3}
# S8: S3 (noisy emotion labels) with emotion labels on 30 % of the training clips.
DESIGNS["S8"] = {**DESIGNS["S3"], "known": 0.3}


def generate(name: str, scale: float, seq_len: int, seed: int = 0) -> CanonicalData:
    design = DESIGNS[name]
    factors = list(design["factors"].values())
    sizes = [max(8, round(n * scale)) for n in SIZES]
    n, k = sum(sizes), len(factors)
    clip_seed, mix_seed, *modality_seeds = np.random.SeedSequence(seed).spawn(2 + len(DIMS))
    rng, mixing = np.random.default_rng(clip_seed), np.random.default_rng(mix_seed)
    z = rng.standard_normal((n, k)).astype(np.float32)
    intensity = np.array([f["intensity"] for f in factors])
    shown = z.copy()
    shown[:, intensity] = np.abs(z[:, intensity])
    label_factors = z.copy()  # intensities standardised from their half-normal magnitude
    label_factors[:, intensity] = (shown[:, intensity] - np.sqrt(2 / np.pi)) / np.sqrt(1 - 2 / np.pi)

    sentiment_weights = np.array([f["sentiment"] for f in factors], np.float32)
    emotion_weights = np.array([f["emotions"] for f in factors], np.float32)
    noise = design["sentiment_noise"] * rng.standard_normal(n).astype(np.float32)
    sentiment = _standardise(label_factors @ sentiment_weights + noise)
    sentiment = np.round(np.clip(1.5 * sentiment, -3, 3) * 3) / 3 + np.float32(0)
    noise = design["emotion_noise"] * rng.standard_normal((n, len(MOSEI_EMOTIONS))).astype(np.float32)
    score = _standardise(label_factors @ emotion_weights + noise)
    threshold = np.quantile(score, 1 - _PREVALENCE, axis=0).diagonal().astype(np.float32)
    emotion = np.clip(np.ceil((score - threshold) * 3) / 3, 0, 3).astype(np.float32)
    known = design.get("known", 1.0)
    if known < 1:
        emotion[rng.permutation(sizes[0])[max(1, round(known * sizes[0])) :]] = np.nan

    lengths = rng.integers(min(_MIN_LENGTH, seq_len), seq_len + 1, size=n).astype(np.int32)
    valid = (np.arange(seq_len)[None] < lengths[:, None]).astype(np.float32)
    carrier = (rng.random((n, seq_len)) < _CARRIER_RATE) & (valid > 0)
    carrier[np.arange(n), (rng.random(n) * lengths).astype(int)] = True
    polarity = np.where(rng.random((n, seq_len, k)) < 0.5, -1.0, 1.0).astype(np.float32)
    polarity[:, :, ~intensity] = 1.0
    frame_factors = polarity * carrier[:, :, None]  # n t k: sign and presence of every factor per frame
    features = {}
    for (m, dim), modality_seed in zip(DIMS.items(), modality_seeds, strict=True):
        r = np.random.default_rng(modality_seed)
        visibility = np.array([f["visibility"].get(m, 0.0) for f in factors], np.float32)
        projection = mixing.standard_normal((k, dim)).astype(np.float32) / np.sqrt(k)
        nuisance = mixing.standard_normal((_NUISANCE_DIM, dim)).astype(np.float32) / np.float32(np.sqrt(_NUISANCE_DIM))
        observed = shown * visibility + design["observation_noise"] * r.standard_normal(shown.shape).astype(np.float32)
        x = (
            (r.random((n, seq_len, dim), dtype=np.float32) - 0.5)
            * np.sqrt(12)
            * design.get("step_noise", {}).get(m, 1.0)
        )
        x += np.einsum("ntk,kd->ntd", observed[:, None, :] * frame_factors, projection)
        x += (r.standard_normal((n, _NUISANCE_DIM)).astype(np.float32) @ nuisance)[:, None]
        features[m] = (x * valid[:, :, None]).astype(np.float32)

    return CanonicalData(
        dataset="synthetic-mosei",
        source="synthetic",
        modalities=list(DIMS),
        emotions=list(MOSEI_EMOTIONS),
        splits=split_clips("mosei", sizes, features, lengths, sentiment, emotion),
        options={"design": name, "scale": scale, "seed": seed, "seq_len": seq_len},
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("design", choices=DESIGNS)
    parser.add_argument("--scale", type=float, default=0.1)
    parser.add_argument("--seq-len", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    write_canonical(generate(args.design, args.scale, args.seq_len, args.seed), args.out, force=True)
