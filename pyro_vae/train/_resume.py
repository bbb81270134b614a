"""What a resumed run keeps, what it may change, and the record of every change.

A run's checkpoint is the record of an experiment. Resuming continues that
experiment: the settings that define it (:data:`FIXED`: the objective and its
particle count, the validation objective, binarisation, the seed, and every key
of the caller's ``config``, such as the model a command-line run was built from)
are taken from the checkpoint, and a value given again must equal the saved one.
The settings of :data:`CHANGEABLE` (the epoch budget, the learning rate, early
stopping, checkpointing and the handling of non-finite steps) may change on
resume; each change is appended to the config's ``"resumes"`` list, so that
``config.json`` says what the run was and what was changed along the way.
The batch size is checked with the number of processes
(:func:`pyro_vae.train._state.check_resumable`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pyro.infer
import torch

from pyro_vae.infer import objectives

__all__ = [
    "FIXED",
    "CHANGEABLE",
    "objective_key",
    "settle",
    "conflict",
    "with_resume_record",
    "check_same_parameters",
]

FIXED = ("objective", "num_particles", "valid_objective", "binarize", "seed")
CHANGEABLE = ("epochs", "lr", "patience", "checkpoint_every", "on_nonfinite", "clip_grad_norm")
# The objective is compared as a whole (name, options and K); the batch size with the
# number of processes, which may change if the global batch stays the same.
_CHECKED_ELSEWHERE = ("objective", "num_particles", "batch_size")


def objective_key(objective: str | pyro.infer.ELBO | None, num_particles: int | None) -> Any:
    """What identifies an objective across spellings: ``(name and options, K)``.

    ``"iwae:k=3"``, and ``"iwae"`` with ``num_particles=3``, are the same
    objective; an ELBO object is known by its class and particle count. K is
    ``None`` where neither the spec nor ``num_particles`` states it.
    """
    if objective is None or isinstance(objective, pyro.infer.ELBO):
        name = None if objective is None else type(objective).__name__
        k = getattr(objective, "num_particles", None)
        return name, num_particles if num_particles is not None else k
    try:
        spec = objectives.parse(objective)
    except ValueError:  # a class name saved by a run trained with an ELBO object
        return objective, num_particles
    k = num_particles if num_particles is not None else spec.num_particles
    if num_particles is None and spec.num_particles == 1:
        k = None  # "iwae" alone does not say how many particles
    return dataclasses.replace(spec, num_particles=1).label, k


def _describe(key: str, value: Any) -> str:
    if key == "objective":
        name, k = value
        return f"{name} (K={k})"
    return repr(value)


def settle(
    saved: Mapping[str, Any],
    given: Mapping[str, Any],
    path: Path,
    label: Callable[[str], str] = str,
) -> dict[str, Any]:
    """The settings of a resumed run: the saved ones, checked against those given.

    Arguments:
        saved: the checkpoint's config.
        given: the caller's settings by config key; ``None`` means "not given".
            Keys of :data:`FIXED`, and any other key that is not in
            :data:`CHANGEABLE` (the caller's own config), must equal the saved
            values; keys of :data:`CHANGEABLE` replace them.
        path: the checkpoint, for messages.
        label: the name of a key in messages (the command line names its options).

    Returns:
        ``given`` with every ``None`` replaced by the saved value.

    Raises:
        ValueError: a fixed setting differs from the saved one; the message names
            it, the saved value and the new one.
    """
    if given.get("objective") is not None or given.get("num_particles") is not None:
        old = objective_key(saved.get("objective"), saved.get("num_particles"))
        new = objective_key(given.get("objective"), given.get("num_particles"))
        new = tuple(n if n is not None else o for n, o in zip(new, old, strict=True))
        if new != old:
            if given.get("objective") is None:  # K alone was given
                raise conflict(path, label("num_particles"), str(old[1]), str(new[1]), label)
            old_text, new_text = _describe("objective", old), _describe("objective", new)
            raise conflict(path, label("objective"), old_text, new_text, label)
    for key, value in given.items():
        fixed = key not in (*CHANGEABLE, *_CHECKED_ELSEWHERE)
        if fixed and value is not None and key in saved and not _equal(saved[key], value):
            raise conflict(path, label(key), repr(saved[key]), repr(value), label)
    return {key: saved.get(key) if value is None else value for key, value in given.items()}


def _equal(a: Any, b: Any) -> bool:
    """Equal as JSON data: tuples equal lists, 1 equals 1.0 (config.json cannot tell them)."""
    return json.loads(json.dumps(a)) == json.loads(json.dumps(b))


def conflict(
    path: Path, name: str, old: str, new: str, label: Callable[[str], str] = str
) -> ValueError:
    """The error of a resume given ``new`` for the setting ``name`` that was saved as ``old``."""
    changeable = ", ".join(label(key) for key in CHANGEABLE)
    return ValueError(
        f"cannot resume {path}: it was trained with {name} {old}, got {new}; a resumed run "
        f"keeps its settings (only {changeable} may change): leave {name} out, or start a "
        "new run"
    )


def with_resume_record(
    saved: Mapping[str, Any], config: Mapping[str, Any], epoch: int, step: int
) -> dict[str, Any]:
    """``config`` with the saved ``"resumes"`` and, if any setting changed, a new entry.

    The entry is ``{"epoch": e, "step": s, "changed": {key: [old, new], ...}}``:
    training went on from step ``s`` of epoch ``e`` with the new values.
    """
    resumes = [dict(r) for r in saved.get("resumes", [])]
    changed = {
        key: [saved.get(key), config.get(key)]
        for key in (*CHANGEABLE, "world_size")
        if key in config and saved.get(key) != config.get(key)
    }
    if changed:
        resumes.append({"epoch": epoch, "step": step, "changed": changed})
    return {**config, "resumes": resumes}


def check_same_parameters(
    saved: Mapping[str, torch.Tensor],
    current: Mapping[str, torch.Tensor],
    path: Path,
    action: str = "resume",
) -> None:
    """Refuses to resume (or load) into a model whose parameters differ from the checkpoint's.

    Raises:
        ValueError: one line naming the first parameter that is missing, extra, or
            of another shape.
    """
    for name, value in saved.items():
        if name not in current:
            problem = f"holds a parameter {name!r} that the model lacks"
        elif tuple(current[name].shape) != tuple(value.shape):
            problem = (
                f"holds {name!r} of shape {tuple(value.shape)}, the model's is "
                f"{tuple(current[name].shape)}"
            )
        else:
            continue
        raise ValueError(f"cannot {action} {path}: it is of another architecture: it {problem}")
    extra = [name for name in current if name not in saved]
    if extra:
        raise ValueError(
            f"cannot {action} {path}: it is of another architecture: the model has a "
            f"parameter {extra[0]!r} that the checkpoint lacks"
        )
