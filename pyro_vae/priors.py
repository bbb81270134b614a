"""Priors p(z) over the latent code.

A prior is an ``nn.Module`` whose ``forward()`` takes no input and returns a
distribution with ``event_shape == (latent_dim,)`` and empty batch shape; the
model's ``plate("data")`` broadcasts it over the mini-batch. Parameters and
buffers live on the module, so the prior follows ``.to(device)``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import pyro.distributions as dist
import torch
from torch import nn

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
