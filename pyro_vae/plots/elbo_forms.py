"""A figure of the ELBO's three forms: they agree, the gap shrinks, the layers' shares."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from pyro_vae._labelled import check_labelled
from pyro_vae.infer.evaluate import ElboForms
from pyro_vae.plots._figure import check_figure_path, save_figure

__all__ = ["save_elbo_forms"]

_FORMS = (
    ("form1", "(1) log p(x) − KL(q ‖ p(z|x))", "tab:blue", "o"),
    ("form2", "(2) E_q[log p(x|z)] − KL(q ‖ p(z))", "tab:orange", "s"),
    ("form3", "(3) E_q[log p(x,z) − log q(z|x)]", "tab:green", "^"),
)
_LAYER_COLOURS = ("tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan")


def _mean(values: torch.Tensor, stderr: torch.Tensor) -> tuple[float, float]:
    """The mean over examples and its Monte Carlo standard error, √(Σ s.e.²) / N."""
    n = len(values)
    return values.mean().item(), stderr.pow(2).sum().sqrt().item() / n


def save_elbo_forms(results: Mapping[str, ElboForms], path: str | os.PathLike) -> Path:
    """The ELBO's three forms for one model or several, averaged over the examples.

    Left: for each model, the three forms (means with ±2 Monte Carlo standard errors,
    which should overlap) and the importance-sampled log p(x) above them. Middle:
    the gap log p(x) − ELBO = KL(q(z|x) ‖ p(z|x)) of each model, which a richer guide
    shrinks. Right: the prior matching KL(q(z|x) ‖ p(z)) of each model, stacked by
    latent layer (one bar segment per site), with the reconstruction term written
    above it.

    Arguments:
        results: label -> :class:`~pyro_vae.evaluate.ElboForms`, one per model.
        path: the image file to write.
    """
    results = check_labelled("results", results, ElboForms)
    check_figure_path(path)
    fig = Figure(figsize=(13, 4.4), layout="constrained")
    forms_ax, gap_ax, layers_ax = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1.3, 1, 1]})
    _forms(forms_ax, results)
    _gaps(gap_ax, results)
    _layers(layers_ax, results)
    return save_figure(fig, path)


def _label_models(ax: Any, results: dict[str, ElboForms]) -> None:
    """The models' labels under the bars, slanted so that long ones do not collide."""
    ax.set_xticks(np.arange(len(results)), list(results), fontsize=8, rotation=20, ha="right")


def _forms(ax: Any, results: dict[str, ElboForms]) -> None:
    offsets = np.linspace(-0.2, 0.2, len(_FORMS))
    for i, forms in enumerate(results.values()):
        stderr = {
            "form1": forms.log_px_stderr.pow(2) + forms.posterior_kl_stderr.pow(2),
            "form2": forms.reconstruction_stderr.pow(2) + forms.prior_kl_stderr.pow(2),
            "form3": forms.expected_log_weight_stderr.pow(2),
        }
        for offset, (name, label, colour, marker) in zip(offsets, _FORMS, strict=True):
            mean, se = _mean(getattr(forms, name), stderr[name].sqrt())
            ax.errorbar(i + offset, mean, yerr=2 * se, color=colour, marker=marker,
                        capsize=3, linestyle="none", label=label if i == 0 else None)  # fmt: skip
        log_px, _ = _mean(forms.log_px, forms.log_px_stderr)
        ax.hlines(log_px, i - 0.3, i + 0.3, color="black", linewidth=1.5,
                  label="log p(x), importance sampled" if i == 0 else None)  # fmt: skip
    _label_models(ax, results)
    ax.set_ylabel("nats per example (mean ± 2 s.e.)")
    ax.set_title("the three forms agree")
    ax.margins(y=0.3)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="lower center")


def _gaps(ax: Any, results: dict[str, ElboForms]) -> None:
    for i, forms in enumerate(results.values()):
        gap, se = _mean(forms.posterior_kl, forms.posterior_kl_stderr)
        ax.bar(i, gap, color="tab:red", width=0.6)
        ax.errorbar(i, gap, yerr=2 * se, color="black", capsize=3)
        ax.annotate(f"{gap:.2f}", (i, gap + 2 * se), xytext=(0, 3), textcoords="offset points",
                    ha="center", fontsize=8)  # fmt: skip
    _label_models(ax, results)
    ax.set_ylabel("KL(q(z|x) ‖ p(z|x)) = log p(x) − ELBO (nats)")
    ax.set_title("the gap")
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.margins(y=0.15)
    ax.grid(axis="y", alpha=0.3)


def _layers(ax: Any, results: dict[str, ElboForms]) -> None:
    seen: set[str] = set()
    for i, forms in enumerate(results.values()):
        bottom = 0.0
        for k, (site, term) in enumerate(forms.layers.items()):
            value, _ = _mean(term, forms.layers_stderr[site])
            colour = _LAYER_COLOURS[k % len(_LAYER_COLOURS)]
            label = f"layer {k + 1}" if f"layer {k + 1}" not in seen else None
            seen.add(f"layer {k + 1}")
            ax.bar(i, value, bottom=bottom, color=colour, width=0.6, label=label)
            ax.annotate(site, (i, bottom + value / 2), ha="center", va="center", fontsize=7,
                        color="white")  # fmt: skip
            bottom += value
        reconstruction, _ = _mean(forms.reconstruction, forms.reconstruction_stderr)
        text = f"rec. {reconstruction:.1f}" if math.isfinite(reconstruction) else ""
        ax.annotate(text, (i, bottom), xytext=(0, 3), textcoords="offset points",
                    ha="center", fontsize=8)  # fmt: skip
    _label_models(ax, results)
    ax.set_ylabel("KL(q(z|x) ‖ p(z)) by layer (nats)")
    ax.set_title("prior matching, per layer")
    ax.margins(y=0.15)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7)
