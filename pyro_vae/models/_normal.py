"""Small facts about Gaussians shared by the parts and the fused path."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pyro.distributions as dist
import torch
from torch.distributions import Independent, MultivariateNormal, Normal, register_kl

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def inverse_softplus(y: float) -> float:
    """The x with softplus(x) = log(1 + eˣ) = y, for y > 0."""
    return y + math.log(-math.expm1(-y))


def diagonal_normal(q: Any) -> Normal | None:
    """The ``Normal`` inside ``Independent(Normal, 1)`` (a diagonal Gaussian), else ``None``."""
    if not isinstance(q, Independent) or q.reinterpreted_batch_ndims != 1:
        return None
    base = q.base_dist
    return base if type(base) in (Normal, dist.Normal) else None


def kl_to_diagonal_normal(
    q: Any,
    loc: torch.Tensor,
    scale: torch.Tensor,
    fallback: Callable[[Any], torch.Tensor],
) -> torch.Tensor:
    """KL(q ‖ N(m, diag s²)) in closed form for a diagonal or full-covariance Gaussian q.

    With Σ the covariance of q = N(μ, Σ) over D dimensions:

        KL = ½ [ Σ_d Σ_dd / s_d² + Σ_d (μ_d - m_d)² / s_d² - D ] + Σ_d log s_d - ½ log det Σ.

    Any other q goes to ``fallback(q)``.

    Returns:
        a tensor of shape ``q.batch_shape``.
    """
    base = diagonal_normal(q)
    if base is not None:
        mean, variance = base.loc, base.scale.pow(2)
        half_log_det = base.scale.log().sum(-1)
    elif type(q) in (MultivariateNormal, dist.MultivariateNormal):
        tril = q.scale_tril
        mean, variance = q.loc, tril.pow(2).sum(-1)
        half_log_det = tril.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    else:
        return fallback(q)
    precision = scale.pow(-2)
    trace = (variance * precision).sum(-1) + ((mean - loc).pow(2) * precision).sum(-1)
    return 0.5 * (trace - mean.shape[-1]) + scale.log().sum(-1) - half_log_det


def _no_closed_form(q: Any) -> torch.Tensor:
    raise NotImplementedError


@register_kl(MultivariateNormal, Independent)
def _kl_full_to_diagonal_normal(q: MultivariateNormal, p: Independent) -> torch.Tensor:
    """Registers KL(N(μ, Σ) ‖ N(m, diag s²)) with torch, for Pyro's traced ``analytic-kl``.

    The fused path reaches the same formula through ``Prior.kl_from``; registering it
    makes the traced path (inside SVI, or a hierarchy) take the closed form too.
    """
    base = diagonal_normal(p)
    if base is None:
        raise NotImplementedError
    return kl_to_diagonal_normal(q, base.loc, base.scale, fallback=_no_closed_form)
