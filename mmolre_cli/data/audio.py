"""Raw audio for ``prepare csv --audio-dir``: one file per clip, read, mixed to mono and resampled, then
embedded by an audio encoder into frame-level features pooled to a fixed number of steps.

Clips are found as MMSA's raw layout names them, ``<audio-dir>/<video_id>/<clip_id>.wav`` (or ``.flac``).
Files are read with soundfile (libsndfile) and resampled with SciPy's polyphase filter; both come with the
``audio`` extra. An audio encoder (kind ``audio_encoder``) is any object with a ``sampling_rate`` (Hz) and
``encode(wave)`` → float32 frames (F, D) of one mono waveform at that rate.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from math import gcd
from pathlib import Path
from typing import Protocol

import numpy as np

from mmolre_cli.data.canonical import CanonicalData
from mmolre_cli.errors import DataError, UsageError, first_line

#: Audio file suffixes looked for, in this order.
SUFFIXES = (".wav", ".flac")
#: The lowest sampling rate accepted: below it a file is not speech audio worth resampling.
MIN_RATE = 8000
#: How audio frames become steps: averaged into at most ``--audio-len`` equal segments, or into as many
#: equal segments as the clip has text tokens (the text's steps, one audio step each).
ALIGNMENTS = ("pool", "text")


class AudioEncoder(Protocol):
    """What an ``audio_encoder`` factory builds."""

    sampling_rate: int

    def encode(self, wave: np.ndarray) -> np.ndarray: ...


def _soundfile():
    try:
        import soundfile
    except ImportError:
        raise UsageError("--audio-dir: soundfile is not installed (pip install 'mmolre-cli[audio]')") from None
    return soundfile


def clip_file(audio_dir: Path, clip: str) -> Path:
    """The audio file of clip ``<video_id>$_$<clip_id>``, or a DataError naming the clip."""
    video, _, number = clip.rpartition("$_$")
    for suffix in SUFFIXES:
        path = audio_dir / video / f"{number}{suffix}"
        if path.is_file():
            return path
    raise DataError(f"clip {clip}: no audio file {audio_dir / video / number}{' or '.join(SUFFIXES)}")


def read_clip(path: Path, rate: int, max_seconds: float, clip: str) -> np.ndarray:
    """The clip at ``path`` as a float32 mono waveform at ``rate`` Hz, or a one-line DataError naming the clip:
    unreadable, empty, below ``MIN_RATE``, longer than ``max_seconds`` or holding non-finite samples."""
    soundfile = _soundfile()
    where = f"clip {clip}: {path}"
    try:
        wave, source_rate = soundfile.read(path, dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as error:
        raise DataError(f"{where}: unreadable audio file ({first_line(error)})") from None
    if not len(wave):
        raise DataError(f"{where}: empty audio (no samples)")
    if source_rate < MIN_RATE:
        raise DataError(f"{where}: sampling rate {source_rate} Hz is below {MIN_RATE} Hz (not speech audio?)")
    seconds = len(wave) / source_rate
    if seconds > max_seconds:
        raise DataError(f"{where}: {seconds:.1f} s long, longer than --max-seconds {max_seconds:g}")
    wave = wave.mean(axis=1)  # mono: the mean of the channels
    if not np.isfinite(wave).all():
        raise DataError(f"{where}: non-finite sample values")
    if source_rate != rate:
        from scipy.signal import resample_poly

        common = gcd(rate, source_rate)
        wave = resample_poly(wave, rate // common, source_rate // common)
    return np.ascontiguousarray(wave, dtype=np.float32)


def pool_frames(frames: np.ndarray, steps: int) -> np.ndarray:
    """(F, D) frames averaged over ``min(F, steps)`` consecutive segments of (nearly) equal length."""
    bounds = np.linspace(0, len(frames), min(len(frames), steps) + 1).round().astype(int)
    return np.stack([frames[a:b].mean(axis=0) for a, b in zip(bounds[:-1], bounds[1:], strict=True)])


def add_audio(
    data: CanonicalData,
    audio_dir: Path,
    encoder: AudioEncoder,
    *,
    audio_len: int,
    align: str,
    max_seconds: float,
    keep_waveforms: bool,
    who: str = "the audio encoder",
    progress: Callable[[str, int, int], None] | None = None,
) -> None:
    """Read every clip of ``data`` from ``audio_dir`` and add the modality ``audio``: features of ``encoder``
    (``who``, for errors) pooled to at most ``audio_len`` steps, or one step per text token (``align``
    ``text``), and, when ``keep_waveforms``, the waveforms themselves (``raw_audio``).

    Every clip is read and checked before the first is encoded, so a bad file fails fast.
    ``progress(stage, done, total)`` is called after each clip read (stage ``reading``), then encoded
    (``encoding``)."""
    if align not in ALIGNMENTS:
        raise UsageError(f"--audio-align: unknown value {align!r} (valid: {', '.join(ALIGNMENTS)})")
    if audio_len < 1:
        raise UsageError(f"--audio-len: must be at least 1, got {audio_len}")
    if not (math.isfinite(max_seconds) and max_seconds > 0):
        raise UsageError(f"--max-seconds: must be a positive number, got {max_seconds}")
    if not audio_dir.is_dir():
        raise DataError(f"{audio_dir}: audio directory not found")
    rate = int(encoder.sampling_rate)
    total = sum(split.size for split in data.splits.values())
    done = 0
    waves = {}
    for name, split in data.splits.items():
        waves[name] = []
        for clip in split.ids:
            waves[name].append(read_clip(clip_file(audio_dir, clip), rate, max_seconds, clip))
            done += 1
            if progress:
                progress("reading", done, total)
    dim, done = None, 0
    for name, split in data.splits.items():
        steps = split.features["text"].shape[1] if align == "text" else audio_len
        features, lengths = None, np.zeros(split.size, dtype=np.int32)
        for i, (clip, wave) in enumerate(zip(split.ids, waves[name], strict=True)):
            frames = np.asarray(encoder.encode(wave))
            if frames.ndim != 2 or not len(frames) or frames.dtype.kind != "f" or (dim and frames.shape[1] != dim):
                expected = f"(F, {dim})" if dim else "(F, D)"
                got = f"{frames.dtype} {frames.shape}"
                raise DataError(f"{who}: clip {clip}: encode returned {got}, expected float frames {expected}")
            dim = frames.shape[1]
            if features is None:
                features = np.zeros((split.size, steps, dim), dtype=np.float32)
            wanted = int(split.lengths["text"][i]) if align == "text" else steps
            pooled = pool_frames(frames, max(wanted, 1))
            features[i, : len(pooled)] = pooled
            lengths[i] = len(pooled)
            done += 1
            if progress:
                progress("encoding", done, total)
        split.features["audio"], split.lengths["audio"] = features, lengths
        if keep_waveforms:
            split.raw_audio = np.empty(split.size, dtype=object)
            split.raw_audio[:] = waves[name]
    data.modalities.append("audio")
    if keep_waveforms:
        data.raw_audio_rate = rate
    data.options["audio"] = {
        "dir": str(audio_dir),
        "sampling_rate": rate,
        "align": align,
        "audio_len": audio_len if align == "pool" else None,
        "max_seconds": max_seconds,
        "waveforms": keep_waveforms,
    }


class HFAudioEncoder:
    """Last hidden states (F, D) of a Hugging Face speech model from a local directory, one clip at a time
    (no padding, so a model without attention masks sees exactly its clip), inputs prepared by the
    directory's feature extractor (e.g. zero mean, unit variance)."""

    def __init__(self, model: str | Path | None) -> None:
        if model is None:
            raise UsageError("--audio-model: the hf audio encoder needs a local model directory")
        self.model, self.feature_extractor = load_speech_model(model, "--audio-encoder hf")
        self.model.eval()
        self.sampling_rate = int(self.feature_extractor.sampling_rate)

    def encode(self, wave: np.ndarray) -> np.ndarray:
        import torch

        inputs = self.feature_extractor(wave, sampling_rate=self.sampling_rate, return_tensors="pt")
        with torch.inference_mode():
            hidden = self.model(input_values=inputs["input_values"]).last_hidden_state[0]
        return hidden.float().numpy()


def load_speech_model(model: str | Path, option: str):
    """A Hugging Face speech model and its feature extractor from the local directory ``model`` (nothing is
    downloaded); a one-line error naming the directory when it holds neither or only one."""
    from mmolre_cli.data.text_encoders import local_transformers

    path, transformers = local_transformers(model, option)
    try:
        extractor = transformers.AutoFeatureExtractor.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as error:
        raise DataError(
            f"{path}: no feature extractor (preprocessor_config.json, as save_pretrained writes it): "
            f"{first_line(error)}"
        ) from None
    if not hasattr(extractor, "sampling_rate"):
        raise DataError(f"{path}: the feature extractor {type(extractor).__name__} has no sampling rate (not speech?)")
    try:
        backbone = transformers.AutoModel.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: cannot load a model: {first_line(error)}") from None
    return backbone, extractor
