"""Checkpoint files: atomic writes, safe loads, and the random-number state.

A checkpoint is a dict of plain data (tensors, numbers, strings, ``None``, and
lists, tuples and dicts of them) saved with :func:`torch.save`; :func:`save` refuses
anything else. It is written to a temporary file in the same folder, flushed and
fsynced, renamed into place, and the folder is fsynced: a crash or ``kill -9`` at
any moment leaves either the old file or the new one, never half of one.

It is read with ``torch.load(weights_only=True)``, which refuses to build
arbitrary Python objects, so a checkpoint cannot run code. The file also holds a
SHA-256 digest of its contents, checked on load: a truncated or edited file gets
a :class:`CheckpointError` instead of silently wrong parameters. The digest
detects corruption and accidental edits, not forgery (anyone can recompute it);
the protection against malicious files is that loading never executes code.
"""

from __future__ import annotations

import codecs
import hashlib
import os
import random
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pyro_vae._atomic import remove_stale_temporaries, write_atomically
from pyro_vae._checks import check_device

__all__ = [
    "FORMAT",
    "CheckpointError",
    "save",
    "load",
    "digest",
    "remove_stale_temporaries",
    "get_rng_state",
    "set_rng_state",
]

#: The format tag every checkpoint gets; :func:`load` also reads the older
#: ``pyro_vae/checkpoint-v1`` (no digest) and refuses any other.
FORMAT = "pyro_vae/checkpoint-v2"
_OLDER_FORMATS = ("pyro_vae/checkpoint-v1",)  # no digest


class CheckpointError(ValueError):
    """A file that is not a readable, intact pyro_vae checkpoint."""


def digest(state: Any) -> str:
    """SHA-256 of plain data: the type, shape and bytes of every value, keys in order.

    Raises:
        TypeError: ``state`` holds something other than plain data; the message
            gives the path to it, such as ``state['config']['fn']``.
    """
    h = hashlib.sha256()
    _feed(h, state, "state")
    return h.hexdigest()


def _feed(h: Any, value: Any, where: str) -> None:
    # One tag per type, and lengths before contents, so that different data cannot
    # produce the same byte stream.
    if value is None or type(value) in (bool, int, float, str, bytes):  # not NumPy scalars
        text = value if isinstance(value, bytes) else repr(value).encode()
        h.update(b"%s:%d:" % (type(value).__name__.encode(), len(text)) + text)
    elif isinstance(value, torch.Tensor):
        if value.layout != torch.strided:
            raise TypeError(f"{where} is a {value.layout} tensor; checkpoints hold dense ones")
        flat = value.detach().cpu().contiguous().reshape(-1)
        h.update(f"tensor:{value.dtype}:{tuple(value.shape)}:".encode())
        h.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")
    elif isinstance(value, dict):
        h.update(b"dict:%d:" % len(value))
        for key, item in value.items():
            if not isinstance(key, (str, int)):
                raise TypeError(f"{where} has a key {key!r}; checkpoint keys are str or int")
            _feed(h, key, where)
            _feed(h, item, f"{where}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        h.update(b"%s:%d:" % (type(value).__name__.encode(), len(value)))
        for i, item in enumerate(value):
            _feed(h, item, f"{where}[{i}]")
    else:
        raise TypeError(
            f"{where} is a {type(value).__name__}; a checkpoint holds only plain data "
            "(tensors, numbers, strings, None, lists, tuples and dicts of them)"
        )


def save(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Writes ``state`` to ``path`` atomically, with its digest, and returns the path.

    Raises:
        TypeError: ``state`` is not a dict or holds something other than plain data
            (checked before anything is written).
    """
    if not isinstance(state, dict):
        raise TypeError(f"a checkpoint is a dict of plain data, got {type(state).__name__}")
    path = Path(path)
    body = {"format": FORMAT, **{k: v for k, v in state.items() if k not in ("format", "digest")}}
    body["digest"] = digest(body)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_atomically(path, lambda f: torch.save(body, f))


def load(path: str | os.PathLike, map_location: str | torch.device | None = "cpu") -> dict:
    """Reads a checkpoint written by :func:`save`, without executing any code.

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointError: (a ``ValueError``) the file is unreadable, truncated,
            corrupt, edited (its digest does not match), holds objects other than
            plain data, or is not a pyro_vae checkpoint. The message says which, and
            never suggests loading the file unsafely.
        ValueError: ``map_location`` names a device this machine lacks (such as ``mps``).
    """
    path = Path(path)
    if isinstance(map_location, (str, torch.device)):
        check_device("map_location", map_location)
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a checkpoint file")
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        with warnings.catch_warnings():
            # A foreign pickle draws a protocol warning before it is refused or rejected below.
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            state = torch.load(path, map_location=map_location, weights_only=True)
    except PermissionError as e:
        raise CheckpointError(f"cannot read checkpoint {path}: permission denied") from e
    except Exception as e:  # noqa: BLE001 - whatever a damaged file makes torch.load raise
        raise CheckpointError(f"cannot read checkpoint {path}: {_why_unreadable(path, e)}") from e
    if not isinstance(state, dict) or state.get("format") not in (FORMAT, *_OLDER_FORMATS):
        raise CheckpointError(f"{path} is not a pyro_vae checkpoint (expected format {FORMAT!r})")
    if state["format"] == FORMAT:
        stored = state.pop("digest", None)
        try:
            actual = digest(state)
        except TypeError as e:
            raise CheckpointError(f"{path} holds objects other than plain data: {e}") from e
        if stored != actual:
            raise CheckpointError(
                f"{path} is damaged or was edited: its contents do not match its digest"
            )
    return state


_ZIP, _PICKLE = b"PK\x03\x04", b"\x80"  # how torch.save's files (new and legacy) begin


def _why_unreadable(path: Path, error: Exception) -> str:
    """What the file is not, from its first bytes and torch's error.

    torch's own message is never repeated: it advises ``weights_only=False``, which
    would run whatever code an untrusted file holds.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError as e:
        return f"it cannot be read ({e.strerror or e})"
    if not head:
        return "the file is empty"
    if not head.startswith((_ZIP, _PICKLE)):
        return f"it is not a checkpoint: torch.save did not write it{_looks_like(head)}"
    text = str(error)
    unsafe = re.search(r"GLOBAL (\S+)", text) or re.search(r"but got <class '([^']+)'>", text)
    if unsafe:
        return (
            f"it holds objects other than plain data ({unsafe.group(1)}), which are never "
            "loaded: loading them could run code"
        )
    if head.startswith(_PICKLE):
        return "it is a pickle that torch.save did not write, or a truncated or corrupt file"
    if "Weights only load failed" in text:
        return "it is corrupt, or holds objects other than plain data, which are never loaded"
    return "it is truncated or corrupt (its archive cannot be read)"


def _looks_like(head: bytes) -> str:
    """`` (it is JSON text)`` and the like, from a file's first bytes."""
    try:  # a character cut at the end of ``head`` is no error
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=False).lstrip()
    except UnicodeDecodeError:
        return ""
    return " (it is JSON text)" if text[:1] in ("{", "[") else " (it is text)"


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
