"""Atomic file replacement: every file mmolre writes appears whole or not at all."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mmolre_cli.errors import DataError


class WriteError(DataError):
    """A file that could not be written (disk full, no permission); the message names the file."""


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; when the block succeeds it is fsynced and renamed
    onto ``path``, and on any error (or a kill before the rename) ``path`` keeps its old content.

    An OSError, in the block or in creating, syncing or renaming the temporary, becomes a WriteError
    naming ``path``; the temporary is removed either way.
    """
    temporary = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(handle)
        yield Path(temporary)
        with open(temporary, "rb+") as file:
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except OSError as error:
        reason = os.strerror(error.errno) if error.errno else str(error) or type(error).__name__
        raise WriteError(f"{path}: cannot write: {reason}") from None
    finally:
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)


def remove_temporaries(directory: Path) -> None:
    """Delete the temporaries of :func:`atomic_path` that a process killed before its rename left in
    ``directory``; call it only where no other process is writing there."""
    for temporary in directory.glob(f".*.{'?' * 8}.tmp"):  # mkstemp's names: .NAME.XXXXXXXX.tmp
        temporary.unlink(missing_ok=True)


def save_figure(figure, path: Path, dpi: int) -> None:
    """A matplotlib figure written through ``atomic_path``, in the format ``path``'s suffix names."""
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format=path.suffix.lstrip(".") or "png", dpi=dpi)
