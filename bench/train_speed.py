"""Training speed: ``pv.fit`` beside a plain-PyTorch floor and the textbook Pyro loop.

Three ways to train the same VAE (MLP 784-400-50, Bernoulli likelihood,
diagonal-Gaussian guide, Adam, dynamically binarised MNIST), timed epoch by
epoch in interleaved rounds so that machine noise hits all of them alike:

- ``plain PyTorch``: the floor. The same ``nn.Module`` weights, the loss written
  by hand (closed-form KL), one ``torch.optim.Adam``, data resident in memory,
  batches by indexing, one vectorised Bernoulli draw per batch.
- ``pv.fit``: the library, with its default objective (``analytic-kl``).
- ``Pyro SVI + Trace_ELBO``: the straightforward Pyro implementation, as in
  Pyro's VAE example (``pyro.module``, ``pyro.optim.Adam``, validation on).

Reports the median seconds per epoch and the ratios to the floor at several
batch sizes, and appends the table to BENCHMARKS.md. Issue 4's target is
``pv.fit`` ≤ 1.05× the floor.

    python bench/train_speed.py --data-dir /tmp/mnist [--batch-sizes 32,128,512 --rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import pyro
import pyro.distributions as dist
import pyro.infer
import pyro.optim
import torch
from _report import append_section
from torch.nn import functional as F

import pyro_vae as pv

LATENT, HIDDEN = 50, 400


def build(name: str) -> pv.VAE:
    return pv.VAE(
        pv.priors.StandardNormal(LATENT),
        pv.likelihoods.Bernoulli(pv.nets.MLP(LATENT, [HIDDEN], 784)),
        pv.guides.DiagonalNormal(pv.nets.MLP(784, [HIDDEN]), latent_dim=LATENT),
        name=name,
    )


class PlainTorch:
    """The floor: the VAE's own modules, the negative ELBO by hand, one Adam."""

    def __init__(self, vae: pv.VAE, lr: float) -> None:
        self.vae = vae
        self.optim = torch.optim.Adam(vae.parameters(), lr=lr)

    def epoch(self, data: torch.Tensor, batch_size: int, generator: torch.Generator) -> float:
        encoder, decoder = self.vae.encoder, self.vae.likelihood.net
        order = torch.randperm(len(data), generator=generator)
        total = 0.0
        for start in range(0, len(data), batch_size):
            x = torch.bernoulli(data[order[start : start + batch_size]], generator=generator)
            loc, raw = encoder.head(encoder.net(x)).chunk(2, dim=-1)
            scale = F.softplus(raw) + encoder.min_scale
            z = loc + scale * torch.randn_like(loc)
            logits = decoder(z)
            reconstruction = -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(
                -1
            )
            kl = 0.5 * (loc.pow(2) + scale.pow(2) - 1).sum(-1) - scale.log().sum(-1)
            loss = (kl - reconstruction).mean()
            self.optim.zero_grad(set_to_none=True)
            loss.backward()
            self.optim.step()
            total += loss.item() * len(x)
        return total / len(data)


class PyroExample:
    """Pyro's VAE example: pyro.module, Trace_ELBO, pyro.optim.Adam, per-example scaling."""

    def __init__(self, vae: pv.VAE, lr: float) -> None:
        self.vae = vae
        self.svi = pyro.infer.SVI(
            self.model, self.guide, pyro.optim.Adam({"lr": lr}), pyro.infer.Trace_ELBO()
        )

    def model(self, x: torch.Tensor) -> None:
        pyro.module("example_decoder", self.vae.likelihood)
        with pyro.plate("data", len(x)), pyro.poutine.scale(scale=1.0 / len(x)):
            z = pyro.sample("z", dist.Normal(torch.zeros(LATENT), 1.0).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=self.vae.likelihood.net(z)).to_event(1), obs=x)

    def guide(self, x: torch.Tensor) -> None:
        pyro.module("example_encoder", self.vae.encoder)
        with pyro.plate("data", len(x)), pyro.poutine.scale(scale=1.0 / len(x)):
            pyro.sample("z", self.vae.encoder(x))

    def epoch(self, data: torch.Tensor, batch_size: int, generator: torch.Generator) -> float:
        order = torch.randperm(len(data), generator=generator)
        total = 0.0
        for start in range(0, len(data), batch_size):
            x = torch.bernoulli(data[order[start : start + batch_size]], generator=generator)
            total += self.svi.step(x) * len(x)
        return total / len(data)


def _fit_epochs(vae: pv.VAE, data: torch.Tensor, batch_size: int, lr: float, rounds: int):
    """Runs pv.fit one epoch at a time by resuming its run folder, timing each epoch."""
    import tempfile

    folder = tempfile.mkdtemp(prefix="train-speed-")
    for epoch in range(1, rounds + 1):
        tic = time.perf_counter()
        history = pv.fit(
            vae, data, epochs=epoch, batch_size=batch_size, lr=lr, binarize=True, seed=0,
            out=folder, resume=epoch > 1, progress=False,
        )  # fmt: skip
        wall = time.perf_counter() - tic
        yield history.rows[-1]["seconds"], wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="folder with mnist.npz (default: mnist5k)")
    parser.add_argument("--batch-sizes", default="32,128,512")
    parser.add_argument("--rounds", type=int, default=3, help="epochs timed per variant")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--benchmarks", default="BENCHMARKS.md")
    args = parser.parse_args()
    dataset = "mnist" if args.data_dir else "mnist5k"
    data = pv.data.load(dataset, "train", root=args.data_dir)
    lines = [
        "",
        "## Training speed: pv.fit against the plain-PyTorch floor",
        "",
        f"MLP 784-{HIDDEN}-{LATENT} VAE, Bernoulli, dynamic binarisation, {dataset} "
        f"({len(data)} training images), Adam lr {args.lr}; median seconds per epoch over "
        f"{args.rounds} interleaved epochs, {torch.get_num_threads()} CPU threads. `pv.fit` "
        "counts its training loop only (its `seconds` column); validation is off.",
        "",
        "| batch | plain PyTorch (s) | pv.fit (s) | Pyro SVI + Trace_ELBO (s) "
        "| pv.fit / plain | Pyro example / plain |",
        "|---|---|---|---|---|---|",
    ]
    for batch_size in (int(b) for b in args.batch_sizes.split(",")):
        pyro.clear_param_store()
        torch.manual_seed(0)
        plain, example = PlainTorch(build("plain"), args.lr), PyroExample(build("ex"), args.lr)
        fitted = build("fit")
        fit_epochs = _fit_epochs(fitted, data, batch_size, args.lr, args.rounds + 1)
        generator = torch.Generator().manual_seed(0)
        times = {"plain": [], "fit": [], "example": []}
        for round_ in range(args.rounds + 1):  # round 0 warms up and is not counted
            tic = time.perf_counter()
            plain.epoch(data, batch_size, generator)
            plain_s = time.perf_counter() - tic
            fit_s, _ = next(fit_epochs)
            tic = time.perf_counter()
            example.epoch(data, batch_size, generator)
            example_s = time.perf_counter() - tic
            if round_ > 0:
                times["plain"].append(plain_s)
                times["fit"].append(fit_s)
                times["example"].append(example_s)
        med = {k: statistics.median(v) for k, v in times.items()}
        lines.append(
            f"| {batch_size} | {med['plain']:.2f} | {med['fit']:.2f} | {med['example']:.2f} | "
            f"{med['fit'] / med['plain']:.2f} | {med['example'] / med['plain']:.2f} |"
        )
        print(lines[-1], flush=True)
    append_section(args.benchmarks, lines)


if __name__ == "__main__":
    main()
