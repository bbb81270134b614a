"""Guides (encoders) q_φ(z|x): amortised variational posteriors.

A guide is an ``nn.Module`` whose ``forward(x)`` takes a batch ``x`` of shape
``(B, *event_shape)`` and returns a reparameterisable distribution over z with
``batch_shape == (B,)`` and ``event_shape == (latent_dim,)``. The network is a
body (any module mapping x to features, such as :class:`pyro_vae.nets.MLP`);
the guide adds the heads that produce the distribution's parameters.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import pyro.distributions as dist
import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["Guide", "DiagonalNormal"]


def _head(net: nn.Module, out_features: int) -> nn.Module:
    """A linear layer on the body's features; lazy when the body does not say its width."""
    width = getattr(net, "out_features", None)
    if isinstance(width, int) and width > 0:
        return nn.Linear(width, out_features)
    return nn.LazyLinear(out_features)


class Guide(nn.Module, ABC):
    """Abstract base of guides: ``forward(x) -> Distribution`` over ``(latent_dim,)``.

    Arguments:
        net: the body, mapping ``(B, *event_shape)`` to features ``(B, F)``.
        latent_dim: size of z.
    """

    latent_dim: int
    has_rsample: bool = True

    def __init__(self, net: nn.Module, latent_dim: int) -> None:
        super().__init__()
        if not isinstance(net, nn.Module):
            raise TypeError(f"net must be a torch.nn.Module, got {type(net).__name__}")
        if isinstance(latent_dim, bool) or not isinstance(latent_dim, int) or latent_dim < 1:
            raise ValueError(f"latent_dim must be a positive integer, got {latent_dim!r}")
        self.net = net
        self.latent_dim = latent_dim

    @abstractmethod
    def forward(self, x: torch.Tensor) -> dist.TorchDistribution:
        """Returns q(z|x) with batch shape ``(B,)`` and event shape ``(latent_dim,)``."""

    def extra_repr(self) -> str:
        return f"latent_dim={self.latent_dim}"


class DiagonalNormal(Guide):
    """Mean-field Gaussian q(z|x) = N(z; μ(x), diag σ(x)²).

    The head maps the body's features h to (μ, ρ) and σ = softplus(ρ) + σ_min,
    which keeps σ positive and its gradient bounded.

    log q(z|x) = Σ_d [ -½ ((z_d - μ_d)/σ_d)² - log σ_d - ½ log 2π ].

    Arguments:
        net: the body; its ``out_features`` sizes the head (a lazy head otherwise).
        latent_dim: size of z.
        min_scale: σ_min, the floor of the standard deviations.

    Example:
        >>> from pyro_vae.nets import MLP
        >>> q = DiagonalNormal(MLP(784, [200]), latent_dim=10)
        >>> q(torch.zeros(5, 784)).batch_shape, q(torch.zeros(5, 784)).event_shape
        (torch.Size([5]), torch.Size([10]))
    """

    def __init__(self, net: nn.Module, latent_dim: int, min_scale: float = 1e-4) -> None:
        super().__init__(net, latent_dim)
        if not (min_scale >= 0 and math.isfinite(min_scale)):
            raise ValueError(f"min_scale must be a finite number >= 0, got {min_scale!r}")
        self.head = _head(net, 2 * latent_dim)
        self.min_scale = min_scale

    def forward(self, x: torch.Tensor) -> dist.TorchDistribution:
        loc, raw_scale = self.head(self.net(x)).chunk(2, dim=-1)
        scale = F.softplus(raw_scale) + self.min_scale
        return dist.Normal(loc, scale).to_event(1)
