"""Training: ``fit()`` runs stochastic variational inference over mini-batches, with logs,
checkpoints and resume.

Each step draws a mini-batch x of B examples and takes one SVI step (the
objective's ``loss_and_grads``, then Adam) with the model and guide scaled by
1/B, so the loss is the negative bound *per example*, in nats, whatever the
batch size:

    loss(x) = -(1/B) Σ_b bound(x_b)

and learning rates mean the same at every batch size. The step runs at the
speed of hand-written PyTorch (:mod:`pyro_vae._trainer`, :mod:`pyro_vae._fused`):
one ``torch.optim.Adam``, a VAE's densities computed without tracing, and
Pyro's distribution checks on for the first step of a run only (the data are
checked once, up front, and every loss is checked to be finite). A run folder (``out``)
receives ``log.csv`` (one row per epoch), ``config.json``, ``checkpoint.pt``
(the state after the last finished epoch, for resuming) and ``best.pt`` (the
parameters with the best validation loss).
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyro
import pyro.distributions as dist
import pyro.infer
import pyro.poutine as poutine
import torch
from tqdm.auto import tqdm

from . import checkpoints, objectives
from ._checks import check_data, check_positive_float, check_positive_int
from ._trainer import Trainer
from .vae import VAE

__all__ = ["History", "fit", "LOG_COLUMNS"]

LOG_COLUMNS = ("epoch", "train_loss", "valid_loss", "seconds")
CHECKPOINT = "checkpoint.pt"
BEST = "best.pt"


@dataclass
class History:
    """What ``fit`` did: one row per finished epoch, as written to ``log.csv``.

    Attributes:
        rows: dicts with keys ``epoch``, ``train_loss`` (negative bound per example,
            averaged over the epoch's steps), ``valid_loss`` (the same on the
            validation data after the epoch, or NaN) and ``seconds`` (training time).
        best_epoch: the epoch of the lowest validation loss, or ``None`` without validation.
        stopped_early: whether early stopping ended the run.
    """

    rows: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int | None = None
    stopped_early: bool = False

    def column(self, name: str) -> list[float]:
        """The values of one column, one per epoch."""
        if name not in LOG_COLUMNS:
            raise ValueError(f"unknown column {name!r}; choose one of: {', '.join(LOG_COLUMNS)}")
        return [row[name] for row in self.rows]


def _batches(
    data: torch.Tensor,
    batch_size: int,
    *,
    generator: torch.Generator | None = None,
    binarize: bool = False,
) -> Iterator[torch.Tensor]:
    """Mini-batches of ``data`` by indexing (no copies of the whole set), drawn fresh.

    With a ``generator`` the order is shuffled by it; with ``binarize``, each batch
    is one Bernoulli draw of its intensities from it, so the binarisation changes
    every epoch (dynamic binarisation). The generator is the data's own, apart
    from the one that draws particles, so that every objective trained with the
    same seed sees the same batches.
    """
    n = data.shape[0]
    order = None
    if generator is not None:
        order = torch.randperm(n, generator=generator, device=generator.device).to(data.device)
    for start in range(0, n, batch_size):
        batch = (
            data[order[start : start + batch_size]]
            if order is not None
            else data[start : start + batch_size]
        )
        yield torch.bernoulli(batch, generator=generator) if binarize else batch


def _data_generator(device: torch.device) -> torch.Generator:
    """The generator of batch order and binarisation, seeded from torch's global one."""
    seed = int(torch.randint(0, 2**62, (1,)).item())
    return torch.Generator(device=device).manual_seed(seed)


def _resolve_device(device: str | torch.device | None, vae: VAE | None, data: torch.Tensor):
    if device is None:
        if vae is not None:
            first = next(vae.parameters(), None)
            return first.device if first is not None else data.device
        return data.device
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} was asked for, but CUDA is not available")
    return device


def _event_shape(vae: VAE, device: torch.device) -> torch.Size:
    with torch.no_grad():
        return vae.decode(vae.sample_z(1).to(device)).event_shape


def _params_snapshot(vae: VAE | None) -> dict[str, torch.Tensor]:
    if vae is not None:
        return {k: v.detach().clone() for k, v in vae.state_dict().items()}
    return {k: v.detach().clone() for k, v in pyro.get_param_store().items()}


def _restore_params(vae: VAE | None, snapshot: dict[str, torch.Tensor]) -> None:
    if vae is not None:
        vae.load_state_dict(snapshot)
        return
    store = pyro.get_param_store()
    for name, value in snapshot.items():
        store[name] = value.to(store[name].device) if name in store else value


def _mean_loss(trainer: Trainer, data: torch.Tensor, batch_size: int) -> float:
    total = 0.0
    for batch in _batches(data, batch_size):
        total += trainer.loss(batch) * batch.shape[0]
    return total / data.shape[0]


