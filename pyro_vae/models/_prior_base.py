"""The base of every prior p(z): ``forward() -> Distribution`` with ``log_prob`` and ``kl_from``."""

from __future__ import annotations

from abc import ABC, abstractmethod

import pyro.distributions as dist
import torch
from torch import nn
from torch.distributions import kl_divergence

from pyro_vae._checks import check_event_shape, check_positive_int, check_sample

__all__ = ["Prior"]


class Prior(nn.Module, ABC):
    """Abstract base of priors: ``forward() -> Distribution`` over ``(latent_dim,)``."""

    latent_dim: int

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        check_positive_int("latent_dim", latent_dim)
        self.latent_dim = latent_dim

    @abstractmethod
    def forward(self) -> dist.TorchDistribution:
        r"""Returns :math:`p(z)` with batch shape ``()`` and event shape ``(latent_dim,)``."""

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        r""":math:`\log p(z)` for ``z`` of shape ``(*batch, latent_dim)``.

        Returns:
            a tensor of shape ``(*batch)``.
        """
        return self().log_prob(check_sample("z", z, self.latent_dim))

    def kl_from(self, q: dist.TorchDistribution) -> torch.Tensor:
        r""":math:`\mathrm{KL}(q \,\|\, p)` in closed form for q with event shape ``(latent_dim,)``.

        Returns:
            a tensor of shape ``q.batch_shape``.

        Raises:
            NotImplementedError: torch registers no closed form for the pair.
        """
        return kl_divergence(check_event_shape("q", q, (self.latent_dim,)), self())

    def extra_repr(self) -> str:
        return f"latent_dim={self.latent_dim}"
