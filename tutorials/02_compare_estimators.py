r"""Tutorial 2: comparing ELBO estimators on one model.

The same VAE can be trained with many objectives. All of them are Monte Carlo
estimates built from importance weights :math:`w_k = p(x, z_k) / q(z_k \mid x)`,
:math:`z_k \sim q(z \mid x)`:

.. math::

    \begin{aligned}
    \mathrm{ELBO} &= \mathbb{E}[\log w]
        && \text{(elbo: KL by sampling; analytic-kl: KL in closed form)} \\
    \mathrm{IWAE}_K &= \mathbb{E}\Big[\log \frac{1}{K} \sum_k w_k\Big] \ge \mathrm{ELBO}
        && \text{(iwae; tends to } \log p(x) \text{ as K grows)} \\
    \mathcal{L}_\alpha
        &= \mathbb{E}\Big[\frac{1}{1-\alpha} \log \frac{1}{K} \sum_k w_k^{1-\alpha}\Big]
        && \text{(renyi)}
    \end{aligned}

and they differ in the *gradient* they give the guide q_φ:

- reparameterised (z = μ + σ ε): low variance; the default;
- score-function (REINFORCE): no reparameterisation, much higher variance;
- STL drops a zero-mean score term, so at the exact posterior the guide's
  gradient is exactly zero;
- for IWAE the guide's signal-to-noise ratio falls like 1/√K (Rainforth et al.
  2018); DReG (Tucker et al. 2019) removes that decay.

Part 1 checks the ordering ELBO ≤ IWAE_K ≤ log p(x) on the linear-Gaussian
model, where log p(x) is known exactly. Part 2 runs ``pv.compare``: each
objective trains the same model from the same initial weights, seed and data
order, and the lab reports test bounds, log p(x), the ELBO's terms, active
units, time per epoch and gradient statistics against K, as tables and figures.

Run::

    python tutorials/02_compare_estimators.py [--out runs/tutorial02] [--smoke-test]

The command-line equivalent of part 2::

    pyro-vae compare --objectives elbo,analytic-kl,iwae:k=5,iwae-dreg:k=5
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pyro

import pyro_vae as pv
from pyro_vae.models.linear_gaussian import LinearGaussian


def part1_bounds_on_a_known_model(num_examples: int) -> None:
    """Bounds against the exact log p(x) of probabilistic PCA, with an imperfect guide."""
    print("Part 1: ELBO ≤ IWAE_K ≤ log p(x) on the linear-Gaussian model")
    model = LinearGaussian.random(data_dim=10, latent_dim=3, noise_scale=0.5, seed=0)
    x = model.sample(num_examples, seed=1)
    guide = pv.guides.DiagonalNormal(pv.nets.MLP(10, [16]), latent_dim=3).double()
    vae = model.vae(guide)
    pyro.clear_param_store()
    pv.fit(vae, x, epochs=30, batch_size=50, lr=3e-3, seed=0, progress=False)
    exact = model.log_marginal(x).mean().item()
    bounds = pv.evaluate.iwae_bounds(vae.model, vae.guide, x, ks=(1, 10, 100, 1000))
    print(f"  exact log p(x):      {exact:9.3f} nats per example")
    for k, b in bounds.items():
        name = "ELBO (K=1)" if k == 1 else f"IWAE_{k}"
        print(f"  E[{name}]:{' ' * (14 - len(name))}{b.mean().item():9.3f}")
    print()


def part2_compare(args: argparse.Namespace) -> pv.Comparison:
    """Trains one MLP VAE per objective on the embedded MNIST subset and compares them."""
    print(f"Part 2: pv.compare on mnist5k with {args.objectives}")
    train = pv.data.load("mnist5k", "train")
    valid = pv.data.load("mnist5k", "valid")
    rows = pv.data.subset_rows("mnist5k", "test", args.test_examples)  # class-balanced
    test = pv.data.load("mnist5k", "test")[rows]  # not test[:n]: stored in label order
    hidden, latent = (64, 8) if args.smoke_test else (256, 16)
    vae = pv.VAE(
        pv.priors.StandardNormal(latent),
        pv.likelihoods.Bernoulli(pv.nets.MLP(latent, [hidden], 784)),
        pv.guides.DiagonalNormal(pv.nets.MLP(784, [hidden]), latent_dim=latent),
    )
    # What every run shares, checked once: the same options pv.fit takes.
    options = pv.FitOptions(epochs=args.epochs, batch_size=100, lr=1e-3, binarize=True, seed=0)
    return pv.compare(
        vae,
        train,
        valid=valid,
        test=test,
        objectives=args.objectives,
        options=options,
        out=args.out,
        overwrite=True,
        bound_ks=args.bound_ks,
        num_samples=args.num_samples,
        gradient_ks=args.gradient_ks,
        gradient_draws=args.gradient_draws,
        gradient_batch_size=20,  # 20 examples × K = 1000 particles per gradient estimate
        progress=not args.smoke_test,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/tutorial02", help="folder for tables and figures")
    parser.add_argument(
        "--objectives",
        default="elbo,analytic-kl,score-function,stl,iwae:k=5,iwae-dreg:k=5,iwae:k=50",
        help="objectives to compare, comma-separated specs",
    )
    parser.add_argument("--epochs", type=int, default=10, help="epochs for each objective")
    parser.add_argument(
        "--smoke-test", action="store_true", help="tiny run that only checks the tutorial works"
    )
    args = parser.parse_args()
    args.bound_ks, args.num_samples = (1, 5, 50, 500), 5000
    args.gradient_ks, args.gradient_draws, args.test_examples = (1, 10, 100, 1000), 50, 1000
    if args.smoke_test:
        args.epochs, args.objectives = 1, "elbo,score-function,iwae:k=3,iwae-dreg:k=3"
        args.bound_ks, args.num_samples = (1, 5), 20
        args.gradient_ks, args.gradient_draws, args.test_examples = (1, 3), 3, 50
    tic = time.perf_counter()
    part1_bounds_on_a_known_model(num_examples=100 if args.smoke_test else 500)
    result = part2_compare(args)
    print(result.markdown())
    print(result.gradients_markdown())
    out = Path(args.out)
    print(
        f"wrote {out / 'comparison.png'}, {out / 'gradients.png'}, comparison.csv/.md, "
        f"gradients.csv ({time.perf_counter() - tic:.0f} s)"
    )


if __name__ == "__main__":
    main()
