r"""Likelihoods (decoders) :math:`p_\theta(x \mid z)`: a distribution head over a network.

A likelihood is an ``nn.Module`` whose ``forward(z)`` maps latents of shape
``(*batch, latent_dim)`` (batch may include leading particle dimensions) to a
distribution over x with ``batch_shape == batch`` and ``event_shape`` equal to
the trailing shape of the network's output, the data's event shape. Each head
declares its ``support``, so data can be checked before training.

:meth:`Likelihood.log_prob` gives :math:`\log p(x \mid z)` summed over the event without
building a distribution; heads override it with the same formula written
directly (the fused training path of :mod:`pyro_vae.infer._fused` uses it).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import pyro.distributions as dist
import torch
from torch import nn
from torch.distributions import constraints
from torch.nn import functional as F

from pyro_vae._checks import check_number
from pyro_vae._defaults import LIKELIHOOD_SCALE
from pyro_vae.models._continuous_bernoulli import ContinuousBernoulliDistribution
from pyro_vae.models._discretized import (
    DiscretizedLogisticDistribution,
    UnitGrid,
    check_num_bins,
    discretized_logistic_log_prob,
)
from pyro_vae.models._normal import HALF_LOG_2PI, inverse_softplus

_LOG_2 = math.log(2.0)

__all__ = [
    "Likelihood",
    "Bernoulli",
    "ContinuousBernoulli",
    "Gaussian",
    "Laplace",
    "DiscretizedLogistic",
    "DiscretizedLogisticDistribution",
]


class Likelihood(nn.Module, ABC):
    """Abstract base of likelihoods: ``forward(z) -> Distribution`` over x.

    Subclasses implement :meth:`distribution`, which turns the network's raw
    output into a distribution with one batch entry per data dimension; the
    base class reinterprets the data dimensions as the event.

    Arguments:
        net: maps ``(*batch, latent_dim)`` to raw parameters ``(*batch, *event_shape)``.
    """

    support: constraints.Constraint
    support_description: str
    support_hint: str = ""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        if not isinstance(net, nn.Module):
            raise TypeError(f"net must be a torch.nn.Module, got {type(net).__name__}")
        self.net = net

    @abstractmethod
    def distribution(self, params: torch.Tensor) -> dist.TorchDistribution:
        """Elementwise distribution of x given the network output, same shape as ``params``."""

    def forward(self, z: torch.Tensor) -> dist.TorchDistribution:
        r"""The distribution :math:`p_\theta(x \mid z)`: batch shape z's ``(*batch,)``, event
        shape the data's."""
        params = self._params(z)
        return self.distribution(params).to_event(params.dim() - (z.dim() - 1))

    def _params(self, z: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        """The network's output for ``z``, checked to keep z's batch dims (and fit ``x``)."""
        params = self.net(z)
        batch_dims = z.dim() - 1
        if params.dim() <= batch_dims or params.shape[:batch_dims] != z.shape[:-1]:
            raise ValueError(
                f"the likelihood's network mapped z of shape {tuple(z.shape)} to "
                f"{tuple(params.shape)}; it must keep z's leading dimensions {tuple(z.shape[:-1])}"
            )
        if x is not None:
            event = params.shape[batch_dims:]
            if x.shape[x.dim() - len(event) :] != event or x.dim() < len(event):
                raise ValueError(
                    f"x has shape {tuple(x.shape)} but the likelihood's event shape is "
                    f"{tuple(event)}"
                )
            if not x.is_floating_point():
                raise TypeError(f"x must have a floating dtype, got {x.dtype}")
            batch = x.shape[: x.dim() - len(event)]
            try:
                torch.broadcast_shapes(batch, z.shape[:-1])
            except RuntimeError:
                raise ValueError(
                    f"x has batch shape {tuple(batch)}, which does not broadcast against z's "
                    f"{tuple(z.shape[:-1])}"
                ) from None
        return params

    def log_prob(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        r""":math:`\log p(x \mid z)` summed over the event dimensions.

        Arguments:
            x: data ``(B, *event_shape)``, broadcast against z's batch.
            z: latents ``(*batch, latent_dim)``, batch ending in B (``(K, B)`` with particles).

        Returns:
            a tensor of shape ``(*batch)``, equal to ``self(z).log_prob(x)``.
        """
        params = self._params(z, x)
        return self.distribution(params).to_event(params.dim() - (z.dim() - 1)).log_prob(x)


class Bernoulli(Likelihood):
    r"""Bernoulli pixels with logits from the network, for binary data :math:`x \in \{0, 1\}`.

    .. math:: \log p(x \mid z) = \sum_i \left[ x_i \ell_i - \log(1 + e^{\ell_i}) \right],
        \qquad \ell = \mathrm{net}(z),

    computed stably from the logits.
    """

    support = constraints.boolean
    support_description = "binary values {0, 1}"
    support_hint = (
        "; binarise grey levels in [0, 1] first: data.load(..., binarize='static'), "
        "or fit(..., binarize=True) for a fresh draw every step"
    )

    def distribution(self, params: torch.Tensor) -> dist.TorchDistribution:
        return dist.Bernoulli(logits=params)

    def log_prob(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        logits = self._params(z, x)
        if logits.requires_grad:  # training: BCE's backward is one fused kernel
            nll = F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none")
            return -nll.flatten(z.dim() - 1).sum(-1)  # negated after the sum: one pass fewer
        # Without gradients (evaluation), Σ x ℓ − Σ softplus(ℓ): the same value, exact for
        # any x, without BCE's expanded copy of x and its intermediate arrays. einsum takes
        # Σ x ℓ as a batched matrix product, with no (K, B, D) product in memory.
        flat = logits.flatten(z.dim() - 1)
        events = logits.dim() - (z.dim() - 1)
        flat_x = x.flatten(x.dim() - events)
        if flat_x.dim() == 2 and flat_x.shape == flat.shape[-2:]:
            dot = torch.einsum("...bd,bd->...b", flat, flat_x)
        else:  # x with other batch dimensions: plain broadcasting
            dot = (flat * flat_x).sum(-1)
        return dot - F.softplus(flat).sum(-1)


class ContinuousBernoulli(Likelihood):
    r"""Continuous Bernoulli (Loaiza-Ganem & Cunningham 2019) for intensities :math:`x \in [0, 1]`.

    .. math::

        \log p(x \mid z) = \sum_i \left[ x_i \log \lambda_i + (1 - x_i) \log(1 - \lambda_i)
        + \log C(\lambda_i) \right], \qquad \lambda = \mathrm{sigmoid}(\mathrm{net}(z)),

    where :math:`C(\lambda) = 2 \operatorname{artanh}(1 - 2\lambda) / (1 - 2\lambda)
    = \ell / \tanh(\ell/2)`, :math:`\ell = \mathrm{net}(z)`, normalises the density on
    [0, 1]; it is computed from ℓ, exact for any finite ℓ (see
    :mod:`pyro_vae.models._continuous_bernoulli`).

    References:
        1. G. Loaiza-Ganem, J. P. Cunningham. The continuous Bernoulli: fixing a pervasive
           error in variational autoencoders. NeurIPS 2019.
    """

    support = constraints.unit_interval
    support_description = "values in [0, 1]"

    def distribution(self, params: torch.Tensor) -> dist.TorchDistribution:
        # Not torch's own: it clamps λ to [ε, 1 - ε], so its log C(λ) is wrong (0.23 nats per
        # pixel at logit 20 in float32) once λ saturates; see _continuous_bernoulli.py.
        return ContinuousBernoulliDistribution(logits=params)


class _ScaledLikelihood(Likelihood):
    """A head with one scale shared by all pixels, fixed or learned.

    A fixed scale is the buffer ``fixed_scale``; a learned one is the parameter ``raw_scale``
    = ρ with scale = softplus(ρ) + min_scale. Subclasses read it as :attr:`scale`.
    """

    def __init__(
        self,
        net: nn.Module,
        scale: float = LIKELIHOOD_SCALE,
        learn_scale: bool = False,
        min_scale: float = 1e-3,
    ) -> None:
        super().__init__(net)
        scale, min_scale = check_number("scale", scale), check_number("min_scale", min_scale)
        if not isinstance(learn_scale, bool):
            raise TypeError(f"learn_scale must be True or False, got {learn_scale!r}")
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"scale must be a positive finite number, got {scale!r}")
        if not (math.isfinite(min_scale) and 0 <= min_scale < scale):
            raise ValueError(f"min_scale must be in [0, scale={scale}), got {min_scale!r}")
        self.learn_scale = learn_scale
        self.min_scale = min_scale
        if learn_scale:
            self.raw_scale = nn.Parameter(torch.tensor(inverse_softplus(scale - min_scale)))
        else:
            self.register_buffer("fixed_scale", torch.tensor(float(scale)))

    @property
    def scale(self) -> torch.Tensor:
        """The scale as a 0-dimensional tensor."""
        if self.learn_scale:
            return F.softplus(self.raw_scale) + self.min_scale
        return self.fixed_scale

    def extra_repr(self) -> str:
        return f"learn_scale={self.learn_scale}"


class Gaussian(_ScaledLikelihood):
    r"""Gaussian pixels with mean from the network, for real-valued data:

    .. math:: x_i \sim \mathcal{N}(\mu_i(z), \sigma^2),

    .. math::

        \log p(x \mid z) = \sum_i \left[ -\tfrac{1}{2} \left(\frac{x_i - \mu_i}{\sigma}\right)^2
        - \log \sigma - \tfrac{1}{2} \log 2\pi \right].

    Arguments:
        net: maps z to the mean μ.
        scale: σ, the standard deviation shared by all pixels (its initial value when learned).
        learn_scale: learn σ as one parameter,
            :math:`\sigma = \operatorname{softplus}(\rho) + \mathtt{min\_scale}`.
        min_scale: floor of a learned σ, which keeps the density bounded on constant pixels.
    """

    support = constraints.real
    support_description = "finite real values"

    def distribution(self, params: torch.Tensor) -> dist.TorchDistribution:
        return dist.Normal(params, self.scale.to(params.dtype).expand(params.shape))

    def log_prob(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        loc = self._params(z, x)
        scale = self.scale.to(loc.dtype)
        squares = (x - loc).pow(2).flatten(z.dim() - 1).sum(-1)
        size = math.prod(loc.shape[z.dim() - 1 :])
        return -squares / (2 * scale.pow(2)) - size * (scale.log() + HALF_LOG_2PI)


class Laplace(_ScaledLikelihood):
    r"""Laplace pixels with location from the network, for real data:

    .. math:: x_i \sim \operatorname{Laplace}(\mu_i(z), b),

    .. math::

        \log p(x \mid z) = \sum_i \left[ -\frac{|x_i - \mu_i|}{b} - \log 2b \right];

    heavier tails than :class:`Gaussian`, so the fit (the conditional median) is less
    pulled by outlying pixels.

    Arguments:
        net: maps z to the location μ.
        scale: b, the scale shared by all pixels (its initial value when learned); the standard
            deviation is :math:`\sqrt{2}\, b`.
        learn_scale: learn b as one parameter,
            :math:`b = \operatorname{softplus}(\rho) + \mathtt{min\_scale}`.
        min_scale: floor of a learned b, which keeps the density bounded on constant pixels.
    """

    support = constraints.real
    support_description = "finite real values"

    def distribution(self, params: torch.Tensor) -> dist.TorchDistribution:
        return dist.Laplace(params, self.scale.to(params.dtype).expand(params.shape))

    def log_prob(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        loc = self._params(z, x)
        scale = self.scale.to(loc.dtype)
        deviations = (x - loc).abs().flatten(z.dim() - 1).sum(-1)
        size = math.prod(loc.shape[z.dim() - 1 :])
        return -deviations / scale - size * (scale.log() + _LOG_2)


class DiscretizedLogistic(_ScaledLikelihood):
    r"""Discretised logistic pixels for quantised intensities on the grid {0, 1/(n-1), ..., 1}.

    :math:`x_i = \operatorname{round}((n-1) \operatorname{clamp}(y_i, 0, 1)) / (n-1)` with
    :math:`y_i \sim \operatorname{Logistic}(\mu_i(z), s)`. With the half bin
    :math:`h = 1/(2(n-1))`,

    .. math::

        \log p(x \mid z) = \sum_i \log P(x_i), \qquad
        P(x) = \sigma\left(\frac{x + h - \mu}{s}\right) - \sigma\left(\frac{x - h - \mu}{s}\right),

    with the edge bins taking the tails: :math:`P(0) = \sigma((h - \mu)/s)`,
    :math:`P(1) = 1 - \sigma((1 - h - \mu)/s)`. It is a probability (:math:`\log p \le 0`), so
    unlike a density on [0, 1] it cannot grow without bound on constant pixels, and it is
    computed stably in log space for any μ and s.

    Arguments:
        net: maps z to the location μ (unconstrained; data lie in [0, 1]).
        num_bins: :math:`n \ge 2`, the number of grey levels: 256 for 8-bit images scaled by
            1/255, 17 for the scikit-learn digits (0-16) scaled by 1/16, 2 for binary data.
        scale: s, the logistic scale shared by all pixels, in data units (its initial value
            when learned); the standard deviation of the logistic is :math:`\pi s / \sqrt{3}`.
        learn_scale: learn s as one parameter,
            :math:`s = \operatorname{softplus}(\rho) + \mathtt{min\_scale}`.
        min_scale: floor of a learned s.

    References:
        1. T. Salimans, A. Karpathy, X. Chen, D. P. Kingma. PixelCNN++: improving the PixelCNN
           with discretized logistic mixture likelihood and other modifications. ICLR 2017.
    """

    def __init__(
        self,
        net: nn.Module,
        num_bins: int = 256,
        scale: float = LIKELIHOOD_SCALE,
        learn_scale: bool = True,
        min_scale: float = 1e-4,
    ) -> None:
        super().__init__(net, scale, learn_scale, min_scale)
        self.num_bins = check_num_bins(num_bins)
        self.support = UnitGrid(num_bins)
        levels = num_bins - 1
        grid = "{0, 1}" if levels == 1 else f"{{0, 1/{levels}, ..., 1}}"
        self.support_description = f"grey levels on the grid {grid}"
        self.support_hint = (
            f"; scale integer levels 0..{levels} to [0, 1] with x / {levels}, or set num_bins "
            "to the number of grey levels of the data"
        )

    def distribution(self, params: torch.Tensor) -> dist.TorchDistribution:
        scale = self.scale.to(params.dtype).expand(params.shape)
        return DiscretizedLogisticDistribution(params, scale, self.num_bins)

    def log_prob(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        loc = self._params(z, x)
        scale = self.scale.to(loc.dtype)
        log_p = discretized_logistic_log_prob(x, loc, scale, self.num_bins)
        return log_p.flatten(z.dim() - 1).sum(-1)

    def extra_repr(self) -> str:
        return f"num_bins={self.num_bins}, learn_scale={self.learn_scale}"
