"""Figures of applications: anomaly scores and ROC, denoising, and the latent-size sweep."""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from matplotlib.figure import Figure

from pyro_vae._checks import check_data
from pyro_vae.analysis.applications import _check_scores, roc_auc, roc_curve
from pyro_vae.plots._figure import check_figure_path, image_grid, save_figure, show_grid

__all__ = [
    "save_anomaly_scores",
    "save_denoising",
    "save_denoising_errors",
    "save_latent_size_sweep",
]


class _HasRows(Protocol):
    """A result with table rows, such as :class:`pyro_vae.sweep.Sweep`."""

    rows: Sequence[Mapping[str, Any]]


_LEVEL_LABELS = {
    "gaussian": "noise standard deviation σ",
    "salt-and-pepper": "fraction of pixels set to 0 or 1",
    "dropout": "fraction of pixels missing",
    "occlusion": "fraction of the image occluded",
}


def _check_text(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, got {value!r}")
    return value


def save_anomaly_scores(
    normal_scores: torch.Tensor | Sequence[float],
    anomalous_scores: torch.Tensor | Sequence[float],
    path: str | os.PathLike,
    *,
    labels: tuple[str, str] = ("normal", "anomalous"),
    score_name: str = "−log p(x) (nats)",
) -> Path:
    """Anomaly scores at a glance: both classes' histograms, and the ROC curve with its AUC.

    Left: the two score distributions as densities over shared bins (infinite scores
    are counted in the legend, not drawn). Right: the ROC curve of flagging scores
    above a threshold (:func:`pyro_vae.applications.roc_curve`), the AUC in the
    legend, and the diagonal of a score that knows nothing.

    Arguments:
        normal_scores, anomalous_scores: 1-D scores, higher = more anomalous.
        path: the image file to write.
        labels: the names of the normal and the anomalous class.
        score_name: the score's name and unit, on the histogram's x axis.
    """
    normal = _check_scores("normal_scores", normal_scores)
    anomalous = _check_scores("anomalous_scores", anomalous_scores)
    if isinstance(labels, str) or not isinstance(labels, Sequence) or len(labels) != 2:
        raise ValueError(f"labels must be a pair of strings (normal, anomalous), got {labels!r}")
    labels = (_check_text("labels[0]", labels[0]), _check_text("labels[1]", labels[1]))
    score_name = _check_text("score_name", score_name)
    check_figure_path(path)

    fig = Figure(figsize=(11, 4.2), layout="constrained")
    hist_ax, roc_ax = fig.subplots(1, 2, width_ratios=(1.5, 1))
    finite = torch.cat([normal, anomalous])
    finite = finite[torch.isfinite(finite)].numpy()
    bins = np.histogram_bin_edges(finite, bins=40) if finite.size else 10
    for scores, label, colour in ((normal, labels[0], "C0"), (anomalous, labels[1], "C3")):
        shown = scores[torch.isfinite(scores)].numpy()
        hidden = len(scores) - len(shown)
        text = f"{label} (n={len(scores)}, mean {shown.mean():.1f})" if shown.size else label
        if hidden:
            text += f", {hidden} infinite"
        hist_ax.hist(shown, bins=bins, density=True, alpha=0.45, color=colour, label=text)
        hist_ax.hist(shown, bins=bins, density=True, histtype="step", color=colour)
    hist_ax.set_xlabel(f"{score_name}  (higher = more anomalous)")
    hist_ax.set_ylabel("density")
    hist_ax.set_title("anomaly scores")
    hist_ax.grid(alpha=0.3)
    hist_ax.legend(fontsize=8)

    fpr, tpr, _ = roc_curve(normal, anomalous)
    auc = roc_auc(normal, anomalous)
    roc_ax.plot(fpr.numpy(), tpr.numpy(), color="C3", label=f"AUC = {auc:.3f}")
    roc_ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="chance (AUC = 0.5)")
    roc_ax.set_xlim(0, 1)
    roc_ax.set_ylim(0, 1.01)
    roc_ax.set_aspect("equal")
    roc_ax.set_xlabel(f"false-positive rate ({labels[0]} flagged)")
    roc_ax.set_ylabel(f"true-positive rate ({labels[1]} caught)")
    roc_ax.set_title("ROC curve")
    roc_ax.grid(alpha=0.3)
    roc_ax.legend(loc="lower right", fontsize=8)
    return save_figure(fig, path)


