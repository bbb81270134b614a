"""Writing a file so that a crash at any moment leaves the old file or the new one, whole."""

from __future__ import annotations

import os
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

__all__ = ["write_atomically", "remove_stale_temporaries"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once: os.umask can only be read by setting it, which is not thread-safe.
_MODE = 0o666 & ~_umask()


def write_atomically(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    """Writes ``path`` through ``write(file)``: temporary file, fsync, rename, fsync of folder.

    The temporary file sits in the same folder (a rename is atomic only within a
    file system) and is named ``.<name>.<random>.tmp``; it is removed if ``write``
    fails. A ``kill -9`` can leave it behind, never a partial ``path``:
    :func:`remove_stale_temporaries` clears such leftovers. The new file gets
    the usual permissions (0666 less the umask), not the temporary file's 0600.

    A Ctrl-C or SIGTERM handled in Python (:func:`pyro_vae.cli._signals.terminate_as_interrupt`)
    that arrives during the write is held until the file is in place, then raised: an
    exception thrown inside ``write`` (``torch.save`` in the middle of its zip archive) could
    otherwise be replaced by the writer's own error on the way out.
    """
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:  # name the file asked for, not the temporary one
        raise type(e)(e.errno, e.strerror, str(path)) from None
    with _interrupts_deferred():
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, _MODE)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_folder(path.parent)
    return path


@contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM with Python handlers are recorded, not run.

    On leaving, the handlers before are restored and the first recorded signal is handed to
    its handler (which raises ``KeyboardInterrupt`` or ``Terminated``). Signal handlers can
    only be set in the main thread; elsewhere the block changes nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[tuple[int, object]] = []
    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        handler = signal.getsignal(signum)
        if callable(handler):
            previous[signum] = handler
            signal.signal(signum, lambda n, frame: pending.append((n, frame)))
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if pending:
            signum, frame = pending[0]
            previous[signum](signum, frame)


def _fsync_folder(folder: Path) -> None:
    """Makes a rename in ``folder`` durable (a power cut cannot undo it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # folders cannot be opened everywhere (Windows); the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_stale_temporaries(folder: str | os.PathLike) -> None:
    """Deletes the temporary files that writes killed half-way left in ``folder``."""
    for tmp in Path(folder).glob(".*.tmp"):
        tmp.unlink(missing_ok=True)
