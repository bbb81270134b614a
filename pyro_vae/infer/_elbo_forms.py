"""The ELBO three ways: :func:`elbo_forms` (public as ``pyro_vae.evaluate.elbo_forms``).

For a model p(x, z) and a guide q(z|x), with w = p(x, z) / q(z|x), the evidence
lower bound has three equal forms:

    (1)  ELBO(x) = log p(x) − KL(q(z|x) ‖ p(z|x))              evidence minus the gap
    (2)  ELBO(x) = E_q[log p(x|z)] − KL(q(z|x) ‖ p(z))          reconstruction minus prior matching
    (3)  ELBO(x) = E_q[log p(x, z) − log q(z|x)] = E_q[log w]   the expected log-weight

and for a Markovian hierarchical model (z_1 next to x, … z_L on top) the prior
matching of (2) splits into one term per layer,

    KL(q ‖ p(z)) = Σ_l E_q[log q(z_l | z_{l−1}) − log p(z_l | z_{l+1})],

the top layer's p(z_L) being the prior.

:func:`elbo_forms` computes the pieces of each form from K draws z_k ~ q(z|x)
per example: (3) as the mean of log w_k; (2) as the mean of log p(x|z_k) minus
each layer's term, in closed form where torch has one (as the ``analytic-kl``
objective does), else the mean of log q − log p at the draws; (1) with log p(x)
estimated by importance sampling, log (1/K) Σ_k w_k, and the gap as
log p̂(x) − mean_k log w_k. Form (1) therefore equals form (3) by construction: the
gap cannot be estimated without log p(x), and what form (1) adds is the split of
the bound into evidence and gap (each converging to its exact value as K grows,
which the linear-Gaussian model shows in closed form). Forms (2) and (3) are
computed apart, and differ by Monte Carlo error where a closed-form KL is used.

Every piece comes with its Monte Carlo standard error over the K draws (delta
method for the ratio estimates: log p̂(x) has influence K ŵ_k with normalised
weights ŵ_k = w_k / Σ_j w_j, and the gap K ŵ_k − log w_k).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields

import torch

from pyro_vae._checks import check_int_at_least, check_positive_int
from pyro_vae.infer import _particles
from pyro_vae.infer._programs import check_on_one_example, check_programs_and_data
from pyro_vae.infer._traced import TracedDraw

__all__ = ["ElboForms", "elbo_forms"]

# Particles × examples evaluated at once: bounds the memory of the traced programs.
_MAX_ROWS = 8192


@dataclass(frozen=True)
class ElboForms:
    r"""The pieces of the ELBO's three forms, per example: each a tensor of shape ``(N,)``
    in nats, with its Monte Carlo standard error over the K draws (``*_stderr``).

    Attributes:
        log_px: :math:`\log p(x)` by importance sampling, :math:`\log \tfrac{1}{K} \sum_k w_k`.
        posterior_kl: the gap :math:`\mathrm{KL}(q(z \mid x) \,\|\, p(z \mid x))`, estimated as
            :math:`\log \hat p(x) - \tfrac{1}{K} \sum_k \log w_k`.
        reconstruction: :math:`\mathbb{E}_q[\log p(x \mid z)]`.
        layers: the prior-matching term of each latent site, by site name, in the
            guide's order (``{"z": …}`` for a VAE, ``{"z1": …, "z2": …}`` for a
            two-layer one): :math:`\mathrm{KL}(q(z \mid x) \,\|\, p(z))` for a single layer,
            and :math:`\mathbb{E}_q[\log q(z_l \mid \cdot) - \log p(z_l \mid \cdot)]` for each
            layer of a hierarchy.
        closed_form: for each site, whether its term was taken in closed form
            (averaged over the draws of the layers below it, if any).
        prior_kl_stderr: the standard error of the sum of the layers' terms.
        expected_log_weight: :math:`\mathbb{E}_q[\log w]
            = \mathbb{E}_q[\log p(x, z) - \log q(z \mid x)]`.
        num_samples: K, the draws per example.
    """

    log_px: torch.Tensor
    log_px_stderr: torch.Tensor
    posterior_kl: torch.Tensor
    posterior_kl_stderr: torch.Tensor
    reconstruction: torch.Tensor
    reconstruction_stderr: torch.Tensor
    layers: dict[str, torch.Tensor]
    layers_stderr: dict[str, torch.Tensor]
    closed_form: dict[str, bool]
    prior_kl_stderr: torch.Tensor
    expected_log_weight: torch.Tensor
    expected_log_weight_stderr: torch.Tensor
    num_samples: int

    @property
    def prior_kl(self) -> torch.Tensor:
        r"""The prior matching :math:`\mathrm{KL}(q(z \mid x) \,\|\, p(z))`, ``(N,)``.

        The sum of the per-layer terms.
        """
        return sum(self.layers.values(), torch.zeros_like(self.reconstruction))

    @property
    def form1(self) -> torch.Tensor:
        r""":math:`\log p(x) - \mathrm{KL}(q(z \mid x) \,\|\, p(z \mid x))`, ``(N,)``."""
        return self.log_px - self.posterior_kl

    @property
    def form2(self) -> torch.Tensor:
        r""":math:`\mathbb{E}_q[\log p(x \mid z)] - \mathrm{KL}(q(z \mid x) \,\|\, p(z))`.

        Shape ``(N,)``.
        """
        return self.reconstruction - self.prior_kl

    @property
    def form3(self) -> torch.Tensor:
        r""":math:`\mathbb{E}_q[\log p(x, z) - \log q(z \mid x)]`, ``(N,)``."""
        return self.expected_log_weight


def _mean_and_stderr(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean over the K ≥ 2 draws (dim 0) of ``(K, B)`` values, and its standard error."""
    return values.mean(0), values.std(0, correction=1) / math.sqrt(values.shape[0])


