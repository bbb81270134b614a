"""One process of a data-parallel test run (launched by tests/test_distributed.py).

Usage: ``python _ddp_worker.py SCENARIO RESULTS [OPTIONS-JSON]``, with RANK,
WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT in the environment. Each
process writes what the test checks to ``RESULTS-rank<r>.pt``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pyro
import pyro.distributions as dist
import torch

import pyro_vae as pv


def small_vae() -> pv.VAE:
    return pv.VAE(
        prior=pv.priors.StandardNormal(3),
        likelihood=pv.likelihoods.Bernoulli(pv.nets.MLP(3, [16], 12)),
        guide=pv.guides.DiagonalNormal(pv.nets.MLP(12, [16]), latent_dim=3),
    )


def binary_data(n: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return (torch.rand(n, 12, generator=generator) > 0.5).float()


def deterministic_programs():
    """Linear-Gaussian model with a point-mass guide: Trace_ELBO's loss has no randomness."""

    def model(x):
        w = pyro.param("w", torch.full((2, 6), 0.1))
        s = pyro.param("s", torch.ones(6), constraint=dist.constraints.positive)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
            pyro.sample("x", dist.Normal(z @ w, s).to_event(1), obs=x)

    def guide(x):
        a = pyro.param("a", torch.full((6, 2), 0.05))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Delta(x @ a).to_event(1))

    return model, guide


def deterministic_fit(batch_size: int) -> dict:
    """Fits the deterministic programs; the same call runs in one process or two."""
    pyro.clear_param_store()
    x = torch.rand(49, 6, generator=torch.Generator().manual_seed(1))
    model, guide = deterministic_programs()
    history = pv.fit(
        model, x, guide=guide, valid=x[:13], objective=pyro.infer.Trace_ELBO(), epochs=3,
        batch_size=batch_size, binarize=True, seed=3, progress=False,
    )  # fmt: skip
    params = {k: v.detach().clone() for k, v in pyro.get_param_store().items()}
    return {"params": params, "rows": history.rows}


def vae_fit(options: dict) -> dict:
    """A stochastic objective; each rank gets its own ``out`` so a test sees who wrote."""
    pyro.set_rng_seed(0)  # the same initial parameters in every launch
    vae = small_vae()
    history = pv.fit(
        vae, binary_data(101), valid=binary_data(31), epochs=options["epochs"], batch_size=8,
        seed=1, out=options["outs"][int(os.environ["RANK"])],
        resume=options.get("resume", False), progress=True,
    )  # fmt: skip
    return {"params": vae.state_dict(), "rows": history.rows}


def errors(options: dict) -> dict:
    """The errors every process gets from bad set-ups: mismatched data, an occupied folder."""
    rank = int(os.environ["RANK"])
    seen = {}
    try:
        pv.fit(small_vae(), binary_data(40 + rank), epochs=1, progress=False)
    except ValueError as e:
        seen["mismatch"] = (type(e).__name__, str(e))
    try:
        pv.fit(small_vae(), binary_data(40), epochs=1, out=options["out"], progress=False)
    except FileExistsError as e:
        seen["occupied"] = (type(e).__name__, str(e))
    return seen


def endless(options: dict) -> dict:
    """Trains until killed; signals the test once training has begun."""
    Path(options["started"] + os.environ["RANK"]).touch()
    pv.fit(small_vae(), binary_data(400), epochs=10**6, batch_size=8, progress=False)
    return {}


SCENARIOS = {
    "deterministic": lambda options: deterministic_fit(options["batch_size"]),
    "vae": vae_fit,
    "errors": errors,
    "endless": endless,
}


if __name__ == "__main__":
    scenario, results = sys.argv[1], sys.argv[2]
    options = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
    pv.distributed.init(timeout=options.get("timeout", 60))
    outcome = SCENARIOS[scenario](options)
    torch.save(outcome, f"{results}-rank{os.environ['RANK']}.pt")
