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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyro
import torch
from torch import nn

from . import checkpoints, data, evaluate, guides, likelihoods, nets, plots, priors
from ._atomic import write_atomically
from ._checks import check_output_path
from ._cli_args import BINARIZE, LIKELIHOODS, NETS
from ._cli_args import make_parser as _make_parser
from ._cli_checks import OutputGuard, check_run_config, too_large
from ._cli_config import apply_config
from .compare import compare
from .plots._figure import check_figure_path
from .train import fit
from .vae import VAE

__all__ = ["main", "build_vae"]

PRIORS = ("standard-normal", "learned-normal", "mixture", "vamp", "flow")
GUIDES = ("diagonal-normal", "full-normal", "iaf", "coupling")
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
    scale = {"scale": config["scale"], "learn_scale": config["learn_scale"]}
    if name == "gaussian":
        return likelihoods.Gaussian(net, **scale)
    if name == "laplace":
        return likelihoods.Laplace(net, **scale)
    if name == "discretized-logistic":
        levels = data.info(config["dataset"]).num_levels
        return likelihoods.DiscretizedLogistic(net, num_bins=levels, **scale)
    raise ValueError(f"unknown likelihood {name!r}; choose one of: {', '.join(LIKELIHOODS)}")


def _guide(config: dict[str, Any], net: nn.Module, latent: int) -> guides.Guide:
    name, flows = config["guide"], int(config.get("num_flows", 2))
    if name == "diagonal-normal":
        return guides.DiagonalNormal(net, latent)
    if name == "full-normal":
        return guides.FullCovarianceNormal(net, latent)
    if name == "iaf":
        return guides.InverseAutoregressiveFlow(net, latent, num_flows=flows)
    return guides.AffineCouplingFlow(net, latent, num_flows=flows)


def _prior(config: dict[str, Any], guide: guides.Guide, latent: int) -> priors.Prior:
    name, components = config["prior"], config.get("components")
    if name == "standard-normal":
        return priors.StandardNormal(latent)
    if name == "learned-normal":
        return priors.LearnedNormal(latent)
    if name == "mixture":
        return priors.MixtureOfGaussians(latent, num_components=int(components or 10))
    if name == "vamp":
        return priors.VampPrior(guide, num_pseudo_inputs=int(components or 500))
    return priors.FlowPrior(latent, num_flows=int(config.get("num_flows", 2)))


def build_vae(config: dict[str, Any]) -> VAE:
    """Builds the VAE that a run's config names.

    Keys: ``image_shape`` (C, H, W), ``prior``, ``guide``, ``likelihood``, ``net``
    (``mlp`` or ``conv``), ``hidden`` (MLP widths), ``latent_dim``, and for the
    Gaussian, Laplace and discretized-logistic likelihoods ``scale`` and ``learn_scale``;
    optionally ``num_flows`` (flow guides and prior, default 2) and ``components``
    (mixture components, default 10, or VampPrior pseudo-inputs, default 500).

    Raises:
        TypeError, ValueError: a key is missing or has a value of the wrong type or range.
    """
    choices = {"dataset": data.DATASETS, "prior": PRIORS, "guide": GUIDES}
    choices |= {"likelihood": LIKELIHOODS, "net": NETS, "binarization": BINARIZE}
    check_run_config(config, RUN_KEYS, choices)
    latent, shape = int(config["latent_dim"]), tuple(config["image_shape"])
    size = math.prod(shape)
    if config["net"] == "mlp":
        hidden = list(config["hidden"])
        encoder, decoder = nets.MLP(size, hidden), nets.MLP(latent, hidden[::-1], size)
    else:
        encoder, decoder = nets.ConvEncoder(shape), nets.ConvDecoder(latent, shape)
    guide = _guide(config, encoder, latent)
    return VAE(_prior(config, guide, latent), _likelihood(config, decoder), guide)


def make_parser() -> argparse.ArgumentParser:
    """The argument parser of ``pyro-vae``."""
    return _make_parser(__doc__.splitlines()[0], PRIORS, GUIDES)


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


def _model_config(args: argparse.Namespace) -> dict[str, Any]:
    info = data.info(args.dataset)
    binarize = args.binarize or ("dynamic" if args.likelihood == "bernoulli" else "none")
    return {
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
        "num_flows": args.num_flows,
        "components": args.components,
    }


def _train_data(config: dict[str, Any], args: argparse.Namespace) -> torch.Tensor:
    """The training split: intensities for dynamic binarisation, else as the model sees it."""
    static = "static" if config["binarization"] == "static" else None
    return data.load(
        config["dataset"], "train", binarize=static, root=args.data_dir, seed=args.seed
    )


def _train(args: argparse.Namespace) -> None:
    device = _device(args.device)
    out = check_output_path("--out", args.out, folder=True)
    config = _model_config(args)
    pyro.set_rng_seed(args.seed)
    train_x = _train_data(config, args)
    splits = train_x, _eval_data(config, "valid", args.data_dir)
    splits += (_eval_data(config, "test", args.data_dir),)
    vae = build_vae(config)
    # Nothing is created before this point; a failure from here on removes what this
    # call created, unless it finished an epoch (checkpoint.pt), which --resume continues.
    with OutputGuard(out, keep_checkpoints=True):
        _fit_and_report(vae, splits, config, args, device, out)


