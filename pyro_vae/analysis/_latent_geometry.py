"""Paths through the latent space and 2-D pictures of codes: pure tensor functions.

:mod:`pyro_vae.latent` re-exports them; they know nothing of VAEs, only of codes
``(…, D)``.

References:
    1. T. White. Sampling generative networks. arXiv:1609.04468, 2016.
    2. L. van der Maaten, G. Hinton. Visualizing data using t-SNE. JMLR 9, 2008.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from pyro_vae._checks import (
    check_int_at_least,
    check_latents,
    check_number,
    check_positive_int,
    check_seed,
)

__all__ = ["INTERPOLATIONS", "EMBEDDINGS", "interpolate", "traverse", "grid", "pca", "embed"]

#: The paths ``method`` of :func:`interpolate` may name between two codes.
INTERPOLATIONS = ("linear", "spherical")
#: The 2-D embeddings ``method`` of :func:`embed` may name.
EMBEDDINGS = ("pca", "tsne")


def interpolate(
    z0: torch.Tensor, z1: torch.Tensor, num_steps: int = 10, *, method: str = "linear"
) -> torch.Tensor:
    r"""Points on a path from ``z0`` to ``z1`` at t = 0, 1/(T-1), …, 1 (T = ``num_steps``).

    * ``"linear"``: :math:`z(t) = (1 - t) z_0 + t z_1`.
    * ``"spherical"`` (slerp, White 2016): with Ω the angle between z0 and z1,
      :math:`z(t) = \frac{\sin((1 - t) \Omega)}{\sin \Omega} z_0
      + \frac{\sin(t \Omega)}{\sin \Omega} z_1`, the great circle between two vectors of
      equal norm. Where :math:`\sin \Omega < \sqrt{\epsilon}` of the dtype (nearly
      parallel rows, where slerp equals lerp to machine precision; nearly opposite
      rows, where no single great circle exists; or a zero row) that row is linear.

    Arguments:
        z0, z1: finite codes of one shape ``(D,)`` or ``(B, D)`` and dtype; rows of a
            batch are interpolated independently.
        num_steps: :math:`T \ge 2`, counting both endpoints, which are returned exactly.
        method: ``"linear"`` or ``"spherical"``.

    Returns:
        a tensor of shape ``(num_steps, *z0.shape)``.
    """
    check_latents("z0", z0)
    check_latents("z1", z1)
    if z0.dim() > 2 or z0.shape != z1.shape:
        raise ValueError(
            f"z0 and z1 must have one shape, (D,) or (B, D); got {tuple(z0.shape)} and "
            f"{tuple(z1.shape)}"
        )
    if z0.dtype != z1.dtype:
        raise TypeError(f"z0 has dtype {z0.dtype} but z1 has {z1.dtype}; give both one dtype")
    check_int_at_least("num_steps", num_steps, low=2, why="both endpoints")
    if method not in INTERPOLATIONS:
        raise ValueError(f"method must be one of {INTERPOLATIONS}, got {method!r}")
    t = torch.linspace(0, 1, num_steps, dtype=z0.dtype, device=z0.device)
    t = t.reshape(-1, *[1] * z0.dim())
    path = torch.lerp(z0, z1, t) if method == "linear" else _slerp(z0, z1, t)
    path[0], path[-1] = z0, z1
    return path


def _slerp(z0: torch.Tensor, z1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    norm0, norm1 = z0.norm(dim=-1, keepdim=True), z1.norm(dim=-1, keepdim=True)
    tiny = torch.finfo(z0.dtype).tiny
    u0, u1 = z0 / norm0.clamp_min(tiny), z1 / norm1.clamp_min(tiny)
    # 2 atan2(|u0 - u1|, |u0 + u1|) is accurate for all angles, where acos(u0·u1) is not
    # near 0 and π.
    omega = 2 * torch.atan2(
        (u0 - u1).norm(dim=-1, keepdim=True), (u0 + u1).norm(dim=-1, keepdim=True)
    )
    sin = omega.sin()
    linear = (sin < torch.finfo(z0.dtype).eps ** 0.5) | (norm0 == 0) | (norm1 == 0)
    sin = torch.where(linear, torch.ones_like(sin), sin)
    spherical = (torch.sin((1 - t) * omega) * z0 + torch.sin(t * omega) * z1) / sin
    return torch.where(linear, torch.lerp(z0, z1, t), spherical)


def traverse(
    z: torch.Tensor, dims: Sequence[int], values: Sequence[float] | torch.Tensor
) -> torch.Tensor:
    """Copies of one code with one coordinate swept: ``out[i, j]`` is ``z`` with
    ``z[dims[i]] = values[j]``.

    Decoding row i shows what latent unit ``dims[i]`` controls, everything else held fixed.

    Arguments:
        z: a finite code ``(D,)``.
        dims: latent dimensions, each an integer in ``0 … D-1``.
        values: finite values ``(V,)`` to set them to.

    Returns:
        a tensor of shape ``(len(dims), V, D)``.
    """
    check_latents("z", z)
    if z.dim() != 1:
        raise ValueError(f"z must be one code of shape (latent_dim,), got {tuple(z.shape)}")
    size = z.shape[0]
    if isinstance(dims, (str, bytes)) or not isinstance(dims, Sequence) or not dims:
        raise ValueError(f"dims must be a non-empty list of latent dimensions, got {dims!r}")
    for i, d in enumerate(dims):
        if isinstance(d, bool) or not isinstance(d, int) or not 0 <= d < size:
            raise ValueError(f"dims[{i}] must be an integer in 0 … {size - 1}, got {d!r}")
    values = torch.as_tensor(values, dtype=z.dtype, device=z.device)
    if values.dim() != 1 or len(values) == 0 or not bool(torch.isfinite(values).all()):
        raise ValueError(f"values must be finite numbers of shape (V,), got {values!r}")
    out = z.expand(len(dims), len(values), size).clone()
    for i, d in enumerate(dims):
        out[i, :, d] = values
    return out


def _check_codes(codes: object, min_rows: int) -> torch.Tensor:
    check_latents("codes", codes)
    if codes.dim() != 2 or codes.shape[0] < min_rows:
        raise ValueError(
            f"codes must have shape (N, latent_dim) with N >= {min_rows}, got {tuple(codes.shape)}"
        )
    return codes


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


def pca(codes: torch.Tensor, k: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Principal component analysis, exact: the SVD C - mean = U S Vᵀ of the centred codes.

    The projection onto the first k principal axes is :math:`(C - \mathrm{mean}) V_k`, and
    component i explains :math:`S_i^2 / \sum_j S_j^2` of the total variance. Each axis is
    signed so that its largest loading is positive, which makes the result deterministic. For
    D = 2 and k = 2 the projection is only a rotation (or reflection) of the centred codes.

    Arguments:
        codes: finite codes ``(N, D)`` with :math:`N \ge 2`.
        k: components to keep, :math:`1 \le k \le \min(N, D)`.

    Returns:
        ``(projected (N, k), explained_variance_ratio (k,))``; the ratios are 0 when all
        codes are equal.
    """
    _check_codes(codes, 2)
    k = check_positive_int("k", k)
    if k > min(codes.shape):
        raise ValueError(
            f"k must be at most min(N, latent_dim) = {min(codes.shape)} for codes of shape "
            f"{tuple(codes.shape)}, got {k}"
        )
    centred = codes - codes.mean(0)
    _, singular, vh = torch.linalg.svd(centred, full_matrices=False)
    axes = vh[:k]
    axes = axes * axes.gather(1, axes.abs().argmax(1, keepdim=True)).sign()
    variance = singular.pow(2)
    ratio = variance[:k] / variance.sum().clamp_min(torch.finfo(variance.dtype).tiny)
    return centred @ axes.T, ratio


