"""Pyro's affine autoregressive transform with an inverse that keeps the input's dtype.

:class:`pyro.distributions.transforms.AffineAutoregressive` inverts z = f(ε) one
variable at a time, starting from ``torch.zeros(...)`` in the *default* dtype, so
the inverse of a float64 flow fails inside its network. The inverse is what a
flow prior's sampling and an IAF guide's log q at a new z (the path gradients of
``stl`` and ``iwae-dreg``) need. These subclasses change only that start value.
"""

from __future__ import annotations

from functools import partial

import torch
from pyro.distributions.transforms import (
    AffineAutoregressive,
    ConditionalAffineAutoregressive,
)
from pyro.distributions.transforms.utils import clamp_preserve_gradients

__all__ = ["AffineAutoregressiveStep", "ConditionalAffineAutoregressiveStep"]


class AffineAutoregressiveStep(AffineAutoregressive):
    """:class:`~pyro.distributions.transforms.AffineAutoregressive`, inverse in y's dtype.

    Inverse (D network passes): for each d in the network's order,
    x_d = (y_d - μ_d(x_<d)) exp(-log σ_d(x_<d)), or for the stable form
    x_d = (y_d - (1 - σ_d) m_d) / σ_d.
    """

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        x = [torch.zeros_like(y[..., 0])] * y.shape[-1]
        for idx in self.arn.permutation:
            mean, log_scale = self.arn(torch.stack(x, dim=-1))
            log_scale = clamp_preserve_gradients(
                log_scale, self.log_scale_min_clip, self.log_scale_max_clip
            )
            x[idx] = (y[..., idx] - mean[..., idx]) * torch.exp(-log_scale[..., idx])
        self._cached_log_scale = log_scale
        return torch.stack(x, dim=-1)

    def _inverse_stable(self, y: torch.Tensor) -> torch.Tensor:
        x = [torch.zeros_like(y[..., 0])] * y.shape[-1]
        for idx in self.arn.permutation:
            mean, logit_scale = self.arn(torch.stack(x, dim=-1))
            inverse_scale = 1 + torch.exp(-logit_scale[..., idx] - self.sigmoid_bias)
            x[idx] = inverse_scale * y[..., idx] + (1 - inverse_scale) * mean[..., idx]
        self._cached_log_scale = self.logsigmoid(logit_scale + self.sigmoid_bias)
        return torch.stack(x, dim=-1)


class ConditionalAffineAutoregressiveStep(ConditionalAffineAutoregressive):
    """Pyro's conditional IAF step, conditioned into an :class:`AffineAutoregressiveStep`."""

    def condition(self, context: torch.Tensor) -> AffineAutoregressiveStep:
        network = partial(self.nn, context=context)
        network.permutation = self.nn.permutation  # type: ignore[attr-defined]
        network.get_permutation = self.nn.get_permutation  # type: ignore[attr-defined]
        return AffineAutoregressiveStep(network, **self.kwargs)
