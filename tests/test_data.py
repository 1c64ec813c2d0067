"""The canonical HDF5 file (write, read, validation errors) and the synthetic source."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
from cli_checks import assert_fails_cleanly
from typer.testing import CliRunner

from mmolre_cli import __version__
from mmolre_cli.cli.app import app
from mmolre_cli.data import (
    FORMAT,
    MOSEI_EMOTIONS,
    SPLITS,
    CanonicalData,
    builtin_dataset_path,
    canonical,
    generate_synthetic,
    read_canonical,
    summarize,
    synthetic,
    validate,
    write_canonical,
)
from mmolre_cli.data.shapes import read_shapes
from mmolre_cli.data.synthetic import BUILTIN_LIKE, BUILTIN_SEED
from mmolre_cli.errors import DataError, UsageError

TARGET_PREVALENCE = {"happy": 0.54, "sad": 0.25, "anger": 0.21, "surprise": 0.10, "disgust": 0.17, "fear": 0.08}


def small(seed: int = 0) -> CanonicalData:
    data = generate_synthetic("mosei", scale=0.002, seed=seed, seq_len=12)
    for split in data.splits.values():
        split.raw_text = np.char.add("words of ", split.ids)
    return data


@pytest.fixture
def good_file(tmp_path: Path) -> Path:
    return write_canonical(small(), tmp_path / "data.h5")


def assert_same(a: CanonicalData, b: CanonicalData) -> None:
    assert (a.dataset, a.source, a.modalities, a.emotions, a.options, a.created_by) == (
        b.dataset,
        b.source,
        b.modalities,
        b.emotions,
        b.options,
        b.created_by,
    )
    assert list(a.splits) == list(b.splits)
    for name in a.splits:
        x, y = a.splits[name], b.splits[name]
        np.testing.assert_array_equal(x.ids, y.ids)
        np.testing.assert_array_equal(x.raw_text, y.raw_text)
        np.testing.assert_array_equal(x.sentiment, y.sentiment)
        np.testing.assert_array_equal(x.emotion, y.emotion)
        for m in a.modalities:
            np.testing.assert_array_equal(x.features[m], y.features[m])
            np.testing.assert_array_equal(x.lengths[m], y.lengths[m])
            assert x.features[m].dtype == y.features[m].dtype and x.lengths[m].dtype == y.lengths[m].dtype


# --- canonical file ---------------------------------------------------------------------------


def test_round_trip(tmp_path: Path) -> None:
    data = small()
    path = write_canonical(data, tmp_path / "data.h5")
    back = read_canonical(path)
    assert_same(data, back)
    assert back.created_by == f"mmolre {__version__}"
    assert back.feature_dims() == {"text": 768, "audio": 74, "vision": 35}
    with h5py.File(path) as f:
        assert f.attrs["format"] == FORMAT
        assert json.loads(f.attrs["modalities"]) == ["text", "audio", "vision"]
        assert json.loads(f.attrs["options"]) == {
            "like": "mosei",
            "scale": 0.002,
            "seed": 0,
            "seq_len": 12,
            "emotion_labels": synthetic.EMOTION_LABELS,
            "generator": synthetic.GENERATOR,
        }
        assert f["train/features/text"].chunks is not None and f["train/features/text"].compression is None
    assert list(tmp_path.iterdir()) == [path]


def test_read_some_splits(good_file: Path) -> None:
    assert list(read_canonical(good_file, splits=["test"]).splits) == ["test"]
    with pytest.raises(UsageError, match="splits"):
        read_canonical(good_file, splits=["dev"])


def test_same_seed_gives_identical_bytes(tmp_path: Path) -> None:
    a = write_canonical(generate_synthetic("mosi", 0.005, seed=3), tmp_path / "a.h5")
    b = write_canonical(generate_synthetic("mosi", 0.005, seed=3), tmp_path / "b.h5")
    assert a.read_bytes() == b.read_bytes()


def test_failed_validation_writes_nothing(tmp_path: Path) -> None:
    data = small()
    data.splits["valid"].features["audio"] = data.splits["valid"].features["audio"].astype(np.float64)
    message = r"out\.h5: valid/features/audio: expected float32 \(N, T, D\), got float64"
    with pytest.raises(DataError, match=message):
        write_canonical(data, tmp_path / "out.h5")
    assert list(tmp_path.iterdir()) == []


def test_failed_write_leaves_no_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(canonical, "_write_split", fail)
    with pytest.raises(DataError, match="out.h5: cannot write: No space left on device"):
        write_canonical(small(), tmp_path / "out.h5")
    assert list(tmp_path.iterdir()) == []


def test_refuses_existing_path_unless_forced(good_file: Path) -> None:
    before = good_file.read_bytes()
    with pytest.raises(DataError, match="data.h5: already exists"):
        write_canonical(small(seed=1), good_file)
    assert good_file.read_bytes() == before
    write_canonical(small(seed=1), good_file, force=True)
    assert_same(read_canonical(good_file), small(seed=1))


def replace(f: h5py.File, name: str, value: np.ndarray) -> None:
    del f[name]
    f[name] = value


def shrink_split(f: h5py.File, split: str, n: int) -> None:
    def visit(name: str, obj: object) -> None:
        if isinstance(obj, h5py.Dataset):
            names.append(name)

    names: list[str] = []
    f[split].visititems(visit)
    for name in names:
        ds = f[split][name]
        data, dtype = ds[:n], ds.dtype
        del f[split][name]
        f[split].create_dataset(name, data=data, dtype=dtype)


def pad_with_ones(f: h5py.File, name: str) -> None:
    split = name.split("/")[0]
    short = int(np.argmax(f[f"{split}/lengths/text"][()] < f[name].shape[1]))
    f[name][short, -1, :] = 1.0


def set_item(name: str, index: tuple, value: float) -> Callable[[h5py.File], None]:
    def mutate(f: h5py.File) -> None:
        f[name][index] = value

    return mutate


def set_id(split: str, index: int, value: Callable[[h5py.File], bytes]) -> Callable[[h5py.File], None]:
    """Set one id to ``value(f)``, raw bytes that need not be UTF-8."""

    def mutate(f: h5py.File) -> None:
        ids = f[f"{split}/ids"][()]
        ids[index] = value(f)
        del f[f"{split}/ids"]
        f.create_dataset(f"{split}/ids", data=ids, dtype=h5py.string_dtype())

    return mutate


def no_steps_or_dims(name: str, axis: int) -> Callable[[h5py.File], None]:
    def mutate(f: h5py.File) -> None:
        replace(f, name, np.delete(f[name][()], np.s_[:], axis=axis))

    return mutate


BAD_FILES = {
    "missing split": (lambda f: f.__delitem__("test"), "data.h5: test: missing split"),
    "missing dataset": (
        lambda f: f.__delitem__("valid/lengths/audio"),
        "data.h5: valid/lengths/audio: missing dataset",
    ),
    "wrong format": (lambda f: f.attrs.__setitem__("format", "other/2"), "data.h5: /format: expected"),
    "missing format": (lambda f: f.attrs.__delitem__("format"), "data.h5: /format: missing"),
    "wrong dtype": (
        lambda f: replace(f, "train/features/audio", np.zeros((4, 12), np.int64)),
        r"data.h5: train/features/audio: expected float32 \(N, T, D\), got int64 \(4, 12\)",
    ),
    "mismatched first dims": (
        lambda f: replace(f, "train/labels/sentiment", np.zeros(3, np.float32)),
        "data.h5: train/labels/sentiment: 3 samples, but ids has",
    ),
    "feature dims differ": (
        lambda f: replace(f, "test/features/vision", np.zeros((len(f["test/ids"]), 12, 7), np.float32)),
        "data.h5: test/features/vision: feature dim 7 differs from train's 35",
    ),
    "inf in features": (
        set_item("train/features/audio", (1, 0, 0), np.inf),
        "data.h5: train/features/audio: non-finite value at sample 1",
    ),
    "nan in features": (
        set_item("valid/features/text", (2, 0, 3), np.nan),
        "data.h5: valid/features/text: non-finite value at sample 2",
    ),
    "non-zero padding": (
        lambda f: pad_with_ones(f, "train/features/vision"),
        r"data.h5: train/features/vision: non-zero value after the length of sample \d+",
    ),
    "length too long": (set_item("train/lengths/text", 4, 13), r"data.h5: train/lengths/text: .*\[0, 12\]"),
    "sentiment out of range": (
        set_item("train/labels/sentiment", 5, 3.5),
        r"data.h5: train/labels/sentiment: value 3.5 outside \[-3, 3\] at sample 5",
    ),
    "infinite sentiment": (
        set_item("test/labels/sentiment", 0, -np.inf),
        "data.h5: test/labels/sentiment: infinite value at sample 0",
    ),
    "negative emotion": (
        set_item("test/labels/emotion", (1, 2), -1.0),
        r"data.h5: test/labels/emotion: value -1 outside \[0, 3\] at sample 1",
    ),
    "empty split": (lambda f: shrink_split(f, "valid", 0), "data.h5: valid: empty split"),
    "ids not strings": (lambda f: replace(f, "test/ids", np.arange(10)), "data.h5: test/ids: expected strings"),
    "zero time steps": (no_steps_or_dims("train/features/audio", 1), "data.h5: train/features/audio: zero time steps"),
    "zero feature dimensions": (
        no_steps_or_dims("valid/features/vision", 2),
        "data.h5: valid/features/vision: zero feature dimensions",
    ),
    "id not UTF-8": (set_id("test", 1, lambda f: b"v\xff$_$0"), "data.h5: test/ids: sample 1 is not valid UTF-8 text"),
    "same id twice in a split": (
        set_id("valid", 2, lambda f: f["valid/ids"][0]),
        r"data.h5: valid/ids: '[^']+' appears twice \(samples 0 and 2\)",
    ),
    "id in two splits": (
        set_id("test", 0, lambda f: f["train/ids"][3]),
        r"data.h5: test/ids: '[^']+' is also in train",
    ),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_bad_file(good_file: Path, case: str) -> None:
    mutate, message = BAD_FILES[case]
    with h5py.File(good_file, "r+") as f:
        mutate(f)
    with pytest.raises(DataError, match=message) as info:
        read_canonical(good_file)
    assert "\n" not in str(info.value)


def test_nan_sentiment_means_unknown(good_file: Path) -> None:
    with h5py.File(good_file, "r+") as f:
        f["train/labels/sentiment"][0] = np.nan
    data = read_canonical(good_file)
    assert np.isnan(data.splits["train"].sentiment[0])
    assert summarize(data)["splits"]["train"]["sentiment"]["known"] < 1


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nope.h5: file not found"):
        read_canonical(tmp_path / "nope.h5")


def test_not_hdf5(tmp_path: Path) -> None:
    path = tmp_path / "data.h5"
    path.write_text("id,label\n1,0.5\n")
    with pytest.raises(DataError, match="data.h5: not an HDF5 file"):
        read_canonical(path)


def test_truncated_file(good_file: Path) -> None:
    good_file.write_bytes(good_file.read_bytes()[: good_file.stat().st_size // 2])
    with pytest.raises(DataError, match="data.h5: unreadable HDF5 file") as info:
        read_canonical(good_file)
    assert "\n" not in str(info.value)


def test_validate_in_memory() -> None:
    data = small()
    data.splits["train"].emotion = data.splits["train"].emotion[:, :5]
    with pytest.raises(DataError, match=r"mem: train/labels/emotion: 5 columns, but emotions lists 6"):
        validate(data, source="mem")
    data = small()
    data.splits["test"].features["depth"] = data.splits["test"].features["audio"]
    with pytest.raises(DataError, match="mem: test/features/depth: modality not listed"):
        validate(data, source="mem")


def nul_id(data: CanonicalData) -> None:
    data.splits["train"].ids[0] = "a\x00b$_$1"


def surrogate_text(data: CanonicalData) -> None:
    data.splits["valid"].raw_text = data.splits["valid"].raw_text.astype(object)
    data.splits["valid"].raw_text[2] = "caf\udce9"


def valid_ids_from_train(data: CanonicalData) -> None:
    data.splits["valid"].ids = data.splits["train"].ids[: data.splits["valid"].size].copy()


WRITE_ERRORS = {
    "NUL in an id": (nul_id, "train/ids: sample 0 holds a NUL character"),
    "lone surrogate in raw_text": (surrogate_text, "valid/raw_text: sample 2 is not valid UTF-8 text"),
    "valid ids copied from train": (valid_ids_from_train, "valid/ids: 'synthetic_mosei_00000$_$0' is also in train"),
}


@pytest.mark.parametrize("case", WRITE_ERRORS)
def test_write_refuses_ids_and_text_it_cannot_store_or_that_repeat(tmp_path: Path, case: str) -> None:
    mutate, message = WRITE_ERRORS[case]
    data = small()
    mutate(data)
    out = tmp_path / "new" / "out.h5"
    with pytest.raises(DataError) as info:
        write_canonical(data, out)
    assert str(info.value) == f"{out}: {message}"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("axis,message", [(1, "zero time steps"), (2, "zero feature dimensions")])
def test_commands_refuse_features_without_steps_or_dims(good_file: Path, axis: int, message: str) -> None:
    with h5py.File(good_file, "r+") as f:
        no_steps_or_dims("train/features/audio", axis)(f)
    expected = f"{good_file}: train/features/audio: {message}"
    with pytest.raises(DataError) as info:
        read_shapes(good_file)  # what profile and train --seeds read before the features
    assert str(info.value) == expected
    run = good_file.parent / "run"
    result = CliRunner().invoke(app, ["train", "--data", str(good_file), "--seeds", "1,2", "--out", str(run)])
    assert_fails_cleanly(result, expected)
    assert not run.exists()


def test_summarize() -> None:
    data = small()
    summary = summarize(data)
    train = summary["splits"]["train"]
    assert train["size"] == data.splits["train"].size
    assert train["features"]["audio"] == [train["size"], 12, 74]
    assert -3 <= train["sentiment"]["min"] <= train["sentiment"]["mean"] <= train["sentiment"]["max"] <= 3
    assert set(train["emotion"]["prevalence"]) == set(MOSEI_EMOTIONS)
    assert train["sentiment"]["known"] == 1.0
    assert train["emotion"]["known"] == pytest.approx(synthetic.EMOTION_LABELS, abs=0.02)
    assert summary["splits"]["test"]["emotion"]["known"] == 1.0
    json.dumps(summary)
    mosi = summarize(generate_synthetic("mosi", 0.005, seq_len=4))["splits"]["test"]["emotion"]
    assert mosi["known"] == 0 and mosi["prevalence"]["happy"] is None


# --- synthetic source -------------------------------------------------------------------------


def test_synthetic_is_deterministic() -> None:
    a, b, c = (generate_synthetic("mosei", 0.003, seed=s, seq_len=20) for s in (7, 7, 8))
    assert_same(a, b)
    assert not np.array_equal(a.splits["train"].features["text"], c.splits["train"].features["text"])
    assert not np.array_equal(a.splits["train"].sentiment, c.splits["train"].sentiment)


#: SHA-256 of what ``generate_synthetic("mosei", 0.01, seed=0)`` returns (``content_sha256``): the built-in dataset's
#: generator at a small scale. A change here changes every number measured on the built-in dataset: bump GENERATOR.
BUILTIN_SMALL_SHA256 = "8e76d8590abe1ef089e1e19cba389228dfaa878a4b52b198f8add3733fddd250"


def content_sha256(data) -> str:
    """SHA-256 over every split's ids, labels, lengths and features: their dtypes, shapes and bytes, in order."""
    digest = hashlib.sha256()
    for name, split in data.splits.items():
        arrays = [("ids", split.ids), ("sentiment", split.sentiment), ("emotion", split.emotion)]
        arrays += sorted(split.features.items()) + [(f"len-{m}", v) for m, v in sorted(split.lengths.items())]
        for key, array in arrays:
            array = np.ascontiguousarray(array)
            digest.update(f"{name}/{key}:{array.dtype.str}:{array.shape}".encode())
            digest.update(repr(array.tolist()).encode() if array.dtype == object else array.tobytes())
    return digest.hexdigest()