def _batch_forms(
    model: Callable[..., object], guide: Callable[..., object], x: torch.Tensor, k: int, depth: int
) -> ElboForms:
    """The pieces of the three forms for one batch ``x`` of B examples."""
    p = _particles.run(model, guide, (x,), {}, k, depth)
    draw = TracedDraw(p)
    log_lik = draw.log_likelihood()  # (K, B)
    log_w = log_lik + draw.log_prior() - draw.log_q()
    relative = torch.softmax(log_w, dim=0) * k  # K ŵ_k = w_k / mean_j w_j
    log_px = torch.logsumexp(log_w, dim=0) - math.log(k)
    kls = {name: draw.latent_kl(name, "analytic") for name in p.latents}  # (K, B) each
    layers = {name: _mean_and_stderr(kl) for name, (kl, _) in kls.items()}
    reconstruction, reconstruction_stderr = _mean_and_stderr(log_lik)
    expected_log_weight, expected_log_weight_stderr = _mean_and_stderr(log_w)
    return ElboForms(
        log_px=log_px,
        log_px_stderr=_mean_and_stderr(relative)[1],
        posterior_kl=log_px - expected_log_weight,
        posterior_kl_stderr=_mean_and_stderr(relative - log_w)[1],
        reconstruction=reconstruction,
        reconstruction_stderr=reconstruction_stderr,
        layers={name: mean for name, (mean, _) in layers.items()},
        layers_stderr={name: stderr for name, (_, stderr) in layers.items()},
        closed_form={name: fallback is None for name, (_, fallback) in kls.items()},
        prior_kl_stderr=_mean_and_stderr(sum((kl for kl, _ in kls.values()), log_w * 0))[1],
        expected_log_weight=expected_log_weight,
        expected_log_weight_stderr=expected_log_weight_stderr,
        num_samples=k,
    )