def _objective(objective: str | pyro.infer.ELBO, num_particles: int | None) -> pyro.infer.ELBO:
    """An objective from a spec such as ``"iwae:k=5"``, or the ELBO given."""
    if isinstance(objective, pyro.infer.ELBO):
        if num_particles is not None:
            raise ValueError("num_particles goes with an objective given by name, not an ELBO")
        return objective
    if not isinstance(objective, str):
        raise TypeError(f"objective must be a name or a pyro.infer.ELBO, got {objective!r}")
    spec = objectives.parse(objective)
    if num_particles is None:
        return spec.make()
    if spec.num_particles not in (1, num_particles):
        raise ValueError(f"num_particles={num_particles} contradicts the objective {objective!r}")
    return spec.make(num_particles=num_particles)


def _objective_label(loss: pyro.infer.ELBO) -> str:
    return getattr(loss, "objective_name", "") or type(loss).__name__


def _check_finite(loss: float, epoch: int, step: int, objective: str) -> None:
    if not math.isfinite(loss):
        raise FloatingPointError(
            f"the loss of {objective} became {loss} at epoch {epoch}, step {step}; "
            "lower the learning rate or check the data"
        )


class _RunFolder:
    """The files of a run: config.json, log.csv and the checkpoints."""

    def __init__(self, out: str | Path) -> None:
        self.path = Path(out)
        self.checkpoint = self.path / CHECKPOINT
        self.best = self.path / BEST
        self.log = self.path / "log.csv"

    def start(self, config: dict[str, Any], *, resume: bool, overwrite: bool) -> None:
        if not resume and self.checkpoint.exists() and not overwrite:
            raise FileExistsError(
                f"{self.path} already holds a run ({CHECKPOINT}); resume it, "
                "choose another folder, or allow overwriting it"
            )
        if resume and not self.checkpoint.exists():
            raise FileNotFoundError(f"cannot resume: no {CHECKPOINT} in {self.path}")
        self.path.mkdir(parents=True, exist_ok=True)
        if not resume:
            for stale in (self.best, self.log):
                stale.unlink(missing_ok=True)
            with open(self.log, "w", newline="") as f:
                csv.writer(f).writerow(LOG_COLUMNS)
        tmp = self.path / ".config.json.tmp"
        tmp.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        tmp.replace(self.path / "config.json")

    def append(self, row: dict[str, float]) -> None:
        with open(self.log, "a", newline="") as f:
            csv.writer(f).writerow([row[c] for c in LOG_COLUMNS])