def test_the_built_in_generator_gives_the_bits_committed_here() -> None:
    """The generator sums its products in a fixed order, so no BLAS kernel, CPU or thread count changes a bit."""
    assert content_sha256(generate_synthetic(BUILTIN_LIKE, 0.01, seed=BUILTIN_SEED)) == BUILTIN_SMALL_SHA256


@pytest.mark.parametrize(
    ("like", "dims", "sizes"),
    [
        ("mosi", {"text": 768, "audio": 5, "vision": 20}, (1284, 229, 686)),
        ("mosei", {"text": 768, "audio": 74, "vision": 35}, (16326, 1871, 4659)),
    ],
)
def test_synthetic_shapes(like: str, dims: dict[str, int], sizes: tuple[int, ...]) -> None:
    data = generate_synthetic(like, scale=0.01, seed=1)
    assert data.source == "synthetic" and data.modalities == list(dims)
    assert data.emotions == list(MOSEI_EMOTIONS)
    assert data.options == {
        "like": like,
        "scale": 0.01,
        "seed": 1,
        "seq_len": 50,
        "emotion_labels": synthetic.EMOTION_LABELS,
        "generator": synthetic.GENERATOR,
    }
    validate(data, source="generated")
    ids = np.concatenate([s.ids for s in data.splits.values()])
    assert ids[0] == f"synthetic_{like}_00000$_$0" and len(set(ids)) == len(ids)
    for name, n in zip(SPLITS, sizes, strict=True):
        split = data.splits[name]
        assert split.size == max(8, round(n * 0.01))
        for m, d in dims.items():
            assert split.features[m].shape == (split.size, 50, d)
            assert split.features[m].dtype == np.float32
        # Aligned: one length per clip for every modality.
        assert all(np.array_equal(split.lengths[m], split.lengths["text"]) for m in dims)
        assert split.lengths["text"].min() >= 10
        assert split.emotion.shape == (split.size, 6)


