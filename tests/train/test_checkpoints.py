"""Checkpoint files: atomic writes, loads that run no code, clear errors, RNG state round trip."""

from __future__ import annotations

import fractions
import os
import pickle
import random

import numpy as np
import pytest
import torch

from pyro_vae.train import checkpoints


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
    [(b"", "the file is empty"), (b"not a checkpoint at all", "torch.save did not write it")],
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


def test_an_edited_checkpoint_is_detected_by_its_digest(tmp_path):
    # Flipping bytes inside a tensor's storage leaves a file torch loads without
    # complaint; the digest is what notices.
    path = tmp_path / "ck.pt"
    checkpoints.save({"params": {"w": torch.zeros(4096)}}, path)
    raw = bytearray(path.read_bytes())
    start = raw.find(bytes(4096 * 4))  # the tensor's zero bytes
    assert start >= 0
    raw[start + 100] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(checkpoints.CheckpointError, match="damaged or was edited"):
        checkpoints.load(path)


def test_save_refuses_values_that_are_not_plain_data(tmp_path):
    path = tmp_path / "ck.pt"
    with pytest.raises(TypeError, match=r"state\['config'\]\['scale'\] is a float64"):
        checkpoints.save({"config": {"scale": np.float64(0.5)}}, path)
    with pytest.raises(TypeError, match="a checkpoint is a dict"):
        checkpoints.save([1, 2], path)
    assert not path.exists() and list(tmp_path.iterdir()) == []


def test_the_digest_tells_apart_values_that_print_alike():
    assert checkpoints.digest({"a": 1}) != checkpoints.digest({"a": 1.0})
    assert checkpoints.digest({"a": [1, 2]}) != checkpoints.digest({"a": (1, 2)})
    assert checkpoints.digest(torch.zeros(2, 3)) != checkpoints.digest(torch.zeros(3, 2))
    assert checkpoints.digest(torch.zeros(2)) != checkpoints.digest(torch.zeros(2).double())
    assert checkpoints.digest({"a": torch.ones(2)}) == checkpoints.digest({"a": torch.ones(2)})


def test_a_folder_or_an_unreadable_file_gets_a_clear_error(tmp_path, monkeypatch):
    with pytest.raises(checkpoints.CheckpointError, match="is a folder"):
        checkpoints.load(tmp_path)
    path = tmp_path / "ck.pt"
    checkpoints.save({"epoch": 1}, path)

    def unreadable(*args, **kwargs):  # what open() raises for mode 000, even under root's CI
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(torch, "load", unreadable)
    with pytest.raises(checkpoints.CheckpointError, match="permission denied"):
        checkpoints.load(path)


def test_a_checkpoint_of_the_older_format_still_loads(tmp_path):
    path = tmp_path / "old.pt"
    torch.save({"format": "pyro_vae/checkpoint-v1", "epoch": 2}, path)
    assert checkpoints.load(path)["epoch"] == 2


def test_stale_temporaries_of_a_killed_write_are_removed(tmp_path):
    (tmp_path / ".checkpoint.pt.abc.tmp").write_bytes(b"half a file")
    checkpoints.save({"epoch": 1}, tmp_path / "checkpoint.pt")
    checkpoints.remove_stale_temporaries(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


# torch's own message on a refused file advises weights_only=False or allowlisting globals,
# which would run whatever code an untrusted file holds: it must never reach the user.
UNSAFE_ADVICE = ("weights_only", "trusted source", "safe_globals", "will likely succeed")


NOT_TORCH = "not a checkpoint: torch.save did not write it"


@pytest.mark.parametrize(
    "content, what",
    [
        (b'{"params": {"w": [1, 2]}}\n', f"{NOT_TORCH} (it is JSON text)"),
        (b"\x00\x01\x02 random \xfe\xff bytes" * 10, NOT_TORCH),
        (pickle.dumps({"w": [1, 2]}), "a pickle that torch.save did not write"),
    ],
)
def test_a_file_that_is_no_checkpoint_is_named_without_unsafe_advice(tmp_path, content, what):
    path = tmp_path / "ck.pt"
    path.write_bytes(content)
    with pytest.raises(checkpoints.CheckpointError) as info:
        checkpoints.load(path)
    message = str(info.value)
    assert message.startswith(f"cannot read checkpoint {path}: ") and what in message
    assert not any(advice in message for advice in UNSAFE_ADVICE), message


def test_a_file_of_other_objects_names_them_without_unsafe_advice(tmp_path):
    path = tmp_path / "ck.pt"
    torch.save({"format": checkpoints.FORMAT, "x": fractions.Fraction(1, 2)}, path)
    with pytest.raises(checkpoints.CheckpointError) as info:
        checkpoints.load(path)
    message = str(info.value)
    assert "objects other than plain data (fractions.Fraction)" in message
    assert not any(advice in message for advice in UNSAFE_ADVICE), message


def test_a_device_this_machine_lacks_is_named_not_blamed_on_the_file(tmp_path):
    path = checkpoints.save({"epoch": 1}, tmp_path / "ck.pt")
    with pytest.raises(ValueError, match="map_location 'xla' is not available") as info:
        checkpoints.load(path, map_location="xla")
    assert not isinstance(info.value, checkpoints.CheckpointError)
