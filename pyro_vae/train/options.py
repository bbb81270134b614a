"""The options of a training run, checked once: :class:`FitOptions`.

One frozen object holds what defines a run (objective, budget, optimiser,
binarisation, seed, the handling of non-finite steps), checked when it is made.
:func:`pyro_vae.fit`, :func:`pyro_vae.compare` and
:func:`pyro_vae.sweep.latent_size_sweep` take it as ``options=`` (or its fields
as keywords), so one set of options trains a single model, a comparison of
estimators and a sweep alike::

    options = pv.FitOptions(epochs=50, lr_schedule="burda2015", adam_eps=1e-4, seed=0)
    pv.fit(vae, x, options, out="runs/vae")
    pv.compare(vae, x, valid=v, test=t, objectives="elbo,iwae:k=5", options=options)

A field left as ``None`` is "not given": a fresh run takes the default of
:mod:`pyro_vae._defaults`, a resumed run the value its checkpoint saved
(:mod:`pyro_vae.train._resume` decides which settings may change on resume and
records the changes).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyro.infer
import torch

from pyro_vae import _defaults
from pyro_vae._checks import check_positive_float, check_positive_int, check_seed
from pyro_vae.infer import objectives
from pyro_vae.models.vae import VAE
from pyro_vae.train import schedules
from pyro_vae.train._resume import settle, with_resume_record
from pyro_vae.train._setup import check_config, check_learning_rate

__all__ = ["FitOptions", "ON_NONFINITE", "SETTINGS", "programs", "check_combination"]

ON_NONFINITE = ("stop", "rollback")

# Settings saved in a run's config under the same names.
_RECORDED = (
    "objective", "valid_objective", "num_particles", "epochs", "batch_size", "lr", "binarize",
    "patience", "seed", "checkpoint_every", "on_nonfinite", "clip_grad_norm", "lr_schedule",
    "adam_betas", "adam_eps",
)  # fmt: skip


# Facts of the run that fit records itself, not settings of the caller's config.
_RUN_FACTS = ("world_size", "resumes")


def _check_betas(betas: object) -> tuple[float, float]:
    """Adam's (β₁, β₂): two numbers in [0, 1)."""
    if (
        not isinstance(betas, (tuple, list))
        or len(betas) != 2
        or not all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in betas)
        or not all(0 <= b < 1 for b in betas)
    ):
        raise ValueError(f"adam_betas must be two numbers in [0, 1), got {betas!r}")
    return (float(betas[0]), float(betas[1]))


