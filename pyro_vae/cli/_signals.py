"""SIGTERM stops a command the way Ctrl-C does.

``kill``, batch schedulers (SLURM sends SIGTERM before SIGKILL when a job's time is up),
systemd, container runtimes and ``torchrun``'s agent all stop a process with SIGTERM, whose
default action ends it at once. The run folder survives that (its files are written
atomically), but nothing else runs: no message, no ``finally`` block. Within
:func:`terminate_as_interrupt` SIGTERM raises :class:`Terminated` instead, a
``KeyboardInterrupt``, so every path that handles Ctrl-C handles it too: temporary files are
removed, the run keeps its last checkpoint and the command says how to go on.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

__all__ = ["Terminated", "terminate_as_interrupt", "TERMINATED_EXIT_CODE"]

# 128 + the signal's number, what a shell reports for a process that SIGTERM ended.
TERMINATED_EXIT_CODE = 128 + int(signal.SIGTERM)


class Terminated(KeyboardInterrupt):
    """Raised in the main thread when the process receives SIGTERM."""


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated(f"received signal {signum}")


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated`; the handler before is restored.

    Python runs signal handlers in the main thread only, so elsewhere (a command called
    from a worker thread) the block changes nothing. A SIGTERM that the process was set to
    ignore stays ignored.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous is signal.SIG_IGN:
        yield
        return
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        # None: a handler installed outside Python, which cannot be put back; the default is.
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
