"""The options ``fit`` gained for long runs, on the command line: the optimiser and the budget.

``--lr-schedule``, ``--adam-betas`` and ``--adam-eps`` are settings of the run
(fixed on resume); ``--max-minutes``, ``--test-every`` and ``--test-samples``
say how to run it and are not recorded.
"""

from __future__ import annotations

import argparse

from pyro_vae import _defaults
from pyro_vae.cli._types import adam_betas, lr_schedule, positive_float, positive_int

__all__ = ["add_optimizer_options", "add_budget_options"]


def add_optimizer_options(p: argparse.ArgumentParser) -> None:
    """``--lr-schedule``, ``--adam-betas`` and ``--adam-eps``: settings of the run, fixed on
    resume."""
    p.add_argument(
        "--lr-schedule",
        type=lr_schedule,
        default=None,
        help="learning rate of each epoch as a factor of --lr: constant, burda2015 (3^i epochs "
        "at 10^(-i/7), i = 0..7, 3280 epochs) or geometric:growth=G,decay=D,stages=S "
        f"(default: {_defaults.LR_SCHEDULE})",
    )
    p.add_argument(
        "--adam-betas",
        type=adam_betas,
        default=None,
        metavar="B1,B2",
        help="Adam's beta1,beta2 (default: {},{})".format(*_defaults.ADAM_BETAS),
    )
    p.add_argument(
        "--adam-eps",
        type=positive_float,
        default=None,
        help=f"Adam's epsilon (default: {_defaults.ADAM_EPS:g})",
    )


def add_budget_options(p: argparse.ArgumentParser) -> None:
    """``--max-minutes``, ``--test-every`` and ``--test-samples``: how to run, not recorded."""
    p.add_argument(
        "--max-minutes",
        type=positive_float,
        default=None,
        help="wall-clock budget: stop at the checkpoint of the first epoch that ends past it; "
        "continue with --resume (default: none)",
    )
    p.add_argument(
        "--test-every",
        type=positive_int,
        default=None,
        metavar="N",
        help="after every N-th epoch and the last, log the test log p(x) (column "
        "test_log_likelihood of log.csv): an anytime curve (default: never)",
    )
    p.add_argument(
        "--test-samples",
        type=positive_int,
        default=1000,
        metavar="K",
        help="importance samples of the --test-every log p(x) (default: 1000)",
    )
