"""The ``pyro-vae`` command's arguments: the parser, its option types and defaults."""

from __future__ import annotations

import argparse
import math
from typing import NoReturn

from . import data, distributed, objectives
from ._checks import FLOAT32_MAX
from .compare import DEFAULT_OBJECTIVES

__all__ = ["make_parser", "LIKELIHOODS", "NETS", "BINARIZE"]

LIKELIHOODS = ("bernoulli", "continuous-bernoulli", "gaussian", "laplace", "discretized-logistic")
NETS = ("mlp", "conv")
BINARIZE = ("dynamic", "static", "none")


_MAX_INT = 2**63 - 1  # sizes beyond int64 cannot be tensor sizes
_MAX_FLOWS = 1000


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line; ``context`` is appended to them."""

    context: str | None = None
    commands: dict[str, argparse.ArgumentParser]

    def error(self, message: str) -> NoReturn:
        if self.context:
            message = f"{message} ({self.context})"
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())}\n")


def _int(text: str) -> int | None:
    try:
        return int(text)
    except (ValueError, TypeError):
        return None  # also for text of more than 4300 digits


def _positive_int(text: str) -> int:
    value = _int(text)
    if value is None or not 1 <= value <= _MAX_INT:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _num_flows(text: str) -> int:
    value = _int(text)
    if value is None or not 1 <= value <= _MAX_FLOWS:
        raise argparse.ArgumentTypeError(
            f"expected an integer from 1 to {_MAX_FLOWS}, got {text!r}"
        )
    return value


def _seed(text: str) -> int:
    value = _int(text)
    if value is None or not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"expected an integer from 0 to 2**32 - 1, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (0 < value <= FLOAT32_MAX):
        raise argparse.ArgumentTypeError(
            f"expected a positive number up to {FLOAT32_MAX:.2g}, got {text!r}"
        )
    return value


def _int_list(text: str) -> list[int]:
    values = [_int(v) for v in text.split(",")]
    if any(v is None or not 1 <= v <= _MAX_INT for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers like 512,256, got {text!r}")
    return values  # type: ignore[return-value]


def _add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        default=None,
        metavar="FILE.json",
        help="read options from a JSON object whose keys are this command's long option "
        'names (latent_dim or latent-dim) and values as on the command line, e.g. {"hidden": '
        '[256, 128], "lr": 0.001, "no_progress": true}; options given on the command line win',
    )


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--device",
        default="auto",
        help="cpu, cuda or cuda:N; auto picks cuda when available (default: auto)",
    )
    p.add_argument(
        "--data-dir",
        default=None,
        help="folder (or mnist.npz path) holding full MNIST; "
        "default: $PYRO_VAE_DATA, then ~/.cache/pyro_vae",
    )
    p.add_argument("--seed", type=_seed, default=0, help="random seed, 0 to 2**32 - 1 (default: 0)")


def _add_eval(p: argparse.ArgumentParser, num_samples: int) -> None:
    p.add_argument(
        "--num-samples",
        type=_positive_int,
        default=num_samples,
        help=f"K, importance samples per test example for log p(x) (default: {num_samples})",
    )
    p.add_argument(
        "--eval-batch-size",
        type=_positive_int,
        default=100,
        help="test examples per evaluation pass (default: 100)",
    )


def _objective_spec(text: str) -> str:
    try:
        objectives.parse(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def _objective_list(text: str) -> str:
    try:
        objectives.parse_list(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def _add_model(
    p: argparse.ArgumentParser, priors: tuple[str, ...], guides: tuple[str, ...]
) -> None:
    """The options that choose the data, the model and the training budget."""
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
        type=_positive_float,
        default=0.1,
        help="scale of the gaussian, laplace or discretized-logistic likelihood, "
        "initial value if learned (default: 0.1)",
    )
    p.add_argument("--learn-scale", action="store_true", help="learn the likelihood's scale")
    p.add_argument(
        "--num-flows",
        type=_num_flows,
        default=2,
        help=f"steps of the iaf and coupling guides and of the flow prior, 1 to {_MAX_FLOWS} "
        "(default: 2)",
    )
    p.add_argument(
        "--components",
        type=_positive_int,
        default=None,
        help="components of the mixture prior (default: 10) or pseudo-inputs of the "
        "vamp prior (default: 500)",
    )
    p.add_argument(
        "--net", default="mlp", choices=NETS, help="encoder/decoder networks (default: mlp)"
    )
    p.add_argument(
        "--hidden",
        type=_int_list,
        default=[512, 256],
        help="MLP hidden widths, encoder order; the decoder mirrors them (default: 512,256)",
    )
    p.add_argument("--latent-dim", type=_positive_int, default=16, help="size of z (default: 16)")
    p.add_argument(
        "--epochs", type=_positive_int, default=60, help="number of epochs (default: 60)"
    )
    p.add_argument(
        "--batch-size", type=_positive_int, default=100, help="examples per step (default: 100)"
    )
    p.add_argument(
        "--lr",
        type=_positive_float,
        default=None,
        help="Adam learning rate (default: 0.001; with train --resume, the run's own)",
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
        type=_positive_float,
        default=distributed.DEFAULT_TIMEOUT.total_seconds(),
        metavar="SECONDS",
        help="under torchrun: how long a process waits for a silent one before it stops with "
        "an error (default: %(default)g)",
    )


def make_parser(
    description: str, priors: tuple[str, ...], guides: tuple[str, ...]
) -> argparse.ArgumentParser:
    """The parser of ``pyro-vae``, offering the named priors and guides."""
    parser = _Parser(prog="pyro-vae", description=description)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    train = sub.add_parser(
        "train",
        help="train a VAE and write a run folder",
        description="Train a VAE, then evaluate it on the test split and "
        "write figures into the run folder.",
    )
    _add_model(train, priors, guides)
    train.add_argument(
        "--objective",
        type=_objective_spec,
        default=objectives.DEFAULT_OBJECTIVE,
        help="training objective, name[:option=value,...], e.g. iwae:k=5; one of "
        f"{', '.join(objectives.OBJECTIVES)} (default: {objectives.DEFAULT_OBJECTIVE})",
    )
    train.add_argument(
        "--num-particles",
        type=_positive_int,
        default=None,
        help="samples of z per example in the objective (default: the spec's k, else 1)",
    )
    train.add_argument(
        "--patience",
        type=_positive_int,
        default=None,
        help="stop after this many epochs without validation improvement",
    )
    train.add_argument("--out", default="runs/latest", help="run folder (default: runs/latest)")
    train.add_argument(
        "--resume",
        action="store_true",
        help="continue the run saved in --out up to --epochs, exactly where it stopped",
    )
    train.add_argument(
        "--checkpoint-every",
        type=_positive_int,
        default=None,
        help="also save checkpoint.pt every N steps within an epoch (default: at epoch ends)",
    )
    train.add_argument(
        "--on-nonfinite",
        choices=("stop", "rollback"),
        default="stop",
        help="a step with a NaN or infinite loss or gradient is never applied; stop the run, "
        "or roll back to the last checkpoint and go on with fresh draws (default: stop)",
    )
    train.add_argument(
        "--clip-grad-norm",
        type=_positive_float,
        default=None,
        help="clip the gradients' joint 2-norm to this before each update (default: no clipping)",
    )
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
    _add_eval(ev, 1000)
    _add_distributed(ev)

    sm = sub.add_parser(
        "sample",
        help="draw samples from a checkpoint",
        description="Write a grid of E[x|z], z ~ p(z), from a checkpoint.",
    )
    sm.add_argument("checkpoint", help="checkpoint.pt or best.pt of a run")
    sm.add_argument("--num", type=_positive_int, default=64, help="images (default: 64)")
    sm.add_argument(
        "--out", default=None, help="PNG path (default: samples-<seed>.png beside the checkpoint)"
    )
    _add_common(sm)

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
        type=_int_list,
        default=[1, 5, 50, 500],
        help="K of the test bounds E[IWAE_K] (default: 1,5,50,500)",
    )
    cmp.add_argument(
        "--gradient-ks",
        type=_int_list,
        default=[1, 5, 50],
        help="K of the gradient statistics (default: 1,5,50)",
    )
    cmp.add_argument(
        "--gradient-draws",
        type=_positive_int,
        default=100,
        help="gradient estimates per statistic (default: 100)",
    )
    cmp.add_argument(
        "--test-examples",
        type=_positive_int,
        default=None,
        help="evaluate on the first N test examples (default: all)",
    )
    cmp.add_argument("--out", default="runs/compare", help="output folder (default: runs/compare)")
    cmp.add_argument("--overwrite", action="store_true", help="replace a comparison in --out")
    cmp.add_argument("--no-progress", action="store_true", help="no progress output")
    _add_config(cmp)
    _add_common(cmp)
    _add_eval(cmp, 5000)
    # Imported here: the analysis commands' module builds on this one's option groups.
    from ._cli_analysis_args import add_analysis_commands, add_classes_option

    add_classes_option(train)
    add_classes_option(cmp)
    parser.commands = {"train": train, "evaluate": ev, "sample": sm, "compare": cmp}
    parser.commands |= add_analysis_commands(sub, priors, guides)
    return parser
