r"""Guides (encoders) :math:`q_\phi(z \mid x)`: amortised variational posteriors.

A guide is an ``nn.Module`` whose ``forward(x)`` takes a batch ``x`` of shape
``(B, *event_shape)`` and returns a reparameterisable distribution over z with
``batch_shape == (B,)`` and ``event_shape == (latent_dim,)``. The network is a
body (any module mapping x to features, such as :class:`pyro_vae.nets.MLP`);
the guide adds the heads that produce the distribution's parameters.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import pyro.distributions as dist
import torch
from pyro.distributions.transforms import ConditionalAffineCoupling, Permute
from pyro.nn import ConditionalAutoRegressiveNN, ConditionalDenseNN
from torch import nn
from torch.nn import functional as F

from pyro_vae._checks import check_number, check_positive_int
from pyro_vae._defaults import NUM_FLOWS
from pyro_vae.models._flows import ConditionalAffineAutoregressiveStep

__all__ = [
    "Guide",
    "DiagonalNormal",
    "FullCovarianceNormal",
    "InverseAutoregressiveFlow",
    "AffineCouplingFlow",
    "location",
]


def _head(net: nn.Module, out_features: int) -> nn.Module:
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


class DiagonalNormal(Guide):
    r"""Mean-field Gaussian:

    .. math:: q(z \mid x) = \mathcal{N}(z; \mu(x), \operatorname{diag} \sigma(x)^2).

    The head maps the body's features h to :math:`(\mu, \rho)` and
    :math:`\sigma = \operatorname{softplus}(\rho) + \sigma_{\min}`, which keeps σ positive and its
    gradient bounded.

    .. math::

        \log q(z \mid x) = \sum_d \left[ -\tfrac{1}{2} \left(\frac{z_d - \mu_d}{\sigma_d}\right)^2
        - \log \sigma_d - \tfrac{1}{2} \log 2\pi \right].

    Arguments:
        net: the body; its ``out_features`` sizes the head (a lazy head otherwise).
        latent_dim: size of z.
        min_scale: :math:`\sigma_{\min}`, the floor of the standard deviations.

    Example:
        >>> from pyro_vae.nets import MLP
        >>> q = DiagonalNormal(MLP(784, [200]), latent_dim=10)
        >>> q(torch.zeros(5, 784)).batch_shape, q(torch.zeros(5, 784)).event_shape
        (torch.Size([5]), torch.Size([10]))
    """

    def __init__(self, net: nn.Module, latent_dim: int, min_scale: float = 1e-4) -> None:
        super().__init__(net, latent_dim)
        self.head = _head(net, 2 * latent_dim)
        self.min_scale = _check_min_scale(min_scale)

    def forward(self, x: torch.Tensor) -> dist.TorchDistribution:
        return _diagonal(self.head(self.net(x)), self.min_scale)

    def local_parameters(self, x: torch.Tensor) -> torch.Tensor:
        r"""The head's output (μ, ρ), ``(B, 2 D)``.

        Any diagonal Gaussian with :math:`\sigma > \sigma_{\min}` has one.
        """
        return self.head(self.net(x))

    def distribution(self, params: torch.Tensor) -> dist.TorchDistribution:
        r"""The distribution from ``params = (μ, ρ)``, ``(B, 2 D)``:

        .. math::

            \mathcal{N}(\mu, \operatorname{diag} \sigma^2), \qquad
            \sigma = \operatorname{softplus}(\rho) + \sigma_{\min}.
        """
        return _diagonal(_check_params(self, params, 2 * self.latent_dim), self.min_scale)


def _check_params(guide: Guide, params: object, width: int) -> torch.Tensor:
    """Per-example parameters: a floating tensor ``(B, width)``."""
    if not isinstance(params, torch.Tensor) or not params.is_floating_point():
        raise TypeError(f"params must be a floating torch.Tensor, got {type(params).__name__}")
    if params.dim() != 2 or params.shape[-1] != width:
        raise ValueError(
            f"params must have shape (B, {width}) for {type(guide).__name__}, "
            f"got {tuple(params.shape)}"
        )
    return params


def _check_min_scale(min_scale: float) -> float:
    min_scale = check_number("min_scale", min_scale)
    if not (min_scale >= 0 and math.isfinite(min_scale)):
        raise ValueError(f"min_scale must be a finite number >= 0, got {min_scale!r}")
    return min_scale


def _diagonal(params: torch.Tensor, min_scale: float) -> dist.TorchDistribution:
    """N(μ, diag σ²) from ``(μ, ρ)`` stacked on the last dim, σ = softplus(ρ) + σ_min."""
    loc, raw_scale = params.chunk(2, dim=-1)
    return dist.Normal(loc, F.softplus(raw_scale) + min_scale).to_event(1)


class FullCovarianceNormal(Guide):
    r"""Full-covariance Gaussian :math:`q(z \mid x) = \mathcal{N}(z; \mu(x), L(x) L(x)^\top)`.

    The head maps the body's features to μ, the diagonal of the Cholesky factor
    :math:`L_{dd} = \operatorname{softplus}(\rho_d) + \sigma_{\min}`, and the
    :math:`D(D-1)/2` entries below it (unconstrained).

    .. math::

        \log q(z \mid x) = -\tfrac{1}{2} \|L^{-1}(z - \mu)\|^2 - \sum_d \log L_{dd}
        - \tfrac{D}{2} \log 2\pi.

    Arguments:
        net: the body; its ``out_features`` sizes the head (a lazy head otherwise).
        latent_dim: size of z.
        min_scale: :math:`\sigma_{\min}`, the floor of L's diagonal.
    """

    def __init__(self, net: nn.Module, latent_dim: int, min_scale: float = 1e-4) -> None:
        super().__init__(net, latent_dim)
        self.min_scale = _check_min_scale(min_scale)
        self.head = _head(net, 2 * latent_dim + latent_dim * (latent_dim - 1) // 2)
        rows, cols = torch.tril_indices(latent_dim, latent_dim, offset=-1)
        self.register_buffer("_rows", rows, persistent=False)
        self.register_buffer("_cols", cols, persistent=False)

    def forward(self, x: torch.Tensor) -> dist.TorchDistribution:
        return self._distribution(self.head(self.net(x)))

    def local_parameters(self, x: torch.Tensor) -> torch.Tensor:
        r"""The head's output (μ, ρ, L below the diagonal): ``(B, 2 D + D (D - 1) / 2)``.

        Every Gaussian whose Cholesky diagonal exceeds :math:`\sigma_{\min}` has such parameters.
        """
        return self.head(self.net(x))

    def distribution(self, params: torch.Tensor) -> dist.TorchDistribution:
        r""":math:`\mathcal{N}(\mu, L L^\top)` from ``params``, ``(B, 2 D + D (D - 1) / 2)``."""
        d = self.latent_dim
        return self._distribution(_check_params(self, params, 2 * d + d * (d - 1) // 2))

    def _distribution(self, params: torch.Tensor) -> dist.TorchDistribution:
        d = self.latent_dim
        loc, raw_diagonal, below = params.split([d, d, params.shape[-1] - 2 * d], dim=-1)
        tril = torch.diag_embed(F.softplus(raw_diagonal) + self.min_scale)
        tril[..., self._rows, self._cols] = below  # a fresh tensor: autograd allows it
        return dist.MultivariateNormal(loc, scale_tril=tril)


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
        self.min_scale = _check_min_scale(min_scale)
        hidden = _check_flow_arguments(num_flows, hidden, max(16, 4 * latent_dim))
        check_positive_int("context_dim", context_dim)
        self.head = _head(net, 2 * latent_dim)
        self.context = _head(net, context_dim)
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
        base = _diagonal(self.head(features), self.min_scale)
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
        params = _check_params(self, params, width + self.context.out_features)
        base = _diagonal(params[..., :width], self.min_scale)
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
