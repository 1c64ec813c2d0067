"""Write a canonical file whose audio and vision features have the scales of real extractors.

COVAREP (audio) and FACET (vision) features, as in the CMU-MOSI/MOSEI releases, mix very different
scales in one frame, and every speaker (and recording setup) shifts some of them. This script makes
such a file, with labels that depend on what a per-frame normalisation across features hides:
small-scale coefficients and clip-level offsets. docs/normalization.md measures ``--normalize
frame`` against ``--normalize feature`` on it.

Each clip belongs to a speaker; the splits are speaker-disjoint (60 % / 10 % / 30 % of the speakers),
as the CMU folds are video-disjoint. Four hidden factors per clip, independent standard normals:

- ``valence``: seen weakly in the text features and in two FACET-like action-unit evidences;
- ``arousal``: a clip-level offset, +1.0 in every log band energy (loudness) and +10 Hz of pitch;
- ``tension``: +0.01 in three voice-quality coefficients whose values are about 0.05–0.5;
- ``smile``: +0.15 in two action-unit evidences (AU6, AU12), beside per-speaker offsets and noise.

Audio (20 features a frame): F0 in Hz (a speaker's baseline of about 120 or 210 Hz, intonation
noise of 20 Hz, 0 in the unvoiced fifth of the frames), the voiced flag, 8 voice-quality
coefficients (NAQ, QOQ, H1H2, PSP, MDQ, peak slope, Rd, creak: base values 0.05–0.5, noise 0.02)
and 10 log band energies (a spectral tilt from -2 to -12, a per-speaker channel gain, noise 1).
Vision (20 features a frame): 14 action-unit evidences (per-speaker offsets, noise 0.3), head
pose in degrees (per-speaker offsets of 10°, noise 5°) and the face box in pixels (x ≈ 320, y ≈ 240,
size ≈ 150, per speaker, noise 2 px). Text (32 features a frame, unit scale) sees valence only.

Labels: sentiment = 0.8 valence + 0.5 smile - 0.6 tension + 0.5 arousal + noise (std 0.3),
standardised, scaled to std 1.5, clipped to [-3, 3] and rounded to multiples of 1/3. Each MOSEI
emotion is present when a weighted sum of the factors plus noise exceeds the quantile that gives
MOSEI's prevalence, with intensity the excess rounded up to 1/3, at most 3.

    python examples/real_scale_features.py --out real_scale.h5
    mmolre data info real_scale.h5
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from mmolre_cli.data.canonical import MOSEI_EMOTIONS, SPLITS, CanonicalData, Split, write_canonical

#: MOSEI's prevalence per emotion (as the built-in synthetic data use).
PREVALENCE = {"happy": 0.54, "sad": 0.25, "anger": 0.21, "surprise": 0.10, "disgust": 0.17, "fear": 0.08}
#: Factor weights of each emotion's latent score: valence, arousal, tension, smile.
EMOTION_WEIGHTS = {
    "happy": (1.0, 0.3, -0.3, 1.0),
    "sad": (-1.0, -0.5, 0.3, -0.3),
    "anger": (-0.5, 1.0, 0.8, -0.2),
    "surprise": (0.2, 1.0, 0.0, 0.3),
    "disgust": (-0.6, 0.2, 0.6, -0.8),
    "fear": (-0.5, 0.3, 1.0, 0.0),
}
SPLIT_SHARES = (0.6, 0.1, 0.3)
TEXT_DIM = 32
VOICE_QUALITY = np.array([0.05, 0.1, 0.5, 0.3, 0.08, 0.2, 0.4, 0.06])  # base values of the 8 coefficients
TENSE = [0, 4, 7]  # the voice-quality coefficients that tension raises
BANDS = 10
ACTION_UNITS = 14
SMILE_UNITS = [5, 11]  # AU6 and AU12
VALENCE_UNITS = [1, 3]


def generate(speakers: int, clips_per_speaker: int, seq_len: int, seed: int) -> CanonicalData:
    """The whole dataset, deterministic in ``seed``."""
    rng = np.random.default_rng(seed)
    n = speakers * clips_per_speaker
    speaker = np.repeat(np.arange(speakers), clips_per_speaker)
    valence, arousal, tension, smile = rng.standard_normal((4, n))
    lengths = rng.integers(min(10, seq_len), seq_len + 1, n).astype(np.int32)
    valid = np.arange(seq_len)[None, :] < lengths[:, None]  # n t

    # Per-speaker offsets: pitch baseline (two registers), channel gain, action-unit and pose offsets, face box.
    pitch_base = np.where(rng.random(speakers) < 0.5, 120.0, 210.0) + rng.normal(0, 15, speakers)
    gain = rng.normal(0, 0.5, speakers)
    au_offset = rng.normal(0, 0.5, (speakers, ACTION_UNITS))
    pose_offset = rng.normal(0, 10, (speakers, 3))
    box = np.stack([rng.normal(320, 40, speakers), rng.normal(240, 30, speakers), rng.normal(150, 30, speakers)], 1)

    def frames(dim: int, scale: float) -> np.ndarray:
        return rng.normal(0, scale, (n, seq_len, dim))

    direction = rng.standard_normal(TEXT_DIM) / np.sqrt(TEXT_DIM)
    text = 0.5 * valence[:, None, None] * direction + frames(TEXT_DIM, 1.0)

    voiced = rng.random((n, seq_len)) >= 0.2
    pitch = pitch_base[speaker, None] + 10 * arousal[:, None] + frames(1, 20)[..., 0]
    quality = VOICE_QUALITY + frames(len(VOICE_QUALITY), 0.02)
    quality[..., TENSE] += 0.01 * tension[:, None, None]
    tilt = np.linspace(-2, -12, BANDS)
    energies = tilt + (gain[speaker] + arousal)[:, None, None] + frames(BANDS, 1.0)
    audio = np.concatenate([(pitch * voiced)[..., None], voiced[..., None], quality, energies], axis=2)

    units = au_offset[speaker, None] + frames(ACTION_UNITS, 0.3)
    units[..., SMILE_UNITS] += 0.15 * smile[:, None, None]
    units[..., VALENCE_UNITS] += 0.1 * valence[:, None, None]
    pose = pose_offset[speaker, None] + frames(3, 5.0)
    face = box[speaker, None] + frames(3, 2.0)
    vision = np.concatenate([units, pose, face], axis=2)

    factors = np.stack([valence, arousal, tension, smile], 1)
    score = 0.8 * valence + 0.5 * smile - 0.6 * tension + 0.5 * arousal + rng.normal(0, 0.3, n)
    sentiment = np.clip(np.round(1.5 * (score - score.mean()) / score.std() * 3) / 3, -3, 3)
    emotion = np.zeros((n, len(MOSEI_EMOTIONS)))
    for i, name in enumerate(MOSEI_EMOTIONS):
        latent = factors @ np.array(EMOTION_WEIGHTS[name]) + rng.normal(0, 0.5, n)
        latent = (latent - latent.mean()) / latent.std()
        excess = latent - np.quantile(latent, 1 - PREVALENCE[name])
        emotion[:, i] = np.where(excess > 0, np.minimum(np.ceil(excess * 3) / 3, 3), 0)

    order = rng.permutation(speakers)
    cuts = np.cumsum([round(share * speakers) for share in SPLIT_SHARES[:-1]])
    splits = {}
    for name, members in zip(SPLITS, np.split(order, cuts), strict=True):
        index = np.flatnonzero(np.isin(speaker, members))
        features = {"text": text, "audio": audio, "vision": vision}
        splits[name] = Split(
            ids=np.array([f"speaker{speaker[i]:03d}_clip{i:05d}" for i in index]),
            features={m: np.where(valid[index, :, None], x[index], 0).astype(np.float32) for m, x in features.items()},
            lengths={m: lengths[index] for m in features},
            sentiment=sentiment[index].astype(np.float32),
            emotion=emotion[index].astype(np.float32),
        )
    return CanonicalData(
        dataset="real-scale",
        source="examples/real_scale_features.py",
        modalities=["text", "audio", "vision"],
        emotions=list(MOSEI_EMOTIONS),
        splits=splits,
        options={"speakers": speakers, "clips_per_speaker": clips_per_speaker, "seq_len": seq_len, "seed": seed},
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="canonical HDF5 file to write")
    parser.add_argument("--speakers", type=int, default=90)
    parser.add_argument("--clips-per-speaker", type=int, default=20)
    parser.add_argument("--seq-len", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="overwrite an existing --out")
    args = parser.parse_args(argv)
    data = generate(args.speakers, args.clips_per_speaker, args.seq_len, args.seed)
    write_canonical(data, args.out, force=args.force)
    sizes = ", ".join(f"{name} {split.size}" for name, split in data.splits.items())
    print(f"wrote {args.out} (real-scale: {sizes})")


if __name__ == "__main__":
    main()
