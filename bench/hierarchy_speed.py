"""Training speed of a two-layer VAE: the fused path against tracing and a hand-written floor.

The IWAE paper's two-layer model (784-200-200-100-100-100-50, tanh, Bernoulli,
``pv.HierarchicalVAE.mlp``), trained on dynamically binarised MNIST with Adam, three
ways, timed epoch by epoch in interleaved rounds so that machine noise hits them alike:

- ``hand-written``: the floor. The model's own modules, its log-weights written by
  hand and vectorised over K particles (ELBO: their mean; IWAE: the log-mean-exp),
  torch's fused Adam, batches by indexing, one Bernoulli draw per batch. For DReG the
  floor is the hand-written IWAE of the same K.
- ``pv.fit, fused``: the library as users run it: a HierarchicalVAE's own programs
  are evaluated from its parts (:mod:`pyro_vae.infer._fused_hierarchy`).
- ``pv.fit, traced``: the same ``pv.fit`` with the fused path switched off, so every
  step traces the guide and replays the model through Pyro's handlers, as every step
  of a hierarchy did before the fused path covered it.

Each round trains one more epoch of each (``pv.fit`` resuming its run folder, its
``seconds`` column: the training loop alone); round 0 warms up and is not counted.
Each ratio is the median of the per-round ratios; the table goes to BENCHMARKS.md.

    python bench/hierarchy_speed.py --data-dir /work/data --examples 5000 --rounds 5
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pyro
import torch
from _report import append_section
from torch.nn import functional as F

import pyro_vae as pv
from pyro_vae.infer import _fused

LAYERS = [([200, 200], 100), ([100, 100], 50)]
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def build(name: str) -> pv.HierarchicalVAE:
    return pv.HierarchicalVAE.mlp(784, LAYERS, name=name)


def _diagonal(guide: pv.guides.DiagonalNormal, inputs: torch.Tensor):
    """(μ, σ) of a DiagonalNormal layer, as ``diagonal_from_params`` computes them."""
    loc, raw = guide.head(guide.net(inputs)).chunk(2, dim=-1)
    return loc, F.softplus(raw) + guide.min_scale


def _log_normal(z: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return (-0.5 * ((z - loc) / scale).pow(2) - scale.log() - _HALF_LOG_2PI).sum(-1)


class PlainTorch:
    """The floor: the two-layer model's modules, its log-weights by hand, one fused Adam.

    Arguments:
        vae: the modules.
        lr: Adam's learning rate.
        bound: ``"elbo"`` (the mean of the K log-weights) or ``"iwae"``.
        k: particles per example.
    """

    def __init__(self, vae: pv.HierarchicalVAE, lr: float, bound: str, k: int) -> None:
        self.vae, self.bound, self.k = vae, bound, k
        self.optim = torch.optim.Adam(vae.parameters(), lr=lr, fused=True)  # as pv.fit's

    def log_weights(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x, z1, z2) - log q(z1, z2 | x) for K draws: ``(K, B)``."""
        vae = self.vae
        loc1, scale1 = _diagonal(vae.encoder, x)
        eps1 = torch.randn((self.k,) + loc1.shape)
        z1 = loc1 + scale1 * eps1
        loc2, scale2 = _diagonal(vae.upper_guides[0], z1)
        eps2 = torch.randn_like(loc2)
        z2 = loc2 + scale2 * eps2
        prior_loc, prior_scale = _diagonal(vae.conditionals[0], z2)
        logits = vae.likelihood.net(z1)
        log_px = -F.binary_cross_entropy_with_logits(
            logits, x.expand_as(logits), reduction="none"
        ).sum(-1)
        log_pz2 = -0.5 * z2.pow(2).sum(-1) - z2.shape[-1] * _HALF_LOG_2PI
        log_pz1 = _log_normal(z1, prior_loc, prior_scale)
        log_q1 = (-0.5 * eps1.pow(2) - scale1.log() - _HALF_LOG_2PI).sum(-1)
        log_q2 = (-0.5 * eps2.pow(2) - scale2.log() - _HALF_LOG_2PI).sum(-1)
        return log_px + log_pz1 + log_pz2 - log_q1 - log_q2

    def epoch(self, data: torch.Tensor, batch_size: int, generator: torch.Generator) -> float:
        order = torch.randperm(len(data), generator=generator)
        total = 0.0
        for start in range(0, len(data), batch_size):
            x = torch.bernoulli(data[order[start : start + batch_size]], generator=generator)
            log_w = self.log_weights(x)
            if self.bound == "elbo":
                loss = -log_w.mean()
            else:
                loss = -(torch.logsumexp(log_w, 0) - math.log(self.k)).mean()
            self.optim.zero_grad(set_to_none=True)
            loss.backward()
            self.optim.step()
            total += loss.item() * len(x)
        return total / len(data)


