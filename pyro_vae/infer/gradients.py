r"""Gradient statistics of an estimator: variance and signal-to-noise ratio.

For a stochastic gradient estimate g of one parameter coordinate, drawn R
times on the same mini-batch at the same parameters,

.. math::

    \mathrm{variance} = \mathrm{Var}[g], \qquad
    \mathrm{SNR} = \frac{|\mathbb{E}[g]|}{\sqrt{\mathrm{Var}[g]}}

(Rainforth et al. 2018). Both are averaged over the coordinates of a group of
parameters: the guide's (encoder) and the model's (decoder and prior). For
IWAE the guide's SNR falls like :math:`1/\sqrt{K}` as K grows while the decoder's rises
like :math:`\sqrt{K}`; DReG's guide SNR rises with K too.

The estimates are taken with the model and guide scaled by 1/B, as
:func:`pyro_vae.fit` trains them, so variances are those of per-example losses.

References:
    1. T. Rainforth, A. R. Kosiorek, T. A. Le, C. J. Maddison, M. Igl, F. Wood,
       Y. W. Teh. Tighter variational bounds are not necessarily better. ICML 2018.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyro
import pyro.infer
import pyro.poutine as poutine
import torch

from pyro_vae._checks import check_positive_int
from pyro_vae.infer._programs import check_programs_and_data

__all__ = ["GradientStats", "parameter_groups", "gradient_stats"]


@dataclass(frozen=True)
class GradientStats:
    r"""Statistics of one parameter group's gradient over repeated draws.

    Attributes:
        group: ``"guide"`` or ``"model"``.
        num_draws: R, the number of independent gradient estimates.
        num_coordinates: scalar parameters in the group.
        variance: :math:`\mathrm{Var}[g]` averaged over coordinates.
        snr: :math:`|\mathbb{E}[g]| / \sqrt{\mathrm{Var}[g]}` averaged over coordinates
            with nonzero variance (NaN when every coordinate's variance is zero).
        mean_norm: the norm of the average gradient, :math:`\|\mathbb{E}[g]\|`.
    """

    group: str
    num_draws: int
    num_coordinates: int
    variance: float
    snr: float
    mean_norm: float


def parameter_groups(
    model: Callable[..., Any], guide: Callable[..., Any], x: torch.Tensor
) -> dict[str, list[torch.Tensor]]:
    """The trainable tensors of the guide and of the model, by the param sites they trace.

    A parameter both programs use (a VampPrior's pseudo-inputs through the
    encoder, say) counts as the guide's.

    Returns:
        ``{"guide": [...], "model": [...]}``, unconstrained tensors that receive gradients.
    """
    with poutine.block(), torch.no_grad():
        guide_trace = poutine.trace(guide).get_trace(x)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x)
    groups: dict[str, list[torch.Tensor]] = {"guide": [], "model": []}
    seen: set[int] = set()
    for group, trace in (("guide", guide_trace), ("model", model_trace)):
        for site in trace.nodes.values():
            if site["type"] != "param":
                continue
            tensor = pyro.param(site["name"]).unconstrained()
            if tensor.requires_grad and id(tensor) not in seen:
                seen.add(id(tensor))
                groups[group].append(tensor)
    return groups


def _scaled(fn: Callable[..., Any], batch_size: int) -> Callable[..., Any]:
    def scaled(*args: Any, **kwargs: Any) -> Any:
        with poutine.scale(scale=1.0 / batch_size):
            return fn(*args, **kwargs)

    return scaled


def gradient_stats(
    objective: pyro.infer.ELBO,
    model: Callable[..., Any],
    guide: Callable[..., Any],
    x: torch.Tensor,
    num_draws: int = 100,
) -> dict[str, GradientStats]:
    r"""Variance and SNR of ``objective``'s gradient for the guide's and the model's parameters.

    Arguments:
        objective: any ELBO with ``differentiable_loss`` (all of pyro_vae's).
        model, guide: Pyro programs taking the batch ``x``.
        x: one fixed mini-batch ``(B, *event_shape)``.
        num_draws: :math:`R \ge 2` independent estimates; the standard error of the
            variance is about :math:`\mathrm{variance} \cdot \sqrt{2/R}`.

    Returns:
        ``{"guide": GradientStats, "model": GradientStats}`` (groups without parameters omitted).
    """
    x = check_programs_and_data(model, guide, x)
    num_draws = check_positive_int("num_draws", num_draws)
    if num_draws < 2:
        raise ValueError(f"num_draws must be at least 2 to estimate a variance, got {num_draws}")
    if not callable(getattr(objective, "differentiable_loss", None)):
        raise TypeError(f"{type(objective).__name__} has no differentiable_loss")
    groups = {k: v for k, v in parameter_groups(model, guide, x).items() if v}
    params = [p for group in groups.values() for p in group]
    if not params:
        raise ValueError("the model and guide have no trainable parameters")
    model_b, guide_b = _scaled(model, x.shape[0]), _scaled(guide, x.shape[0])
    # Running sums in float64: Var = E[g²] - E[g]², stable enough for R ≤ 10⁴.
    total = [torch.zeros(p.shape, dtype=torch.float64, device=p.device) for p in params]
    total_sq = [torch.zeros_like(t) for t in total]
    for _ in range(num_draws):
        with poutine.block():
            loss = objective.differentiable_loss(model_b, guide_b, x)
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        for i, g in enumerate(grads):
            if g is not None:
                g = g.detach().double()
                total[i] += g
                total_sq[i] += g * g
    result, start = {}, 0
    for name, group in groups.items():
        mean = torch.cat([t.flatten() for t in total[start : start + len(group)]]) / num_draws
        sq = torch.cat([t.flatten() for t in total_sq[start : start + len(group)]]) / num_draws
        start += len(group)
        variance = ((sq - mean.pow(2)) * num_draws / (num_draws - 1)).clamp(min=0)
        # Coordinates whose gradient is the same in every draw have no noise to
        # measure; rounding leaves them a variance of ~1e-16 relative to g².
        noisy = variance > 1e-12 * sq
        snr = (
            (mean.abs()[noisy] / variance[noisy].sqrt()).mean().item() if noisy.any() else math.nan
        )
        result[name] = GradientStats(
            group=name,
            num_draws=num_draws,
            num_coordinates=mean.numel(),
            variance=variance.mean().item(),
            snr=snr,
            mean_norm=mean.norm().item(),
        )
    return result