def fit(
    model: VAE | Callable[..., Any],
    data: torch.Tensor,
    *,
    guide: Callable[..., Any] | None = None,
    valid: torch.Tensor | None = None,
    objective: str | pyro.infer.ELBO = objectives.DEFAULT_OBJECTIVE,
    num_particles: int | None = None,
    valid_objective: str | pyro.infer.ELBO | None = None,
    epochs: int = 10,
    batch_size: int = 128,
    lr: float = 1e-3,
    binarize: bool = False,
    patience: int | None = None,
    seed: int | None = None,
    device: str | torch.device | None = None,
    out: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    config: dict[str, Any] | None = None,
    progress: bool = True,
) -> History:
    """Trains a VAE, or any Pyro model/guide pair, by stochastic variational inference.

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
        epochs: the total number of epochs (a resumed run continues up to it).
        batch_size: examples per step.
        lr: Adam's learning rate.
        binarize: draw x ~ Bernoulli(data) afresh for every mini-batch (dynamic
            binarisation); ``data`` must then hold intensities in [0, 1].
        patience: with ``valid``, stop after this many epochs without improvement.
        seed: seeds Python, NumPy, torch and Pyro (``pyro.set_rng_seed``) first.
        device: ``"cpu"`` or ``"cuda"``; the VAE and the data are moved there.
        out: run folder for ``log.csv``, ``config.json`` and checkpoints (none if ``None``).
        resume: continue the run saved in ``out``: parameters, optimizer,
            random-number state and history come from its ``checkpoint.pt``.
        overwrite: start afresh in an ``out`` that already holds a run.
        config: extra plain data (JSON-serialisable) saved in ``config.json`` and checkpoints.
        progress: show a progress bar and one summary line per epoch on stderr.

    Returns:
        the :class:`History` of all epochs, including those before a resume.
    """
    vae = model if isinstance(model, VAE) else None
    if vae is not None:
        if guide is not None:
            raise ValueError("guide must not be given with a VAE: the VAE provides its own")
        model_fn, guide_fn = vae.model, vae.guide
    else:
        if not callable(model) or not callable(guide):
            raise TypeError(
                "fit needs a pyro_vae.VAE, or a model function together with guide=<function>"
            )
        model_fn, guide_fn = model, guide
    epochs = check_positive_int("epochs", epochs)
    batch_size = check_positive_int("batch_size", batch_size)
    lr = check_positive_float("lr", lr)
    if patience is not None:
        patience = check_positive_int("patience", patience)
        if valid is None:
            raise ValueError("patience (early stopping) needs validation data: pass valid=")
    if resume and out is None:
        raise ValueError("resume needs the run folder: pass out=")
    loss = _objective(objective, num_particles)
    valid_loss = loss if valid_objective is None else _objective(valid_objective, None)

    device = _resolve_device(device, vae, check_data(data, "data"))
    _check_inputs(vae, data, valid, binarize, device)
    data = data.to(device)
    valid = valid.to(device) if valid is not None else None

    run_config = {
        "objective": objective if isinstance(objective, str) else type(objective).__name__,
        "valid_objective": (
            valid_objective
            if isinstance(valid_objective, str) or valid_objective is None
            else type(valid_objective).__name__
        ),
        "num_particles": loss.num_particles,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "binarize": binarize,
        "patience": patience,
        "seed": seed,
        **(config or {}),
    }
    folder = _RunFolder(out) if out is not None else None
    if seed is not None and not resume:
        pyro.set_rng_seed(seed)
    trainer = Trainer(model_fn, guide_fn, loss, lr, vae)
    valid_trainer = trainer if valid_loss is loss else Trainer(model_fn, guide_fn, valid_loss, lr)
    generator = _data_generator(device)

    if folder is not None:
        folder.start(run_config, resume=resume, overwrite=overwrite)
    history = History()
    best_loss, best_params, bad_epochs, start = math.inf, None, 0, 1
    if resume:
        state = checkpoints.load(folder.checkpoint, map_location=device)
        _load_training_state(state, vae, trainer, _first_batch(data, batch_size, binarize))
        if "data_rng_state" in state:
            generator.set_state(state["data_rng_state"].cpu())
        else:
            warnings.warn(
                f"{folder.checkpoint} holds no data-order state (written by an older "
                "pyro_vae): the resumed run sees other batches than an uninterrupted one",
                stacklevel=2,
            )
        history.rows = [dict(r) for r in state["history"]]
        history.best_epoch = state["best_epoch"]
        best_loss, bad_epochs = state["best_loss"], state["bad_epochs"]
        if folder.best.exists():
            best_params = checkpoints.load(folder.best, map_location=device)["params"]
        start = state["epoch"] + 1
        checkpoints.set_rng_state(state["rng_state"])
    else:
        trainer.prepare(_first_batch(data, batch_size, binarize))

    # Pyro's distribution checks cost about a tenth of a small step. The data were
    # checked above; the first step runs with the checks as configured, to catch
    # a model that builds invalid distributions, and every loss is checked finite.
    validate = dist.is_validation_enabled()
    with pyro.validation_enabled(False):
        for epoch in range(start, epochs + 1):
            tic = time.perf_counter()
            train_loss = _train_epoch(
                trainer,
                data,
                batch_size,
                generator=generator,
                binarize=binarize,
                epoch=epoch,
                epochs=epochs,
                objective=_objective_label(loss),
                progress=progress,
                validate_first=validate and epoch == start,
            )
            row = {
                "epoch": epoch,
                "train_loss": train_loss,
                "valid_loss": math.nan,
                "seconds": time.perf_counter() - tic,
            }
            if valid is not None:
                row["valid_loss"] = _mean_loss(valid_trainer, valid, batch_size)
                if row["valid_loss"] < best_loss:
                    best_loss, bad_epochs, history.best_epoch = row["valid_loss"], 0, epoch
                    best_params = _params_snapshot(vae)
                    if folder is not None:
                        checkpoints.save(
                            {"epoch": epoch, "params": best_params, "config": run_config},
                            folder.best,
                        )
                else:
                    bad_epochs += 1
            history.rows.append(row)
            if progress:
                valid_text = f"  valid {row['valid_loss']:.3f}" if valid is not None else ""
                tqdm.write(
                    f"epoch {epoch}/{epochs}  train {row['train_loss']:.3f}{valid_text}  "
                    f"({row['seconds']:.1f} s)",
                    file=sys.stderr,
                )
            if folder is not None:
                folder.append(row)
                checkpoints.save(
                    _training_state(
                        epoch, vae, trainer, generator, run_config, history, best_loss, bad_epochs
                    ),
                    folder.checkpoint,
                )
            if patience is not None and bad_epochs >= patience:
                history.stopped_early = True
                break
    if best_params is not None and history.best_epoch != history.rows[-1]["epoch"]:
        _restore_params(vae, best_params)
    return history


