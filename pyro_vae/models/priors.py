r"""Priors :math:`p(z)` over the latent code.

A prior is an ``nn.Module`` whose ``forward()`` takes no input and returns a
distribution with ``event_shape == (latent_dim,)`` and empty batch shape; the
model's ``plate("data")`` broadcasts it over the mini-batch. Parameters and
buffers live on the module, so the prior follows ``.to(device)``.

:meth:`Prior.log_prob` and :meth:`Prior.kl_from` give :math:`\log p(z)` and the closed-form
:math:`\mathrm{KL}(q \,\|\, p)` as tensors; a prior may override them with the formula written
directly (the fused training path of :mod:`pyro_vae.infer._fused` uses them).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pyro.distributions as dist
import torch
from pyro.distributions.torch_transform import TransformModule
from pyro.nn import AutoRegressiveNN
from torch import nn
from torch.nn import functional as F

from pyro_vae._checks import (
    check_event_shape,
    check_number,
    check_positive_int,
    check_sample,
    check_sizes,
)
from pyro_vae._defaults import MIXTURE_COMPONENTS, NUM_FLOWS
from pyro_vae.models._flows import AffineAutoregressiveStep
from pyro_vae.models._mixture import GaussianMixture
from pyro_vae.models._normal import (
    HALF_LOG_2PI,
    diagonal_normal,
    inverse_softplus,
    kl_to_diagonal_normal,
)
from pyro_vae.models._prior_base import Prior
from pyro_vae.models._vamp_prior import VampPrior

__all__ = [
    "Prior",
    "StandardNormal",
    "LearnedNormal",
    "MixtureOfGaussians",
    "VampPrior",
    "FlowPrior",
]


class StandardNormal(Prior):
    r"""The isotropic Gaussian prior :math:`p(z) = \mathcal{N}(z; 0, I)`.

    .. math:: \log p(z) = -\tfrac{1}{2} \sum_d z_d^2 - \tfrac{D}{2} \log 2\pi.

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
        check_sample("z", z, self.latent_dim)
        return -0.5 * z.pow(2).sum(-1) - self.latent_dim * HALF_LOG_2PI

    def kl_from(self, q: dist.TorchDistribution) -> torch.Tensor:
        r"""The KL in closed form:

        .. math::

            \mathrm{KL}(\mathcal{N}(\mu, \operatorname{diag} \sigma^2) \,\|\, \mathcal{N}(0, I))
            = \tfrac{1}{2} \sum_d (\mu_d^2 + \sigma_d^2 - 1) - \sum_d \log \sigma_d.

        A full-covariance :math:`q = \mathcal{N}(\mu, L L^\top)` gives
        :math:`\tfrac{1}{2} (\operatorname{tr} L L^\top + \mu^\top \mu - D) - \sum_d \log L_{dd}`.
        """
        base = diagonal_normal(check_event_shape("q", q, (self.latent_dim,)))
        if base is None:
            return kl_to_diagonal_normal(q, self.loc, self.scale, fallback=super().kl_from)
        loc, scale = base.loc, base.scale
        return 0.5 * (loc.pow(2) + scale.pow(2) - 1).sum(-1) - scale.log().sum(-1)


def _scale_parameter(shape: tuple[int, ...], init_scale: float, min_scale: float) -> nn.Parameter:
    """ρ with softplus(ρ) + min_scale = init_scale everywhere."""
    min_scale = check_number("min_scale", min_scale)
    init_scale = check_number("init_scale", init_scale)
    if not (math.isfinite(min_scale) and min_scale >= 0):
        raise ValueError(f"min_scale must be a finite number >= 0, got {min_scale!r}")
    if not (math.isfinite(init_scale) and init_scale > min_scale):
        raise ValueError(f"init_scale must be a finite number > min_scale, got {init_scale!r}")
    return nn.Parameter(torch.full(shape, inverse_softplus(init_scale - min_scale)))


class LearnedNormal(Prior):
    r"""A learned diagonal Gaussian :math:`p(z) = \mathcal{N}(z; m, \operatorname{diag} s^2)`.

    With :math:`s = \operatorname{softplus}(\rho) + s_{\min}`,

    .. math::

        \log p(z) = \sum_d \left[ -\tfrac{1}{2} \left(\frac{z_d - m_d}{s_d}\right)^2
        - \log s_d \right] - \tfrac{D}{2} \log 2\pi,

    and the KL from a diagonal or full-covariance Gaussian guide is in closed form.

    Arguments:
        latent_dim: D.
        init_scale: s at initialisation (m starts at 0, so the prior starts as
            :math:`\mathcal{N}(0, I)`).
        min_scale: :math:`s_{\min}`, the floor of s.
    """

    def __init__(self, latent_dim: int, init_scale: float = 1.0, min_scale: float = 1e-3) -> None:
        super().__init__(latent_dim)
        self.loc = nn.Parameter(torch.zeros(latent_dim))
        self.raw_scale = _scale_parameter((latent_dim,), init_scale, min_scale)
        self.min_scale = min_scale

    @property
    def scale(self) -> torch.Tensor:
        """The scales s of the prior, ``(latent_dim,)``."""
        return F.softplus(self.raw_scale) + self.min_scale

    def forward(self) -> dist.TorchDistribution:
        return dist.Normal(self.loc, self.scale).to_event(1)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        check_sample("z", z, self.latent_dim)
        scale = self.scale
        squares = ((z - self.loc) / scale).pow(2).sum(-1)
        return -0.5 * squares - scale.log().sum() - self.latent_dim * HALF_LOG_2PI

    def kl_from(self, q: dist.TorchDistribution) -> torch.Tensor:
        check_event_shape("q", q, (self.latent_dim,))
        return kl_to_diagonal_normal(q, self.loc, self.scale, fallback=super().kl_from)


