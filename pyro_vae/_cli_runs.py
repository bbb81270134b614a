"""Runs of the ``pyro-vae`` command: the model a run's config names, and loading it back.

A run's ``config.json`` (and every checkpoint's ``config``) holds the names and
sizes the model was built from; this is the only place that maps those names to
constructors.
"""

from __future__ import annotations

import argparse
import math
from typing import Any

import torch
from torch import nn

from . import checkpoints, data, guides, likelihoods, nets, priors
from ._cli_args import BINARIZE, LIKELIHOODS, NETS
from ._cli_checks import check_run_config
from .vae import VAE

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

PRIORS = ("standard-normal", "learned-normal", "mixture", "vamp", "flow")
GUIDES = ("diagonal-normal", "full-normal", "iaf", "coupling")
# What `train` saves in a run's config, and `evaluate` and `sample` rebuild the model from.
RUN_KEYS = (
    "dataset",
    "image_shape",
    "prior",
    "guide",
    "likelihood",
    "scale",
    "learn_scale",
    "net",
    "hidden",
    "latent_dim",
    "binarization",
)


def _likelihood(config: dict[str, Any], net: nn.Module) -> likelihoods.Likelihood:
    name = config["likelihood"]
    if name == "bernoulli":
        return likelihoods.Bernoulli(net)
    if name == "continuous-bernoulli":
        return likelihoods.ContinuousBernoulli(net)
    scale = {"scale": config["scale"], "learn_scale": config["learn_scale"]}
    if name == "gaussian":
        return likelihoods.Gaussian(net, **scale)
    if name == "laplace":
        return likelihoods.Laplace(net, **scale)
    if name == "discretized-logistic":
        levels = data.info(config["dataset"]).num_levels
        return likelihoods.DiscretizedLogistic(net, num_bins=levels, **scale)
    raise ValueError(f"unknown likelihood {name!r}; choose one of: {', '.join(LIKELIHOODS)}")


def _guide(config: dict[str, Any], net: nn.Module, latent: int) -> guides.Guide:
    name, flows = config["guide"], int(config.get("num_flows", 2))
    if name == "diagonal-normal":
        return guides.DiagonalNormal(net, latent)
    if name == "full-normal":
        return guides.FullCovarianceNormal(net, latent)
    if name == "iaf":
        return guides.InverseAutoregressiveFlow(net, latent, num_flows=flows)
    return guides.AffineCouplingFlow(net, latent, num_flows=flows)


def _prior(config: dict[str, Any], guide: guides.Guide, latent: int) -> priors.Prior:
    name, components = config["prior"], config.get("components")
    if name == "standard-normal":
        return priors.StandardNormal(latent)
    if name == "learned-normal":
        return priors.LearnedNormal(latent)
    if name == "mixture":
        return priors.MixtureOfGaussians(latent, num_components=int(components or 10))
    if name == "vamp":
        return priors.VampPrior(guide, num_pseudo_inputs=int(components or 500))
    return priors.FlowPrior(latent, num_flows=int(config.get("num_flows", 2)))


def build_vae(config: dict[str, Any]) -> VAE:
    """Builds the VAE that a run's config names.

    Keys: ``image_shape`` (C, H, W), ``prior``, ``guide``, ``likelihood``, ``net``
    (``mlp`` or ``conv``), ``hidden`` (MLP widths), ``latent_dim``, and for the
    Gaussian, Laplace and discretized-logistic likelihoods ``scale`` and ``learn_scale``;
    optionally ``num_flows`` (flow guides and prior, default 2) and ``components``
    (mixture components, default 10, or VampPrior pseudo-inputs, default 500).

    Raises:
        TypeError, ValueError: a key is missing or has a value of the wrong type or range.
    """
    choices = {"dataset": data.DATASETS, "prior": PRIORS, "guide": GUIDES}
    choices |= {"likelihood": LIKELIHOODS, "net": NETS, "binarization": BINARIZE}
    check_run_config(config, RUN_KEYS, choices)
    latent, shape = int(config["latent_dim"]), tuple(config["image_shape"])
    size = math.prod(shape)
    if config["net"] == "mlp":
        hidden = list(config["hidden"])
        encoder, decoder = nets.MLP(size, hidden), nets.MLP(latent, hidden[::-1], size)
    else:
        encoder, decoder = nets.ConvEncoder(shape), nets.ConvDecoder(latent, shape)
    guide = _guide(config, encoder, latent)
    return VAE(_prior(config, guide, latent), _likelihood(config, decoder), guide)


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
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise ValueError(f"--device must be auto, cpu, cuda or cuda:N, got {name!r}") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine")
    return device


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
    """Training, validation and test data of a new run (the first ``test_examples`` of test)."""
    train = train_data(config, data_dir, seed)
    valid = eval_data(config, "valid", data_dir)
    return train, valid, eval_data(config, "test", data_dir)[:test_examples]


def load_run(path: str, device: torch.device) -> tuple[VAE, dict[str, Any]]:
    state = checkpoints.load(path, map_location=device)
    config = state.get("config", {})
    config = config if isinstance(config, dict) else {}
    missing = set(RUN_KEYS) - set(config)
    if missing:
        raise ValueError(
            f"{path} was not written by `pyro-vae train`: its config lacks "
            f"{', '.join(sorted(missing))}"
        )
    try:
        vae = build_vae(config).to(device)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{path} names a model that cannot be built: {e}") from e
    try:
        vae.load_state_dict(state["params"])
    except (RuntimeError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"{path}: its parameters do not fit the model its config names") from e
    vae.eval()
    return vae, config
