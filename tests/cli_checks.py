"""Assertions shared by the data-source tests."""

from __future__ import annotations

from pathlib import Path


def assert_fails_cleanly(result, *fragments: str, out: Path | None = None) -> None:
    """A non-zero exit with one ``Error:`` line holding every fragment, no traceback, and no ``out`` left."""
    assert result.exit_code != 0, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    if out is not None:
        assert not out.exists()
        assert not list(out.parent.glob(f".{out.name}.*")), "a temporary file was left behind"
