"""Runs of the ``pyro-vae`` command: a new run's config and data, and loading a run back.

The names in a run's config map to constructors in :mod:`pyro_vae.registry`
only; this module turns the command's options into such a config and loads the
data a run trains and is evaluated on.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from pyro_vae import data
from pyro_vae._checks import check_device
from pyro_vae.models.registry import GUIDES, PRIORS, RUN_KEYS, build_vae
from pyro_vae.models.vae import VAE
from pyro_vae.train.runs import load_run as _load_run

__all__ = [
    "PRIORS",
    "GUIDES",
    "RUN_KEYS",
    "build_vae",
    "model_config",
    "pick_device",
    "check_classes",
    "class_rows",
    "eval_data",
    "train_data",
    "new_run_splits",
    "load_run",
]


def model_config(args: argparse.Namespace) -> dict[str, Any]:
    """The config of a new run, from the model options of `train`, `compare` or `sweep`."""
    info = data.info(args.dataset)
    binarize = args.binarize or ("dynamic" if args.likelihood == "bernoulli" else "none")
    return {
        "dataset": args.dataset,
        "image_shape": list(info.image_shape),
        "prior": args.prior,
        "guide": args.guide,
        "likelihood": args.likelihood,
        "scale": args.scale,
        "learn_scale": args.learn_scale,
        "net": args.net,
        "hidden": args.hidden,
        "latent_dim": args.latent_dim,
        "binarization": binarize,
        "num_flows": args.num_flows,
        "components": args.components,
        "classes": args.classes,
    }


def pick_device(name: str) -> torch.device:
    """The device ``--device`` names: ``auto`` is cuda when there is one, else cpu.

    Raises:
        ValueError: not a device name, or one this machine lacks (the message names
            ``--device`` and lists what is available).
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return check_device("--device", name, also=("auto",))


def check_classes(config: dict[str, Any]) -> list[int] | None:
    """The run's ``classes`` (None: all), checked against the data set's labels."""
    classes = config.get("classes")
    if classes is None:
        return None
    num_classes = data.info(config["dataset"]).num_classes
    if (
        not isinstance(classes, list)
        or not classes
        or not all(isinstance(c, int) and not isinstance(c, bool) for c in classes)
        or not all(0 <= c < num_classes for c in classes)
    ):
        raise ValueError(
            f"classes must be labels from 0 to {num_classes - 1} of {config['dataset']}, "
            f"got {classes!r}"
        )
    return classes


def class_rows(
    config: dict[str, Any], split: str, data_dir: str | None, classes: list[int] | None
) -> torch.Tensor | None:
    """The rows of ``split`` whose label is in ``classes`` (None: every row)."""
    if classes is None:
        return None
    labels = data.load_labels(config["dataset"], split, root=data_dir)
    return torch.isin(labels, torch.tensor(classes)).nonzero().squeeze(1)


def eval_data(
    config: dict[str, Any], split: str, data_dir: str | None, *, all_classes: bool = False
) -> torch.Tensor:
    """A split as the model sees it: one fixed binarisation for a Bernoulli likelihood.

    Only the run's ``classes`` unless ``all_classes``.
    """
    binarize = "static" if config["binarization"] != "none" else None
    x = data.load(config["dataset"], split, binarize=binarize, root=data_dir)
    rows = None if all_classes else class_rows(config, split, data_dir, check_classes(config))
    return x if rows is None else x[rows]


def train_data(config: dict[str, Any], data_dir: str | None, seed: int) -> torch.Tensor:
    """The training split (the run's classes): intensities for dynamic binarisation,
    else as the model sees it."""
    static = "static" if config["binarization"] == "static" else None
    x = data.load(config["dataset"], "train", binarize=static, root=data_dir, seed=seed)
    rows = class_rows(config, "train", data_dir, check_classes(config))
    return x if rows is None else x[rows]


def new_run_splits(
    config: dict[str, Any], data_dir: str | None, seed: int, test_examples: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Training, validation and test data of a new run; with ``test_examples``, the test
    data are a fixed class-balanced subset of that many (``data.subset_rows``, seed 0)."""
    train = train_data(config, data_dir, seed)
    valid = eval_data(config, "valid", data_dir)
    if test_examples is None:
        return train, valid, eval_data(config, "test", data_dir)
    name, classes = config["dataset"], check_classes(config)
    rows = data.subset_rows(name, "test", test_examples, classes=classes, root=data_dir)
    return train, valid, eval_data(config, "test", data_dir, all_classes=True)[rows]


def load_run(path: str, device: torch.device) -> tuple[VAE, dict[str, Any]]:
    """The VAE and config of a checkpoint file given on the command line."""
    if Path(path).is_dir():
        raise ValueError(
            f"{path} is a folder, not a checkpoint file: give its best.pt or checkpoint.pt"
        )
    run = _load_run(path, device=device)
    return run.vae, run.config
