"""Checks of the ``pyro-vae`` command: run configs, output folders, sizes too large to build.

A command that fails must leave nothing behind: :class:`OutputGuard` removes what a
failed call created under its output path and never touches what was there before.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from types import TracebackType

import torch

from pyro_vae.train._run_folder import RunFolderLocked

__all__ = ["OutputGuard", "too_large", "os_error_line"]


# What torch says of sizes too large to allocate, or to count in int64; not its "cannot be
# converted to type float without overflow", which is a number beyond float32, not memory.
_TOO_LARGE = (
    "can't allocate memory",
    "not enough memory",
    "out of memory",
    "size calculation overflowed",
    "integer multiplication overflow",
)


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


def os_error_line(error: OSError, out: str | os.PathLike | None) -> str | None:
    """One line for an ``OSError`` of the system about a file: naming ``--out`` when the
    file is ``out``, in it or one of its ancestors, else naming the file; ``None`` for
    errors that are not about a file (their own message says it)."""
    filename, reason = error.filename, error.strerror
    if filename is None or not reason:
        return None
    reason = reason[0].lower() + reason[1:]
    if out is not None:
        target, where = Path(os.path.abspath(out)), Path(os.path.abspath(filename))
        if where == target or target in where.parents or where in target.parents:
            at = "" if where == target else f" ({filename})"
            return f"--out={str(out)!r} cannot be written: {reason}{at}"
    return f"{filename}: {reason}"


class OutputGuard:
    """A context that removes what the call created under ``path`` if it fails.

    Entering records the files and folders under ``path`` (and which of its
    ancestors exist). If the block raises an ``Exception``, every file or folder
    that was not there before is removed, ``path`` too if the call created it,
    and so are the ancestors the call created; files that were there before are
    never touched, nor is anything when the folder's lock was refused (another
    process is writing it). With ``keep_checkpoints``, a run that wrote a ``checkpoint.pt``
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
        if issubclass(kind, RunFolderLocked):
            return False  # the folder belongs to the process that holds it
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
