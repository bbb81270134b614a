"""Likelihoods (decoders) p_θ(x|z): a distribution head over a network.

A likelihood is an ``nn.Module`` whose ``forward(z)`` maps latents of shape
``(*batch, latent_dim)`` (batch may include leading particle dimensions) to a
distribution over x with ``batch_shape == batch`` and ``event_shape`` equal to
the trailing shape of the network's output, the data's event shape. Each head
declares its ``support``, so data can be checked before training.

:meth:`Likelihood.log_prob` gives log p(x|z) summed over the event without
building a distribution; heads override it with the same formula written
directly (the fused training path of :mod:`pyro_vae._fused` uses it).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import pyro.distributions as dist
import torch
from torch import nn
from torch.distributions import constraints
from torch.distributions.utils import broadcast_all
from torch.nn import functional as F

from ._normal import HALF_LOG_2PI, inverse_softplus

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
        return params

    def log_prob(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x|z) summed over the event dimensions.

        Arguments:
            x: data ``(B, *event_shape)``, broadcast against z's batch.
            z: latents ``(*batch, latent_dim)``, batch ending in B (``(K, B)`` with particles).

        Returns:
            a tensor of shape ``(*batch)``, equal to ``self(z).log_prob(x)``.
        """
        params = self._params(z, x)
        return self.distribution(params).to_event(params.dim() - (z.dim() - 1)).log_prob(x)


