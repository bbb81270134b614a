"""Everything a run needs to go on exactly where it stopped, as plain data.

The state holds the parameters, Adam's moments, the objective's own counters
(KL warm-up), the position in the data (epoch, step, the data generator's
state at the start of the epoch and now, and the epoch's running loss), the
random-number states of Python, NumPy and torch (Pyro draws from these), the
history and the early-stopping bookkeeping. Restoring all of it and running on
gives the same parameters, bit for bit on the CPU, as never having stopped.

The same state, kept in memory, is what ``on_nonfinite="rollback"`` returns to;
a rollback restores everything but the random-number states, so the steps after
it draw other particles.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyro
import pyro.poutine as poutine
import torch

from pyro_vae.models.vae import VAE
from pyro_vae.train import checkpoints
from pyro_vae.train._trainer import Trainer

__all__ = [
    "Position",
    "Bookkeeping",
    "capture",
    "restore",
    "params_snapshot",
    "restore_params",
    "check_resumable",
    "best_params_on_resume",
]


@dataclass
class Position:
    """Where a run is in its data.

    Attributes:
        epoch: the epoch in progress (1-based).
        step: the mini-batches of it already taken.
        epoch_rng: the data generator's state when the epoch began (its shuffle
            is drawn again from it on resume); ``None`` before the epoch begins.
        total: Σ loss × batch size over the steps taken this epoch.
        seen: the examples seen this epoch.
        seconds: training time spent on this epoch so far.
    """

    epoch: int
    step: int = 0
    epoch_rng: torch.Tensor | None = None
    total: float = 0.0
    seen: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Bookkeeping:
    """What ``fit`` tracks across epochs besides the model: history and early stopping."""

    rows: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int | None = None
    best_loss: float = float("inf")
    bad_epochs: int = 0


def params_snapshot(vae: VAE | None) -> dict[str, torch.Tensor]:
    """Copies of the parameters: the VAE's state dict, or the param store's constrained values."""
    if vae is not None:
        return {k: v.detach().clone() for k, v in vae.state_dict().items()}
    return {k: v.detach().clone() for k, v in pyro.get_param_store().items()}


def restore_params(vae: VAE | None, snapshot: dict[str, torch.Tensor]) -> None:
    """Writes a :func:`params_snapshot` back (into the VAE's tensors, or the param store)."""
    if vae is not None:
        vae.load_state_dict(snapshot)
        return
    store = pyro.get_param_store()
    for name, value in snapshot.items():
        store[name] = value.to(store[name].device) if name in store else value


def capture(
    vae: VAE | None,
    trainer: Trainer,
    generator: torch.Generator,
    position: Position,
    books: Bookkeeping,
    config: dict[str, Any],
) -> dict[str, Any]:
    """The run's state as a dict of copies (plain data; safe to keep while training goes on).

    ``epoch`` is the last finished epoch, for readers of older checkpoints.
    """
    objective_state = getattr(trainer.objective, "state_dict", None)
    state = {
        "epoch": position.epoch - 1,
        "position": position.as_dict(),
        "params": params_snapshot(vae),
        "optim_state": copy.deepcopy(trainer.state_dict()),
        "objective_state": objective_state() if callable(objective_state) else {},
        "rng_state": checkpoints.get_rng_state(),
        "data_rng_state": generator.get_state(),
        "config": config,
        "history": copy.deepcopy(books.rows),
        "best_epoch": books.best_epoch,
        "best_loss": books.best_loss,
        "bad_epochs": books.bad_epochs,
    }
    if vae is None:
        # The optimizer works on the unconstrained tensors; storing them makes resume
        # exact (constrained -> unconstrained is not bit-exact for every constraint).
        store = pyro.get_param_store()
        state["unconstrained_params"] = {
            name: store._params[name].detach().clone() for name in store.keys()
        }
    return state


def restore(
    state: dict[str, Any],
    vae: VAE | None,
    trainer: Trainer,
    generator: torch.Generator,
    *,
    random_state: bool,
    lr: float | None = None,
) -> tuple[Position, Bookkeeping]:
    """Puts ``state`` back into the model, the (prepared) trainer and the data generator.

    The tensors the optimizer updates are overwritten in place, so the trainer
    goes on with them. With ``random_state``, the generators of Python, NumPy and
    torch are restored too (exact resume); a rollback leaves them running. With
    ``lr``, the optimizer continues at that learning rate instead of the saved one.
    """
    if vae is not None:
        vae.load_state_dict(state["params"])
    else:
        _restore_store(state)
    trainer.load_state_dict(copy.deepcopy(state["optim_state"]))
    if lr is not None:
        for group in trainer.optimizer.param_groups:
            group["lr"] = lr
    objective = trainer.objective
    if state.get("objective_state") and hasattr(objective, "load_state_dict"):
        objective.load_state_dict(state["objective_state"])
    generator.set_state(state["data_rng_state"].cpu())
    saved = state.get("position") or {"epoch": state["epoch"] + 1}
    position = Position(**saved)
    books = Bookkeeping(
        rows=[dict(r) for r in state["history"]],
        best_epoch=state["best_epoch"],
        best_loss=state["best_loss"],
        bad_epochs=state["bad_epochs"],
    )
    if random_state:
        checkpoints.set_rng_state(state["rng_state"])
    return position, books


def _restore_store(state: dict[str, Any]) -> None:
    store = pyro.get_param_store()
    unconstrained = state.get("unconstrained_params")
    if unconstrained is None:  # an older checkpoint: constrained values only
        restore_params(None, state["params"])
        return
    with torch.no_grad():
        for name, value in unconstrained.items():
            if name in store._params:  # in place: the optimizer holds this tensor
                store._params[name].copy_(value)
            else:  # first used late in the run; its constraint is not known yet
                store[name] = state["params"][name]


def materialize_program_params(trainer: Trainer, example: torch.Tensor) -> None:
    """Runs plain Pyro programs once so every :func:`pyro.param` exists with its constraint."""
    with torch.no_grad(), poutine.block():
        trainer.guide(example)
        trainer.model(example)


def check_resumable(
    state: dict[str, Any], data: torch.Tensor, batch_size: int, world_size: int, path: Path
) -> None:
    """Refuses to resume on other data or batches, which would silently break exactness.

    ``batch_size`` is per process. A data-parallel run may resume on another
    number of processes if the global batch (per process × processes) is the same.
    """
    shape = state.get("data_shape")
    if shape is not None and list(data.shape) != list(shape):
        raise ValueError(
            f"cannot resume {path}: it was trained on data of shape {tuple(shape)}, "
            f"got {tuple(data.shape)}"
        )
    config = state.get("config", {})
    saved, processes = config.get("batch_size"), config.get("world_size", 1)
    if saved is None or saved * processes == batch_size * world_size:
        return
    if processes == world_size == 1:
        raise ValueError(
            f"cannot resume {path}: it was trained with batch_size={saved}, got {batch_size}"
        )
    raise ValueError(
        f"cannot resume {path}: it was trained with batch_size={saved} on {processes} "
        f"process(es), a global batch of {saved * processes}; got batch_size={batch_size} "
        f"on {world_size}, a global batch of {batch_size * world_size}"
    )


def best_params_on_resume(
    path: Path, state: dict[str, Any], position: Position, device: torch.device
) -> dict[str, torch.Tensor] | None:
    """The parameters of the run's best epoch, from best.pt or, after a crash, the checkpoint."""
    best_epoch = state["best_epoch"]
    if best_epoch is None:
        return None
    if path.exists():
        try:
            best = checkpoints.load(path, map_location=device)
        except checkpoints.CheckpointError as e:
            warnings.warn(f"ignoring {path}: {e}", stacklevel=3)
        else:
            if best.get("epoch") == best_epoch:
                return best["params"]
    if position.step == 0 and state["epoch"] == best_epoch:
        # The run stopped after saving the checkpoint of its best epoch and before best.pt.
        checkpoints.save(
            {"epoch": best_epoch, "params": state["params"], "config": state["config"]},
            path,
        )
        return state["params"]
    warnings.warn(
        f"{path} does not hold the parameters of the best epoch ({best_epoch}); "
        "they will not be restored at the end of the run",
        stacklevel=3,
    )
    return None
