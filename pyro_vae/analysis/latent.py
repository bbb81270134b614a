r"""The latent space: codes, paths through it, projections, and the aggregate posterior.

The aggregate posterior is the guide averaged over the data,

.. math::

    q(z) = \frac{1}{N} \sum_n q_\phi(z \mid x_n),

the distribution of codes the decoder actually sees. The ELBO's KL term,
averaged over the data, splits as (Hoffman & Johnson 2016)

.. math::

    \mathbb{E}_x \mathrm{KL}(q(z \mid x) \,\|\, p(z)) = I_q(x; z) + \mathrm{KL}(q(z) \,\|\, p(z)),

so a prior that matches :math:`q(z)` costs less; comparing the two is how priors are
judged. :func:`aggregate_kl` estimates both terms, :func:`kl_per_dimension`
splits the KL over latent units, and :func:`interpolate`, :func:`traverse`,
:func:`codes` and :func:`embed` give the paths and projections that the figures
in :mod:`pyro_vae.plots` draw.

References:
    1. M. D. Hoffman, M. J. Johnson. ELBO surgery: yet another way to carve up the
       variational evidence lower bound. NIPS Workshop on Advances in Approximate
       Bayesian Inference, 2016.
    2. T. White. Sampling generative networks. arXiv:1609.04468, 2016.
    3. Y. Burda, R. Grosse, R. Salakhutdinov. Importance weighted autoencoders. ICLR 2016.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pyro.distributions as dist
import torch
from torch import nn
from torch.distributions import MultivariateNormal

from pyro_vae._checks import check_data, check_latents, check_positive_int, check_seed
from pyro_vae.analysis._latent_geometry import (
    EMBEDDINGS,
    INTERPOLATIONS,
    embed,
    grid,
    interpolate,
    pca,
    traverse,
)
from pyro_vae.models._data_checks import check_vae_data
from pyro_vae.models._normal import diagonal_normal
from pyro_vae.models.guides import location
from pyro_vae.models.vae import VAE, HierarchicalVAE

__all__ = [
    "aggregate_posterior_log_prob",
    "grid",
    "interpolate",
    "traverse",
    "codes",
    "pca",
    "embed",
    "sample_aggregate_posterior",
    "AggregateKL",
    "aggregate_kl",
    "kl_per_dimension",
    "decoded_grid",
    "INTERPOLATIONS",
    "EMBEDDINGS",
]


def _encode(encoder: nn.Module, batch: torch.Tensor, x: torch.Tensor):
    """q(z | batch), with an encoder failure reported against ``x``'s shape."""
    try:
        return encoder(batch)
    except (RuntimeError, IndexError, ValueError) as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ValueError(f"x of shape {tuple(x.shape)} does not fit the encoder: {reason}") from e


def _check_encoder(encoder: object) -> None:
    if not callable(encoder):
        raise TypeError(f"encoder must be a guide module (vae.encoder), got {encoder!r}")


def aggregate_posterior_log_prob(
    encoder: nn.Module, x: torch.Tensor, z: torch.Tensor, *, batch_size: int = 500
) -> torch.Tensor:
    r""":math:`\log q(z)` at every point of ``z``:

    .. math:: \log q(z) = \operatorname{logsumexp}_n \log q(z \mid x_n) - \log N.

    Arguments:
        encoder: a guide part (``vae.encoder``): ``x (B, …) -> q(z|x)`` of batch shape ``(B,)``.
        x: the data ``(N, *event_shape)`` whose posteriors are averaged, a floating tensor
            of the encoder's dtype.
        z: finite points ``(M, D)`` of the encoder's dtype, D its latent size.
        batch_size: examples of ``x`` per encoder call; memory grows as ``M × batch_size``.

    Returns:
        a tensor of shape ``(M,)``.

    Raises:
        TypeError: ``encoder`` is not callable, or ``x`` or ``z`` is not a floating tensor.
        ValueError: a bad shape, NaN or Inf, or ``x`` that the encoder cannot read.
    """
    _check_encoder(encoder)
    check_data(x)
    batch_size = check_positive_int("batch_size", batch_size)
    check_latents("z", z)
    if z.dim() != 2:
        raise ValueError(f"z must have shape (M, latent_dim), got {tuple(z.shape)}")
    if z.dtype != x.dtype:
        raise TypeError(f"z has dtype {z.dtype} but x has {x.dtype}; give both the same dtype")
    total = torch.full((z.shape[0],), -math.inf, dtype=z.dtype, device=z.device)
    with torch.no_grad():
        for batch in x.split(batch_size):
            q = _encode(encoder, batch, x)
            if q.event_shape != z.shape[1:]:
                raise ValueError(
                    f"z has latent size {z.shape[1]} but the guide's event shape is "
                    f"{tuple(q.event_shape)}"
                )
            log_q = q.log_prob(z.unsqueeze(1).expand(-1, *q.batch_shape, z.shape[1]))  # (M, B)
            total = torch.logaddexp(total, torch.logsumexp(log_q, dim=1))
    return total - math.log(len(x))