def test_padding_is_zero_and_valid_steps_are_not() -> None:
    split = generate_synthetic("mosei", 0.003, seed=2, seq_len=30).splits["train"]
    valid = np.arange(30)[None, :] < split.lengths["audio"][:, None]
    for x in split.features.values():
        assert not x[~valid].any()
        assert (np.abs(x[valid]).sum(axis=1) > 0).all()


def test_mosi_has_no_emotions() -> None:
    data = generate_synthetic("mosi", 0.01, seq_len=8)
    assert all(np.isnan(s.emotion).all() for s in data.splits.values())
    assert all(not np.isnan(s.sentiment).any() for s in data.splits.values())


def test_synthetic_options_are_checked() -> None:
    with pytest.raises(UsageError, match="--like: unknown value 'iemocap' \\(valid: mosi, mosei\\)"):
        generate_synthetic("iemocap")
    with pytest.raises(UsageError, match="--scale"):
        generate_synthetic("mosi", scale=0)
    with pytest.raises(UsageError, match="--seq-len"):
        generate_synthetic("mosi", seq_len=0)
    for fraction in (0, 1.5):
        with pytest.raises(UsageError, match=r"--emotion-labels: must be a fraction in \(0, 1\]"):
            generate_synthetic("mosei", 0.001, emotion_labels=fraction)


