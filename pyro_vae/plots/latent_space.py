"""Figures of what a VAE learned, drawn as images: samples, reconstructions,
interpolations, traversals and the decoded 2-D manifold; and the prior beside the
aggregate posterior.

Decoded images are the decoder's means E[x|z] = ``vae.decode(z).mean``. The scatter
and histogram figures of the latent space are in :mod:`pyro_vae.plots.latent_maps`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from pyro_vae._checks import check_int_at_least, check_positive_int, check_shape
from pyro_vae.analysis.latent import (
    INTERPOLATIONS,
    aggregate_posterior_log_prob,
    codes,
    decoded_grid,
    grid,
    interpolate,
    kl_per_dimension,
    traverse,
)
from pyro_vae.models._data_checks import check_vae_data, model_event_shape
from pyro_vae.models.vae import VAE
from pyro_vae.plots._figure import (
    check_figure_path,
    check_grid_size,
    check_vae,
    image_grid,
    save_figure,
    save_image_grid,
    show_grid,
    unit_name,
)

__all__ = [
    "save_samples",
    "save_reconstructions",
    "save_priors_and_aggregate_posteriors",
    "save_interpolations",
    "save_traversals",
    "save_manifold",
]


def save_samples(
    vae: VAE, image_shape: Sequence[int], path: str | os.PathLike, num_samples: int = 64
) -> Path:
    r"""Draws :math:`z \sim p(z)`; writes the decoder's means :math:`\mathbb{E}[x \mid z]`, a grid.

    ``image_shape`` is ``(C, H, W)`` with C·H·W the VAE's data size; ``path`` ends in an
    image suffix such as ``.png``; ``num_samples`` is at most
    :data:`~pyro_vae.plots.MAX_GRID_IMAGES` (400).
    """
    check_vae(vae)
    check_grid_size("num_samples", num_samples)
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
    r"""Writes inputs (top row) above their reconstructions (bottom row),
    :math:`\mathbb{E}[x \mid z = \mathbb{E}_q[z \mid x]]`.


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
    r"""For each 2-D latent VAE, the prior beside the aggregate posterior:
    :math:`p(z)` beside :math:`q(z) = \mathbb{E}_x\, q(z \mid x)`.


    Both densities are drawn on the same grid over [-limit, limit]² (z₁ across, z₂ up)
    with the same colour scale per model, given by the row's colour bar, so a prior
    that covers empty space, or misses where codes go, shows at a glance.

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
    fig = Figure(figsize=(6.2, 2.6 * len(vaes) + 0.2), layout="constrained")
    axes = fig.subplots(len(vaes), 2, squeeze=False)
    for row, (label, vae) in enumerate(vaes.items()):
        with torch.no_grad():
            z = points.to(next(vae.parameters()).dtype)
            prior = vae.prior.log_prob(z).exp().reshape(size, size)
            aggregate = aggregate_posterior_log_prob(vae.encoder, x, z).exp().reshape(size, size)
        top = max(prior.max().item(), aggregate.max().item())
        for ax, density, name in zip(
            axes[row], (prior, aggregate), ("p(z)", "q(z) = E_x q(z|x)"), strict=True
        ):
            image = ax.imshow(density.numpy(), origin="lower", extent=extent, vmin=0, vmax=top)
            ax.set_title(f"{label}: {name}", fontsize=8)
            ax.set_xticks([-limit, 0, limit])
            ax.set_yticks([-limit, 0, limit])
            ax.set_xlabel("z₁", fontsize=8, labelpad=0)
            ax.tick_params(labelsize=6)
        axes[row, 0].set_ylabel("z₂", fontsize=8, labelpad=0)
        bar = fig.colorbar(image, ax=axes[row], shrink=0.9)
        bar.set_label("density", fontsize=7)
        bar.ax.tick_params(labelsize=6)
    return save_figure(fig, path)


def _check_image_shape(vae: VAE, image_shape: Sequence[int]) -> tuple[int, int, int]:
    """``(C, H, W)`` with C of 1 or 3 and C·H·W the size of the VAE's data."""
    shape = check_shape("image_shape", image_shape, 3)
    if shape[0] not in (1, 3):
        raise ValueError(f"image_shape must have 1 or 3 channels, got {shape}")
    event = model_event_shape(vae)
    if event is not None and math.prod(event) != math.prod(shape):
        raise ValueError(
            f"image_shape {shape} holds {math.prod(shape)} values but the VAE's data have "
            f"event shape {tuple(event)} ({math.prod(event)} values)"
        )
    return shape


