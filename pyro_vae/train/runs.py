"""A trained run, back in Python: ``pv.load_run(path)``.

``pyro-vae train`` (or :func:`pyro_vae.fit` with ``config=`` naming a model the
registry knows) writes a run folder. :func:`load_run` rebuilds its VAE from the
saved config, loads the trained parameters, and returns them with the config
and the training history::

    run = pv.load_run("runs/a")          # best.pt's parameters, else checkpoint.pt's
    log_px = pv.evaluate.log_likelihood(run.vae.model, run.vae.guide, x)
    run.history.column("valid_loss"), run.config["latent_dim"]
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pyro_vae.models.registry import RUN_KEYS, build_vae
from pyro_vae.models.vae import VAE
from pyro_vae.train import checkpoints
from pyro_vae.train._fit import History
from pyro_vae.train._resume import check_same_parameters
from pyro_vae.train._run_folder import BEST, CHECKPOINT

__all__ = ["Run", "load_run", "WHICH"]

WHICH = ("best", "last")


@dataclass(frozen=True)
class Run:
    """A trained run loaded back.

    Attributes:
        vae: the VAE with the loaded parameters, in evaluation mode.
        config: the run's config (``config.json``): the model, the data and
            every training setting, with the ``"resumes"`` that changed any.
        history: the epochs trained (``log.csv``), with the best epoch.
        checkpoint: the file the parameters came from.
        epoch: the epoch those parameters were saved after.
    """

    vae: VAE
    config: dict[str, Any]
    history: History
    checkpoint: Path
    epoch: int | None


def load_run(
    path: str | os.PathLike,
    *,
    which: str = "best",
    device: str | torch.device = "cpu",
) -> Run:
    """Loads a run trained by ``pyro-vae train``: a run folder or one checkpoint file.

    Arguments:
        path: a run folder, or a checkpoint in one (``best.pt``, ``checkpoint.pt``).
        which: for a folder, ``"best"`` (``best.pt``: the best validation loss, what
            ``fit`` ends with; ``checkpoint.pt`` if there is none) or ``"last"``
            (``checkpoint.pt``: the last saved state).
        device: where the VAE's parameters go.

    Returns:
        a :class:`Run` with ``vae``, ``config``, ``history``, ``checkpoint`` and ``epoch``.

    Raises:
        FileNotFoundError: no run folder or checkpoint at ``path``.
        ValueError: an unknown ``which``; a damaged checkpoint
            (:class:`~pyro_vae.checkpoints.CheckpointError`); a checkpoint whose
            config names no model the registry can build, or whose parameters
            are not those of the model it names (naming the first that differs).
    """
    if which not in WHICH:
        raise ValueError(f"which must be one of {', '.join(WHICH)}, got {which!r}")
    path = Path(path)
    file = _checkpoint_file(path, which)
    state = checkpoints.load(file, map_location=device)
    config = state.get("config") if isinstance(state.get("config"), dict) else {}
    missing = [key for key in RUN_KEYS if key not in config]
    if missing:
        raise ValueError(
            f"{file} names no model to build (its config lacks {', '.join(missing)}): it was "
            "not written by `pyro-vae train`; build the same VAE in Python and load its "
            "parameters with vae.load_state_dict(pv.checkpoints.load(path)['params'])"
        )
    try:
        vae = build_vae(config).to(device)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{file} names a model that cannot be built: {e}") from e
    params = state.get("params")
    if not isinstance(params, dict) or not all(
        isinstance(v, torch.Tensor) for v in params.values()
    ):
        raise ValueError(
            f"{file}: its parameters do not fit the model its config names (expected a dict of "
            "named tensors)"
        )
    check_same_parameters(params, vae.state_dict(), file, action="load")
    vae.load_state_dict(params)
    vae.eval()
    return Run(vae, config, saved_history(file, state), file, state.get("epoch"))


def _checkpoint_file(path: Path, which: str) -> Path:
    if path.is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError(f"no checkpoint or run folder at {path}")
    names = (BEST, CHECKPOINT) if which == "best" else (CHECKPOINT,)
    for name in names:
        if (path / name).is_file():
            return path / name
    raise FileNotFoundError(f"{path} holds no {' or '.join(names)}: it is not a run folder")


def saved_history(file: Path, state: dict[str, Any]) -> History:
    """The history in checkpoint ``state``, read from ``file``; a file without one (best.pt)
    gives that of the checkpoint.pt beside it."""
    if "history" not in state and file.name != CHECKPOINT and (file.parent / CHECKPOINT).is_file():
        try:
            state = checkpoints.load(file.parent / CHECKPOINT)
        except checkpoints.CheckpointError:
            return History()
    rows = [dict(row) for row in state.get("history", [])]
    return History(rows, state.get("best_epoch"))
