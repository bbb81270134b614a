"""Shared by the bad-input tests of every floor: the property settings, a sandboxed ``pyro-vae``
call and the strategies of bad arguments.

No test touches the network, the real cache folder or ``$PYRO_VAE_DATA``. The property
tests are derandomized and keep no example database, so every run sees the same cases.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import signal
import urllib.error
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from pyro_vae.cli import commands as cli
from pyro_vae.models import guides, nets

PROPERTY = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def examples(n: int) -> settings:
    """The property tests' settings with ``n`` examples."""
    return settings(PROPERTY, max_examples=n)


TINY = ["--dataset", "digits", "--epochs", "1", "--hidden", "8", "--latent-dim", "2",
        "--num-samples", "2", "--batch-size", "500", "--eval-batch-size", "200",
        "--components", "2"]  # fmt: skip


def offline(*args: object, **kwargs: object) -> None:
    raise urllib.error.URLError("offline (test)")


@contextlib.contextmanager
def isolated(cwd: Path):
    """No network, no real cache or $PYRO_VAE_DATA, and ``cwd`` as the working folder."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("urllib.request.urlopen", offline)
        mp.setattr("pyro_vae.data.default_cache_dir", lambda: cwd / "no-cache")
        mp.setenv("PYRO_VAE_DATA", str(cwd / "no-data"))
        mp.chdir(cwd)
        yield


class Hang(Exception):
    """A call that ran past its time limit."""


@contextlib.contextmanager
def time_limited(seconds: float):
    """Raises :class:`Hang` in the block after ``seconds`` (where SIGALRM exists)."""
    if not hasattr(signal, "setitimer"):
        yield
        return

    def stop(signum: int, frame: object) -> None:
        raise Hang(f"the call ran for more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_cli(argv: list[str], cwd: Path, time_limit: float = 120) -> tuple[int, str]:
    """``cli.main(argv)`` in ``cwd``: (exit code, stderr); SystemExit counts as its code.

    A call that runs past ``time_limit`` seconds fails the test with :class:`Hang`.
    """
    err = io.StringIO()
    with (
        time_limited(time_limit),
        isolated(cwd),
        contextlib.redirect_stderr(err),
        contextlib.redirect_stdout(io.StringIO()),
    ):
        try:
            code = cli.main(argv)
        except SystemExit as e:
            code = 0 if e.code is None else e.code
    return code, err.getvalue()


def listing(folder: Path) -> set[Path]:
    return {Path(d, n) for d, dirs, files in os.walk(folder) for n in dirs + files}


def names_an_argument(error: BaseException, names: tuple[str, ...]) -> bool:
    return any(re.search(rf"(?<![\w]){re.escape(n)}(?![\w])", str(error)) for n in names)


def diagonal_guide() -> guides.DiagonalNormal:
    return guides.DiagonalNormal(nets.MLP(4, [4]), 2)
