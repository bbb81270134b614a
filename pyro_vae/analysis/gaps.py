r"""The inference gaps of a VAE (Cremer et al. 2018) and reference posteriors by MCMC.

The ELBO of the amortised guide falls short of :math:`\log p(x)` by the KL to the true
posterior,

.. math::

    \log p(x) - \mathrm{ELBO}[q_\phi(z \mid x)] = \mathrm{KL}(q_\phi(z \mid x) \,\|\, p(z \mid x)),

and that *inference gap* splits in two at :math:`q^*(z \mid x)`, the best distribution of the
guide's family for this x alone:

.. math::

    \begin{aligned}
    \text{approximation gap} &= \log p(x) - \mathrm{ELBO}[q^*(z \mid x)]
        && \text{(the family cannot fit } p(z \mid x) \text{)} \\
    \text{amortisation gap} &= \mathrm{ELBO}[q^*(z \mid x)] - \mathrm{ELBO}[q_\phi(z \mid x)]
        && \text{(one encoder serves every } x \text{)}
    \end{aligned}

:math:`q^*` is found by optimising per-example parameters of the guide's family (its
:meth:`~pyro_vae.guides.Guide.local_parameters`), started at the encoder's output, with
the decoder and prior fixed (:func:`fit_local_guides`). For the Gaussian guides the
local family is the whole family (every diagonal, or every full-covariance, Gaussian).
For the flow guides the local parameters are the base Gaussian and the context the
flow's shared networks read, so :math:`q^*` ranges over "this flow with a free context", a
subset of all flows of that shape: their approximation gap is an upper bound on the
paper's, which optimises the flow's weights per example too.

MCMC gives reference samples of :math:`p(z \mid x) \propto p(z)\, p_\theta(x \mid z)`
(:func:`nuts_posterior`), against which :func:`compare_with_nuts` measures a guide by its
moments and by the inclusive :math:`\mathrm{KL}(p(z \mid x) \,\|\, q(z \mid x))`, which grows
where q misses posterior mass.

References:
    1. C. Cremer, X. Li, D. Duvenaud. Inference suboptimality in variational
       autoencoders. ICML 2018.
    2. M. D. Hoffman, A. Gelman. The No-U-Turn sampler. JMLR 15, 2014.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from pyro.infer import MCMC, NUTS

from pyro_vae._checks import check_number, check_positive_int
from pyro_vae.analysis._gap_checks import check_count, check_log_px, check_samples, check_vae
from pyro_vae.analysis._gap_results import InferenceGaps, PosteriorComparison, gaps_table
from pyro_vae.analysis._local_guides import (
    LocalGuide,
    check_local_guide,
    fit_local_guides,
    frozen,
    seeded,
)
from pyro_vae.infer import evaluate
from pyro_vae.models._data_checks import check_vae_data
from pyro_vae.models.guides import location
from pyro_vae.models.vae import VAE

__all__ = [
    "LocalGuide",
    "fit_local_guides",
    "InferenceGaps",
    "inference_gaps",
    "gaps_table",
    "nuts_posterior",
    "PosteriorComparison",
    "compare_with_nuts",
]

_LOG_PX_GUIDES = ("local", "amortised")


def inference_gaps(
    vae: VAE,
    x: torch.Tensor,
    *,
    num_samples: int = 5000,
    elbo_samples: int = 1000,
    local_guide: LocalGuide | None = None,
    log_px: torch.Tensor | None = None,
    log_px_guide: str = "local",
    fit_options: Mapping[str, Any] | None = None,
    seed: int | None = 0,
) -> InferenceGaps:
    r"""The approximation and amortisation gaps of every example of ``x``.

    :math:`\mathrm{ELBO}[q_\phi]` and :math:`\mathrm{ELBO}[q^*]` are Monte Carlo averages of
    ``elbo_samples`` log-weights. :math:`\log p(x)`, unless given (the closed form of a
    linear-Gaussian model, say), is importance-sampled with ``num_samples`` draws from the
    guide(s) named by ``log_px_guide``:

    * ``"local"`` (default): from :math:`q^*`. It is closer to :math:`p(z \mid x)` than
      :math:`q_\phi`, so its weights are more even: the estimate's variance, and its downward
      bias (it is a stochastic lower bound), are smaller. With the exact posterior in the
      family every weight equals :math:`p(x)`.
    * ``"amortised"``: from :math:`q_\phi`, the usual estimate.

    The larger of the two was rejected: :math:`q_\phi`'s heavy-tailed weights can overshoot
    :math:`\log p(x)` (by 0.24 nats on a linear-Gaussian example), which a maximum keeps.

    Arguments:
        vae: a :class:`~pyro_vae.VAE` (one latent site) whose guide has a local family.
        x: data ``(N, *event_shape)``, as for :func:`fit_local_guides`.
        num_samples: importance samples per example and guide for :math:`\log p(x)`.
        elbo_samples: samples per example for each ELBO.
        local_guide: :math:`q^*` already fit to this x (default: fit here).
        log_px: the exact :math:`\log p(x)` ``(N,)``, when known.
        log_px_guide: ``"local"`` or ``"amortised"``.
        fit_options: keyword arguments of :func:`fit_local_guides` (not ``seed``).
        seed: seed of every draw here; the global random stream is left untouched.

    Returns:
        an :class:`InferenceGaps` of per-example tensors ``(N,)``.
    """
    vae = check_vae(vae, "inference_gaps")
    x = check_vae_data(vae, x, "x")
    num_samples = check_positive_int("num_samples", num_samples)
    elbo_samples = check_positive_int("elbo_samples", elbo_samples)
    if log_px_guide not in _LOG_PX_GUIDES:
        raise ValueError(f"log_px_guide must be one of {_LOG_PX_GUIDES}, got {log_px_guide!r}")
    if log_px is not None:
        log_px = check_log_px(log_px, len(x))
    if local_guide is not None:
        local_guide = check_local_guide(vae, local_guide, x)
    elif fit_options is not None and (
        not isinstance(fit_options, Mapping) or "seed" in fit_options
    ):
        raise TypeError(
            f"fit_options must be a dict of fit_local_guides arguments other than seed (this "
            f"function's seed seeds the fit), got {fit_options!r}"
        )
    # frozen: evaluating vae.model registers its parameters in Pyro's param store, which
    # turns requires_grad on; the flags are restored on exit
    with frozen(vae), seeded(seed, x):
        if local_guide is None:
            local_guide = fit_local_guides(vae, x, seed=None, **dict(fit_options or {}))
        elbo_amortised = evaluate.elbo(vae.model, vae.guide, x, elbo_samples)
        elbo_local = evaluate.elbo(vae.model, local_guide, x, elbo_samples)
        source, stderr = "given", None
        if log_px is None:
            source, proposal = log_px_guide, local_guide if log_px_guide == "local" else vae.guide
            log_px, stderr = evaluate.log_likelihood(
                vae.model, proposal, x, num_samples, return_stderr=True
            )
    return InferenceGaps(
        log_px=log_px,
        elbo_amortised=elbo_amortised,
        elbo_local=elbo_local,
        local_guide=local_guide,
        log_px_source=source,
        log_px_stderr=stderr,
    )


def nuts_posterior(
    vae: VAE,
    x: torch.Tensor,
    *,
    num_samples: int = 500,
    warmup_steps: int = 300,
    seed: int | None = 0,
    target_accept_prob: float = 0.8,
    max_tree_depth: int = 10,
    full_mass: bool = False,
) -> torch.Tensor:
    r"""Samples of the posterior under the trained decoder, by NUTS:

    .. math:: p(z \mid x_n) \propto p(z)\, p_\theta(x_n \mid z).

    One chain per example, with the potential energy
    :math:`U(z) = -\log p(z) - \log p_\theta(x_n \mid z)` and Pyro's
    :class:`~pyro.infer.NUTS` (step size and mass matrix adapted during the warm-up), started
    at the guide's location for :math:`x_n`. The VAE's parameters are frozen:
    they receive no gradient and do not change. With the defaults a chain took about 5 s
    for a 784-200-2 MLP decoder and 10 s for 784-200-16, on one CPU core.

    Arguments:
        vae: a :class:`~pyro_vae.VAE` with one latent site.
        x: data ``(N, *event_shape)`` of the VAE's dtype and device, in the likelihood's support.
        num_samples: kept samples per chain.
        warmup_steps: adaptation steps per chain, discarded.
        seed: seed of the chains; the global random stream is left untouched.
        target_accept_prob: the acceptance rate the step size adapts to, in (0, 1).
        max_tree_depth: at most :math:`2^{\mathrm{depth}}` leapfrog steps per sample.
        full_mass: adapt a dense mass matrix (for strongly correlated posteriors) instead
            of a diagonal one.

    Returns:
        samples ``(N, num_samples, latent_dim)``.
    """
    vae = check_vae(vae, "nuts_posterior")
    x = check_vae_data(vae, x, "x")
    num_samples = check_positive_int("num_samples", num_samples)
    warmup_steps = check_count("warmup_steps", warmup_steps)
    accept = check_number("target_accept_prob", target_accept_prob)
    if not 0 < accept < 1:
        raise ValueError(f"target_accept_prob must be in (0, 1), got {target_accept_prob!r}")
    max_tree_depth = check_positive_int("max_tree_depth", max_tree_depth)
    chains = []
    with frozen(vae), seeded(seed, x):
        with torch.no_grad():
            starts = location(vae.encoder(x))
        for n in range(len(x)):
            row = x[n : n + 1]

            def potential(params: dict[str, torch.Tensor], row: torch.Tensor = row):
                z = params["z"].unsqueeze(0)
                return -(vae.prior.log_prob(z) + vae.likelihood.log_prob(row, z)).sum()

            kernel = NUTS(
                potential_fn=potential,
                target_accept_prob=accept,
                max_tree_depth=max_tree_depth,
                full_mass=bool(full_mass),
            )
            mcmc = MCMC(
                kernel,
                num_samples=num_samples,
                warmup_steps=warmup_steps,
                initial_params={"z": starts[n].clone()},
                disable_progbar=True,
            )
            mcmc.run()
            chains.append(mcmc.get_samples()["z"].detach())
    return torch.stack(chains)


def _moments(q: Any, num_samples: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation of q, each ``(N, D)``: closed form, else from samples."""
    try:
        return q.mean, q.stddev
    except NotImplementedError:  # a flow
        z = q.sample((num_samples,))
        return z.mean(0), z.std(0)


