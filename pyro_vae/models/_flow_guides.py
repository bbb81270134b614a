"""The flow guides: an inverse autoregressive flow and affine coupling layers on a
Gaussian base, conditioned on the encoder's context. Re-exported by
:mod:`pyro_vae.guides`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyro.distributions as dist
import torch
from pyro.distributions.transforms import ConditionalAffineCoupling, Permute
from pyro.nn import ConditionalAutoRegressiveNN, ConditionalDenseNN
from torch import nn

from pyro_vae._checks import check_positive_int
from pyro_vae._defaults import NUM_FLOWS
from pyro_vae.models._flows import ConditionalAffineAutoregressiveStep
from pyro_vae.models._guide_base import (
    Guide,
    check_guide_params,
    check_min_scale,
    diagonal_from_params,
    linear_head,
)

__all__ = ["InverseAutoregressiveFlow", "AffineCouplingFlow"]


def _check_flow_arguments(num_flows: int, hidden: Sequence[int] | None, default: int) -> list[int]:
    check_positive_int("num_flows", num_flows)
    if hidden is not None and (
        isinstance(hidden, (str, bytes)) or not isinstance(hidden, Sequence)
    ):
        raise TypeError(f"hidden must be a non-empty list of positive integers, got {hidden!r}")
    hidden = list(hidden) if hidden is not None else [default]
    if not hidden or not all(
        isinstance(h, int) and not isinstance(h, bool) and h >= 1 for h in hidden
    ):
        raise ValueError(f"hidden must be a non-empty list of positive integers, got {hidden!r}")
    return hidden


def _check_made_widths(hidden: list[int], latent_dim: int) -> None:
    """A MADE network (IAF, the flow prior) needs every hidden width ≥ latent_dim."""
    if min(hidden) < latent_dim:
        raise ValueError(
            f"hidden widths of an autoregressive flow must be at least latent_dim={latent_dim}, "
            f"got {hidden!r}"
        )


class _ConditionalFlowGuide(Guide):
    r"""q(z|x): a diagonal Gaussian q₀(z₀|x) pushed through ``num_flows`` steps conditioned on x.

    z₀ = μ(x) + σ(x) ⊙ ε, z_t = f_t(z_{t-1}; h(x)), and

    .. math::

        \log q(z_T \mid x) = \log q_0(z_0 \mid x)
        - \sum_t \log \left|\det \frac{\partial f_t}{\partial z_{t-1}}\right|,

    where h(x) is a context vector, a linear head on the body's features, which
    every step sees. Subclasses build the steps (:meth:`_step`) and chain them
    (:meth:`_transforms`).
    """

    def __init__(
        self,
        net: nn.Module,
        latent_dim: int,
        num_flows: int = NUM_FLOWS,
        hidden: Sequence[int] | None = None,
        context_dim: int = 32,
        min_scale: float = 1e-4,
    ) -> None:
        super().__init__(net, latent_dim)
        self.min_scale = check_min_scale(min_scale)
        hidden = _check_flow_arguments(num_flows, hidden, max(16, 4 * latent_dim))
        check_positive_int("context_dim", context_dim)
        self.head = linear_head(net, 2 * latent_dim)
        self.context = linear_head(net, context_dim)
        self.flows = nn.ModuleList(
            self._step(step, hidden, context_dim) for step in range(num_flows)
        )
        self.hidden = hidden

    def _step(self, step: int, hidden: list[int], context_dim: int) -> nn.Module:
        raise NotImplementedError

    def _transforms(self, context: torch.Tensor) -> list[Any]:
        return [flow.condition(context) for flow in self.flows]

    def forward(self, x: torch.Tensor) -> dist.TorchDistribution:
        features = self.net(x)
        base = diagonal_from_params(self.head(features), self.min_scale)
        return dist.TransformedDistribution(base, self._transforms(self.context(features)))

    def local_parameters(self, x: torch.Tensor) -> torch.Tensor:
        """z₀'s (μ, ρ) and the context h side by side: ``(B, 2 D + context_dim)``.

        The flow's weights are shared, not local: freeing these parameters per example
        spans "this flow with any base Gaussian and any context", a subset of all flows.
        """
        features = self.net(x)
        return torch.cat([self.head(features), self.context(features)], dim=-1)

    def distribution(self, params: torch.Tensor) -> dist.TorchDistribution:
        """The flow from ``params = (μ, ρ, h)`` of shape ``(B, 2 D + context_dim)``."""
        width = 2 * self.latent_dim
        params = check_guide_params(self, params, width + self.context.out_features)
        base = diagonal_from_params(params[..., :width], self.min_scale)
        return dist.TransformedDistribution(base, self._transforms(params[..., width:]))

    def extra_repr(self) -> str:
        return f"latent_dim={self.latent_dim}, num_flows={len(self.flows)}, hidden={self.hidden}"


class InverseAutoregressiveFlow(_ConditionalFlowGuide):
    r"""Inverse autoregressive flow :math:`q(z \mid x)` (Kingma et al. 2016).

    Each step is Pyro's :class:`~pyro.distributions.transforms.ConditionalAffineAutoregressive`
    in its numerically stable form: with :math:`(m, s) = \mathrm{MADE}(z_{t-1}, h)`,

    .. math::

        \sigma = \mathrm{sigmoid}(s + 2), \quad z_t = \sigma \odot z_{t-1} + (1 - \sigma) \odot m,
        \quad \log |\det| = \textstyle\sum_d \log \sigma_d,

    where :math:`m_d` and :math:`s_d` depend on :math:`z_{t-1, <d}` only, and the variable order
    is reversed between steps. Drawing z and its :math:`\log q` is one network pass per step.
    Evaluating :math:`\log q` at another z (the path gradients of ``stl`` and ``iwae-dreg`` do)
    inverts the flow, D network passes per step.

    Arguments:
        net: the body; its features give μ, σ of :math:`z_0` and the context h.
        latent_dim: D.
        num_flows: number of IAF steps T.
        hidden: hidden widths of each step's MADE network (default ``[4 D]``, at least 16).
        context_dim: size of h.
        min_scale: floor of :math:`z_0`'s standard deviations.

    References:
        1. D. P. Kingma, T. Salimans, R. Jozefowicz, X. Chen, I. Sutskever, M. Welling.
           Improved variational inference with inverse autoregressive flow. NeurIPS 2016.
    """

    def _step(self, step: int, hidden: list[int], context_dim: int) -> nn.Module:
        _check_made_widths(hidden, self.latent_dim)
        order = torch.arange(self.latent_dim)
        made = ConditionalAutoRegressiveNN(
            self.latent_dim,
            context_dim,
            hidden,
            permutation=order if step % 2 == 0 else order.flip(0),
        )
        return ConditionalAffineAutoregressiveStep(made, stable=True)


class AffineCouplingFlow(_ConditionalFlowGuide):
    r"""Affine coupling (Real NVP, Dinh et al. 2017) flow :math:`q(z \mid x)`.

    Each step is Pyro's :class:`~pyro.distributions.transforms.ConditionalAffineCoupling`:
    with z split into halves (a, b) of sizes :math:`\lfloor D/2 \rfloor` and
    :math:`\lceil D/2 \rceil` and :math:`(m, \log s) = \mathrm{NN}(a, h)`,

    .. math::

        z_t = (a, s \odot b + m), \quad \log |\det| = \textstyle\sum_d \log s_d,

    and the order of z is reversed between steps, so each half is transformed in
    turn. Unlike IAF, both directions are one network pass, so ``stl`` and
    ``iwae-dreg`` cost no more than with a Gaussian guide. Needs :math:`D \ge 2`.

    Arguments:
        net: the body; its features give μ, σ of :math:`z_0` and the context h.
        latent_dim: D.
        num_flows: number of coupling steps.
        hidden: hidden widths of each step's network (default ``[4 D]``, at least 16).
        context_dim: size of h.
        min_scale: floor of :math:`z_0`'s standard deviations.

    References:
        1. L. Dinh, J. Sohl-Dickstein, S. Bengio. Density estimation using Real NVP. ICLR 2017.
    """

    def _step(self, step: int, hidden: list[int], context_dim: int) -> nn.Module:
        if self.latent_dim < 2:
            raise ValueError("AffineCouplingFlow needs latent_dim >= 2 (it splits z in halves)")
        split = self.latent_dim // 2
        rest = self.latent_dim - split
        network = ConditionalDenseNN(split, context_dim, hidden, param_dims=[rest, rest])
        return ConditionalAffineCoupling(split, network)

    def _transforms(self, context: torch.Tensor) -> list[Any]:
        reverse = torch.arange(self.latent_dim - 1, -1, -1, device=context.device)
        transforms: list[Any] = []
        for step, flow in enumerate(self.flows):
            if step > 0:
                transforms.append(Permute(reverse))
            transforms.append(flow.condition(context))
        return transforms
