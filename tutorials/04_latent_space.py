r"""Tutorial 4: understanding the latent space.

A trained VAE maps each image x to a posterior q(z|x) and each code z to an image
distribution p(x|z). This tutorial looks at the space of codes in between, with the
functions of ``pv.latent`` and the figures of ``pv.plots``.

**Part 1, a 2-D latent space**, small enough to draw whole:

* ``manifold_2d.png`` decodes E[x|z] on a grid of z over [-3, 3]² (z₁ left to right,
  z₂ bottom to top): every kind of digit the model can generate, and how one morphs
  into the next. Under the N(0, I) prior ±3 holds 99.7% of each coordinate's mass.
* ``latent_map_2d.png`` draws the raw codes E_q[z|x] of the test images coloured by
  their digit, labels the VAE never saw. Digits that form clusters were told apart
  from pixels alone; overlapping ones (4, 7 and 9; 3, 5 and 8) look alike to it.
* ``aggregate_posterior_2d.png`` compares the aggregate posterior
  q(z) = (1/N) Σ_n q(z|x_n), the codes the decoder is trained on, with the prior p(z)
  that sampling draws from, one histogram per coordinate.

The ELBO's KL term averaged over the data splits into two parts (Hoffman & Johnson 2016):

.. math::

    \mathbb{E}_{x}\,\mathrm{KL}(q(z \mid x) \,\|\, p(z))
      = I_q(x; z) + \mathrm{KL}(q(z) \,\|\, p(z)).

I_q(x; z), the mutual information between the index of an example and its code, is
information the code carries about x; KL(q(z) ‖ p(z)) is pure cost, the mismatch
between where codes go and where samples come from. ``pv.latent.aggregate_kl``
estimates both by Monte Carlo, z drawn from q(z) and log q(z) summed exactly over all
N posteriors. Since q(z) ≥ q(z|x_n)/N, I_q(x; z) ≤ log N: with N = 1000 test images it
cannot exceed 6.9 nats, so once the average KL is larger than that, most of it is the
marginal mismatch.

**Part 2, a 64-D latent space**, more units than mnist5k needs, seen through
projections and probes:

* ``interpolations.png``: for pairs of test images, their codes z_a, z_b joined by a
  straight line and by a great circle (slerp, White 2016), decoded. Smooth morphs mean
  the decoder is smooth between codes; off-data images mid-way show holes in q(z).
* ``traversals.png``: starting from one image's code, one unit z_u at a time swept over
  -3 … 3, the units ranked by their average KL(q(z_u|x) ‖ p(z_u)). Each row shows what
  one unit controls (slant, width, stroke, a change of digit) with the rest held fixed.
* ``latent_map.png``: the 64-D codes projected to 2-D by PCA (exact and linear; the
  axes give the share of the variance they explain, small when many units carry
  information) and by t-SNE (keeps neighbourhoods, not distances: do not read cluster
  sizes or gaps).
* ``unit_diagnostics.png``: per unit, the average KL and the activity
  A_u = Var_x E_q[z_u|x] on a log scale, with Burda et al.'s threshold 0.01. The KL term
  charges every unit that carries information, so units the decoder can do without
  are switched off: q(z_u|x) ≈ p(z_u) for every x, KL ≈ 0, and the decoder ignores them
  (posterior collapse). Grey bars mark them; the table prints how many stay active.
  Read the two panels together: the threshold is lenient, and a unit just above it
  may still carry only hundredths of a nat.
* ``aggregate_posterior.png``: q(z) against p(z) for the first 16 units. Collapsed
  units match the prior exactly, and the marginals of the others come close, yet
  KL(q(z) ‖ p(z)) is large: q(z) over N test images is N narrow bumps in 64-D with empty
  space between them (I_q(x; z) sits at its ceiling log N). Matching marginals do not
  make matching joints; samples z ~ p(z) land between the bumps, which is one reason
  why samples look worse than reconstructions.

**Part 3, how big should z be?** ``pv.sweep.latent_size_sweep`` trains the same model
with latent sizes 2 to 64 (same seed, data order and budget) and writes
``latent_size_sweep.png`` and ``sweep.csv``: held-out log p(x) and ELBO, the
reconstruction term and the KL, and the active units against the latent size. Past
the size the data need, log p(x) stops improving (at 30 epochs: best near 16-32 units,
worse at 64, which trains more slowly) and the KL levels off, so the extra units carry
little. At this short budget Burda's lenient 0.01 threshold still counts every unit
active; part 2's 64-D model, trained for 100 epochs, has switched some off.

Run::

    python tutorials/04_latent_space.py [--out runs/tutorial04] [--epochs 100] [--sweep-epochs 30]
    [--smoke-test]
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
from pathlib import Path

import pyro
import torch

import pyro_vae as pv

HIDDEN = [400]
LARGE_LATENT_DIM = 64


@dataclass
class Data:
    """mnist5k: grey-level training images, statically binarised validation and test
    images, the test labels, and the image shape (C, H, W)."""

    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor
    test_labels: torch.Tensor
    image_shape: tuple[int, int, int]


def load_data(smoke: bool) -> Data:
    train = pv.data.load("mnist5k", "train")
    valid = pv.data.load("mnist5k", "valid", binarize="static")
    test = pv.data.load("mnist5k", "test", binarize="static")
    labels = pv.data.load_labels("mnist5k", "test")
    if smoke:  # every digit stays in: the splits are stored in label order
        keep = torch.linspace(0, len(test) - 1, 60).round().long()
        valid = valid[pv.data.subset_rows("mnist5k", "valid", 50)]
        train, test, labels = train[::17], test[keep], labels[keep]
    return Data(train, valid, test, labels, pv.data.info("mnist5k").image_shape)


def build_vae(latent_dim: int) -> pv.VAE:
    """A Bernoulli MLP VAE with a standard-normal prior and a diagonal-Gaussian guide."""
    return pv.VAE(
        prior=pv.priors.StandardNormal(latent_dim),
        likelihood=pv.likelihoods.Bernoulli(pv.nets.MLP(latent_dim, HIDDEN, 784)),
        guide=pv.guides.DiagonalNormal(pv.nets.MLP(784, HIDDEN), latent_dim=latent_dim),
    )


def train(latent_dim: int, data: Data, args: argparse.Namespace) -> tuple[pv.VAE, float]:
    """Trains a VAE with dynamic binarisation; returns it and its test ELBO (nats)."""
    vae = build_vae(latent_dim)
    pv.fit(
        vae,
        data.train,
        valid=data.valid,
        epochs=args.epochs,
        batch_size=100,
        lr=1e-3,
        binarize=True,
        seed=args.seed,
        progress=False,
    )
    elbo = pv.evaluate.elbo(vae.model, vae.guide, data.test, num_samples=args.elbo_samples)
    return vae, elbo.mean().item()


def measure(vae: pv.VAE, elbo: float, data: Data, args: argparse.Namespace) -> dict:
    """The numbers of the summary table for one model."""
    stats = pv.latent.aggregate_kl(vae, data.test, num_samples=args.kl_samples, seed=args.seed)
    return {
        "latent_dim": vae.latent_dim,
        "elbo": elbo,
        "active": pv.evaluate.active_units(vae.guide, data.test),
        "stats": stats,
    }


def part1(data: Data, args: argparse.Namespace, out: Path) -> dict:
    """A 2-D latent space: the decoded manifold, the raw codes, q(z) against p(z)."""
    vae, elbo = train(2, data, args)
    pv.plots.save_manifold(vae, data.image_shape, out / "manifold_2d.png", size=args.grid)
    pv.plots.save_latent_map(
        vae, data.test, data.test_labels, out / "latent_map_2d.png", methods=("pca",)
    )
    pv.plots.save_aggregate_posterior(
        vae, data.test, out / "aggregate_posterior_2d.png", num_samples=args.kl_samples
    )
    return measure(vae, elbo, data, args)


def part2(data: Data, args: argparse.Namespace, out: Path) -> dict:
    """A 64-D latent space: interpolations, traversals, maps and collapsed units."""
    vae, elbo = train(LARGE_LATENT_DIM, data, args)
    shape = data.image_shape
    pv.plots.save_interpolations(vae, data.test, shape, out / "interpolations.png")
    pv.plots.save_traversals(vae, data.test, shape, out / "traversals.png")
    pv.plots.save_latent_map(vae, data.test, data.test_labels, out / "latent_map.png")
    pv.plots.save_unit_diagnostics(vae, data.test, out / "unit_diagnostics.png")
    pv.plots.save_aggregate_posterior(
        vae, data.test, out / "aggregate_posterior.png", num_samples=args.kl_samples
    )
    return measure(vae, elbo, data, args)


def part3(data: Data, args: argparse.Namespace, out: Path) -> pv.sweep.Sweep:
    """How big should z be? One model per latent size, same seed, data order and budget."""
    sweep = pv.sweep.latent_size_sweep(
        build_vae,
        data.train,
        data.test,
        args.sweep_dims,
        valid=data.valid,
        options=pv.FitOptions(
            epochs=args.sweep_epochs, batch_size=100, binarize=True, seed=args.seed
        ),
        num_samples=args.sweep_samples,
    )
    sweep.write(out)  # sweep.csv, sweep.md, latent_size_sweep.png
    return sweep


def report(rows: list[dict], num_examples: int) -> None:
    print(
        f"{'latent':>6}{'test ELBO':>11}{'active':>8}{'E_x KL':>9}{'I(x;z)':>9}"
        f"{'KL(q(z)‖p(z))':>20}"
    )
    for row in rows:
        s = row["stats"]
        print(
            f"{row['latent_dim']:>6}{row['elbo']:11.2f}{row['active']:>8}{s.average_kl:9.2f}"
            f"{s.mutual_information:9.2f}{s.kl:12.2f} ± {s.standard_error:.2f}"
        )
    print(
        f"nats per example on {num_examples} test images; I(x;z) ≤ log N = "
        f"{math.log(num_examples):.2f}; E_x KL = I(x;z) + KL(q(z)‖p(z)); active: units with "
        "Var_x E_q[z_u|x] > 0.01"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/tutorial04", help="folder for the figures")
    parser.add_argument("--epochs", type=int, default=100, help="epochs for each model")
    parser.add_argument(
        "--sweep-epochs", type=int, default=30, help="epochs per model of the latent-size sweep"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--smoke-test", action="store_true", help="tiny run that only checks the tutorial works"
    )
    args = parser.parse_args()
    args.elbo_samples, args.kl_samples, args.grid = 100, 2000, 20
    args.sweep_dims, args.sweep_samples = [2, 4, 8, 16, 32, 64], 1000
    if args.smoke_test:
        args.epochs, args.elbo_samples, args.kl_samples, args.grid = 1, 2, 200, 5
        args.sweep_dims, args.sweep_epochs, args.sweep_samples = [2, 4], 1, 5
    out = Path(args.out)
    pyro.set_rng_seed(args.seed)
    data = load_data(args.smoke_test)

    tic = time.perf_counter()
    rows = [part1(data, args, out), part2(data, args, out)]
    print(f"# Tutorial 4: the latent space ({args.epochs} epochs per model)")
    report(rows, len(data.test))
    sweep = part3(data, args, out)
    print(f"\n# Latent-size sweep ({args.sweep_epochs} epochs per model)")
    print(sweep.markdown())
    print(f"figures in {out}; {time.perf_counter() - tic:.0f} s")


if __name__ == "__main__":
    main()
