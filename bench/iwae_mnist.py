"""The IWAE paper's one-stochastic-layer MNIST setup, under a stated budget.

Burda et al. (2015), Table 1: 784-200-200-50 MLPs with tanh, Bernoulli
likelihood, dynamically binarised MNIST, trained 3280 epochs; test log p(x)
estimated with K = 5000. Their figures (nats): VAE (K=1) 86.76, IWAE K=5 85.54,
IWAE K=50 84.78. This script trains the same model with pyro_vae's ``fit`` under
``--epochs`` and reports test log p(x) with K = 5000 beside them, with DReG at
K = 50 added, and appends the table to BENCHMARKS.md.

Data: ``../shared/get-mnist DIR`` writes ``DIR/mnist.npz``; pass ``--data-dir DIR``.
Training uses the first 50 000 training images, validation the last 10 000.

    python bench/iwae_mnist.py --data-dir /tmp/mnist --epochs 10 --test-examples 2000
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import pyro
import torch
from _report import append_section
from torch import nn

import pyro_vae as pv

PAPER = {"elbo": 86.76, "iwae:k=5": 85.54, "iwae:k=50": 84.78}
RUNS = ("elbo", "iwae:k=5", "iwae:k=50", "iwae-dreg:k=50")


def build() -> pv.VAE:
    """784-200-200-50 with tanh, as in the IWAE paper's one-layer model."""
    encoder = pv.nets.MLP(784, [200, 200], activation=nn.Tanh)
    decoder = pv.nets.MLP(50, [200, 200], 784, activation=nn.Tanh)
    return pv.VAE(
        pv.priors.StandardNormal(50),
        pv.likelihoods.Bernoulli(decoder),
        pv.guides.DiagonalNormal(encoder, latent_dim=50),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="folder holding mnist.npz")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--num-samples", type=int, default=5000, help="K of test log p(x)")
    parser.add_argument("--test-examples", type=int, default=10000)
    parser.add_argument("--runs", default=",".join(RUNS), help="objective specs, comma-separated")
    parser.add_argument("--out", default="runs/bench-iwae-mnist")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--benchmarks", default="BENCHMARKS.md")
    args = parser.parse_args()

    train = pv.data.load("mnist", "train", root=args.data_dir)
    valid = pv.data.load("mnist", "valid", root=args.data_dir, binarize="static", seed=args.seed)
    test = pv.data.load("mnist", "test", root=args.data_dir, binarize="static", seed=args.seed)
    test = test[: args.test_examples]
    out = Path(args.out)
    results = []
    specs = [s.strip() for s in args.runs.split(";" if ";" in args.runs else ",") if s.strip()]
    for spec in specs:
        pyro.clear_param_store()
        pyro.set_rng_seed(args.seed)
        vae = build()
        tic = time.perf_counter()
        history = pv.fit(
            vae,
            train,
            valid=valid,
            objective=spec,
            valid_objective="analytic-kl",
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            binarize=True,
            seed=args.seed,
            out=out / spec.replace(":", "_").replace("=", ""),
            overwrite=True,
            progress=False,
        )
        train_seconds = time.perf_counter() - tic
        vae.eval()
        pyro.set_rng_seed(args.seed)
        tic = time.perf_counter()
        log_px, stderr = pv.evaluate.log_likelihood(
            vae.model, vae.guide, test, args.num_samples, batch_size=20, return_stderr=True
        )
        eval_seconds = time.perf_counter() - tic
        row = {
            "objective": spec,
            "epochs": len(history.rows),
            "train_seconds": train_seconds,
            "seconds_per_epoch": train_seconds / len(history.rows),
            "valid_elbo": -min(history.column("valid_loss")),
            "test_nll": -log_px.mean().item(),
            "sample_stderr": log_px.std().item() / len(log_px) ** 0.5,
            "mc_stderr": stderr.pow(2).sum().sqrt().item() / len(log_px),
            "eval_seconds": eval_seconds,
            "paper_nll": PAPER.get(spec),
        }
        results.append(row)
        print(json.dumps(row), flush=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    _append_table(args, results)


def _append_table(args: argparse.Namespace, results: list[dict]) -> None:
    lines = [
        "",
        "## IWAE paper, one stochastic layer: MNIST test −log p(x)",
        "",
        f"784-200-200-50 tanh, Bernoulli, dynamically binarised MNIST (50 000 train), Adam "
        f"lr {args.lr}, batch {args.batch_size}, {args.epochs} epochs per model; test −log p(x) "
        f"by importance sampling with K = {args.num_samples} on the first "
        f"{args.test_examples} test images (statically binarised with seed {args.seed}). "
        f"Device: CPU ({platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads). The paper trained 3280 epochs.",
        "",
        "| objective | epochs | s/epoch | valid ELBO | test −log p(x) | ± (examples) "
        "| ± (Monte Carlo) | paper (3280 epochs) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        paper = f"{r['paper_nll']:.2f}" if r["paper_nll"] is not None else "—"
        lines.append(
            f"| {r['objective']} | {r['epochs']} | {r['seconds_per_epoch']:.1f} | "
            f"{r['valid_elbo']:.2f} | {r['test_nll']:.2f} | {r['sample_stderr']:.2f} | "
            f"{r['mc_stderr']:.3f} | {paper} |"
        )
    append_section(args.benchmarks, lines)


if __name__ == "__main__":
    main()