def elbo_forms(
    model: Callable[..., object],
    guide: Callable[..., object],
    x: torch.Tensor,
    num_samples: int = 1000,
    *,
    batch_size: int | None = None,
) -> ElboForms:
    r"""The ELBO of each example in its three forms, each piece computed its own way:

    .. math::

        \begin{aligned}
        \mathrm{ELBO}(x) &= \log p(x) - \mathrm{KL}(q(z \mid x) \,\|\, p(z \mid x))
            && \text{(1) evidence minus the gap} \\
        &= \mathbb{E}_q[\log p(x \mid z)] - \mathrm{KL}(q(z \mid x) \,\|\, p(z))
            && \text{(2) reconstruction minus prior matching} \\
        &= \mathbb{E}_q[\log p(x, z) - \log q(z \mid x)]
            && \text{(3) the expected log-weight}
        \end{aligned}

    For a Markovian hierarchical VAE the prior matching of (2) splits by layer,
    :math:`\sum_l \mathbb{E}_q[\log q(z_l \mid z_{l-1}) - \log p(z_l \mid z_{l+1})]`.
    Every piece uses the same K draws :math:`z_k \sim q(z \mid x)`: (3) is the mean of
    :math:`\log w_k`; (2) takes each layer's KL in closed form where torch has one;
    (1) estimates :math:`\log p(x)` by importance sampling and the gap as
    :math:`\log \hat p(x) - \frac{1}{K}\sum_k \log w_k`, so (1) equals (3) by
    construction and adds the split into evidence and gap.

    Arguments:
        model, guide: Pyro programs taking a batch ``x`` (a VAE's ``vae.model`` and
            ``vae.guide``, a :class:`~pyro_vae.HierarchicalVAE`'s, or any pair
            following pyro_vae's site and plate names).
        x: data of shape ``(N, *event_shape)``.
        num_samples: :math:`K \ge 2`, the draws :math:`z_k \sim q(z \mid x)` per example that
            every piece uses.
        batch_size: examples per pass (default: as many as keep :math:`K \times B \le 8192`).

    Returns:
        an :class:`ElboForms`; ``.form1``, ``.form2`` and ``.form3`` are the three forms.

    Raises:
        TypeError, ValueError: bad programs or data, or :math:`K < 2` (a standard error
            needs two draws), named in the message.

    Example (the linear-Gaussian model with its exact posterior as guide: no gap):
        >>> import pyro_vae as pv
        >>> model = pv.linear_gaussian.LinearGaussian.random(data_dim=6, latent_dim=2, seed=0)
        >>> vae, x = model.vae(), model.sample(5)
        >>> forms = pv.evaluate.elbo_forms(vae.model, vae.guide, x, num_samples=10)
        >>> bool(forms.posterior_kl.abs().max() < 1e-4)
        True
        >>> bool(((forms.log_px - model.log_marginal(x)).abs() < 1e-4).all())
        True
    """
    num_samples = check_int_at_least("num_samples", num_samples, low=2, why="standard errors")
    if batch_size is not None:
        batch_size = check_positive_int("batch_size", batch_size)
    x = check_programs_and_data(model, guide, x)
    batch_size = batch_size or max(1, _MAX_ROWS // num_samples)
    depth = check_on_one_example(model, guide, x, "elbo_forms")
    with torch.no_grad():
        batches = [
            _batch_forms(model, guide, x[start : start + batch_size], num_samples, depth)
            for start in range(0, len(x), batch_size)
        ]
    return _join(batches)


def _join(batches: list[ElboForms]) -> ElboForms:
    """One :class:`ElboForms` from those of consecutive batches."""
    joined: dict[str, object] = {}
    for f in fields(ElboForms):
        values = [getattr(b, f.name) for b in batches]
        if isinstance(values[0], torch.Tensor):
            joined[f.name] = torch.cat(values)
        elif f.name == "closed_form":
            joined[f.name] = {n: all(v[n] for v in values) for n in values[0]}
        elif isinstance(values[0], dict):
            joined[f.name] = {n: torch.cat([v[n] for v in values]) for n in values[0]}
        else:
            joined[f.name] = values[0]
    return ElboForms(**joined)  # type: ignore[arg-type]
