"""Arguments of the ``pyro-vae`` commands that look inside a trained model.

``plot``, ``gaps``, ``anomaly`` and ``denoise`` read a run's checkpoint; ``sweep``
trains one model per latent size. Their handlers are in :mod:`pyro_vae.cli._analysis`.
"""

from __future__ import annotations

import argparse
from typing import Any

from pyro_vae import data
from pyro_vae.cli._option_groups import add_common, add_config, add_model
from pyro_vae.cli._types import int_list, int_or_none, positive_int, refuse_option

__all__ = [
    "FIGURES",
    "CORRUPTIONS",
    "add_analysis_commands",
    "add_classes_option",
    "add_test_examples",
]

#: the figures of `pyro-vae plot`, in the order they are drawn
FIGURES = (
    "samples",
    "reconstructions",
    "interpolations",
    "traversals",
    "manifold",
    "latent-map",
    "aggregate-posterior",
    "units",
)
CORRUPTIONS = ("gaussian", "salt-and-pepper", "dropout", "occlusion")


def _choice_list(choices: tuple[str, ...], everything: str | None = None):
    """An argparse type for comma-separated names from ``choices`` (or ``everything``)."""

    def parse(text: str) -> list[str]:
        if everything is not None and text == everything:
            return list(choices)
        names = [name.strip() for name in text.split(",")]
        unknown = [name for name in names if name not in choices]
        if unknown or not names:
            allowed = ", ".join(choices) + (f", or {everything}" if everything else "")
            raise argparse.ArgumentTypeError(
                f"unknown name {', '.join(map(repr, unknown))}; choose from {allowed}"
            )
        return list(dict.fromkeys(names))

    return parse


def _count(text: str) -> int:
    value = int_or_none(text)
    if value is None or not 0 <= value <= 1000:
        raise argparse.ArgumentTypeError(f"expected an integer from 0 to 1000, got {text!r}")
    return value


def _levels(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if not values or not all(0 <= v <= 1 for v in values):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated levels in [0, 1] like 0.1,0.3, got {text!r}"
        )
    return values


def _classes(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        values = [-1]
    if any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated class labels like 0,1,2, got {text!r}"
        )
    return sorted(set(values))


def add_classes_option(p: argparse.ArgumentParser, *, anomaly: bool = False) -> None:
    """``--classes``; with ``anomaly``, its help says what `pyro-vae anomaly` makes of it."""
    note = "; `pyro-vae anomaly` then scores the other classes as anomalies" if anomaly else ""
    p.add_argument(
        "--classes",
        type=_classes,
        default=None,
        help=f"train, validate and test on these class labels only, e.g. 0,1,2,3,4 "
        f"(default: all){note}",
    )


def add_test_examples(p: argparse.ArgumentParser) -> None:
    """``--test-examples``: a fixed class-balanced subset of the test split."""
    p.add_argument(
        "--test-examples",
        type=positive_int,
        default=None,
        help="evaluate on N test examples, a fixed class-balanced subset, the same for "
        "every --seed, never the first N (the test split may be stored in label order) "
        "(default: all)",
    )


def _add_checkpoint(p: argparse.ArgumentParser, examples: int, what: str) -> None:
    p.add_argument("checkpoint", help="checkpoint.pt or best.pt of a run")
    p.add_argument(
        "--split", default="test", choices=data.SPLITS, help="data split (default: test)"
    )
    p.add_argument(
        "--examples",
        type=positive_int,
        default=examples,
        help=f"{what}: a class-balanced subset of the split drawn with --seed, never "
        f"its first rows (default: {examples})",
    )
    p.add_argument(
        "--out",
        default=None,
        help="output folder (default: the checkpoint's run folder)",
    )
    add_common(p)


def add_analysis_commands(
    sub: argparse._SubParsersAction, priors: tuple[str, ...], guides: tuple[str, ...]
) -> dict[str, argparse.ArgumentParser]:
    """Adds ``plot``, ``gaps``, ``anomaly``, ``denoise`` and ``sweep``; returns them by name."""
    return {
        "plot": _add_plot(sub),
        "gaps": _add_gaps(sub, priors, guides),
        "anomaly": _add_anomaly(sub),
        "denoise": _add_denoise(sub),
        "sweep": _add_sweep(sub, priors, guides),
    }


def _add_plot(sub: Any) -> argparse.ArgumentParser:
    """``pyro-vae plot``."""
    plot = sub.add_parser(
        "plot",
        help="figures of a trained model's latent space",
        description="Draw figures of what a trained model learned: samples, reconstructions, "
        "interpolations, latent traversals, the decoded 2-D manifold (latent size 2), latent "
        "maps coloured by label (PCA and t-SNE), the aggregate posterior against the prior, "
        "and the KL and activity of each latent unit.",
    )
    _add_checkpoint(plot, 1000, "examples of the split used for the figures")
    plot.add_argument(
        "--figures",
        type=_choice_list(FIGURES, "all"),
        default=list(FIGURES),
        help=f"comma-separated figures from {', '.join(FIGURES)}, or all (default: all; "
        "all skips the manifold unless the latent size is 2)",
    )
    return plot


