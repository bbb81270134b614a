"""How ``fit`` begins: a fresh run, or one resumed from its checkpoint, in one process or many.

A fresh data-parallel run takes rank 0's initial parameters and data order and
then gives every process its own particle stream. A resumed one reads the
checkpoint on rank 0 and sends it to the others, so that a run spread over
several machines needs its folder on rank 0's machine only.
"""

from __future__ import annotations

import sys
import warnings
from typing import Any

import pyro
import torch
from tqdm.auto import tqdm

from pyro_vae.models.vae import VAE
from pyro_vae.train import checkpoints, distributed
from pyro_vae.train._data_parallel import broadcast_tensors, fork_random_streams
from pyro_vae.train._history import History
from pyro_vae.train._resume import check_same_parameters
from pyro_vae.train._run_folder import RunFolder
from pyro_vae.train._state import (
    Bookkeeping,
    Position,
    best_params_on_resume,
    check_resumable,
    materialize_program_params,
    restore,
    restore_params,
)
from pyro_vae.train._trainer import Trainer

__all__ = ["start_run", "resume_run", "finished", "already_trained", "print_resume"]

Start = tuple[Position, Bookkeeping, "dict[str, torch.Tensor] | None"]


def start_run(
    trainer: Trainer, vae: VAE | None, generator: torch.Generator, example: torch.Tensor
) -> Start:
    """Prepares the trainer on ``example``; returns epoch 1, empty books and no best parameters."""
    trainer.prepare(example)
    group = trainer.group
    # Rank 0's initial parameters and data order for everyone, then own particle streams.
    buffers = list(vae.buffers()) if vae is not None else []
    broadcast_tensors(group, trainer.params() + buffers, "parameters")
    generator.set_state(group.broadcast_object(generator.get_state(), "the data order"))
    fork_random_streams(group)
    return Position(epoch=1), Bookkeeping(), None


def resume_run(
    state: dict[str, Any],
    folder: RunFolder,
    trainer: Trainer,
    vae: VAE | None,
    generator: torch.Generator,
    example: torch.Tensor,
    data: torch.Tensor,
    batch_size: int,
    lr: float | None,
    device: torch.device,
) -> Start:
    """Restores ``state``, the checkpoint of the run in ``folder``: returns its position,
    books and best parameters (``None``: none).

    Raises:
        ValueError: the checkpoint is for other data, another global batch, or a
            model of another architecture (naming the first parameter that differs).
    """
    group = trainer.group
    check_resumable(state, data, batch_size, group.world_size, folder.checkpoint)
    if vae is None:
        materialize_program_params(trainer, example)
        store = dict(pyro.get_param_store().items())
        # A parameter first used late in the run is not in the store yet: compare shapes only.
        saved = {k: v for k, v in state["params"].items() if k in store}
        check_same_parameters(saved, store, folder.checkpoint)
    else:
        check_same_parameters(state["params"], vae.state_dict(), folder.checkpoint)
    trainer.prepare(example)
    position, books = restore(state, vae, trainer, generator, random_state=True, lr=lr)
    _restore_rank_random_state(state, group)
    best_params = group.on_main(
        lambda: best_params_on_resume(folder.best, state, position, device), "best.pt"
    )
    if "data_rng_state" not in state and group.is_main:
        warnings.warn(
            f"{folder.checkpoint} holds no data-order state (written by an older "
            "pyro_vae): the resumed run sees other batches than an uninterrupted one",
            stacklevel=3,
        )
    return position, books, best_params


def finished(position: Position, books: Bookkeeping, epochs: int, patience: int | None) -> bool:
    """Whether a run at ``position`` has nothing left to do: all its epochs, or stopped early."""
    if position.step != 0:
        return False
    return position.epoch > epochs or (patience is not None and books.bad_epochs >= patience)


def already_trained(
    vae: VAE | None,
    folder: RunFolder,
    position: Position,
    books: Bookkeeping,
    best_params: dict[str, torch.Tensor] | None,
    epochs: int,
    writer: RunFolder | None,
) -> History:
    """A resumed run that had already finished: its trained parameters and history; no writes.

    The process that would write the folder (``writer``) warns that nothing was done."""
    stopped_early = position.epoch <= epochs
    if best_params is not None and books.rows and books.best_epoch != books.rows[-1]["epoch"]:
        restore_params(vae, best_params)
    if writer is not None:
        why, more = (
            ("it stopped early", "patience") if stopped_early else (f"epochs={epochs}", "epochs")
        )
        warnings.warn(
            f"{folder.path} has already trained {position.epoch - 1} epochs ({why}): nothing "
            f"to train; give a larger {more} to go on",
            stacklevel=4,  # fit's caller
        )
    return History(books.rows, books.best_epoch, stopped_early, nothing_to_do=True)


def print_resume(folder: RunFolder, position: Position, run_config: dict[str, Any]) -> None:
    """One line: where the run resumes, and the settings this resume changed."""
    latest = run_config["resumes"][-1] if run_config.get("resumes") else None
    at = (position.epoch, position.step)
    changed = latest["changed"] if latest and (latest["epoch"], latest["step"]) == at else {}
    text = ", ".join(f"{key} {old} -> {new}" for key, (old, new) in changed.items())
    tqdm.write(
        f"resuming {folder.path} at epoch {at[0]}, step {at[1]}"
        + (f"; changed: {text}" if text else ""),
        file=sys.stderr,
    )


def _restore_rank_random_state(state: dict[str, Any], group: distributed.Group) -> None:
    """Each process's own random state from a data-parallel checkpoint (rank 0's is restored).

    Resuming on as many processes as the checkpoint's run continues its draws
    exactly; on another number the processes get fresh streams.
    """
    if not group.distributed:
        return
    saved = state.get("rank_rng_states")
    if saved is not None and len(saved) == group.world_size:
        checkpoints.set_rng_state(saved[group.rank])
        return
    fork_random_streams(group)
    if group.is_main:
        was = len(saved) if saved is not None else 1
        warnings.warn(
            f"the run was trained on {was} process(es) and resumes on {group.world_size}: "
            "the processes draw fresh particles, not those of an uninterrupted run",
            stacklevel=4,
        )
