"""Shared fixtures: a tiny synthetic dataset on disk and a fresh plugin registry."""

from __future__ import annotations

import pytest
import torch

from mmolre_cli.data.canonical import write_canonical
from mmolre_cli.data.synthetic import generate_synthetic
from mmolre_cli.model import DataSignature
from mmolre_cli.model.experts import ConvExpertBank
from mmolre_cli.plugins import build_registry, get_plugin_manager
from mmolre_cli.plugins.contracts import redraw_parameters

EMOTIONS = ["happy", "sad", "anger", "surprise", "disgust", "fear"]


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path_factory):
    """No test sees the user's cache, tracking server or plugin settings, or writes into the working directory
    (where a tracked run's MLflow store is by default)."""
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))
    monkeypatch.setenv("MMOLRE_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    for name in ("MMOLRE_LOAD_PLUGINS", "MMOLRE_PLUGINS_DIR", "MMOLRE_TRACE_PLUGINS"):
        monkeypatch.delenv(name, raising=False)
    torch.manual_seed(0)


@pytest.fixture
def fast_runs(monkeypatch):
    """One torch thread (tiny models; on a busy machine idle threads cost more than they give) and no
    per-run plots (the training tests cover them; elsewhere they would cost more than the training)."""
    monkeypatch.setattr("mmolre_cli.training.trainer.plot_history", lambda *args: None)
    monkeypatch.setattr("mmolre_cli.training.trainer.plot_routing", lambda *args: None)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """A small MOSEI-like file (a few hundred clips, sequences of 12 frames)."""
    path = tmp_path_factory.mktemp("data") / "tiny.h5"
    write_canonical(generate_synthetic(like="mosei", scale=0.01, seed=3, seq_len=12), path)
    return path


@pytest.fixture(scope="session")
def tiny_mosi(tmp_path_factory):
    """A small MOSI-like file: sentiment labels only."""
    path = tmp_path_factory.mktemp("data") / "mosi.h5"
    write_canonical(generate_synthetic(like="mosi", scale=0.05, seed=4, seq_len=12), path)
    return path


@pytest.fixture
def registry():
    return build_registry(*get_plugin_manager())


@pytest.fixture
def signature():
    return DataSignature({"text": 24, "audio": 5, "vision": 7}, EMOTIONS)


def with_random_experts(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """``model`` with its expert banks redrawn at random: their last layer starts at zero, so that as
    built the experts add nothing and the routes weigh nothing, and a test of either would pass vacuously."""
    generator = torch.Generator().manual_seed(seed)
    for bank in model.modules():
        if isinstance(bank, ConvExpertBank):
            redraw_parameters(bank, generator)
    return model


def random_inputs(signature: DataSignature, batch: int = 6, length: int = 10, seed: int = 0):
    """Random features and lengths (at least 2) with padded positions zeroed."""
    generator = torch.Generator().manual_seed(seed)
    features, lengths = {}, {}
    for modality, dim in signature.input_dims.items():
        lengths[modality] = torch.randint(2, length + 1, (batch,), generator=generator)
        x = torch.randn(batch, length, dim, generator=generator)
        valid = torch.arange(length)[None, :] < lengths[modality][:, None]
        features[modality] = x * valid[..., None]
    return features, lengths


def pytest_terminal_summary(terminalreporter):
    """Print how many cases of the bad-input corpus (tests/test_bad_input.py) ran, whenever any did."""
    ran = {
        report.nodeid
        for reports in terminalreporter.stats.values()
        for report in reports
        if hasattr(report, "when") and "test_bad_input.py::test_bad_input_fails_cleanly[" in report.nodeid
    }
    if ran:
        terminalreporter.write_line(f"bad-input corpus: {len(ran)} cases")
