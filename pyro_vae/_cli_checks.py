"""Checks of the ``pyro-vae`` command: run configs, output folders, sizes too large to build.

A command that fails must leave nothing behind: :class:`OutputGuard` removes what a
failed call created under its output path and never touches what was there before.
"""

from __future__ import annotations

import math
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import torch

from ._checks import check_number, check_positive_int, check_shape, check_sizes

__all__ = ["check_run_config", "OutputGuard", "too_large"]


def check_run_config(
    config: object, required: Sequence[str], choices: Mapping[str, Sequence[str]]
) -> dict[str, Any]:
    """Checks a run's config (what ``pyro-vae train`` saves) key by key.

    Arguments:
        config: the config, a dict.
        required: the keys it must hold.
        choices: the allowed names of the keys that name a part (``prior``, ``net``, …).

    Raises:
        TypeError: ``config`` is not a dict.
        ValueError: a key is missing or its value is of the wrong type or range,
            named as ``config['key']``.
    """
    if not isinstance(config, dict):
        raise TypeError(f"config must be a dict, got {type(config).__name__}")
    missing = [key for key in required if key not in config]
    if missing:
        raise ValueError(f"config lacks {', '.join(missing)}")
    for key, allowed in choices.items():
        if key in config and config[key] not in allowed:
            raise ValueError(
                f"config[{key!r}] must be one of {', '.join(allowed)}, got {config[key]!r}"
            )
    if "image_shape" in config:
        check_shape("config['image_shape']", config["image_shape"], 3)
    if "hidden" in config:
        check_sizes("config['hidden']", config["hidden"])
    if "latent_dim" in config:
        check_positive_int("config['latent_dim']", config["latent_dim"])
    if "scale" in config:
        scale = check_number("config['scale']", config["scale"])
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"config['scale'] must be a positive finite number, got {scale!r}")
    if "learn_scale" in config and not isinstance(config["learn_scale"], bool):
        learn = config["learn_scale"]
        raise ValueError(f"config['learn_scale'] must be true or false, got {learn!r}")
    for key in ("num_flows", "components"):
        if config.get(key) is not None:
            check_positive_int(f"config[{key!r}]", config[key])
    return config


_TOO_LARGE = ("can't allocate memory", "not enough memory", "out of memory", "overflow")


def too_large(error: BaseException) -> str | None:
    """One line for an error of sizes too large to allocate, or ``None`` for other errors."""
    text = str(error)
    if not isinstance(error, (MemoryError, torch.OutOfMemoryError)) and not (
        isinstance(error, RuntimeError) and any(m in text for m in _TOO_LARGE)
    ):
        return None
    wanted = re.search(r"allocate (\d+) bytes", text)
    amount = f" ({int(wanted.group(1)) / 2**30:.3g} GiB asked for)" if wanted else ""
    return (
        f"out of memory: the sizes asked for are too large to allocate{amount}; choose a "
        "smaller --latent-dim, --hidden, --components, --num-flows, --num-particles or "
        "--batch-size"
    )


class OutputGuard:
    """A context that removes what the call created under ``path`` if it fails.

    Entering records the files and folders under ``path`` (and which of its
    ancestors exist). If the block raises an ``Exception``, every file or folder
    that was not there before is removed, ``path`` too if the call created it,
    and so are the ancestors the call created; files that were there before are
    never touched. With ``keep_checkpoints``, a run that wrote a ``checkpoint.pt``
    (a finished epoch, which ``--resume`` continues) is kept whole.
    """

    def __init__(self, path: str | os.PathLike, *, keep_checkpoints: bool = False) -> None:
        self.path = Path(path)
        self.keep_checkpoints = keep_checkpoints
        self.created_ancestors = [p for p in self.path.parents if not p.exists()]
        self.before: dict[Path, int] = {}

    def __enter__(self) -> OutputGuard:
        self.before = self._listing()
        self.existed = self.path.exists()
        return self

    def _listing(self) -> dict[Path, int]:
        """Every path under ``self.path`` with its modification time (ns)."""
        listing: dict[Path, int] = {}
        if not self.path.is_dir():
            return listing
        for folder, dirs, files in os.walk(self.path):
            for name in dirs + files:
                p = Path(folder, name)
                try:
                    listing[p] = p.lstat().st_mtime_ns
                except OSError:
                    continue
        return listing

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        if kind is None or not issubclass(kind, Exception):
            return False  # success, or an interrupt: leave everything as it is
        after = self._listing()
        if self.keep_checkpoints and any(
            p.name == "checkpoint.pt" and self.before.get(p) != mtime for p, mtime in after.items()
        ):
            return False
        if not self.existed:
            shutil.rmtree(self.path, ignore_errors=True)
            if self.path.is_file() or self.path.is_symlink():
                self.path.unlink(missing_ok=True)
        else:
            new = [p for p in after if p not in self.before]
            for p in new:
                if p.parent in self.before or p.parent == self.path:  # the top of a new tree
                    if p.is_dir() and not p.is_symlink():
                        shutil.rmtree(p, ignore_errors=True)
                    else:
                        p.unlink(missing_ok=True)
        for folder in self.created_ancestors:  # deepest first
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        return False
