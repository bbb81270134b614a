"""Figures of the inference gaps and of guides against MCMC samples of the posterior."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from pyro_vae._checks import check_shape
from pyro_vae._labelled import check_labelled
from pyro_vae.analysis._gap_checks import check_samples, check_vae
from pyro_vae.analysis._local_guides import check_local_guide
from pyro_vae.analysis.gaps import InferenceGaps, LocalGuide
from pyro_vae.models._data_checks import check_vae_data
from pyro_vae.models.vae import VAE
from pyro_vae.plots._figure import check_figure_path, image_grid, save_figure, show_grid, unit_name

__all__ = ["save_inference_gaps", "save_posterior_comparison"]

_APPROXIMATION, _AMORTISATION = "tab:blue", "tab:orange"
# colours and markers of the guides in the scatter, apart from the gaps' two colours
_GUIDE_STYLES = [("tab:green", "o"), ("tab:purple", "s"), ("tab:brown", "^"), ("tab:pink", "D")]
_GUIDE_COLOURS = {"amortised": "tab:red", "local": "tab:blue"}
_GUIDE_LABELS = {"amortised": "amortised q_φ(z|x)", "local": "local q*(z|x)"}
_MAX_EXAMPLES = 8


def save_inference_gaps(
    gaps: InferenceGaps | Mapping[str, InferenceGaps], path: str | os.PathLike
) -> Path:
    r"""The approximation and amortisation gaps of one guide or several, in nats.

    Left: per guide, a bar of the mean approximation gap
    :math:`\log p(x) - \mathrm{ELBO}[q^*]` with the mean amortisation gap
    :math:`\mathrm{ELBO}[q^*] - \mathrm{ELBO}[q_\phi]` stacked on it, so the bar's height is
    the mean inference gap :math:`\mathrm{KL}(q_\phi(z \mid x) \,\|\, p(z \mid x))`; error bars
    are standard errors over the examples. Right: every example as a point (approximation
    gap, amortisation gap); points above the diagonal lose more to amortisation than to the
    family.

    Arguments:
        gaps: an :class:`~pyro_vae.gaps.InferenceGaps`, or label -> InferenceGaps to compare
            guides (diagonal, full covariance, a flow) on the same data.
        path: the image file to write.
    """
    results = check_labelled("gaps", gaps, InferenceGaps, alone=True)
    check_figure_path(path)
    fig = Figure(figsize=(11, 4.4), layout="constrained")
    bars, scatter = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.2]})
    _stacked_bars(bars, results)
    _per_example(scatter, results)
    return save_figure(fig, path)


def _stacked_bars(ax: Any, results: dict[str, InferenceGaps]) -> None:
    positions = np.arange(len(results))
    for i, gaps in enumerate(results.values()):
        summary = gaps.summary()
        approximation, approximation_se = summary["approximation_gap"]
        amortisation = summary["amortisation_gap"][0]
        total, total_se = summary["inference_gap"]
        ax.bar(i, approximation, color=_APPROXIMATION, width=0.6)
        ax.bar(i, amortisation, bottom=approximation, color=_AMORTISATION, width=0.6)
        ax.errorbar(i - 0.08, approximation, yerr=approximation_se, color="black", capsize=3)
        ax.errorbar(i + 0.08, total, yerr=total_se, color="black", capsize=3)
        ax.annotate(
            f"{approximation:.2f} + {amortisation:.2f}",
            (i, max(total + total_se, approximation + approximation_se, 0.0)),
            xytext=(0, 4),
            textcoords="offset points",
            ha="center",
            fontsize=8,
        )
    handles = [
        Patch(color=_APPROXIMATION, label="approximation gap: log p(x) - ELBO[q*]"),
        Patch(color=_AMORTISATION, label="amortisation gap: ELBO[q*] - ELBO[q_φ]"),
    ]
    ax.set_xticks(positions, [label or "guide" for label in results], fontsize=8)
    ax.set_xlim(-0.6, len(results) - 0.4)
    ax.set_ylabel("nats per example (mean ± s.e.)")
    ax.set_title("inference gap = approximation + amortisation")
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.margins(y=0.15)
    ax.legend(handles=handles, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1))
    ax.grid(axis="y", alpha=0.3)


def _per_example(ax: Any, results: dict[str, InferenceGaps]) -> None:
    for k, (label, gaps) in enumerate(results.items()):
        x, y = gaps.approximation_gap.cpu().numpy(), gaps.amortisation_gap.cpu().numpy()
        style = _GUIDE_STYLES[k % len(_GUIDE_STYLES)]
        ax.scatter(
            x,
            y,
            s=14,
            alpha=0.7,
            color=style[0],
            marker=style[1],
            label=f"{label or 'guide'} ({len(x)} examples)",
        )
    ax.axline((0, 0), slope=1, color="grey", linestyle=":", linewidth=1, label="equal gaps")
    ax.set_xlabel("approximation gap, log p(x) - ELBO[q*] (nats)")
    ax.set_ylabel("amortisation gap, ELBO[q*] - ELBO[q_φ] (nats)")
    ax.set_title("per example")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def _check_dims(dims: object, latent_dim: int) -> tuple[int, int] | None:
    if latent_dim < 2:
        raise ValueError(
            "a posterior comparison draws two latent dimensions: latent_dim must be >= 2"
        )
    if dims is None:
        return None
    ok = (
        isinstance(dims, Sequence)
        and len(dims) == 2
        and all(isinstance(d, int) and not isinstance(d, bool) for d in dims)
        and all(0 <= d < latent_dim for d in dims)
        and dims[0] != dims[1]
    )
    if not ok:
        raise ValueError(
            f"dims must be two different latent dimensions in [0, {latent_dim}), got {dims!r}"
        )
    return int(dims[0]), int(dims[1])


def save_posterior_comparison(
    vae: VAE,
    x: torch.Tensor,
    samples: torch.Tensor,
    path: str | os.PathLike,
    *,
    local_guide: LocalGuide | None = None,
    dims: Sequence[int] | None = None,
    image_shape: Sequence[int] | None = None,
) -> Path:
    """NUTS samples of p(z|x) against the guide(s), one column per example.

    Each panel shows the samples in two latent dimensions with the amortised q_φ(z|x)
    and, when given, the local q*(z|x) drawn over them: their 1σ (solid) and 2σ
    (dashed) ellipses for a Gaussian guide, 300 draws for a flow; crosses mark the
    means. With ``image_shape``, the input image sits above its panel.

    Arguments:
        vae: the VAE the samples are of (one latent site, ``latent_dim >= 2``).
        x: data ``(N, *event_shape)``, N ≤ 8.
        samples: from :func:`pyro_vae.gaps.nuts_posterior`, ``(N, S, latent_dim)``.
        path: the image file to write.
        local_guide: q* fit to this x, drawn as well.
        dims: the two latent dimensions drawn, indices from 0 named z₁, z₂, … on the axes
            (default, per example: the two with the largest posterior variance).
        image_shape: ``(C, H, W)`` of the images in x, to show them; ``None`` for no images.
    """
    vae = check_vae(vae, "save_posterior_comparison")
    x = check_vae_data(vae, x, "x", support=False)
    if len(x) > _MAX_EXAMPLES:
        raise ValueError(f"x holds {len(x)} examples; draw at most {_MAX_EXAMPLES} in one figure")
    samples = check_samples(samples, len(x), vae.latent_dim)
    fixed = _check_dims(dims, vae.latent_dim)
    if local_guide is not None:
        local_guide = check_local_guide(vae, local_guide, x)
    if image_shape is not None:
        c, h, w = check_shape("image_shape", image_shape, 3)
        if c * h * w != x[0].numel():
            raise ValueError(
                f"image_shape {tuple(image_shape)} does not hold examples of {x[0].numel()} values"
            )
    check_figure_path(path)
    devices = [x.device.index or 0] if x.is_cuda else []
    with torch.no_grad(), torch.random.fork_rng(devices=devices):
        torch.manual_seed(0)  # the flows' draws; the global stream is left alone
        qs = {"amortised": vae.encoder(x)}
        if local_guide is not None:
            qs["local"] = local_guide.distribution(x)
        draws = {name: _flow_draws(q) for name, q in qs.items()}
    n = len(x)
    fig = Figure(figsize=(max(3.3 * n, 6), 5 if image_shape else 3.8), layout="constrained")
    grid = fig.add_gridspec(
        2 if image_shape else 1, n, height_ratios=[1, 2.6] if image_shape else None
    )
    for i in range(n):
        if image_shape:
            show_grid(fig.add_subplot(grid[0, i]), image_grid(x[i : i + 1], image_shape), f"x #{i}")
        ax = fig.add_subplot(grid[-1, i])
        chain = samples[i].detach().cpu().double()
        pair = fixed or _widest(chain)
        _panel(ax, chain, pair, {name: (q, draws[name]) for name, q in qs.items()}, i)
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncol=3, fontsize=8)
    return save_figure(fig, path)


def _widest(chain: torch.Tensor) -> tuple[int, int]:
    """The two dimensions of largest posterior variance, in increasing order."""
    first, second = chain.var(0).topk(2).indices.tolist()
    return (min(first, second), max(first, second))


def _flow_draws(q: Any) -> torch.Tensor | None:
    """300 draws ``(300, N, D)`` of a guide without a Gaussian form, else ``None``."""
    return None if _gaussian(q) is not None else q.sample((300,))


def _gaussian(q: Any) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(mean ``(N, D)``, covariance ``(N, D, D)``) of a Gaussian guide, else ``None``."""
    if isinstance(q, torch.distributions.MultivariateNormal):
        return q.mean, q.covariance_matrix
    if isinstance(q, torch.distributions.Independent) and isinstance(
        q.base_dist, torch.distributions.Normal
    ):
        return q.base_dist.loc, torch.diag_embed(q.base_dist.scale.pow(2))
    return None


