"""What the experiments of the lab share: the check of their budget, a warm-up, tables."""

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

from pyro_vae._checks import check_device, check_positive_int, check_seed
from pyro_vae.infer import objectives
from pyro_vae.models.vae import VAE
from pyro_vae.train._setup import check_learning_rate

__all__ = ["format_number", "write_csv", "warm_up", "check_budget"]


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


def check_budget(
    epochs: object,
    batch_size: object,
    lr: object,
    seed: object,
    device: object,
    eval_batch_size: object,
) -> None:
    """The training budget and set-up of an experiment, checked before any work."""
    check_positive_int("epochs", epochs)
    check_positive_int("batch_size", batch_size)
    check_learning_rate(lr)
    check_seed(seed)
    if eval_batch_size is not None:
        check_positive_int("eval_batch_size", eval_batch_size)
    if device is not None:
        check_device("device", device)
