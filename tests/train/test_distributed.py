"""Data-parallel training: processes launched on localhost with gloo, and the pieces in one process.

The launched tests start ``tests/train/_ddp_worker.py`` twice with the variables
torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), and one
test runs the documented ``torchrun ... -m pyro_vae train`` command
(docs/distributed.md) itself.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyro
import pytest
import torch
from torch.utils.data import DistributedSampler

import pyro_vae as pv
from pyro_vae.cli.commands import main
from pyro_vae.infer._fused import PerExample, match
from pyro_vae.train import distributed
from pyro_vae.train._data_parallel import shard_of_batch, sum_gradients
from pyro_vae.train._trainer import Trainer

sys.path.insert(0, str(Path(__file__).parent))
from _ddp_worker import deterministic_fit, small_vae  # noqa: E402

WORKER = Path(__file__).with_name("_ddp_worker.py")
LAUNCH = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH}
    return {**env, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **extra}


def start(scenario: str, results: Path, options: dict | None = None) -> list[subprocess.Popen]:
    """Two worker processes of one run, rank 0 first."""
    port = str(free_port())
    command = [sys.executable, str(WORKER), scenario, str(results), json.dumps(options or {})]
    return [
        subprocess.Popen(
            command,
            env=environment(
                RANK=str(rank),
                LOCAL_RANK=str(rank),
                WORLD_SIZE="2",
                MASTER_ADDR="127.0.0.1",
                MASTER_PORT=port,
            ),  # fmt: skip
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in range(2)
    ]


def finish(procs: list[subprocess.Popen], timeout: float = 300) -> list[str]:
    """Waits for every process; returns their stderr. Fails (and kills them) on an error."""
    errs = []
    try:
        for proc in procs:
            _, err = proc.communicate(timeout=timeout)
            errs.append(err)
    finally:
        for proc in procs:
            proc.kill()
    for rank, (proc, err) in enumerate(zip(procs, errs, strict=True)):
        assert proc.returncode == 0, f"rank {rank} failed:\n{err}"
    return errs


def launch(scenario: str, results: Path, options: dict | None = None) -> tuple[list, list[str]]:
    errs = finish(start(scenario, results, options))
    return [torch.load(f"{results}-rank{r}.pt", weights_only=False) for r in range(2)], errs


def assert_same_params(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


# ------------------------------------------------------------------ launched processes


def test_two_processes_keep_equal_parameters_and_resume_exactly(tmp_path):
    outs = [str(tmp_path / "straight"), str(tmp_path / "never-written")]
    (straight, other), errs = launch("vae", tmp_path / "a", {"epochs": 2, "outs": outs})
    assert_same_params(straight["params"], other["params"])
    assert straight["rows"][-1]["train_loss"] == other["rows"][-1]["train_loss"]
    # Rank 0 alone writes the run folder and prints.
    assert (tmp_path / "straight" / "checkpoint.pt").exists()
    assert json.loads((tmp_path / "straight" / "config.json").read_text())["world_size"] == 2
    assert not (tmp_path / "never-written").exists()
    assert "epoch 2/2" in errs[0] and "epoch" not in errs[1]

    # One epoch, then a new pair of processes resumes for the second: the same as straight.
    outs = [str(tmp_path / "stopped"), str(tmp_path / "never-written")]
    launch("vae", tmp_path / "b", {"epochs": 1, "outs": outs})
    (resumed, _), _ = launch("vae", tmp_path / "c", {"epochs": 2, "outs": outs, "resume": True})
    assert_same_params(resumed["params"], straight["params"])
    assert resumed["rows"] == [
        {**row, "seconds": r["seconds"]}
        for row, r in zip(straight["rows"], resumed["rows"], strict=True)
    ]
    assert not (tmp_path / "never-written").exists()


def test_two_processes_with_batch_b_match_one_process_with_batch_2b(tmp_path):
    # 49 examples in global batches of 16: the last holds one, so rank 1 has none there.
    one = deterministic_fit(batch_size=16)
    (two, other), _ = launch("deterministic", tmp_path / "r", {"batch_size": 8})
    assert_same_params(two["params"], other["params"])
    for name, value in one["params"].items():
        torch.testing.assert_close(two["params"][name], value, rtol=1e-5, atol=1e-6)
    for a, b in zip(one["rows"], two["rows"], strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-6)
        assert a["valid_loss"] == pytest.approx(b["valid_loss"], rel=1e-6)


def test_processes_given_different_data_or_an_occupied_folder_all_stop(tmp_path):
    out = tmp_path / "run"
    pv.fit(small_vae(), torch.zeros(4, 12), epochs=1, out=out, progress=False)
    (zero, one), _ = launch("errors", tmp_path / "r", {"out": str(out)})
    for rank, seen in enumerate((zero, one)):
        kind, message = seen["mismatch"]
        assert "different data" in message and f"rank {rank} of 2" in message
        kind, message = seen["occupied"]
        assert kind == "FileExistsError" and "already holds a run" in message


@pytest.mark.parametrize("stop", ["kill", "hang"])
def test_a_process_that_dies_or_hangs_stops_the_other_with_a_clear_error(tmp_path, stop):
    started = str(tmp_path / "started")
    procs = start("endless", tmp_path / "r", {"started": started, "timeout": 3})
    try:
        deadline = time.monotonic() + 120
        while not all(Path(started + str(r)).exists() for r in range(2)):
            assert time.monotonic() < deadline and all(p.poll() is None for p in procs)
            time.sleep(0.1)
        time.sleep(1.0)  # well into training
        procs[1].send_signal(signal.SIGKILL if stop == "kill" else signal.SIGSTOP)
        tic = time.monotonic()
        _, err = procs[0].communicate(timeout=60)
        waited = time.monotonic() - tic
    finally:
        for proc in procs:
            proc.kill()
            proc.communicate()
    assert procs[0].returncode != 0
    assert "PeerError" in err and "another process of the run has stopped or hung" in err
    assert waited < 30


def test_the_documented_torchrun_command_trains_and_evaluates(tmp_path):
    out = tmp_path / "run"
    run = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "-m", "pyro_vae"]
    train = subprocess.run(
        [*run, "train", "--epochs", "1", "--out", str(out), "--num-samples", "5",
         "--hidden", "32", "--latent-dim", "4", "--no-progress"],
        env=environment(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert train.returncode == 0, train.stderr
    assert train.stdout.count("trained 1 epochs") == 1  # rank 0 alone prints
    config = json.loads((out / "config.json").read_text())
    assert config["world_size"] == 2
    for name in ("checkpoint.pt", "best.pt", "metrics.json", "samples.png", "log.csv"):
        assert (out / name).exists(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["examples"] == 1000  # the test split, split between the processes and gathered

    evaluate = subprocess.run(
        [*run, "evaluate", str(out / "best.pt"), "--num-samples", "5"],
        env=environment(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert evaluate.returncode == 0, evaluate.stderr
    assert evaluate.stdout.count("log p(x)") == 1


# ------------------------------------------------------------------ one process


@pytest.fixture
def launcher_env(monkeypatch):
    for name in LAUNCH:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_without_a_launcher_the_group_is_one_process(launcher_env):
    group = distributed.init()
    assert (group.rank, group.world_size, group.distributed, group.is_main) == (0, 1, False, True)
    launcher_env.setenv("WORLD_SIZE", "1")
    assert not distributed.launched()
    x = torch.arange(6.0)
    assert distributed.map_shards(lambda rows: rows * 2, x).tolist() == (x * 2).tolist()


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"WORLD_SIZE": "two"}, "WORLD_SIZE must be an integer"),
        ({"WORLD_SIZE": "2"}, "RANK is not"),
        ({"WORLD_SIZE": "2", "RANK": "2"}, r"RANK must be in \[0, WORLD_SIZE=2\)"),
        ({"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "-1"}, "LOCAL_RANK must be"),
        ({"WORLD_SIZE": "2", "RANK": "0"}, "MASTER_ADDR is not"),
    ],
)
def test_malformed_launcher_variables_are_named(launcher_env, variables, message):
    for name, value in variables.items():
        launcher_env.setenv(name, value)
    with pytest.raises(ValueError, match=message):
        distributed.init()


def test_unknown_backend_and_nccl_without_cuda_are_refused(launcher_env):
    for name, value in dict(WORLD_SIZE="2", RANK="0", MASTER_ADDR="127.0.0.1").items():
        launcher_env.setenv(name, value)
    launcher_env.setenv("MASTER_PORT", str(free_port()))
    with pytest.raises(ValueError, match="backend must be 'gloo' or 'nccl'"):
        distributed.init(backend="mpi")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="nccl backend needs CUDA"):
            distributed.init(backend="nccl")


def test_commands_other_than_train_and_evaluate_refuse_torchrun(launcher_env, capsys):
    launcher_env.setenv("WORLD_SIZE", "2")
    launcher_env.setenv("RANK", "0")
    assert main(["sample", "nowhere.pt"]) == 2
    assert "sample runs in one process; only train and evaluate" in capsys.readouterr().err


@pytest.mark.parametrize("n", range(0, 12))
@pytest.mark.parametrize("world_size", [1, 2, 3, 5])
def test_shard_ranges_split_rows_evenly_in_rank_order(n, world_size):
    ranges = [
        distributed.shard_range(n, distributed.Group(rank, world_size))
        for rank in range(world_size)
    ]
    assert [i for r in ranges for i in r] == list(range(n))
    assert max(map(len, ranges)) - min(map(len, ranges)) <= 1


@pytest.mark.parametrize("world_size", [2, 3])
def test_global_batch_shards_are_distributed_samplers_split(world_size):
    batch_size, steps = 4, 3
    order = torch.randperm(
        batch_size * world_size * steps, generator=torch.Generator().manual_seed(0)
    )
    for rank in range(world_size):
        group = distributed.Group(rank, world_size)
        sampler = DistributedSampler(
            order.tolist(), num_replicas=world_size, rank=rank, shuffle=False
        )
        theirs = [order[i] for i in sampler]
        global_batches = order.split(batch_size * world_size)
        ours = torch.cat([shard_of_batch(b, group) for b in global_batches])
        assert ours.tolist() == [int(t) for t in theirs]


class DoublingGroup(distributed.Group):
    """A stand-in for two processes that computed the same thing: sums double."""

    def all_reduce_sum(self, tensor, what="a sum"):
        return tensor.mul_(2)


def test_summed_gradients_keep_absent_ones_absent():
    group = DoublingGroup(0, 2)
    a = torch.ones(2, 3, requires_grad=True)
    b = torch.ones(4, dtype=torch.float64, requires_grad=True)
    c = torch.ones(5, requires_grad=True)
    a.grad, b.grad = torch.full((2, 3), 0.5), torch.arange(4.0, dtype=torch.float64)
    loss = sum_gradients(group, [a, b, c], 1.25)
    assert loss == 2.5
    assert torch.equal(a.grad, torch.ones(2, 3))
    assert torch.equal(b.grad, 2 * torch.arange(4.0, dtype=torch.float64))
    assert c.grad is None


def test_a_shard_scaled_by_the_global_batch_gives_its_share_of_the_loss():
    # The fused path of a VAE: with batch_total = 2B a shard's loss and gradients are half.
    vae = small_vae()
    x = (torch.rand(8, 12, generator=torch.Generator().manual_seed(2)) > 0.5).float()
    trainer = Trainer(vae.model, vae.guide, pv.objectives.make("elbo"), 1e-3, vae)
    trainer.prepare(x)
    assert match(trainer.model, trainer.guide, (x,), {}) == (vae, 1 / 8)
    results = []
    for total in (None, 16):
        trainer.model.batch_total = trainer.guide.batch_total = total
        pyro.set_rng_seed(5)
        loss = trainer.loss_and_grads(x)
        results.append((loss, [p.grad.clone() for p in trainer.params()]))
    assert match(trainer.model, trainer.guide, (x,), {}) == (vae, 1 / 16)
    (full, full_grads), (half, half_grads) = results
    assert half == pytest.approx(full / 2, rel=1e-6)
    for g, h in zip(full_grads, half_grads, strict=True):
        torch.testing.assert_close(h, g / 2)
    per_example = PerExample(vae.model)
    assert per_example.scale(x) == 1 / 8
