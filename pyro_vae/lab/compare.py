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
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyro
import pyro.infer
import pyro.optim
import pyro.poutine as poutine
import torch

from pyro_vae import plots
from pyro_vae._atomic import write_atomically
from pyro_vae._checks import (
    check_output_path,
    check_positive_int,
    check_sizes,
)
from pyro_vae._defaults import BATCH_SIZE, EPOCHS, LEARNING_RATE
from pyro_vae._subsets import shuffled_rows
from pyro_vae.infer import evaluate, gradients
from pyro_vae.infer import objectives as objectives_module
from pyro_vae.infer.objectives import ObjectiveSpec
from pyro_vae.lab._experiment import check_budget, format_number, warm_up, write_csv
from pyro_vae.models._data_checks import check_vae_data
from pyro_vae.models.vae import VAE
from pyro_vae.train._fit import History, fit

__all__ = ["Comparison", "compare", "TABLE_COLUMNS", "GRADIENT_COLUMNS"]

BOUND_KS = (1, 5, 50, 500)
GRADIENT_KS = (1, 5, 50)
GRADIENT_COLUMNS = ("objective", "k", "group", "variance", "snr", "mean_norm", "num_draws")
DEFAULT_OBJECTIVES = "elbo,analytic-kl,iwae:k=5,iwae-dreg:k=5"


def _table_columns(bound_ks: Sequence[int]) -> tuple[str, ...]:
    return (
        "objective",
        "epochs",
        "seconds_per_epoch",
        "train_loss",
        "valid_elbo",
        *(f"test_iwae_{k}" for k in bound_ks),
        "test_log_px",
        "test_log_px_mc_stderr",
        "reconstruction",
        "kl",
        "active_units",
    )


TABLE_COLUMNS = _table_columns(BOUND_KS)


