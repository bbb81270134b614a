"""How ``fit`` begins: a fresh run, or one resumed from its checkpoint, in one process or many.

A fresh data-parallel run takes rank 0's initial parameters and data order and
then gives every process its own particle stream. A resumed one reads the
checkpoint on rank 0 and sends it to the others, so that a run spread over
several machines needs its folder on rank 0's machine only.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from . import checkpoints, distributed
from ._data_parallel import broadcast_tensors, fork_random_streams
from ._run_folder import RunFolder
from ._trainer import Trainer
from ._training_state import (
    Bookkeeping,
    Position,
    best_params_on_resume,
    check_resumable,
    materialize_program_params,
    restore,
)
from .vae import VAE

__all__ = ["start_run", "resume_run"]

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
    """Restores the run in ``folder``: its position, books and best parameters (``None``: none).

    Raises:
        ValueError: the checkpoint is for other data or another global batch.
        FileNotFoundError, CheckpointError: no readable checkpoint.
    """
    group = trainer.group
    where = "cpu" if group.distributed else device  # objects travel between processes on the CPU
    state = group.on_main(lambda: checkpoints.load(folder.checkpoint, where), "the checkpoint")
    check_resumable(state, data, batch_size, group.world_size, folder.checkpoint)
    if vae is None:
        materialize_program_params(trainer, example)
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
