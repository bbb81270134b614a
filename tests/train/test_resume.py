"""Exact resume across processes, and checkpoints that survive SIGKILL at any moment.

Each test runs ``tests/_train_process.py`` in subprocesses: a run stopped (or
killed) and resumed must end with the same parameters, optimizer state,
random-number states and log as one that ran straight through, bit for bit.
"""

from __future__ import annotations

import csv
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from pyro_vae.train import checkpoints

SCRIPT = Path(__file__).with_name("_train_process.py")
EPOCHS = 4
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def start(out: Path, *args: str) -> subprocess.Popen:
    command = [sys.executable, str(SCRIPT), str(out), *args]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)


def run(out: Path, *args: str) -> None:
    proc = start(out, *args)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Path:
    """A run of EPOCHS epochs that was never stopped (and saved only at epoch ends)."""
    out = tmp_path_factory.mktemp("straight")
    run(out, "--epochs", str(EPOCHS))
    return out


def assert_tensors_equal(a, b, where: str) -> None:
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_tensors_equal(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_tensors_equal(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def log_rows(folder: Path) -> list[dict[str, str]]:
    with open(folder / "log.csv") as f:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]


def assert_same_run(a: Path, b: Path) -> None:
    """Two run folders hold the same training, apart from the time it took."""
    sa, sb = (checkpoints.load(f / "checkpoint.pt") for f in (a, b))
    for key in ("params", "optim_state", "objective_state", "rng_state", "data_rng_state"):
        assert_tensors_equal(sa[key], sb[key], key)
    drop = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert drop(sa["history"]) == drop(sb["history"])
    assert log_rows(a) == log_rows(b) and len(log_rows(a)) == EPOCHS
    ba, bb = (checkpoints.load(f / "best.pt") for f in (a, b))
    assert ba["epoch"] == bb["epoch"]
    assert_tensors_equal(ba["params"], bb["params"], "best")


def test_two_epochs_a_new_process_and_two_more_equal_four_straight(straight, tmp_path):
    run(tmp_path, "--epochs", "2")
    assert checkpoints.load(tmp_path / "checkpoint.pt")["epoch"] == 2
    run(tmp_path, "--epochs", str(EPOCHS), "--resume")
    assert_same_run(straight, tmp_path)


def test_a_kill_half_way_through_writing_a_checkpoint_keeps_the_previous_one(straight, tmp_path):
    proc = start(tmp_path, "--epochs", str(EPOCHS), "--checkpoint-every", "1", "--die-in-save", "6")
    proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL
    assert list(tmp_path.glob(".checkpoint.pt.*.tmp")), "the half-written file should be there"
    state = checkpoints.load(tmp_path / "checkpoint.pt")  # the fifth save, intact
    assert (state["position"]["epoch"], state["position"]["step"]) == (1, 5)
    run(tmp_path, "--epochs", str(EPOCHS), "--checkpoint-every", "1", "--resume")
    assert not list(tmp_path.glob(".*.tmp")), "resuming clears what the killed write left"
    assert_same_run(straight, tmp_path)


def test_sigkill_at_random_moments_always_leaves_a_checkpoint_to_resume_from(straight, tmp_path):
    """Kills a run that checkpoints every step at random moments, up to 8 times.

    Its checkpoint writes are slowed down so that they take most of each step:
    most kills land in the middle of writing a checkpoint.

    After each kill the checkpoint (once one exists) must load and must never be
    older than the one before; each restart resumes from it, and the run that
    finally completes equals the one that was never killed.
    """
    rng, kills, last = random.Random(2026), 0, (0, 0)
    deadline = time.monotonic() + 240
    while True:
        resume = ["--resume"] if (tmp_path / "checkpoint.pt").exists() else []
        proc = start(
            tmp_path, "--epochs", str(EPOCHS), "--checkpoint-every", "1", "--slow-writes", *resume
        )
        assert proc.stdout.readline().strip() == b"training"
        try:
            proc.wait(timeout=rng.uniform(0.05, 0.8) if kills < 8 else 300)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
        if proc.returncode == 0:
            break
        assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()
        if (tmp_path / "checkpoint.pt").exists():
            position = checkpoints.load(tmp_path / "checkpoint.pt")["position"]
            now = (position["epoch"], position["step"])
            assert now >= last, f"the checkpoint went back from {last} to {now}"
            last = now
        assert time.monotonic() < deadline, "the killed run made no progress"
    assert kills >= 3, "too few kills landed before the run finished: the test proved little"
    assert_same_run(straight, tmp_path)