def _fit_and_report(
    vae: VAE,
    splits: tuple[torch.Tensor, ...],
    config: dict[str, Any],
    args: argparse.Namespace,
    device: torch.device,
    out: Path,
) -> None:
    info = data.info(args.dataset)
    train_x, valid_x, test_x = splits
    history = fit(
        vae,
        train_x,
        valid=valid_x,
        objective=args.objective,
        num_particles=args.num_particles,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        checkpoint_every=args.checkpoint_every,
        on_nonfinite=args.on_nonfinite,
        clip_grad_norm=args.clip_grad_norm,
        binarize=config["binarization"] == "dynamic",
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
    vae.eval()
    metrics = _report(vae, test_x, args, "test")
    text = json.dumps(metrics, indent=2) + "\n"
    write_atomically(out / "metrics.json", lambda f: f.write(text.encode()))
    figures = [
        plots.save_samples(vae, info.image_shape, out / "samples.png"),
        plots.save_reconstructions(vae, test_x, info.image_shape, out / "reconstructions.png"),
        plots.save_learning_curves(history, out / "learning_curves.png"),
    ]
    print("wrote " + ", ".join(str(f) for f in figures))


def _load_run(path: str, device: torch.device) -> tuple[VAE, dict[str, Any]]:
    state = checkpoints.load(path, map_location=device)
    config = state.get("config", {})
    config = config if isinstance(config, dict) else {}
    missing = set(RUN_KEYS) - set(config)
    if missing:
        raise ValueError(
            f"{path} was not written by `pyro-vae train`: its config lacks "
            f"{', '.join(sorted(missing))}"
        )
    try:
        vae = build_vae(config).to(device)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{path} names a model that cannot be built: {e}") from e
    try:
        vae.load_state_dict(state["params"])
    except (RuntimeError, KeyError, TypeError, AttributeError) as e:
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
    if args.out is not None:
        check_figure_path(args.out, "--out")
    pyro.set_rng_seed(args.seed)
    vae, config = _load_run(args.checkpoint, device)
    out = args.out or Path(args.checkpoint).with_name(f"samples-{args.seed}.png")
    print(f"wrote {plots.save_samples(vae, config['image_shape'], out, args.num)}")


def _compare(args: argparse.Namespace) -> None:
    device = _device(args.device)
    out = check_output_path("--out", args.out, folder=True)
    config = _model_config(args)
    pyro.set_rng_seed(args.seed)
    train_x = _train_data(config, args)
    valid_x = _eval_data(config, "valid", args.data_dir)
    test_x = _eval_data(config, "test", args.data_dir)[: args.test_examples]
    vae = build_vae(config)
    with OutputGuard(out):  # a failed comparison leaves nothing behind
        _compare_and_report(vae, train_x, valid_x, test_x, config, args, device)


def _compare_and_report(
    vae: VAE,
    train_x: torch.Tensor,
    valid_x: torch.Tensor,
    test_x: torch.Tensor,
    config: dict[str, Any],
    args: argparse.Namespace,
    device: torch.device,
) -> None:
    result = compare(
        vae,
        train_x,
        valid=valid_x,
        test=test_x,
        objectives=args.objectives,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr if args.lr is not None else 1e-3,
        binarize=config["binarization"] == "dynamic",
        seed=args.seed,
        device=device,
        out=args.out,
        overwrite=args.overwrite,
        bound_ks=args.bound_ks,
        num_samples=args.num_samples,
        gradient_ks=args.gradient_ks,
        gradient_draws=args.gradient_draws,
        eval_batch_size=args.eval_batch_size,
        progress=not args.no_progress,
    )
    print(result.markdown())
    print(f"wrote {args.out}/comparison.csv, comparison.md, gradients.csv and figures")


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit code.

    Bad arguments, bad input (data, files, checkpoints, ``--config``) and sizes too
    large to allocate give one line on stderr and exit code 2 (argparse's errors
    raise ``SystemExit(2)``); a command that fails leaves no partial output behind.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = make_parser()
    args = parser.parse_args(argv)
    if getattr(args, "config", None) is not None:
        args = apply_config(parser, args, argv)
    command = {"train": _train, "evaluate": _evaluate, "sample": _sample, "compare": _compare}[
        args.command
    ]
    try:
        command(args)
    except KeyboardInterrupt:
        resume = " (resume it with --resume)" if args.command == "train" else ""
        print(f"pyro-vae {args.command}: interrupted{resume}", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError, FloatingPointError) as e:
        message = str(e) or type(e).__name__
    except (RuntimeError, MemoryError) as e:
        message = too_large(e)
        if message is None:
            raise
    else:
        return 0
    print(f"pyro-vae {args.command}: error: {' '.join(message.split())}", file=sys.stderr)
    return 2
