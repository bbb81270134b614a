"""The estimator comparison lab: one model, several objectives, the same everything else.

:func:`compare` trains copies of one VAE from the same initial weights, with the
same seed, data order, binarisation draws and budget (epochs), once per
objective, then measures each on the same held-out data:

- curves: the training objective and the validation ELBO per epoch;
- test bounds E[IWAE_K] for K = 1 (the ELBO), 5, 50, 500 and log p(x) by
  importance sampling with K = 5000, with its Monte Carlo standard error;
- the ELBO's two terms (reconstruction and KL) and the active units;
- wall time per epoch;
- gradient variance and signal-to-noise ratio of the guide's and the model's
  gradients against K, every estimator at the same parameters (those trained
  by the first objective), on the same mini-batch.

:class:`Comparison` holds the numbers and writes them as CSV, Markdown and figures.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyro
import pyro.infer
import pyro.optim
import pyro.poutine as poutine
import torch

from pyro_vae._checks import check_device, check_output_path, check_positive_int, check_sizes
from pyro_vae._subsets import shuffled_rows
from pyro_vae.infer import evaluate, gradients
from pyro_vae.infer import objectives as objectives_module
from pyro_vae.infer.objectives import ObjectiveSpec
from pyro_vae.lab._comparison import (
    BOUND_KS,
    GRADIENT_COLUMNS,
    TABLE_COLUMNS,
    Comparison,
    table_columns,
)
from pyro_vae.lab._experiment import (
    check_splits,
    experiment_options,
    train_one,
    warm_up,
)
from pyro_vae.models.vae import VAE
from pyro_vae.train._fit import History, RunControls
from pyro_vae.train.options import FitOptions

__all__ = ["Comparison", "compare", "TABLE_COLUMNS", "GRADIENT_COLUMNS"]

GRADIENT_KS = (1, 5, 50)
#: The objectives :func:`compare` and ``pyro-vae compare`` run when none are named.
DEFAULT_OBJECTIVES = "elbo,analytic-kl,iwae:k=5,iwae-dreg:k=5"


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "_", label).strip("_")


def _materialise(vae: VAE, x: torch.Tensor) -> None:
    """Runs the programs once so lazy layers get their shapes before weights are copied."""
    with torch.no_grad(), poutine.block():
        vae.model(x[:2])
        vae.guide(x[:2])


def _measure(vae: VAE, x: torch.Tensor, measures: _Measures) -> dict[str, Any]:
    """The test columns of one objective's row."""
    num_samples, batch_size = measures.num_samples, measures.eval_batch_size
    bounds = evaluate.iwae_bounds(vae.model, vae.guide, x, measures.bound_ks, batch_size=batch_size)
    log_px, stderr = evaluate.log_likelihood(
        vae.model, vae.guide, x, num_samples, batch_size=batch_size, return_stderr=True
    )
    reconstruction, kl = evaluate.elbo_terms(vae.model, vae.guide, x, num_samples=10)
    row = {f"test_iwae_{k}": b.mean().item() for k, b in bounds.items()}
    row.update(
        test_log_px=log_px.mean().item(),
        test_log_px_mc_stderr=stderr.pow(2).sum().sqrt().item() / len(x),
        reconstruction=reconstruction.mean().item(),
        kl=kl.mean().item(),
        active_units=evaluate.active_units(vae.guide, x),
    )
    return row


