"""One epoch of training, resumable at any step, with every step checked before it is applied.

An epoch shuffles the training data with the data generator, then takes one
step per mini-batch: the loss and gradients, a check that both are finite
(optionally clipping the gradients' norm), and the optimizer's update. A
non-finite loss or gradient raises :class:`NonFiniteLossError` *before* the
update, so the parameters stay as they were.

The epoch can start part-way: from a :class:`~pyro_vae.train._state.Position`
saved mid-epoch it draws the same shuffle again from the generator's state at
the start of the epoch, puts the generator back where it was, and goes on with
the next batch, so the batches and their binarisations are those of a run that
never stopped.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pyro
import torch
from tqdm.auto import tqdm

from pyro_vae.train import distributed
from pyro_vae.train._run_folder import RunFolder
from pyro_vae.train._state import Position
from pyro_vae.train._trainer import Trainer

__all__ = [
    "NonFiniteLossError", "EpochRunner", "batches", "mean_loss", "print_epoch", "stopped_error",
]  # fmt: skip


class NonFiniteLossError(FloatingPointError):
    """A step's loss or gradient was NaN or infinite; the step was not applied.

    Attributes:
        epoch, step: where it happened (1-based).
        objective: the objective's name.
        problem: what was not finite, e.g. ``"the loss is nan"``.
    """

    def __init__(self, message: str, *, epoch: int, step: int, objective: str, problem: str):
        super().__init__(message)
        self.epoch, self.step, self.objective, self.problem = epoch, step, objective, problem


def batches(data: torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
    """Mini-batches of ``data`` in order, by slicing (for evaluation passes)."""
    for start in range(0, data.shape[0], batch_size):
        yield data[start : start + batch_size]


def mean_loss(
    trainer: Trainer, data: torch.Tensor, batch_size: int, group: distributed.Group
) -> float:
    """The loss per example of ``data``, without gradients; each process takes its share."""
    rows = distributed.shard_range(data.shape[0], group)
    total = 0.0
    for batch in batches(data[rows.start : rows.stop], batch_size):
        total += trainer.loss(batch) * batch.shape[0]
    if group.distributed:
        summed = torch.tensor([total], dtype=torch.float64, device=data.device)
        total = float(group.all_reduce_sum(summed, "the validation loss")[0])
    return total / data.shape[0]


@dataclass
class EpochRunner:
    """Runs epochs of SVI steps over ``data``.

    Attributes:
        trainer: the prepared :class:`~pyro_vae.train._trainer.Trainer`.
        data: training data ``(N, *event_shape)``, on the training device.
        batch_size: examples per step (the global batch in a data-parallel run; the
            trainer keeps its process's share).
        generator: the data generator (shuffle and binarisation draws).
        binarize: draw each batch as x ~ Bernoulli(batch) (dynamic binarisation).
        objective: the objective's name, for reports.
        epochs: the run's number of epochs, for the progress bar.
        clip_grad_norm: clip the gradients' joint 2-norm to this (``None``: no clipping).
        checkpoint_every: call ``on_checkpoint`` every this many steps within an epoch.
        progress: show a progress bar on stderr (hidden when stderr is not a terminal).
    """

    trainer: Trainer
    data: torch.Tensor
    batch_size: int
    generator: torch.Generator
    binarize: bool
    objective: str
    epochs: int
    clip_grad_norm: float | None = None
    checkpoint_every: int | None = None
    progress: bool = True

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.data.shape[0] / self.batch_size)

    def run(
        self,
        position: Position,
        *,
        validate_first: bool = False,
        on_checkpoint: Callable[[Position], None] | None = None,
    ) -> Position:
        """Trains from ``position`` to the end of its epoch; returns the finished position.

        ``position`` is updated as steps are taken, so after an exception it tells
        how far the epoch got. With ``validate_first``, the first step runs with
        Pyro's distribution checks on. ``on_checkpoint(position)`` is called every
        ``checkpoint_every`` steps, but not after the last step (the caller saves
        the end of the epoch itself).
        """
        order, first = self._order(position), position.step + 1
        tic = time.perf_counter()
        with tqdm(
            total=self.steps_per_epoch,
            initial=position.step,
            desc=f"epoch {position.epoch}/{self.epochs}",
            leave=False,
            disable=None if self.progress else True,  # None: hidden when not a terminal
            file=sys.stderr,
        ) as bar:
            for step in range(position.step + 1, self.steps_per_epoch + 1):
                batch = self.data[order[(step - 1) * self.batch_size : step * self.batch_size]]
                if self.binarize:
                    batch = torch.bernoulli(batch, generator=self.generator)
                if validate_first and step == first:
                    with pyro.validation_enabled(True):
                        loss = self.trainer.loss_and_grads(batch)
                else:
                    loss = self.trainer.loss_and_grads(batch)
                self._check(loss, position.epoch, step)
                self.trainer.apply()
                position.step = step
                position.total += loss * batch.shape[0]
                position.seen += batch.shape[0]
                position.seconds += time.perf_counter() - tic
                tic = time.perf_counter()
                if not bar.disable:
                    bar.update()
                    bar.set_postfix(loss=f"{position.total / position.seen:.3f}", refresh=False)
                every = self.checkpoint_every
                if on_checkpoint and every and step % every == 0 and step < self.steps_per_epoch:
                    on_checkpoint(position)
                    tic = time.perf_counter()  # saving is not training time
        return position

    def _order(self, position: Position) -> torch.Tensor:
        """The epoch's shuffle; mid-epoch, drawn again from the state the epoch began with."""
        n, device = self.data.shape[0], self.generator.device
        if position.step == 0:
            position.epoch_rng = self.generator.get_state()
            order = torch.randperm(n, generator=self.generator, device=device)
        else:
            now = self.generator.get_state()
            self.generator.set_state(position.epoch_rng.cpu())
            order = torch.randperm(n, generator=self.generator, device=device)
            self.generator.set_state(now)
        return order.to(self.data.device)

    def _check(self, loss: float, epoch: int, step: int) -> None:
        problem = self.trainer.check_and_clip(loss, self.clip_grad_norm)
        if problem is not None:
            raise NonFiniteLossError(
                f"epoch {epoch}, step {step} ({self.objective}): {problem}; "
                "the step was not applied",
                epoch=epoch,
                step=step,
                objective=self.objective,
                problem=problem,
            )


def print_epoch(row: dict[str, float], epochs: int, with_valid: bool) -> None:
    valid_text = f"  valid {row['valid_loss']:.3f}" if with_valid else ""
    if not math.isnan(row.get("test_log_likelihood", math.nan)):
        valid_text += f"  test log p(x) {row['test_log_likelihood']:.2f}"
    tqdm.write(
        f"epoch {row['epoch']}/{epochs}  train {row['train_loss']:.3f}{valid_text}  "
        f"({row['seconds']:.1f} s)",
        file=sys.stderr,
    )


def stopped_error(
    e: NonFiniteLossError, folder: RunFolder | None, rolled_back: bool, max_rollbacks: int
) -> NonFiniteLossError:
    """The error that ends a run on a non-finite step, saying what is kept and what to try."""
    why = f" after {max_rollbacks} rollbacks in a row" if rolled_back else ""
    if folder is not None and folder.checkpoint.exists():
        kept = f"{folder.checkpoint} holds the last good state"
    elif folder is not None:
        kept = f"the parameters are those before this step (no checkpoint in {folder.path} yet)"
    else:
        kept = "the parameters are those before this step"
    message = (
        f"{e}. Training stopped{why}; {kept}. Resuming replays the same draws: lower lr, "
        "set clip_grad_norm, or use on_nonfinite='rollback'"
    )
    return NonFiniteLossError(
        message, epoch=e.epoch, step=e.step, objective=e.objective, problem=e.problem
    )
