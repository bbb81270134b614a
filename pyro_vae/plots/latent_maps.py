"""Figures of the latent space as points and histograms: maps of the codes, the aggregate
posterior against the prior, and per-unit diagnostics (KL, activity, collapse).

The image figures of the latent space (interpolations, traversals, the 2-D manifold)
are in :mod:`pyro_vae.plots.latent_space`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from pyro_vae._checks import check_positive_float, check_positive_int, check_seed
from pyro_vae.analysis.latent import (
    EMBEDDINGS,
    aggregate_kl,
    codes,
    embed,
    kl_per_dimension,
    pca,
    sample_aggregate_posterior,
)
from pyro_vae.models._data_checks import check_vae_data
from pyro_vae.models.vae import VAE, HierarchicalVAE
from pyro_vae.plots._figure import check_figure_path, check_vae, save_figure, unit_name

__all__ = ["save_latent_map", "save_aggregate_posterior", "save_unit_diagnostics"]

_ACTIVE, _INACTIVE = "tab:blue", "lightgrey"


def _check_labels(labels: object, n: int) -> np.ndarray:
    """Integer class labels ``(n,)`` as a NumPy array."""
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    try:
        array = np.asarray(labels)
    except (TypeError, ValueError) as e:
        raise TypeError(
            f"labels must be integer class labels of shape ({n},), got {labels!r}"
        ) from e
    if array.dtype.kind not in "iu":
        raise TypeError(f"labels must be integer class labels, got dtype {array.dtype}")
    if array.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), one per row of x; got {array.shape}")
    return array


def _check_methods(methods: object) -> list[str]:
    if isinstance(methods, str) or not isinstance(methods, Sequence) or not methods:
        raise ValueError(
            f"methods must be a non-empty list drawn from {EMBEDDINGS}, got {methods!r}"
        )
    for i, method in enumerate(methods):
        if method not in EMBEDDINGS:
            raise ValueError(f"methods[{i}] must be one of {EMBEDDINGS}, got {method!r}")
    return list(methods)


def _scatter(ax, points: np.ndarray, labels: np.ndarray) -> None:
    """Points coloured by class: tab10 with a legend up to 10 classes, else a colour bar."""
    classes = np.unique(labels)
    size = float(np.clip(6000 / len(points), 4, 25))
    if len(classes) <= 10:
        for i, label in enumerate(classes):
            keep = labels == label
            ax.scatter(*points[keep].T, s=size, color=f"C{i}", alpha=0.7, label=str(label), lw=0)
    else:
        dots = ax.scatter(*points.T, s=size, c=labels, cmap="viridis", alpha=0.7, lw=0)
        ax.figure.colorbar(dots, ax=ax, label="label")


def save_latent_map(
    vae: VAE,
    x: torch.Tensor,
    labels: torch.Tensor | Sequence[int],
    path: str | os.PathLike,
    *,
    methods: Sequence[str] = ("pca", "tsne"),
    seed: int = 0,
) -> Path:
    r"""The codes :math:`\mathbb{E}_q[z \mid x_n]` (:func:`~pyro_vae.latent.codes`) by label.

    One panel per method of :func:`~pyro_vae.latent.embed`: ``"pca"`` (its axes give
    the share of variance they explain) or ``"tsne"``. With ``latent_dim == 2`` the
    ``"pca"`` panel draws the raw codes instead, since PCA would only rotate them. Classes
    that form separate clusters were told apart without ever seeing a label; t-SNE keeps
    neighbourhoods, not distances, so read its cluster sizes and gaps with care.

    Arguments:
        vae: a :class:`~pyro_vae.VAE` with ``latent_dim >= 2``.
        x: data ``(N, *event_shape)`` of the VAE's dtype and device (N ≥ 3 for t-SNE).
        labels: integer class labels ``(N,)``: a tensor, array or list.
        path: the image file to write.
        methods: names from ``("pca", "tsne")``.
        seed: t-SNE's random state.
    """
    check_vae_data(check_vae(vae), x, "x", support=False)
    labels = _check_labels(labels, len(x))
    methods = _check_methods(methods)
    check_seed(seed)
    if vae.latent_dim < 2:
        raise ValueError(f"a latent map needs latent_dim >= 2, got latent_dim {vae.latent_dim}")
    if len(x) < (3 if "tsne" in methods else 2):
        raise ValueError(f"x holds too few examples to map ({len(x)}): PCA needs 2, t-SNE 3")
    check_figure_path(path)
    z = codes(vae, x)
    fig = Figure(figsize=(4.4 * len(methods) + 1.2, 4.6), layout="constrained")
    for ax, method in zip(fig.subplots(1, len(methods), squeeze=False)[0], methods, strict=True):
        _map_panel(ax, z, method, seed)
        _scatter(ax, _map_points(z, method, seed), labels)
    if len(np.unique(labels)) <= 10:
        fig.legend(
            *ax.get_legend_handles_labels(), loc="outside right", title="label", markerscale=2
        )
    fig.suptitle(f"codes E_q[z|x] of {len(x)} examples ({vae.latent_dim}-D latent space)")
    return save_figure(fig, path)


def _map_points(z: torch.Tensor, method: str, seed: int) -> np.ndarray:
    if method == "pca" and z.shape[1] == 2:
        return z.cpu().double().numpy()
    return embed(z, method, seed=seed).cpu().double().numpy()


def _map_panel(ax, z: torch.Tensor, method: str, seed: int) -> None:
    """Title and axis labels of one panel of the latent map."""
    if method == "pca" and z.shape[1] == 2:
        ax.set_title("raw codes (latent_dim 2: no projection)")
        ax.set_xlabel("z₁")
        ax.set_ylabel("z₂")
    elif method == "pca":
        ratio = pca(z, 2)[1].tolist()
        ax.set_title("PCA of the codes")
        ax.set_xlabel(f"PC 1 ({100 * ratio[0]:.1f}% of the variance)")
        ax.set_ylabel(f"PC 2 ({100 * ratio[1]:.1f}% of the variance)")
    else:
        ax.set_title(f"t-SNE of the codes (perplexity {min(30.0, (len(z) - 1) / 3):.3g})")
        ax.set_xlabel("t-SNE 1")
        ax.set_ylabel("t-SNE 2")
    ax.grid(alpha=0.3)


def _check_dims(dims: object, latent_dim: int) -> list[int]:
    if dims is None:
        return list(range(min(latent_dim, 16)))
    if isinstance(dims, (str, bytes)) or not isinstance(dims, Sequence) or not dims:
        raise ValueError(f"dims must be a non-empty list of latent dimensions, got {dims!r}")
    for i, d in enumerate(dims):
        if isinstance(d, bool) or not isinstance(d, int) or not 0 <= d < latent_dim:
            raise ValueError(f"dims[{i}] must be an integer in 0 … {latent_dim - 1}, got {d!r}")
    return list(dims)


def save_aggregate_posterior(
    vae: VAE,
    x: torch.Tensor,
    path: str | os.PathLike,
    *,
    num_samples: int = 2000,
    dims: Sequence[int] | None = None,
    seed: int = 0,
) -> Path:
    r"""Histograms of the aggregate posterior against the prior, one panel per latent unit.

    The aggregate posterior is :math:`q(z) = \frac{1}{N} \sum_n q(z \mid x_n)`. Panel u
    shows the histogram of :math:`z_u` over draws from q(z)
    (:func:`~pyro_vae.latent.sample_aggregate_posterior`) with that of draws from p(z)
    over it, so any prior works. Where they differ, the prior puts mass where no code
    goes (samples from there decode to junk) or misses where codes go. The title gives
    :func:`~pyro_vae.latent.aggregate_kl`'s estimates of
    :math:`\mathrm{KL}(q(z) \,\|\, p(z))` ± its standard error and of :math:`I_q(x; z)`;
    they add up to the average KL term of the ELBO. Matching marginals are necessary, not
    sufficient, for q(z) = p(z).

    Arguments:
        vae: a :class:`~pyro_vae.VAE` with one latent layer.
        x: data ``(N, *event_shape)`` of the VAE's dtype and device.
        path: the image file to write.
        num_samples: draws from each of q(z) and p(z), also for the estimates.
        dims: the units to draw, indices from 0 (default: the first 16); panel u is
            labelled z with subscript u + 1, as every figure names units.
        seed: seeds every draw; the global random streams are left untouched.
    """
    if isinstance(check_vae(vae), HierarchicalVAE):
        raise ValueError(
            "save_aggregate_posterior needs a VAE with one latent layer: a HierarchicalVAE's "
            "prior is over its top layer, not over the codes z1"
        )
    check_vae_data(vae, x, "x", support=False)
    num_samples = check_positive_int("num_samples", num_samples)
    dims = _check_dims(dims, vae.latent_dim)
    check_seed(seed)
    check_figure_path(path)
    stats = aggregate_kl(vae, x, num_samples=num_samples, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    posterior = sample_aggregate_posterior(vae.encoder, x, num_samples, generator=generator)
    devices = [x.device.index or 0] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        prior = vae.sample_z(num_samples)
    ncols = min(4, len(dims))
    nrows = math.ceil(len(dims) / ncols)
    fig = Figure(figsize=(3.2 * ncols, 2.4 * nrows + 0.9), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).flatten()
    num_bins = int(np.clip(np.sqrt(num_samples), 10, 40))
    for ax, u in zip(axes[: len(dims)], dims, strict=True):
        q_u, p_u = posterior[:, u].cpu().numpy(), prior[:, u].cpu().numpy()
        low, high = np.quantile(np.concatenate([q_u, p_u]), [0.002, 0.998])
        low, high = (low, high) if high > low else (low - 1, low + 1)
        bins = np.linspace(low, high, num_bins + 1)
        ax.hist(q_u, bins=bins, density=True, alpha=0.6, color=_ACTIVE, label="q(z) = E_x q(z|x)")
        ax.hist(p_u, bins=bins, density=True, histtype="step", color="black", lw=1.2, label="p(z)")
        ax.set_xlabel(unit_name(u), fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in axes[len(dims) :]:
        ax.set_axis_off()
    axes[0].set_ylabel("density")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=2)
    fig.suptitle(
        f"aggregate posterior vs prior: KL(q(z) ‖ p(z)) = {stats.kl:.2f} ± "
        f"{stats.standard_error:.2f} nats, I(x; z) = {stats.mutual_information:.2f} nats "
        f"(≤ log N = {math.log(stats.num_examples):.2f})\n"
        f"their sum, the average KL(q(z|x) ‖ p(z)) = {stats.average_kl:.2f} nats; "
        f"{num_samples} draws of each, N = {stats.num_examples}",
        fontsize=10,
    )
    return save_figure(fig, path)


def save_unit_diagnostics(
    vae: VAE, x: torch.Tensor, path: str | os.PathLike, *, threshold: float = 0.01
) -> Path:
    r"""Which latent units carry information: per-unit KL and activity, collapsed units marked.

    Top: the average :math:`\mathrm{KL}(q(z_u \mid x) \,\|\, p(z_u))` per unit
    (:func:`~pyro_vae.latent.kl_per_dimension`; left blank, with a note, for guides and priors
    without Normal marginals). Bottom, on a log scale: the activity
    :math:`A_u = \mathrm{Var}_x(\mathbb{E}_q[z_u \mid x])` with the threshold (0.01, Burda et al.
    2016) drawn across. A unit under the threshold is inactive: its posterior mean
    ignores x, its KL is ≈ 0, and the decoder ignores it (posterior collapse). Grey bars
    mark them in both panels; activities of exactly 0 are drawn at the bottom edge. The
    threshold is lenient: read the two panels together, since a unit just above it can
    still carry only hundredths of a nat.

    Arguments:
        vae: a :class:`~pyro_vae.VAE`.
        x: data ``(N, *event_shape)``, N ≥ 2, of the VAE's dtype and device.
        path: the image file to write.
        threshold: the activity above which a unit counts as active, a number > 0.
    """
    check_vae_data(check_vae(vae), x, "x", support=False)
    threshold = check_positive_float("threshold", threshold)
    if len(x) < 2:
        raise ValueError(f"x must hold at least 2 examples (activity is a variance), got {len(x)}")
    check_figure_path(path)
    activity = codes(vae, x).var(0).double().cpu().numpy()
    try:
        kl = kl_per_dimension(vae, x).mean(0).double().cpu().numpy()
    except ValueError:
        kl = None  # no closed form for this guide and prior: say so in the panel
    active = activity > threshold
    colours = np.where(active, _ACTIVE, _INACTIVE)
    units = np.arange(len(activity))
    fig = Figure(figsize=(max(6.0, 0.22 * len(units) + 2), 5.6), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True)
    if kl is not None:
        top.bar(units, kl, color=colours, edgecolor="dimgrey", lw=0.5)
        top.set_ylabel("KL(q(z_u|x) ‖ p(z_u))\naverage over x, nats")
    else:
        note = "no closed-form KL per unit for this guide and prior"
        top.text(0.5, 0.5, note, ha="center", va="center", transform=top.transAxes)
        top.set_yticks([])
    positive = activity[activity > 0]
    floor = min(threshold, positive.min() if positive.size else threshold) / 10
    bottom.bar(units, np.maximum(activity, floor), color=colours, edgecolor="dimgrey", lw=0.5)
    bottom.set_yscale("log")
    bottom.set_ylim(bottom=floor)
    line = bottom.axhline(
        threshold, color="tab:red", ls="--", lw=1, label=f"threshold {threshold:g}"
    )
    bottom.set_ylabel("activity Var_x E_q[z_u|x]")
    bottom.set_xlabel("latent unit")
    step = max(1, math.ceil(len(units) / 40))
    bottom.set_xticks(units[::step], [unit_name(u) for u in units[::step]])
    handles = [
        Patch(color=_ACTIVE, label="active"),
        Patch(color=_INACTIVE, label="inactive (collapsed)"),
        line,
    ]
    fig.legend(handles=handles, fontsize=8, loc="outside lower center", ncols=3)
    fig.suptitle(
        f"{int(active.sum())} of {len(units)} units active (Var_x E_q[z_u|x] > {threshold:g})"
    )
    return save_figure(fig, path)
