"""CMU-MultimodalSDK sequences: word alignment checked by hand, segments, folds, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from cli_checks import assert_fails_cleanly
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from mmolre_cli.cli.app import app
from mmolre_cli.data.canonical import read_canonical
from mmolre_cli.data.csd import align, standard_folds

WORDS = np.array([[0, 1], [1, 2], [2, 3], [3, 4], [4, 5]], dtype=float)
TEXT = np.array([[1, 0], [2, 0], [3, 0], [4, 0], [5, 0]], dtype=float)
# Audio frames: word 0 overlaps the first two (mean 15), words 1, 2, 3 one each, word 4 none (0).
AUDIO_T = np.array([[0, 0.5], [0.5, 1], [1, 1.5], [2.5, 3], [3, 3.5]])
AUDIO = np.array([[10], [20], [30], [40], [50]], dtype=float)
# Vision frames out of end order: a long one (7) over everything and a short one (1) over words 1 and 2.
VISION_T = np.array([[0, 10], [1.5, 2.2]])
VISION = np.array([[7], [1]], dtype=float)
# Label segments: words 0-2, words 2-4, and one without words (dropped).
SEGMENTS = np.array([[0, 2.5], [2.5, 5], [6, 7]])
MOSEI_LABELS = np.array([[1.5, 1, 0, 0, 0, 0, 2], [-2, 0, 1, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0]], dtype=float)


def write_csd(path: Path, name: str, videos: dict[str, tuple[np.ndarray, np.ndarray]]) -> Path:
    """A computational sequence with the SDK's layout."""
    with h5py.File(path, "w") as f:
        root = f.create_group(name)
        for vid, (features, intervals) in videos.items():
            root.create_dataset(f"data/{vid}/features", data=features)
            root.create_dataset(f"data/{vid}/intervals", data=intervals)
        root.create_dataset("metadata/root name", data=[name], dtype=h5py.string_dtype())
    return path


def dataset(tmp_path: Path, videos=("v1", "v2", "v3"), labels=MOSEI_LABELS, audio=AUDIO) -> dict[str, Path]:
    """The same hand-made video under several ids, one sequence per modality, labels and folds."""
    files = {
        "text": write_csd(tmp_path / "glove.csd", "glove_vectors", {v: (TEXT, WORDS) for v in videos}),
        "audio": write_csd(tmp_path / "covarep.csd", "COVAREP", {v: (audio, AUDIO_T) for v in videos}),
        "vision": write_csd(tmp_path / "facet.csd", "FACET 4.2", {v: (VISION, VISION_T) for v in videos}),
        "labels": write_csd(tmp_path / "labels.csd", "All Labels", {v: (labels, SEGMENTS) for v in videos}),
    }
    files["folds"] = tmp_path / "folds.json"
    files["folds"].write_text(json.dumps({"train": ["v1"], "valid": ["v2"], "test": ["v3"]}))
    return files


