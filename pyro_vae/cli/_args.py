"""The ``pyro-vae`` command's arguments: the parser, its option types and defaults."""

from __future__ import annotations

import argparse
from typing import Any

from pyro_vae import _defaults, data
from pyro_vae.cli._analysis_args import (
    add_analysis_commands,
    add_classes_option,
    add_test_examples,
)
from pyro_vae.cli._option_groups import (
    add_common,
    add_config,
    add_distributed,
    add_eval,
    add_model,
)
from pyro_vae.cli._reproduce import add_reproduce_command
from pyro_vae.cli._train_options import add_budget_options, add_optimizer_options
from pyro_vae.cli._types import (
    Parser,
    int_list,
    int_up_to,
    positive_float,
    positive_int,
    validated_by,
)
from pyro_vae.infer import objectives
from pyro_vae.lab.compare import DEFAULT_OBJECTIVES
from pyro_vae.models.registry import BINARIZE, LIKELIHOODS, NETS
from pyro_vae.plots import MAX_GRID_IMAGES
from pyro_vae.train.options import ON_NONFINITE

__all__ = ["make_parser", "LIKELIHOODS", "NETS", "BINARIZE"]

_objective_spec = validated_by(objectives.parse)
_objective_list = validated_by(objectives.parse_list)


def make_parser(
    description: str, priors: tuple[str, ...], guides: tuple[str, ...]
) -> argparse.ArgumentParser:
    """The parser of ``pyro-vae``, offering the named priors and guides."""
    parser = Parser(prog="pyro-vae", description=description)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    parser.commands = {
        "train": _add_train(sub, priors, guides),
        "evaluate": _add_evaluate(sub),
        "sample": _add_sample(sub),
        "compare": _add_compare(sub, priors, guides),
    }
    parser.commands |= add_analysis_commands(sub, priors, guides)
    parser.commands["reproduce"] = add_reproduce_command(sub)
    return parser


def _add_train(sub: Any, priors: tuple[str, ...], guides: tuple[str, ...]) -> Parser:
    """``pyro-vae train``."""
    train = sub.add_parser(
        "train",
        help="train a VAE and write a run folder",
        description="Train a VAE, then evaluate it on the test split and "
        "write figures into the run folder.",
    )
    add_model(train, priors, guides, resume=True)
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
    add_config(train)
    add_common(train)
    add_eval(train, 1000)
    add_distributed(train)
    add_classes_option(train, anomaly=True)
    return train


def _add_evaluate(sub: Any) -> Parser:
    """``pyro-vae evaluate``."""
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
    add_common(ev)
    add_eval(ev, 1000, "example of --split")
    add_distributed(ev)
    return ev


def _add_sample(sub: Any) -> Parser:
    """``pyro-vae sample``."""
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
    add_common(sm, data_dir=False)
    return sm


def _add_compare(sub: Any, priors: tuple[str, ...], guides: tuple[str, ...]) -> Parser:
    """``pyro-vae compare``."""
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
    add_model(cmp, priors, guides)
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
    add_config(cmp)
    add_common(cmp)
    add_optimizer_options(cmp)
    add_eval(cmp, 5000)
    add_classes_option(cmp)
    add_test_examples(cmp)
    return cmp
