"""Handlers of the ``pyro-vae`` commands that look inside a trained model.

``plot``, ``gaps``, ``anomaly`` and ``denoise`` rebuild a run's model from its
checkpoint and write their figures and numbers into the run folder (or
``--out``); ``sweep`` trains one model per latent size. Each writes its files
atomically, and a command that fails removes the files it created.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyro
import torch

from pyro_vae import data, plots
from pyro_vae._atomic import write_atomically
from pyro_vae._checks import check_output_path
from pyro_vae.analysis import applications, gaps
from pyro_vae.cli._analysis_args import FIGURES
from pyro_vae.cli._checks import OutputGuard
from pyro_vae.cli._runs import (
    build_vae,
    check_classes,
    eval_data,
    load_run,
    model_config,
    new_run_splits,
    pick_device,
)
from pyro_vae.lab import sweep
from pyro_vae.models.vae import VAE

__all__ = ["COMMANDS"]


def _write_json(path: Path, content: Any) -> Path:
    text = json.dumps(content, indent=2) + "\n"
    write_atomically(path, lambda f: f.write(text.encode()))
    return path


def _write_text(path: Path, text: str) -> Path:
    write_atomically(path, lambda f: f.write(text.encode()))
    return path


@contextlib.contextmanager
def _writing(out: Path) -> Iterator[None]:
    """Creates ``out``; if the block fails, removes what it created there."""
    with OutputGuard(out):
        out.mkdir(parents=True, exist_ok=True)
        yield


def _output_folder(args: argparse.Namespace) -> Path:
    """``--out``, or the folder of the checkpoint."""
    out = args.out if args.out is not None else str(Path(args.checkpoint).parent)
    return check_output_path("--out", out, folder=True)


class _Run:
    """A trained run as the analysis commands use it: the model, its config and its data."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.device = pick_device(args.device)
        self.out = _output_folder(args)
        pyro.set_rng_seed(args.seed)
        self.vae, self.config = load_run(args.checkpoint, self.device)
        self.image_shape = tuple(self.config["image_shape"])

    def data(self, *, all_classes: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """``--examples`` rows of ``--split`` and their labels, on the model's device: a
        class-balanced subset drawn with ``--seed``, classes taking turns
        (:func:`pyro_vae.data.subset_rows`), so its first rows are of different classes."""
        args, config = self.args, self.config
        x = eval_data(config, args.split, args.data_dir, all_classes=True)
        labels = data.load_labels(config["dataset"], args.split, root=args.data_dir)
        classes = None if all_classes else check_classes(config)
        keep = data.subset_rows(
            config["dataset"],
            args.split,
            args.examples,
            classes=classes,
            seed=args.seed,
            root=args.data_dir,
        )
        print(
            f"{len(keep)} {args.split} examples: a class-balanced subset drawn with "
            f"--seed {args.seed} (classes {sorted(labels[keep].unique().tolist())})"
        )
        return x[keep].to(self.device), labels[keep]


# --- plot ------------------------------------------------------------------------------------


def _figure_writers(
    vae: VAE, x: torch.Tensor, labels: torch.Tensor, shape: tuple[int, ...]
) -> dict[str, Callable[[Path], Path]]:
    return {
        "samples": lambda path: plots.save_samples(vae, shape, path),
        "reconstructions": lambda path: plots.save_reconstructions(vae, x, shape, path),
        "interpolations": lambda path: plots.save_interpolations(vae, x, shape, path),
        "traversals": lambda path: plots.save_traversals(vae, x, shape, path),
        "manifold": lambda path: plots.save_manifold(vae, shape, path),
        "latent-map": lambda path: plots.save_latent_map(vae, x, labels, path),
        "aggregate-posterior": lambda path: plots.save_aggregate_posterior(vae, x, path),
        "units": lambda path: plots.save_unit_diagnostics(vae, x, path),
    }


def _plot(args: argparse.Namespace) -> None:
    run = _Run(args)
    figures = list(args.figures)
    if "manifold" in figures and run.vae.latent_dim != 2:
        if figures != list(FIGURES):
            raise ValueError(
                f"--figures manifold needs a latent size of 2; this run's is {run.vae.latent_dim}"
            )
        figures.remove("manifold")
    x, labels = run.data()
    writers = _figure_writers(run.vae, x, labels, run.image_shape)
    with _writing(run.out):
        written = [writers[name](run.out / f"{name.replace('-', '_')}.png") for name in figures]
    print("wrote " + ", ".join(str(p) for p in written))


# --- gaps ------------------------------------------------------------------------------------


def _gaps(args: argparse.Namespace) -> None:
    run = _Run(args)
    x, _ = run.data()
    options = {} if args.steps is None else {"steps": args.steps}
    with _writing(run.out):
        local = gaps.fit_local_guides(run.vae, x, seed=args.seed, **options)
        result = gaps.inference_gaps(run.vae, x, num_samples=args.num_samples, local_guide=local)
        print(result.markdown())
        written = [
            _write_json(run.out / "gaps.json", result.summary()),
            plots.save_inference_gaps(result, run.out / "gaps.png"),
        ]
        if args.nuts:
            points = x[: args.nuts]
            samples = gaps.nuts_posterior(run.vae, points, seed=args.seed)
            report = gaps.compare_with_nuts(
                run.vae, points, samples, log_px=result.log_px[: args.nuts], local_guide=local
            )
            print(report.markdown())
            written.append(
                plots.save_posterior_comparison(
                    run.vae,
                    points,
                    samples,
                    run.out / "posteriors.png",
                    local_guide=local,
                    image_shape=run.image_shape,
                )
            )
    print("wrote " + ", ".join(str(p) for p in written))


# --- anomaly ---------------------------------------------------------------------------------


def _normal_classes(args: argparse.Namespace, config: dict[str, Any]) -> list[int]:
    normal = args.normal_classes if args.normal_classes is not None else check_classes(config)
    if normal is None:
        raise ValueError(
            "this run was trained on every class: give --normal-classes, or train with "
            "--classes to leave some classes out"
        )
    check_classes({**config, "classes": normal})
    return normal


def _anomaly(args: argparse.Namespace) -> None:
    run = _Run(args)
    normal = _normal_classes(args, run.config)
    x, labels = run.data(all_classes=True)
    is_normal = torch.isin(labels, torch.tensor(normal))
    if is_normal.all() or not is_normal.any():
        raise ValueError(
            f"the {args.split} examples need both normal ({normal}) and other classes to score"
        )
    with _writing(run.out):
        scores = applications.anomaly_scores(
            run.vae.model, run.vae.guide, x, num_samples=args.num_samples, score=args.score
        ).cpu()
        auc = applications.roc_auc(scores[is_normal], scores[~is_normal])
        per_class = {int(c): scores[labels == c].mean().item() for c in labels.unique().tolist()}
        report = {
            "split": args.split,
            "score": args.score,
            "normal_classes": normal,
            "examples": len(x),
            "roc_auc": auc,
            "mean_score_normal": scores[is_normal].mean().item(),
            "mean_score_anomalous": scores[~is_normal].mean().item(),
            "mean_score_per_class": per_class,
            "num_samples": args.num_samples,
        }
        print(f"ROC AUC of {args.score} scores: {auc:.4f}")
        print("mean score per class: " + ", ".join(f"{c}: {s:.1f}" for c, s in per_class.items()))
        name = "-log p(x) (nats)" if args.score == "log-likelihood" else "-ELBO (nats)"
        written = [
            _write_json(run.out / "anomaly.json", report),
            plots.save_anomaly_scores(
                scores[is_normal],
                scores[~is_normal],
                run.out / "anomaly.png",
                labels=(f"classes {normal}", "other classes"),
                score_name=name,
            ),
        ]
    print("wrote " + ", ".join(str(p) for p in written))


# --- denoise ---------------------------------------------------------------------------------


def _denoise(args: argparse.Namespace) -> None:
    run = _Run(args)
    clean, _ = run.data()
    with _writing(run.out):
        rows = applications.denoising_errors(
            run.vae,
            clean,
            args.corruptions,
            args.levels,
            image_shape=run.image_shape,
            seed=args.seed,
        )
        lines = [
            "| corruption | level | MSE corrupted | MSE denoised | MSE imputed |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['kind']} | {r['level']:g} | {r['corrupted_mse']:.4f} | "
            f"{r['denoised_mse']:.4f} | {r['imputed_mse']:.4f} |"
            for r in rows
        ]
        print("\n".join(lines))
        generator = torch.Generator().manual_seed(args.seed)
        level = max(args.levels)
        examples = clean[:8]  # the subset's classes take turns: up to 8 different classes
        corrupted, denoised = {}, {}
        for kind in args.corruptions:
            label = f"{kind} {level:g}"
            corrupted[label], _ = applications.corrupt(
                examples, kind, level, image_shape=run.image_shape, generator=generator
            )
            denoised[label] = applications.denoise(run.vae, corrupted[label])
        written = [
            _write_json(run.out / "denoising.json", rows),
            plots.save_denoising_errors(rows, run.out / "denoising_errors.png"),
            plots.save_denoising(
                examples, corrupted, denoised, run.image_shape, run.out / "denoising.png"
            ),
        ]
    print("wrote " + ", ".join(str(p) for p in written))


# --- sweep -----------------------------------------------------------------------------------


def _sweep(args: argparse.Namespace) -> None:
    device = pick_device(args.device)
    out = check_output_path("--out", args.out, folder=True)
    config = model_config(args)
    pyro.set_rng_seed(args.seed)
    train_x, valid_x, test_x = new_run_splits(config, args.data_dir, args.seed, args.test_examples)
    if args.test_examples is not None:
        print(f"evaluating on {len(test_x)} test examples: a fixed class-balanced subset")

    def build(latent_dim: int) -> VAE:
        return build_vae({**config, "latent_dim": latent_dim}).to(device)

    with _writing(out):
        result = sweep.latent_size_sweep(
            build,
            train_x.to(device),
            test_x.to(device),
            args.latent_dims,
            valid=valid_x.to(device),
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr if args.lr is not None else 1e-3,
            binarize=config["binarization"] == "dynamic",
            num_samples=args.num_samples,
            seed=args.seed,
            progress=not args.no_progress,
        )
        print(result.markdown())
        written = result.write(out)
    print("wrote " + ", ".join(str(p) for p in written))


COMMANDS: dict[str, Callable[[argparse.Namespace], None]] = {
    "plot": _plot,
    "gaps": _gaps,
    "anomaly": _anomaly,
    "denoise": _denoise,
    "sweep": _sweep,
}