@dataclass
class Comparison:
    """What :func:`compare` measured.

    Attributes:
        rows: one dict per objective with the keys of ``columns`` (nats per test
            example; ``test_iwae_1`` is the ELBO).
        columns: the table's columns, in order.
        histories: the training history of each objective, by label.
        gradients: one dict per (objective, K, group) with :data:`GRADIENT_COLUMNS`.
        num_samples: K of the log p(x) estimate.
        reference: the objective whose trained parameters the gradients were taken at.
    """

    rows: list[dict[str, Any]]
    columns: tuple[str, ...]
    histories: dict[str, History]
    gradients: list[dict[str, Any]] = field(default_factory=list)
    num_samples: int = 5000
    reference: str = ""

    @property
    def labels(self) -> list[str]:
        return [row["objective"] for row in self.rows]

    def bound_ks(self) -> list[int]:
        return [
            int(c.removeprefix("test_iwae_")) for c in self.columns if c.startswith("test_iwae_")
        ]

    def markdown(self) -> str:
        """The table as Markdown, one row per objective, numbers in nats per example."""
        header = "| " + " | ".join(self.columns) + " |"
        rule = "|" + "|".join("---" for _ in self.columns) + "|"
        lines = [header, rule]
        for row in self.rows:
            lines.append("| " + " | ".join(format_number(row[c]) for c in self.columns) + " |")
        return "\n".join(lines) + "\n"

    def gradients_markdown(self) -> str:
        """Gradient variance and SNR per objective, K and parameter group, as Markdown."""
        lines = [
            f"Gradients at the parameters trained with `{self.reference}`, "
            f"{self.gradients[0]['num_draws'] if self.gradients else 0} draws each.",
            "",
            "| objective | K | group | variance | SNR |",
            "|---|---|---|---|---|",
        ]
        for g in self.gradients:
            lines.append(
                f"| {g['objective']} | {g['k']} | {g['group']} | {g['variance']:.3g} | "
                f"{g['snr']:.3g} |"
            )
        return "\n".join(lines) + "\n"

    def write(self, out: str | Path) -> list[Path]:
        """Writes comparison.csv, comparison.md, gradients.csv and the figures into ``out``."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        written = [
            write_csv(out / "comparison.csv", self.columns, self.rows),
            write_csv(out / "gradients.csv", GRADIENT_COLUMNS, self.gradients),
        ]
        text = self.markdown() + "\n" + (self.gradients_markdown() if self.gradients else "")
        md = write_atomically(out / "comparison.md", lambda f: f.write(text.encode()))
        written.append(md)
        written.append(plots.save_comparison(self, out / "comparison.png"))
        if self.gradients:
            written.append(plots.save_gradient_stats(self.gradients, out / "gradients.png"))
        return written


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "_", label).strip("_")


def _materialise(vae: VAE, x: torch.Tensor) -> None:
    """Runs the programs once so lazy layers get their shapes before weights are copied."""
    with torch.no_grad(), poutine.block():
        vae.model(x[:2])
        vae.guide(x[:2])


def _measure(
    vae: VAE, x: torch.Tensor, bound_ks: tuple[int, ...], num_samples: int, batch_size: int | None
) -> dict[str, Any]:
    bounds = evaluate.iwae_bounds(vae.model, vae.guide, x, bound_ks, batch_size=batch_size)
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
    epochs: int = EPOCHS,
    batch_size: int = BATCH_SIZE,
    lr: float = LEARNING_RATE,
    binarize: bool = False,
    seed: int = 0,
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
) -> Comparison:
    """Trains ``vae`` once per objective under identical conditions and measures each.

    Arguments:
        vae: the model; it is copied for every objective and left untrained.
        train, valid, test: data ``(N, *event_shape)``. With ``binarize``, intensities
            in [0, 1]: training batches are binarised afresh (dynamic), ``valid``,
            ``test`` and the gradient batch once, with ``seed``, the same for all.
        objectives: specs such as ``"elbo,iwae:k=5"`` or a list of specs.
        epochs, batch_size, lr, seed, device: the training budget, as :func:`pyro_vae.fit`.
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

    Returns:
        the :class:`Comparison`; with ``out`` it is also written there.
    """
    if not isinstance(vae, VAE):
        raise TypeError(f"compare needs a pyro_vae.VAE, got {type(vae).__name__}")
    specs = objectives_module.parse_list(objectives)
    bound_ks, gradient_ks = _ks("bound_ks", bound_ks), _ks("gradient_ks", gradient_ks)
    if not bound_ks:
        raise ValueError("bound_ks must hold at least one K")
    num_samples = check_positive_int("num_samples", num_samples)
    gradient_draws = check_positive_int("gradient_draws", gradient_draws)
    gradient_batch_size = check_positive_int("gradient_batch_size", gradient_batch_size)
    check_budget(epochs, batch_size, lr, seed, device, eval_batch_size)
    for name, flag in (("binarize", binarize), ("overwrite", overwrite), ("progress", progress)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be True or False, got {flag!r}")
    _check_data(vae, {"train": train, "valid": valid, "test": test}, binarize)
    out = check_output_path("out", out, folder=True) if out is not None else None
    if out is not None and (out / "comparison.csv").exists() and not overwrite:
        raise FileExistsError(
            f"{out} already holds a comparison; choose another folder or overwrite"
        )

    pyro.set_rng_seed(seed)
    valid, test, gradient_x = _held_out(train, valid, test, binarize, seed, gradient_batch_size)
    _materialise(vae, valid)
    initial = copy.deepcopy(vae.state_dict())
    warm_up(vae, valid)
    budget = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "binarize": binarize}
    budget |= {"seed": seed, "device": device, "progress": progress}
    rows, histories, trained = [], {}, {}
    for spec in specs:
        run_vae = copy.deepcopy(vae)
        run_vae.load_state_dict(initial)
        run_out = out / "runs" / _slug(spec.label) if out is not None else None
        history = _train(run_vae, spec, train, valid, run_out, budget)
        histories[spec.label], trained[spec.label] = history, run_vae
        run_vae.eval()
        pyro.set_rng_seed(seed)
        test_x = test.to(next(run_vae.parameters()).device)
        rows.append(
            _row(spec.label, history)
            | _measure(run_vae, test_x, bound_ks, num_samples, eval_batch_size)
        )
    reference = specs[0].label
    gradient_rows = _gradient_rows(
        specs, trained[reference], gradient_x, gradient_ks, gradient_draws, seed
    )
    result = Comparison(
        rows=rows,
        columns=_table_columns(bound_ks),
        histories=histories,
        gradients=gradient_rows,
        num_samples=num_samples,
        reference=reference,
    )
    if out is not None:
        result.write(out)
    return result


def _ks(name: str, ks: Sequence[int]) -> tuple[int, ...]:
    """Distinct positive K, ascending (possibly none)."""
    return tuple(sorted(set(check_sizes(name, ks, allow_empty=True, indexed=False))))


def _check_data(vae: VAE, splits: dict[str, torch.Tensor], binarize: bool) -> None:
    """Each split against the VAE; with ``binarize``, intensities in [0, 1]."""
    for name, x in splits.items():
        check_vae_data(vae, x, name, support=not binarize)
        if binarize and not bool(((x >= 0) & (x <= 1)).all()):
            raise ValueError(
                f"binarize=True draws Bernoulli(intensity): {name} must hold intensities in "
                f"[0, 1], found min {x.min().item():g}, max {x.max().item():g}"
            )


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


def _train(
    vae: VAE,
    spec: ObjectiveSpec,
    train: torch.Tensor,
    valid: torch.Tensor,
    out: Path | None,
    budget: dict[str, Any],
) -> History:
    """Trains ``vae`` under one objective, validated on the analytic-KL ELBO."""
    pyro.clear_param_store()
    return fit(
        vae,
        train,
        valid=valid,
        objective=spec.make(),
        valid_objective="analytic-kl",
        out=out,
        overwrite=True,
        config={"objective_spec": spec.label},
        **budget,
    )


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
    specs: Sequence[ObjectiveSpec],
    vae: VAE,
    x: torch.Tensor,
    ks: tuple[int, ...],
    draws: int,
    seed: int,
) -> list[dict[str, Any]]:
    """Gradient variance and SNR at ``vae``'s parameters: one study per objective family."""
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