def args(files: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return [
        "prepare", "csd", "--text", str(files["text"]), "--audio", str(files["audio"]),
        "--vision", str(files["vision"]), "--labels", str(files["labels"]), "--folds", str(files["folds"]),
        "--out", str(out), *extra,
    ]  # fmt: skip


@pytest.fixture
def runner():
    return CliRunner()


def test_alignment_averages_overlapping_frames_checked_by_hand():
    np.testing.assert_allclose(align(AUDIO, AUDIO_T, WORDS)[:, 0], [15, 30, 40, 50, 0])
    np.testing.assert_allclose(align(VISION, VISION_T, WORDS)[:, 0], [7, 4, 4, 7, 7])
    # Frames given out of time order give the same result.
    np.testing.assert_allclose(align(AUDIO[::-1], AUDIO_T[::-1], WORDS)[:, 0], [15, 30, 40, 50, 0])


def brute_force(features: np.ndarray, intervals: np.ndarray, words: np.ndarray) -> np.ndarray:
    out = np.zeros((len(words), features.shape[1]))
    for i, (start, end) in enumerate(words):
        overlapping = (intervals[:, 0] < end) & (intervals[:, 1] > start)
        if overlapping.any():
            out[i] = features[overlapping].mean(axis=0)
    return out


interval = st.tuples(st.integers(0, 20), st.integers(0, 6)).map(lambda t: (t[0] / 2, (t[0] + t[1]) / 2))


@settings(max_examples=60, deadline=None)
@given(frames=st.lists(interval, min_size=1, max_size=12), words=st.lists(interval, min_size=1, max_size=6))
def test_alignment_matches_its_definition(frames, words):
    intervals, words = np.array(frames), np.array(words)
    features = np.arange(len(frames) * 2, dtype=float).reshape(-1, 2)
    np.testing.assert_allclose(align(features, intervals, words), brute_force(features, intervals, words), atol=1e-5)


def test_prepare_csd_cuts_segments_aligns_and_splits_by_folds(runner, tmp_path):
    files, out = dataset(tmp_path), tmp_path / "out.h5"
    result = runner.invoke(app, args(files, out, "--seq-len", "4"))
    assert result.exit_code == 0, result.output
    assert "dropped 3 segments without words" in result.stdout
    data = read_canonical(out)
    assert (data.dataset, data.source, data.modalities) == ("mosei", "csd", ["text", "audio", "vision"])
    train = data.splits["train"]
    assert list(train.ids) == ["v1$_$0", "v1$_$1"] and list(data.splits["test"].ids) == ["v3$_$0", "v3$_$1"]
    np.testing.assert_array_equal(train.lengths["audio"], [3, 3])
    np.testing.assert_allclose(train.features["text"][0, :, 0], [1, 2, 3, 0])
    np.testing.assert_allclose(train.features["audio"][0, :, 0], [15, 30, 40, 0])
    np.testing.assert_allclose(train.features["audio"][1, :, 0], [40, 50, 0, 0])  # word 4 has no frame: 0
    np.testing.assert_allclose(train.features["vision"][1, :, 0], [4, 7, 7, 0])
    np.testing.assert_array_equal(train.sentiment, [1.5, -2])
    np.testing.assert_array_equal(train.emotion, MOSEI_LABELS[:2, 1:])


@pytest.mark.parametrize("keep, first, second", [("first", [1, 2], [3, 4]), ("last", [2, 3], [4, 5])])
def test_seq_len_keeps_the_chosen_end(runner, tmp_path, keep, first, second):
    files, out = dataset(tmp_path), tmp_path / "out.h5"
    assert runner.invoke(app, args(files, out, "--seq-len", "2", "--keep", keep)).exit_code == 0
    text = read_canonical(out).splits["valid"].features["text"][:, :, 0]
    np.testing.assert_array_equal(text, [first, second])


def test_non_finite_frames_are_zeroed_before_averaging_and_counted(runner, tmp_path):
    audio = AUDIO.copy()
    audio[1, 0] = -np.inf  # word 0's mean becomes (10 + 0) / 2
    files, out = dataset(tmp_path, audio=audio), tmp_path / "out.h5"
    result = runner.invoke(app, args(files, out))
    assert result.exit_code == 0, result.output
    assert "replaced 3 non-finite feature values by 0 (audio 3)" in result.stdout  # one per video
    assert read_canonical(out).splits["train"].features["audio"][0, 0, 0] == 5


def test_mosi_labels_have_sentiment_only(runner, tmp_path):
    files, out = dataset(tmp_path, labels=MOSEI_LABELS[:, :1]), tmp_path / "out.h5"
    assert runner.invoke(app, args(files, out, "--audio", str(files["audio"]))).exit_code == 0
    data = read_canonical(out)
    assert data.dataset == "mosi" and np.isnan(data.splits["train"].emotion).all()


def test_standard_folds_ship_with_the_package():
    folds = standard_folds()
    assert {s: len(v) for s, v in folds["mosi"].items()} == {"train": 52, "valid": 10, "test": 31}
    assert {s: len(v) for s, v in folds["mosei"].items()} == {"train": 2249, "valid": 300, "test": 678}


def test_standard_folds_split_by_video_and_absent_ones_need_allow_missing(runner, tmp_path):
    mosi = standard_folds()["mosi"]
    videos = [mosi["train"][0], mosi["valid"][0], mosi["test"][0]]
    files, out = dataset(tmp_path, videos=videos, labels=MOSEI_LABELS[:, :1]), tmp_path / "out.h5"
    standard = [a for a in args(files, out) if a not in ("--folds", str(files["folds"]))]
    result = runner.invoke(app, standard)
    assert_fails_cleanly(result, str(files["labels"]), "90 of 93 video ids of the standard mosi folds", out=out)
    result = runner.invoke(app, [*standard, "--allow-missing"])
    assert result.exit_code == 0, result.output
    assert "90 fold videos are absent" in result.stderr
    data = read_canonical(out)
    assert data.splits["valid"].ids[0] == f"{videos[1]}$_$0" and data.options["absent_fold_videos"] == 90


def test_a_folds_file_overrides_and_is_checked(runner, tmp_path):
    files, out = dataset(tmp_path), tmp_path / "out.h5"
    files["folds"].write_text(json.dumps({"train": ["v1", "ghost"], "valid": ["v2"], "test": ["v3"]}))
    result = runner.invoke(app, args(files, out))
    assert_fails_cleanly(result, "labels.csd: All Labels/data/ghost: missing", "1 of 4", "--allow-missing", out=out)
    assert runner.invoke(app, args(files, out, "--allow-missing")).exit_code == 0
    files["folds"].write_text(json.dumps({"datasets": {"mosei": {"train": ["v1"], "valid": ["v1"], "test": []}}}))
    result = runner.invoke(app, args(files, tmp_path / "x.h5"))
    assert_fails_cleanly(result, str(files["folds"]), "datasets/mosei/valid: video 'v1' is also in train")


def _rewrite(key: str, mutate):
    """Rewrite one input sequence: ``mutate(videos)`` edits {vid: (features, intervals)}."""

    def make(files: dict[str, Path]) -> Path:
        with h5py.File(files[key], "r") as f:
            name = next(iter(f))
            videos = {v: (g["features"][()], g["intervals"][()]) for v, g in f[name]["data"].items()}
        mutate(videos)
        return write_csd(files[key], name, videos)

    return make


def _replace_file(key: str, content: bytes | None):
    def make(files: dict[str, Path]) -> Path:
        if content is None:
            files[key].unlink()
        else:
            files[key].write_bytes(content)
        return files[key]

    return make


def _truncate(files: dict[str, Path]) -> Path:
    data = files["audio"].read_bytes()
    files["audio"].write_bytes(data[: len(data) // 2])
    return files["audio"]


def _drop_intervals(files: dict[str, Path]) -> Path:
    with h5py.File(files["vision"], "a") as f:
        del f["FACET 4.2/data/v2/intervals"]
    return files["vision"]


def _edit(key: str, edit):
    """Edit one input sequence in place: ``edit(f)`` changes the open HDF5 file."""

    def make(files: dict[str, Path]) -> Path:
        with h5py.File(files[key], "a") as f:
            edit(f)
        return files[key]

    return make


def _scalar_features(f: h5py.File) -> None:
    del f["COVAREP/data/v1/features"]
    f["COVAREP/data/v1/features"] = 1.0


def _folds(content: str):
    def make(files: dict[str, Path]) -> Path:
        files["folds"].write_text(content)
        return files["folds"]

    return make


def _labels(mutate):
    def change(videos):
        labels = videos["v2"][0].copy()
        mutate(labels)
        videos["v2"] = (labels, videos["v2"][1])

    return _rewrite("labels", change)


BAD_INPUT = {
    "missing file": (_replace_file("audio", None), [], ["file not found"]),
    "not HDF5": (_replace_file("text", b"not hdf5 at all"), [], ["not an HDF5 file"]),
    "truncated": (_truncate, [], ["truncated"]),
    "missing key": (_drop_intervals, [], ["FACET 4.2/data/v2/intervals: missing dataset"]),
    "first dims disagree": (
        _rewrite("audio", lambda v: v.update(v2=(v["v2"][0], v["v2"][1][:-1]))),
        [],
        ["COVAREP/data/v2/intervals: expected numbers (5, 2)"],
    ),
    "dims differ between videos": (
        _rewrite("vision", lambda v: v.update(v3=(np.zeros((2, 3)), v["v3"][1]))),
        [],
        ["FACET 4.2/data/v3/features: feature dim 3 differs from v1's 1"],
    ),
    "features not a matrix": (_edit("audio", _scalar_features), [], ["COVAREP/data/v1/features: expected numbers"]),
    "broken soft link at the root": (
        _edit("audio", lambda f: f.__setitem__("ghost", h5py.SoftLink("/nowhere"))),
        [],
        ["/ghost: cannot be opened (a broken soft or external link?)"],
    ),
    "broken external link at the root": (
        _edit("vision", lambda f: f.__setitem__("ext", h5py.ExternalLink("no-such-file.h5", "/x"))),
        [],
        ["/ext: cannot be opened"],
    ),
    "deeply nested folds": (_folds("[" * 100_000 + "]" * 100_000), [], ["not a JSON file (maximum recursion"]),
    "video twice in one fold": (
        _folds(json.dumps({"train": ["v1", "v1"], "valid": ["v2"], "test": ["v3"]})),
        [],
        ["train: video 'v1' is listed twice"],
    ),
    "empty fold": (
        _folds(json.dumps({"train": ["v1"], "valid": [], "test": ["v3"]})),
        [],
        ["valid: expected a non-empty list of video ids"],
    ),
    "no fold video in the data": (
        _rewrite("audio", lambda v: v.pop("v2")),
        ["--allow-missing"],
        ["COVAREP/data/v2: missing; no valid video of the", "so valid would be empty"],
    ),
    "no label row with words": (
        _rewrite("labels", lambda v: v.update(v2=(v["v2"][0], v["v2"][1] + 100))),
        [],
        ["All Labels/data: no label row of the 1 valid videos overlaps a word, so valid would be empty"],
    ),
    "non-finite label": (_labels(lambda y: y.__setitem__((1, 0), np.nan)), [], ["sentiment nan at row 1"]),
    "sentiment out of range": (_labels(lambda y: y.__setitem__((0, 0), 3.5)), [], ["sentiment 3.5 at row 0"]),
    "emotion out of range": (_labels(lambda y: y.__setitem__((0, 3), -1)), [], ["anger -1 at row 0 is not a finite"]),
    "too few emotion columns": (
        _rewrite("labels", lambda v: v.update({k: (f[:, :4], t) for k, (f, t) in v.items()})),
        ["--dataset", "mosei"],
        ["All Labels/data: 4 label columns, but mosei labels have 7"],
    ),
    "unknown label layout": (
        _rewrite("labels", lambda v: v.update({k: (f[:, :4], t) for k, (f, t) in v.items()})),
        [],
        ["4 label columns; expected 1 (MOSI: sentiment) or 7"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_fails_in_one_line_naming_file_and_field(runner, tmp_path, case):
    make, extra, fragments = BAD_INPUT[case]
    files, out = dataset(tmp_path), tmp_path / "out.h5"
    path = make(files)
    assert_fails_cleanly(runner.invoke(app, args(files, out, *extra)), str(path), *fragments, out=out)


def test_a_seq_len_too_long_for_memory_is_refused_before_allocating(runner, tmp_path):
    files, out = dataset(tmp_path), tmp_path / "out.h5"
    result = runner.invoke(app, args(files, out, "--seq-len", str(10**15)))
    assert_fails_cleanly(
        result,
        f"--seq-len {10**15}: the features (6 segments × {10**15} steps × 4 float32 values) would not fit",
        "--seq-len can be at most",
        out=out,
        code=2,
    )


def test_an_existing_output_is_refused_without_force(runner, tmp_path):
    files, out = dataset(tmp_path), tmp_path / "out.h5"
    out.write_text("keep me")
    assert_fails_cleanly(runner.invoke(app, args(files, out)), str(out), "already exists")
    assert out.read_text() == "keep me"
    assert runner.invoke(app, args(files, out, "--force")).exit_code == 0
