"""What every estimator reads from one vectorised draw: the :class:`Draw` interface.

K particles z_k ~ q(z|x) are drawn for a batch of B examples, and each estimator
of :mod:`pyro_vae.infer.estimators` is written once, over these quantities:

    log p(x|z_k), log p(z_k), log q(z_k|x)     (K, B), unscaled
    log w_k = log p(x|z_k) + β [log p(z_k) - log q(z_k|x)]
    the ELBO's reconstruction and KL terms     (B,), means over particles, scaled

Three classes provide them: :class:`pyro_vae.infer._fused.FusedDraw` computes a
VAE's own densities from its parts, without tracing, and
:class:`pyro_vae.infer._fused_hierarchy.HierarchicalDraw` a HierarchicalVAE's;
:class:`pyro_vae.infer._traced.TracedDraw` reads them from the traces of any Pyro model
and guide. The estimators never know which one they hold.

A site's *scale* is the factor Pyro's ``poutine.scale`` puts on its log-density
(1/B in ``fit``). The ELBO's terms carry each site's own scale; the
importance-weighted bounds need one scale per example at every site,
:meth:`Draw.example_scale`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch.distributions import Independent

__all__ = ["Draw", "KLTerm", "KL_KINDS", "distribution_name", "log_weights"]

# How a latent's KL term is estimated: "mc", by Monte Carlo from the particles;
# "path", the same value with the score term ∂/∂φ log q_φ(z)|_z dropped from its
# gradient (STL); "analytic", in closed form where torch has one, else "mc".
KL_KINDS = ("mc", "path", "analytic")


@dataclass(frozen=True)
class KLTerm:
    """One latent site's KL(q(z|x) ‖ p(z)) term of the ELBO.

    Attributes:
        name: the latent site.
        value: per example ``(B,)``, the mean over particles times the site's scale;
            with groups (free bits), per latent dimension ``(K, G)``, summed over the
            batch with the scale.
        total_scale: Σ_b s_b, the weight of one nat per example (for the free-bits floor).
        fallback: for ``"analytic"``, why the closed form was not used (``None`` when it was).
    """

    name: str
    value: torch.Tensor
    total_scale: torch.Tensor | float = 1.0
    fallback: str | None = None


class Draw(Protocol):
    """K particles for a batch of B examples, and their log-densities.

    Attributes:
        num_particles: K.
    """

    num_particles: int

    def log_likelihood(self) -> torch.Tensor:
        """Σ over observed sites of log p(x|z_k), unscaled: ``(K, B)``."""

    def log_prior(self) -> torch.Tensor:
        """Σ over latent sites of log p(z_k): ``(K, B)``."""

    def log_q(self, *, path: bool = False) -> torch.Tensor:
        """Σ over latent sites of log q(z_k|x): ``(K, B)``; with ``path``, the gradient
        keeps only the path through z (the value is the same)."""

    def example_scale(self) -> torch.Tensor | float:
        """The one scale of every site, per example ``(B,)`` or a number.

        Raises:
            ValueError: sites carry different scales.
        """

    def reconstruction(self) -> torch.Tensor:
        """Σ over observed sites of scale × log p(x|z), averaged over particles: ``(B,)``."""

    def kl_terms(self, kind: str, *, groups: bool = False) -> list[KLTerm]:
        """Each latent site's KL term, estimated the ``kind`` way (:data:`KL_KINDS`).

        With ``groups``, per latent dimension, for free bits.

        Raises:
            NotImplementedError: ``groups`` where this draw cannot split the terms.
        """

    def path_hook_applies(self) -> bool:
        """Whether :meth:`reweight_path` can weight the path gradient by one hook on z: there
        is one latent site (with several, the gradient reaching one comes through others)."""

    def reweight_path(self, coefficient: torch.Tensor) -> bool:
        """Multiplies the gradient reaching z_k through its path by ``coefficient`` ``(K, B)``
        (DReG); returns ``False``, registering nothing, where one hook on z cannot do it."""

    def cut_log_densities(self, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
        """log p(x|z̄) + β log p(z̄) and log q(z̄|x) at z̄ = stop_gradient(z): ``(K, B)`` each."""


def log_weights(d: Draw, beta: float, *, path: bool = False) -> torch.Tensor:
    """log w_k = log p(x|z_k) + β [log p(z_k) - log q(z_k|x)]: ``(K, B)``.

    With ``path``, log q keeps only its path derivative (STL, DReG).
    """
    return d.log_likelihood() + beta * (d.log_prior() - d.log_q(path=path))


def distribution_name(fn: Any) -> str:
    """A distribution's class name, looking through ``Independent`` to its base."""
    while isinstance(fn, Independent):
        fn = fn.base_dist
    return type(fn).__name__
