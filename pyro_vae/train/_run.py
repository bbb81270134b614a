"""One training run of ``fit``: from the start or a checkpoint to the last epoch, with the
save points, rollbacks, anytime test curve and wall-clock budget along the way.

``fit`` (:mod:`pyro_vae.train`) checks its arguments and data, settles the options
(:class:`~pyro_vae.train.options.FitOptions`), takes the run folder's lock and
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
from pyro_vae.train._run_folder import RunFolder
from pyro_vae.train._setup import (
    data_generator,
    first_batch,
    make_objective,
    objective_label,
)
from pyro_vae.train._start import already_trained, finished, print_resume, resume_run, start_run
from pyro_vae.train._state import Position, capture, params_snapshot, restore, restore_params
from pyro_vae.train._trainer import Trainer
from pyro_vae.train.options import FitOptions

__all__ = ["Setup", "Run", "run_training"]


@dataclass(frozen=True)
class Setup:
    """What ``fit`` settled before training: programs, settings, device, processes, folder."""

    vae: VAE | None
    model_fn: Callable[..., Any]
    guide_fn: Callable[..., Any]
    settings: FitOptions
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
    run = Run(setup, data, valid, progress)
    if state is not None:
        if run.resume(state):
            return run.already_trained()
    else:
        run.start()
    return run.train()


class Run:
    """A training run in progress: its trainer, position in the data, books and save points.

    It holds what the epochs change (the position, the books of validation losses,
    the best parameters, the last in-memory snapshot and the rollbacks in a row), so
    that each step of the loop is a method: :meth:`save_point` after each epoch (and
    every ``checkpoint_every`` steps), :meth:`roll_back` after a non-finite step,
    :meth:`end_epoch` for validation, the anytime test and the log.
    """

    def __init__(
        self, setup: Setup, data: torch.Tensor, valid: torch.Tensor | None, progress: bool
    ) -> None:
        self.started = time.monotonic()
        self.setup, self.settings, self.group = setup, setup.settings, setup.group
        self.vae, self.folder = setup.vae, setup.folder
        settings = self.settings
        self.loss = make_objective(settings.objective, settings.num_particles)
        self.valid_loss = (
            self.loss
            if settings.valid_objective is None
            else make_objective(settings.valid_objective, None)
        )
        self.data = data.to(setup.device)
        self.valid = valid.to(setup.device) if valid is not None else None
        self.writer = self.folder if self.group.is_main else None
        self.progress = progress and self.group.is_main
        self.keep_snapshots = settings.on_nonfinite == "rollback"
        self.snapshot: dict[str, Any] | None = None
        self.rollbacks: list[dict[str, Any]] = []
        self.in_a_row = 0
        self.saved_config: dict[str, Any] | None = None

    # ------------------------------------------------------------------ start and resume

    def _check_same_setup(self, resuming: bool) -> None:
        """In a data-parallel run, that every process was given the same run."""
        if not self.group.distributed:
            return
        s = self.settings
        check_same_setup(
            self.group,
            {"data": data_summary(self.data),
             "validation data": self.valid is not None and data_summary(self.valid),
             "batch_size": s.batch_size, "epochs": s.epochs,
             "objective": (objective_label(self.loss), self.loss.num_particles),
             "seed": s.seed, "resume": resuming, "binarize": s.binarize,
             "run folder": self.folder is not None},
        )  # fmt: skip

    def _make_trainers(self, saved_lr: float | None) -> None:
        """The trainer (and the validation one), the data order's generator, a first batch."""
        s = self.settings
        self.base_lr = s.lr or saved_lr or _defaults.LEARNING_RATE
        self.schedule = schedules.parse(s.lr_schedule)
        self.trainer = Trainer(
            self.setup.model_fn, self.setup.guide_fn, self.loss, self.base_lr, self.vae,
            self.group, betas=s.adam_betas, eps=s.adam_eps,
        )  # fmt: skip
        self.valid_trainer = (
            self.trainer
            if self.valid_loss is self.loss
            else Trainer(self.setup.model_fn, self.setup.guide_fn, self.valid_loss, 1.0)
        )
        # After the seed: a binarised first batch draws from the global stream.
        self.generator = data_generator(self.setup.device)
        self.example = first_batch(self.data, s.batch_size, s.binarize)

    def start(self) -> None:
        """A new run: seeds, builds the trainer and starts at epoch 1."""
        self._check_same_setup(resuming=False)
        if self.settings.seed is not None:
            pyro.set_rng_seed(self.settings.seed)
        self._make_trainers(None)
        self.position, self.books, self.best_params = start_run(
            self.trainer, self.vae, self.generator, self.example
        )

    def resume(self, state: dict[str, Any]) -> bool:
        """Restores the checkpoint ``state``; returns whether the run had already finished."""
        self._check_same_setup(resuming=True)
        self.saved_config = state["config"]
        self._make_trainers(state["config"].get("lr"))
        self.position, self.books, self.best_params = resume_run(
            state, self.folder, self.trainer, self.vae, self.generator, self.example,
            self.data, self.settings.batch_size, self.settings.lr, self.setup.device,
        )  # fmt: skip
        return finished(self.position, self.books, self.settings.epochs, self.settings.patience)

    def already_trained(self) -> History:
        """The history of a resumed run that had nothing left to do; nothing is written."""
        return already_trained(
            self.vae, self.folder, self.position, self.books, self.best_params,
            self.settings.epochs, self.writer,
        )  # fmt: skip

    def _open_folder(self) -> None:
        """Writes the run's config (and, on resume, the log up to the checkpoint)."""
        resumed = self.saved_config is not None
        self.run_config = self.settings.record(
            self.base_lr, self.loss.num_particles, self.group.world_size, self.saved_config,
            (self.position.epoch, self.position.step),
        )  # fmt: skip
        if self.writer is None:
            return
        self.writer.start(self.run_config, resume=resumed)
        if resumed:
            self.writer.write_log(self.books.rows)  # drops rows of work done after the checkpoint
            if self.progress:
                print_resume(self.folder, self.position, self.run_config)

    # ------------------------------------------------------------------ the epochs

    def train(self) -> History:
        """Trains the remaining epochs; returns the history of the whole run."""
        self._open_folder()
        s = self.settings
        runner = EpochRunner(
            self.trainer, self.data, s.batch_size * self.group.world_size, self.generator,
            s.binarize, objective_label(self.loss), s.epochs, clip_grad_norm=s.clip_grad_norm,
            checkpoint_every=s.checkpoint_every, progress=self.progress,
        )  # fmt: skip
        if self.keep_snapshots:
            self.snapshot = self._capture(self.position)
        stopped_early = out_of_time = False
        # Pyro's distribution checks cost about a tenth of a small step. The data were
        # checked above; the first step runs with the checks as configured, to catch
        # a model that builds invalid distributions.
        validate, first = dist.is_validation_enabled(), True
        with pyro.validation_enabled(False):
            while self.position.epoch <= s.epochs and not stopped_early:
                self.trainer.set_lr(self.base_lr * self.schedule.factor(self.position.epoch))
                try:
                    runner.run(
                        self.position,
                        validate_first=validate and first,
                        on_checkpoint=self.save_point,
                    )
                except NonFiniteLossError as e:
                    self.roll_back(e)
                    continue
                first = False
                stopped_early = self.end_epoch()
                if self._past_budget() and not stopped_early:
                    out_of_time = True
                    break  # at the checkpoint just saved
        books = self.books
        if self.best_params is not None and books.best_epoch != books.rows[-1]["epoch"]:
            restore_params(self.vae, self.best_params)
        return History(
            books.rows, books.best_epoch, stopped_early, self.rollbacks, out_of_time=out_of_time
        )

    def end_epoch(self) -> bool:
        """Validation, the anytime test, the save point and the log after an epoch.

        Returns whether early stopping ends the run here.
        """
        check_same_parameters(
            self.group, list(zip(self.trainer.names, self.trainer.params(), strict=True))
        )
        position, books, s = self.position, self.books, self.settings
        row = {
            "epoch": position.epoch,
            "train_loss": position.total / position.seen,
            "valid_loss": math.nan,
            "seconds": position.seconds,
        }  # and "test_log_likelihood" after the epochs the anytime curve measures
        improved = False
        if self.valid is not None:
            row["valid_loss"] = mean_loss(self.valid_trainer, self.valid, s.batch_size, self.group)
            improved = row["valid_loss"] < books.best_loss
            if improved:
                books.best_loss, books.bad_epochs = row["valid_loss"], 0
                books.best_epoch = position.epoch
                self.best_params = params_snapshot(self.vae)
            else:
                books.bad_epochs += 1
        anytime = self.setup.anytime
        if anytime.due(row["epoch"], s.epochs):
            row["test_log_likelihood"] = anytime.measure(
                self.setup.model_fn, self.setup.guide_fn, row["epoch"]
            )
        books.rows.append(row)
        stopped_early = s.patience is not None and books.bad_epochs >= s.patience
        self.position = Position(epoch=position.epoch + 1)
        # checkpoint.pt first: a crash before best.pt is written is repaired on resume.
        self.save_point(self.position)
        if self.writer is not None:
            if improved:
                best = {
                    "epoch": row["epoch"],
                    "params": self.best_params,
                    "config": self.run_config,
                }
                checkpoints.save(best, self.writer.best)
            self.writer.write_log(books.rows)
        if self.progress:
            print_epoch(row, s.epochs, self.valid is not None)
        return stopped_early

    def _past_budget(self) -> bool:
        """Whether the wall-clock budget is spent with epochs still to train."""
        budget = self.setup.max_minutes
        if budget is None or self.position.epoch > self.settings.epochs:
            return False
        return time.monotonic() - self.started > 60 * budget

    # ------------------------------------------------------------------ save points

    def _capture(self, at: Position) -> dict[str, Any]:
        return capture(self.vae, self.trainer, self.generator, at, self.books, self.run_config)

    def save_point(self, at: Position) -> None:
        """Saves ``checkpoint.pt`` (rank 0) and keeps the in-memory snapshot for rollbacks."""
        if self.folder is None and not self.keep_snapshots:
            return
        rank_states = None
        if self.folder is not None and self.group.distributed:  # the same on every process
            rank_states = self.group.all_gather_object(checkpoints.get_rng_state(), "random states")
        if self.writer is None and not self.keep_snapshots:
            return
        state = self._capture(at)
        state["data_shape"] = list(self.data.shape)
        if rank_states is not None:
            state["rank_rng_states"] = rank_states
        if self.writer is not None:
            checkpoints.save(state, self.writer.checkpoint)
        if self.keep_snapshots:
            self.snapshot, self.in_a_row = state, 0

    def roll_back(self, error: NonFiniteLossError) -> None:
        """Restores the last snapshot after a non-finite step, or stops the run.

        Raises:
            NonFiniteLossError: rollbacks are off, or ``max_rollbacks`` in a row failed.
        """
        max_rollbacks = self.setup.max_rollbacks
        if not self.keep_snapshots or self.in_a_row >= max_rollbacks:
            raise stopped_error(error, self.folder, self.keep_snapshots, max_rollbacks) from None
        self.in_a_row += 1
        self.position, self.books = restore(
            self.snapshot, self.vae, self.trainer, self.generator, random_state=False
        )
        to = (self.position.epoch, self.position.step)
        self.rollbacks.append(
            {"epoch": error.epoch, "step": error.step, "objective": error.objective,
             "problem": error.problem, "to": to}
        )  # fmt: skip
        if self.group.is_main:
            warnings.warn(
                f"{error}; rolled back to epoch {to[0]}, step {to[1]} ({self.in_a_row} of at "
                f"most {max_rollbacks} in a row)",
                RuntimeWarning,
                stacklevel=4,
            )