def _panel(
    ax: Any, chain: torch.Tensor, pair: tuple[int, int], qs: dict[str, tuple], index: int
) -> None:
    i, j = pair
    ax.scatter(chain[:, i], chain[:, j], s=4, color="black", alpha=0.25, label="NUTS p(z|x)")
    mean = chain.mean(0)
    ax.plot(mean[i], mean[j], marker="x", color="black", markersize=8, linestyle="none")
    for name, (q, draws) in qs.items():
        colour, label = _GUIDE_COLOURS[name], _GUIDE_LABELS[name]
        gaussian = _gaussian(q)
        if gaussian is None:
            z = draws[:, index].cpu().double()
            ax.scatter(z[:, i], z[:, j], s=4, color=colour, alpha=0.3, label=label)
            centre = z.mean(0)
        else:
            centre = gaussian[0][index].cpu().double()
            cov = gaussian[1][index].cpu().double()[[i, j]][:, [i, j]]
            for radius, style in ((1.0, "-"), (2.0, "--")):
                curve = _ellipse(centre[[i, j]], cov, radius)
                ax.plot(
                    curve[0],
                    curve[1],
                    color=colour,
                    linestyle=style,
                    label=label if radius == 1.0 else None,
                )
        ax.plot(centre[i], centre[j], marker="x", color=colour, markersize=8, linestyle="none")
    ax.set_xlabel(unit_name(i))
    ax.set_ylabel(unit_name(j))
    ax.set_title(f"example #{index}: p(z|x) and q", fontsize=9)
    ax.grid(alpha=0.3)


def _ellipse(mean: torch.Tensor, cov: torch.Tensor, radius: float) -> np.ndarray:
    """Points ``(2, 100)`` at Mahalanobis distance ``radius`` from ``mean`` under ``cov``."""
    angles = torch.linspace(0, 2 * math.pi, 100, dtype=cov.dtype)
    circle = torch.stack([angles.cos(), angles.sin()])
    return (mean[:, None] + radius * torch.linalg.cholesky(cov) @ circle).numpy()
