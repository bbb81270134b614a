r"""Tutorial 1: a variational autoencoder as two Pyro programs.

A VAE is a latent-variable model :math:`p(z)\, p_\theta(x \mid z)` with an amortised
guide :math:`q_\phi(z \mid x)`, trained by maximising the evidence lower bound

.. math::

    \mathrm{ELBO}(x) = \mathbb{E}_{q_\phi(z \mid x)}[\log p_\theta(x \mid z)]
      - \mathrm{KL}(q_\phi(z \mid x) \,\|\, p(z)) \le \log p(x).

Part 1 writes the model and the guide from scratch as Pyro functions
(``pyro.module``, ``pyro.plate``, ``pyro.sample``) and trains them with Pyro's
SVI. Part 2 builds the same VAE from pyro_vae's parts and trains it with
``pv.fit``. Both are then scored the same way, by the importance-sampled
held-out log-likelihood, which works for any model/guide pair that uses the
site names "z" and "x" inside a plate "data".

Run::

    python tutorials/01_vae.py [--out runs/tutorial01] [--smoke-test]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pyro
import pyro.distributions as dist
import torch
from torch import nn

import pyro_vae as pv

LATENT_DIM, HIDDEN = 16, 400


# --- Part 1: the model and the guide, written by hand -------------------------------------


class Decoder(nn.Module):
    """z (…, 16) -> Bernoulli logits of the 784 pixels (…, 784)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(LATENT_DIM, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, 784))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class Encoder(nn.Module):
    """x (B, 784) -> mean and standard deviation of q(z|x), each (B, 16)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(784, HIDDEN), nn.ReLU())
        self.head = nn.Linear(HIDDEN, 2 * LATENT_DIM)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loc, raw_scale = self.head(self.body(x)).chunk(2, dim=-1)
        return loc, nn.functional.softplus(raw_scale) + 1e-4


decoder, encoder = Decoder(), Encoder()


def model(x: torch.Tensor) -> None:
    """p(z) p(x|z): z ~ N(0, I), x ~ Bernoulli(logits = decoder(z)), for each row of x."""
    pyro.module("decoder", decoder)  # registers the decoder's weights with Pyro
    with pyro.plate("data", x.shape[0]):  # the rows of x are independent
        z = pyro.sample("z", dist.Normal(torch.zeros(LATENT_DIM), 1.0).to_event(1))
        pyro.sample("x", dist.Bernoulli(logits=decoder(z)).to_event(1), obs=x)


def guide(x: torch.Tensor) -> None:
    """q(z|x) = N(μ(x), diag σ(x)²), sampled at the same site name "z"."""
    pyro.module("encoder", encoder)
    with pyro.plate("data", x.shape[0]):
        loc, scale = encoder(x)
        pyro.sample("z", dist.Normal(loc, scale).to_event(1))


def train_by_hand(train: torch.Tensor, epochs: int, batch_size: int) -> list[float]:
    """Plain Pyro SVI over mini-batches with dynamic binarisation; returns the loss per epoch."""
    # TraceMeanField_ELBO computes KL(q ‖ p) in closed form; the loss is the negative ELBO
    # summed over the batch, so it is divided by the batch size to read in nats per example.
    svi = pyro.infer.SVI(
        model, guide, pyro.optim.Adam({"lr": 1e-3}), pyro.infer.TraceMeanField_ELBO()
    )
    losses = []
    for _ in range(epochs):
        total = 0.0
        for idx in torch.randperm(len(train)).split(batch_size):
            x = torch.bernoulli(train[idx])  # a fresh binarisation of the grey levels
            total += svi.step(x)
        losses.append(total / len(train))
    return losses


# --- Part 2: the same VAE from pyro_vae's parts -------------------------------------------


def build_vae() -> pv.VAE:
    return pv.VAE(
        prior=pv.priors.StandardNormal(LATENT_DIM),
        likelihood=pv.likelihoods.Bernoulli(pv.nets.MLP(LATENT_DIM, [HIDDEN], 784)),
        guide=pv.guides.DiagonalNormal(pv.nets.MLP(784, [HIDDEN]), latent_dim=LATENT_DIM),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/tutorial01", help="folder for the figures")
    parser.add_argument("--epochs", type=int, default=20, help="epochs for each model")
    parser.add_argument(
        "--num-samples",
        type=int,
        default=1000,
        help="importance samples K for the held-out log-likelihood",
    )
    parser.add_argument(
        "--smoke-test", action="store_true", help="tiny run that only checks the tutorial works"
    )
    args = parser.parse_args()
    if args.smoke_test:
        args.epochs, args.num_samples = 1, 5
    out = Path(args.out)
    pyro.set_rng_seed(0)

    train = pv.data.load("mnist5k", "train")  # (3500, 784) grey levels in [0, 1]
    valid = pv.data.load("mnist5k", "valid", binarize="static")
    test = pv.data.load("mnist5k", "test", binarize="static")  # one fixed binarisation
    if args.smoke_test:  # class-balanced subsets: the splits are stored in label order
        sizes = {"train": 200, "valid": 50, "test": 50}
        rows = [pv.data.subset_rows("mnist5k", split, n) for split, n in sizes.items()]
        train, valid, test = train[rows[0]], valid[rows[1]], test[rows[2]]

    tic = time.perf_counter()
    losses = train_by_hand(train, args.epochs, batch_size=100)
    scratch_seconds = time.perf_counter() - tic
    scratch_ll = pv.evaluate.log_likelihood(model, guide, test, args.num_samples)

    vae = build_vae()
    tic = time.perf_counter()
    history = pv.fit(
        vae,
        train,
        valid=valid,
        epochs=args.epochs,
        batch_size=100,
        lr=1e-3,
        binarize=True,
        seed=0,
        progress=False,
    )
    fit_seconds = time.perf_counter() - tic
    parts_ll = pv.evaluate.log_likelihood(vae.model, vae.guide, test, args.num_samples)
    parts_elbo = pv.evaluate.elbo(vae.model, vae.guide, test, num_samples=100)

    print(f"{'':24}{'train loss':>12}{'test log p(x)':>15}{'seconds':>9}")
    print(
        f"{'by hand (Pyro SVI)':24}{losses[-1]:12.2f}{scratch_ll.mean():15.2f}"
        f"{scratch_seconds:9.1f}"
    )
    print(
        f"{'pyro_vae parts + fit':24}{history.rows[-1]['train_loss']:12.2f}"
        f"{parts_ll.mean():15.2f}{fit_seconds:9.1f}"
    )
    print(
        f"test ELBO of the pyro_vae model: {parts_elbo.mean():.2f} nats; the gap to "
        f"log p(x) is the KL from q(z|x) to the true posterior: "
        f"{(parts_ll - parts_elbo).mean():.2f} nats"
    )

    shape = pv.data.info("mnist5k").image_shape
    written = [
        pv.plots.save_samples(vae, shape, out / "samples.png"),
        pv.plots.save_reconstructions(vae, test, shape, out / "reconstructions.png"),
        pv.plots.save_learning_curves(history, out / "learning_curves.png"),
    ]
    print("wrote " + ", ".join(str(p) for p in written))


if __name__ == "__main__":
    main()
