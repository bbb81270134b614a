"""Training speed: ``pv.fit`` beside a plain-PyTorch floor and the textbook Pyro loop.

Three ways to train the same VAE (MLP 784-400-50, Bernoulli likelihood,
diagonal-Gaussian guide, Adam, dynamically binarised MNIST) on the same
objective, timed epoch by epoch in interleaved rounds so that machine noise
hits all of them alike:

- ``hand-written PyTorch``: the floor. The same ``nn.Module`` weights, the loss
  written by hand and vectorised over the K particles, one fused ``torch.optim.Adam``
  (the kernel ``pv.fit`` uses on the CPU),
  data resident in memory, batches by indexing, one vectorised Bernoulli draw
  per batch. For ``analytic-kl`` the closed-form-KL ELBO; for ``iwae:k=K`` the
  IWAE bound; for ``iwae-dreg:k=K`` the IWAE bound with DReG's gradient hook.
- ``pv.fit``: the library, with the objective by name.
- ``Pyro``: the straightforward Pyro implementation, as in Pyro's VAE example
  (``pyro.module``, ``pyro.optim.Adam``, validation on) with ``Trace_ELBO``, or
  the vectorised ``RenyiELBO(alpha=0)`` for the IWAE rows (no DReG in Pyro).

Reports the median seconds per epoch and the ratios to the floor, and appends
the table to BENCHMARKS.md. Issue 4's targets: ``pv.fit`` ≤ 1.05× the floor,
and IWAE and DReG ≤ 1.05× the hand-written IWAE of the same K.

    python bench/train_speed.py --data-dir /tmp/mnist [--batch-sizes 32,128,512 --rounds 3]
    python bench/train_speed.py --data-dir /tmp/mnist --batch-sizes 128 --examples 10000 \\
        --objectives iwae:k=5,iwae-dreg:k=5,iwae:k=50,iwae-dreg:k=50
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
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


_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


class PlainTorch:
    """The floor: the VAE's own modules, the loss by hand, one Adam.

    Arguments:
        vae: the modules.
        lr: Adam's learning rate.
        estimator: ``"analytic-kl"``, ``"iwae"`` or ``"iwae-dreg"``.
        k: particles per example (IWAE family).
    """

    def __init__(self, vae: pv.VAE, lr: float, estimator: str = "analytic-kl", k: int = 1):
        self.vae, self.estimator, self.k = vae, estimator, k
        self.optim = torch.optim.Adam(vae.parameters(), lr=lr, fused=True)  # as pv.fit's

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        encoder, decoder = self.vae.encoder, self.vae.likelihood.net
        loc, raw = encoder.head(encoder.net(x)).chunk(2, dim=-1)
        scale = F.softplus(raw) + encoder.min_scale
        if self.estimator == "analytic-kl":
            z = loc + scale * torch.randn_like(loc)
            logits = decoder(z)
            nll = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
            reconstruction = -nll.sum(-1)
            kl = 0.5 * (loc.pow(2) + scale.pow(2) - 1).sum(-1) - scale.log().sum(-1)
            return (kl - reconstruction).mean()
        eps = torch.randn((self.k,) + loc.shape)
        z = loc + scale * eps
        logits = decoder(z)
        log_px_z = -F.binary_cross_entropy_with_logits(
            logits, x.expand_as(logits), reduction="none"
        ).sum(-1)
        log_pz = -0.5 * z.pow(2).sum(-1) - LATENT * _HALF_LOG_2PI
        if self.estimator == "iwae":
            log_qz = (-0.5 * eps.pow(2) - scale.log() - _HALF_LOG_2PI).sum(-1)
            log_w = log_px_z + log_pz - log_qz
            return -(torch.logsumexp(log_w, 0) - math.log(self.k)).mean()
        # DReG: log q at cut parameters, and w̃ on z's gradient (w̃² for the encoder in all).
        loc_cut, scale_cut = loc.detach(), scale.detach()
        squares = ((z - loc_cut) / scale_cut).pow(2)
        log_qz = (-0.5 * squares - scale_cut.log() - _HALF_LOG_2PI).sum(-1)
        log_w = log_px_z + log_pz - log_qz
        weights = torch.softmax(log_w.detach(), 0)
        z.register_hook(lambda g: g * weights.unsqueeze(-1))
        return -(weights * log_w).sum(0).mean()

    def epoch(self, data: torch.Tensor, batch_size: int, generator: torch.Generator) -> float:
        order = torch.randperm(len(data), generator=generator)
        total = 0.0
        for start in range(0, len(data), batch_size):
            x = torch.bernoulli(data[order[start : start + batch_size]], generator=generator)
            loss = self.loss(x)
            self.optim.zero_grad(set_to_none=True)
            loss.backward()
            self.optim.step()
            total += loss.item() * len(x)
        return total / len(data)


class PyroExample:
    """Pyro's VAE example: pyro.module, Trace_ELBO, pyro.optim.Adam, per-example scaling."""

    def __init__(self, vae: pv.VAE, lr: float, k: int = 1) -> None:
        self.vae = vae
        loss = (
            pyro.infer.Trace_ELBO()
            if k == 1
            else pyro.infer.RenyiELBO(
                alpha=0, num_particles=k, vectorize_particles=True, max_plate_nesting=1
            )
        )
        self.svi = pyro.infer.SVI(self.model, self.guide, pyro.optim.Adam({"lr": lr}), loss)

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


