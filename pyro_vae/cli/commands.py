"""The ``pyro-vae`` command: train, evaluate, sample, compare, reproduce papers, look inside VAEs.

Names map to constructors in :mod:`pyro_vae.registry` and nowhere else. A run folder holds
``config.json`` (the names and sizes the model was built from), ``log.csv``,
``checkpoint.pt``, ``best.pt``, ``metrics.json`` and the figures; ``evaluate``,
``sample`` and the commands of :mod:`pyro_vae.cli._analysis` (``plot``, ``gaps``,
``anomaly``, ``denoise``) rebuild the model from a checkpoint's config. Bad arguments get
one line on stderr and exit code 2. ``train --resume`` continues the run saved in
``--out`` with the settings it was saved with (:mod:`pyro_vae.cli._resume`);
``reproduce`` trains a published recipe (:mod:`pyro_vae.cli._reproduce`).

``train`` and ``evaluate`` also run under ``torchrun`` (:mod:`pyro_vae.distributed`):
training is data-parallel, evaluation is split between the processes and gathered,
and rank 0 alone prints and writes files.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager, nullcontext
from pathlib import Path
from typing import Any, TextIO

import pyro
import torch

from pyro_vae import data, plots
from pyro_vae._atomic import write_atomically
from pyro_vae._checks import check_output_path
from pyro_vae.cli._analysis import COMMANDS
from pyro_vae.cli._args import make_parser as _make_parser
from pyro_vae.cli._checks import OutputGuard, os_error_line, too_large
from pyro_vae.cli._config import apply_config, given_options
from pyro_vae.cli._reproduce import reproduce_command
from pyro_vae.cli._resume import CHANGEABLE_OPTIONS, RUN_OPTIONS, Resumed, resumed_run
from pyro_vae.cli._runs import (
    GUIDES,
    PRIORS,
    build_vae,
    eval_data,
    load_run,
    model_config,
    new_run_splits,
    pick_device,
)
from pyro_vae.cli._signals import TERMINATED_EXIT_CODE, Terminated, terminate_as_interrupt
from pyro_vae.infer import evaluate
from pyro_vae.lab.compare import compare
from pyro_vae.models.vae import VAE
from pyro_vae.plots._figure import check_figure_path
from pyro_vae.train import distributed
from pyro_vae.train._data_parallel import fork_random_streams
from pyro_vae.train._fit import fit
from pyro_vae.train._run_folder import RunFolder
from pyro_vae.train.options import FitOptions

__all__ = ["main", "build_vae"]

DISTRIBUTED_COMMANDS = ("train", "evaluate")


def make_parser() -> argparse.ArgumentParser:
    """The argument parser of ``pyro-vae``."""
    return _make_parser(__doc__.splitlines()[0], PRIORS, GUIDES)


def _report(vae: VAE, x: torch.Tensor, args: argparse.Namespace, split: str) -> dict[str, Any]:
    """Evaluates on ``x`` (split between the processes under torchrun); rank 0 prints."""
    x = x.to(next(vae.parameters()).device)
    tic = time.perf_counter()
    kwargs = {"batch_size": args.eval_batch_size}

    def bounds(rows: torch.Tensor) -> torch.Tensor:
        elbo = evaluate.elbo(vae.model, vae.guide, rows, num_samples=100, **kwargs)
        log_px, stderr = evaluate.log_likelihood(
            vae.model, vae.guide, rows, num_samples=args.num_samples, return_stderr=True, **kwargs
        )
        return torch.stack([elbo, log_px, stderr], dim=1)

    elbo, log_px, stderr = distributed.map_shards(bounds, x).unbind(1)
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
    if not distributed.current().is_main:
        return metrics
    print(f"{split} ELBO (100 samples):         {metrics['elbo']:.2f} nats per example")
    print(
        f"{split} log p(x) (K={args.num_samples}):  {metrics['log_likelihood']:.2f} "
        f"± {metrics['log_likelihood_sample_stderr']:.2f} nats per example "
        f"(± is the standard error over {n} examples; "
        f"Monte Carlo error {metrics['log_likelihood_mc_stderr']:.3f})"
    )
    return metrics


def _join(args: argparse.Namespace) -> torch.device:
    """The device, after joining the process group of a torchrun launch (if any)."""
    device = pick_device(args.device)
    group = distributed.init(device, timeout=args.dist_timeout)
    return distributed.local_device(device, group)


def _train(args: argparse.Namespace) -> None:
    device = _join(args)
    out = check_output_path("--out", args.out, folder=True)
    if args.resume and args.overwrite:
        raise ValueError(
            "--resume continues the run in --out and --overwrite replaces it: give one of them"
        )
    group, folder, fresh = distributed.current(), RunFolder(out), model_config(args)
    # A failure from here on removes what this call created, unless it finished an epoch
    # (checkpoint.pt), which --resume continues. Rank 0 alone owns and locks the folder.
    guard = OutputGuard(out, keep_checkpoints=True) if group.is_main else nullcontext()
    with guard, ExitStack() as held:
        group.on_main(lambda: held.enter_context(folder.lock()), "the run folder's lock")
        if args.resume:
            run = resumed_run(args, folder, group, fresh)
        else:
            options = {dest: getattr(args, dest) for dest in (*RUN_OPTIONS, *CHANGEABLE_OPTIONS)}
            run = Resumed(fresh, args.seed, options)
        pyro.set_rng_seed(run.seed)
        splits = new_run_splits(run.config, args.data_dir, run.seed)
        _fit_and_report(build_vae(run.config), splits, run, args, device, out)


def _fit_and_report(
    vae: VAE,
    splits: tuple[torch.Tensor, ...],
    run: Resumed,
    args: argparse.Namespace,
    device: torch.device,
    out: Path,
) -> None:
    info = data.info(run.config["dataset"])
    train_x, valid_x, test_x = splits
    options = FitOptions(
        binarize=run.config["binarization"] == "dynamic", config=run.config, **run.fit_options
    )
    history = fit(
        vae,
        train_x,
        options,
        valid=valid_x,
        device=device,
        out=out,
        resume=args.resume,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        max_minutes=args.max_minutes,
        test=test_x if args.test_every is not None else None,
        test_every=args.test_every,
        test_samples=args.test_samples,
    )
    if history.nothing_to_do:
        return  # fit said so; the run's metrics and figures stay as they are
    main_process = distributed.current().is_main
    if history.out_of_time:
        if main_process:
            print(
                f"stopped at --max-minutes {args.max_minutes:g} after epoch "
                f"{history.rows[-1]['epoch']}; continue with: pyro-vae train --out {out} --resume"
            )
        return
    best = min(history.column("valid_loss"))
    if main_process:
        print(
            f"trained {history.rows[-1]['epoch']} epochs; best validation loss {best:.2f} "
            f"at epoch {history.best_epoch}"
        )
    vae.eval()
    metrics = _report(vae, test_x, args, "test")
    if not main_process:
        return
    text = json.dumps(metrics, indent=2) + "\n"
    write_atomically(out / "metrics.json", lambda f: f.write(text.encode()))
    figures = [
        plots.save_samples(vae, info.image_shape, out / "samples.png"),
        plots.save_reconstructions(vae, test_x, info.image_shape, out / "reconstructions.png"),
        plots.save_learning_curves(history, out / "learning_curves.png"),
    ]
    print("wrote " + ", ".join(str(f) for f in figures))


def _evaluate(args: argparse.Namespace) -> None:
    device = _join(args)
    pyro.set_rng_seed(args.seed)
    fork_random_streams(distributed.current())  # each process its own draws
    vae, config = load_run(args.checkpoint, device)
    _report(vae, eval_data(config, args.split, args.data_dir), args, args.split)


def _sample(args: argparse.Namespace) -> None:
    device = pick_device(args.device)
    if args.out is not None:
        check_figure_path(args.out, "--out")
    pyro.set_rng_seed(args.seed)
    vae, config = load_run(args.checkpoint, device)
    out = args.out or Path(args.checkpoint).with_name(f"samples-{args.seed}.png")
    print(f"wrote {plots.save_samples(vae, config['image_shape'], out, args.num)}")


def _compare(args: argparse.Namespace) -> None:
    device = pick_device(args.device)
    out = check_output_path("--out", args.out, folder=True)
    config = model_config(args)
    pyro.set_rng_seed(args.seed)
    splits = new_run_splits(config, args.data_dir, args.seed, args.test_examples)
    vae = build_vae(config)
    with OutputGuard(out):  # a failed comparison leaves nothing behind
        _compare_and_report(vae, *splits, config, args, device)


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
        options=FitOptions(
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            binarize=config["binarization"] == "dynamic",
            seed=args.seed,
            lr_schedule=args.lr_schedule,
            adam_betas=args.adam_betas,
            adam_eps=args.adam_eps,
        ),
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


@contextmanager
def _one_line_warnings(command: str) -> Iterator[None]:
    """Within the block, a warning prints as one line, ``pyro-vae COMMAND: warning: ...``,
    without Python's source file and line; the library's own warnings stay as they are."""

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        stream = file if file is not None else sys.stderr
        try:
            stream.write(f"pyro-vae {command}: warning: {' '.join(str(message).split())}\n")
        except (OSError, AttributeError):  # no stderr (pythonw) or a closed one
            pass

    saved, warnings.showwarning = warnings.showwarning, show
    try:
        yield
    finally:
        warnings.showwarning = saved


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit code.

    Bad arguments, bad input (data, files, checkpoints, ``--config``) and sizes too
    large to allocate give one line on stderr and exit code 2 (argparse's errors
    raise ``SystemExit(2)``); a command that fails leaves no partial output behind.
    Ctrl-C exits with 130 and SIGTERM with 143, each after one line that says how to go
    on; ``train`` and ``reproduce`` keep their last checkpoint (see :mod:`._signals`).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = make_parser()
    args = parser.parse_args(argv)
    if getattr(args, "config", None) is not None:
        args = apply_config(parser, args, argv)
    else:
        args.given = given_options(parser.commands[args.command], argv[1:])
    commands = {"train": _train, "evaluate": _evaluate, "sample": _sample, "compare": _compare}
    commands["reproduce"] = reproduce_command
    command = (commands | COMMANDS)[args.command]
    code = 2
    try:
        if args.command not in DISTRIBUTED_COMMANDS and distributed.launched():
            raise ValueError(
                f"{args.command} runs in one process; only "
                f"{' and '.join(DISTRIBUTED_COMMANDS)} run under torchrun"
            )
        with terminate_as_interrupt(), _one_line_warnings(args.command):
            command(args)
    except KeyboardInterrupt as e:
        resumable = args.command in ("train", "reproduce")
        resume = " (resume it with --resume)" if resumable else ""
        how = "terminated" if isinstance(e, Terminated) else "interrupted"
        print(f"pyro-vae {args.command}: {how}{resume}", file=sys.stderr)
        return TERMINATED_EXIT_CODE if isinstance(e, Terminated) else 130
    except distributed.PeerError as e:
        message, code = str(e), 1
    except OSError as e:
        message = os_error_line(e, getattr(args, "out", None)) or str(e) or type(e).__name__
    except (ValueError, TypeError, FloatingPointError) as e:
        message = str(e) or type(e).__name__
    except (RuntimeError, MemoryError) as e:
        message = too_large(e)
        if message is None:
            raise
    else:
        return 0
    print(f"pyro-vae {args.command}: error: {' '.join(message.split())}", file=sys.stderr)
    distributed.shutdown(wait=False)  # the other processes may be waiting in a collective
    return code
