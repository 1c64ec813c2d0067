"""Atomic replacement, the one mechanism behind every file mmolre writes."""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

import pytest

from mmolre_cli.atomic import WriteError, atomic_path, remove_temporaries, save_figure
from mmolre_cli.config import RunConfig, save_yaml


def test_success_replaces_the_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "out" / "file.txt"
    with atomic_path(target) as temporary:
        temporary.write_text("new")
        assert not target.exists()
    assert target.read_text() == "new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["file.txt"]


def test_an_error_keeps_the_old_content_and_removes_the_temporary(tmp_path):
    target = tmp_path / "file.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as temporary:
        temporary.write_text("half")
        raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]


def test_remove_temporaries_deletes_what_a_killed_write_left_and_nothing_else(tmp_path):
    # What atomic_path's temporary is called, as a kill before its rename leaves it.
    handle, left = tempfile.mkstemp(prefix=".last.pt.", suffix=".tmp", dir=tmp_path)
    os.close(handle)
    kept = [".notes.tmp", "draft.tmp", ".a.b.tmp", "last.pt"]
    for name in kept:
        (tmp_path / name).write_text("mine")
    remove_temporaries(tmp_path)
    assert not Path(left).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept)


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_failed_config_or_plot_write_names_the_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    config, plot = tmp_path / "config.yaml", tmp_path / "plot.png"
    config.write_text("old")
    plot.write_bytes(b"old")
    monkeypatch.setattr(Path, "write_text", _disk_full)
    with pytest.raises(WriteError, match=f"{config}: cannot write: No space left on device"):
        save_yaml(RunConfig(), config)
    figure = Figure()
    FigureCanvasAgg(figure)
    monkeypatch.setattr(figure, "savefig", _disk_full)
    with pytest.raises(WriteError, match=f"{plot}: cannot write: No space left on device"):
        save_figure(figure, plot, dpi=50)
    assert config.read_text() == "old" and plot.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml", "plot.png"]
