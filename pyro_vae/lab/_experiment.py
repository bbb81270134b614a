"""What the experiments of the lab share: their training options, the check of their data,
one training run, a warm-up, tables."""

from __future__ import annotations

import copy
import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyro
import pyro.infer
import pyro.optim
import torch

from pyro_vae.infer import objectives
from pyro_vae.models._data_checks import check_vae_data
from pyro_vae.models.vae import VAE
from pyro_vae.train._fit import History, RunControls, fit_checked
from pyro_vae.train._setup import warn_of_fixed_scale
from pyro_vae.train.options import FitOptions, check_combination

__all__ = [
    "format_number", "write_csv", "warm_up", "experiment_options", "check_splits", "train_one",
]  # fmt: skip


def format_number(value: Any) -> str:
    if isinstance(value, float):
        return (
            "nan" if math.isnan(value) else f"{value:.2f}" if abs(value) >= 0.01 else f"{value:.3g}"
        )
    return str(value)


def write_csv(path: Path, columns: Sequence[str], rows: list[dict[str, Any]]) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([row[c] for c in columns])
    tmp.replace(path)
    return path


def warm_up(vae: VAE, x: torch.Tensor) -> None:
    """One throwaway training step on a copy of ``vae``.

    The first optimizer step in a process pays about a second of one-time setup
    inside torch; without this the first objective's time per epoch would carry it.
    """
    scratch = copy.deepcopy(vae)
    optim = pyro.optim.Adam({"lr": 0.0})
    pyro.infer.SVI(scratch.model, scratch.guide, optim, objectives.make()).step(x[:2])
    pyro.clear_param_store()


def experiment_options(options: FitOptions, valid: torch.Tensor | None) -> FitOptions:
    """The options of an experiment's runs: ``options`` with fit's defaults, except that
    the seed defaults to 0 (every run starts alike) and the validation loss to the
    closed-form-KL ELBO (comparable across training objectives)."""
    lab_defaults = {"seed": 0, "valid_objective": "analytic-kl"}
    unset = {name: value for name, value in lab_defaults.items() if getattr(options, name) is None}
    options = options.replace(**unset).fresh()
    check_combination(options, valid, None)
    return options


def check_splits(vae: VAE, splits: dict[str, torch.Tensor | None], binarize: bool) -> None:
    """Each split of an experiment's data against ``vae``, once for all its runs.

    The dtype, device and event shape of the VAE, finite values in the likelihood's
    support or, with ``binarize``, intensities in [0, 1] (the training batches are
    binarised afresh, the held-out splits once). Warns, as ``fit`` does, of
    training data far outside [0, 1] under a likelihood of fixed scale.
    """
    for name, x in splits.items():
        if x is None:
            continue
        check_vae_data(vae, x, name, support=not binarize)
        if binarize and not bool(((x >= 0) & (x <= 1)).all()):
            raise ValueError(
                f"binarize=True draws Bernoulli(intensity): {name} must hold intensities in "
                f"[0, 1], found min {x.min().item():g}, max {x.max().item():g}"
            )
    train = splits.get("train")
    if train is not None:
        warn_of_fixed_scale(vae.likelihood, train)


def train_one(
    vae: VAE,
    train: torch.Tensor,
    valid: torch.Tensor | None,
    options: FitOptions,
    controls: RunControls,
) -> History:
    """One run of an experiment: ``fit`` on data that :func:`check_splits` has checked."""
    pyro.clear_param_store()
    return fit_checked(
        (vae, vae.model, vae.guide), train, valid, options, controls, inputs_checked=True
    )
