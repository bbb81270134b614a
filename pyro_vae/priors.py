"""Priors p(z) over the latent code.

A prior is an ``nn.Module`` whose ``forward()`` takes no input and returns a
distribution with ``event_shape == (latent_dim,)`` and empty batch shape; the
model's ``plate("data")`` broadcasts it over the mini-batch. Parameters and
buffers live on the module, so the prior follows ``.to(device)``.

:meth:`Prior.log_prob` and :meth:`Prior.kl_from` give log p(z) and the closed-form
KL(q ‖ p) as tensors; a prior may override them with the formula written
directly (the fused training path of :mod:`pyro_vae._fused` uses them).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import pyro.distributions as dist
import torch
from torch import nn
from torch.distributions import kl_divergence

from ._normal import HALF_LOG_2PI, diagonal_normal

__all__ = ["Prior", "StandardNormal"]


class Prior(nn.Module, ABC):
    """Abstract base of priors: ``forward() -> Distribution`` over ``(latent_dim,)``."""

    latent_dim: int

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        if isinstance(latent_dim, bool) or not isinstance(latent_dim, int) or latent_dim < 1:
            raise ValueError(f"latent_dim must be a positive integer, got {latent_dim!r}")
        self.latent_dim = latent_dim

    @abstractmethod
    def forward(self) -> dist.TorchDistribution:
        """Returns p(z) with batch shape ``()`` and event shape ``(latent_dim,)``."""

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) for ``z`` of shape ``(*batch, latent_dim)``: a tensor of shape ``(*batch)``."""
        return self().log_prob(z)

    def kl_from(self, q: dist.TorchDistribution) -> torch.Tensor:
        """KL(q ‖ p) in closed form, for q with event shape ``(latent_dim,)``.

        Returns:
            a tensor of shape ``q.batch_shape``.

        Raises:
            NotImplementedError: torch registers no closed form for the pair.
        """
        return kl_divergence(q, self())

    def extra_repr(self) -> str:
        return f"latent_dim={self.latent_dim}"


class StandardNormal(Prior):
    """The isotropic Gaussian prior p(z) = N(z; 0, I).

    log p(z) = -½ Σ_d z_d² - (D/2) log 2π.

    Example:
        >>> StandardNormal(3)().log_prob(torch.zeros(3)).item()  # doctest: +ELLIPSIS
        -2.7568...
    """

    def __init__(self, latent_dim: int) -> None:
        super().__init__(latent_dim)
        self.register_buffer("loc", torch.zeros(latent_dim))
        self.register_buffer("scale", torch.ones(latent_dim))

    def forward(self) -> dist.TorchDistribution:
        return dist.Normal(self.loc, self.scale).to_event(1)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return -0.5 * z.pow(2).sum(-1) - self.latent_dim * HALF_LOG_2PI

    def kl_from(self, q: dist.TorchDistribution) -> torch.Tensor:
        """KL(N(μ, diag σ²) ‖ N(0, I)) = ½ Σ_d (μ_d² + σ_d² - 1) - Σ_d log σ_d."""
        base = diagonal_normal(q)
        if base is None:
            return super().kl_from(q)
        loc, scale = base.loc, base.scale
        return 0.5 * (loc.pow(2) + scale.pow(2) - 1).sum(-1) - scale.log().sum(-1)
