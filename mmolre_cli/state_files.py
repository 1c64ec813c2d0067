"""Reading back the JSON files mmolre writes into run and ablation directories, with one-line errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mmolre_cli.errors import CheckpointError


def read_json(path: Path, required: tuple[str, ...] = ()) -> dict[str, Any]:
    """The JSON object in ``path`` holding every key in ``required``, or a CheckpointError naming the file."""
    try:
        values = json.loads(path.read_text())
    except OSError as error:
        raise CheckpointError(f"{path}: cannot read ({error.strerror or error})") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(f"{path}: damaged (not valid JSON)") from None
    if not isinstance(values, dict):
        raise CheckpointError(f"{path}: damaged (expected a JSON object, got {type(values).__name__})")
    missing = [key for key in required if key not in values]
    if missing:
        raise CheckpointError(f"{path}: damaged (no {missing[0]!r})")
    return values