@pytest.mark.parametrize(
    "arguments,fragments",
    [
        (["--scale", "inf"], ["--scale: must be a positive finite number, got inf"]),
        (["--scale", "nan"], ["--scale: must be a positive finite number, got nan"]),
        (["--scale", "1e30"], ["--scale 1e+30, --seq-len 50: the features", "memory", "lower --scale"]),
        (
            ["--scale", "0.1", "--seq-len", "100000000000"],
            ["--scale 0.1, --seq-len 100000000000: the features (2286 clips × 100000000000 steps × 877 float32 values) "
             "would not fit in this machine's memory", "--seq-len can be at most"],
        ),
    ],
)  # fmt: skip
def test_cli_synthetic_sizes_are_checked(tmp_path: Path, arguments: list[str], fragments: list[str]) -> None:
    out = tmp_path / "p.h5"
    result = CliRunner().invoke(app, ["prepare", "synthetic", "--out", str(out), *arguments])
    assert_fails_cleanly(result, *fragments, out=out, code=2)


@pytest.fixture(scope="module")
def large() -> tuple[CanonicalData, np.ndarray]:
    # Labels do not depend on seq_len, and seq_len 1 keeps the features tiny.
    return synthetic._generate("mosei", 0.3, 0, 1)


def test_sentiment_labels(large: tuple[CanonicalData, np.ndarray]) -> None:
    sentiment = np.concatenate([s.sentiment for s in large[0].splits.values()])
    assert sentiment.min() >= -3 and sentiment.max() <= 3
    np.testing.assert_allclose(sentiment * 3, np.round(sentiment * 3), atol=1e-5)
    assert 0.03 < (sentiment == 0).mean() < 0.15
    assert 1.3 < sentiment.std() < 1.6