def compare(
    vae: VAE,
    train: torch.Tensor,
    *,
    valid: torch.Tensor,
    test: torch.Tensor,
    objectives: str | Sequence[str | ObjectiveSpec] = DEFAULT_OBJECTIVES,
    options: FitOptions | None = None,
    device: str | torch.device | None = None,
    out: str | Path | None = None,
    overwrite: bool = False,
    bound_ks: Sequence[int] = BOUND_KS,
    num_samples: int = 5000,
    gradient_ks: Sequence[int] = GRADIENT_KS,
    gradient_draws: int = 100,
    gradient_batch_size: int = 100,
    eval_batch_size: int | None = None,
    progress: bool = True,
    **settings: Any,
) -> Comparison:
    """Trains ``vae`` once per objective under identical conditions and measures each.

    Every run trains with the same :class:`~pyro_vae.FitOptions` (``options``, or
    its fields as keywords: ``epochs``, ``batch_size``, ``lr``, ``binarize``,
    ``seed``, ``lr_schedule``, ``adam_betas``, ``adam_eps``, ``clip_grad_norm``,
    ``patience`` and the rest), as :func:`pyro_vae.fit` would, except that the
    seed defaults to 0 and the validation loss to the closed-form-KL ELBO; the
    objective is each of ``objectives`` in turn, so ``objective`` and
    ``num_particles`` are left unset.

    Arguments:
        vae: the model; it is copied for every objective and left untrained.
        train, valid, test: data ``(N, *event_shape)``. With ``binarize``, intensities
            in [0, 1]: training batches are binarised afresh (dynamic), ``valid``,
            ``test`` and the gradient batch once, with ``seed``, the same for all.
        objectives: specs such as ``"elbo,iwae:k=5"`` or a list of specs.
        options: the training options of every run (default: fit's, as above).
        device: where to train, as :func:`pyro_vae.fit`.
        out: a folder for the run folders (``runs/<objective>``), the tables and figures.
        overwrite: replace a comparison already in ``out``.
        bound_ks: the K of the test bounds E[IWAE_K].
        num_samples: K of the test log p(x).
        gradient_ks, gradient_draws, gradient_batch_size: K values, draws per
            estimate and mini-batch size of the gradient statistics (no statistics
            when ``gradient_ks`` is empty); the batch is a random subset of ``train``
            drawn with ``seed`` (:func:`~pyro_vae.data.shuffled_rows`), not its first rows.
        eval_batch_size: test examples per evaluation pass (default: by memory bound).
        progress: progress bars and per-epoch lines on stderr.
        **settings: fields of :class:`~pyro_vae.FitOptions`.

    Returns:
        the :class:`Comparison`; with ``out`` it is also written there.
    """
    if not isinstance(vae, VAE):
        raise TypeError(f"compare needs a pyro_vae.VAE, got {type(vae).__name__}")
    specs = objectives_module.parse_list(objectives)
    options = _options(options, settings, valid)
    measures = _Measures.checked(
        bound_ks, num_samples, gradient_ks, gradient_draws, gradient_batch_size, eval_batch_size
    )
    if device is not None:
        check_device("device", device)
    for name, flag in (("overwrite", overwrite), ("progress", progress)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be True or False, got {flag!r}")
    check_splits(vae, {"train": train, "valid": valid, "test": test}, options.binarize)
    out = check_output_path("out", out, folder=True) if out is not None else None
    if out is not None and (out / "comparison.csv").exists() and not overwrite:
        raise FileExistsError(
            f"{out} already holds a comparison; choose another folder or overwrite"
        )

    pyro.set_rng_seed(options.seed)
    valid, test, gradient_x = _held_out(
        train, valid, test, options.binarize, options.seed, measures.gradient_batch_size
    )
    _materialise(vae, valid)
    warm_up(vae, valid)
    runs = RunControls(device=device, out=out, overwrite=True, progress=progress)
    rows, histories, trained = _train_and_measure(
        vae, specs, train, valid, test, options, measures, runs
    )
    reference = specs[0].label
    result = Comparison(
        rows=rows,
        columns=table_columns(measures.bound_ks),
        histories=histories,
        gradients=_gradient_rows(specs, trained[reference], gradient_x, measures, options.seed),
        num_samples=measures.num_samples,
        reference=reference,
    )
    if out is not None:
        result.write(out)
    return result


@dataclass(frozen=True)
class _Measures:
    """What compare measures after training: test bounds, log p(x), gradient statistics."""

    bound_ks: tuple[int, ...]
    num_samples: int
    gradient_ks: tuple[int, ...]
    gradient_draws: int
    gradient_batch_size: int
    eval_batch_size: int | None

    @classmethod
    def checked(
        cls,
        bound_ks: Sequence[int],
        num_samples: int,
        gradient_ks: Sequence[int],
        gradient_draws: int,
        gradient_batch_size: int,
        eval_batch_size: int | None,
    ) -> _Measures:
        ks = _ks("bound_ks", bound_ks)
        if not ks:
            raise ValueError("bound_ks must hold at least one K")
        return cls(
            ks,
            check_positive_int("num_samples", num_samples),
            _ks("gradient_ks", gradient_ks),
            check_positive_int("gradient_draws", gradient_draws),
            check_positive_int("gradient_batch_size", gradient_batch_size),
            None
            if eval_batch_size is None
            else check_positive_int("eval_batch_size", eval_batch_size),
        )


def _train_and_measure(
    vae: VAE,
    specs: Sequence[ObjectiveSpec],
    train: torch.Tensor,
    valid: torch.Tensor,
    test: torch.Tensor,
    options: FitOptions,
    measures: _Measures,
    runs: RunControls,
) -> tuple[list[dict[str, Any]], dict[str, History], dict[str, VAE]]:
    """Trains a copy of ``vae`` per objective from the same initial weights (run folders
    in ``runs.out / "runs"``), and measures each on ``test``."""
    initial = copy.deepcopy(vae.state_dict())
    rows, histories, trained = [], {}, {}
    for spec in specs:
        run_vae = copy.deepcopy(vae)
        run_vae.load_state_dict(initial)
        run_options = options.replace(
            objective=spec.make(), config=options.config | {"objective_spec": spec.label}
        )
        run_out = runs.out / "runs" / _slug(spec.label) if runs.out is not None else None
        history = train_one(
            run_vae, train, valid, run_options, dataclasses.replace(runs, out=run_out)
        )
        histories[spec.label], trained[spec.label] = history, run_vae
        run_vae.eval()
        pyro.set_rng_seed(options.seed)
        test_x = test.to(next(run_vae.parameters()).device)
        rows.append(_row(spec.label, history) | _measure(run_vae, test_x, measures))
    return rows, histories, trained


def _options(
    options: FitOptions | None, settings: dict[str, Any], valid: torch.Tensor
) -> FitOptions:
    """The training options of every run; the objective is left to ``objectives``."""
    options = FitOptions.given(options, settings, "compare")
    if options.objective is not None or options.num_particles is not None:
        raise ValueError(
            "compare trains each of its objectives= in turn: leave objective and "
            "num_particles unset (name the objectives, with their K, in objectives=)"
        )
    return experiment_options(options, valid)


def _ks(name: str, ks: Sequence[int]) -> tuple[int, ...]:
    """Distinct positive K, ascending (possibly none)."""
    return tuple(sorted(set(check_sizes(name, ks, allow_empty=True, indexed=False))))


def _held_out(
    train: torch.Tensor,
    valid: torch.Tensor,
    test: torch.Tensor,
    binarize: bool,
    seed: int,
    gradient_batch_size: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The validation, test and gradient batches, binarised once with ``seed`` if asked."""
    held_out = torch.Generator().manual_seed(seed)
    gradient_x = train[shuffled_rows(len(train), gradient_batch_size, seed=seed).to(train.device)]
    if binarize:
        from pyro_vae.data import binarize as draw

        valid, test = draw(valid, held_out), draw(test, held_out)
        gradient_x = draw(gradient_x, held_out)
    return valid, test, gradient_x


def _row(label: str, history: History) -> dict[str, Any]:
    """The training columns of one objective's row."""
    epochs = len(history.rows)
    return {
        "objective": label,
        "epochs": epochs,
        "seconds_per_epoch": sum(history.column("seconds")) / epochs,
        "train_loss": history.rows[-1]["train_loss"],
        "valid_elbo": -min(history.column("valid_loss")),
    }


def _gradient_rows(
    specs: Sequence[ObjectiveSpec], vae: VAE, x: torch.Tensor, measures: _Measures, seed: int
) -> list[dict[str, Any]]:
    """Gradient variance and SNR at ``vae``'s parameters: one study per objective family."""
    ks, draws = measures.gradient_ks, measures.gradient_draws
    x = x.to(next(vae.parameters()).device)
    families: dict[str, ObjectiveSpec] = {}
    for spec in specs:  # one gradient study per objective and options; K varies
        families.setdefault(ObjectiveSpec(spec.name, 1, spec.options).label, spec)
    rows = []
    for family, spec in families.items():
        for k in ks:
            pyro.set_rng_seed(seed)
            stats = gradients.gradient_stats(
                spec.make(num_particles=k), vae.model, vae.guide, x, draws
            )
            for group, s in stats.items():
                rows.append(
                    {"objective": family, "k": k, "group": group, "variance": s.variance,
                     "snr": s.snr, "mean_norm": s.mean_norm, "num_draws": s.num_draws}
                )  # fmt: skip
    return rows
