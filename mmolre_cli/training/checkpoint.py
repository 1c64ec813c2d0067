"""Checkpoints: written atomically, read with ``weights_only=True`` so a file can never run code.

A run directory holds two: ``checkpoint.pt``, the one selected on the validation split (weights, config,
MER thresholds), and ``last.pt``, everything needed to resume after the last finished epoch.
"""

from __future__ import annotations

import io
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmolre_cli.atomic import atomic_path
from mmolre_cli.errors import CheckpointError

FORMAT = "mmolre-checkpoint/1"
CHECKPOINT_NAME = "checkpoint.pt"
LAST_NAME = "last.pt"


def atomic_save(payload: dict[str, Any], path: Path) -> None:
    """Write to a temporary file beside ``path``, fsync, then rename: a crash leaves the old file intact.

    The payload is serialised in memory first: ``torch.save`` reports a failed file write as a bare
    RuntimeError, while a plain write raises the OSError that says why (disk full, no permission).
    """
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    with atomic_path(path) as temporary:
        temporary.write_bytes(buffer.getbuffer())


def find_checkpoint(run_or_checkpoint: Path) -> Path:
    """The checkpoint file of a run directory, or the file itself."""
    path = Path(run_or_checkpoint)
    if path.is_dir():
        if not (path / CHECKPOINT_NAME).is_file() and (path / "runs").is_dir():
            raise CheckpointError(f"{path}: an ablation directory holds no model of its own; eval {path / 'runs'}/NAME")
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint found (expected a run directory or a .pt file)")
    return path


def load_checkpoint(run_or_checkpoint: Path) -> dict[str, Any]:
    """The checkpoint's payload; refuses files that are not mmolre checkpoints or need arbitrary code."""
    path = find_checkpoint(run_or_checkpoint)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # torch names what it refused on a line of its own, after advice we do not want to pass on.
        refused = next((line.strip() for line in str(error).splitlines() if "GLOBAL" in line), None)
        if refused is None:
            raise CheckpointError(f"{path}: not a readable checkpoint (not a torch archive)") from None
        raise CheckpointError(f"{path}: refused to load: it would run code ({refused.rstrip('.')})") from None
    except Exception as error:  # torch reports a damaged archive in many ways (KeyError, RuntimeError, EOFError…)
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(error).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an mmolre checkpoint (missing format {FORMAT!r})")
    return payload


def rng_state(shuffle: torch.Generator) -> dict[str, Any]:
    """Every random state training draws from, as tensors and plain values ``weights_only`` can load."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "shuffle": shuffle.get_state(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, gauss],
        "python": [version, torch.tensor(internal, dtype=torch.int64), gauss_next],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any], shuffle: torch.Generator) -> None:
    """Restore what :func:`rng_state` captured."""
    torch.set_rng_state(state["torch"])
    shuffle.set_state(state["shuffle"])
    kind, keys, position, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal.tolist()), gauss_next))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
