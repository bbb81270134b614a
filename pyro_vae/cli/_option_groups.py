"""Option groups that several ``pyro-vae`` commands share: config, data, evaluation, model."""

from __future__ import annotations

import argparse

from pyro_vae import _defaults, data
from pyro_vae.cli._types import (
    MAX_FLOWS,
    int_list,
    int_up_to,
    learning_rate,
    positive_float,
    positive_int,
    refuse_option,
    seed,
)
from pyro_vae.models.registry import BINARIZE, LIKELIHOODS, NETS
from pyro_vae.train import distributed

__all__ = ["add_config", "add_common", "add_eval", "add_model", "add_distributed"]


def add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        default=None,
        metavar="FILE.json",
        help="read options from a JSON object whose keys are this command's long option "
        'names (latent_dim or latent-dim) and values as on the command line, e.g. {"hidden": '
        '[256, 128], "lr": 0.001, "no_progress": true}; options given on the command line win',
    )


def add_common(p: argparse.ArgumentParser, *, data_dir: bool = True) -> None:
    """``--device``, ``--data-dir`` (unless not ``data_dir``: the command reads no data) and
    ``--seed``."""
    p.add_argument(
        "--device",
        default="auto",
        help="cpu, cuda, cuda:N or mps, where this machine has it; auto picks cuda when "
        "available (default: auto)",
    )
    if data_dir:
        p.add_argument(
            "--data-dir",
            default=None,
            help="folder (or mnist.npz path) holding full MNIST; "
            "default: $PYRO_VAE_DATA, then ~/.cache/pyro_vae",
        )
    else:
        refuse_option(p, "--data-dir", "it reads no data, only the checkpoint; leave it out")
    p.add_argument("--seed", type=seed, default=0, help="random seed, 0 to 2**32 - 1 (default: 0)")


def add_eval(p: argparse.ArgumentParser, num_samples: int, what: str = "test example") -> None:
    """``--num-samples`` and ``--eval-batch-size``; ``what`` names one evaluated example."""
    p.add_argument(
        "--num-samples",
        type=positive_int,
        default=num_samples,
        help=f"K, importance samples per {what} for log p(x) (default: {num_samples})",
    )
    p.add_argument(
        "--eval-batch-size",
        type=positive_int,
        default=100,
        help="examples per evaluation pass (default: 100)",
    )


def add_model(
    p: argparse.ArgumentParser,
    priors: tuple[str, ...],
    guides: tuple[str, ...],
    *,
    resume: bool = False,
    latent_dim: bool = True,
) -> None:
    """The options that choose the data, the model and the training budget; ``resume``:
    the command has ``--resume`` (``--lr`` then defaults to the run's own); without
    ``latent_dim``, no ``--latent-dim`` (the command sets the latent size its own way)."""
    p.add_argument(
        "--dataset",
        default=data.DEFAULT_DATASET,
        choices=data.DATASETS,
        help=f"data set (default: {data.DEFAULT_DATASET}, embedded, no download)",
    )
    p.add_argument(
        "--prior",
        default="standard-normal",
        choices=priors,
        help="prior p(z) (default: standard-normal)",
    )
    p.add_argument(
        "--guide",
        default="diagonal-normal",
        choices=guides,
        help="guide q(z|x) (default: diagonal-normal)",
    )
    p.add_argument(
        "--likelihood",
        default="bernoulli",
        choices=LIKELIHOODS,
        help="likelihood p(x|z) (default: bernoulli)",
    )
    p.add_argument(
        "--scale",
        type=positive_float,
        default=_defaults.LIKELIHOOD_SCALE,
        help="scale of the gaussian, laplace or discretized-logistic likelihood, "
        f"initial value if learned (default: {_defaults.LIKELIHOOD_SCALE})",
    )
    p.add_argument("--learn-scale", action="store_true", help="learn the likelihood's scale")
    p.add_argument(
        "--num-flows",
        type=int_up_to(MAX_FLOWS),
        default=_defaults.NUM_FLOWS,
        help=f"steps of the iaf and coupling guides and of the flow prior, 1 to {MAX_FLOWS} "
        f"(default: {_defaults.NUM_FLOWS})",
    )
    p.add_argument(
        "--components",
        type=positive_int,
        default=None,
        help=f"components of the mixture prior (default: {_defaults.MIXTURE_COMPONENTS}) or "
        f"pseudo-inputs of the vamp prior (default: {_defaults.PSEUDO_INPUTS})",
    )
    p.add_argument(
        "--net", default="mlp", choices=NETS, help="encoder/decoder networks (default: mlp)"
    )
    p.add_argument(
        "--hidden",
        type=int_list("512,256"),
        default=[512, 256],
        help="MLP hidden widths, encoder order; the decoder mirrors them (default: 512,256)",
    )
    if latent_dim:
        p.add_argument(
            "--latent-dim", type=positive_int, default=16, help="size of z (default: 16)"
        )
    _add_budget(p, resume=resume)


def add_distributed(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dist-timeout",
        type=positive_float,
        default=distributed.DEFAULT_TIMEOUT.total_seconds(),
        metavar="SECONDS",
        help="under torchrun: how long a process waits for a silent one before it stops with "
        "an error (default: %(default)g)",
    )


def _add_budget(p: argparse.ArgumentParser, *, resume: bool) -> None:
    """Epochs, batch size, learning rate and binarisation: how the model is trained."""
    own = "; with --resume, the run's own" if resume else ""
    p.add_argument(
        "--epochs",
        type=positive_int,
        default=_defaults.DEMO_EPOCHS,
        help=f"number of epochs (default: {_defaults.DEMO_EPOCHS}{own})",
    )
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=_defaults.BATCH_SIZE,
        help=f"examples per step (default: {_defaults.BATCH_SIZE})",
    )
    p.add_argument(
        "--lr",
        type=learning_rate,
        default=None,
        help=f"Adam learning rate (default: {_defaults.LEARNING_RATE:g}{own})",
    )
    p.add_argument(
        "--binarize",
        choices=BINARIZE,
        default=None,
        help="dynamic: fresh Bernoulli draw of the training images each "
        "step; static: one fixed draw; none: intensities "
        "(default: dynamic for bernoulli, else none)",
    )
