"""Checkpoint files: atomic writes, loads that run no code, clear errors, RNG state round trip."""

from __future__ import annotations

import os
import pickle
import random

import numpy as np
import pytest
import torch

from pyro_vae import checkpoints


def test_save_then_load_round_trips_plain_data(tmp_path):
    state = {"epoch": 3, "params": {"w": torch.arange(4.0)}, "history": [{"loss": 1.5}]}
    checkpoints.save(state, tmp_path / "ck.pt")
    loaded = checkpoints.load(tmp_path / "ck.pt")
    assert loaded["epoch"] == 3 and loaded["history"] == [{"loss": 1.5}]
    assert torch.equal(loaded["params"]["w"], torch.arange(4.0))
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]  # no temporary file left


def test_a_failed_write_keeps_the_previous_file(tmp_path):
    path = tmp_path / "ck.pt"
    checkpoints.save({"epoch": 1}, path)
    with pytest.raises(Exception):  # noqa: B017 - whatever torch raises for an unpicklable value
        checkpoints.save({"epoch": 2, "bad": lambda: None}, path)
    assert checkpoints.load(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]


class Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": checkpoints.FORMAT, "x": Payload()}, path)
    with pytest.raises(ValueError, match="plain data"):
        checkpoints.load(path)


@pytest.mark.parametrize(
    "content, match",
    [(b"", "truncated, corrupt"), (b"not a checkpoint at all", "truncated, corrupt")],
)
def test_corrupt_files_get_a_clear_error(tmp_path, content, match):
    path = tmp_path / "ck.pt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=match):
        checkpoints.load(path)


def test_a_truncated_checkpoint_gets_a_clear_error(tmp_path):
    path = tmp_path / "ck.pt"
    checkpoints.save({"params": {"w": torch.randn(1000)}}, path)
    path.write_bytes(path.read_bytes()[:-500])
    with pytest.raises(ValueError, match=f"cannot read checkpoint {path}"):
        checkpoints.load(path)


def test_other_files_are_not_taken_for_checkpoints(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(2)}, path)
    with pytest.raises(ValueError, match="not a pyro_vae checkpoint"):
        checkpoints.load(path)
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        checkpoints.load(tmp_path / "missing.pt")
    pickle_path = tmp_path / "plain.pkl"
    pickle_path.write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(ValueError):
        checkpoints.load(pickle_path)


def test_rng_state_round_trips_through_a_checkpoint(tmp_path):
    state = checkpoints.get_rng_state()
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    checkpoints.save({"rng": state}, tmp_path / "ck.pt")
    checkpoints.set_rng_state(checkpoints.load(tmp_path / "ck.pt")["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
