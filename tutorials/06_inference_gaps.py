r"""Tutorial 6: where the ELBO loses its nats — the inference gaps (Cremer et al. 2018).

A VAE's ELBO falls short of the log-likelihood by the KL from its guide to the true
posterior, and that *inference gap* has two causes:

.. math::

    \begin{aligned}
    \log p(x) - \mathrm{ELBO}[q_\phi(z \mid x)]
      &= \big(\log p(x) - \mathrm{ELBO}[q^*(z \mid x)]\big)
      && \text{approximation gap: the family cannot fit } p(z \mid x) \\
      &+ \big(\mathrm{ELBO}[q^*(z \mid x)] - \mathrm{ELBO}[q_\phi(z \mid x)]\big)
      && \text{amortisation gap: one encoder serves every } x
    \end{aligned}

where q*(z|x) is the best member of the guide's family for this x alone. It is found
by ``pv.gaps.fit_local_guides``: the encoder's outputs for each test example become
free parameters, started where the encoder put them and optimised on that example's
ELBO with the decoder and prior fixed. A richer family (full covariance, a flow)
shrinks the approximation gap; a better encoder, or more training, shrinks the
amortisation gap. (For the IAF guide only the base Gaussian and the context the flow
reads are freed, not the flow's weights, so its approximation gap is an upper bound.)

Part 1 trains three VAEs with 16 latents that differ only in the guide (diagonal,
full covariance, IAF) and measures both gaps on 100 test digits (10 of each class).
Each decoder is trained together with its guide, so the three rows are three models
with their own log p(x) (the full-covariance one reached a lower log p(x) in our runs):
compare the gaps of a row with each other, not log p(x) across rows. Part 2 trains a
VAE with a 2-D latent space and draws the true posterior of three digits with NUTS,
a Markov chain that needs no guide, to see q_φ and q* against it.

Reading the figures:

* ``inference_gaps.png``, left: one bar per guide; the blue part is the mean
  approximation gap, the orange part stacked on it the mean amortisation gap, so the
  bar's height is the mean KL(q_φ(z|x) ‖ p(z|x)). Right: one point per test digit; points
  above the dotted diagonal lose more to amortisation than to the family.
* ``posterior_comparison.png``: each column is a test digit (top) and its posterior
  (bottom): black dots are NUTS samples of p(z|x), red ellipses the amortised q_φ(z|x),
  blue ellipses the local q*(z|x) (solid 1σ, dashed 2σ; crosses are means). Where red
  sits off the cloud and blue on it, the encoder, not the Gaussian family, is to blame.

Run::

    python tutorials/06_inference_gaps.py [--out runs/tutorial06] [--epochs 30] [--smoke-test]

References:
    1. C. Cremer, X. Li, D. Duvenaud. Inference suboptimality in variational
       autoencoders. ICML 2018.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pyro
import torch

import pyro_vae as pv
from pyro_vae.analysis import gaps
from pyro_vae.models import guides, likelihoods, nets, priors

HIDDEN = 200
NUTS_CLASSES = (2, 5, 7)  # the digits whose posteriors part 2 draws
GUIDES = {
    "diagonal": guides.DiagonalNormal,
    "full covariance": guides.FullCovarianceNormal,
    "IAF (2 steps)": lambda body, d: guides.InverseAutoregressiveFlow(body, d, num_flows=2),
}


def mlp_vae(guide, latent: int) -> pv.VAE:
    """784-200-latent MLPs, a Bernoulli decoder and a standard normal prior."""
    return pv.VAE(
        priors.StandardNormal(latent),
        likelihoods.Bernoulli(nets.MLP(latent, [HIDDEN], 784)),
        guide(nets.MLP(784, [HIDDEN]), latent),
    )


def train(guide, latent: int, data: dict[str, torch.Tensor], epochs: int) -> pv.VAE:
    """Trains with the plain ELBO (the IAF's KL has no closed form) and dynamic binarisation."""
    pyro.set_rng_seed(0)
    vae = mlp_vae(guide, latent)
    pv.fit(
        vae,
        data["train"],
        valid=data["valid"],
        objective="elbo",
        epochs=epochs,
        batch_size=100,
        lr=1e-3,
        binarize=True,
        seed=0,
        progress=False,
    )
    return vae


# --- Part 1: the gaps of three guides -----------------------------------------------------


def spread(n: int, size: int) -> torch.Tensor:
    """``size`` indices spread evenly over ``range(n)``: the splits are stored by class."""
    return torch.linspace(0, n - 1, min(n, size)).round().long()


def part1(data: dict[str, torch.Tensor], args: argparse.Namespace, out: Path) -> None:
    x = data["test"][spread(len(data["test"]), args.num_points)]
    results = {}
    for label, guide in GUIDES.items():
        tic = time.perf_counter()
        vae = train(guide, 16, data, args.epochs)
        trained = time.perf_counter() - tic
        tic = time.perf_counter()
        local = gaps.fit_local_guides(vae, x, **args.fit)
        fitted = time.perf_counter() - tic
        tic = time.perf_counter()
        results[label] = gaps.inference_gaps(
            vae,
            x,
            local_guide=local,
            num_samples=args.num_samples,
            elbo_samples=args.elbo_samples,
        )
        print(
            f"{label:16s} trained in {trained:5.1f} s; q* fit in {fitted:4.1f} s "
            f"({local.num_steps} steps); gaps estimated in {time.perf_counter() - tic:5.1f} s"
        )
        if label == "diagonal":
            proposals(vae, x, results[label], args.num_samples)
    print(f"\nInference gaps on {len(x)} test digits (nats, mean ± s.e.):")
    print(gaps.gaps_table(results))
    print(f"wrote {pv.plots.save_inference_gaps(results, out / 'inference_gaps.png')}")


def proposals(vae: pv.VAE, x: torch.Tensor, result: gaps.InferenceGaps, num_samples: int) -> None:
    """log p(x) importance-sampled from q_φ and from q* (``inference_gaps``' default): both
    are stochastic lower bounds, and the proposal closer to p(z|x) gives the tighter one."""
    log_px, stderr = pv.evaluate.log_likelihood(
        vae.model, vae.guide, x, num_samples, return_stderr=True
    )
    for name, (value, error) in {
        "q_φ": (log_px, stderr),
        "q*": (result.log_px, result.log_px_stderr),
    }.items():
        print(
            f"  log p(x) from {num_samples} draws of {name}: {value.mean():8.3f} "
            f"(mean Monte Carlo s.e. {error.mean():.3f})"
        )


# --- Part 2: the posterior itself, by NUTS ------------------------------------------------


def part2(data: dict[str, torch.Tensor], args: argparse.Namespace, out: Path) -> None:
    vae = train(guides.DiagonalNormal, 2, data, args.epochs)
    # the first test digit of each of three classes
    x = data["test"][[int((data["labels"] == c).nonzero()[0]) for c in NUTS_CLASSES]]
    local = gaps.fit_local_guides(vae, x, **args.fit)
    tic = time.perf_counter()
    samples = gaps.nuts_posterior(vae, x, **args.nuts)
    seconds = (time.perf_counter() - tic) / len(x)
    comparison = gaps.compare_with_nuts(
        vae, x, samples, local_guide=local, num_samples=args.num_samples
    )
    print(
        f"\nNUTS on {len(x)} digits, 2-D latent ({samples.shape[1]} samples per digit, "
        f"{seconds:.1f} s per digit): inclusive KL(p(z|x) ‖ q), mean error and spread ratio"
    )
    print(comparison.markdown())
    figure = pv.plots.save_posterior_comparison(
        vae,
        x,
        samples,
        out / "posterior_comparison.png",
        local_guide=local,
        image_shape=pv.data.info("mnist5k").image_shape,
    )
    print(f"wrote {figure}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/tutorial06", help="folder for the figures")
    parser.add_argument("--epochs", type=int, default=30, help="training epochs of each VAE")
    parser.add_argument(
        "--smoke-test", action="store_true", help="tiny run that only checks the tutorial works"
    )
    args = parser.parse_args()
    args.num_points = 100
    args.num_samples, args.elbo_samples = 2000, 1000
    args.fit, args.nuts = {}, {"num_samples": 500, "warmup_steps": 300}
    if args.smoke_test:
        args.epochs, args.num_points = 1, 5
        args.num_samples, args.elbo_samples = 20, 20
        args.fit, args.nuts = {"steps": 50}, {"num_samples": 20, "warmup_steps": 20}
    out = Path(args.out)
    pyro.set_rng_seed(0)

    data = {
        "train": pv.data.load("mnist5k", "train"),  # grey levels, binarised afresh each step
        "valid": pv.data.load("mnist5k", "valid", binarize="static"),
        "test": pv.data.load("mnist5k", "test", binarize="static"),
        "labels": pv.data.load_labels("mnist5k", "test"),
    }
    if args.smoke_test:
        data = {name: split[spread(len(split), 200)] for name, split in data.items()}
    tic = time.perf_counter()
    part1(data, args, out)
    part2(data, args, out)
    print(f"\ntotal {time.perf_counter() - tic:.0f} s")


if __name__ == "__main__":
    main()
