r"""Evaluation of trained models: importance weights, log-likelihood and the ELBO.

Every function takes a Pyro ``model`` and ``guide`` that follow pyro_vae's site
names (every sample site inside ``plate("data")`` over the batch) and a data
tensor ``x`` of shape ``(N, *event_shape)``; it returns per-example tensors of
shape ``(N,)`` in nats, builds no gradients, and works through the data in
batches and through the particles in chunks so that memory stays bounded.

Bad input is refused before any work, with an error naming the argument: ``x``
must be a finite floating tensor; for a VAE's own programs (``vae.model``,
``vae.guide``) also of the VAE's dtype, device and event shape and, with the
model, in the likelihood's support (a guide alone reads any x of that shape).
Other programs are run once on one example first, by the check the objectives
share (:func:`pyro_vae.infer._programs.check_programs`): it refuses swapped programs
(a "model" that observes nothing, a "guide" that observes x), a VAE object
passed instead of ``vae.model`` or ``vae.guide``, and sites outside the data
plate, and finds how deep the programs nest their plates.

The importance weight of a sample :math:`z_k \sim q(z \mid x)` is
:math:`w_k = p(x, z_k) / q(z_k \mid x)`, so

.. math::

    \log p(x) \approx \log \frac{1}{K} \sum_k w_k, \qquad
    \mathrm{ELBO}(x) \approx \frac{1}{K} \sum_k \log w_k;

the first is a stochastic lower bound that tends to :math:`\log p(x)` as
:math:`K \to \infty`, the second an unbiased estimate of :math:`\mathbb{E}_q[\log w]`.

:func:`elbo_forms` (:mod:`pyro_vae.infer._elbo_forms`) writes the ELBO in its three
equal forms, each piece with its Monte Carlo error.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import pyro
import pyro.poutine as poutine
import torch

from pyro_vae._checks import check_positive_int
from pyro_vae.infer import _fused, _particles, estimators
from pyro_vae.infer._activity import active_units, unit_activity
from pyro_vae.infer._elbo_forms import ElboForms, elbo_forms
from pyro_vae.infer._logsumexp import StreamedLogSumExp
from pyro_vae.infer._programs import (
    check_on_one_example,
    check_programs_and_data,
    sample_sites,
)
from pyro_vae.infer._traced import TracedDraw

__all__ = [
    "elbo_forms",
    "ElboForms",
    "log_weights",
    "log_likelihood",
    "elbo",
    "iwae_bounds",
    "elbo_terms",
    "unit_activity",
    "active_units",
]

ModelFn = Callable[..., object]

# Rows (particles × examples) evaluated at once. It bounds memory (about 90 MB
# for the 784-400-50 MLP, bench/eval_speed.py) and keeps the decoder's activations
# near the CPU's caches: on 2 cores, chunks of 4096-8192 rows ran 1.3-1.5x faster
# than 32768 (1000 images, K = 500). On a GPU larger chunks pay: raise max_rows.
_DEFAULT_MAX_ROWS = 8192


def _site_log_prob(site: dict, particle_dim: int) -> torch.Tensor:
    """log_prob of one site, summed over every dimension but particles and data: (k, b)."""
    (data_dim,) = [f.dim for f in site["cond_indep_stack"] if f.name == "data"]
    log_p = site["fn"].log_prob(site["value"])
    mask = site["mask"]
    if isinstance(mask, torch.Tensor):
        log_p = torch.where(mask, log_p, log_p.new_zeros(()))
    elif mask is False:
        log_p = torch.zeros_like(log_p)
    log_p = log_p.reshape((1,) * (-particle_dim - log_p.dim()) + log_p.shape)
    keep = {log_p.dim() + particle_dim, log_p.dim() + data_dim}
    summed = [d for d in range(log_p.dim()) if d not in keep]
    if summed:
        log_p = log_p.sum(summed)
    return log_p


def _batch_log_weights(
    model: ModelFn, guide: ModelFn, x: torch.Tensor, num_particles: int, particle_dim: int
) -> torch.Tensor:
    """log w for ``num_particles`` samples for each row of the batch ``x``: ``(K, B)``."""
    with pyro.plate("particles", num_particles, dim=particle_dim):
        guide_trace = poutine.trace(guide).get_trace(x)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x)
    shape = (num_particles, x.shape[0])
    log_w = torch.zeros(shape, dtype=x.dtype, device=x.device)
    for site in sample_sites(model_trace):
        log_w = log_w + _site_log_prob(site, particle_dim).expand(shape)
    for site in sample_sites(guide_trace):
        if not site["is_observed"]:
            log_w = log_w - _site_log_prob(site, particle_dim).expand(shape)
    return log_w


def _fused_chunk(vae, q, batch: torch.Tensor, num_particles: int) -> torch.Tensor:
    """log w for ``num_particles`` draws from ``q`` = q(z|batch), evaluated from the parts."""
    d = _fused.draw(vae, 1.0, batch, num_particles, q=q)
    return d.log_likelihood() + d.log_prior() - d.log_q()


def _log_weight_chunks(
    model: ModelFn,
    guide: ModelFn,
    x: torch.Tensor,
    num_samples: int,
    batch_size: int | None,
    max_rows: int,
    caller: str,
    *,
    checked: bool = False,
) -> Iterator[tuple[int, torch.Tensor]]:
    """Yields ``(first example, log w of shape (k, b))`` over batches of x and chunks of K
    (``checked``: the caller has checked the arguments and the data).

    Every chunk holds at most ``max_rows`` particles × examples (one particle per
    example when a batch alone exceeds it). A VAE's own programs are evaluated by
    :mod:`pyro_vae.infer._fused`: the encoder runs once per batch and the chunks draw
    from its q(z|x), the draws Pyro's plate would make. Other programs are traced.
    """
    if not checked:
        num_samples = check_positive_int("num_samples", num_samples)
        max_rows = check_positive_int("max_rows", max_rows)
        if batch_size is not None:
            check_positive_int("batch_size", batch_size)
        check_programs_and_data(model, guide, x)
    if batch_size is None:
        batch_size = min(len(x), max_rows)
    chunk = max(1, max_rows // min(batch_size, len(x)))
    matched = _fused.match(model, guide, (x,), {})
    vae = matched[0] if matched is not None else None
    particle_dim = None
    for start in range(0, len(x), batch_size):
        batch = x[start : start + batch_size]
        q = _fused.guide_distribution(vae, batch) if vae is not None else None
        if q is None and particle_dim is None:
            particle_dim = -1 - check_on_one_example(model, guide, x, caller)
        for k in range(0, num_samples, chunk):
            size = min(chunk, num_samples - k)
            if q is not None:
                yield start, _fused_chunk(vae, q, batch, size)
            else:
                yield start, _batch_log_weights(model, guide, batch, size, particle_dim)


def log_weights(
    model: ModelFn,
    guide: ModelFn,
    x: torch.Tensor,
    num_samples: int,
    *,
    batch_size: int | None = None,
    max_rows: int = _DEFAULT_MAX_ROWS,
) -> torch.Tensor:
    r"""Importance log-weights for :math:`z_k \sim q(z \mid x)`:

    .. math:: \log p(x, z_k) - \log q(z_k \mid x).

    Arguments:
        model, guide: Pyro functions taking a batch ``x``.
        x: data of shape ``(N, *event_shape)``.
        num_samples: K, the samples per example.
        batch_size: examples per pass (default: as many as fit ``max_rows`` with one particle each).
        max_rows: bound on particles × examples evaluated at once, which bounds
            the memory of the networks' activations.

    Returns:
        a tensor of shape ``(K, N)``.
    """
    return _log_weights(model, guide, x, num_samples, batch_size, max_rows, "log_weights")


def _log_weights(
    model: ModelFn,
    guide: ModelFn,
    x: torch.Tensor,
    num_samples: int,
    batch_size: int | None,
    max_rows: int,
    caller: str,
    *,
    checked: bool = False,
) -> torch.Tensor:
    """:func:`log_weights` for the public function ``caller``, which its errors name
    (``checked``: the caller has checked the arguments and the data)."""
    with torch.no_grad():
        columns: dict[int, list[torch.Tensor]] = {}
        chunks = _log_weight_chunks(
            model, guide, x, num_samples, batch_size, max_rows, caller, checked=checked
        )
        for start, log_w in chunks:
            columns.setdefault(start, []).append(log_w)
        return torch.cat([torch.cat(rows, dim=0) for rows in columns.values()], dim=1)


def log_likelihood(
    model: ModelFn,
    guide: ModelFn,
    x: torch.Tensor,
    num_samples: int = 1000,
    *,
    batch_size: int | None = None,
    max_rows: int = _DEFAULT_MAX_ROWS,
    return_stderr: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    r"""Importance-sampled estimate of :math:`\log p(x)` per example:

    .. math:: \log \frac{1}{K} \sum_k w_k.

    Computed as ``logsumexp(log w) - log K``, accumulated chunk by chunk, so
    memory is bounded by ``max_rows`` whatever K is. Its Monte Carlo standard
    error (delta method) is :math:`\sqrt{(K \sum_k \hat w_k^2 - 1) / (K - 1)}` with normalised
    weights :math:`\hat w_k = w_k / \sum_j w_j`; it is small when the weights are even.

    Arguments:
        model, guide, x, num_samples, batch_size, max_rows: as in :func:`log_weights`.
        return_stderr: also return the per-example standard errors.

    Returns:
        ``log_px`` of shape ``(N,)``, or ``(log_px, stderr)`` with ``return_stderr``.

    References:
        1. Y. Burda, R. Grosse, R. Salakhutdinov. Importance weighted autoencoders. ICLR 2016.
    """
    sums: dict[int, StreamedLogSumExp] = {}
    with torch.no_grad():
        chunks = _log_weight_chunks(
            model, guide, x, num_samples, batch_size, max_rows, "log_likelihood"
        )
        for start, log_w in chunks:
            sums.setdefault(start, StreamedLogSumExp()).add(log_w)
    log_sum = torch.cat([s.log_sum for s in sums.values()])
    log_px = log_sum - math.log(num_samples)
    if not return_stderr:
        return log_px
    if num_samples == 1:
        return log_px, torch.full_like(log_px, float("nan"))
    # Σ_k ŵ_k² = Σ_k w_k² / (Σ_k w_k)²
    squares = torch.cat([s.normalised_sum_sq for s in sums.values()])
    variance = (num_samples * squares - 1) / (num_samples - 1)
    return log_px, variance.clamp(min=0).sqrt()


def elbo(
    model: ModelFn,
    guide: ModelFn,
    x: torch.Tensor,
    num_samples: int = 100,
    *,
    batch_size: int | None = None,
    max_rows: int = _DEFAULT_MAX_ROWS,
) -> torch.Tensor:
    r"""Monte Carlo estimate of the evidence lower bound per example:

    .. math::

        \frac{1}{K} \sum_k \log w_k \approx \mathrm{ELBO}(x)
        = \mathbb{E}_q[\log p(x, z) - \log q(z \mid x)]
        = \log p(x) - \mathrm{KL}(q(z \mid x) \,\|\, p(z \mid x)).

    Returns:
        a tensor of shape ``(N,)``.
    """
    log_w = _log_weights(model, guide, x, num_samples, batch_size, max_rows, "elbo")
    return log_w.mean(dim=0)


def iwae_bounds(
    model: ModelFn,
    guide: ModelFn,
    x: torch.Tensor,
    ks: tuple[int, ...] = (1, 5, 50, 500),
    num_samples: int | None = None,
    *,
    batch_size: int | None = None,
    max_rows: int = _DEFAULT_MAX_ROWS,
) -> dict[int, torch.Tensor]:
    r"""Estimates of :math:`\mathbb{E}[\mathrm{IWAE}_K]` per example, for several K.

    :math:`\mathrm{IWAE}_K(x) = \log \frac{1}{K} \sum_k w_k` with
    :math:`z_1, \dots, z_K \sim q(z \mid x)`. Every K uses one set of samples: the
    ``num_samples`` weights of each example are split into :math:`\lfloor S/K \rfloor`
    disjoint groups of K, and the bound is averaged over the groups: an unbiased estimate of
    :math:`\mathbb{E}[\mathrm{IWAE}_K]` that uses every sample (:math:`\mathrm{IWAE}_1` is the
    ELBO). :math:`\mathbb{E}[\mathrm{IWAE}_K]` rises with K towards :math:`\log p(x)`.

    Arguments:
        ks: the values of K.
        num_samples: :math:`S \ge \max(\mathtt{ks})` (default: max(ks)).
        others: as :func:`log_weights`.

    Returns:
        ``{K: tensor of shape (N,)}``.
    """
    if not isinstance(ks, (tuple, list)) or not ks:
        raise ValueError(f"ks must be a non-empty list of positive integers, got {ks!r}")
    ks = tuple(check_positive_int("ks", k) for k in ks)
    num_samples = check_positive_int("num_samples", num_samples or max(ks))
    if max(ks) > num_samples:
        raise ValueError(f"num_samples ({num_samples}) must be at least the largest K ({max(ks)})")
    max_rows = check_positive_int("max_rows", max_rows)
    check_programs_and_data(model, guide, x)
    batch_size = check_positive_int("batch_size", batch_size or max(1, max_rows // num_samples))
    bounds: dict[int, list[torch.Tensor]] = {k: [] for k in ks}
    for start in range(0, len(x), batch_size):
        batch = x[start : start + batch_size]
        log_w = _log_weights(
            model, guide, batch, num_samples, None, max_rows, "iwae_bounds", checked=True
        )
        for k in ks:
            groups = log_w[: (num_samples // k) * k].reshape(num_samples // k, k, -1)
            bounds[k].append((torch.logsumexp(groups, dim=1) - math.log(k)).mean(0))
    return {k: torch.cat(v) for k, v in bounds.items()}


def elbo_terms(
    model: ModelFn,
    guide: ModelFn,
    x: torch.Tensor,
    num_samples: int = 1,
    *,
    batch_size: int = 1000,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The two terms of the ELBO per example: reconstruction and KL.

    .. math::

        \mathrm{ELBO}(x) = \mathbb{E}_q[\log p(x \mid z)] - \mathrm{KL}(q(z \mid x) \,\|\, p(z)).

    The KL is taken in closed form where one exists (as the ``analytic-kl`` objective does,
    with its Monte Carlo fallback); the reconstruction term is averaged over ``num_samples``
    draws.

    Returns:
        ``(reconstruction, kl)``, each of shape ``(N,)``.
    """
    num_samples = check_positive_int("num_samples", num_samples)
    batch_size = check_positive_int("batch_size", batch_size)
    check_programs_and_data(model, guide, x)
    reconstruction, kl = [], []
    with torch.no_grad():
        depth = check_on_one_example(model, guide, x, "elbo_terms")
        estimator = estimators.AnalyticKLELBO(num_samples, max_plate_nesting=depth)
        for start in range(0, len(x), batch_size):
            p = _particles.run(
                model, guide, (x[start : start + batch_size],), {}, num_samples, depth
            )
            reconstruction.append(p.log_likelihood().mean(0))
            kl.append(estimator.kl(TracedDraw(p)))
    return torch.cat(reconstruction), torch.cat(kl)
