"""A training process for the tests that stop, kill and resume it.

    python tests/_train_process.py OUT --epochs 4 [--resume] [--checkpoint-every 1]
        [--die-in-save N] [--slow-writes]

Trains a small VAE with dynamic binarisation and a KL warm-up (so the data
generator, the particles and the objective's counter all carry state) and prints
``training`` when the first step is about to run. ``--die-in-save N`` makes the
process kill itself with SIGKILL half-way through writing its N-th checkpoint;
``--slow-writes`` makes every write to a checkpoint file take a millisecond.
"""

from __future__ import annotations

import argparse
import os
import signal
import time

import pyro
import torch

import pyro_vae as pv


def make_vae() -> pv.VAE:
    return pv.VAE(
        pv.priors.StandardNormal(3),
        pv.likelihoods.Bernoulli(pv.nets.MLP(3, [32], 12)),
        pv.guides.DiagonalNormal(pv.nets.MLP(12, [32]), latent_dim=3),
    )


def make_data() -> torch.Tensor:
    return torch.rand(120, 12, generator=torch.Generator().manual_seed(7))


def die_in_save(n: int) -> None:
    """Makes the n-th checkpoint write stop dead after half of the file is on disk."""
    real_save, count = torch.save, [0]

    def half_then_die(obj, f, *args, **kwargs):
        count[0] += 1
        if count[0] < n:
            return real_save(obj, f, *args, **kwargs)
        real_save(obj, f, *args, **kwargs)
        f.flush()
        f.truncate(f.tell() // 2)
        f.flush()
        os.fsync(f.fileno())
        os.kill(os.getpid(), signal.SIGKILL)

    torch.save = half_then_die


class _SlowFile:
    """A file whose writes take a millisecond each, as on a slow or busy disk."""

    def __init__(self, f) -> None:
        self._f = f

    def write(self, data) -> int:
        time.sleep(0.001)
        return self._f.write(data)

    def __getattr__(self, name):
        return getattr(self._f, name)


def slow_writes() -> None:
    """Makes checkpoint writes take most of each step, so random kills often land in them."""
    real_save = torch.save
    torch.save = lambda obj, f, *args, **kwargs: real_save(obj, _SlowFile(f), *args, **kwargs)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--checkpoint-every", type=int, default=None)
    p.add_argument("--die-in-save", type=int, default=None)
    p.add_argument("--slow-writes", action="store_true")
    args = p.parse_args()
    if args.slow_writes:
        slow_writes()
    if args.die_in_save:
        die_in_save(args.die_in_save)
    pyro.set_rng_seed(12345 if args.resume else 0)  # a restarted process has other states
    vae, data = make_vae(), make_data()
    import torch._dynamo  # noqa: F401 - what Adam's constructor imports (2 s), done before the clock starts

    print("training", flush=True)
    pv.fit(
        vae,
        data,
        valid=(data[:20] > 0.5).float(),
        objective="elbo:beta=1.0,warmup_steps=25",
        epochs=args.epochs,
        batch_size=16,
        lr=3e-3,
        binarize=True,
        seed=3,
        out=args.out,
        resume=args.resume,
        checkpoint_every=args.checkpoint_every,
        progress=False,
    )


if __name__ == "__main__":
    main()
