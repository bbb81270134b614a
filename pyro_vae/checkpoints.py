"""Checkpoint files: atomic writes, safe loads, and the random-number state.

A checkpoint is a dict of plain data (tensors, numbers, strings, lists, dicts)
saved with ``torch.save``. It is written to a temporary file in the same folder,
flushed to disk and renamed into place, so a crash leaves either the old file or
the new one, never half of one. It is read with ``torch.load(weights_only=True)``,
which refuses to build arbitrary Python objects: a checkpoint cannot run code.
"""

from __future__ import annotations

import os
import pickle
import random
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["FORMAT", "save", "load", "get_rng_state", "set_rng_state"]

FORMAT = "pyro_vae/checkpoint-v1"


def save(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Writes ``state`` to ``path`` atomically and returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": FORMAT, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load(path: str | os.PathLike, map_location: str | torch.device | None = "cpu") -> dict:
    """Reads a checkpoint written by :func:`save`, without executing any code.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is truncated, corrupt, holds objects other than plain
            data, or is not a pyro_vae checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        with warnings.catch_warnings():
            # A foreign pickle draws a protocol warning before it is refused or rejected below.
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            state = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(
            f"cannot read checkpoint {path}: it is truncated, corrupt or holds objects "
            f"other than plain data ({reason})"
        ) from e
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path} is not a pyro_vae checkpoint (expected format {FORMAT!r})")
    return state


def get_rng_state() -> dict[str, Any]:
    """The states of Python's, NumPy's and torch's generators, as plain data."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restores the generators from :func:`get_rng_state`'s output."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
