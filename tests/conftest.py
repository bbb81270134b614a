"""Shared fixtures: every test starts with an empty param store and a fixed seed."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch
from torch import nn

from pyro_vae.models import guides, likelihoods, nets, priors
from pyro_vae.models.vae import VAE


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