class MixtureOfGaussians(Prior):
    r"""A learned mixture of Gaussians:

    .. math::

        p(z) = \sum_c \pi_c \mathcal{N}(z; \mu_c, \operatorname{diag} \sigma_c^2), \qquad
        \pi = \operatorname{softmax}(a),

    .. math::

        \log p(z) = \operatorname{logsumexp}_c \left[ \log \pi_c
        + \log \mathcal{N}(z; \mu_c, \operatorname{diag} \sigma_c^2) \right],

    computed without a (…, C, D) intermediate (see :mod:`pyro_vae.models._mixture`). No
    closed-form KL exists, so ``analytic-kl`` estimates it by Monte Carlo and says so.

    Arguments:
        latent_dim: D.
        num_components: C.
        init_spread: the means start as independent :math:`\mathcal{N}(0, \mathtt{init\_spread}^2)`
            draws (torch's global generator), which breaks the symmetry between components.
        init_scale: σ at initialisation.
        min_scale: the floor of σ.
    """

    def __init__(
        self,
        latent_dim: int,
        num_components: int = MIXTURE_COMPONENTS,
        init_spread: float = 1.0,
        init_scale: float = 1.0,
        min_scale: float = 1e-3,
    ) -> None:
        super().__init__(latent_dim)
        check_positive_int("num_components", num_components)
        init_spread = check_number("init_spread", init_spread)
        if not (math.isfinite(init_spread) and init_spread >= 0):
            raise ValueError(f"init_spread must be a finite number >= 0, got {init_spread!r}")
        self.logits = nn.Parameter(torch.zeros(num_components))
        self.loc = nn.Parameter(init_spread * torch.randn(num_components, latent_dim))
        self.raw_scale = _scale_parameter((num_components, latent_dim), init_scale, min_scale)
        self.min_scale = min_scale

    @property
    def num_components(self) -> int:
        """C, the number of mixture components."""
        return self.logits.shape[0]

    def forward(self) -> dist.TorchDistribution:
        scale = F.softplus(self.raw_scale) + self.min_scale
        return GaussianMixture(self.logits, self.loc, scale)

    def extra_repr(self) -> str:
        return f"latent_dim={self.latent_dim}, num_components={self.num_components}"


def _alternating(latent_dim: int, step: int) -> torch.Tensor:
    """The identity order on even steps, the reversed order on odd ones."""
    order = torch.arange(latent_dim)
    return order if step % 2 == 0 else order.flip(0)


class FlowPrior(Prior):
    r"""A normalizing flow on a standard normal: :math:`z = f(\epsilon)`.

    .. math::

        \epsilon \sim \mathcal{N}(0, I), \qquad
        \log p(z) = \log \mathcal{N}(f^{-1}(z); 0, I)
        + \log \left|\det \frac{\partial f^{-1}}{\partial z}\right|

    By default :math:`f^{-1}` is a masked autoregressive flow (Papamakarios et al. 2017):
    ``num_flows`` steps of Pyro's :class:`~pyro.distributions.transforms.AffineAutoregressive`
    used in their inverse direction, each
    :math:`\epsilon_d = (z_d - \mu_d(z_{<d})) \exp(-\log \sigma_d(z_{<d}))`, with the variable
    order reversed between steps. Evaluating :math:`\log p(z)`, which training does, is one
    network pass per step; drawing from the prior takes D passes per step.

    Arguments:
        latent_dim: D.
        num_flows: number of autoregressive steps.
        hidden: hidden widths of each step's MADE network (default ``[4 D]``, at least 16).
        transforms: instead of the default, any ``pyro.distributions.transforms``
            ``TransformModule`` objects, in sampling order: :math:`z = t_n(\dots t_1(\epsilon))`.
            Their parameters are learned; their inverse must be computable for :math:`\log p(z)`.

    References:
        1. G. Papamakarios, T. Pavlakou, I. Murray. Masked autoregressive flow for
           density estimation. NeurIPS 2017.
    """

    def __init__(
        self,
        latent_dim: int,
        num_flows: int = NUM_FLOWS,
        hidden: Sequence[int] | None = None,
        transforms: Sequence[TransformModule] | None = None,
    ) -> None:
        super().__init__(latent_dim)
        self.register_buffer("loc", torch.zeros(latent_dim))
        self.register_buffer("scale", torch.ones(latent_dim))
        if transforms is not None:
            transforms = list(transforms)
            bad = [type(t).__name__ for t in transforms if not isinstance(t, TransformModule)]
            if bad or not transforms:
                raise TypeError(
                    "transforms must be a non-empty list of pyro.distributions.transforms "
                    f"TransformModules, got {bad or 'an empty list'}"
                )
            self.flows = nn.ModuleList(transforms)
            self.inverted = False
            return
        check_positive_int("num_flows", num_flows)
        hidden = check_sizes("hidden", hidden) if hidden is not None else [max(16, 4 * latent_dim)]
        if min(hidden) < latent_dim:
            raise ValueError(
                f"hidden widths must be at least latent_dim={latent_dim}, got {hidden}"
            )
        self.flows = nn.ModuleList(
            AffineAutoregressiveStep(
                AutoRegressiveNN(latent_dim, hidden, permutation=_alternating(latent_dim, step))
            )
            for step in range(num_flows)
        )
        self.inverted = True

    def forward(self) -> dist.TorchDistribution:
        base = dist.Normal(self.loc, self.scale).to_event(1)
        flows: list[Any] = list(self.flows)
        transforms = [f.inv for f in reversed(flows)] if self.inverted else flows
        return dist.TransformedDistribution(base, transforms)

    def extra_repr(self) -> str:
        return f"latent_dim={self.latent_dim}, num_flows={len(self.flows)}"
