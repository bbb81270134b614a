r"""Guides (encoders) :math:`q_\phi(z \mid x)`: amortised variational posteriors.

A guide is an ``nn.Module`` whose ``forward(x)`` takes a batch ``x`` of shape
``(B, *event_shape)`` and returns a reparameterisable distribution over z with
``batch_shape == (B,)`` and ``event_shape == (latent_dim,)``. The network is a
body (any module mapping x to features, such as :class:`pyro_vae.nets.MLP`);
the guide adds the heads that produce the distribution's parameters.
"""

from __future__ import annotations

import pyro.distributions as dist
import torch
from torch import nn
from torch.nn import functional as F

from pyro_vae.models._flow_guides import AffineCouplingFlow, InverseAutoregressiveFlow
from pyro_vae.models._guide_base import (
    Guide,
    check_guide_params,
    check_min_scale,
    diagonal_from_params,
    linear_head,
    location,
)

__all__ = [
    "Guide",
    "DiagonalNormal",
    "FullCovarianceNormal",
    "InverseAutoregressiveFlow",
    "AffineCouplingFlow",
    "location",
]


class DiagonalNormal(Guide):
    r"""Mean-field Gaussian:

    .. math:: q(z \mid x) = \mathcal{N}(z; \mu(x), \operatorname{diag} \sigma(x)^2).

    The head maps the body's features h to :math:`(\mu, \rho)` and
    :math:`\sigma = \operatorname{softplus}(\rho) + \sigma_{\min}`, which keeps σ positive and its
    gradient bounded.

    .. math::

        \log q(z \mid x) = \sum_d \left[ -\tfrac{1}{2} \left(\frac{z_d - \mu_d}{\sigma_d}\right)^2
        - \log \sigma_d - \tfrac{1}{2} \log 2\pi \right].

    Arguments:
        net: the body; its ``out_features`` sizes the head (a lazy head otherwise).
        latent_dim: size of z.
        min_scale: :math:`\sigma_{\min}`, the floor of the standard deviations.

    Example:
        >>> from pyro_vae.nets import MLP
        >>> q = DiagonalNormal(MLP(784, [200]), latent_dim=10)
        >>> q(torch.zeros(5, 784)).batch_shape, q(torch.zeros(5, 784)).event_shape
        (torch.Size([5]), torch.Size([10]))
    """

    def __init__(self, net: nn.Module, latent_dim: int, min_scale: float = 1e-4) -> None:
        super().__init__(net, latent_dim)
        self.head = linear_head(net, 2 * latent_dim)
        self.min_scale = check_min_scale(min_scale)

    def forward(self, x: torch.Tensor) -> dist.TorchDistribution:
        return diagonal_from_params(self.head(self.net(x)), self.min_scale)

    def local_parameters(self, x: torch.Tensor) -> torch.Tensor:
        r"""The head's output (μ, ρ), ``(B, 2 D)``.

        Any diagonal Gaussian with :math:`\sigma > \sigma_{\min}` has one.
        """
        return self.head(self.net(x))

    def distribution(self, params: torch.Tensor) -> dist.TorchDistribution:
        r"""The distribution from ``params = (μ, ρ)``, ``(B, 2 D)``:

        .. math::

            \mathcal{N}(\mu, \operatorname{diag} \sigma^2), \qquad
            \sigma = \operatorname{softplus}(\rho) + \sigma_{\min}.
        """
        return diagonal_from_params(
            check_guide_params(self, params, 2 * self.latent_dim), self.min_scale
        )


class FullCovarianceNormal(Guide):
    r"""Full-covariance Gaussian :math:`q(z \mid x) = \mathcal{N}(z; \mu(x), L(x) L(x)^\top)`.

    The head maps the body's features to μ, the diagonal of the Cholesky factor
    :math:`L_{dd} = \operatorname{softplus}(\rho_d) + \sigma_{\min}`, and the
    :math:`D(D-1)/2` entries below it (unconstrained).

    .. math::

        \log q(z \mid x) = -\tfrac{1}{2} \|L^{-1}(z - \mu)\|^2 - \sum_d \log L_{dd}
        - \tfrac{D}{2} \log 2\pi.

    Arguments:
        net: the body; its ``out_features`` sizes the head (a lazy head otherwise).
        latent_dim: size of z.
        min_scale: :math:`\sigma_{\min}`, the floor of L's diagonal.
    """

    def __init__(self, net: nn.Module, latent_dim: int, min_scale: float = 1e-4) -> None:
        super().__init__(net, latent_dim)
        self.min_scale = check_min_scale(min_scale)
        self.head = linear_head(net, 2 * latent_dim + latent_dim * (latent_dim - 1) // 2)
        rows, cols = torch.tril_indices(latent_dim, latent_dim, offset=-1)
        self.register_buffer("_rows", rows, persistent=False)
        self.register_buffer("_cols", cols, persistent=False)

    def forward(self, x: torch.Tensor) -> dist.TorchDistribution:
        return self._distribution(self.head(self.net(x)))

    def local_parameters(self, x: torch.Tensor) -> torch.Tensor:
        r"""The head's output (μ, ρ, L below the diagonal): ``(B, 2 D + D (D - 1) / 2)``.

        Every Gaussian whose Cholesky diagonal exceeds :math:`\sigma_{\min}` has such parameters.
        """
        return self.head(self.net(x))

    def distribution(self, params: torch.Tensor) -> dist.TorchDistribution:
        r""":math:`\mathcal{N}(\mu, L L^\top)` from ``params``, ``(B, 2 D + D (D - 1) / 2)``."""
        d = self.latent_dim
        return self._distribution(check_guide_params(self, params, 2 * d + d * (d - 1) // 2))

    def _distribution(self, params: torch.Tensor) -> dist.TorchDistribution:
        d = self.latent_dim
        loc, raw_diagonal, below = params.split([d, d, params.shape[-1] - 2 * d], dim=-1)
        tril = torch.diag_embed(F.softplus(raw_diagonal) + self.min_scale)
        tril[..., self._rows, self._cols] = below  # a fresh tensor: autograd allows it
        return dist.MultivariateNormal(loc, scale_tril=tril)