def test_only_a_fraction_of_training_clips_keep_emotion_labels(large: tuple[CanonicalData, np.ndarray]) -> None:
    splits = large[0].splits
    labelled = ~np.isnan(splits["train"].emotion)
    # A clip keeps all its emotion labels or none.
    assert np.array_equal(labelled.all(axis=1), labelled.any(axis=1))
    assert abs(labelled[:, 0].mean() - synthetic.EMOTION_LABELS) < 0.01
    assert not np.isnan(splits["valid"].emotion).any() and not np.isnan(splits["test"].emotion).any()
    every = synthetic._generate("mosei", 0.3, 0, 1, emotion_labels=1.0)[0].splits["train"]
    assert not np.isnan(every.emotion).any()
    # Only the labels differ: the same clips, features and kept labels.
    np.testing.assert_array_equal(every.features["audio"], splits["train"].features["audio"])
    np.testing.assert_array_equal(every.emotion[labelled], splits["train"].emotion[labelled])


def test_emotion_prevalences(large: tuple[CanonicalData, np.ndarray]) -> None:
    for split in large[0].splits.values():
        emotion = split.emotion[~np.isnan(split.emotion[:, 0])]
        assert emotion.min() >= 0 and emotion.max() <= 3
        for c, name in enumerate(MOSEI_EMOTIONS):
            assert abs((emotion[:, c] > 0).mean() - TARGET_PREVALENCE[name]) < 0.05, (name, split.size)