def _add_gaps(
    sub: Any, priors: tuple[str, ...], guides: tuple[str, ...]
) -> argparse.ArgumentParser:
    """``pyro-vae gaps``."""
    gaps = sub.add_parser(
        "gaps",
        help="split log p(x) - ELBO into approximation and amortisation gaps",
        description="Decompose the inference gap log p(x) - ELBO on test examples into the "
        "approximation gap (the best guide of the family for each example alone) and the "
        "amortisation gap (the price of one encoder for all examples), Cremer et al. 2018; "
        "optionally compare q(z|x) with NUTS samples of the true posterior.",
    )
    _add_checkpoint(gaps, 100, "test examples whose gaps are computed")
    gaps.add_argument(
        "--num-samples",
        type=positive_int,
        default=5000,
        help="K, importance samples per example for log p(x) (default: 5000)",
    )
    gaps.add_argument(
        "--steps",
        type=positive_int,
        default=None,
        help="optimisation steps of the per-example guides (default: the library's)",
    )
    gaps.add_argument(
        "--nuts",
        type=_count,
        default=3,
        help="examples whose posterior is sampled by NUTS for comparison, 0 for none (default: 3)",
    )
    return gaps


def _add_anomaly(sub: Any) -> argparse.ArgumentParser:
    """``pyro-vae anomaly``."""
    anomaly = sub.add_parser(
        "anomaly",
        help="score examples by log-likelihood and report ROC AUC",
        description="Score the examples of a split by -log p(x) (or -ELBO) under a trained "
        "model; the classes it was trained on are normal, the others anomalous. Writes the "
        "ROC AUC, per-class mean scores and a figure of score histograms and the ROC curve.",
    )
    _add_checkpoint(anomaly, 1000, "examples of the split scored")
    anomaly.add_argument(
        "--normal-classes",
        type=_classes,
        default=None,
        help="the class labels counted as normal (default: the run's --classes)",
    )
    anomaly.add_argument(
        "--score",
        choices=("log-likelihood", "elbo"),
        default="log-likelihood",
        help="-log p(x) by importance sampling, or -ELBO (default: log-likelihood)",
    )
    anomaly.add_argument(
        "--num-samples",
        type=positive_int,
        default=100,
        help="K, importance samples per example (default: 100)",
    )
    return anomaly


def _add_denoise(sub: Any) -> argparse.ArgumentParser:
    """``pyro-vae denoise``."""
    denoise = sub.add_parser(
        "denoise",
        help="corrupt inputs, reconstruct them, report the error against the clean input",
        description="Corrupt examples (Gaussian noise, salt and pepper, dropped pixels, an "
        "occluding square), reconstruct them through the trained model and report the mean "
        "squared error against the clean input, before and after. denoising.png shows the "
        "first 8 of the class-balanced --examples, one per class up to 8 classes.",
    )
    _add_checkpoint(denoise, 1000, "examples of the split corrupted")
    denoise.add_argument(
        "--corruptions",
        type=_choice_list(CORRUPTIONS, "all"),
        default=list(CORRUPTIONS),
        help=f"comma-separated kinds from {', '.join(CORRUPTIONS)}, or all (default: all)",
    )
    denoise.add_argument(
        "--levels",
        type=_levels,
        default=[0.1, 0.25, 0.5],
        help="corruption levels in [0, 1]: noise sd or fraction of pixels (default: 0.1,0.25,0.5)",
    )
    return denoise


def _add_sweep(
    sub: Any, priors: tuple[str, ...], guides: tuple[str, ...]
) -> argparse.ArgumentParser:
    """``pyro-vae sweep``."""
    sweep = sub.add_parser(
        "sweep",
        help="train one model per latent size and compare them",
        description="Train the same model with each latent size (same seed, data order and "
        "budget), then write a table and a figure of held-out log p(x), ELBO, KL and active "
        "units against the latent size.",
    )
    sweep.add_argument(
        "--latent-dims",
        type=int_list("2,4,8,16"),
        default=[2, 4, 8, 16, 32, 64],
        help="latent sizes to train (default: 2,4,8,16,32,64)",
    )
    add_model(sweep, priors, guides, latent_dim=False)
    refuse_option(
        sweep,
        "--latent-dim",
        "it trains one model per size in --latent-dims; give --latent-dims {value}",
    )
    add_classes_option(sweep)
    sweep.add_argument("--out", default="runs/sweep", help="output folder (default: runs/sweep)")
    sweep.add_argument("--overwrite", action="store_true", help="replace a sweep in --out")
    sweep.add_argument("--no-progress", action="store_true", help="no progress output")
    sweep.add_argument(
        "--num-samples",
        type=positive_int,
        default=1000,
        help="K, importance samples per test example for log p(x) (default: 1000)",
    )
    add_test_examples(sweep)
    add_config(sweep)
    add_common(sweep)
    return sweep
