"""The ``pyro-vae`` command: train, evaluate and sample from the shell.

This is the only place that maps names to constructors. A run folder holds
``config.json`` (the names and sizes the model was built from), ``log.csv``,
``checkpoint.pt``, ``best.pt``, ``metrics.json`` and the figures; ``evaluate``
and ``sample`` rebuild the model from a checkpoint's config. Bad arguments get
one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import pyro
import torch
from torch import nn

from . import checkpoints, data, evaluate, guides, likelihoods, nets, objectives, plots, priors
from .train import fit
from .vae import VAE

__all__ = ["main", "build_vae"]

PRIORS: dict[str, Callable[..., priors.Prior]] = {"standard-normal": priors.StandardNormal}
GUIDES = {"diagonal-normal": guides.DiagonalNormal}
LIKELIHOODS = ("bernoulli", "continuous-bernoulli", "gaussian")
NETS = ("mlp", "conv")
BINARIZE = ("dynamic", "static", "none")
# What `train` saves in a run's config, and `evaluate` and `sample` rebuild the model from.
RUN_KEYS = (
    "dataset",
    "image_shape",
    "prior",
    "guide",
    "likelihood",
    "scale",
    "learn_scale",
    "net",
    "hidden",
    "latent_dim",
    "binarization",
)


def _likelihood(config: dict[str, Any], net: nn.Module) -> likelihoods.Likelihood:
    name = config["likelihood"]
    if name == "bernoulli":
        return likelihoods.Bernoulli(net)
    if name == "continuous-bernoulli":
        return likelihoods.ContinuousBernoulli(net)
    if name == "gaussian":
        return likelihoods.Gaussian(net, scale=config["scale"], learn_scale=config["learn_scale"])
    raise ValueError(f"unknown likelihood {name!r}; choose one of: {', '.join(LIKELIHOODS)}")


def _choose(kind: str, name: str, choices: Sequence[str]) -> str:
    if name not in choices:
        raise ValueError(f"unknown {kind} {name!r}; choose one of: {', '.join(choices)}")
    return name


def build_vae(config: dict[str, Any]) -> VAE:
    """Builds the VAE that a run's config names.

    Keys: ``image_shape`` (C, H, W), ``prior``, ``guide``, ``likelihood``, ``net``
    (``mlp`` or ``conv``), ``hidden`` (MLP widths), ``latent_dim``, and for the
    Gaussian likelihood ``scale`` and ``learn_scale``.
    """
    prior_cls = PRIORS[_choose("prior", config["prior"], tuple(PRIORS))]
    guide_cls = GUIDES[_choose("guide", config["guide"], tuple(GUIDES))]
    _choose("likelihood", config["likelihood"], LIKELIHOODS)
    latent, shape = int(config["latent_dim"]), tuple(config["image_shape"])
    size = math.prod(shape)
    if _choose("net", config["net"], NETS) == "mlp":
        hidden = list(config["hidden"])
        encoder, decoder = nets.MLP(size, hidden), nets.MLP(latent, hidden[::-1], size)
    else:
        encoder, decoder = nets.ConvEncoder(shape), nets.ConvDecoder(latent, shape)
    return VAE(
        prior_cls(latent),
        _likelihood(config, decoder),
        guide_cls(encoder, latent_dim=latent),
    )


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers like 512,256, got {text!r}")
    return values


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--device",
        default="auto",
        help="cpu, cuda or cuda:N; auto picks cuda when available (default: auto)",
    )
    p.add_argument(
        "--data-dir",
        default=None,
        help="folder (or mnist.npz path) holding full MNIST; "
        "default: $PYRO_VAE_DATA, then ~/.cache/pyro_vae",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")


def _add_eval(p: argparse.ArgumentParser, num_samples: int) -> None:
    p.add_argument(
        "--num-samples",
        type=_positive_int,
        default=num_samples,
        help=f"K, importance samples per test example for log p(x) (default: {num_samples})",
    )
    p.add_argument(
        "--eval-batch-size",
        type=_positive_int,
        default=100,
        help="test examples per evaluation pass (default: 100)",
    )


def make_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="pyro-vae", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    train = sub.add_parser(
        "train",
        help="train a VAE and write a run folder",
        description="Train a VAE, then evaluate it on the test split and "
        "write figures into the run folder.",
    )
    train.add_argument(
        "--dataset",
        default=data.DEFAULT_DATASET,
        choices=data.DATASETS,
        help=f"data set (default: {data.DEFAULT_DATASET}, embedded, no download)",
    )
    train.add_argument(
        "--prior",
        default="standard-normal",
        choices=tuple(PRIORS),
        help="prior p(z) (default: standard-normal)",
    )
    train.add_argument(
        "--guide",
        default="diagonal-normal",
        choices=tuple(GUIDES),
        help="guide q(z|x) (default: diagonal-normal)",
    )
    train.add_argument(
        "--likelihood",
        default="bernoulli",
        choices=LIKELIHOODS,
        help="likelihood p(x|z) (default: bernoulli)",
    )
    train.add_argument(
        "--scale",
        type=_positive_float,
        default=0.1,
        help="σ of the gaussian likelihood, initial value if learned (default: 0.1)",
    )
    train.add_argument(
        "--learn-scale", action="store_true", help="learn σ of the gaussian likelihood"
    )
    train.add_argument(
        "--net", default="mlp", choices=NETS, help="encoder/decoder networks (default: mlp)"
    )
    train.add_argument(
        "--hidden",
        type=_int_list,
        default=[512, 256],
        help="MLP hidden widths, encoder order; the decoder mirrors them (default: 512,256)",
    )
    train.add_argument(
        "--latent-dim", type=_positive_int, default=16, help="size of z (default: 16)"
    )
    train.add_argument(
        "--objective",
        default=objectives.DEFAULT_OBJECTIVE,
        choices=objectives.OBJECTIVES,
        help=f"training objective (default: {objectives.DEFAULT_OBJECTIVE})",
    )
    train.add_argument(
        "--num-particles",
        type=_positive_int,
        default=1,
        help="samples of z per example in the objective (default: 1)",
    )
    train.add_argument(
        "--epochs", type=_positive_int, default=60, help="number of epochs (default: 60)"
    )
    train.add_argument(
        "--batch-size", type=_positive_int, default=100, help="examples per step (default: 100)"
    )
    train.add_argument(
        "--lr", type=_positive_float, default=1e-3, help="Adam learning rate (default: 0.001)"
    )
    train.add_argument(
        "--binarize",
        choices=BINARIZE,
        default=None,
        help="dynamic: fresh Bernoulli draw of the training images each "
        "step; static: one fixed draw; none: intensities "
        "(default: dynamic for bernoulli, else none)",
    )
    train.add_argument(
        "--patience",
        type=_positive_int,
        default=None,
        help="stop after this many epochs without validation improvement",
    )
    train.add_argument("--out", default="runs/latest", help="run folder (default: runs/latest)")
    train.add_argument(
        "--resume", action="store_true", help="continue the run saved in --out up to --epochs"
    )
    train.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    train.add_argument("--no-progress", action="store_true", help="no progress output")
    _add_common(train)
    _add_eval(train, 1000)

    ev = sub.add_parser(
        "evaluate",
        help="evaluate a checkpoint",
        description="Print the ELBO and importance-sampled log p(x) of a "
        "checkpoint on a data split.",
    )
    ev.add_argument("checkpoint", help="checkpoint.pt or best.pt of a run")
    ev.add_argument(
        "--split", default="test", choices=data.SPLITS, help="data split (default: test)"
    )
    _add_common(ev)
    _add_eval(ev, 1000)

    sm = sub.add_parser(
        "sample",
        help="draw samples from a checkpoint",
        description="Write a grid of E[x|z], z ~ p(z), from a checkpoint.",
    )
    sm.add_argument("checkpoint", help="checkpoint.pt or best.pt of a run")
    sm.add_argument("--num", type=_positive_int, default=64, help="images (default: 64)")
    sm.add_argument(
        "--out", default=None, help="PNG path (default: samples-<seed>.png beside the checkpoint)"
    )
    _add_common(sm)
    return parser


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise ValueError(f"--device must be auto, cpu, cuda or cuda:N, got {name!r}") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine")
    return device


def _eval_data(config: dict[str, Any], split: str, data_dir: str | None) -> torch.Tensor:
    """A split as the model sees it: one fixed binarisation for a Bernoulli likelihood."""
    binarize = "static" if config["binarization"] != "none" else None
    return data.load(config["dataset"], split, binarize=binarize, root=data_dir)


def _report(vae: VAE, x: torch.Tensor, args: argparse.Namespace, split: str) -> dict[str, Any]:
    x = x.to(next(vae.parameters()).device)
    tic = time.perf_counter()
    kwargs = {"batch_size": args.eval_batch_size}
    elbo = evaluate.elbo(vae.model, vae.guide, x, num_samples=100, **kwargs)
    log_px, stderr = evaluate.log_likelihood(
        vae.model, vae.guide, x, num_samples=args.num_samples, return_stderr=True, **kwargs
    )
    n = x.shape[0]
    metrics = {
        "split": split,
        "examples": n,
        "elbo": elbo.mean().item(),
        "log_likelihood": log_px.mean().item(),
        # Monte Carlo error of the mean estimate, from the per-example standard errors.
        "log_likelihood_mc_stderr": stderr.pow(2).sum().sqrt().item() / n,
        "log_likelihood_sample_stderr": log_px.std().item() / math.sqrt(n) if n > 1 else math.nan,
        "num_samples": args.num_samples,
        "seconds": time.perf_counter() - tic,
    }
    print(f"{split} ELBO (100 samples):         {metrics['elbo']:.2f} nats per example")
    print(
        f"{split} log p(x) (K={args.num_samples}):  {metrics['log_likelihood']:.2f} "
        f"± {metrics['log_likelihood_sample_stderr']:.2f} nats per example "
        f"(± is the standard error over {n} examples; "
        f"Monte Carlo error {metrics['log_likelihood_mc_stderr']:.3f})"
    )
    return metrics


def _train(args: argparse.Namespace) -> None:
    device = _device(args.device)
    info = data.info(args.dataset)
    binarize = args.binarize or ("dynamic" if args.likelihood == "bernoulli" else "none")
    config = {
        "dataset": args.dataset,
        "image_shape": list(info.image_shape),
        "prior": args.prior,
        "guide": args.guide,
        "likelihood": args.likelihood,
        "scale": args.scale,
        "learn_scale": args.learn_scale,
        "net": args.net,
        "hidden": args.hidden,
        "latent_dim": args.latent_dim,
        "binarization": binarize,
    }
    pyro.set_rng_seed(args.seed)
    train_x = data.load(
        args.dataset,
        "train",
        binarize="static" if binarize == "static" else None,
        root=args.data_dir,
        seed=args.seed,
    )
    valid_x = _eval_data(config, "valid", args.data_dir)
    vae = build_vae(config)
    out = Path(args.out)
    history = fit(
        vae,
        train_x,
        valid=valid_x,
        objective=args.objective,
        num_particles=args.num_particles,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        binarize=binarize == "dynamic",
        patience=args.patience,
        seed=args.seed,
        device=device,
        out=out,
        resume=args.resume,
        overwrite=args.overwrite,
        config=config,
        progress=not args.no_progress,
    )
    best = min(history.column("valid_loss"))
    print(
        f"trained {history.rows[-1]['epoch']} epochs; best validation loss {best:.2f} "
        f"at epoch {history.best_epoch}"
    )
    test_x = _eval_data(config, "test", args.data_dir)
    vae.eval()
    metrics = _report(vae, test_x, args, "test")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    figures = [
        plots.save_samples(vae, info.image_shape, out / "samples.png"),
        plots.save_reconstructions(vae, test_x, info.image_shape, out / "reconstructions.png"),
        plots.save_learning_curves(history, out / "learning_curves.png"),
    ]
    print("wrote " + ", ".join(str(f) for f in figures))


def _load_run(path: str, device: torch.device) -> tuple[VAE, dict[str, Any]]:
    state = checkpoints.load(path, map_location=device)
    config = state.get("config", {})
    missing = set(RUN_KEYS) - set(config)
    if missing:
        raise ValueError(
            f"{path} was not written by `pyro-vae train`: its config lacks "
            f"{', '.join(sorted(missing))}"
        )
    vae = build_vae(config).to(device)
    try:
        vae.load_state_dict(state["params"])
    except (RuntimeError, KeyError) as e:
        raise ValueError(f"{path}: its parameters do not fit the model its config names") from e
    vae.eval()
    return vae, config


def _evaluate(args: argparse.Namespace) -> None:
    device = _device(args.device)
    pyro.set_rng_seed(args.seed)
    vae, config = _load_run(args.checkpoint, device)
    _report(vae, _eval_data(config, args.split, args.data_dir), args, args.split)


def _sample(args: argparse.Namespace) -> None:
    device = _device(args.device)
    pyro.set_rng_seed(args.seed)
    vae, config = _load_run(args.checkpoint, device)
    out = args.out or Path(args.checkpoint).with_name(f"samples-{args.seed}.png")
    print(f"wrote {plots.save_samples(vae, config['image_shape'], out, args.num)}")


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit code (2 for bad arguments or input)."""
    args = make_parser().parse_args(argv)
    command = {"train": _train, "evaluate": _evaluate, "sample": _sample}[args.command]
    try:
        command(args)
    except (ValueError, TypeError, FileNotFoundError, FileExistsError, FloatingPointError) as e:
        message = " ".join(str(e).split())
        print(f"pyro-vae {args.command}: error: {message}", file=sys.stderr)
        return 2
    return 0
