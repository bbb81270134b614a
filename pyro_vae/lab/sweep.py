"""How the latent size shapes a VAE: train one model per size, measure each the same way.

For each latent size d, ``build(d)`` makes a fresh VAE, which is trained with the
same objective, budget, seed and data order, then measured on held-out data:

- log p(x) by importance sampling (K = ``num_samples``) with its Monte Carlo
  standard error;
- the ELBO and its two terms, ELBO = E_q[log p(x|z)] - KL(q(z|x) ‖ p(z))
  (:func:`pyro_vae.evaluate.elbo_terms`, KL in closed form);
- the active units, Var_x(E_q[z_u|x]) > 0.01 (Burda et al. 2016);
- the training time.

Typically log p(x) rises with d and then flattens, while the active units stop
growing: past a point the KL term's price makes the extra units collapse to the
prior, and a larger latent space buys nothing.

:class:`Sweep` holds the numbers and writes them as CSV, Markdown and a figure.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyro
import torch

from pyro_vae import plots
from pyro_vae._atomic import write_atomically
from pyro_vae._checks import check_output_path, check_positive_int, check_sizes
from pyro_vae.infer import evaluate
from pyro_vae.lab._experiment import (
    check_splits,
    experiment_options,
    format_number,
    train_one,
    warm_up,
    write_csv,
)
from pyro_vae.models.vae import VAE
from pyro_vae.train._fit import History, RunControls
from pyro_vae.train.options import FitOptions

__all__ = ["Sweep", "latent_size_sweep", "SWEEP_COLUMNS"]

#: the keys of each row of a :class:`Sweep`'s ``rows``, in table order
SWEEP_COLUMNS: tuple[str, ...] = (
    "latent_dim",
    "epochs",
    "seconds",
    "train_loss",
    "test_log_px",
    "test_log_px_mc_stderr",
    "test_elbo",
    "reconstruction",
    "kl",
    "active_units",
)


@dataclass
class Sweep:
    """What :func:`latent_size_sweep` measured.

    Attributes:
        rows: one dict per latent size, in ascending order, with the keys
            :data:`SWEEP_COLUMNS`: ``latent_dim``; ``epochs`` trained; ``seconds`` of
            training; ``train_loss`` (the last epoch's); in nats per test example
            ``test_log_px`` and its standard error ``test_log_px_mc_stderr`` (of the
            mean), ``test_elbo`` = ``reconstruction`` - ``kl``; ``active_units``.
        histories: the training history of each latent size.
        num_samples: K of the log p(x) estimate.
    """

    rows: list[dict[str, Any]]
    histories: dict[int, History] = field(default_factory=dict)
    num_samples: int = 1000
    columns: tuple[str, ...] = SWEEP_COLUMNS

    @property
    def latent_dims(self) -> list[int]:
        """The latent sizes, one per row, in the order they were trained."""
        return [row["latent_dim"] for row in self.rows]

    def markdown(self) -> str:
        """The table as Markdown, one row per latent size, nats per test example."""
        lines = [
            "| " + " | ".join(self.columns) + " |",
            "|" + "|".join("---" for _ in self.columns) + "|",
        ]
        for row in self.rows:
            lines.append("| " + " | ".join(format_number(row[c]) for c in self.columns) + " |")
        return "\n".join(lines) + "\n"

    def write(self, out: str | Path) -> list[Path]:
        """Writes sweep.csv, sweep.md and latent_size_sweep.png into the folder ``out``."""
        out = check_output_path("out", out, folder=True)
        out.mkdir(parents=True, exist_ok=True)
        text = self.markdown()
        md = write_atomically(out / "sweep.md", lambda f: f.write(text.encode()))
        return [
            write_csv(out / "sweep.csv", self.columns, self.rows),
            md,
            plots.save_latent_size_sweep(self, out / "latent_size_sweep.png"),
        ]


def _check_latent_dims(latent_dims: object) -> list[int]:
    dims = check_sizes("latent_dims", latent_dims)
    repeated = sorted({d for d in dims if dims.count(d) > 1})
    if repeated:
        raise ValueError(f"latent_dims must be distinct, got {repeated} more than once")
    return sorted(dims)


def _build(build: Callable[[int], VAE], latent_dim: int, seed: int) -> VAE:
    """``build(latent_dim)`` with the random stream at ``seed``, checked."""
    pyro.set_rng_seed(seed)
    vae = build(latent_dim)
    if not isinstance(vae, VAE):
        raise TypeError(f"build({latent_dim}) must return a pyro_vae.VAE, got {type(vae).__name__}")
    if vae.latent_dim != latent_dim:
        raise ValueError(
            f"build({latent_dim}) returned a VAE of latent_dim {vae.latent_dim}; it must build "
            f"the latent size it is given"
        )
    return vae


def _measure(vae: VAE, test: torch.Tensor, num_samples: int) -> dict[str, Any]:
    log_px, stderr = evaluate.log_likelihood(
        vae.model, vae.guide, test, num_samples, return_stderr=True
    )
    reconstruction, kl = evaluate.elbo_terms(vae.model, vae.guide, test, num_samples=10)
    return {
        "test_log_px": log_px.mean().item(),
        # the standard error of a mean of independent estimates
        "test_log_px_mc_stderr": stderr.pow(2).sum().sqrt().item() / len(test),
        "test_elbo": (reconstruction - kl).mean().item(),
        "reconstruction": reconstruction.mean().item(),
        "kl": kl.mean().item(),
        "active_units": evaluate.active_units(vae.guide, test),
    }


def latent_size_sweep(
    build: Callable[[int], VAE],
    train: torch.Tensor,
    test: torch.Tensor,
    latent_dims: Sequence[int],
    *,
    valid: torch.Tensor | None = None,
    options: FitOptions | None = None,
    num_samples: int = 1000,
    progress: bool = False,
    **settings: Any,
) -> Sweep:
    """Trains ``build(d)`` for every latent size d under identical conditions and measures each.

    Every model is built with the random stream seeded by ``seed`` and trained by
    :func:`pyro_vae.fit` with the same :class:`~pyro_vae.FitOptions` (``options``,
    or its fields as keywords: ``objective``, ``epochs``, ``batch_size``, ``lr``,
    ``binarize``, ``seed``, ``lr_schedule`` and the rest), so the data order and
    the binarisation draws are the same for every size. As in
    :func:`pyro_vae.compare`, the seed defaults to 0 and the validation loss to the
    closed-form-KL ELBO. With ``binarize``, ``valid`` and ``test`` are binarised
    once, with a generator seeded by ``seed``.

    Arguments:
        build: ``build(latent_dim) -> pyro_vae.VAE`` of that latent size.
        train, test: data ``(N, *event_shape)`` (intensities in [0, 1] with ``binarize``).
        latent_dims: distinct positive latent sizes (run in ascending order).
        valid: validation data; with it, each model keeps the parameters of its epoch of
            best validation ELBO.
        options: the training options of every size; the objective, if given, by
            name (each size makes its own), default ``"analytic-kl"``.
        num_samples: K of the importance-sampled test log p(x).
        progress: progress bars and per-epoch lines on stderr.
        **settings: fields of :class:`~pyro_vae.FitOptions`.

    Returns:
        the :class:`Sweep`, one row per latent size.
    """
    if not callable(build):
        raise TypeError(f"build must be a callable latent_dim -> pyro_vae.VAE, got {build!r}")
    dims = _check_latent_dims(latent_dims)
    options = FitOptions.given(options, settings, "latent_size_sweep")
    if options.objective is not None and not isinstance(options.objective, str):
        raise TypeError(
            f"objective must be a spec such as 'analytic-kl' or 'iwae:k=5' (each size makes "
            f"its own), got {options.objective!r}"
        )
    options = experiment_options(options, valid)
    num_samples = check_positive_int("num_samples", num_samples)
    if not isinstance(progress, bool):
        raise TypeError(f"progress must be True or False, got {progress!r}")
    seed = options.seed
    vaes = {d: _build(build, d, seed) for d in dims}
    for vae in vaes.values():
        check_splits(vae, {"train": train, "valid": valid, "test": test}, options.binarize)

    held_out = torch.Generator().manual_seed(seed)
    if options.binarize:
        from pyro_vae.data import binarize as draw

        valid = draw(valid, held_out) if valid is not None else None
        test = draw(test, held_out)
    # One throwaway step pays torch's one-time set-up, which would inflate the first time.
    warm_up(vaes[dims[0]], test)
    rows, histories = [], {}
    controls = RunControls(progress=progress)
    for d, vae in vaes.items():
        history = train_one(vae, train, valid, options, controls)
        vae.eval()
        pyro.set_rng_seed(seed)
        row = {
            "latent_dim": d,
            "epochs": len(history.rows),
            "seconds": sum(history.column("seconds")),
            "train_loss": history.rows[-1]["train_loss"],
            **_measure(vae, test, num_samples),
        }
        rows.append(row)
        histories[d] = history
    return Sweep(rows=rows, histories=histories, num_samples=num_samples)
