"""Figures: image grids, learning curves and the estimator comparison.

Figures are drawn on ``matplotlib.figure.Figure`` objects with the Agg canvas,
never through pyplot's global state, so they work without a display and never
change the user's matplotlib backend. Each ``save_*`` function writes a PNG and
returns its path.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ._atomic import write_atomically
from ._checks import check_output_path, check_positive_int, check_shape, check_vae_data
from .latent import aggregate_posterior_log_prob, grid
from .train import History
from .vae import VAE

if TYPE_CHECKING:
    from .compare import Comparison

__all__ = [
    "image_grid",
    "save_image_grid",
    "save_samples",
    "save_reconstructions",
    "save_learning_curves",
    "save_comparison",
    "save_gradient_stats",
    "save_priors_and_aggregate_posteriors",
]


def image_grid(
    images: torch.Tensor, image_shape: Sequence[int], ncols: int | None = None, pad: int = 1
) -> np.ndarray:
    """Tiles images into one array for display.

    Arguments:
        images: a tensor ``(N, C*H*W)`` or ``(N, C, H, W)``, values in [0, 1].
        image_shape: ``(C, H, W)``; C must be 1 (grey) or 3 (RGB).
        ncols: images per row, a positive integer (default: a near-square grid).
        pad: pixels of background between images, an integer ≥ 0.

    Returns:
        an array ``(rows*(H+pad)-pad, ncols*(W+pad)-pad)`` for grey images, with a
        trailing channel axis of 3 for RGB.
    """
    c, h, w = check_shape("image_shape", image_shape, 3)
    if c not in (1, 3):
        raise ValueError(f"image_shape must have 1 or 3 channels, got {tuple(image_shape)}")
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if images.dim() < 1 or images.shape[0] == 0:
        raise ValueError("image_grid needs at least one image")
    if images[0].numel() != c * h * w:
        raise ValueError(
            f"images of shape {tuple(images.shape)} do not hold images of shape {(c, h, w)}"
        )
    if ncols is not None:
        check_positive_int("ncols", ncols)
    if isinstance(pad, bool) or not isinstance(pad, int) or pad < 0:
        raise ValueError(f"pad must be an integer >= 0, got {pad!r}")
    x = images.detach().float().cpu().reshape(-1, c, h, w).clamp(0, 1).numpy()
    n = x.shape[0]
    ncols = ncols or math.ceil(math.sqrt(n))
    nrows = math.ceil(n / ncols)
    grid = np.ones((c, nrows * (h + pad) - pad, ncols * (w + pad) - pad), dtype=np.float32)
    for i in range(n):
        r, col = divmod(i, ncols)
        grid[:, r * (h + pad) : r * (h + pad) + h, col * (w + pad) : col * (w + pad) + w] = x[i]
    return grid[0] if c == 1 else grid.transpose(1, 2, 0)


def _check_path(path: str | os.PathLike, name: str = "path") -> Path:
    """A file path ending in an image format matplotlib writes, where a file can be written."""
    path = check_output_path(name, path, folder=False)
    formats = FigureCanvasAgg(Figure()).get_supported_filetypes()
    if path.suffix[1:].lower() not in formats:
        raise ValueError(
            f"{name} must end in an image format suffix ({', '.join(sorted(formats))}), "
            f"got {str(path)!r}"
        )
    return path


def _save(fig: Figure, path: str | os.PathLike) -> Path:
    """Writes ``fig`` atomically (:func:`~pyro_vae._atomic.write_atomically`); on failure,
    removes the folders this call created."""
    path = _check_path(path)
    created = [d for d in (path.parent, *path.parent.parents) if not d.exists()]
    FigureCanvasAgg(fig)
    image_format = path.suffix[1:].lower()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(
            path, lambda f: fig.savefig(f, format=image_format, dpi=120, bbox_inches="tight")
        )
    except BaseException:
        for folder in created:  # deepest first
            if folder.exists() and not any(folder.iterdir()):
                folder.rmdir()
        raise
    return path


def _check_vae(vae: object) -> VAE:
    if not isinstance(vae, VAE):
        raise TypeError(f"vae must be a pyro_vae.VAE, got {type(vae).__name__}")
    return vae


def _show_grid(ax, grid: np.ndarray, title: str | None) -> None:
    ax.imshow(
        grid, cmap="gray" if grid.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest"
    )
    ax.set_axis_off()
    if title:
        ax.set_title(title)


def save_image_grid(
    images: torch.Tensor,
    image_shape: Sequence[int],
    path: str | os.PathLike,
    *,
    title: str | None = None,
    ncols: int | None = None,
) -> Path:
    """Writes a grid of images (see :func:`image_grid`) to a PNG file."""
    grid = image_grid(images, image_shape, ncols)
    fig = Figure(figsize=(6, 6 * grid.shape[0] / grid.shape[1] + 0.4))
    _show_grid(fig.add_subplot(), grid, title)
    return _save(fig, path)


def save_samples(
    vae: VAE, image_shape: Sequence[int], path: str | os.PathLike, num_samples: int = 64
) -> Path:
    """Draws z ~ p(z) and writes the decoder's means E[x|z] as a grid.

    ``image_shape`` is ``(C, H, W)`` with C·H·W the VAE's data size; ``path`` ends in an
    image suffix such as ``.png``.
    """
    _check_vae(vae)
    _check_path(path)
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
    check_vae_data(_check_vae(vae), x, "x", support=False)
    check_positive_int("num", num)
    _check_path(path)
    x = x[torch.linspace(0, len(x) - 1, min(num, len(x))).round().long()]
    with torch.no_grad():
        recon = vae.reconstruct(x.to(next(vae.parameters()).device))
    fig = Figure(figsize=(max(6, len(x) * 0.5), 2.2))
    top, bottom = fig.subplots(2, 1)
    _show_grid(top, image_grid(x, image_shape, ncols=len(x)), "inputs")
    _show_grid(bottom, image_grid(recon, image_shape, ncols=len(x)), "reconstructions")
    return _save(fig, path)


def save_learning_curves(history: History, path: str | os.PathLike) -> Path:
    """Plots the training and validation objective (negative loss, nats per example) by epoch."""
    if not isinstance(history, History):
        raise TypeError(f"history must be a pyro_vae.History, got {type(history).__name__}")
    _check_path(path)
    epochs = history.column("epoch")
    if not epochs:
        raise ValueError("the history holds no finished epoch to plot")
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    ax.plot(epochs, [-v for v in history.column("train_loss")], label="train", marker=".")
    valid = [-v for v in history.column("valid_loss")]
    if not all(math.isnan(v) for v in valid):
        ax.plot(epochs, valid, label="validation", marker=".")
    if history.best_epoch is not None:
        ax.axvline(history.best_epoch, color="grey", linestyle=":", label="best epoch")
    ax.set_xlabel("epoch")
    ax.set_ylabel("objective (nats per example, higher is better)")
    ax.set_title("learning curves")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def _curves(ax, comparison: Comparison, column: str, title: str) -> None:
    for label, history in comparison.histories.items():
        ax.plot(
            history.column("epoch"), [-v for v in history.column(column)], marker=".", label=label
        )
    ax.set_xlabel("epoch")
    ax.set_ylabel("nats per example")
    ax.set_title(title)
    ax.grid(alpha=0.3)


def save_comparison(comparison: Comparison, path: str | os.PathLike) -> Path:
    """The comparison at a glance: curves, test bounds against K, ELBO terms, units and time.

    Panels: the training objective and the validation ELBO per epoch; E[IWAE_K]
    on the test data against K with log p(x) (K = ``num_samples``) marked; the
    reconstruction term and the KL; active units and seconds per epoch.
    """
    from .compare import Comparison

    if not isinstance(comparison, Comparison):
        raise TypeError(f"comparison must be a Comparison, got {type(comparison).__name__}")
    _check_path(path)
    if not comparison.rows:
        raise ValueError("the comparison holds no objective to plot")
    fig = Figure(figsize=(15, 8.5), layout="constrained")
    axes = fig.subplots(2, 3)
    _curves(axes[0, 0], comparison, "train_loss", "training objective (its own bound)")
    _curves(axes[0, 1], comparison, "valid_loss", "validation ELBO")
    axes[0, 0].legend(fontsize=8)

    ax = axes[0, 2]
    ks = comparison.bound_ks()
    for row in comparison.rows:
        line = ax.plot(ks, [row[f"test_iwae_{k}"] for k in ks], marker="o", label=row["objective"])
        ax.scatter(
            [comparison.num_samples],
            [row["test_log_px"]],
            marker="*",
            s=80,
            color=line[0].get_color(),
        )
    ax.set_xscale("log")
    ax.set_xlabel("K")
    ax.set_ylabel("nats per test example")
    ax.set_title(f"test E[IWAE_K] (★: log p(x), K={comparison.num_samples})")
    ax.grid(alpha=0.3)

    labels = comparison.labels
    positions = np.arange(len(labels))
    _bars(
        axes[1, 0],
        positions,
        labels,
        [-r["reconstruction"] for r in comparison.rows],
        "-E_q[log p(x|z)] (nats)",
        "reconstruction error",
    )
    _bars(
        axes[1, 1],
        positions,
        labels,
        [r["kl"] for r in comparison.rows],
        "KL(q(z|x) ‖ p(z)) (nats)",
        "KL term",
    )
    ax = axes[1, 2]
    _bars(
        ax,
        positions,
        labels,
        [r["seconds_per_epoch"] for r in comparison.rows],
        "seconds per epoch",
        "time and active units",
    )
    for x, row in zip(positions, comparison.rows, strict=True):
        ax.annotate(
            f"{row['active_units']} AU",
            (x, row["seconds_per_epoch"]),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    fig.suptitle("estimator comparison: same model, seed, data order and epochs")
    return _save(fig, path)


def _bars(ax, positions, labels: Sequence[str], values: Sequence[float], ylabel: str, title: str):
    ax.bar(positions, values, color=[f"C{i}" for i in range(len(values))])
    ax.set_xticks(positions, labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="y")


def save_gradient_stats(rows: Sequence[dict[str, Any]], path: str | os.PathLike) -> Path:
    """Gradient variance and SNR against K, for the guide's and the model's parameters.

    ``rows`` are :attr:`pyro_vae.compare.Comparison.gradients`. Log-log axes: a
    slope of -1/2 in the guide's SNR is IWAE's 1/√K decay (Rainforth et al. 2018).
    """
    if not rows:
        raise ValueError("no gradient statistics to plot")
    keys = {"objective", "k", "group", "variance", "snr"}
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or not keys <= set(row):
            raise ValueError(f"rows[{i}] must be a dict with keys {sorted(keys)}, got {row!r}")
    _check_path(path)
    fig = Figure(figsize=(11, 8), layout="constrained")
    axes = fig.subplots(2, 2)
    objectives = list(dict.fromkeys(r["objective"] for r in rows))
    for col, group in enumerate(("guide", "model")):
        for name in objectives:
            mine = sorted(
                (r for r in rows if r["objective"] == name and r["group"] == group),
                key=lambda r: r["k"],
            )
            if not mine:
                continue
            ks = [r["k"] for r in mine]
            axes[0, col].plot(ks, [r["snr"] for r in mine], marker="o", label=name)
            axes[1, col].plot(ks, [r["variance"] for r in mine], marker="o", label=name)
        axes[0, col].set_title(f"{group} gradient: signal-to-noise ratio")
        axes[1, col].set_title(f"{group} gradient: variance")
        axes[0, col].set_ylabel("mean |E[g]| / sd[g] over parameters")
        axes[1, col].set_ylabel("mean Var[g] over parameters")
        for ax in axes[:, col]:
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("K (particles)")
            ax.grid(alpha=0.3, which="both")
    axes[0, 0].legend(fontsize=8)
    return _save(fig, path)


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
    _check_path(path)
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
    return _save(fig, path)
