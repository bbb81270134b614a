"""Time per SVI step of pyro_vae's estimators beside Pyro's own and Pyro's JIT variants.

Same VAE (MLP 784-400-50, Bernoulli), same batch (128 MNIST-sized random
binary images), Adam; each variant's steps are interleaved in rounds so that
machine noise hits all of them alike. Reports the median step time and its
ratio to pyro_vae's default objective, and appends the table to BENCHMARKS.md.

    python bench/objective_speed.py [--rounds 20 --steps 10]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import pyro
import pyro.infer
import pyro.optim
import torch
from _report import append_section

import pyro_vae as pv


def _vae() -> pv.VAE:
    return pv.VAE(
        pv.priors.StandardNormal(50),
        pv.likelihoods.Bernoulli(pv.nets.MLP(50, [400], 784)),
        pv.guides.DiagonalNormal(pv.nets.MLP(784, [400]), latent_dim=50),
    )


def _pyro(cls, k: int = 1, **kwargs) -> pyro.infer.ELBO:
    return cls(num_particles=k, vectorize_particles=k > 1, max_plate_nesting=1, **kwargs)


VARIANTS = {
    "pyro_vae analytic-kl": lambda: pv.objectives.make("analytic-kl"),
    "Pyro TraceMeanField_ELBO": lambda: _pyro(pyro.infer.TraceMeanField_ELBO),
    "Pyro JitTraceMeanField_ELBO": lambda: _pyro(pyro.infer.JitTraceMeanField_ELBO),
    "pyro_vae elbo": lambda: pv.objectives.make("elbo"),
    "Pyro Trace_ELBO": lambda: _pyro(pyro.infer.Trace_ELBO),
    "Pyro JitTrace_ELBO": lambda: _pyro(pyro.infer.JitTrace_ELBO),
    "pyro_vae iwae:k=5": lambda: pv.objectives.make("iwae", 5),
    "Pyro RenyiELBO(alpha=0), K=5": lambda: _pyro(pyro.infer.RenyiELBO, 5, alpha=0),
    "pyro_vae iwae-dreg:k=5": lambda: pv.objectives.make("iwae-dreg", 5),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--steps", type=int, default=10, help="steps per variant per round")
    parser.add_argument("--benchmarks", default="BENCHMARKS.md")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    x = torch.bernoulli(torch.full((128, 784), 0.3))
    svis = {}
    for name, make in VARIANTS.items():
        vae = _vae()
        vae.param_prefix = name.replace(" ", "_").replace("$", "")
        svis[name] = pyro.infer.SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-3}), make())
        for _ in range(5):  # warm-up: JIT compilation, first optimizer
            svis[name].step(x)
    times = {name: [] for name in VARIANTS}
    for _ in range(args.rounds):
        for name, svi in svis.items():
            tic = time.perf_counter()
            for _ in range(args.steps):
                svi.step(x)
            times[name].append((time.perf_counter() - tic) / args.steps * 1000)
    medians = {name: statistics.median(t) for name, t in times.items()}
    base = medians["pyro_vae analytic-kl"]
    lines = [
        "",
        "## Objectives: time per SVI step",
        "",
        f"MLP 784-400-50 VAE, Bernoulli, batch 128, Adam; median of {args.rounds} interleaved "
        f"rounds of {args.steps} steps, {torch.get_num_threads()} CPU threads.",
        "",
        "| objective | ms per step | ratio to pyro_vae analytic-kl |",
        "|---|---|---|",
    ]
    for name, median in medians.items():
        lines.append(f"| {name} | {median:.2f} | {median / base:.2f} |")
    print("\n".join(lines))
    append_section(args.benchmarks, lines)


if __name__ == "__main__":
    main()
