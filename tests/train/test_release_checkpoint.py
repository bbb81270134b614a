"""A run folder written by release 0.1.0 loads and resumes with this code.

``tests/data/run-0.1.0`` was written by the 0.1.0 code, the flat package that the
layered one replaced, with::

    pyro-vae train --dataset digits --prior vamp --components 5 --guide iaf \
        --num-flows 1 --hidden 16 --latent-dim 2 --epochs 2 --objective iwae:k=3 \
        --lr-schedule burda2015 --adam-eps 1e-4 --seed 3 --no-progress \
        --num-samples 10 --out tests/data/run-0.1.0

(figures and lock files removed). It holds a learned prior, a flow guide, an
objective with particles and a learning-rate schedule: the parts whose state a
checkpoint carries.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
import torch

import pyro_vae as pv
from pyro_vae.cli import commands as cli

RELEASE_RUN = Path(__file__).parent / "data" / "run-0.1.0"
TRAIN = [
    "train", "--dataset", "digits", "--prior", "vamp", "--components", "5", "--guide", "iaf",
    "--num-flows", "1", "--hidden", "16", "--latent-dim", "2", "--objective", "iwae:k=3",
    "--lr-schedule", "burda2015", "--adam-eps", "1e-4", "--seed", "3", "--no-progress",
    "--num-samples", "10",
]  # fmt: skip


def _log(folder: Path) -> list[dict[str, str]]:
    with open(folder / "log.csv") as f:
        return list(csv.DictReader(f))


def test_a_release_checkpoint_loads_intact():
    for name in ("checkpoint.pt", "best.pt"):
        state = pv.checkpoints.load(RELEASE_RUN / name)  # the digest is checked on load
        assert state["config"]["prior"] == "vamp"
    run = pv.load_run(RELEASE_RUN)
    best = pv.checkpoints.load(RELEASE_RUN / "best.pt")
    assert isinstance(run.vae.prior, pv.priors.VampPrior)
    for name, value in run.vae.state_dict().items():
        assert torch.equal(value, best["params"][name]), name
    assert [row["epoch"] for row in run.history.rows] == [1, 2]


def test_a_release_run_resumes_where_a_run_of_this_code_would_be(tmp_path):
    """Epoch 3 resumed from the release's checkpoint is epoch 3 of a fresh run here.

    Equal up to rounding, not bit for bit: the fixture's first two epochs ran on
    another machine, whose CPU kernels may round differently.
    """
    resumed, fresh = tmp_path / "resumed", tmp_path / "fresh"
    shutil.copytree(RELEASE_RUN, resumed)
    assert cli.main(["train", "--resume", "--out", str(resumed), "--epochs", "3"]) == 0
    assert cli.main([*TRAIN, "--epochs", "3", "--out", str(fresh)]) == 0
    resumed_log = _log(resumed)
    assert resumed_log[:2] == _log(RELEASE_RUN)
    assert [row["epoch"] for row in resumed_log] == ["1", "2", "3"]
    a = pv.checkpoints.load(resumed / "checkpoint.pt")
    b = pv.checkpoints.load(fresh / "checkpoint.pt")
    assert a["params"].keys() == b["params"].keys()
    for name in a["params"]:
        torch.testing.assert_close(a["params"][name], b["params"][name], rtol=1e-4, atol=1e-5)
    fresh_loss = float(_log(fresh)[2]["train_loss"])
    assert float(resumed_log[2]["train_loss"]) == pytest.approx(fresh_loss, rel=1e-4)
