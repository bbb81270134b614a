"""Shared fixtures: every test starts with an empty param store and a fixed seed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from bad_input import TINY, run_cli
from torch import nn

from pyro_vae.models import guides, likelihoods, nets, priors
from pyro_vae.models.vae import VAE
from pyro_vae.train import checkpoints


@pytest.fixture(autouse=True)
def fresh_pyro_state():
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    yield
    pyro.clear_param_store()


def small_vae(data_dim: int = 12, latent_dim: int = 3, likelihood: str = "bernoulli") -> VAE:
    """A VAE small enough for fast tests, with the named likelihood head."""
    decoder = nets.MLP(latent_dim, [16], data_dim)
    head = {
        "bernoulli": likelihoods.Bernoulli,
        "continuous-bernoulli": likelihoods.ContinuousBernoulli,
        "gaussian": likelihoods.Gaussian,
    }[likelihood](decoder)
    return VAE(
        priors.StandardNormal(latent_dim),
        head,
        guides.DiagonalNormal(nets.MLP(data_dim, [16]), latent_dim=latent_dim),
    )


def binary_data(n: int = 40, data_dim: int = 12, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.bernoulli(torch.rand(n, data_dim, generator=g), generator=g)


def shift_model(x: torch.Tensor) -> None:
    """A plain Pyro model without latent variables, x ~ N(b, 1): its training draws no
    random numbers, so two runs of it differ only where the training itself differs."""
    b = pyro.param("b", torch.zeros(x.shape[1]))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("x", dist.Normal(b, 1.0).to_event(1), obs=x)


def empty_guide(x: torch.Tensor) -> None:
    """The guide of a model without latent variables."""


class PartlyCollapsed(guides.Guide):
    """q(z_u|x) = N(3 x_u - 1.5, 0.5²) for the first ``active`` units (x binary, so
    KL_u = ½ (0.25 + 2.25 - 1 - log 0.25) for every x) and N(0, 1) = p(z_u) for the rest."""

    def __init__(self, active: int, collapsed: int) -> None:
        super().__init__(nn.Identity(), active + collapsed)
        self.active = active

    def forward(self, x: torch.Tensor) -> dist.TorchDistribution:
        rest = x.new_zeros(x.shape[0], self.latent_dim - self.active)
        loc = torch.cat([3 * x[:, : self.active] - 1.5, rest], dim=1)
        scale = torch.cat([torch.full_like(x[:, : self.active], 0.5), rest + 1], dim=1)
        return dist.Normal(loc, scale).to_event(1)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A real run's checkpoint and every kind of bad file, made once for the module."""
    root = tmp_path_factory.mktemp("bad-files")
    run = root / "run"
    code, err = run_cli(["train", *TINY, "--out", str(run), "--no-progress"], root)
    assert code == 0, err
    good = run / "checkpoint.pt"
    raw = good.read_bytes()
    state = checkpoints.load(good)
    paths = {"checkpoint": good, "folder": root / "a-folder", "missing": root / "missing.pt"}
    paths["folder"].mkdir()
    blobs = {
        "empty": b"",
        "garbage": np.random.default_rng(0).bytes(300),
        "truncated": raw[: len(raw) // 2],
        "text": b"hello\n",
    }
    for name, blob in blobs.items():
        paths[name] = root / f"{name}.pt"
        paths[name].write_bytes(blob)
    paths["plain_torch"] = root / "plain.pt"
    torch.save({"a": torch.zeros(2)}, paths["plain_torch"])
    paths["foreign"] = checkpoints.save({"params": {}, "config": {"x": 1}}, root / "foreign.pt")
    bad = {**state, "config": {**state["config"], "latent_dim": "abc"}}
    paths["bad_config"] = checkpoints.save(bad, root / "bad-config.pt")
    paths["params_list"] = checkpoints.save({**state, "params": [1, 2]}, root / "params.pt")
    configs = {
        "good": {"dataset": "digits", "epochs": 1, "hidden": [8], "latent_dim": 2,
                 "num-samples": 2, "components": 2, "batch_size": 500},
        "unknown_key": {"epochs": 1, "latent_size": 3},
        "wrong_type": {"epochs": True},
        "wrong_value": {"latent_dim": 0},
        "nested": {"hidden": {"a": 1}},
        "array": [1, 2],
    }  # fmt: skip
    for name, value in configs.items():
        paths[f"config_{name}"] = root / f"{name}.json"
        paths[f"config_{name}"].write_text(json.dumps(value))
    paths["config_invalid"] = root / "invalid.json"
    paths["config_invalid"].write_text('{"epochs": 1,')
    paths["config_binary"] = root / "binary.json"
    paths["config_binary"].write_bytes(b"\xff\xfe\x00")
    paths["mnist_dir"] = root / "mnist"
    paths["mnist_dir"].mkdir()
    (paths["mnist_dir"] / "mnist.npz").write_bytes(b"PK\x03\x04 not really a zip")
    return paths