def _as_rows(name: str, value: object, clean: torch.Tensor) -> dict[str, torch.Tensor]:
    """A tensor, or a mapping label -> tensor, each of ``clean``'s shape."""
    if isinstance(value, torch.Tensor):
        value = {"": value}
    if not isinstance(value, Mapping) or not value:
        raise TypeError(
            f"{name} must be a tensor or a non-empty dict of label -> tensor, got "
            f"{type(value).__name__}"
        )
    for label, images in value.items():
        where = f"{name}[{label!r}]" if label else name
        check_data(images, where)
        if images.shape != clean.shape:
            raise ValueError(
                f"{where} must have the shape of clean, {tuple(clean.shape)}, got "
                f"{tuple(images.shape)}"
            )
    return dict(value)


def save_denoising(
    clean: torch.Tensor,
    corrupted: torch.Tensor | Mapping[str, torch.Tensor],
    denoised: torch.Tensor | Mapping[str, torch.Tensor],
    image_shape: Sequence[int],
    path: str | os.PathLike,
    *,
    title: str | None = None,
) -> Path:
    """Clean images, their damaged versions and what the VAE made of them, one strip per row.

    Rows: the clean images, then for each kind of damage its corrupted row above its
    denoised row. Pass one kind as two tensors, or several as dicts with the same
    labels (such as ``{"dropout 30%": ...}``), shown in the dicts' order.

    Arguments:
        clean: ``(n, C*H*W)`` or ``(n, C, H, W)`` images in [0, 1] (a few, such as 8).
        corrupted, denoised: tensors of ``clean``'s shape, or dicts label -> tensor.
        image_shape: ``(C, H, W)``.
        path: the image file to write.
        title: a title above the figure.
    """
    check_data(clean, "clean")
    corrupted = _as_rows("corrupted", corrupted, clean)
    denoised = _as_rows("denoised", denoised, clean)
    if list(corrupted) != list(denoised):
        raise ValueError(
            f"corrupted and denoised must have the same labels in the same order, got "
            f"{list(corrupted)} and {list(denoised)}"
        )
    if title is not None:
        _check_text("title", title)
    strips = [("clean", image_grid(clean, image_shape, ncols=len(clean)))]
    for label in corrupted:
        prefix = f"{label}: " if label else ""
        for what, images in (("corrupted", corrupted[label]), ("denoised", denoised[label])):
            strips.append((prefix + what, image_grid(images, image_shape, ncols=len(clean))))
    check_figure_path(path)

    height, width = strips[0][1].shape[:2]
    fig_width = max(6.0, 0.6 * len(clean))
    strip_height = fig_width * height / width + 0.3
    fig = Figure(figsize=(fig_width, strip_height * len(strips) + (0.4 if title else 0)))
    axes = np.atleast_1d(fig.subplots(len(strips), 1))
    for ax, (label, grid) in zip(axes, strips, strict=True):
        show_grid(ax, grid, None)
        ax.set_title(label, fontsize=9, loc="left")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


def _check_rows(name: str, rows: object, keys: Sequence[str]) -> list[dict[str, Any]]:
    """A non-empty list of dicts holding ``keys``; numbers must be finite (ints and floats)."""
    if isinstance(rows, (str, bytes, Mapping)) or not isinstance(rows, Sequence) or not rows:
        raise ValueError(f"{name} must be a non-empty list of dicts, got {rows!r}")
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise TypeError(f"{name}[{i}] must be a dict, got {type(row).__name__}")
        missing = [k for k in keys if k not in row]
        if missing:
            raise ValueError(f"{name}[{i}] lacks the keys {missing}; each row needs {list(keys)}")
        for key in keys:
            value = row[key]
            if key == "kind":
                _check_text(f"{name}[{i}]['kind']", value)
            elif isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise TypeError(f"{name}[{i}][{key!r}] must be a number, got {value!r}")
            elif not math.isfinite(value):
                raise ValueError(f"{name}[{i}][{key!r}] must be finite, got {value!r}")
    return list(rows)