def _is_spec(text: object) -> bool:
    """Whether ``text`` is an objective spec (not the class name of an ELBO object)."""
    try:
        objectives.parse(text)  # type: ignore[arg-type]
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class FitOptions:
    """The options of a training run: what to train, checked when made (frozen).

    Every field defaults to ``None``, "not given": a new run takes the default
    named below, a resumed run the value it saved. Given again on resume, the
    objective (and K), ``valid_objective``, ``binarize``, ``seed``, ``batch_size``,
    the optimiser's ``lr_schedule``, ``adam_betas`` and ``adam_eps`` and every key of
    ``config`` must equal the saved values (a ``ValueError`` names the first that
    differs); ``epochs``, ``lr``, ``patience``, ``checkpoint_every``,
    ``on_nonfinite`` and ``clip_grad_norm`` may change, and each change is appended
    to the ``"resumes"`` list of the run's ``config.json``.

    Attributes:
        objective: a name from :data:`pyro_vae.objectives.OBJECTIVES` with optional
            options (``"iwae:k=5"``, ``"elbo:beta=0.5,warmup_steps=1000"``), or any
            :class:`pyro.infer.ELBO`. The default, ``"analytic-kl"``, uses the closed-form KL.
        num_particles: samples of z per example, with an objective given by name
            (default: the spec's ``k``, else 1).
        valid_objective: the objective of the validation loss, by name or as an
            ELBO (default: the training objective).
        epochs: the total number of epochs; a resumed run continues up to it
            (default: 10).
        batch_size: examples per step, per process in a data-parallel run (default: 100).
        lr: Adam's learning rate (default: 1e-3; on resume, the run's own).
        binarize: draw x ~ Bernoulli(data) afresh for every mini-batch (dynamic
            binarisation); the data must then hold intensities in [0, 1] (default: False).
        patience: with validation data, stop after this many epochs without improvement.
        seed: seeds Python, NumPy, torch and Pyro (``pyro.set_rng_seed``) first
            (default: no seeding; the lab's experiments default to 0).
        checkpoint_every: also save ``checkpoint.pt`` every this many steps within
            an epoch (default: at the end of each epoch only).
        on_nonfinite: what a step with a NaN or infinite loss or gradient does; the
            step is never applied. ``"stop"`` (the default) raises
            :class:`~pyro_vae.NonFiniteLossError` (``checkpoint.pt`` keeps the
            last good state); ``"rollback"`` restores the last checkpoint (in memory,
            with or without a run folder), warns, and goes on with fresh random
            draws, up to ``fit``'s ``max_rollbacks`` times in a row before it stops.
        clip_grad_norm: clip the gradients' joint 2-norm to this before each update.
        lr_schedule: the learning rate of epoch e is ``lr`` times the schedule's factor
            (:mod:`pyro_vae.schedules`: ``"constant"``, the default, ``"burda2015"``,
            ``"geometric:growth=3,decay=0.5,stages=4"``); a schedule is a function
            of the epoch, so a resumed run goes on at the right rate.
        adam_betas: Adam's (β₁, β₂) (default: (0.9, 0.999)).
        adam_eps: Adam's ε (default: 1e-8; Burda et al. used 1e-4).
        config: extra JSON data saved in ``config.json`` and checkpoints.

    Raises:
        TypeError, ValueError: a field of the wrong type or out of range, named in
            the message.
    """

    objective: str | pyro.infer.ELBO | None = None
    num_particles: int | None = None
    valid_objective: str | pyro.infer.ELBO | None = None
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    binarize: bool | None = None
    patience: int | None = None
    seed: int | None = None
    checkpoint_every: int | None = None
    on_nonfinite: str | None = None
    clip_grad_norm: float | None = None
    lr_schedule: str | None = None
    adam_betas: tuple[float, float] | None = None
    adam_eps: float | None = None
    config: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Checks each given setting (``None`` passes)."""
        for name in ("epochs", "batch_size", "patience", "checkpoint_every", "num_particles"):
            value = getattr(self, name)
            if value is not None:
                check_positive_int(name, value)
        if self.lr is not None:
            check_learning_rate(self.lr)
        if self.clip_grad_norm is not None:
            check_positive_float("clip_grad_norm", self.clip_grad_norm)
        if self.adam_eps is not None:
            check_positive_float("adam_eps", self.adam_eps)
        if self.adam_betas is not None:
            object.__setattr__(self, "adam_betas", _check_betas(self.adam_betas))
        if self.lr_schedule is not None:
            schedules.parse(self.lr_schedule)
        check_seed(self.seed, optional=True)
        if self.binarize is not None and not isinstance(self.binarize, bool):
            raise TypeError(f"binarize must be True or False, got {self.binarize!r}")
        if self.on_nonfinite is not None and self.on_nonfinite not in ON_NONFINITE:
            raise ValueError(
                f"on_nonfinite must be one of {ON_NONFINITE}, got {self.on_nonfinite!r}"
            )
        for name in ("objective", "valid_objective"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, (str, pyro.infer.ELBO)):
                raise TypeError(f"{name} must be a name or a pyro.infer.ELBO, got {value!r}")
            if isinstance(value, str):
                objectives.parse(value)
        object.__setattr__(self, "config", check_config(self.config))

    @classmethod
    def given(
        cls, options: FitOptions | None, settings: dict[str, Any], who: str = "fit"
    ) -> FitOptions:
        """``options`` with the fields given as keywords (``settings``) replaced.

        A keyword of ``None`` is "not given" and leaves the field as it is.

        Raises:
            TypeError: ``options`` is not a :class:`FitOptions`, or a keyword is
                not one of its fields (the message lists them).
        """
        if options is not None and not isinstance(options, FitOptions):
            raise TypeError(
                f"{who}: options must be a pyro_vae.FitOptions, got {type(options).__name__}"
            )
        unknown = sorted(set(settings) - set(SETTINGS))
        if unknown:
            raise TypeError(
                f"{who}() got an unexpected keyword argument {unknown[0]!r}; the training "
                f"settings are {', '.join(SETTINGS)}"
            )
        changes = {name: value for name, value in settings.items() if value is not None}
        base = options if options is not None else cls()
        return base.replace(**changes) if changes else base

    def replace(self, **changes: Any) -> FitOptions:
        """A copy with the fields ``changes`` names replaced, checked again."""
        return dataclasses.replace(self, **changes)

    def fresh(self) -> FitOptions:
        """The settings of a new run: the defaults where nothing was given."""
        defaults = {
            "objective": objectives.DEFAULT_OBJECTIVE,
            "epochs": _defaults.EPOCHS,
            "batch_size": _defaults.BATCH_SIZE,
            "binarize": False,
            "on_nonfinite": _defaults.ON_NONFINITE,
            "lr_schedule": _defaults.LR_SCHEDULE,
            "adam_betas": _defaults.ADAM_BETAS,
            "adam_eps": _defaults.ADAM_EPS,
        }
        return self.replace(**{k: v for k, v in defaults.items() if getattr(self, k) is None})

    def resumed(self, saved: dict[str, Any], path: Path) -> FitOptions:
        """The settings of the run saved with config ``saved``, checked against those given.

        Raises:
            ValueError: a setting that defines the run differs from the saved one,
                or the run was trained with an ELBO object that was not given again.
        """
        given = {name: self._saved_form(name) for name in _RECORDED if name != "lr"}
        given |= {key: value for key, value in self.config.items() if key not in given}
        settled = settle(saved, given, path)
        for name in ("objective", "valid_objective"):
            saved_name = settled[name]
            if getattr(self, name) is None and saved_name is not None and not _is_spec(saved_name):
                raise ValueError(
                    f"cannot resume {path}: it was trained with an objective object "
                    f"({saved_name}); pass the same object again as {name}="
                )
        # Equal to the saved settings (settle checked it), in the saved spelling;
        # objects stay objects.
        changes = {name: settled[name] for name in given if name in _RECORDED}
        for name in ("objective", "valid_objective"):
            if isinstance(getattr(self, name), pyro.infer.ELBO):
                changes[name] = getattr(self, name)
            elif name in saved:
                changes[name] = saved[name]
        if "num_particles" in saved and not isinstance(self.objective, pyro.infer.ELBO):
            changes["num_particles"] = saved["num_particles"]
        if isinstance(self.objective, pyro.infer.ELBO):
            changes["num_particles"] = None
        config = {k: v for k, v in saved.items() if k not in (*_RECORDED, *_RUN_FACTS)}
        # A run saved before a setting existed trained with its default.
        return self.replace(**changes | {"config": config}).fresh()

    def _saved_form(self, name: str) -> Any:
        """A setting as a run's config saves it (an ELBO object by its class name)."""
        value = getattr(self, name)
        return type(value).__name__ if isinstance(value, pyro.infer.ELBO) else value

    def record(
        self,
        lr: float,
        num_particles: int,
        world_size: int,
        resumed_from: dict[str, Any] | None,
        at: tuple[int, int] = (1, 0),
    ) -> dict[str, Any]:
        """The run's config (``config.json``): every setting, the caller's config, and on a
        resume the saved record with this resume's changes appended."""
        record = {name: self._saved_form(name) for name in _RECORDED}
        record |= {"lr": lr, "num_particles": num_particles, "world_size": world_size}
        record |= self.config
        if resumed_from is None:
            return record
        return with_resume_record(resumed_from, {**resumed_from, **record}, *at)


#: The fields of :class:`FitOptions`, the training settings that ``fit``,
#: ``compare`` and ``latent_size_sweep`` also take as keywords.
SETTINGS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(FitOptions))


def programs(
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


def check_combination(settings: FitOptions, valid: torch.Tensor | None, out: Path | None) -> None:
    """Settings that need another argument: early stopping, checkpoints within epochs."""
    if settings.patience is not None and valid is None:
        raise ValueError("patience (early stopping) needs validation data: pass valid=")
    if settings.checkpoint_every is not None and out is None:
        if settings.on_nonfinite != "rollback":
            raise ValueError("checkpoint_every needs a run folder (out=) to save checkpoints in")
