"""``pyro-vae reproduce RECIPE``: train a published configuration and score it as the paper did.

    pyro-vae reproduce burda2015-1layer --objective iwae:k=5 --data-dir DIR --max-minutes 120
    pyro-vae reproduce burda2015-1layer --objective iwae:k=5 --data-dir DIR --resume

The run folder (default ``runs/RECIPE_OBJECTIVE``) survives any interruption:
``--resume`` goes on exactly where it stopped, and refuses a run of another
recipe or objective. ``--max-minutes`` stops at a checkpoint, for runs longer
than one sitting. Every call writes the run's row of ``--table``
(``REPRODUCTION.md``), marked in progress until the run has trained all its
epochs and been scored with the paper's protocol.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pyro_vae.cli._types import positive_float
from pyro_vae.lab import recipes

__all__ = ["add_reproduce_command", "reproduce_command"]


def add_reproduce_command(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Adds ``reproduce`` to the subcommands ``sub``; returns its parser."""
    p = sub.add_parser(
        "reproduce",
        help="train a published configuration and score it as the paper did",
        description=__doc__.splitlines()[0],
    )
    p.add_argument("recipe", choices=recipes.names(), help="the recipe")
    p.add_argument(
        "--objective",
        default=None,
        help="one of the recipe's objectives, e.g. elbo, iwae:k=5, iwae-dreg:k=5 "
        "(default: the recipe's own)",
    )
    p.add_argument("--out", default=None, help="run folder (default: runs/RECIPE_OBJECTIVE)")
    p.add_argument(
        "--resume", action="store_true", help="continue the run in --out where it stopped"
    )
    p.add_argument(
        "--max-minutes",
        type=positive_float,
        default=None,
        help="wall-clock budget: stop at the checkpoint of the first epoch past it",
    )
    p.add_argument(
        "--table",
        default="REPRODUCTION.md",
        help="Markdown file that gets the run's row (default: REPRODUCTION.md)",
    )
    p.add_argument(
        "--smoke-test",
        action="store_true",
        help="the recipe on the embedded mnist5k for 2 epochs with tiny evaluations",
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    p.add_argument(
        "--data-dir",
        default=None,
        help="folder (or mnist.npz path) holding full MNIST; "
        "default: $PYRO_VAE_DATA, then ~/.cache/pyro_vae",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress output")
    return p


def reproduce_command(args: argparse.Namespace) -> None:
    """Runs ``pyro-vae reproduce`` and prints where the run stands."""
    recipe = recipes.get(args.recipe)
    objective = args.objective or recipe.default_objective
    smoke = "_smoke" if args.smoke_test else ""
    out = args.out or str(Path("runs") / f"{args.recipe}_{objective.replace(':', '_')}{smoke}")
    result = recipes.reproduce(
        args.recipe, objective, out=out, data_dir=args.data_dir, resume=args.resume,
        max_minutes=args.max_minutes, device=args.device, table=args.table,
        smoke_test=args.smoke_test, progress=not args.no_progress,
    )  # fmt: skip
    paper, against = recipe.paper_value(result.objective)
    versus = f" (paper, {against}: {paper:.2f})" if paper is not None else ""
    epochs = result.history.rows[-1]["epoch"] if result.history.rows else 0
    if result.scores is None:
        print(
            f"{out}: trained {epochs} of {result.plan['epochs']} epochs; continue with "
            f"pyro-vae reproduce {args.recipe} --objective {result.objective} --out {out} "
            "--resume"
        )
    else:
        s = result.scores
        print(
            f"{out}: test −log p(x) {s['nll']:.2f} ± {s['stderr_images']:.2f} over "
            f"{s['examples']} images (Monte Carlo ± {s['stderr_mc']:.3f}, K = "
            f"{s['num_samples']}){versus}"
        )
    if args.table:
        print(f"wrote its row of {args.table}")
