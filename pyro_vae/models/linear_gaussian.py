r"""The linear-Gaussian model (probabilistic PCA): a VAE whose every quantity is known exactly.

.. math::

    z \sim \mathcal{N}(0, I_d), \qquad x \mid z \sim \mathcal{N}(W z + b, \sigma^2 I_D).

Then :math:`x \sim \mathcal{N}(b, C)` with :math:`C = W W^\top + \sigma^2 I_D`, so

.. math::

    \log p(x) = \log \mathcal{N}(x;\, b,\, W W^\top + \sigma^2 I_D),

and the posterior is Gaussian: with :math:`M = W^\top W + \sigma^2 I_d`,

.. math::

    p(z \mid x) = \mathcal{N}(z;\, M^{-1} W^\top (x - b),\, \sigma^2 M^{-1}).

Every bound and estimator can therefore be checked against the truth: with the
exact posterior as guide every importance weight equals p(x), and for any other
Gaussian guide :math:`\mathrm{ELBO}(x) = \log p(x) - \mathrm{KL}(q(z \mid x) \,\|\, p(z \mid x))`
in closed form.

References:
    1. M. E. Tipping, C. M. Bishop. Probabilistic principal component analysis.
       J. R. Statist. Soc. B 61(3), 1999.
"""

from __future__ import annotations

import pyro.distributions as dist
import torch
from torch import nn

from pyro_vae.models.guides import Guide
from pyro_vae.models.likelihoods import Gaussian
from pyro_vae.models.priors import StandardNormal
from pyro_vae.models.vae import VAE

__all__ = ["LinearGaussian", "ExactPosterior"]


class LinearGaussian:
    r"""Parameters and closed forms of the linear-Gaussian model:

    .. math::

        z \sim \mathcal{N}(0, I_d), \qquad x \mid z \sim \mathcal{N}(W z + b, \sigma^2 I_D).

    Arguments:
        weight: W of shape ``(D, d)``.
        bias: b of shape ``(D,)``.
        noise_scale: :math:`\sigma > 0`.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, noise_scale: float) -> None:
        if weight.dim() != 2 or bias.shape != weight.shape[:1]:
            raise ValueError(
                f"weight must be (D, d) and bias (D,), got {tuple(weight.shape)} and "
                f"{tuple(bias.shape)}"
            )
        if not noise_scale > 0:
            raise ValueError(f"noise_scale must be positive, got {noise_scale!r}")
        self.weight, self.bias, self.noise_scale = weight, bias, float(noise_scale)

    @classmethod
    def random(
        cls,
        data_dim: int,
        latent_dim: int,
        noise_scale: float = 0.5,
        *,
        seed: int = 0,
        dtype: torch.dtype = torch.float64,
    ) -> LinearGaussian:
        """A model with W and b drawn from N(0, 1) by a generator seeded with ``seed``."""
        g = torch.Generator().manual_seed(seed)
        weight = torch.randn(data_dim, latent_dim, generator=g, dtype=dtype)
        bias = torch.randn(data_dim, generator=g, dtype=dtype)
        return cls(weight, bias, noise_scale)

    @property
    def data_dim(self) -> int:
        """D, the size of x."""
        return self.weight.shape[0]

    @property
    def latent_dim(self) -> int:
        """d, the size of z."""
        return self.weight.shape[1]

    def marginal(self) -> dist.MultivariateNormal:
        r""":math:`p(x) = \mathcal{N}(b, W W^\top + \sigma^2 I)`."""
        cov = self.weight @ self.weight.T
        cov = cov + self.noise_scale**2 * torch.eye(self.data_dim, dtype=cov.dtype)
        return dist.MultivariateNormal(self.bias, covariance_matrix=cov)

    def log_marginal(self, x: torch.Tensor) -> torch.Tensor:
        r""":math:`\log p(x)` for ``x`` of shape ``(N, D)``: ``(N,)``."""
        return self.marginal().log_prob(x)

    def posterior(self, x: torch.Tensor) -> dist.MultivariateNormal:
        r""":math:`p(z \mid x)` with batch shape ``(N,)`` and event shape ``(d,)``."""
        w = self.weight
        m = w.T @ w + self.noise_scale**2 * torch.eye(self.latent_dim, dtype=w.dtype)
        mean = torch.linalg.solve(m, w.T @ (x - self.bias).T).T
        return dist.MultivariateNormal(
            mean, covariance_matrix=self.noise_scale**2 * torch.inverse(m)
        )

    def sample(self, num: int, *, seed: int = 0) -> torch.Tensor:
        r"""Draws ``num`` examples :math:`x \sim p(x)`: ``(num, D)``."""
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(num, self.latent_dim, generator=g, dtype=self.weight.dtype)
        noise = torch.randn(num, self.data_dim, generator=g, dtype=self.weight.dtype)
        return z @ self.weight.T + self.bias + self.noise_scale * noise

    def kl_to_posterior(self, q: dist.Distribution, x: torch.Tensor) -> torch.Tensor:
        r""":math:`\mathrm{KL}(q(z \mid x) \,\|\, p(z \mid x))` for a Gaussian q: ``(N,)``.

        q has batch shape ``(N,)``.
        """
        if isinstance(q, dist.Independent) and isinstance(q.base_dist, dist.Normal):
            q = dist.MultivariateNormal(
                q.base_dist.loc, scale_tril=torch.diag_embed(q.base_dist.scale)
            )
        return torch.distributions.kl_divergence(q, self.posterior(x))

    def vae(self, guide: Guide | None = None) -> VAE:
        """This model as a :class:`~pyro_vae.VAE` (guide: the exact posterior by default)."""
        decoder = nn.Linear(self.latent_dim, self.data_dim).to(self.weight.dtype)
        with torch.no_grad():
            decoder.weight.copy_(self.weight)
            decoder.bias.copy_(self.bias)
        likelihood = Gaussian(decoder, scale=self.noise_scale).to(self.weight.dtype)
        return VAE(
            StandardNormal(self.latent_dim).to(self.weight.dtype),
            likelihood,
            guide if guide is not None else ExactPosterior(self),
        )


class ExactPosterior(Guide):
    r"""The guide :math:`q(z \mid x) = p(z \mid x)` of a :class:`LinearGaussian` model.

    Fixed, no parameters.
    """

    def __init__(self, model: LinearGaussian) -> None:
        super().__init__(nn.Identity(), model.latent_dim)
        self.model = model

    def forward(self, x: torch.Tensor) -> dist.TorchDistribution:
        return self.model.posterior(x)
