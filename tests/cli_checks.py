"""Running ``mmolre`` the way its console script does, and the checks every failing command must pass."""

from __future__ import annotations

import hashlib
import io
import os
import sys
from collections.abc import Sequence
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

#: Files up to this size are compared by content as well as by size, inode and modification time.
HASHED_BYTES = 1 << 20


@dataclass
class Run:
    """What one ``mmolre`` call left: its exit code, its streams, and an exception that escaped it."""

    exit_code: int
    stdout: str
    stderr: str
    exception: BaseException | None = None

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_main(args: Sequence[str]) -> Run:
    """``mmolre ARGS`` through the console script's own ``main()``, in this process."""
    from mmolre_cli.cli.app import main

    stdout, stderr, argv = io.StringIO(), io.StringIO(), sys.argv
    sys.argv = ["mmolre", *args]
    try:
        with redirect_stdout(stdout), redirect_stderr(stderr):
            main()
    except SystemExit as exit:
        code = exit.code if isinstance(exit.code, int) else 0 if exit.code is None else 1
        return Run(code, stdout.getvalue(), stderr.getvalue(), exit if code else None)
    except Exception as error:  # what would reach the user as a traceback
        return Run(1, stdout.getvalue(), stderr.getvalue(), error)
    finally:
        sys.argv = argv
    return Run(0, stdout.getvalue(), stderr.getvalue())


def snapshot(*roots: Path) -> dict[str, tuple]:
    """Every directory and file under ``roots``, hidden ones included: files with size, inode, mtime and,
    up to HASHED_BYTES, a SHA-256 of their content."""
    entries: dict[str, tuple] = {}
    for root in roots:
        for directory, _, files in os.walk(root):
            entries[directory] = ("dir",)
            for name in files:
                path = Path(directory, name)
                stat = path.stat()
                digest = hashlib.sha256(path.read_bytes()).hexdigest() if stat.st_size <= HASHED_BYTES else None
                entries[str(path)] = (stat.st_size, stat.st_ino, stat.st_mtime_ns, digest)
    return entries


def assert_fails_cleanly(result, *fragments: str, out: Path | None = None, code: int | None = None) -> None:
    """A non-zero exit (``code`` when given) with one ``Error:`` line holding every fragment, no traceback,
    and no ``out`` left."""
    assert result.exit_code != 0, result.output
    if code is not None:
        assert result.exit_code == code, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    if out is not None:
        assert not out.exists()
        assert not list(out.parent.glob(f".{out.name}.*")), "a temporary file was left behind"