@contextmanager
def traced_only() -> Iterator[None]:
    """Switches the fused path off: every estimator then traces the programs."""
    match = _fused.match
    _fused.match = lambda *args, **kwargs: None
    try:
        yield
    finally:
        _fused.match = match


def _fit_epochs(
    data: torch.Tensor, spec: str, batch_size: int, lr: float, rounds: int, traced: bool
) -> Iterator[float]:
    """pv.fit one epoch at a time by resuming its run folder; yields each epoch's seconds."""
    torch.manual_seed(0)
    vae, folder = (
        build(f"fit_{'traced' if traced else 'fused'}"),
        tempfile.mkdtemp(prefix="hierarchy-speed-"),
    )
    for epoch in range(1, rounds + 1):
        with traced_only() if traced else _nothing():
            history = pv.fit(
                vae, data, objective=spec, epochs=epoch, batch_size=batch_size, lr=lr,
                binarize=True, seed=0, out=folder, resume=epoch > 1, progress=False,
            )  # fmt: skip
        yield history.rows[-1]["seconds"]


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def time_row(args, data: torch.Tensor, spec: str, batch_size: int) -> dict[str, float]:
    """Median seconds per epoch of the three variants, and their per-round ratios."""
    parsed = pv.objectives.parse(spec)
    bound = "elbo" if parsed.name == "elbo" else "iwae"
    pyro.clear_param_store()
    torch.manual_seed(0)
    plain = PlainTorch(build("plain"), args.lr, bound, parsed.num_particles)
    generator = torch.Generator().manual_seed(0)
    variants: dict[str, Callable[[], float]] = {}
    for name, traced in (("fused", False), ("traced", True)):
        epochs = _fit_epochs(data, spec, batch_size, args.lr, args.rounds + 1, traced)
        variants[name] = epochs.__next__

    def hand_written() -> float:
        tic = time.perf_counter()
        plain.epoch(data, batch_size, generator)
        return time.perf_counter() - tic

    variants["plain"] = hand_written
    times: dict[str, list[float]] = {name: [] for name in variants}
    for round_ in range(args.rounds + 1):  # round 0 warms up and is not counted
        order = list(variants) if round_ % 2 == 0 else list(reversed(variants))
        measured = {name: variants[name]() for name in order}
        if round_ > 0:
            for name, seconds in measured.items():
                times[name].append(seconds)
    medians = {name: statistics.median(values) for name, values in times.items()}
    ratios = {
        f"{a}/{b}": statistics.median(x / y for x, y in zip(times[a], times[b], strict=True))
        for a, b in (("fused", "plain"), ("traced", "plain"), ("traced", "fused"))
    }
    return {**medians, **ratios}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="folder with mnist.npz (default: mnist5k)")
    parser.add_argument(
        "--cases", default="elbo@20,elbo@100,iwae:k=5@20,iwae-dreg:k=5@20",
        help="comma-separated OBJECTIVE@BATCH",
    )  # fmt: skip
    parser.add_argument("--examples", type=int, default=5000, help="train on the first N images")
    parser.add_argument("--rounds", type=int, default=5, help="epochs timed per variant")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--benchmarks", default="BENCHMARKS.md")
    args = parser.parse_args()
    dataset = "mnist" if args.data_dir else "mnist5k"
    data = pv.data.load(dataset, "train", root=args.data_dir)[: args.examples]
    lines = [
        "",
        "## Training speed of a two-layer VAE: the fused path against tracing",
        "",
        "The IWAE paper's two-layer model (`pv.HierarchicalVAE.mlp(784, "
        "[([200, 200], 100), ([100, 100], 50)])`, tanh, Bernoulli), dynamic binarisation, "
        f"{dataset} ({len(data)} training images), Adam lr {args.lr}, torch's fused kernel "
        f"in all three; median seconds per epoch over {args.rounds} interleaved epochs, "
        f"{torch.get_num_threads()} CPU thread(s); each ratio is the median of the per-round "
        "ratios. `pv.fit` counts its training loop only; validation is off. *Traced* is the "
        "same `pv.fit` with the fused path switched off, as a hierarchy trained before it. "
        "For DReG the hand-written floor is the IWAE of the same K.",
        "",
        "| objective | batch | hand-written (s) | pv.fit, fused (s) | pv.fit, traced (s) "
        "| fused / hand-written | traced / hand-written | traced / fused |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for case in args.cases.split(","):
        spec, batch = case.rsplit("@", 1)
        med = time_row(args, data, spec, int(batch))
        lines.append(
            f"| {spec} | {batch} | {med['plain']:.2f} | {med['fused']:.2f} | "
            f"{med['traced']:.2f} | {med['fused/plain']:.2f} | {med['traced/plain']:.2f} | "
            f"{med['traced/fused']:.2f} |"
        )
        print(lines[-1], flush=True)
    append_section(args.benchmarks, lines)


if __name__ == "__main__":
    main()
