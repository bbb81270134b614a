"""Training: ``fit()`` runs stochastic variational inference over mini-batches, with logs,
checkpoints, exact resume and protection against non-finite steps.

Each step draws a mini-batch x of B examples and takes one SVI step (the
objective's ``loss_and_grads``, then Adam) with the model and guide scaled by
1/B, so the loss is the negative bound *per example*, in nats, whatever the
batch size:

    loss(x) = -(1/B) Σ_b bound(x_b)

and learning rates mean the same at every batch size. The step runs at the
speed of hand-written PyTorch (:mod:`pyro_vae.train._trainer`, :mod:`pyro_vae.infer._fused`):
one :class:`torch.optim.Adam`, a VAE's densities computed without tracing, and
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pyro_vae._checks import (
    check_output_path,
    check_positive_float,
    check_positive_int,
    check_tensor,
)
from pyro_vae.models.vae import VAE
from pyro_vae.train import checkpoints, distributed
from pyro_vae.train._anytime import AnytimeTest
from pyro_vae.train._epoch import NonFiniteLossError
from pyro_vae.train._history import History
from pyro_vae.train._run import Setup, run_training
from pyro_vae.train._run_folder import LOG_COLUMNS, RunFolder
from pyro_vae.train._setup import check_inputs, resolve_device
from pyro_vae.train.options import ON_NONFINITE, FitOptions, check_combination, programs

__all__ = [
    "History",
    "fit",
    "fit_checked",
    "RunControls",
    "LOG_COLUMNS",
    "NonFiniteLossError",
    "ON_NONFINITE",
]


def fit(
    model: VAE | Callable[..., Any],
    data: torch.Tensor,
    options: FitOptions | None = None,
    *,
    guide: Callable[..., Any] | None = None,
    valid: torch.Tensor | None = None,
    device: str | torch.device | None = None,
    out: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    max_rollbacks: int = 3,
    test: torch.Tensor | None = None,
    test_every: int | None = None,
    test_samples: int = 1000,
    max_minutes: float | None = None,
    progress: bool = True,
    **settings: Any,
) -> History:
    """Trains a VAE, or any Pyro model/guide pair, by stochastic variational inference.

    What to train is a :class:`~pyro_vae.FitOptions`, given as ``options`` or
    field by field as keywords (``objective``, ``num_particles``,
    ``valid_objective``, ``epochs``, ``batch_size``, ``lr``, ``binarize``,
    ``patience``, ``seed``, ``checkpoint_every``, ``on_nonfinite``,
    ``clip_grad_norm``, ``lr_schedule``, ``adam_betas``, ``adam_eps``, ``config``;
    each is documented there); keywords replace the fields of ``options``. A
    setting left as ``None`` takes its default in a new run and, with ``resume``,
    the value the run saved: a resumed run is the same experiment. The other
    arguments say how to run it and are not recorded.

    Arguments:
        model: a :class:`~pyro_vae.VAE`, or a Pyro model function taking a batch ``x``.
        data: training data ``(N, *event_shape)``.
        options: the run's :class:`~pyro_vae.FitOptions` (default: all defaults).
        guide: the guide function when ``model`` is a function (not with a VAE).
        valid: validation data; its loss is computed after each epoch, enables
            early stopping and ``best.pt``, and at the end the parameters of the
            best epoch are restored.
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
        max_rollbacks: with ``on_nonfinite="rollback"``, rollbacks in a row, without
            a checkpoint in between, before it gives up and raises.
        test: test data ``(N, *event_shape)`` for an anytime curve: their
            log-likelihood (:func:`pyro_vae.evaluate.log_likelihood`, K =
            ``test_samples``) goes into the log's ``test_log_likelihood`` column after
            every ``test_every``-th epoch and the last one. It draws from its own
            seeded generator, so training is the same with or without it.
        test_every: the period of the anytime curve, in epochs (given with ``test``).
        test_samples: K of the anytime test log-likelihood.
        max_minutes: a wall-clock budget: after the first epoch that ends past it,
            the run saves its checkpoint and stops (``History.out_of_time``); resume
            it to go on.
        progress: show a progress bar and one summary line per epoch on stderr.
        **settings: fields of :class:`~pyro_vae.FitOptions`.

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
    programs_ = programs(model, guide)
    asked = FitOptions.given(options, settings)
    controls = RunControls.checked(
        device=device, out=out, resume=resume, overwrite=overwrite,
        max_rollbacks=max_rollbacks, anytime=AnytimeTest.checked(test, test_every, test_samples),
        max_minutes=max_minutes, progress=progress,
    )  # fmt: skip
    data = check_tensor(data, "data")
    if valid is not None:
        valid = check_tensor(valid, "valid")
    check_combination(asked, valid, controls.out)
    return fit_checked(programs_, data, valid, asked, controls, inputs_checked=False)


