"""Figures of training and of estimator comparisons: learning curves, bounds, gradients."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from matplotlib.figure import Figure

from pyro_vae.plots._figure import check_figure_path, integer_ticks, save_figure
from pyro_vae.train import History

__all__ = ["save_learning_curves", "save_comparison", "save_gradient_stats", "ComparisonResult"]


@runtime_checkable
class ComparisonResult(Protocol):
    """What :func:`save_comparison` reads: :class:`pyro_vae.Comparison` has it.

    Plots sit below the lab that runs comparisons, so they name the shape of its
    result rather than its class.
    """

    rows: list[dict[str, Any]]
    histories: dict[str, History]
    num_samples: int

    @property
    def labels(self) -> list[str]: ...

    def bound_ks(self) -> list[int]: ...


def save_learning_curves(history: History, path: str | os.PathLike) -> Path:
    """Plots the training and validation objective (negative loss, nats per example) by epoch."""
    if not isinstance(history, History):
        raise TypeError(f"history must be a pyro_vae.History, got {type(history).__name__}")
    check_figure_path(path)
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
    integer_ticks(ax.xaxis)
    ax.set_ylabel("objective (nats per example, higher is better)")
    ax.set_title("learning curves")
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, path)


def _curves(ax, comparison: ComparisonResult, column: str, title: str) -> None:
    for label, history in comparison.histories.items():
        ax.plot(
            history.column("epoch"), [-v for v in history.column(column)], marker=".", label=label
        )
    ax.set_xlabel("epoch")
    integer_ticks(ax.xaxis)
    ax.set_ylabel("nats per example")
    ax.set_title(title)
    ax.grid(alpha=0.3)


def save_comparison(comparison: ComparisonResult, path: str | os.PathLike) -> Path:
    """The comparison at a glance: curves, test bounds against K, ELBO terms, units and time.

    Panels: the training objective and the validation ELBO per epoch; E[IWAE_K]
    on the test data against K with log p(x) (K = ``num_samples``) marked; the
    reconstruction term and the KL; active units and seconds per epoch.
    """
    if not isinstance(comparison, ComparisonResult):
        raise TypeError(f"comparison must be a Comparison, got {type(comparison).__name__}")
    check_figure_path(path)
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
    return save_figure(fig, path)


def _bars(ax, positions, labels: Sequence[str], values: Sequence[float], ylabel: str, title: str):
    ax.bar(positions, values, color=[f"C{i}" for i in range(len(values))])
    ax.set_xticks(positions, labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="y")


def save_gradient_stats(rows: Sequence[dict[str, Any]], path: str | os.PathLike) -> Path:
    """Gradient variance and SNR against K, for the guide's and the model's parameters.

    ``rows`` are the ``gradients`` of a :class:`pyro_vae.compare.Comparison`. Log-log axes: a
    slope of -1/2 in the guide's SNR is IWAE's 1/√K decay (Rainforth et al. 2018).
    """
    if not rows:
        raise ValueError("no gradient statistics to plot")
    keys = {"objective", "k", "group", "variance", "snr"}
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or not keys <= set(row):
            raise ValueError(f"rows[{i}] must be a dict with keys {sorted(keys)}, got {row!r}")
    check_figure_path(path)
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
    return save_figure(fig, path)