def embed(codes: torch.Tensor, method: str = "pca", *, seed: int = 0) -> torch.Tensor:
    r"""A 2-D picture of codes ``(N, D)``: ``(N, 2)``.

    * ``"pca"``: the first two principal components (:func:`pca`); linear, so distances
      along them are distances in z. For D = 2 it only rotates the codes: draw them raw.
    * ``"tsne"``: t-SNE (van der Maaten & Hinton 2008) through scikit-learn, started from
      PCA, with perplexity :math:`\min(30, (N - 1)/3)` and ``random_state=seed``; it keeps
      neighbourhoods, not distances or cluster sizes. Needs :math:`N \ge 3` and :math:`D \ge 2`.

    Raises:
        ImportError: t-SNE without scikit-learn installed.
    """
    if method not in EMBEDDINGS:
        raise ValueError(f"method must be one of {EMBEDDINGS}, got {method!r}")
    check_seed(seed)
    if method == "pca":
        return pca(codes, 2)[0]
    _check_codes(codes, 3)
    if codes.shape[1] < 2:
        raise ValueError(f"t-SNE needs codes with latent_dim >= 2, got {tuple(codes.shape)}")
    try:
        from sklearn.manifold import TSNE
    except ImportError as e:
        raise ImportError("t-SNE needs scikit-learn: pip install scikit-learn") from e
    perplexity = min(30.0, (len(codes) - 1) / 3)
    tsne = TSNE(2, perplexity=perplexity, init="pca", random_state=seed)
    points = tsne.fit_transform(codes.detach().cpu().double().numpy())
    return torch.from_numpy(points).to(dtype=codes.dtype, device=codes.device)
