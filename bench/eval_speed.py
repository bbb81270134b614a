"""Importance-sampled log p(x) with K = 5000: ``pv.evaluate`` against the matmul floor.

The estimate log p(x) ≈ logsumexp_k log w_k - log K needs K decoder passes per
test image, 5·10⁷ for the 10,000 MNIST test images at K = 5000: that
arithmetic is the floor. The floor here is the decoder alone, run on random
latents in the same chunks (particles × examples ≤ ``max_rows``), vectorised
and without gradients; ``pv.evaluate.log_likelihood`` adds the encoder (once
per batch), the sampling, the three log-densities and the streamed logsumexp.
The two are timed in interleaved parts of the test set.

glibc's malloc hands blocks of this size (a chunk's (K, B, 784) logits are 25 MB)
back to the system when they are freed and page-faults them in again at the next
chunk; which of the three timings pays for that depends on the heap's history, and
it moved the ratios by a quarter between runs (a third of the CPU time went to the
kernel). The benchmark therefore runs with glibc told to keep its blocks
(:data:`KEEP_BLOCKS`, set before the process starts); ``--system-malloc`` runs it
with glibc's defaults instead.

It also measures the peak memory of the evaluation (the peak resident set
size above the size before it, in a fresh subprocess, Linux only) for several
``max_rows``.

    python bench/eval_speed.py --data-dir /tmp/mnist [--num-samples 5000 --test-examples 10000]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import time

import pyro
import torch
from _report import append_section
from torch.nn import functional as F

import pyro_vae as pv

LATENT, HIDDEN = 50, 400

# glibc reads these when the process starts: no mmap for large blocks, never trim the heap.
KEEP_BLOCKS = {"MALLOC_MMAP_THRESHOLD_": str(2**32), "MALLOC_TRIM_THRESHOLD_": str(2**36)}


def build() -> pv.VAE:
    return pv.VAE(
        pv.priors.StandardNormal(LATENT),
        pv.likelihoods.Bernoulli(pv.nets.MLP(LATENT, [HIDDEN], 784)),
        pv.guides.DiagonalNormal(pv.nets.MLP(784, [HIDDEN]), latent_dim=LATENT),
    )


def trained(data_dir: str | None, epochs: int) -> tuple[pv.VAE, torch.Tensor]:
    dataset = "mnist" if data_dir else "mnist5k"
    pyro.set_rng_seed(0)
    vae = build()
    train = pv.data.load(dataset, "train", root=data_dir)
    pv.fit(vae, train, epochs=epochs, batch_size=128, binarize=True, seed=0, progress=False)
    test = pv.data.load(dataset, "test", root=data_dir, binarize="static")
    return vae, test


@torch.no_grad()
def floor(vae: pv.VAE, n: int, num_samples: int, max_rows: int) -> None:
    """The decoder passes of the evaluation alone, in the evaluation's chunks."""
    decoder = vae.likelihood.net
    batch = min(n, max_rows)
    chunk = max(1, max_rows // batch)
    for start in range(0, n, batch):
        b = min(batch, n - start)
        for k in range(0, num_samples, chunk):
            decoder(torch.randn(min(chunk, num_samples - k), b, LATENT))


@torch.no_grad()
def hand_written(vae: pv.VAE, x: torch.Tensor, num_samples: int, max_rows: int) -> torch.Tensor:
    """log p(x) written by hand in plain PyTorch: the same chunks, encoder once per batch."""
    encoder, decoder = vae.encoder, vae.likelihood.net
    batch = min(len(x), max_rows)
    chunk = max(1, max_rows // batch)
    out = []
    for start in range(0, len(x), batch):
        xb = x[start : start + batch]
        loc, raw = encoder.head(encoder.net(xb)).chunk(2, dim=-1)
        scale = F.softplus(raw) + encoder.min_scale
        log_sum = None
        for k in range(0, num_samples, chunk):
            eps = torch.randn((min(chunk, num_samples - k),) + loc.shape)
            z = loc + scale * eps
            logits = decoder(z)
            log_w = -F.binary_cross_entropy_with_logits(
                logits, xb.expand_as(logits), reduction="none"
            ).sum(-1)
            log_w += -0.5 * z.pow(2).sum(-1) + (0.5 * eps.pow(2) + scale.log()).sum(-1)
            part = torch.logsumexp(log_w, 0)
            log_sum = part if log_sum is None else torch.logaddexp(log_sum, part)
        out.append(log_sum - math.log(num_samples))
    return torch.cat(out)


def memory_child(args: argparse.Namespace) -> None:
    """Prints the peak resident memory (MB) added by one evaluation (run in a subprocess)."""
    dataset = "mnist" if args.data_dir else "mnist5k"
    vae = build()  # the weights do not change the memory
    test = pv.data.load(dataset, "test", root=args.data_dir, binarize="static")
    test = test[: args.memory_examples]
    before = _reset_peak()
    pv.evaluate.log_likelihood(vae.model, vae.guide, test, args.num_samples, max_rows=args.max_rows)
    print((_status_kb("VmHWM") - before) / 1024)


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak() -> int:
    """Resets the peak resident size (Linux: clear_refs 5) and returns the current one, in kB."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status_kb("VmRSS")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="folder with mnist.npz (default: mnist5k)")
    parser.add_argument("--num-samples", type=int, default=5000)
    parser.add_argument("--test-examples", type=int, default=10000)
    parser.add_argument("--parts", type=int, default=20, help="interleaved parts of the test set")
    parser.add_argument("--max-rows", type=int, default=8192)
    parser.add_argument("--memory-rows", default="4096,8192,32768,131072")
    parser.add_argument("--memory-examples", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=1, help="training before the evaluation")
    parser.add_argument("--benchmarks", default="BENCHMARKS.md")
    parser.add_argument(
        "--system-malloc", action="store_true", help="glibc's default malloc settings"
    )
    parser.add_argument("--skip-timing", action="store_true", help="the memory table alone")
    parser.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.system_malloc and any(os.environ.get(k) != v for k, v in KEEP_BLOCKS.items()):
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **KEEP_BLOCKS})
    if args.memory_child:
        memory_child(args)
        return

    lines = ["", "## Evaluation: importance-sampled log p(x) against the matmul floor", ""]
    if not args.skip_timing:
        lines += timing(args)
    lines += memory(args)
    print("\n".join(lines))
    append_section(args.benchmarks, lines)


def timing(args: argparse.Namespace) -> list[str]:
    """The three evaluations timed in interleaved parts of the test set: the table's lines."""
    vae, test = trained(args.data_dir, args.epochs)
    test = test[: args.test_examples]
    parts = torch.tensor_split(torch.arange(len(test)), args.parts)
    seconds = {"floor": [], "ours": [], "hand": []}
    log_px, stderr = [], []
    runs = {
        "floor": lambda x: floor(vae, len(x), args.num_samples, args.max_rows),
        "hand": lambda x: hand_written(vae, x, args.num_samples, args.max_rows),
        "ours": lambda x: pv.evaluate.log_likelihood(
            vae.model, vae.guide, x, args.num_samples, max_rows=args.max_rows, return_stderr=True
        ),
    }
    order = list(runs)
    for i, part in enumerate(parts):
        for name in order[i % 3 :] + order[: i % 3]:  # each variant goes first in turn
            tic = time.perf_counter()
            result = runs[name](test[part])
            seconds[name].append(time.perf_counter() - tic)
            if name == "ours":
                log_px.append(result[0])
                stderr.append(result[1])
        times = ", ".join(f"{name} {seconds[name][-1]:.2f} s" for name in order)
        print(f"part {i + 1}/{len(parts)}: {times}", flush=True)
    log_px, stderr = torch.cat(log_px), torch.cat(stderr)
    # Per-part ratios, so that a slow spell of the machine within one part moves one
    # ratio rather than the totals of all three.
    ratio = {
        other: statistics.median(
            o / t for o, t in zip(seconds["ours"], seconds[other], strict=True)
        )
        for other in ("floor", "hand")
    }
    seconds = {name: sum(times) for name, times in seconds.items()}
    n = len(test)
    between = log_px.std().item() / math.sqrt(n)
    monte_carlo = stderr.pow(2).sum().sqrt().item() / n
    malloc = "glibc's default malloc" if args.system_malloc else "glibc keeping its blocks"
    return [
        f"MLP 784-{HIDDEN}-{LATENT} VAE trained {args.epochs} epoch(s); K = {args.num_samples} "
        f"on {n} test images (statically binarised), max_rows {args.max_rows}, "
        f"{torch.get_num_threads()} CPU threads, {malloc}, the three timed in {args.parts} "
        "interleaved parts; each ratio is the median of the per-part ratios. The decoder "
        "floor is the decoder alone on random latents in the same chunks; the hand-written "
        "column adds what the estimate needs (encoder once per batch, Bernoulli "
        "log-likelihood, log p(z), log q(z|x), streamed logsumexp) in plain PyTorch. ± over "
        "images is the standard error of the mean over test images; ± Monte Carlo is that "
        "of the importance-sampling estimate itself.",
        "",
        "| decoder floor (s) | hand-written (s) | pv.evaluate.log_likelihood (s) "
        "| ours / floor | ours / hand-written | mean log p(x) | ± over images | ± Monte Carlo |",
        "|---|---|---|---|---|---|---|---|",
        f"| {seconds['floor']:.1f} | {seconds['hand']:.1f} | {seconds['ours']:.1f} | "
        f"{ratio['floor']:.2f} | {ratio['hand']:.2f} | "
        f"{log_px.mean().item():.2f} | {between:.2f} | {monte_carlo:.4f} |",
        "",
    ]


def memory(args: argparse.Namespace) -> list[str]:
    """Peak memory by ``max_rows``, each in a fresh process with glibc's defaults: lines."""
    system_env = {k: v for k, v in os.environ.items() if k not in KEEP_BLOCKS}
    rows_mb = []
    for rows in args.memory_rows.split(","):
        command = [sys.executable, __file__, "--memory-child", "--system-malloc"]
        command += ["--max-rows", rows, "--num-samples", str(args.num_samples)]
        command += ["--memory-examples", str(args.memory_examples)]
        if args.data_dir:
            command += ["--data-dir", args.data_dir]
        run = subprocess.run(command, check=True, capture_output=True, text=True, env=system_env)
        rows_mb.append((int(rows), float(run.stdout.strip().splitlines()[-1])))
        print(f"max_rows {rows}: {rows_mb[-1][1]:.0f} MB", flush=True)
    return [
        f"Peak memory added by the evaluation of {args.memory_examples} images "
        f"(K = {args.num_samples}), by `max_rows`, glibc's default malloc:",
        "",
        "| max_rows | peak memory (MB) |",
        "|---|---|",
        *[f"| {rows} | {mb:.0f} |" for rows, mb in rows_mb],
    ]


if __name__ == "__main__":
    main()
