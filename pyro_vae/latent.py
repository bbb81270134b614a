"""The latent space: the aggregate posterior and densities on a grid of z.

The aggregate posterior is the guide averaged over the data,

    q(z) = (1/N) Σ_n q_φ(z | x_n),

the distribution of codes the decoder actually sees. The ELBO's KL term,
averaged over the data, equals I_q(x; z) + KL(q(z) ‖ p(z)), so a prior that
matches q(z) costs less (Hoffman & Johnson 2016); comparing the two is how
priors are judged.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ._checks import check_data, check_latents, check_number, check_positive_int

__all__ = ["aggregate_posterior_log_prob", "grid"]


def aggregate_posterior_log_prob(
    encoder: nn.Module, x: torch.Tensor, z: torch.Tensor, *, batch_size: int = 500
) -> torch.Tensor:
    """log q(z) = logsumexp_n log q(z | x_n) - log N, at every point of ``z``.

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
    if not callable(encoder):
        raise TypeError(f"encoder must be a guide module (vae.encoder), got {encoder!r}")
    check_data(x)
    batch_size = check_positive_int("batch_size", batch_size)
    check_latents("z", z)
    if z.dim() != 2:
        raise ValueError(f"z must have shape (M, latent_dim), got {tuple(z.shape)}")
    if z.dtype != x.dtype:
        raise TypeError(f"z has dtype {z.dtype} but x has {x.dtype}; give both the same dtype")
    total = torch.full((z.shape[0],), -math.inf, dtype=z.dtype, device=z.device)
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            try:
                q = encoder(x[start : start + batch_size])
            except (RuntimeError, IndexError, ValueError) as e:
                reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
                raise ValueError(
                    f"x of shape {tuple(x.shape)} does not fit the encoder: {reason}"
                ) from e
            if q.event_shape != z.shape[1:]:
                raise ValueError(
                    f"z has latent size {z.shape[1]} but the guide's event shape is "
                    f"{tuple(q.event_shape)}"
                )
            log_q = q.log_prob(z.unsqueeze(1).expand(-1, *q.batch_shape, z.shape[1]))  # (M, B)
            total = torch.logaddexp(total, torch.logsumexp(log_q, dim=1))
    return total - math.log(len(x))


def grid(limit: float, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A square grid over [-limit, limit]²: the axis ``(size,)`` and the points ``(size², 2)``.

    Points run row by row (second coordinate slowest), so ``values.reshape(size, size)``
    is an image with z₁ along the columns and z₂ along the rows.

    Arguments:
        limit: a finite number > 0.
        size: points per axis, a positive integer.
    """
    limit = check_number("limit", limit)
    if not (math.isfinite(limit) and limit > 0):
        raise ValueError(f"limit must be a finite number > 0, got {limit!r}")
    check_positive_int("size", size)
    axis = torch.linspace(-limit, limit, size)
    second, first = torch.meshgrid(axis, axis, indexing="ij")
    return axis, torch.stack([first.flatten(), second.flatten()], dim=-1)