class Bernoulli(Likelihood):
    """Bernoulli pixels with logits from the network, for binary data x ∈ {0, 1}.

    log p(x|z) = Σ_i [ x_i ℓ_i - log(1 + exp ℓ_i) ], ℓ = net(z) (computed stably from logits).
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
        nll = F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none")
        return -nll.flatten(z.dim() - 1).sum(-1)  # negated after the sum: one pass fewer


class ContinuousBernoulli(Likelihood):
    """Continuous Bernoulli (Loaiza-Ganem & Cunningham 2019) for intensities x ∈ [0, 1].

    log p(x|z) = Σ_i [ x_i log λ_i + (1 - x_i) log(1 - λ_i) + log C(λ_i) ], λ = sigmoid(net(z)),
    where C(λ) = 2 artanh(1 - 2λ) / (1 - 2λ) normalises the density on [0, 1].

    References:
        1. G. Loaiza-Ganem, J. P. Cunningham. The continuous Bernoulli: fixing a pervasive
           error in variational autoencoders. NeurIPS 2019.
    """

    support = constraints.unit_interval
    support_description = "values in [0, 1]"

    def distribution(self, params: torch.Tensor) -> dist.TorchDistribution:
        return dist.ContinuousBernoulli(logits=params)


class _ScaledLikelihood(Likelihood):
    """A head with one scale shared by all pixels, fixed or learned.

    A fixed scale is the buffer ``fixed_scale``; a learned one is the parameter ``raw_scale``
    = ρ with scale = softplus(ρ) + min_scale. Subclasses read it as :attr:`scale`.
    """

    def __init__(self, net: nn.Module, scale: float, learn_scale: bool, min_scale: float) -> None:
        super().__init__(net)
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
    """Gaussian pixels x_i ~ N(μ_i(z), σ²) with mean from the network, for real-valued data.

    log p(x|z) = Σ_i [ -½ ((x_i - μ_i)/σ)² - log σ - ½ log 2π ].

    Arguments:
        net: maps z to the mean μ.
        scale: σ, the standard deviation shared by all pixels (its initial value when learned).
        learn_scale: learn σ as one parameter, σ = softplus(ρ) + min_scale.
        min_scale: floor of a learned σ, which keeps the density bounded on constant pixels.
    """

    support = constraints.real
    support_description = "finite real values"

    def __init__(
        self,
        net: nn.Module,
        scale: float = 1.0,
        learn_scale: bool = False,
        min_scale: float = 1e-3,
    ) -> None:
        super().__init__(net, scale, learn_scale, min_scale)

    def distribution(self, params: torch.Tensor) -> dist.TorchDistribution:
        return dist.Normal(params, self.scale.to(params.dtype).expand(params.shape))

    def log_prob(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        loc = self._params(z, x)
        scale = self.scale.to(loc.dtype)
        squares = (x - loc).pow(2).flatten(z.dim() - 1).sum(-1)
        size = math.prod(loc.shape[z.dim() - 1 :])
        return -squares / (2 * scale.pow(2)) - size * (scale.log() + HALF_LOG_2PI)


class Laplace(_ScaledLikelihood):
    """Laplace pixels x_i ~ Laplace(μ_i(z), b) with location from the network, for real data.

    log p(x|z) = Σ_i [ -|x_i - μ_i| / b - log(2b) ]; heavier tails than :class:`Gaussian`, so
    the fit (the conditional median) is less pulled by outlying pixels.

    Arguments:
        net: maps z to the location μ.
        scale: b, the scale shared by all pixels (its initial value when learned); the standard
            deviation is √2 b.
        learn_scale: learn b as one parameter, b = softplus(ρ) + min_scale.
        min_scale: floor of a learned b, which keeps the density bounded on constant pixels.
    """

    support = constraints.real
    support_description = "finite real values"

    def __init__(
        self,
        net: nn.Module,
        scale: float = 1.0,
        learn_scale: bool = False,
        min_scale: float = 1e-3,
    ) -> None:
        super().__init__(net, scale, learn_scale, min_scale)

    def distribution(self, params: torch.Tensor) -> dist.TorchDistribution:
        return dist.Laplace(params, self.scale.to(params.dtype).expand(params.shape))

    def log_prob(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        loc = self._params(z, x)
        scale = self.scale.to(loc.dtype)
        deviations = (x - loc).abs().flatten(z.dim() - 1).sum(-1)
        size = math.prod(loc.shape[z.dim() - 1 :])
        return -deviations / scale - size * (scale.log() + _LOG_2)


class _UnitGrid(constraints.Constraint):
    """The grid {0, 1/(n-1), ..., 1}: values in [0, 1] with x (n-1) within ``tol`` of an integer."""

    is_discrete = True
    event_dim = 0

    def __init__(self, num_bins: int, tol: float = 1e-4) -> None:
        self.num_bins = num_bins
        self.tol = tol
        super().__init__()

    def check(self, value: torch.Tensor) -> torch.Tensor:
        levels = value * (self.num_bins - 1)
        on_grid = (levels - levels.round()).abs() <= self.tol
        return (value >= 0) & (value <= 1) & on_grid

    def __repr__(self) -> str:
        return f"UnitGrid(num_bins={self.num_bins})"


def _log1mexp(t: torch.Tensor) -> torch.Tensor:
    """log(1 - e^t) for t ≤ 0, accurate near 0 and for very negative t (Mächler 2012)."""
    return torch.where(t > -_LOG_2, torch.log(-torch.expm1(t)), torch.log1p(-torch.exp(t)))


def _check_num_bins(num_bins: int) -> int:
    if isinstance(num_bins, bool) or not isinstance(num_bins, int) or num_bins < 2:
        raise ValueError(f"num_bins must be an integer >= 2, got {num_bins!r}")
    return num_bins


def _discretized_logistic_log_prob(
    x: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor, num_bins: int
) -> torch.Tensor:
    """Elementwise log P(x) of the discretised logistic; x, loc, scale broadcast together.

    With h = 1/(2(n-1)), a = (x + h - μ)/s and b = (x - h - μ)/s, an interior bin has
    log P = log(σ(a) - σ(b)) = log σ(a) + log σ(-b) + log(1 - e^{-2h/s}); the bin at 0 keeps
    only log σ(a), the bin at 1 only log σ(-b). Every term is finite and free of cancellation
    for any μ and s > 0 (a - b = 2h/s is used exactly rather than as a difference).
    """
    half_bin = 0.5 / (num_bins - 1)
    centred = x - loc
    log_cdf_above = F.logsigmoid((centred + half_bin) / scale)  # log σ(a)
    log_sf_below = F.logsigmoid(-(centred - half_bin) / scale)  # log σ(-b)
    log_width = _log1mexp(-2 * half_bin / scale)
    bottom, top = x < half_bin, x > 1 - half_bin
    zero = torch.zeros((), dtype=log_cdf_above.dtype, device=log_cdf_above.device)
    return (
        torch.where(top, zero, log_cdf_above)
        + torch.where(bottom, zero, log_sf_below)
        + torch.where(bottom | top, zero, log_width)
    )


class DiscretizedLogisticDistribution(dist.TorchDistribution):
    """Elementwise discretised logistic on the grid {0, 1/(n-1), ..., 1} (Salimans et al. 2017).

    x = round((n-1) clamp(y, 0, 1)) / (n-1) for y ~ Logistic(loc, scale): with h = 1/(2(n-1)),
    P(x) = σ((x + h - μ)/s) - σ((x - h - μ)/s) on interior bins, P(0) = σ((h - μ)/s) and
    P(1) = 1 - σ((1 - h - μ)/s), computed in log space (see :func:`_discretized_logistic_log_prob`).

    Arguments:
        loc: μ, any real shape.
        scale: s > 0, broadcast against ``loc``.
        num_bins: n ≥ 2, the number of grid values.

    References:
        1. T. Salimans, A. Karpathy, X. Chen, D. P. Kingma. PixelCNN++: improving the PixelCNN
           with discretized logistic mixture likelihood and other modifications. ICLR 2017.
    """

    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}
    has_rsample = False

    def __init__(
        self,
        loc: torch.Tensor,
        scale: torch.Tensor | float,
        num_bins: int = 256,
        validate_args: bool | None = None,
    ) -> None:
        self.num_bins = _check_num_bins(num_bins)
        self.loc, self.scale = broadcast_all(loc, scale)
        super().__init__(self.loc.shape, validate_args=validate_args)

    @property
    def support(self) -> constraints.Constraint:
        return _UnitGrid(self.num_bins)

    def expand(
        self, batch_shape: torch.Size | tuple[int, ...], _instance=None
    ) -> DiscretizedLogisticDistribution:
        new = self._get_checked_instance(DiscretizedLogisticDistribution, _instance)
        batch_shape = torch.Size(batch_shape)
        new.num_bins = self.num_bins
        new.loc = self.loc.expand(batch_shape)
        new.scale = self.scale.expand(batch_shape)
        super(DiscretizedLogisticDistribution, new).__init__(batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        return _discretized_logistic_log_prob(value, self.loc, self.scale, self.num_bins)

    def sample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> torch.Tensor:
        shape = self._extended_shape(sample_shape)
        with torch.no_grad():
            finfo = torch.finfo(self.loc.dtype)
            u = torch.rand(shape, dtype=self.loc.dtype, device=self.loc.device)
            u = u.clamp(finfo.tiny, 1 - finfo.eps)
            y = self.loc + self.scale * (u.log() - (-u).log1p())  # logistic by inversion
            levels = self.num_bins - 1
            return (y.clamp(0, 1) * levels).round() / levels

    @property
    def mean(self) -> torch.Tensor:
        """E[x] = (1/(n-1)) Σ_{k=1}^{n-1} P(x ≥ k/(n-1)) = (1/(n-1)) Σ_k σ((μ - (k - ½)/(n-1))/s).

        Exact (the tail-sum formula for a variable on the grid), a sum of positive terms, and
        in [0, 1]; it holds n-1 values per element while summing.
        """
        levels = self.num_bins - 1
        thresholds = torch.arange(levels, dtype=self.loc.dtype, device=self.loc.device) + 0.5
        thresholds = thresholds / levels
        tails = torch.sigmoid((self.loc[..., None] - thresholds) / self.scale[..., None])
        return tails.mean(-1)


class DiscretizedLogistic(_ScaledLikelihood):
    """Discretised logistic pixels for quantised intensities on the grid {0, 1/(n-1), ..., 1}.

    x_i = round((n-1) clamp(y_i, 0, 1)) / (n-1) with y_i ~ Logistic(μ_i(z), s). With the half
    bin h = 1/(2(n-1)),

        log p(x|z) = Σ_i log P(x_i),   P(x) = σ((x + h - μ)/s) - σ((x - h - μ)/s),

    with the edge bins taking the tails: P(0) = σ((h - μ)/s), P(1) = 1 - σ((1 - h - μ)/s).
    It is a probability (log p ≤ 0), so unlike a density on [0, 1] it cannot grow without bound
    on constant pixels, and it is computed stably in log space for any μ and s.

    Arguments:
        net: maps z to the location μ (unconstrained; data lie in [0, 1]).
        num_bins: n ≥ 2, the number of grey levels: 256 for 8-bit images scaled by 1/255,
            17 for the scikit-learn digits (0-16) scaled by 1/16, 2 for binary data.
        scale: s, the logistic scale shared by all pixels, in data units (its initial value
            when learned); the standard deviation of the logistic is π s / √3.
        learn_scale: learn s as one parameter, s = softplus(ρ) + min_scale.
        min_scale: floor of a learned s.

    References:
        1. T. Salimans, A. Karpathy, X. Chen, D. P. Kingma. PixelCNN++: improving the PixelCNN
           with discretized logistic mixture likelihood and other modifications. ICLR 2017.
    """

    def __init__(
        self,
        net: nn.Module,
        num_bins: int = 256,
        scale: float = 0.1,
        learn_scale: bool = True,
        min_scale: float = 1e-4,
    ) -> None:
        super().__init__(net, scale, learn_scale, min_scale)
        self.num_bins = _check_num_bins(num_bins)
        self.support = _UnitGrid(num_bins)
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
        log_p = _discretized_logistic_log_prob(x, loc, scale, self.num_bins)
        return log_p.flatten(z.dim() - 1).sum(-1)

    def extra_repr(self) -> str:
        return f"num_bins={self.num_bins}, learn_scale={self.learn_scale}"
