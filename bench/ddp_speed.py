"""Data-parallel training speed: samples per second of ``pv.fit`` on 1 and 2 processes.

The VAE of bench/train_speed.py (MLP 784-400-50, Bernoulli likelihood,
diagonal-Gaussian guide, analytic KL, dynamically binarised MNIST) trained by
``pv.fit`` in four set-ups, each launched with ``torchrun`` (gloo on the CPU):

- 1 process, all the machine's threads: what a user gets without torchrun;
- 1 process, 1 thread;
- 2 processes, 1 thread each, the same batch per process (the global batch doubles);
- 2 processes, 1 thread each, half the batch per process (the same global
  batch, so the same optimisation as 1 process).

The set-ups run in interleaved rounds so that the machine's noise hits them
alike; each reports the median training seconds per epoch (``fit``'s own
``seconds`` column, validation off) over the epochs after the first, as
samples per second. Each process also times an all-reduce of a buffer the size
of the model's gradients (what one step exchanges). The table goes to
BENCHMARKS.md.

    python bench/ddp_speed.py --data-dir /tmp/mnist [--examples 20000 --batch-size 128]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from _report import append_section
from eval_speed import build  # the VAE of bench/train_speed.py and bench/eval_speed.py

import pyro_vae as pv


def worker(args: argparse.Namespace) -> None:
    """One process of a set-up: trains, times an all-reduce, rank 0 writes the result."""
    group = pv.distributed.init()
    dataset = "mnist" if args.data_dir else "mnist5k"
    data = pv.data.load(dataset, "train", root=args.data_dir)[: args.examples]
    torch.manual_seed(0)
    vae = build()
    history = pv.fit(
        vae, data, epochs=args.epochs, batch_size=args.batch_size, binarize=True, seed=0,
        progress=False,
    )  # fmt: skip
    seconds = history.column("seconds")[1:]
    numel = sum(p.numel() for p in vae.parameters())
    buffer = torch.zeros(numel)
    reduce_ms = 0.0
    if group.distributed:
        group.all_reduce_sum(buffer)  # warm-up
        tic = time.perf_counter()
        for _ in range(20):
            group.all_reduce_sum(buffer)
        reduce_ms = (time.perf_counter() - tic) / 20 * 1e3
    if group.is_main:
        result = {"seconds": statistics.median(seconds), "examples": data.shape[0],
                  "reduce_ms": reduce_ms, "parameters": numel}  # fmt: skip
        Path(args.result).write_text(json.dumps(result))


SETUPS = [
    # name, processes, threads per process, batch per process as a fraction of --batch-size
    ("1 process, {t} threads", 1, None, 1.0),
    ("1 process, 1 thread", 1, 1, 1.0),
    ("2 processes × 1 thread, batch B each", 2, 1, 1.0),
    ("2 processes × 1 thread, batch B/2 each", 2, 1, 0.5),
]


def launch(args: argparse.Namespace, processes: int, threads: int, batch: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        command = [
            sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={processes}",
            "--standalone", __file__, "--worker",
            "--result", str(result), "--batch-size", str(batch), "--epochs", str(args.epochs),
        ]  # fmt: skip
        if args.data_dir:
            command += ["--data-dir", args.data_dir]
        if args.examples:
            command += ["--examples", str(args.examples)]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
        return json.loads(result.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="folder with mnist.npz (default: mnist5k)")
    parser.add_argument("--examples", type=int, default=None, help="train on the first N images")
    parser.add_argument("--batch-size", type=int, default=128, help="B, per process")
    parser.add_argument("--epochs", type=int, default=3, help="per launch; the first is not timed")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--benchmarks", default="BENCHMARKS.md")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--result", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    threads = os.cpu_count() or 1
    times: dict[int, list[float]] = {i: [] for i in range(len(SETUPS))}
    outcome: dict[int, dict] = {}
    for round_ in range(args.rounds):
        for i, (name, processes, per_process, fraction) in enumerate(SETUPS):
            batch = max(1, round(args.batch_size * fraction))
            outcome[i] = launch(args, processes, per_process or threads, batch)
            times[i].append(outcome[i]["seconds"])
            print(f"round {round_ + 1}: {name.format(t=threads)}: {times[i][-1]:.2f} s/epoch")
    examples = outcome[0]["examples"]
    base = statistics.median(times[0])
    lines = [
        "## Data-parallel training (issue 8): samples per second on 1 and 2 processes",
        "",
        f"MLP 784-400-50 VAE ({outcome[0]['parameters']:,} parameters), Bernoulli, analytic "
        f"KL, dynamic binarisation, {examples} MNIST training images, B = {args.batch_size}; "
        f"`pv.fit` launched by torchrun (gloo) on this {threads}-core CPU machine; median "
        f"training seconds per epoch over {args.rounds} launches of {args.epochs} epochs "
        "(the first epoch of each not timed), set-ups interleaved. The all-reduce column "
        "times one exchange of a buffer the size of the gradients.",
        "",
        "| set-up | global batch | s/epoch | samples/s | vs 1 process, all threads | "
        "all-reduce (ms) |",
        "|---|---|---|---|---|---|",
    ]
    for i, (name, processes, _, fraction) in enumerate(SETUPS):
        seconds = statistics.median(times[i])
        batch = max(1, round(args.batch_size * fraction)) * processes
        reduce_ms = f"{outcome[i]['reduce_ms']:.2f}" if processes > 1 else "—"
        lines.append(
            f"| {name.format(t=threads)} | {batch} | {seconds:.2f} | {examples / seconds:,.0f} "
            f"| {base / seconds:.2f} | {reduce_ms} |"
        )
    append_section(args.benchmarks, lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