def _fit_epochs(
    vae: pv.VAE, data: torch.Tensor, objective: str, batch_size: int, lr: float, rounds: int
):
    """Runs pv.fit one epoch at a time by resuming its run folder, timing each epoch."""
    folder = tempfile.mkdtemp(prefix="train-speed-")
    for epoch in range(1, rounds + 1):
        tic = time.perf_counter()
        history = pv.fit(
            vae, data, objective=objective, epochs=epoch, batch_size=batch_size, lr=lr,
            binarize=True, seed=0, out=folder, resume=epoch > 1, progress=False,
        )  # fmt: skip
        wall = time.perf_counter() - tic
        yield history.rows[-1]["seconds"], wall


def _time_row(args, data, spec: str, batch_size: int) -> dict[str, float]:
    """Median seconds per epoch of the variants, interleaved round by round.

    The Pyro example runs where Pyro has the estimator; DReG rows also time the
    hand-written IWAE of the same K in the same rounds, the floor its target names.
    """
    parsed = pv.objectives.parse(spec)
    k = parsed.num_particles
    pyro.clear_param_store()
    torch.manual_seed(0)
    plain = PlainTorch(build("plain"), args.lr, parsed.name, k)
    runs = {"plain": plain.epoch}
    if parsed.name == "iwae-dreg":
        runs["plain_iwae"] = PlainTorch(build("plain_iwae"), args.lr, "iwae", k).epoch
    else:
        runs["example"] = PyroExample(build("ex"), args.lr, k).epoch
    fit_epochs = _fit_epochs(build("fit"), data, spec, batch_size, args.lr, args.rounds + 1)
    generator = torch.Generator().manual_seed(0)
    times: dict[str, list[float]] = {name: [] for name in [*runs, "fit"]}
    for round_ in range(args.rounds + 1):  # round 0 warms up and is not counted
        measured = {"fit": next(fit_epochs)[0]}
        for name, epoch in runs.items():
            tic = time.perf_counter()
            epoch(data, batch_size, generator)
            measured[name] = time.perf_counter() - tic
        if round_ > 0:
            for name, seconds in measured.items():
                times[name].append(seconds)
    medians = {name: statistics.median(values) for name, values in times.items()}
    # Ratios round by round, then their median: neighbouring epochs share the machine's state.
    ratios = {
        f"{name}/{floor}": statistics.median(
            a / b for a, b in zip(times[name], times[floor], strict=True)
        )
        for name in times
        for floor in ("plain", "plain_iwae")
        if floor in times and name != floor
    }
    return {"example": math.nan, "plain_iwae": math.nan, **medians, **ratios}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="folder with mnist.npz (default: mnist5k)")
    parser.add_argument("--objectives", default="analytic-kl", help="comma-separated specs")
    parser.add_argument("--batch-sizes", default="32,128,512")
    parser.add_argument("--examples", type=int, default=None, help="train on the first N images")
    parser.add_argument("--rounds", type=int, default=3, help="epochs timed per variant")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--benchmarks", default="BENCHMARKS.md")
    args = parser.parse_args()
    dataset = "mnist" if args.data_dir else "mnist5k"
    data = pv.data.load(dataset, "train", root=args.data_dir)[: args.examples]
    specs = args.objectives.split(",")
    lines = [
        "",
        f"## Training speed: pv.fit against hand-written PyTorch ({', '.join(specs)})",
        "",
        f"MLP 784-{HIDDEN}-{LATENT} VAE, Bernoulli, dynamic binarisation, {dataset} "
        f"({len(data)} training images), Adam lr {args.lr} (torch's fused kernel in the "
        "hand-written loop and in `pv.fit`); median seconds per epoch over "
        f"{args.rounds} interleaved epochs, {torch.get_num_threads()} CPU threads; each ratio "
        "is the median of the per-round ratios. `pv.fit` "
        "counts its training loop only (its `seconds` column); validation is off. The Pyro "
        "column is SVI with `pyro.optim.Adam` and `Trace_ELBO` (`RenyiELBO(alpha=0)`, "
        "vectorised, for IWAE; Pyro has no DReG). The last column divides by the "
        "hand-written IWAE of the same K, timed in the same rounds.",
        "",
        "| objective | batch | hand-written (s) | pv.fit (s) | Pyro (s) "
        "| pv.fit / hand-written | Pyro / hand-written | pv.fit / hand-written IWAE |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for batch_size in (int(b) for b in args.batch_sizes.split(",")):
        for spec in specs:
            med = _time_row(args, data, spec, batch_size)
            name = pv.objectives.parse(spec).name
            versus_iwae = med["fit/plain"] if name == "iwae" else med.get("fit/plain_iwae")
            has_pyro = math.isfinite(med["example"])
            pyro_s = f"{med['example']:.2f}" if has_pyro else "—"
            pyro_ratio = f"{med['example/plain']:.2f}" if has_pyro else "—"
            lines.append(
                f"| {spec} | {batch_size} | {med['plain']:.2f} | {med['fit']:.2f} | {pyro_s} | "
                f"{med['fit/plain']:.2f} | {pyro_ratio} | "
                + (f"{versus_iwae:.2f} |" if versus_iwae is not None else "— |")
            )
            print(lines[-1], flush=True)
    append_section(args.benchmarks, lines)


if __name__ == "__main__":
    main()
