"""The shared machinery of figures: image tiling, path checks and atomic PNG writes.

Figures are drawn on ``matplotlib.figure.Figure`` objects with the Agg canvas,
never through pyplot's global state, so they work without a display and never
change the user's matplotlib backend.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from pyro_vae._atomic import write_atomically
from pyro_vae._checks import check_int_at_least, check_output_path, check_positive_int, check_shape
from pyro_vae.models.vae import VAE

__all__ = [
    "MAX_GRID_IMAGES",
    "image_grid",
    "unit_name",
    "check_grid_size",
    "integer_ticks",
    "save_image_grid",
    "check_figure_path",
    "save_figure",
    "check_vae",
    "show_grid",
]


#: the most images one saved grid holds: 20 × 20 stay readable at the figure's size
MAX_GRID_IMAGES = 400

_SUBSCRIPTS = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")


def unit_name(u: int) -> str:
    """How figures name latent unit ``u`` (0-based, as in ``z[:, u]``): z₁, z₂, … from 1."""
    return "z" + str(u + 1).translate(_SUBSCRIPTS)


def check_grid_size(name: str, num: object) -> int:
    """``num`` as a positive integer of at most :data:`MAX_GRID_IMAGES` images."""
    num = check_positive_int(name, num)
    if num > MAX_GRID_IMAGES:
        raise ValueError(
            f"{name} must be at most {MAX_GRID_IMAGES}, got {num}: a grid of more images is "
            "unreadable; draw several grids (another seed each) instead"
        )
    return num


def integer_ticks(axis) -> None:
    """Ticks of a matplotlib ``axis`` (such as ``ax.xaxis``) at whole numbers only, even
    when its range holds a single one (one epoch), at steps of 1, 2, 5 or 10."""
    axis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1, steps=[1, 2, 5, 10]))


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
    check_int_at_least("pad", pad, low=0)
    x = images.detach().float().cpu().reshape(-1, c, h, w).clamp(0, 1).numpy()
    n = x.shape[0]
    ncols = ncols or math.ceil(math.sqrt(n))
    nrows = math.ceil(n / ncols)
    grid = np.ones((c, nrows * (h + pad) - pad, ncols * (w + pad) - pad), dtype=np.float32)
    for i in range(n):
        r, col = divmod(i, ncols)
        grid[:, r * (h + pad) : r * (h + pad) + h, col * (w + pad) : col * (w + pad) + w] = x[i]
    return grid[0] if c == 1 else grid.transpose(1, 2, 0)


def check_figure_path(path: str | os.PathLike, name: str = "path") -> Path:
    """A file path ending in an image format matplotlib writes, where a file can be written."""
    path = check_output_path(name, path, folder=False)
    formats = FigureCanvasAgg(Figure()).get_supported_filetypes()
    if path.suffix[1:].lower() not in formats:
        raise ValueError(
            f"{name} must end in an image format suffix ({', '.join(sorted(formats))}), "
            f"got {str(path)!r}"
        )
    return path


def save_figure(fig: Figure, path: str | os.PathLike) -> Path:
    """Writes ``fig`` atomically (:func:`~pyro_vae._atomic.write_atomically`); on failure,
    removes the folders this call created."""
    path = check_figure_path(path)
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


def check_vae(vae: object) -> VAE:
    if not isinstance(vae, VAE):
        raise TypeError(f"vae must be a pyro_vae.VAE, got {type(vae).__name__}")
    return vae


def show_grid(ax, grid: np.ndarray, title: str | None) -> None:
    ax.imshow(
        grid, cmap="gray" if grid.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest"
    )
    ax.set_axis_off()
    if title:
        ax.set_title(title)


def _label_rows(ax, labels: Sequence[str], tile_height: int, pad: int = 1) -> None:
    """Writes ``labels`` left of the rows of a grid drawn by :func:`show_grid`."""
    ax.set_axis_on()
    ax.set_yticks(np.arange(len(labels)) * (tile_height + pad) + (tile_height - 1) / 2, labels)
    ax.set_xticks([])
    ax.tick_params(length=0)
    for side in ("top", "right", "bottom", "left"):
        ax.spines[side].set_visible(False)


def save_image_grid(
    images: torch.Tensor,
    image_shape: Sequence[int],
    path: str | os.PathLike,
    *,
    title: str | None = None,
    ncols: int | None = None,
    row_labels: Sequence[str] | None = None,
) -> Path:
    """Writes a grid of images (see :func:`image_grid`) to a PNG file.

    At most :data:`MAX_GRID_IMAGES` images. ``row_labels``, one string per row of the
    grid, are written left of the rows.
    """
    if isinstance(images, torch.Tensor) and images.dim() > 0:  # before any work
        check_grid_size("the number of images", len(images))
    grid = image_grid(images, image_shape, ncols)  # checks images and image_shape
    rows = math.ceil(len(images) / (ncols or math.ceil(math.sqrt(len(images)))))
    if row_labels is not None and (isinstance(row_labels, str) or len(row_labels) != rows):
        raise ValueError(f"row_labels must be {rows} strings, one per row, got {row_labels!r}")
    fig = Figure(figsize=(6, 6 * grid.shape[0] / grid.shape[1] + 0.4))
    ax = fig.add_subplot()
    show_grid(ax, grid, title)
    if row_labels is not None:
        _label_rows(ax, [str(label) for label in row_labels], image_shape[1])
    return save_figure(fig, path)
