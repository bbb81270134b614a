"""Figures of what a VAE learned: samples, reconstructions and the latent space."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from matplotlib.figure import Figure

from .._checks import check_positive_int, check_vae_data
from ..latent import aggregate_posterior_log_prob, grid
from ..vae import VAE
from ._figure import (
    check_figure_path,
    check_vae,
    image_grid,
    save_figure,
    save_image_grid,
    show_grid,
)

__all__ = ["save_samples", "save_reconstructions", "save_priors_and_aggregate_posteriors"]


def save_samples(
    vae: VAE, image_shape: Sequence[int], path: str | os.PathLike, num_samples: int = 64
) -> Path:
    """Draws z ~ p(z) and writes the decoder's means E[x|z] as a grid.

    ``image_shape`` is ``(C, H, W)`` with C·H·W the VAE's data size; ``path`` ends in an
    image suffix such as ``.png``.
    """
    check_vae(vae)
    check_figure_path(path)
    return save_image_grid(
        vae.sample(num_samples),
        image_shape,
        path,
        title=f"samples: E[x | z], z ~ p(z) ({num_samples})",
    )


def save_reconstructions(
    vae: VAE,
    x: torch.Tensor,
    image_shape: Sequence[int],
    path: str | os.PathLike,
    num: int = 16,
) -> Path:
    """Writes inputs (top row) above their reconstructions E[x | z = E_q[z|x]] (bottom row).

    The ``num`` inputs are spread evenly over ``x``, so a data set stored in label
    order still shows every kind of example. ``x`` is data ``(N, *event_shape)`` of the
    VAE's dtype; ``num`` is a positive integer.
    """
    check_vae_data(check_vae(vae), x, "x", support=False)
    check_positive_int("num", num)
    check_figure_path(path)
    x = x[torch.linspace(0, len(x) - 1, min(num, len(x))).round().long()]
    with torch.no_grad():
        recon = vae.reconstruct(x.to(next(vae.parameters()).device))
    fig = Figure(figsize=(max(6, len(x) * 0.5), 2.2))
    top, bottom = fig.subplots(2, 1)
    show_grid(top, image_grid(x, image_shape, ncols=len(x)), "inputs")
    show_grid(bottom, image_grid(recon, image_shape, ncols=len(x)), "reconstructions")
    return save_figure(fig, path)


def save_priors_and_aggregate_posteriors(
    vaes: dict[str, VAE],
    x: torch.Tensor,
    path: str | os.PathLike,
    *,
    limit: float = 4.0,
    size: int = 80,
) -> Path:
    """For each 2-D latent VAE, the prior p(z) beside the aggregate posterior q(z) = E_x q(z|x).

    Both densities are drawn on the same grid over [-limit, limit]² with the same
    colour scale per model, so a prior that covers empty space, or misses where
    codes go, shows at a glance.

    Arguments:
        vaes: label -> VAE with ``latent_dim == 2``.
        x: the data whose posteriors are averaged ``(N, *event_shape)``.
    """
    if not isinstance(vaes, dict) or not all(isinstance(v, VAE) for v in vaes.values()):
        raise TypeError(f"vaes must be a dict of label -> pyro_vae.VAE, got {vaes!r}")
    bad = [label for label, vae in vaes.items() if vae.latent_dim != 2]
    if bad or not vaes:
        raise ValueError(f"every VAE needs a 2-D latent space; not so for {bad or 'an empty dict'}")
    for vae in vaes.values():
        check_vae_data(vae, x, "x", support=False)
    check_figure_path(path)
    axis, points = grid(limit, size)
    extent = (-limit, limit, -limit, limit)
    fig = Figure(figsize=(2 * 2.6, 2.5 * len(vaes)))
    for row, (label, vae) in enumerate(vaes.items()):
        with torch.no_grad():
            z = points.to(next(vae.parameters()).dtype)
            prior = vae.prior.log_prob(z).exp().reshape(size, size)
            aggregate = aggregate_posterior_log_prob(vae.encoder, x, z).exp().reshape(size, size)
        top = max(prior.max().item(), aggregate.max().item())
        for col, (density, name) in enumerate(((prior, "p(z)"), (aggregate, "q(z) = E_x q(z|x)"))):
            ax = fig.add_subplot(len(vaes), 2, 2 * row + col + 1)
            ax.imshow(density.numpy(), origin="lower", extent=extent, vmin=0, vmax=top)
            ax.set_title(f"{label}: {name}", fontsize=8)
            ax.set_xticks([-limit, 0, limit])
            ax.set_yticks([-limit, 0, limit])
            ax.tick_params(labelsize=6)
    fig.tight_layout()
    return save_figure(fig, path)
