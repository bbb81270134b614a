"""Finite mixtures over a latent vector, evaluated without a (…, C, D) intermediate.

A mixture prior such as the learned mixture of Gaussians or the VampPrior has C
components over z ∈ R^D, and training evaluates it at K particles for each of B
examples. Broadcasting z against the components builds a (K, B, C, D) tensor
(500 MB for K = 50, B = 100, C = 500, D = 50), and autograd keeps several. For
diagonal-Gaussian components the quadratic form expands into two matrix
products, so only (K·B, C) is ever built:

    log N(z; μ_c, diag σ_c²) = -½ Σ_d z_d²/σ_cd² + Σ_d z_d μ_cd/σ_cd² + b_c,
    b_c = -½ Σ_d μ_cd²/σ_cd² - Σ_d log σ_cd - (D/2) log 2π.

The expansion is exact in real arithmetic; in floating point it loses about
ε·max(z², μ²)/σ² nats against the direct form (1e-4 nats at |z| = 3, σ = 0.05 in
float32; float64 is exact to 1e-12 in the tests).
"""

from __future__ import annotations

import pyro.distributions as dist
import torch
from torch.distributions import constraints

from pyro_vae.models._normal import HALF_LOG_2PI

__all__ = ["GaussianMixture", "ComponentMixture"]


class GaussianMixture(dist.TorchDistribution):
    """p(z) = Σ_c π_c N(z; μ_c, diag σ_c²) with π = softmax(logits).

    Arguments:
        logits: ``(C,)`` unnormalised log mixture weights.
        loc: ``(C, D)`` component means.
        scale: ``(C, D)`` component standard deviations.

    Batch shape ``()``, event shape ``(D,)``; Pyro's plates expand it.
    """

    arg_constraints = {
        "logits": constraints.real_vector,
        "loc": constraints.real,
        "scale": constraints.positive,
    }
    support = constraints.real_vector
    has_rsample = False

    def __init__(
        self,
        logits: torch.Tensor,
        loc: torch.Tensor,
        scale: torch.Tensor,
        validate_args: bool | None = None,
    ) -> None:
        if loc.dim() != 2 or scale.shape != loc.shape or logits.shape != loc.shape[:1]:
            raise ValueError(
                "GaussianMixture needs logits (C,), loc (C, D) and scale (C, D); got "
                f"{tuple(logits.shape)}, {tuple(loc.shape)}, {tuple(scale.shape)}"
            )
        self.logits, self.loc, self.scale = logits, loc, scale
        super().__init__(torch.Size(), loc.shape[-1:], validate_args=validate_args)

    def component_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log N(z; μ_c, diag σ_c²) for ``z`` of shape ``(*batch, D)``: ``(*batch, C)``."""
        precision = self.scale.pow(-2)
        flat = z.reshape(-1, z.shape[-1])
        quadratic = flat.pow(2) @ precision.T * -0.5 + flat @ (self.loc * precision).T
        bias = (
            -0.5 * (self.loc.pow(2) * precision).sum(-1)
            - self.scale.log().sum(-1)
            - z.shape[-1] * HALF_LOG_2PI
        )
        return (quadratic + bias).reshape(*z.shape[:-1], -1)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        log_weights = torch.log_softmax(self.logits, -1)
        return torch.logsumexp(self.component_log_prob(value) + log_weights, -1)

    def sample(self, sample_shape: tuple[int, ...] = ()) -> torch.Tensor:
        with torch.no_grad():
            shape = torch.Size(sample_shape)
            component = dist.Categorical(logits=self.logits).sample(shape)
            eps = torch.randn(
                shape + self.event_shape, dtype=self.loc.dtype, device=self.loc.device
            )
            return self.loc[component] + self.scale[component] * eps

    @property
    def mean(self) -> torch.Tensor:
        return torch.softmax(self.logits, -1) @ self.loc

    @property
    def variance(self) -> torch.Tensor:
        weights = torch.softmax(self.logits, -1)
        second_moment = weights @ (self.scale.pow(2) + self.loc.pow(2))
        return second_moment - self.mean.pow(2)


class ComponentMixture(dist.MixtureSameFamily):
    """Σ_c π_c q_c(z) for any component distribution of batch shape ``(C,)``.

    ``torch``'s :class:`~torch.distributions.MixtureSameFamily` evaluates the
    components at ``z`` with a singleton dimension in place of C and relies on
    broadcasting; a conditional flow's network cannot broadcast its context
    that way, so here ``z`` is expanded to ``(*batch, C, D)`` first.
    """

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        num_components = self._mixture_distribution.logits.shape[-1]
        expanded = value.unsqueeze(-2).expand(*value.shape[:-1], num_components, value.shape[-1])
        log_components = self._component_distribution.log_prob(expanded)
        log_weights = torch.log_softmax(self._mixture_distribution.logits, -1)
        return torch.logsumexp(log_components + log_weights, -1)