def _check_inputs(
    vae: VAE | None,
    data: torch.Tensor,
    valid: torch.Tensor | None,
    binarize: bool,
    device: torch.device,
) -> None:
    """Checks the data against the model before any training: dtype, event shape, support."""
    if vae is not None:
        vae.to(device)
        tensors = itertools.chain(vae.parameters(), vae.buffers())
        dtypes = {t.dtype for t in tensors if t.is_floating_point()}  # not index buffers
        if dtypes and dtypes != {data.dtype}:
            names = ", ".join(sorted(str(d) for d in dtypes))
            raise TypeError(
                f"data has dtype {data.dtype} but the VAE's parameters are {names}; convert "
                f"one of them (data.to({next(iter(dtypes))}) or vae.to({data.dtype}))"
            )
        event_shape = _event_shape(vae, device)
        check_data(
            data, "data", likelihood=None if binarize else vae.likelihood, event_shape=event_shape
        )
        if valid is not None:
            check_data(valid, "valid", likelihood=vae.likelihood, event_shape=event_shape)
    elif valid is not None:
        check_data(valid, "valid", event_shape=data.shape[1:])
    if binarize and not bool(((data >= 0) & (data <= 1)).all()):
        raise ValueError(
            "binarize=True draws x ~ Bernoulli(data): data must hold intensities in [0, 1], "
            f"found min {data.min().item():g}, max {data.max().item():g}"
        )


def _first_batch(data: torch.Tensor, batch_size: int, binarize: bool) -> torch.Tensor:
    """A batch to create parameters from, drawn without touching any generator."""
    batch = data[: min(batch_size, data.shape[0])]
    return (batch > 0.5).to(batch.dtype) if binarize else batch


def _train_epoch(
    trainer: Trainer,
    data: torch.Tensor,
    batch_size: int,
    *,
    generator: torch.Generator,
    binarize: bool,
    epoch: int,
    epochs: int,
    objective: str,
    progress: bool,
    validate_first: bool = False,
) -> float:
    """One pass over shuffled mini-batches; returns the mean loss per example.

    With ``validate_first``, the first step runs with Pyro's distribution checks on.
    """
    total, seen = 0.0, 0
    # disable=None hides the bar when stderr is not a terminal (logs, CI).
    with tqdm(
        total=math.ceil(data.shape[0] / batch_size),
        desc=f"epoch {epoch}/{epochs}",
        leave=False,
        disable=None if progress else True,
        file=sys.stderr,
    ) as bar:
        batches = _batches(data, batch_size, generator=generator, binarize=binarize)
        for step, batch in enumerate(batches, start=1):
            if validate_first and step == 1:
                with pyro.validation_enabled(True):
                    step_loss = trainer.loss_and_grads(batch)
            else:
                step_loss = trainer.loss_and_grads(batch)
            _check_finite(step_loss, epoch, step, objective)
            trainer.apply()
            total += step_loss * batch.shape[0]
            seen += batch.shape[0]
            if not bar.disable:
                bar.update()
                bar.set_postfix(loss=f"{total / seen:.3f}", refresh=False)
    return total / seen


def _training_state(
    epoch: int,
    vae: VAE | None,
    trainer: Trainer,
    generator: torch.Generator,
    config: dict[str, Any],
    history: History,
    best_loss: float,
    bad_epochs: int,
) -> dict[str, Any]:
    objective_state = getattr(trainer.objective, "state_dict", None)
    return {
        "epoch": epoch,
        "params": _params_snapshot(vae),
        "optim_state": trainer.state_dict(),
        "objective_state": objective_state() if callable(objective_state) else {},
        "rng_state": checkpoints.get_rng_state(),
        "data_rng_state": generator.get_state(),
        "config": config,
        "history": history.rows,
        "best_epoch": history.best_epoch,
        "best_loss": best_loss,
        "bad_epochs": bad_epochs,
    }


def _load_training_state(
    state: dict[str, Any], vae: VAE | None, trainer: Trainer, example: torch.Tensor
) -> None:
    """Restores parameters, optimizer and objective state into a prepared ``trainer``."""
    if vae is None:
        # Run the program once so that every pyro.param exists with its constraint,
        # then overwrite the values with the saved ones.
        with torch.no_grad(), poutine.block():
            trainer.guide(example)
            trainer.model(example)
    _restore_params(vae, state["params"])
    trainer.prepare(example)
    trainer.load_state_dict(state["optim_state"])
    objective = trainer.objective
    if state.get("objective_state") and hasattr(objective, "load_state_dict"):
        objective.load_state_dict(state["objective_state"])
