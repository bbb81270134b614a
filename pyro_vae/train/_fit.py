"""Training: ``fit()`` runs stochastic variational inference over mini-batches, with logs,
checkpoints, exact resume and protection against non-finite steps.

Each step draws a mini-batch x of B examples and takes one SVI step (the
objective's ``loss_and_grads``, then Adam) with the model and guide scaled by
1/B, so the loss is the negative bound *per example*, in nats, whatever the
batch size:

    loss(x) = -(1/B) Σ_b bound(x_b)

and learning rates mean the same at every batch size. The step runs at the
speed of hand-written PyTorch (:mod:`pyro_vae.train._trainer`, :mod:`pyro_vae.infer._fused`):
one ``torch.optim.Adam``, a VAE's densities computed without tracing, and
Pyro's distribution checks on for the first step of a run only (the data are
checked once, up front). Every step's loss and gradients are checked to be
finite before the update is applied.

A run folder (``out``) receives ``config.json``, ``log.csv`` (one row per
epoch), ``checkpoint.pt`` (the whole state after the last finished epoch, and
every ``checkpoint_every`` steps) and ``best.pt`` (the parameters with the best
validation loss). Resuming from ``checkpoint.pt`` continues exactly where it
stopped: on the CPU, 2 epochs, a crash, and 2 more give the parameters of 4
epochs straight, bit for bit (:mod:`pyro_vae.train._state`).

Launched by ``torchrun`` (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` set), ``fit``
trains data-parallel (:mod:`pyro_vae.distributed`, :mod:`pyro_vae.train._data_parallel`):
``batch_size`` is per process, each step's global batch of
``batch_size × world_size`` examples is split between the processes, the loss
and gradients are those per example of the global batch, and every process
ends with the same parameters. Rank 0 alone prints and writes the run folder;
validation is split between the processes and summed.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pyro
import pyro.infer
import torch

from pyro_vae._checks import check_data, check_output_path, check_positive_float, check_positive_int
from pyro_vae.models.vae import VAE
from pyro_vae.train import checkpoints, distributed
from pyro_vae.train._anytime import AnytimeTest
from pyro_vae.train._epoch import NonFiniteLossError
from pyro_vae.train._history import History
from pyro_vae.train._options import ON_NONFINITE, FitSettings, check_combination, programs
from pyro_vae.train._run import Setup, run_training
from pyro_vae.train._run_folder import LOG_COLUMNS, RunFolder
from pyro_vae.train._setup import resolve_device

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
    lr_schedule: str | None = None,
    adam_betas: tuple[float, float] | None = None,
    adam_eps: float | None = None,
    test: torch.Tensor | None = None,
    test_every: int | None = None,
    test_samples: int = 1000,
    max_minutes: float | None = None,
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
        lr_schedule: the learning rate of epoch e is ``lr`` times the schedule's factor
            (:mod:`pyro_vae.schedules`: ``"constant"``, the default, ``"burda2015"``,
            ``"geometric:growth=3,decay=0.5,stages=4"``); a schedule is a function
            of the epoch, so a resumed run goes on at the right rate.
        adam_betas: Adam's (β₁, β₂) (default: (0.9, 0.999)).
        adam_eps: Adam's ε (default: 1e-8; Burda et al. used 1e-4).
        test: test data: with ``test_every``, the test log-likelihood
            (:func:`pyro_vae.evaluate.log_likelihood`, K = ``test_samples``) goes into
            the log's ``test_log_likelihood`` column after every ``test_every``-th
            epoch and the last one, an anytime curve. It draws from its own seeded
            generator, so training is the same with or without it.
        test_every: see ``test``.
        test_samples: K of the anytime test log-likelihood.
        max_minutes: a wall-clock budget: after the first epoch that ends past it,
            the run saves its checkpoint and stops (``History.out_of_time``); resume
            it to go on. It says how to run, not what, and is not recorded.
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
    vae, model_fn, guide_fn = programs(model, guide)
    asked = FitSettings(
        objective=objective, num_particles=num_particles, valid_objective=valid_objective,
        epochs=epochs, batch_size=batch_size, lr=lr, binarize=binarize, patience=patience,
        seed=seed, checkpoint_every=checkpoint_every, on_nonfinite=on_nonfinite,
        clip_grad_norm=clip_grad_norm, lr_schedule=lr_schedule, adam_betas=adam_betas,
        adam_eps=adam_eps, config=config if config is not None else {},
    )  # fmt: skip
    anytime = AnytimeTest.checked(test, test_every, test_samples)
    if max_minutes is not None:
        max_minutes = check_positive_float("max_minutes", max_minutes)
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
    check_combination(asked, valid, out)
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
        check_combination(settings, valid, out)
        setup = Setup(
            vae, model_fn, guide_fn, settings, max_rollbacks, device, group, folder,
            anytime.to(device), max_minutes,
        )  # fmt: skip
        return run_training(setup, data, valid, state, progress)
