"""SIGTERM stops a command as Ctrl-C does: one line, exit code 143, a run that resumes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pyro_vae.cli import commands as cli
from pyro_vae.cli._signals import Terminated, terminate_as_interrupt
from pyro_vae.train import checkpoints

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

TRAIN = ["train", "--dataset", "digits", "--hidden", "8", "--latent-dim", "2",
         "--num-samples", "2", "--no-progress"]  # fmt: skip


def _epochs_logged(folder: Path) -> int:
    try:
        return max(0, len((folder / "log.csv").read_text().splitlines()) - 1)
    except FileNotFoundError:
        return 0


def _assert_handled() -> None:
    """Before a test sends SIGTERM to its own process: without the handler that would end
    the whole test session instead of failing one test."""
    handler = signal.getsignal(signal.SIGTERM)
    assert handler not in (signal.SIG_DFL, None), "SIGTERM is not handled here"


def test_sigterm_stops_a_training_run_that_then_resumes(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "pyro_vae", *TRAIN, "--epochs", "1000", "--out", str(out)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 120
    while _epochs_logged(out) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()[1].decode()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    err = err.decode()
    assert proc.returncode == 143, err
    assert "pyro-vae train: terminated (resume it with --resume)" in err
    assert "Traceback" not in err
    assert not list(out.glob(".*.tmp")), "a write cut short by SIGTERM removes its temporary file"
    saved = checkpoints.load(out / "checkpoint.pt")["epoch"]
    assert saved >= 2

    more = [*TRAIN, "--epochs", str(saved + 1), "--out", str(out), "--resume"]
    assert cli.main(more) == 0
    assert checkpoints.load(out / "checkpoint.pt")["epoch"] == saved + 1


def test_sigterm_during_a_command_is_reported_and_the_handler_restored(monkeypatch, capsys):
    def terminated(args):
        _assert_handled()
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(500):  # the handler runs at the next bytecode boundary
            time.sleep(0.01)
        raise AssertionError("SIGTERM did not stop the command")

    before = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(cli, "reproduce_command", terminated)
    assert cli.main(["reproduce", "burda2015-1layer", "--no-progress"]) == 143
    assert "pyro-vae reproduce: terminated (resume it with --resume)" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) is before


def test_terminated_is_an_interrupt():
    assert issubclass(Terminated, KeyboardInterrupt)
    with pytest.raises(KeyboardInterrupt), terminate_as_interrupt():
        _assert_handled()
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(500):
            time.sleep(0.01)


def test_an_ignored_sigterm_stays_ignored():
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        with terminate_as_interrupt():
            assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_outside_the_main_thread_nothing_changes():
    seen = []

    def inside() -> None:
        with terminate_as_interrupt():
            seen.append(signal.getsignal(signal.SIGTERM))

    before = signal.getsignal(signal.SIGTERM)
    worker = threading.Thread(target=inside)
    worker.start()
    worker.join()
    assert seen == [before]


def test_a_signal_during_an_atomic_write_is_raised_once_the_file_is_whole(tmp_path):
    from pyro_vae._atomic import write_atomically

    def write(f):
        f.write(b"first half ")
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)  # the handler would run here, half-way through the file
        f.write(b"second half")

    with pytest.raises(Terminated), terminate_as_interrupt():
        write_atomically(tmp_path / "file", write)
    assert (tmp_path / "file").read_bytes() == b"first half second half"
    assert list(tmp_path.iterdir()) == [tmp_path / "file"]