def _inclusive_kl(
    vae: VAE, x: torch.Tensor, samples: torch.Tensor, q: Any, log_px: torch.Tensor
) -> torch.Tensor:
    """KL(p(z|x) ‖ q) = E_p(z|x)[log p(x, z) - log q(z)] - log p(x) from samples ``(N, S, D)``."""
    z = samples.transpose(0, 1)  # (S, N, D), particles first
    log_w = vae.likelihood.log_prob(x, z) + vae.prior.log_prob(z) - q.log_prob(z)
    return log_w.mean(0) - log_px


def compare_with_nuts(
    vae: VAE,
    x: torch.Tensor,
    samples: torch.Tensor,
    *,
    log_px: torch.Tensor | None = None,
    local_guide: LocalGuide | None = None,
    num_samples: int = 5000,
    seed: int | None = 0,
) -> PosteriorComparison:
    r"""Moments and inclusive KL of the amortised guide (and q*) against NUTS samples of p(z|x).

    The inclusive KL is estimated from the S posterior samples :math:`z_s` of each example:

    .. math::

        \mathrm{KL}(p(z \mid x) \,\|\, q(z \mid x)) \approx
        \frac{1}{S} \sum_s [\log p(x, z_s) - \log q(z_s \mid x)] - \log p(x).

    :math:`\log p(x)`, unless given, is importance-sampled with ``num_samples`` draws from
    :math:`q^*` when ``local_guide`` is given (closer to :math:`p(z \mid x)`, so a
    lower-variance estimate), else from :math:`q_\phi`. A flow's mean and standard deviation
    are estimated from ``num_samples`` draws.

    Arguments:
        vae: the VAE the samples are of.
        x: data ``(N, *event_shape)``.
        samples: from :func:`nuts_posterior`, ``(N, S, latent_dim)``.
        log_px: the exact :math:`\log p(x)` ``(N,)``, when known.
        local_guide: :math:`q^*` fit to this x (:func:`fit_local_guides`), compared as well.
        num_samples: importance samples for :math:`\log p(x)`, and draws for a flow's moments.
        seed: seed of those draws; the global random stream is left untouched.

    Returns:
        a :class:`PosteriorComparison` of per-example tensors.
    """
    vae = check_vae(vae, "compare_with_nuts")
    x = check_vae_data(vae, x, "x")
    samples = check_samples(samples, len(x), vae.latent_dim).to(x)
    num_samples = check_positive_int("num_samples", num_samples)
    if log_px is not None:
        log_px = check_log_px(log_px, len(x))
    if local_guide is not None:
        local_guide = check_local_guide(vae, local_guide, x)
    with torch.no_grad(), frozen(vae), seeded(seed, x):
        if log_px is None:
            proposal = local_guide if local_guide is not None else vae.guide
            log_px = evaluate.log_likelihood(vae.model, proposal, x, num_samples)
        guides = {"amortised": vae.encoder(x)}
        if local_guide is not None:
            guides["local"] = local_guide.distribution(x)
        moments = {name: _moments(q, num_samples) for name, q in guides.items()}
        kls = {name: _inclusive_kl(vae, x, samples, q, log_px) for name, q in guides.items()}
    local = "local" in guides
    return PosteriorComparison(
        log_px=log_px,
        nuts_mean=samples.mean(1),
        nuts_std=samples.std(1),
        amortised_mean=moments["amortised"][0],
        amortised_std=moments["amortised"][1],
        inclusive_kl_amortised=kls["amortised"],
        local_mean=moments["local"][0] if local else None,
        local_std=moments["local"][1] if local else None,
        inclusive_kl_local=kls["local"] if local else None,
    )