def _check_vae(vae: object) -> VAE:
    if not isinstance(vae, VAE):
        raise TypeError(f"vae must be a pyro_vae.VAE, got {type(vae).__name__}")
    return vae


def codes(vae: VAE, x: torch.Tensor, *, batch_size: int = 1000) -> torch.Tensor:
    r"""The point summary of :math:`q(z \mid x_n)` for every example:
    :func:`~pyro_vae.guides.location`, the guide's mean (a flow's base mean pushed through the
    flow).

    Arguments:
        vae: a :class:`~pyro_vae.VAE` (for a hierarchical one, codes of z₁).
        x: data ``(N, *event_shape)`` of the VAE's dtype and device.
        batch_size: examples per encoder call.

    Returns:
        a tensor of shape ``(N, latent_dim)``, without gradients.
    """
    check_vae_data(_check_vae(vae), x, "x", support=False)
    batch_size = check_positive_int("batch_size", batch_size)
    with torch.no_grad():
        return torch.cat([location(_encode(vae.encoder, b, x)) for b in x.split(batch_size)])


def _forked(device: torch.device):
    """A fork of the random streams: draws inside it leave the caller's streams alone."""
    return torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else [])


def _draw(
    encoder: nn.Module,
    x: torch.Tensor,
    rows: torch.Tensor,
    generator: torch.Generator | None,
    batch_size: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """z_m ~ q(z | x_{rows[m]}) and log q(z_m | x_{rows[m]}), each over the M rows."""
    seed = None if generator is None else int(torch.randint(2**62, (), generator=generator))
    draws, log_probs = [], []
    with torch.no_grad(), _forked(x.device):
        if seed is not None:
            torch.manual_seed(seed)
        for chunk in rows.split(batch_size):
            q = _encode(encoder, x[chunk.to(x.device)], x)
            z = q.sample()
            draws.append(z)
            log_probs.append(q.log_prob(z))
    return torch.cat(draws), torch.cat(log_probs)


def sample_aggregate_posterior(
    encoder: nn.Module,
    x: torch.Tensor,
    num_samples: int,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""Draws from :math:`q(z) = \tfrac{1}{N} \sum_n q(z \mid x_n)`.

    n is uniform in 0 … N-1, then :math:`z \sim q(z \mid x_n)`.

    Arguments:
        encoder: a guide part (``vae.encoder``).
        x: data ``(N, *event_shape)`` of the encoder's dtype.
        num_samples: M.
        generator: a CPU :class:`torch.Generator` for every draw, which then leaves the global
            random streams untouched; by default the global streams.

    Returns:
        a tensor of shape ``(M, latent_dim)``.
    """
    _check_encoder(encoder)
    check_data(x)
    num_samples = check_positive_int("num_samples", num_samples)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    rows = torch.randint(len(x), (num_samples,), generator=generator)
    return _draw(encoder, x, rows, generator, 500)[0]


@dataclass(frozen=True)
class AggregateKL:
    r"""The KL of the aggregate posterior from the prior, and the mutual information.

    Attributes:
        kl: :math:`\mathrm{KL}(q(z) \,\|\, p(z))`, nats, Monte Carlo over ``num_samples`` draws
            of :math:`q(z)`.
        standard_error: the standard error of ``kl``.
        average_kl: :math:`\mathbb{E}_x \mathrm{KL}(q(z \mid x) \,\|\, p(z))` on the same draws.
        mutual_information: :math:`I_q(x; z)` = ``average_kl - kl``, in :math:`[0, \log N]` up
            to noise.
        num_samples: M, the draws.
        num_examples: N, the examples whose posteriors make q(z).
    """

    kl: float
    standard_error: float
    average_kl: float
    mutual_information: float
    num_samples: int
    num_examples: int


def aggregate_kl(
    vae: VAE, x: torch.Tensor, *, num_samples: int = 1000, batch_size: int = 500, seed: int = 0
) -> AggregateKL:
    r"""Estimates :math:`\mathrm{KL}(q(z) \,\|\, p(z))` and :math:`I_q(x; z)`.

    For :math:`q(z) = \tfrac{1}{N} \sum_n q(z \mid x_n)`, with M draws :math:`n_m` uniform and
    :math:`z_m \sim q(z \mid x_{n_m})`, and :math:`\log q(z_m)` exact (a sum over all N
    posteriors, :func:`aggregate_posterior_log_prob`):

    .. math::

        \begin{aligned}
        \mathrm{KL}(q(z) \,\|\, p(z)) &\approx \frac{1}{M} \sum_m [\log q(z_m) - \log p(z_m)]
            && (\pm \text{ s.e.}) \\
        \mathbb{E}_x \mathrm{KL}(q(z \mid x) \,\|\, p(z)) &\approx
            \frac{1}{M} \sum_m [\log q(z_m \mid x_{n_m}) - \log p(z_m)] \\
        I_q(x; z) &= \text{the difference}
            = \frac{1}{M} \sum_m [\log q(z_m \mid x_{n_m}) - \log q(z_m)].
        \end{aligned}

    Each term of the last sum is at most :math:`\log N`, because
    :math:`q(z) \ge q(z \mid x_n)/N`; its mean is :math:`\ge 0` in expectation (exactly 0 when
    the guide ignores x). Any prior with ``log_prob``
    works. The draws come from a generator seeded with ``seed``: the global random
    streams are left untouched.

    Arguments:
        vae: a :class:`~pyro_vae.VAE` with one latent layer.
        x: data ``(N, *event_shape)`` of the VAE's dtype and device.
        num_samples: M.
        batch_size: examples per encoder call (memory grows as M × batch_size).
        seed: an integer in [0, 2**32).

    Raises:
        ValueError: a :class:`~pyro_vae.HierarchicalVAE`, whose :math:`p(z_1)` has no density.
    """
    _check_single_layer(vae, "aggregate_kl")
    check_vae_data(vae, x, "x", support=False)
    num_samples = check_positive_int("num_samples", num_samples)
    batch_size = check_positive_int("batch_size", batch_size)
    check_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    rows = torch.randint(len(x), (num_samples,), generator=generator)
    z, log_q_given_x = _draw(vae.encoder, x, rows, generator, batch_size)
    log_q = aggregate_posterior_log_prob(vae.encoder, x, z, batch_size=batch_size)
    with torch.no_grad():
        log_p = vae.prior.log_prob(z)
    terms = (log_q - log_p).double()
    spread = terms.std().item() if num_samples > 1 else math.nan
    return AggregateKL(
        kl=terms.mean().item(),
        standard_error=spread / math.sqrt(num_samples),
        average_kl=(log_q_given_x - log_p).double().mean().item(),
        mutual_information=(log_q_given_x - log_q).double().mean().item(),
        num_samples=num_samples,
        num_examples=len(x),
    )


def _check_single_layer(vae: object, what: str) -> VAE:
    if isinstance(_check_vae(vae), HierarchicalVAE):
        raise ValueError(
            f"{what} needs a VAE with one latent layer: a HierarchicalVAE's prior is over "
            "its top layer, and p(z1), the density its codes z1 need, has no closed form"
        )
    return vae


def _normal_marginals(q: object) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(loc, scale) of the 1-D marginals of a diagonal or full-covariance Normal, else None."""
    base = diagonal_normal(q)
    if base is not None:
        return base.loc, base.scale
    if type(q) in (MultivariateNormal, dist.MultivariateNormal):
        return q.loc, q.scale_tril.pow(2).sum(-1).sqrt()  # sqrt of diag(L Lᵀ)
    return None


def _unsupported(vae: VAE) -> ValueError:
    return ValueError(
        "kl_per_dimension needs Normal marginals: a guide whose q(z|x) is a diagonal or "
        "full-covariance Normal (DiagonalNormal, FullCovarianceNormal) with a prior whose "
        f"p(z) is a diagonal Normal (StandardNormal, LearnedNormal); got guide "
        f"{type(vae.encoder).__name__} with prior {type(vae.prior).__name__}"
    )


def kl_per_dimension(vae: VAE, x: torch.Tensor, *, batch_size: int = 1000) -> torch.Tensor:
    r"""The KL of the 1-D marginals, per example n and latent unit u:

    .. math:: \mathrm{KL}_u = \mathrm{KL}(q(z_u \mid x_n) \,\|\, p(z_u)).

    For Normal marginals :math:`\mathcal{N}(\mu, \sigma^2)` of q and :math:`\mathcal{N}(m, s^2)`
    of p, in closed form:

    .. math:: \mathrm{KL}_u = \log(s/\sigma) + \frac{\sigma^2 + (\mu - m)^2}{2 s^2} - \frac{1}{2}.

    For a factorised pair (diagonal guide, diagonal prior) :math:`\sum_u \mathrm{KL}_u` is the
    whole :math:`\mathrm{KL}(q(z \mid x) \,\|\, p(z))`. For a full-covariance guide the marginals
    drop the correlations: :math:`\sum_u \mathrm{KL}_u \le` the whole KL, the gap being the
    total correlation of :math:`q(z \mid x)`. A unit whose KL is :math:`\approx 0` for every x
    has collapsed onto the prior (Burda et al. 2016).

    Arguments:
        vae: a :class:`~pyro_vae.VAE` with one latent layer, its guide a
            :class:`~pyro_vae.guides.DiagonalNormal` or
            :class:`~pyro_vae.guides.FullCovarianceNormal` (or any guide returning those
            distributions) and its prior a :class:`~pyro_vae.priors.StandardNormal` or
            :class:`~pyro_vae.priors.LearnedNormal`.
        x: data ``(N, *event_shape)`` of the VAE's dtype and device.
        batch_size: examples per encoder call.

    Returns:
        a tensor of shape ``(N, latent_dim)``, nats.

    Raises:
        ValueError: another guide or prior (flows, mixtures, the VampPrior), or a
            HierarchicalVAE; :func:`aggregate_kl` and ``evaluate.elbo_terms`` work for all.
    """
    _check_single_layer(vae, "kl_per_dimension")
    check_vae_data(vae, x, "x", support=False)
    batch_size = check_positive_int("batch_size", batch_size)
    with torch.no_grad():
        prior = vae.prior()
        if diagonal_normal(prior) is None:
            raise _unsupported(vae)
        prior_loc, prior_scale = _normal_marginals(prior)
        kl = []
        for batch in x.split(batch_size):
            marginals = _normal_marginals(_encode(vae.encoder, batch, x))
            if marginals is None:
                raise _unsupported(vae)
            loc, scale = marginals
            ratio = (scale / prior_scale).pow(2)
            kl.append(0.5 * (ratio + ((loc - prior_loc) / prior_scale).pow(2) - 1 - ratio.log()))
    return torch.cat(kl)


def decoded_grid(vae: VAE, *, limit: float = 3.0, size: int = 20) -> torch.Tensor:
    r""":math:`\mathbb{E}[x \mid z]` over the grid of :func:`grid`: the learned 2-D manifold.

    Arguments:
        vae: a :class:`~pyro_vae.VAE` with ``latent_dim == 2``.
        limit: the grid covers [-limit, limit]².
        size: points per axis.

    Returns:
        a tensor of shape ``(size², *event_shape)``, row by row with z₂ slowest.
    """
    if _check_vae(vae).latent_dim != 2:
        raise ValueError(
            f"decoded_grid needs a VAE with latent_dim 2 (a plane of codes), got latent_dim "
            f"{vae.latent_dim}"
        )
    _, points = grid(limit, size)
    weight = next(vae.parameters(), None)
    if weight is not None:
        points = points.to(dtype=weight.dtype, device=weight.device)
    with torch.no_grad():
        return vae.decode(points).mean
