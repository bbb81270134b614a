"""The figure of a recipe run: its anytime test −log p(x) against epochs and training time."""

from __future__ import annotations

import itertools
import math
import os
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from pyro_vae.plots._figure import check_figure_path, save_figure
from pyro_vae.train._history import History

__all__ = ["save_reproduction_curve"]


def save_reproduction_curve(
    history: History,
    paper: float | None,
    paper_label: str,
    title: str,
    path: str | os.PathLike,
) -> Path:
    """Plots −``test_log_likelihood`` (nats) against the epoch (log scale) and against
    the cumulative training time in hours, with the published value as a dashed line.

    Raises:
        ValueError: the history holds no anytime measurement.
    """
    check_figure_path(path)
    hours = list(itertools.accumulate(s / 3600 for s in history.column("seconds")))
    points = [
        (epoch, hour, -value)
        for epoch, hour, value in zip(
            history.column("epoch"), hours, history.column("test_log_likelihood"), strict=True
        )
        if not math.isnan(value)
    ]
    if not points:
        raise ValueError("the history holds no test log-likelihood to plot (fit(test=...))")
    epochs, times, nll = zip(*points, strict=True)
    fig = Figure(figsize=(10, 4))
    for i, (x, label) in enumerate(((epochs, "epoch"), (times, "training time (hours)"))):
        ax = fig.add_subplot(1, 2, i + 1)
        ax.plot(x, nll, marker=".", label="pyro_vae (anytime estimate)")
        if paper is not None:
            ax.axhline(paper, color="black", linestyle="--", label=f"{paper_label}: {paper:.2f}")
        if i == 0 and max(epochs) > 10:
            ax.set_xscale("log")
            # Epochs at 1, 2 and 5 × 10^k, written out: over less than a decade matplotlib
            # labels its minor ticks (2×10¹ 3×10¹ 4×10¹ ...), and the labels overlap.
            ax.xaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(label)
        ax.set_ylabel("test −log p(x) (nats, lower is better)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)
