"""``pyro-vae train --resume``: a run goes on with the settings it was saved with.

The run's checkpoint holds its config: the model it was built from, the data and
binarisation, the objective, the batch size and the seed. Resuming rebuilds all
of it from there. An option given again with ``--resume`` must equal the saved
value, or the command stops with one line naming the option, the saved value and
the new one (exit 2). The options of :data:`CHANGEABLE_OPTIONS` may change on
resume (each change is recorded in the config's ``"resumes"`` list); left out,
they keep the run's own values. The options of :data:`FREE_OPTIONS` say how to
run, not what to run, and are never recorded.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from pyro_vae.train import checkpoints, distributed
from pyro_vae.train._resume import CHANGEABLE, conflict, settle
from pyro_vae.train._run_folder import RunFolder

__all__ = [
    "MODEL_OPTIONS",
    "RUN_OPTIONS",
    "CHANGEABLE_OPTIONS",
    "FREE_OPTIONS",
    "Resumed",
    "resumed_run",
]

# Option (its argparse dest) -> the config key the run saved it under.
MODEL_OPTIONS = {
    "dataset": "dataset",
    "prior": "prior",
    "guide": "guide",
    "likelihood": "likelihood",
    "scale": "scale",
    "learn_scale": "learn_scale",
    "num_flows": "num_flows",
    "components": "components",
    "net": "net",
    "hidden": "hidden",
    "latent_dim": "latent_dim",
    "binarize": "binarization",
    "classes": "classes",
}
RUN_OPTIONS = (
    "objective", "num_particles", "batch_size", "seed", "lr_schedule", "adam_betas", "adam_eps",
)  # fmt: skip
CHANGEABLE_OPTIONS = CHANGEABLE
FREE_OPTIONS = (
    "out", "resume", "overwrite", "device", "data_dir", "no_progress", "num_samples",
    "eval_batch_size", "dist_timeout", "config", "max_minutes", "test_every", "test_samples",
)  # fmt: skip

_OPTION_OF_KEY = {key: dest for dest, key in MODEL_OPTIONS.items()}


def _option(key: str) -> str:
    """The command-line option that sets config ``key``: ``latent_dim`` -> ``--latent-dim``."""
    return "--" + _OPTION_OF_KEY.get(key, key).replace("_", "-")


@dataclass(frozen=True)
class Resumed:
    """A run to resume: its model config, its seed, and ``fit``'s changeable settings.

    Attributes:
        config: the model config the run was built from (``build_vae`` takes it).
        seed: the run's seed (its data and static binarisation depend on it).
        fit_options: ``epochs``, ``lr``, … as given on the command line, ``None``
            where not given (``fit`` then takes the run's own).
    """

    config: dict[str, Any]
    seed: int
    fit_options: dict[str, Any]


def resumed_run(
    args: argparse.Namespace, folder: RunFolder, group: distributed.Group, fresh: dict[str, Any]
) -> Resumed:
    """The run saved in ``folder``, checked against the options given with ``--resume``.

    Arguments:
        args: the parsed options; ``args.given`` names those given explicitly.
        folder: the run folder.
        group: the processes (rank 0 reads the checkpoint).
        fresh: the model config the options would build for a new run; keys the
            run did not save (an older run) are taken from it.

    Raises:
        FileNotFoundError: no checkpoint to resume.
        ValueError: an option differs from the saved value, naming both.
    """
    group.on_main(lambda: folder.check(resume=True, overwrite=False), "the run folder")
    saved = group.on_main(
        lambda: checkpoints.load(folder.checkpoint, "cpu").get("config") or {}, "the run's config"
    )
    given: dict[str, Any] = {}
    for dest in sorted(args.given):
        if dest in MODEL_OPTIONS:
            value = fresh[MODEL_OPTIONS[dest]] if dest == "binarize" else getattr(args, dest)
            given[MODEL_OPTIONS[dest]] = value
        elif dest in RUN_OPTIONS:
            given[dest] = getattr(args, dest)
    settle(saved, given, folder.checkpoint, label=_option)
    if "batch_size" in given and "batch_size" in saved:
        _check_global_batch(saved, args.batch_size, group.world_size, folder)
    config = {key: saved.get(key, value) for key, value in fresh.items()}
    dests = (*RUN_OPTIONS, *CHANGEABLE)
    options = {dest: getattr(args, dest) if dest in args.given else None for dest in dests}
    return Resumed(config, saved.get("seed", args.seed), options)


def _check_global_batch(
    saved: dict[str, Any], batch_size: int, world_size: int, folder: RunFolder
) -> None:
    """``--batch-size`` is per process: under torchrun the global batch must stay the same."""
    processes = saved.get("world_size", 1)
    if batch_size * world_size == saved["batch_size"] * processes:
        return
    old, new = str(saved["batch_size"]), str(batch_size)
    if processes != 1 or world_size != 1:
        old += f" on {processes} process(es)"
        new += f" on {world_size}"
    raise conflict(folder.checkpoint, "--batch-size", old, new, _option)