def _tiles(
    ax, images: torch.Tensor, image_shape: Sequence[int], ncols: int
) -> tuple[np.ndarray, np.ndarray]:
    """Draws ``images`` as a grid of ``ncols`` columns and returns the centre of each row
    and column in pixels, ``(centres of rows, centres of columns)``, for tick labels."""
    pad = 1
    tiled = image_grid(images, image_shape, ncols=ncols, pad=pad)
    ax.imshow(tiled, cmap="gray" if tiled.ndim == 2 else None, vmin=0, vmax=1)
    _, h, w = image_shape
    nrows = math.ceil(len(images) / ncols)
    for side in ("top", "right", "bottom", "left"):
        ax.spines[side].set_visible(False)
    return np.arange(nrows) * (h + pad) + (h - 1) / 2, np.arange(ncols) * (w + pad) + (w - 1) / 2


def _decode(vae: VAE, z: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return vae.decode(z).mean


def _pairs(n: int, num_pairs: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of pairs spread over ``n`` rows: the i-th of 2P evenly spaced rows is paired
    with the (i + P)-th, so data stored in label order pair different labels."""
    num_pairs = min(num_pairs, n // 2)
    spread = torch.linspace(0, n - 1, 2 * num_pairs).round().long()
    return spread[:num_pairs], spread[num_pairs:]


def save_interpolations(
    vae: VAE,
    x: torch.Tensor,
    image_shape: Sequence[int],
    path: str | os.PathLike,
    *,
    num_pairs: int = 4,
    num_steps: int = 10,
) -> Path:
    """Paths in latent space between the codes of pairs of inputs, decoded.

    For each pair (x_a, x_b), spread over ``x``, two rows: the linear path
    z(t) = (1 - t) z_a + t z_b and the spherical one (slerp) between the posterior
    codes z_a, z_b (:func:`~pyro_vae.latent.codes`), with x_a and x_b drawn at the ends.
    A smooth morph means the decoder is smooth between codes; blurry or off-data images
    in the middle show regions of z the decoder never trained on.

    Arguments:
        vae: a :class:`~pyro_vae.VAE`.
        x: data ``(N, *event_shape)``, N ≥ 2, of the VAE's dtype and device.
        image_shape: ``(C, H, W)`` with C·H·W the data size.
        path: the image file to write.
        num_pairs: pairs (rows of each kind); at most N // 2 are drawn.
        num_steps: points on each path, t = 0 … 1, at least 2.
    """
    check_vae_data(check_vae(vae), x, "x", support=False)
    image_shape = _check_image_shape(vae, image_shape)
    num_pairs = check_positive_int("num_pairs", num_pairs)
    check_int_at_least("num_steps", num_steps, low=2, why="both endpoints")
    if len(x) < 2:
        raise ValueError(f"x must hold at least 2 examples to pair, got shape {tuple(x.shape)}")
    check_figure_path(path)
    first, second = _pairs(len(x), num_pairs)
    z = codes(vae, torch.cat([x[first], x[second]]))
    za, zb = z.chunk(2)
    rows, names = [], []
    for i in range(len(first)):
        for method in INTERPOLATIONS:
            decoded = _decode(vae, interpolate(za[i], zb[i], num_steps, method=method))
            rows += [x[first[i] : first[i] + 1], decoded, x[second[i] : second[i] + 1]]
            names.append(f"pair {i + 1}: {method}")
    ncols = num_steps + 2
    fig = Figure(figsize=(1.0 + 0.55 * ncols, 0.6 + 0.55 * len(names)))
    ax = fig.add_subplot()
    row_centres, col_centres = _tiles(ax, torch.cat(rows).cpu(), image_shape, ncols)
    ax.set_yticks(row_centres, names)
    steps = [f"{t:.2g}" for t in np.linspace(0, 1, num_steps)]
    ax.set_xticks(col_centres, ["x_a", *steps, "x_b"], fontsize=8)
    ax.tick_params(length=0)
    ax.set_xlabel("t: z(t) from z_a = E_q[z|x_a] (t = 0) to z_b (t = 1); x_a, x_b the inputs")
    ax.set_title("interpolations between posterior codes, decoded E[x | z(t)]")
    return save_figure(fig, path)


def _unit_scores(vae: VAE, x: torch.Tensor) -> tuple[torch.Tensor, str]:
    """Per-unit importance: the average KL per dimension where it has a closed form, else
    the activity Var_x(E_q[z_u|x]); with the name of the measure."""
    try:
        return kl_per_dimension(vae, x).mean(0), "KL"
    except ValueError:
        return codes(vae, x).var(0), "Var"


def save_traversals(
    vae: VAE,
    x: torch.Tensor,
    image_shape: Sequence[int],
    path: str | os.PathLike,
    *,
    dims: Sequence[int] | None = None,
    values: Sequence[float] | torch.Tensor | None = None,
) -> Path:
    """Latent traversals: from the code z of ``x[0]``, one unit at a time set to each value.

    Row u decodes z with z_u replaced by ``values`` (:func:`~pyro_vae.latent.traverse`),
    so it shows what unit u controls with everything else held fixed; a row of identical
    images is a collapsed unit. Each row is labelled with its unit's average
    KL(q(z_u|x) ‖ p(z_u)) over ``x`` where that has a closed form
    (:func:`~pyro_vae.latent.kl_per_dimension`), else with its activity Var_x(E_q[z_u|x]).

    Arguments:
        vae: a :class:`~pyro_vae.VAE`.
        x: data ``(N, *event_shape)``, N ≥ 2: x[0] gives the starting code, all of x the
            row labels.
        image_shape: ``(C, H, W)`` with C·H·W the data size.
        path: the image file to write.
        dims: the units to traverse, indices from 0, labelled z₁, z₂, … (default: up to
            10 with the largest KL, or activity).
        values: the values to set (default ``linspace(-3, 3, 9)``).
    """
    check_vae_data(check_vae(vae), x, "x", support=False)
    image_shape = _check_image_shape(vae, image_shape)
    if len(x) < 2:
        raise ValueError(f"x must hold at least 2 examples, got shape {tuple(x.shape)}")
    values = torch.linspace(-3, 3, 9) if values is None else values
    start = torch.zeros(vae.latent_dim, dtype=x.dtype, device=x.device)
    traverse(start, [0] if dims is None else dims, values)  # checks both before any work
    check_figure_path(path)
    scores, measure = _unit_scores(vae, x)
    chosen = list(dims) if dims is not None else scores.argsort(descending=True)[:10].tolist()
    grid_z = traverse(codes(vae, x[:1])[0], chosen, values)
    images = _decode(vae, grid_z.reshape(-1, vae.latent_dim))
    values = grid_z[0, :, chosen[0]].tolist()
    fig = Figure(figsize=(1.6 + 0.6 * len(values), 0.7 + 0.6 * len(chosen)))
    ax = fig.add_subplot()
    row_centres, col_centres = _tiles(ax, images.cpu(), image_shape, len(values))
    ax.set_yticks(row_centres, [f"{unit_name(u)}: {measure} {scores[u]:.2g}" for u in chosen])
    ax.set_xticks(col_centres, [f"{v:.2g}" for v in values])
    ax.tick_params(length=0)
    ax.set_xlabel("value of the traversed unit z_u (the others: the code of x[0])")
    what = (
        "average KL(q(z_u|x) ‖ p(z_u)) in nats"
        if measure == "KL"
        else "activity Var_x E_q[z_u|x] (no closed-form KL per unit)"
    )
    order = "given units" if dims is not None else "units ranked by"
    ax.set_title(f"latent traversals, decoded E[x|z]; rows: {order} {what}", fontsize=9)
    return save_figure(fig, path)


def save_manifold(
    vae: VAE,
    image_shape: Sequence[int],
    path: str | os.PathLike,
    *,
    limit: float = 3.0,
    size: int = 20,
) -> Path:
    r"""The learned 2-D manifold: :math:`\mathbb{E}[x \mid z]` on a ``size × size`` grid of z.

    The grid spans :math:`[-\mathrm{limit}, \mathrm{limit}]^2`; z₁ runs left to right and z₂
    bottom to top. Under a standard-normal prior ±3 covers
    99.7% of each coordinate's prior mass, so the picture shows every kind of image the
    model generates and how it morphs from one to the next (Kingma & Welling 2014).

    Arguments:
        vae: a :class:`~pyro_vae.VAE` with ``latent_dim == 2``.
        image_shape: ``(C, H, W)`` with C·H·W the data size.
        path: the image file to write.
        limit: half the side of the square, a finite number > 0.
        size: images per side.
    """
    if check_vae(vae).latent_dim != 2:
        raise ValueError(
            f"save_manifold needs a VAE with latent_dim 2 (a plane of codes), got latent_dim "
            f"{vae.latent_dim}"
        )
    image_shape = _check_image_shape(vae, image_shape)
    axis, _ = grid(limit, size)
    check_figure_path(path)
    images = decoded_grid(vae, limit=limit, size=size)
    # grid() runs z2 from -limit in the first row; flip so that z2 grows upwards.
    images = images.reshape(size, size, -1).flip(0).reshape(size * size, -1)
    fig = Figure(figsize=(7, 7.3))
    ax = fig.add_subplot()
    row_centres, col_centres = _tiles(ax, images.cpu(), image_shape, size)
    # round values of z, placed between tile centres (tile i is at z = axis[i])
    ticks = MaxNLocator(7, steps=[1, 2, 2.5, 5, 10]).tick_values(-limit, limit)
    ticks = ticks[np.abs(ticks) <= limit * (1 + 1e-9)]
    labels = [f"{t:g}" for t in ticks]
    ax.set_xticks(np.interp(ticks, axis.numpy(), col_centres), labels)
    ax.set_yticks(np.interp(ticks, axis.numpy(), row_centres[::-1]), labels)
    ax.set_xlabel("z₁")
    ax.set_ylabel("z₂")
    ax.set_title(f"decoded E[x|z] over z ∈ [-{limit:g}, {limit:g}]²")
    return save_figure(fig, path)
