"""The files of a training run, each written so that a crash never leaves half of one.

A run folder holds ``config.json`` (the run's settings), ``log.csv`` (one row per
finished epoch), ``checkpoint.pt`` (the latest state, for resuming) and
``best.pt`` (the parameters of the best validation loss). Every file is written
to a temporary file and renamed into place. ``checkpoint.pt`` is the one source
of truth: on resume, ``log.csv`` is rewritten from the history it holds, so rows
of work lost to a crash never linger in the log.

One process at a time writes a run folder: :meth:`RunFolder.lock` holds an
operating-system lock on ``.lock`` in the folder (``filelock``, an advisory
``flock`` on POSIX), which the kernel releases when the holder exits, crashes or
is killed with ``kill -9``; a stale lock file therefore never blocks a new run.
The holder's PID and host go to ``.lock.owner`` so that a refused process can
name it.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import filelock

from pyro_vae._atomic import remove_stale_temporaries, write_atomically

__all__ = ["RunFolder", "RunFolderLocked", "LOG_COLUMNS", "CHECKPOINT", "BEST"]

LOG_COLUMNS = ("epoch", "train_loss", "valid_loss", "seconds", "test_log_likelihood")
CHECKPOINT = "checkpoint.pt"
BEST = "best.pt"
LOCK = ".lock"
OWNER = ".lock.owner"


class RunFolderLocked(BlockingIOError):
    """Another process is writing the run folder (it holds the folder's lock)."""


class RunFolder:
    """The paths of a run and the writes that keep them consistent."""

    def __init__(self, out: str | os.PathLike) -> None:
        self.path = Path(out)
        self.checkpoint = self.path / CHECKPOINT
        self.best = self.path / BEST
        self.log = self.path / "log.csv"
        self.config = self.path / "config.json"

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Holds the folder's lock for the block, creating the folder if needed.

        Re-entrant within a process (``pyro-vae train`` holds it around ``fit``,
        which takes it again); another process is refused at once, without waiting.

        Raises:
            RunFolderLocked: another process holds the lock; the message names the
                folder and the holder's PID.
            ValueError: the run folder is a file.
        """
        if self.path.exists() and not self.path.is_dir():
            raise ValueError(f"out={str(self.path)!r} is a file, not a folder")
        self.path.mkdir(parents=True, exist_ok=True)
        # One instance per path in the process, shared by threads, so nesting re-enters it.
        lock = filelock.FileLock(self.path / LOCK, is_singleton=True, thread_local=False)
        try:
            lock.acquire(timeout=0)
        except filelock.Timeout:
            raise RunFolderLocked(
                f"{self.path} is in use: another process ({self._owner()}) is writing this "
                "run folder; wait for it to finish, stop it, or choose another folder"
            ) from None
        try:
            if lock.lock_counter == 1:
                owner = {"pid": os.getpid(), "host": socket.gethostname()}
                text = json.dumps(owner) + "\n"
                write_atomically(self.path / OWNER, lambda f: f.write(text.encode()))
            yield
        finally:
            lock.release()

    def _owner(self) -> str:
        """``PID n on host h`` of the lock's holder, as far as ``.lock.owner`` tells."""
        try:
            owner = json.loads((self.path / OWNER).read_text())
            return f"PID {int(owner['pid'])} on host {owner['host']}"
        except (OSError, ValueError, KeyError, TypeError):
            return "PID unknown"

    def check(self, *, resume: bool, overwrite: bool) -> None:
        """Refuses a start that would clobber a run, or a resume with nothing to resume.

        Raises:
            FileExistsError: a run is there, and neither ``resume`` nor ``overwrite``.
            FileNotFoundError: ``resume`` without a checkpoint.
            ValueError: ``out`` is a file.
        """
        if self.path.exists() and not self.path.is_dir():
            raise ValueError(f"out={str(self.path)!r} is a file, not a folder")
        if not resume and self.checkpoint.exists() and not overwrite:
            raise FileExistsError(
                f"{self.path} already holds a run ({CHECKPOINT}); resume it, "
                "choose another folder, or allow overwriting it"
            )
        if resume and not self.checkpoint.exists():
            raise FileNotFoundError(f"cannot resume: no {CHECKPOINT} in {self.path}")

    def start(self, config: dict[str, Any], *, resume: bool) -> None:
        """Creates the folder, writes ``config.json``; a fresh start clears the old run's files."""
        self.path.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(self.path)
        if not resume:
            for stale in (self.checkpoint, self.best):
                stale.unlink(missing_ok=True)
            self.write_log([])
        text = json.dumps(config, indent=2, sort_keys=True) + "\n"
        write_atomically(self.config, lambda f: f.write(text.encode()))

    def write_log(self, rows: list[dict[str, float]]) -> None:
        """Replaces ``log.csv`` by a header and ``rows``."""
        text = io.StringIO()
        writer = csv.writer(text)
        writer.writerow(LOG_COLUMNS)
        # Rows of runs saved before a column existed lack it: NaN, as for an epoch not measured.
        writer.writerows([row.get(c, math.nan) for c in LOG_COLUMNS] for row in rows)
        write_atomically(self.log, lambda f: f.write(text.getvalue().encode()))