@dataclass(frozen=True)
class RunControls:
    """How ``fit`` runs, as opposed to what it trains: not recorded in the run's config."""

    device: str | torch.device | None = None
    out: Path | None = None
    resume: bool = False
    overwrite: bool = False
    max_rollbacks: int = 3
    anytime: AnytimeTest = AnytimeTest()
    max_minutes: float | None = None
    progress: bool = True

    @classmethod
    def checked(cls, **controls: Any) -> RunControls:
        """The arguments of ``fit`` that say how to run, checked (``anytime`` already is)."""
        for name in ("resume", "overwrite", "progress"):
            if name in controls and not isinstance(controls[name], bool):
                raise TypeError(f"{name} must be True or False, got {controls[name]!r}")
        if controls.get("max_minutes") is not None:
            controls["max_minutes"] = check_positive_float("max_minutes", controls["max_minutes"])
        if "max_rollbacks" in controls:
            controls["max_rollbacks"] = check_positive_int(
                "max_rollbacks", controls["max_rollbacks"]
            )
        if controls.get("out") is not None:
            controls["out"] = check_output_path("out", controls["out"], folder=True)
        if controls.get("resume") and controls.get("out") is None:
            raise ValueError("resume needs the run folder: pass out=")
        if controls.get("resume") and controls.get("overwrite"):
            raise ValueError("resume continues the run in out and overwrite replaces it: give one")
        return cls(**controls)


def fit_checked(
    programs_: tuple[VAE | None, Callable[..., Any], Callable[..., Any]],
    data: torch.Tensor,
    valid: torch.Tensor | None,
    asked: FitOptions,
    controls: RunControls,
    *,
    inputs_checked: bool,
) -> History:
    """``fit`` after its arguments are checked: settles the options, takes the run folder,
    trains.

    With ``inputs_checked`` the caller has already checked ``data`` and ``valid``
    against the model, as the lab's experiments do once for all their runs
    (:func:`pyro_vae.lab._experiment.check_splits`); otherwise they are checked
    here (:func:`pyro_vae.train._setup.check_inputs`), once the options
    (``binarize``) are settled.
    """
    vae, model_fn, guide_fn = programs_
    device = resolve_device(controls.device, vae, data)
    group = distributed.init(device)
    device = distributed.local_device(device, group)
    folder = RunFolder(controls.out) if controls.out is not None else None
    with ExitStack() as held:
        state = None
        if folder is not None:  # one writer: rank 0 holds the folder until fit returns
            group.on_main(lambda: held.enter_context(folder.lock()), "the run folder's lock")
            check = lambda: folder.check(resume=controls.resume, overwrite=controls.overwrite)  # noqa: E731
            group.on_main(check, "the run folder")
        if controls.resume:
            where = "cpu" if group.distributed else device  # objects travel on the CPU
            state = group.on_main(
                lambda: checkpoints.load(folder.checkpoint, where), "the checkpoint"
            )
            settings = asked.resumed(state.get("config") or {}, folder.checkpoint)
        else:
            settings = asked.fresh()
        check_combination(settings, valid, controls.out)
        if vae is not None:
            vae.to(device)
        if not inputs_checked:
            check_inputs(vae, data, valid, settings.binarize)
        setup = Setup(
            vae, model_fn, guide_fn, settings, controls.max_rollbacks, device, group, folder,
            controls.anytime.to(device), controls.max_minutes,
        )  # fmt: skip
        return run_training(setup, data, valid, state, controls.progress)
