"""bench/reproduction_carry.py: run folders saved into the repository and restored on another
machine, where a stopped run resumes exactly and a scored one is carried without its weights."""

from __future__ import annotations

import json
import os
import runpy
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pyro_vae.lab import recipes
from pyro_vae.lab._run_files import read_log

ROOT = Path(__file__).resolve().parents[2]
SMOKE = {"smoke_test": True, "table": None, "progress": False}
NAME = "burda2015-1layer_elbo"


@pytest.fixture(scope="module")
def carry():
    return runpy.run_path(str(ROOT / "bench" / "reproduction_carry.py"))["main"]


@pytest.fixture
def stopped(tmp_path) -> Path:
    """A folder of runs holding one smoke run stopped after its first epoch."""
    runs = tmp_path / "runs"
    recipes.reproduce("burda2015-1layer", "elbo", out=runs / NAME, max_minutes=1e-9, **SMOKE)
    return runs


def test_a_stopped_run_restored_on_an_empty_machine_resumes_exactly(carry, stopped, tmp_path):
    store, elsewhere = tmp_path / "store", tmp_path / "elsewhere"
    assert carry(["save", str(stopped), "--store", str(store)]) == 0
    assert sorted(p.name for p in (store / NAME).iterdir()) == [
        "checkpoint.pt", "config.json", "log.csv",
    ]  # fmt: skip
    assert carry(["restore", str(elsewhere), "--store", str(store)]) == 0
    resumed = recipes.reproduce(
        "burda2015-1layer", "elbo", out=elsewhere / NAME, resume=True, **SMOKE
    )
    straight = recipes.reproduce("burda2015-1layer", "elbo", out=tmp_path / "straight", **SMOKE)
    for column in ("epoch", "train_loss", "valid_loss", "test_log_likelihood"):
        a, b = resumed.history.column(column), straight.history.column(column)
        assert str(a) == str(b), column  # the same numbers, NaN where nothing was measured
    assert resumed.scores["nll"] == straight.scores["nll"]

    # Scored, it is carried without its checkpoint, and the stored one goes.
    assert carry(["save", str(elsewhere), "--store", str(store)]) == 0
    assert sorted(p.name for p in (store / NAME).iterdir()) == [
        "config.json", "log.csv", "metrics.json",
    ]  # fmt: skip


def test_restore_keeps_a_folder_as_far_and_refuses_another_configuration(
    carry, stopped, tmp_path, capsys
):
    store = tmp_path / "store"
    assert carry(["save", str(stopped), "--store", str(store)]) == 0
    recipes.reproduce("burda2015-1layer", "elbo", out=stopped / NAME, resume=True, **SMOKE)
    files = {p.name: p.read_bytes() for p in (stopped / NAME).iterdir() if p.is_file()}
    assert carry(["restore", str(stopped), "--store", str(store)]) == 0
    assert "is as far as the stored run or further" in capsys.readouterr().out
    assert {p.name: p.read_bytes() for p in (stopped / NAME).iterdir() if p.is_file()} == files

    other = tmp_path / "other"
    (other / NAME).mkdir(parents=True)
    (other / NAME / "config.json").write_text(json.dumps({"recipe": "vampprior2018"}))
    assert carry(["restore", str(other), "--store", str(store)]) == 1
    assert "holds a run of another configuration" in capsys.readouterr().err
    assert not (other / NAME / "checkpoint.pt").exists()


def test_a_folder_behind_the_stored_run_is_brought_forward(carry, stopped, tmp_path):
    store, behind = tmp_path / "store", tmp_path / "behind"
    assert carry(["save", str(stopped), "--store", str(store)]) == 0
    recipes.reproduce("burda2015-1layer", "elbo", out=behind / NAME, max_minutes=1e-9, **SMOKE)
    recipes.reproduce("burda2015-1layer", "elbo", out=stopped / NAME, resume=True, **SMOKE)
    assert carry(["save", str(stopped), "--store", str(store)]) == 0  # now scored
    assert carry(["restore", str(behind), "--store", str(store)]) == 0
    assert (behind / NAME / "metrics.json").read_bytes() == (
        store / NAME / "metrics.json"
    ).read_bytes()
    assert not (behind / NAME / "checkpoint.pt").exists(), "a scored run has no checkpoint"
    assert read_log(behind / NAME / "log.csv") == read_log(stopped / NAME / "log.csv")


_HOLDER = """
import sys, time
from pyro_vae.train._run_folder import RunFolder
with RunFolder(sys.argv[1]).lock():
    print("locked", flush=True)
    time.sleep(60)
"""


def test_a_run_in_training_is_skipped_not_copied_half_way(carry, stopped, tmp_path, capsys):
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(stopped / NAME)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert carry(["save", str(stopped), "--store", str(tmp_path / "store")]) == 1
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    assert f"is in use: another process (PID {holder.pid}" in capsys.readouterr().err
    assert not (tmp_path / "store" / NAME).exists()


def test_save_names_a_missing_folder(carry, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        carry(["save", str(tmp_path / "nowhere")])
    assert e.value.code == 2 and "no folder" in capsys.readouterr().err


def test_the_default_store_is_not_ignored_by_git():
    """``runs/`` is ignored everywhere else; the carried copies must reach a commit."""
    store = ROOT / "reproduction" / "runs" / NAME / "checkpoint.pt"
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    check = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "-q", str(store)])
    assert check.returncode == 1, f"{store} is ignored by git"
