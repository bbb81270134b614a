"""The discretised logistic distribution over a grid of grey levels, computed in log space.

:class:`pyro_vae.likelihoods.DiscretizedLogistic` is the likelihood head; this module
holds its elementwise distribution, the grid constraint, and the stable log-probability.
"""

from __future__ import annotations

import math

import pyro.distributions as dist
import torch
from torch.distributions import constraints
from torch.distributions.utils import broadcast_all
from torch.nn import functional as F

from pyro_vae._checks import check_int_at_least

__all__ = [
    "DiscretizedLogisticDistribution",
    "UnitGrid",
    "check_num_bins",
    "discretized_logistic_log_prob",
]

_LOG_2 = math.log(2.0)


class UnitGrid(constraints.Constraint):
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


def check_num_bins(num_bins: int) -> int:
    return check_int_at_least("num_bins", num_bins, low=2)


def discretized_logistic_log_prob(
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
    r"""Elementwise discretised logistic on the grid {0, 1/(n-1), ..., 1} (Salimans et al. 2017).

    :math:`x = \operatorname{round}((n-1) \operatorname{clamp}(y, 0, 1)) / (n-1)` for
    :math:`y \sim \operatorname{Logistic}(\mathtt{loc}, \mathtt{scale})`: with
    :math:`h = 1/(2(n-1))`,
    :math:`P(x) = \sigma((x + h - \mu)/s) - \sigma((x - h - \mu)/s)` on interior bins,
    :math:`P(0) = \sigma((h - \mu)/s)` and :math:`P(1) = 1 - \sigma((1 - h - \mu)/s)`, computed
    in log space (see ``discretized_logistic_log_prob``).

    Arguments:
        loc: μ, any real shape.
        scale: :math:`s > 0`, broadcast against ``loc``.
        num_bins: :math:`n \ge 2`, the number of grid values.

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
        self.num_bins = check_num_bins(num_bins)
        self.loc, self.scale = broadcast_all(loc, scale)
        super().__init__(self.loc.shape, validate_args=validate_args)

    @property
    def support(self) -> constraints.Constraint:
        """The grid of ``num_bins`` values in [0, 1]."""
        return UnitGrid(self.num_bins)

    def expand(
        self, batch_shape: torch.Size | tuple[int, ...], _instance=None
    ) -> DiscretizedLogisticDistribution:
        """The same distribution with its parameters broadcast to ``batch_shape``."""
        new = self._get_checked_instance(DiscretizedLogisticDistribution, _instance)
        batch_shape = torch.Size(batch_shape)
        new.num_bins = self.num_bins
        new.loc = self.loc.expand(batch_shape)
        new.scale = self.scale.expand(batch_shape)
        super(DiscretizedLogisticDistribution, new).__init__(batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """:math:`\\log P(x)` elementwise, for ``value`` on the grid, in log space."""
        if self._validate_args:
            self._validate_sample(value)
        return discretized_logistic_log_prob(value, self.loc, self.scale, self.num_bins)

    def sample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> torch.Tensor:
        """Grid values of shape ``sample_shape + batch_shape``: a logistic draw by inversion,
        clamped to [0, 1] and rounded to the grid; not differentiable."""
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
        r"""The mean:

        .. math::

            \mathbb{E}[x] = \frac{1}{n-1} \sum_{k=1}^{n-1} P\left(x \ge \frac{k}{n-1}\right)
            = \frac{1}{n-1} \sum_k \sigma\left(\frac{\mu - (k - \frac{1}{2})/(n-1)}{s}\right).

        Exact (the tail-sum formula for a variable on the grid), a sum of positive terms, and
        in [0, 1]; it holds n-1 values per element while summing.
        """
        levels = self.num_bins - 1
        thresholds = torch.arange(levels, dtype=self.loc.dtype, device=self.loc.device) + 0.5
        thresholds = thresholds / levels
        tails = torch.sigmoid((self.loc[..., None] - thresholds) / self.scale[..., None])
        return tails.mean(-1)
