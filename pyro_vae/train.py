"""Training: ``fit()`` runs stochastic variational inference over mini-batches, with logs,
checkpoints, exact resume and protection against non-finite steps.

Each step draws a mini-batch x of B examples and takes one SVI step (the
objective's ``loss_and_grads``, then Adam) with the model and guide scaled by
1/B, so the loss is the negative bound *per example*, in nats, whatever the
batch size:

    loss(x) = -(1/B) Σ_b bound(x_b)

and learning rates mean the same at every batch size. The step runs at the
speed of hand-written PyTorch (:mod:`pyro_vae._trainer`, :mod:`pyro_vae._fused`):
one ``torch.optim.Adam``, a VAE's densities computed without tracing, and
Pyro's distribution checks on for the first step of a run only (the data are
checked once, up front). Every step's loss and gradients are checked to be
finite before the update is applied.

A run folder (``out``) receives ``config.json``, ``log.csv`` (one row per
epoch), ``checkpoint.pt`` (the whole state after the last finished epoch, and
every ``checkpoint_every`` steps) and ``best.pt`` (the parameters with the best
validation loss). Resuming from ``checkpoint.pt`` continues exactly where it
stopped: on the CPU, 2 epochs, a crash, and 2 more give the parameters of 4
epochs straight, bit for bit (:mod:`pyro_vae._training_state`).

Launched by ``torchrun`` (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` set), ``fit``
trains data-parallel (:mod:`pyro_vae.distributed`, :mod:`pyro_vae._data_parallel`):
``batch_size`` is per process, each step's global batch of
``batch_size × world_size`` examples is split between the processes, the loss
and gradients are those per example of the global batch, and every process
ends with the same parameters. Rank 0 alone prints and writes the run folder;
validation is split between the processes and summed.
"""

from __future__ import annotations

import math
import sys
import warnings
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyro
import pyro.distributions as dist
import pyro.infer
import torch
from tqdm.auto import tqdm

from . import _defaults, checkpoints, distributed
from ._checks import check_data, check_output_path, check_positive_int
from ._data_parallel import check_same_parameters, check_same_setup, data_summary
from ._epoch import EpochRunner, NonFiniteLossError, mean_loss
from ._fit_settings import ON_NONFINITE, FitSettings
from ._fit_setup import (
    check_inputs,
    data_generator,
    first_batch,
    make_objective,
    objective_label,
    resolve_device,
)
from ._fit_start import already_trained, finished, print_resume, resume_run, start_run
from ._history import History
from ._run_folder import LOG_COLUMNS, RunFolder
from ._trainer import Trainer
from ._training_state import (
    Position,
    capture,
    params_snapshot,
    restore,
    restore_params,
)
from .vae import VAE

__all__ = ["History", "fit", "LOG_COLUMNS", "NonFiniteLossError", "ON_NONFINITE"]


