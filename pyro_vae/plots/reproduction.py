"""The figures of recipe runs: one run's anytime test −log p(x) against epochs and training
time, and several runs side by side at equal epochs."""

from __future__ import annotations

import itertools
import math
import os
import textwrap
from collections.abc import Sequence
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from pyro_vae.plots._figure import check_figure_path, save_figure
from pyro_vae.train._history import History

__all__ = ["save_reproduction_curve", "save_anytime_comparison"]

#: One run's anytime curve: its label, the epochs measured, −log p(x) at them and the
#: published value (or ``None``).
Curve = tuple[str, Sequence[int], Sequence[float], float | None]

#: A scored run's final test −log p(x), its standard error and a label for the legend.
FinalScore = tuple[float, float, str]


def save_reproduction_curve(
    history: History,
    paper: float | None,
    paper_label: str,
    title: str,
    path: str | os.PathLike,
    final: FinalScore | None = None,
) -> Path:
    """Plots −``test_log_likelihood`` (nats) against the epoch (log scale) and against
    the cumulative training time in hours, with the published value as a dashed line.

    Arguments:
        final: the scored run's ``(nll, stderr, label)``, drawn as a point with its error
            bar (none where ``stderr`` is NaN, as for one image) at the epoch whose
            parameters were scored, and its hour: the history's ``kept_epoch`` (the best
            epoch where the run validated, else the last).
            The anytime estimates use fewer samples and images, so the two need not meet.

    Raises:
        ValueError: the history holds no anytime measurement, or ``final`` has a
            non-finite score or a negative standard error.
    """
    check_figure_path(path)
    if final is not None and not (math.isfinite(final[0]) and not final[1] < 0):
        raise ValueError(
            "the final score must be finite with a standard error ≥ 0 or NaN, "
            f"got {final[0]} ± {final[1]}"
        )
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
    scored = history.kept_epoch
    at = (scored, hours[history.column("epoch").index(scored)]) if final is not None else ()
    for i, (x, label) in enumerate(((epochs, "epoch"), (times, "training time (hours)"))):
        ax = fig.add_subplot(1, 2, i + 1)
        ax.plot(x, nll, marker=".", label="pyro_vae (anytime estimate)")
        if paper is not None:
            ax.axhline(paper, color="black", linestyle="--", label=f"{paper_label}: {paper:.2f}")
        if final is not None:
            nll_final, stderr, final_label = final
            known = not math.isnan(stderr)
            earlier = f" (epoch {scored})" if scored != history.rows[-1]["epoch"] else ""
            ax.errorbar(
                [at[i]],
                [nll_final],
                yerr=[stderr] if known else None,
                fmt="*",
                markersize=10,
                color="tab:red",
                capsize=3,
                label=f"{final_label}{earlier}: {nll_final:.2f}"
                + (f" ± {stderr:.2f}" if known else ""),
            )
        if i == 0:
            _epoch_axis(ax, max(epochs))
        ax.set_xlabel(label)
        ax.set_ylabel("test −log p(x) (nats, lower is better)")
        ax.grid(alpha=0.3)
    # One legend under both panels: inside either it hid the curve or the axis label.
    handles, labels = fig.axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize="small")
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return save_figure(fig, path)


def save_anytime_comparison(curves: Sequence[Curve], title: str, path: str | os.PathLike) -> Path:
    """Plots several runs' anytime −log p(x) against the epoch (left) and each run's
    difference from the first, the reference, at the epochs both measured (right).

    Each published value is a dashed line in its run's colour; on the right, the
    published difference from the reference's published value, where both exist.

    Arguments:
        curves: ``(label, epochs, nll, paper)`` per run, the reference first; ``epochs``
            increasing and as long as ``nll``.

    Raises:
        ValueError: fewer than two curves, a curve with no point, or epochs and values
            of different lengths.
    """
    check_figure_path(path)
    if len(curves) < 2:
        raise ValueError(f"a comparison needs at least two curves, got {len(curves)}")
    for label, epochs, nll, _ in curves:
        if not epochs or len(epochs) != len(nll):
            raise ValueError(
                f"curve {label!r}: {len(epochs)} epochs and {len(nll)} values; "
                "expected as many, at least one"
            )
    fig = Figure(figsize=(11, 4.2))
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    ref_label, ref_epochs, ref_nll, ref_paper = curves[0]
    reference = dict(zip(ref_epochs, ref_nll, strict=True))
    for i, (label, epochs, nll, paper) in enumerate(curves):
        color = f"C{i}"
        left.plot(epochs, nll, marker=".", markersize=3, color=color, label=label)
        if paper is not None:
            left.axhline(paper, color=color, linestyle="--", linewidth=1)
        if i == 0:
            continue
        shared = [(e, v - reference[e]) for e, v in zip(epochs, nll, strict=True) if e in reference]
        if shared:
            right.plot(*zip(*shared, strict=True), marker=".", markersize=3, color=color,
                       label=label)  # fmt: skip
        if paper is not None and ref_paper is not None:
            right.axhline(paper - ref_paper, color=color, linestyle="--", linewidth=1)
    right.axhline(0, color="black", linewidth=0.8)
    last = max(max(epochs) for _, epochs, _, _ in curves)
    for ax, ylabel in ((left, "test −log p(x) (nats)"), (right, "difference (nats)")):
        _epoch_axis(ax, last)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel + ", lower is better")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    left.set_title("anytime estimates (dashed: the papers)", fontsize="medium")
    right.set_title(textwrap.fill(f"at equal epochs, minus {ref_label}", 50), fontsize="medium")
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


def _epoch_axis(ax: Axes, last: float) -> None:
    """A log-scale epoch axis past 10 epochs, labelled at 1, 2 and 5 × 10^k, written out:
    over less than a decade matplotlib labels its minor ticks (2×10¹ 3×10¹ 4×10¹ ...),
    and the labels overlap."""
    if last <= 10:
        return
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
