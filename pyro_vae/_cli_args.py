"""The ``pyro-vae`` command's arguments: the parser, its option types and defaults."""

from __future__ import annotations

import argparse

from . import _defaults, data, distributed, objectives
from ._cli_train_options import add_budget_options, add_optimizer_options
from ._cli_types import (
    MAX_FLOWS,
    Parser,
    int_list,
    int_up_to,
    learning_rate,
    positive_float,
    positive_int,
    refuse_option,
    seed,
    validated_by,
)
from ._fit_settings import ON_NONFINITE
from .compare import DEFAULT_OBJECTIVES
from .plots import MAX_GRID_IMAGES
from .registry import BINARIZE, LIKELIHOODS, NETS

__all__ = ["make_parser", "LIKELIHOODS", "NETS", "BINARIZE"]


def _add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        default=None,
        metavar="FILE.json",
        help="read options from a JSON object whose keys are this command's long option "
        'names (latent_dim or latent-dim) and values as on the command line, e.g. {"hidden": '
        '[256, 128], "lr": 0.001, "no_progress": true}; options given on the command line win',
    )


def _add_common(p: argparse.ArgumentParser, *, data_dir: bool = True) -> None:
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


def _add_eval(p: argparse.ArgumentParser, num_samples: int, what: str = "test example") -> None:
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


_objective_spec = validated_by(objectives.parse)
_objective_list = validated_by(objectives.parse_list)


def _add_model(
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


def _add_distributed(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dist-timeout",
        type=positive_float,
        default=distributed.DEFAULT_TIMEOUT.total_seconds(),
        metavar="SECONDS",
        help="under torchrun: how long a process waits for a silent one before it stops with "
        "an error (default: %(default)g)",
    )


def make_parser(
    description: str, priors: tuple[str, ...], guides: tuple[str, ...]
) -> argparse.ArgumentParser:
    """The parser of ``pyro-vae``, offering the named priors and guides."""
    parser = Parser(prog="pyro-vae", description=description)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    train = sub.add_parser(
        "train",
        help="train a VAE and write a run folder",
        description="Train a VAE, then evaluate it on the test split and "
        "write figures into the run folder.",
    )
    _add_model(train, priors, guides, resume=True)
    train.add_argument(
        "--objective",
        type=_objective_spec,
        default=objectives.DEFAULT_OBJECTIVE,
        help="training objective, name[:option=value,...], e.g. iwae:k=5; one of "
        f"{', '.join(objectives.OBJECTIVES)} (default: {objectives.DEFAULT_OBJECTIVE})",
    )
    train.add_argument(
        "--num-particles",
        type=positive_int,
        default=None,
        help="samples of z per example in the objective (default: the spec's k, else 1)",
    )
    train.add_argument(
        "--patience",
        type=positive_int,
        default=None,
        help="stop after this many epochs without validation improvement",
    )
    train.add_argument("--out", default="runs/latest", help="run folder (default: runs/latest)")
    train.add_argument(
        "--resume",
        action="store_true",
        help="continue the run saved in --out exactly where it stopped, with the model, data, "
        "objective, batch size and seed it was saved with (an option given again must equal "
        "the saved value); --epochs, --lr, --patience, --checkpoint-every, --on-nonfinite and "
        "--clip-grad-norm may change, and the change is recorded in config.json",
    )
    train.add_argument(
        "--checkpoint-every",
        type=positive_int,
        default=None,
        help="also save checkpoint.pt every N steps within an epoch (default: at epoch ends)",
    )
    train.add_argument(
        "--on-nonfinite",
        choices=ON_NONFINITE,
        default=_defaults.ON_NONFINITE,
        help="a step with a NaN or infinite loss or gradient is never applied; stop the run, "
        "or roll back to the last checkpoint and go on with fresh draws "
        f"(default: {_defaults.ON_NONFINITE}; with --resume, the run's own)",
    )
    train.add_argument(
        "--clip-grad-norm",
        type=positive_float,
        default=None,
        help="clip the gradients' joint 2-norm to this before each update (default: no clipping)",
    )
    add_optimizer_options(train)
    add_budget_options(train)
    train.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    train.add_argument("--no-progress", action="store_true", help="no progress output")
    _add_config(train)
    _add_common(train)
    _add_eval(train, 1000)
    _add_distributed(train)

    ev = sub.add_parser(
        "evaluate",
        help="evaluate a checkpoint",
        description="Print the ELBO and importance-sampled log p(x) of a "
        "checkpoint on a data split.",
    )
    ev.add_argument("checkpoint", help="checkpoint.pt or best.pt of a run")
    ev.add_argument(
        "--split", default="test", choices=data.SPLITS, help="data split (default: test)"
    )
    _add_common(ev)
    _add_eval(ev, 1000, "example of --split")
    _add_distributed(ev)

    sm = sub.add_parser(
        "sample",
        help="draw samples from a checkpoint",
        description="Write a grid of E[x|z], z ~ p(z), from a checkpoint.",
    )
    sm.add_argument("checkpoint", help="checkpoint.pt or best.pt of a run")
    sm.add_argument(
        "--num",
        type=int_up_to(MAX_GRID_IMAGES, " (one grid; for more, run again with another --seed)"),
        default=64,
        help=f"images in the grid, at most {MAX_GRID_IMAGES} (default: 64)",
    )
    sm.add_argument(
        "--out", default=None, help="PNG path (default: samples-<seed>.png beside the checkpoint)"
    )
    _add_common(sm, data_dir=False)

    cmp = sub.add_parser(
        "compare",
        help="train one model under several objectives and compare them",
        description="Train the same model from the same initial weights, seed and data "
        "order once per objective, then write a table (CSV, Markdown) and figures of "
        "test bounds, log p(x), ELBO terms, active units, time, and gradient variance "
        "and signal-to-noise ratio against K.",
    )
    cmp.add_argument(
        "--objectives",
        type=_objective_list,
        default=DEFAULT_OBJECTIVES,
        help=f"comma-separated specs name[:option=value,...] (default: {DEFAULT_OBJECTIVES})",
    )
    _add_model(cmp, priors, guides)
    cmp.add_argument(
        "--bound-ks",
        type=int_list("1,5,50,500"),
        default=[1, 5, 50, 500],
        help="K of the test bounds E[IWAE_K] (default: 1,5,50,500)",
    )
    cmp.add_argument(
        "--gradient-ks",
        type=int_list("1,5,50"),
        default=[1, 5, 50],
        help="K of the gradient statistics (default: 1,5,50)",
    )
    cmp.add_argument(
        "--gradient-draws",
        type=positive_int,
        default=100,
        help="gradient estimates per statistic (default: 100)",
    )
    cmp.add_argument("--out", default="runs/compare", help="output folder (default: runs/compare)")
    cmp.add_argument("--overwrite", action="store_true", help="replace a comparison in --out")
    cmp.add_argument("--no-progress", action="store_true", help="no progress output")
    _add_config(cmp)
    _add_common(cmp)
    _add_eval(cmp, 5000)
    # Imported here: the analysis commands' module builds on this one's option groups.
    from ._cli_analysis_args import add_analysis_commands, add_classes_option, add_test_examples
    from ._cli_reproduce import add_reproduce_command

    add_classes_option(train, anomaly=True)
    add_classes_option(cmp)
    add_test_examples(cmp)
    parser.commands = {"train": train, "evaluate": ev, "sample": sm, "compare": cmp}
    parser.commands |= add_analysis_commands(sub, priors, guides)
    parser.commands["reproduce"] = add_reproduce_command(sub)
    return parser