def fit(
    model: VAE | Callable[..., Any],
    data: torch.Tensor,
    *,
    guide: Callable[..., Any] | None = None,
    valid: torch.Tensor | None = None,
    objective: str | pyro.infer.ELBO | None = None,
    num_particles: int | None = None,
    valid_objective: str | pyro.infer.ELBO | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    binarize: bool | None = None,
    patience: int | None = None,
    seed: int | None = None,
    device: str | torch.device | None = None,
    out: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    checkpoint_every: int | None = None,
    on_nonfinite: str | None = None,
    max_rollbacks: int = 3,
    clip_grad_norm: float | None = None,
    config: dict[str, Any] | None = None,
    progress: bool = True,
) -> History:
    """Trains a VAE, or any Pyro model/guide pair, by stochastic variational inference.

    A setting left as ``None`` takes its default in a new run and, with
    ``resume``, the value the run saved: a resumed run is the same experiment.
    Given again on resume, the objective (and K), ``valid_objective``,
    ``binarize``, ``seed``, ``batch_size`` and every key of ``config`` must equal
    the saved values (a ``ValueError`` names the first that differs); ``epochs``,
    ``lr``, ``patience``, ``checkpoint_every``, ``on_nonfinite`` and
    ``clip_grad_norm`` may change, and each change is appended to the config's
    ``"resumes"`` list in ``config.json``.

    Arguments:
        model: a :class:`~pyro_vae.VAE`, or a Pyro model function taking a batch ``x``.
        data: training data ``(N, *event_shape)``.
        guide: the guide function when ``model`` is a function (not with a VAE).
        valid: validation data; its loss is computed after each epoch, enables
            early stopping and ``best.pt``, and at the end the parameters of the
            best epoch are restored.
        objective: a name from :data:`pyro_vae.objectives.OBJECTIVES` with optional
            options (``"iwae:k=5"``, ``"elbo:beta=0.5,warmup_steps=1000"``), or any
            ``pyro.infer.ELBO``. The default, ``"analytic-kl"``, uses the closed-form KL.
        num_particles: samples of z per example, with an objective given by name
            (default: the spec's ``k``, else 1).
        valid_objective: the objective of the validation loss, by name or as an
            ELBO (default: the training objective).
        epochs: the total number of epochs; a resumed run continues up to it
            (default: 10).
        batch_size: examples per step, per process in a data-parallel run (default: 100).
        lr: Adam's learning rate (default: 1e-3; on resume, the run's own).
        binarize: draw x ~ Bernoulli(data) afresh for every mini-batch (dynamic
            binarisation); ``data`` must then hold intensities in [0, 1] (default: False).
        patience: with ``valid``, stop after this many epochs without improvement.
        seed: seeds Python, NumPy, torch and Pyro (``pyro.set_rng_seed``) first.
        device: ``"cpu"`` or ``"cuda"``; the VAE and the data are moved there.
            In a data-parallel run ``"cuda"`` means ``cuda:LOCAL_RANK``.
        out: run folder for ``log.csv``, ``config.json`` and checkpoints (none if ``None``).
            One process at a time writes it: another process is refused at once
            with :class:`~pyro_vae.RunFolderLocked`.
        resume: continue the run saved in ``out`` exactly where its ``checkpoint.pt``
            stopped: parameters, optimizer, objective counters, position in the
            data, random-number states and history. Give the same model and data;
            a model of another architecture is refused, naming the first parameter
            that differs. A run that has already trained its ``epochs`` (or stopped
            early) trains nothing and writes nothing (``History.nothing_to_do``).
        overwrite: start afresh in an ``out`` that already holds a run.
        checkpoint_every: also save ``checkpoint.pt`` every this many steps within
            an epoch (default: at the end of each epoch only).
        on_nonfinite: what a step with a NaN or infinite loss or gradient does; the
            step is never applied. ``"stop"`` (the default) raises
            :class:`NonFiniteLossError` (``checkpoint.pt`` keeps the last good state);
            ``"rollback"`` restores the last checkpoint (in memory, with or without
            ``out``), warns, and goes on with fresh random draws, up to
            ``max_rollbacks`` times in a row before it stops.
        max_rollbacks: rollbacks in a row, without a checkpoint in between, before
            ``"rollback"`` gives up and raises.
        clip_grad_norm: clip the gradients' joint 2-norm to this before each update.
        config: extra JSON data saved in ``config.json`` and checkpoints.
        progress: show a progress bar and one summary line per epoch on stderr.

    Returns:
        the :class:`History` of all epochs, including those before a resume.

    Raises:
        NonFiniteLossError: (a ``FloatingPointError``) a step was not finite and
            ``on_nonfinite`` is ``"stop"``, or rollbacks did not help.
        ValueError, TypeError: a bad argument or bad data, named in the message.
        FileExistsError, FileNotFoundError: ``out`` holds a run and neither
            ``resume`` nor ``overwrite`` is set; ``resume`` without a checkpoint.
        RunFolderLocked: (a ``BlockingIOError``) another process is writing ``out``.
        pyro_vae.distributed.PeerError: (a ``RuntimeError``) in a data-parallel run,
            another process stopped, hung past the timeout, or its parameters diverged.
    """
    vae, model_fn, guide_fn = _programs(model, guide)
    asked = FitSettings(
        objective=objective, num_particles=num_particles, valid_objective=valid_objective,
        epochs=epochs, batch_size=batch_size, lr=lr, binarize=binarize, patience=patience,
        seed=seed, checkpoint_every=checkpoint_every, on_nonfinite=on_nonfinite,
        clip_grad_norm=clip_grad_norm, config=config if config is not None else {},
    )  # fmt: skip
    max_rollbacks = check_positive_int("max_rollbacks", max_rollbacks)
    for name, flag in (("resume", resume), ("overwrite", overwrite)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be True or False, got {flag!r}")
    if out is not None:
        out = check_output_path("out", out, folder=True)
    if resume and out is None:
        raise ValueError("resume needs the run folder: pass out=")
    if resume and overwrite:
        raise ValueError("resume continues the run in out and overwrite replaces it: give one")
    _check_combination(asked, valid, out)
    device = resolve_device(device, vae, check_data(data, "data"))
    group = distributed.init(device)
    device = distributed.local_device(device, group)
    folder = RunFolder(out) if out is not None else None
    with ExitStack() as held:
        state = None
        if folder is not None:  # one writer: rank 0 holds the folder until fit returns
            group.on_main(lambda: held.enter_context(folder.lock()), "the run folder's lock")
            check = lambda: folder.check(resume=resume, overwrite=overwrite)  # noqa: E731
            group.on_main(check, "the run folder")
        if resume:
            where = "cpu" if group.distributed else device  # objects travel on the CPU
            state = group.on_main(
                lambda: checkpoints.load(folder.checkpoint, where), "the checkpoint"
            )
            settings = asked.resumed(state.get("config") or {}, folder.checkpoint)
        else:
            settings = asked.fresh()
        _check_combination(settings, valid, out)
        setup = _Setup(vae, model_fn, guide_fn, settings, max_rollbacks, device, group, folder)
        return _train(setup, data, valid, state, progress)


def _programs(
    model: VAE | Callable[..., Any], guide: Callable[..., Any] | None
) -> tuple[VAE | None, Callable[..., Any], Callable[..., Any]]:
    """The VAE (or ``None``), the model function and the guide function that ``fit`` trains."""
    if isinstance(model, VAE):
        if guide is not None:
            raise ValueError("guide must not be given with a VAE: the VAE provides its own")
        return model, model.model, model.guide
    if not callable(model) or not callable(guide):
        raise TypeError(
            "fit needs a pyro_vae.VAE, or a model function together with guide=<function>"
        )
    return None, model, guide


def _check_combination(settings: FitSettings, valid: torch.Tensor | None, out: Path | None) -> None:
    """Settings that need another argument: early stopping, checkpoints within epochs."""
    if settings.patience is not None and valid is None:
        raise ValueError("patience (early stopping) needs validation data: pass valid=")
    if settings.checkpoint_every is not None and out is None:
        if settings.on_nonfinite != "rollback":
            raise ValueError("checkpoint_every needs a run folder (out=) to save checkpoints in")


@dataclass(frozen=True)
class _Setup:
    """What ``fit`` settled before training: programs, settings, device, processes, folder."""

    vae: VAE | None
    model_fn: Callable[..., Any]
    guide_fn: Callable[..., Any]
    settings: FitSettings
    max_rollbacks: int
    device: torch.device
    group: distributed.Group
    folder: RunFolder | None


def _train(
    setup: _Setup,
    data: torch.Tensor,
    valid: torch.Tensor | None,
    state: dict[str, Any] | None,
    progress: bool,
) -> History:
    """Trains from the start, or from the checkpoint ``state``; writes the run folder."""
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
    lr = settings.lr or _defaults.LEARNING_RATE
    trainer = Trainer(setup.model_fn, setup.guide_fn, loss, lr, vae, group)
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
        trainer.optimizer.param_groups[0]["lr"],
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
    stopped_early = False
    # Pyro's distribution checks cost about a tenth of a small step. The data were
    # checked above; the first step runs with the checks as configured, to catch
    # a model that builds invalid distributions.
    validate, first = dist.is_validation_enabled(), True
    with pyro.validation_enabled(False):
        while position.epoch <= epochs and not stopped_early:
            try:
                runner.run(position, validate_first=validate and first, on_checkpoint=save_point)
            except NonFiniteLossError as e:
                if not keep_snapshots or in_a_row >= max_rollbacks:
                    raise _stopped(e, folder, keep_snapshots, max_rollbacks) from None
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
            }
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
                _print_epoch(row, epochs, valid is not None)
    if best_params is not None and books.best_epoch != books.rows[-1]["epoch"]:
        restore_params(vae, best_params)
    return History(books.rows, books.best_epoch, stopped_early, rollbacks)


def _print_epoch(row: dict[str, float], epochs: int, with_valid: bool) -> None:
    valid_text = f"  valid {row['valid_loss']:.3f}" if with_valid else ""
    tqdm.write(
        f"epoch {row['epoch']}/{epochs}  train {row['train_loss']:.3f}{valid_text}  "
        f"({row['seconds']:.1f} s)",
        file=sys.stderr,
    )


def _stopped(
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