def save_denoising_errors(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Mean squared error against the level of damage, one panel per kind of damage.

    Dashed: the corrupted images; solid: denoised by reconstruction; dotted, when
    the rows hold ``imputed_mse``: imputed with the mask known. ``rows`` are
    :func:`pyro_vae.applications.denoising_errors`'s (keys ``kind``, ``level``,
    ``corrupted_mse``, ``denoised_mse``).
    """
    keys = ["kind", "level", "corrupted_mse", "denoised_mse"]
    rows = _check_rows("rows", rows, keys)
    imputed = all("imputed_mse" in row for row in rows)
    if imputed:
        rows = _check_rows("rows", rows, [*keys, "imputed_mse"])
    check_figure_path(path)
    kinds = list(dict.fromkeys(row["kind"] for row in rows))
    fig = Figure(figsize=(3.6 * len(kinds) + 0.6, 3.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(kinds), sharey=True))
    for ax, kind in zip(axes, kinds, strict=True):
        cell = sorted((row for row in rows if row["kind"] == kind), key=lambda r: r["level"])
        levels = [row["level"] for row in cell]
        lines = [("corrupted_mse", "corrupted", "--", "grey")]
        lines.append(("denoised_mse", "denoised (reconstruction)", "-", "C0"))
        if imputed:
            lines.append(("imputed_mse", "imputed (mask known)", ":", "C1"))
        for key, label, style, colour in lines:
            values = [row[key] for row in cell]
            ax.plot(levels, values, linestyle=style, marker="o", color=colour, label=label)
        ax.set_title(kind)
        ax.set_xlabel(_LEVEL_LABELS.get(kind, "level"))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mean squared error per pixel")
    axes[0].legend(fontsize=8)
    fig.suptitle("denoising: error against the clean images")
    return save_figure(fig, path)


_SWEEP_KEYS = ("latent_dim", "test_log_px", "test_elbo", "reconstruction", "kl", "active_units")


def save_latent_size_sweep(
    sweep_or_rows: _HasRows | Sequence[Mapping[str, Any]], path: str | os.PathLike
) -> Path:
    """What the latent size buys: three panels against the latent size d (log axis).

    Left: held-out log p(x) (with its Monte Carlo standard error when the rows hold
    ``test_log_px_mc_stderr``) and the ELBO; the gap between them is the inference
    gap. Middle: the ELBO's two terms, the reconstruction error -E_q[log p(x|z)]
    (left axis) and KL(q(z|x) ‖ p(z)) (right axis, often ten times smaller).
    Right: the active units against the line y = d.

    Arguments:
        sweep_or_rows: a :class:`pyro_vae.sweep.Sweep`, or its rows (dicts with
            ``latent_dim``, ``test_log_px``, ``test_elbo``, ``reconstruction``, ``kl``,
            ``active_units``), one per distinct latent size.
        path: the image file to write.
    """
    rows = getattr(sweep_or_rows, "rows", sweep_or_rows)
    rows = _check_rows("rows", rows, _SWEEP_KEYS)
    dims = [row["latent_dim"] for row in rows]
    if any(not isinstance(d, numbers.Integral) or d < 1 for d in dims) or len(set(dims)) != len(
        dims
    ):
        raise ValueError(f"rows must have distinct positive integer latent_dim, got {dims}")
    check_figure_path(path)
    rows = sorted(rows, key=lambda r: r["latent_dim"])
    dims = [row["latent_dim"] for row in rows]

    def column(key: str) -> list[float]:
        return [row[key] for row in rows]

    fig = Figure(figsize=(14, 4.2), layout="constrained")
    bound_ax, terms_ax, units_ax = fig.subplots(1, 3)
    stderr = (
        column("test_log_px_mc_stderr") if all("test_log_px_mc_stderr" in r for r in rows) else None
    )
    log_px = bound_ax.errorbar(dims, column("test_log_px"), yerr=stderr, marker="o")
    (elbo,) = bound_ax.plot(dims, column("test_elbo"), marker="s", linestyle="--", color="C1")
    bound_ax.legend([log_px, elbo], ["log p(x) (importance sampled)", "ELBO"], fontsize=8)
    bound_ax.set_ylabel("nats per test example")
    bound_ax.set_title("held-out log-likelihood and ELBO")
    _terms(terms_ax, dims, [-v for v in column("reconstruction")], column("kl"))
    units_ax.plot(dims, column("active_units"), marker="o", label="active units")
    units_ax.plot(dims, dims, linestyle="--", color="grey", label="all units (y = d)")
    units_ax.legend(fontsize=8)
    units_ax.set_ylabel("units")
    units_ax.set_title("active units: Var_x(E_q[z_u|x]) > 0.01")
    for ax in (bound_ax, terms_ax, units_ax):
        ax.set_xscale("log", base=2)
        ax.set_xticks(dims, [str(d) for d in dims])
        ax.minorticks_off()
        ax.set_xlabel("latent size d")
        ax.grid(alpha=0.3)
    fig.suptitle("latent-size sweep")
    return save_figure(fig, path)


def _terms(ax, dims: list[int], error: list[float], kl: list[float]) -> None:
    """The reconstruction error on the left axis and the KL, an order of magnitude
    smaller, on its own right axis, each axis in its line's colour."""
    ax.plot(dims, error, marker="o", color="C0")
    ax.set_ylabel("reconstruction error −E_q[log p(x|z)] (nats)", color="C0")
    ax.tick_params(axis="y", colors="C0")
    right = ax.twinx()
    right.plot(dims, kl, marker="s", linestyle="--", color="C1")
    right.set_ylabel("KL(q(z|x) ‖ p(z)) (nats)", color="C1")
    right.tick_params(axis="y", colors="C1")
    ax.set_title("the ELBO's two terms (ELBO = −error − KL)")
