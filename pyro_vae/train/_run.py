"""One training run of ``fit``: from the start or a checkpoint to the last epoch, with the
save points, rollbacks, anytime test curve and wall-clock budget along the way.

``fit`` (:mod:`pyro_vae.train`) checks its arguments, settles the settings
(:class:`~pyro_vae.train._options.FitSettings`), takes the run folder's lock and
hands over a :class:`Setup`; :func:`run_training` does the rest.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyro
import pyro.distributions as dist
import torch

from pyro_vae import _defaults
from pyro_vae.models.vae import VAE
from pyro_vae.train import checkpoints, distributed, schedules
from pyro_vae.train._anytime import AnytimeTest
from pyro_vae.train._data_parallel import check_same_parameters, check_same_setup, data_summary
from pyro_vae.train._epoch import (
    EpochRunner,
    NonFiniteLossError,
    mean_loss,
    print_epoch,
    stopped_error,
)
from pyro_vae.train._history import History
from pyro_vae.train._options import FitSettings
from pyro_vae.train._run_folder import RunFolder
from pyro_vae.train._setup import (
    check_inputs,
    data_generator,
    first_batch,
    make_objective,
    objective_label,
)
from pyro_vae.train._start import already_trained, finished, print_resume, resume_run, start_run
from pyro_vae.train._state import Position, capture, params_snapshot, restore, restore_params
from pyro_vae.train._trainer import Trainer

__all__ = ["Setup", "run_training"]


@dataclass(frozen=True)
class Setup:
    """What ``fit`` settled before training: programs, settings, device, processes, folder."""

    vae: VAE | None
    model_fn: Callable[..., Any]
    guide_fn: Callable[..., Any]
    settings: FitSettings
    max_rollbacks: int
    device: torch.device
    group: distributed.Group
    folder: RunFolder | None
    anytime: AnytimeTest
    max_minutes: float | None


def run_training(
    setup: Setup,
    data: torch.Tensor,
    valid: torch.Tensor | None,
    state: dict[str, Any] | None,
    progress: bool,
) -> History:
    """Trains from the start, or from the checkpoint ``state``; writes the run folder."""
    started = time.monotonic()
    vae, settings, device, group, folder = (
        setup.vae, setup.settings, setup.device, setup.group, setup.folder
    )  # fmt: skip
    epochs, batch_size, binarize = settings.epochs, settings.batch_size, settings.binarize
    patience, clip_grad_norm = settings.patience, settings.clip_grad_norm
    max_rollbacks = setup.max_rollbacks
    loss = make_objective(settings.objective, settings.num_particles)
    valid_loss = (
        loss if settings.valid_objective is None else make_objective(settings.valid_objective, None)
    )
    check_inputs(vae, data, valid, binarize, device)
    if group.distributed:
        check_same_setup(
            group,
            {"data": data_summary(data),
             "validation data": valid is not None and data_summary(valid),
             "batch_size": batch_size, "epochs": epochs,
             "objective": (objective_label(loss), loss.num_particles),
             "seed": settings.seed, "resume": state is not None, "binarize": binarize,
             "run folder": folder is not None},
        )  # fmt: skip
    data = data.to(device)
    valid = valid.to(device) if valid is not None else None

    if settings.seed is not None and state is None:
        pyro.set_rng_seed(settings.seed)
    saved_lr = state["config"].get("lr") if state is not None else None
    base_lr = settings.lr or saved_lr or _defaults.LEARNING_RATE
    schedule = schedules.parse(settings.lr_schedule)
    trainer = Trainer(
        setup.model_fn, setup.guide_fn, loss, base_lr, vae, group,
        betas=settings.adam_betas, eps=settings.adam_eps,
    )  # fmt: skip
    valid_trainer = (
        trainer if valid_loss is loss else Trainer(setup.model_fn, setup.guide_fn, valid_loss, 1.0)
    )
    generator = data_generator(device)
    example = first_batch(data, batch_size, binarize)
    global_batch = batch_size * group.world_size
    if state is not None:
        position, books, best_params = resume_run(
            state, folder, trainer, vae, generator, example, data, batch_size, settings.lr, device
        )
    else:
        position, books, best_params = start_run(trainer, vae, generator, example)
    writer = folder if group.is_main else None
    progress = progress and group.is_main
    if state is not None and finished(position, books, epochs, patience):
        return already_trained(vae, folder, position, books, best_params, epochs, writer)
    run_config = settings.record(
        base_lr,
        loss.num_particles,
        group.world_size,
        state["config"] if state is not None else None,
        (position.epoch, position.step),
    )
    if writer is not None:
        writer.start(run_config, resume=state is not None)
        if state is not None:
            writer.write_log(books.rows)  # drops rows of work done after the checkpoint
        if progress and state is not None:
            print_resume(folder, position, run_config)

    runner = EpochRunner(
        trainer,
        data,
        global_batch,
        generator,
        binarize,
        objective_label(loss),
        epochs,
        clip_grad_norm=clip_grad_norm,
        checkpoint_every=settings.checkpoint_every,
        progress=progress,
    )
    keep_snapshots = settings.on_nonfinite == "rollback"
    snapshot: dict[str, Any] | None = None
    rollbacks: list[dict[str, Any]] = []
    in_a_row = 0

    def save_point(at: Position) -> None:
        nonlocal snapshot, in_a_row
        if folder is None and not keep_snapshots:
            return
        rank_states = None
        if folder is not None and group.distributed:  # the same condition on every process
            rank_states = group.all_gather_object(checkpoints.get_rng_state(), "random states")
        if writer is None and not keep_snapshots:
            return
        state = capture(vae, trainer, generator, at, books, run_config)
        state["data_shape"] = list(data.shape)
        if rank_states is not None:
            state["rank_rng_states"] = rank_states
        if writer is not None:
            checkpoints.save(state, writer.checkpoint)
        if keep_snapshots:
            snapshot, in_a_row = state, 0

    if keep_snapshots:
        snapshot = capture(vae, trainer, generator, position, books, run_config)
    stopped_early = out_of_time = False
    # Pyro's distribution checks cost about a tenth of a small step. The data were
    # checked above; the first step runs with the checks as configured, to catch
    # a model that builds invalid distributions.
    validate, first = dist.is_validation_enabled(), True
    with pyro.validation_enabled(False):
        while position.epoch <= epochs and not stopped_early:
            trainer.set_lr(base_lr * schedule.factor(position.epoch))
            try:
                runner.run(position, validate_first=validate and first, on_checkpoint=save_point)
            except NonFiniteLossError as e:
                if not keep_snapshots or in_a_row >= max_rollbacks:
                    raise stopped_error(e, folder, keep_snapshots, max_rollbacks) from None
                in_a_row += 1
                position, books = restore(snapshot, vae, trainer, generator, random_state=False)
                to = (position.epoch, position.step)
                rollbacks.append(
                    {"epoch": e.epoch, "step": e.step, "objective": e.objective,
                     "problem": e.problem, "to": to}
                )  # fmt: skip
                if group.is_main:
                    warnings.warn(
                        f"{e}; rolled back to epoch {to[0]}, step {to[1]} ({in_a_row} of at "
                        f"most {max_rollbacks} in a row)",
                        RuntimeWarning,
                        stacklevel=2,
                    )
                continue
            first = False
            check_same_parameters(group, list(zip(trainer.names, trainer.params(), strict=True)))
            row = {
                "epoch": position.epoch,
                "train_loss": position.total / position.seen,
                "valid_loss": math.nan,
                "seconds": position.seconds,
            }  # and "test_log_likelihood" after the epochs the anytime curve measures
            improved = False
            if valid is not None:
                row["valid_loss"] = mean_loss(valid_trainer, valid, batch_size, group)
                improved = row["valid_loss"] < books.best_loss
                if improved:
                    books.best_loss, books.bad_epochs = row["valid_loss"], 0
                    books.best_epoch = position.epoch
                    best_params = params_snapshot(vae)
                else:
                    books.bad_epochs += 1
            if setup.anytime.due(row["epoch"], epochs):
                row["test_log_likelihood"] = setup.anytime.measure(
                    setup.model_fn, setup.guide_fn, row["epoch"]
                )
            books.rows.append(row)
            stopped_early = patience is not None and books.bad_epochs >= patience
            position = Position(epoch=position.epoch + 1)
            # checkpoint.pt first: a crash before best.pt is written is repaired on resume.
            save_point(position)
            if writer is not None:
                if improved:
                    best = {"epoch": row["epoch"], "params": best_params, "config": run_config}
                    checkpoints.save(best, writer.best)
                writer.write_log(books.rows)
            if progress:
                print_epoch(row, epochs, valid is not None)
            if setup.max_minutes is not None and position.epoch <= epochs and not stopped_early:
                if time.monotonic() - started > 60 * setup.max_minutes:
                    out_of_time = True
                    break  # at the checkpoint just saved
    if best_params is not None and books.best_epoch != books.rows[-1]["epoch"]:
        restore_params(vae, best_params)
    return History(books.rows, books.best_epoch, stopped_early, rollbacks, out_of_time=out_of_time)