def test_tasks_share_and_conflict(large: tuple[CanonicalData, np.ndarray]) -> None:
    data, factors = large
    sentiment = np.concatenate([s.sentiment for s in data.splits.values()])
    emotion = np.concatenate([s.emotion for s in data.splits.values()])
    labelled = ~np.isnan(emotion[:, 0])
    sentiment, emotion, factors = sentiment[labelled], emotion[labelled], factors[labelled]
    happy, sad = emotion[:, MOSEI_EMOTIONS.index("happy")], emotion[:, MOSEI_EMOTIONS.index("sad")]
    irony = factors[:, synthetic.FACTORS.index("irony")]
    valence = factors[:, synthetic.FACTORS.index("valence")]

    def corr(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.corrcoef(a, b)[0, 1])

    assert corr(sentiment, happy) > 0.1 and corr(sentiment, sad) < -0.1
    assert corr(valence, sentiment) > 0.3 and corr(valence, happy) > 0.3
    assert corr(irony, sentiment) > 0.2 and corr(irony, happy) < -0.2 and corr(irony, sad) > 0.2
    # An intensity moves the labels through its magnitude alone.
    tension = factors[:, synthetic.FACTORS.index("tension")]
    assert corr(np.abs(tension), sentiment) < -0.2 and corr(np.abs(tension), sad) > 0.2
    assert abs(corr(tension, sentiment)) < 0.05 and abs(corr(tension, sad)) < 0.05


def test_builtin_dataset_is_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(synthetic, "BUILTIN_SCALE", 0.002)
    monkeypatch.setenv("MMOLRE_CACHE_DIR", str(tmp_path / "cache"))
    path = builtin_dataset_path()
    assert path == tmp_path / "cache" / "synthetic-mosei-s0.002-seed0.h5"
    assert read_canonical(path).options["seed"] == 0

    def boom(*args: object) -> None:
        raise AssertionError("regenerated a usable cache")

    monkeypatch.setattr(synthetic, "generate_synthetic", boom)
    assert builtin_dataset_path() == path
    monkeypatch.undo()
    monkeypatch.setattr(synthetic, "BUILTIN_SCALE", 0.002)
    path.write_bytes(b"garbage")
    assert builtin_dataset_path(tmp_path / "cache") == path
    read_canonical(path)
    # A file of an earlier generator or emotion-label fraction, same options otherwise, is regenerated.
    for option, earlier in (("generator", synthetic.GENERATOR - 1), ("emotion_labels", 0.3)):
        with h5py.File(path, "r+") as f:
            f.attrs["options"] = json.dumps({**json.loads(f.attrs["options"]), option: earlier})
        builtin_dataset_path(tmp_path / "cache")
        assert read_canonical(path).options == generate_synthetic("mosei", 0.002, 0).options, option
