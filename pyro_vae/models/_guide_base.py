r"""The base of guides, :class:`Guide`, and what every guide shares.

:func:`location` is a guide distribution's point summary; the helpers build and
check the heads and parameters that the guides of :mod:`pyro_vae.guides` and the
flow guides have in common.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import pyro.distributions as dist
import torch
from torch import nn
from torch.nn import functional as F

from pyro_vae._checks import check_number, check_positive_int

__all__ = [
    "Guide",
    "location",
    "linear_head",
    "check_guide_params",
    "check_min_scale",
    "diagonal_from_params",
]


def linear_head(net: nn.Module, out_features: int) -> nn.Module:
    """A linear layer on the body's features; lazy when the body does not say its width."""
    width = getattr(net, "out_features", None)
    if isinstance(width, int) and width > 0:
        return nn.Linear(width, out_features)
    return nn.LazyLinear(out_features)


def location(q: torch.distributions.Distribution) -> torch.Tensor:
    r"""A point summary of :math:`q(z \mid x)`: its mean, or for a flow :math:`f(\mathbb{E}[z_0])`.

    A flow's mean :math:`\mathbb{E}_q[z]` has no closed form; :math:`f(\mathbb{E}[z_0])`, the base
    mean pushed through the flow, is the deterministic point that reconstructions and unit
    activity use in its place. Shape: ``q.batch_shape + q.event_shape``.
    """
    if isinstance(q, torch.distributions.TransformedDistribution):
        z = location(q.base_dist)
        for transform in q.transforms:
            z = transform(z)
        return z
    return q.mean


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
        check_positive_int("latent_dim", latent_dim)
        self.net = net
        self.latent_dim = latent_dim

    @abstractmethod
    def forward(self, x: torch.Tensor) -> dist.TorchDistribution:
        r"""Returns :math:`q(z \mid x)` with batch shape ``(B,)``, event shape ``(latent_dim,)``."""

    def local_parameters(self, x: torch.Tensor) -> torch.Tensor:
        """The quantities the encoder outputs for ``x``: a tensor ``(B, P)``.

        With :meth:`distribution`, ``guide(x) == guide.distribution(guide.local_parameters(x))``.
        Freeing these P numbers per example gives the guide's *local* family, over which
        :func:`pyro_vae.gaps.fit_local_guides` optimises each example's ELBO.

        Raises:
            NotImplementedError: the guide does not split into parameters and a family.
        """
        raise NotImplementedError(
            f"{type(self).__name__} does not expose per-example parameters: implement "
            "local_parameters(x) and distribution(params) to use it with pyro_vae.gaps"
        )

    def distribution(self, params: torch.Tensor) -> dist.TorchDistribution:
        r""":math:`q(z)` from per-example parameters ``(B, P)``, of batch shape ``(B,)``.

        Raises:
            NotImplementedError: the guide does not split into parameters and a family.
        """
        raise NotImplementedError(
            f"{type(self).__name__} does not expose per-example parameters: implement "
            "local_parameters(x) and distribution(params) to use it with pyro_vae.gaps"
        )

    def extra_repr(self) -> str:
        return f"latent_dim={self.latent_dim}"


def check_guide_params(guide: Guide, params: object, width: int) -> torch.Tensor:
    """Per-example parameters: a floating tensor ``(B, width)``."""
    if not isinstance(params, torch.Tensor) or not params.is_floating_point():
        raise TypeError(f"params must be a floating torch.Tensor, got {type(params).__name__}")
    if params.dim() != 2 or params.shape[-1] != width:
        raise ValueError(
            f"params must have shape (B, {width}) for {type(guide).__name__}, "
            f"got {tuple(params.shape)}"
        )
    return params


def check_min_scale(min_scale: float) -> float:
    min_scale = check_number("min_scale", min_scale)
    if not (min_scale >= 0 and math.isfinite(min_scale)):
        raise ValueError(f"min_scale must be a finite number >= 0, got {min_scale!r}")
    return min_scale


def diagonal_from_params(params: torch.Tensor, min_scale: float) -> dist.TorchDistribution:
    """N(μ, diag σ²) from ``(μ, ρ)`` stacked on the last dim, σ = softplus(ρ) + σ_min."""
    loc, raw_scale = params.chunk(2, dim=-1)
    return dist.Normal(loc, F.softplus(raw_scale) + min_scale).to_event(1)
