"""Training speed of this tree against an earlier commit, in one process, epoch by epoch.

A refactoring must not cost speed, and two benchmark runs minutes apart differ by
more than the change being measured (hand-written epochs moved by up to 18%
between two runs of ``bench/train_speed.py``). So this script imports both
versions into one process and interleaves them:

- ``before``: the package as it was at ``--before`` (a commit), extracted with
  ``git archive`` into a temporary folder and imported as ``pyro_vae_before``.
  This works for a tree whose modules import each other relatively (the flat
  package up to 764b1e5); the script refuses a tree with absolute
  ``pyro_vae`` imports rather than silently timing the working tree twice.
- ``after``: ``pyro_vae`` as imported from this checkout.
- ``hand-written``: ``bench/train_speed.py``'s plain-PyTorch loop of the same
  network (for DReG, the hand-written IWAE of the same K), the floor both
  ratios divide by.

Each round trains one more epoch of each variant (``pv.fit`` resuming its run
folder), in alternating order, and times the hand-written epoch after them;
round 0 warms up and is not counted. Each ratio is the median of the per-round
ratios; the table goes to BENCHMARKS.md with this command.

    python bench/before_after_speed.py --before 764b1e5 --data-dir /work/data
    python bench/before_after_speed.py --before 764b1e5 --data-dir /work/data \\
        --cases iwae-dreg:k=50@128 --examples 4000 --rounds 25
"""

from __future__ import annotations

import argparse
import importlib
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from types import ModuleType

import torch
from _report import append_section
from train_speed import HIDDEN, LATENT, PlainTorch

import pyro_vae

REPO = Path(__file__).resolve().parent.parent
BEFORE_NAME = "pyro_vae_before"
_ABSOLUTE_IMPORT = re.compile(r"^\s*(from pyro_vae[ .]|import pyro_vae\b)", re.MULTILINE)
DEFAULT_CASES = (
    "analytic-kl@32,analytic-kl@128,analytic-kl@512,"
    "iwae:k=5@128,iwae-dreg:k=5@128,iwae:k=50@128,iwae-dreg:k=50@128"
)


def import_before(commit: str, into: Path) -> ModuleType:
    """The package at ``commit``, imported as :data:`BEFORE_NAME` from a copy in ``into``."""
    try:
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", commit, "pyro_vae"],
            check=True,
            capture_output=True,
        ).stdout
    except subprocess.CalledProcessError as error:
        sys.exit(f"cannot read pyro_vae/ at {commit!r}: {error.stderr.decode().strip()}")
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    package = into / BEFORE_NAME
    (into / "pyro_vae").rename(package)
    absolute = [
        str(path.relative_to(into))
        for path in package.rglob("*.py")
        if _ABSOLUTE_IMPORT.search(path.read_text())
    ]
    if absolute:
        sys.exit(
            f"pyro_vae at {commit} imports itself by absolute name ({', '.join(absolute[:3])}"
            f"{', ...' if len(absolute) > 3 else ''}); a renamed copy would import the working "
            "tree instead, so it cannot be timed in this process"
        )
    sys.path.insert(0, str(into))
    return importlib.import_module(BEFORE_NAME)


def build(pv: ModuleType, name: str):
    """The MLP 784-400-50 Bernoulli VAE of bench/train_speed.py, from package ``pv``."""
    return pv.VAE(
        pv.priors.StandardNormal(LATENT),
        pv.likelihoods.Bernoulli(pv.nets.MLP(LATENT, [HIDDEN], 784)),
        pv.guides.DiagonalNormal(pv.nets.MLP(784, [HIDDEN]), latent_dim=LATENT),
        name=name,
    )


def fit_epochs(
    pv: ModuleType, data: torch.Tensor, spec: str, batch_size: int, lr: float
) -> Iterator[float]:
    """The training seconds of each further epoch of ``pv.fit``, resuming its run folder."""
    vae = build(pv, f"fit_{pv.__name__}")
    folder = tempfile.mkdtemp(prefix="before-after-")
    epoch = 0
    while True:
        epoch += 1
        history = pv.fit(
            vae, data, objective=spec, epochs=epoch, batch_size=batch_size, lr=lr,
            binarize=True, seed=0, out=folder, resume=epoch > 1, progress=False,
        )  # fmt: skip
        yield history.rows[-1]["seconds"]


def time_case(
    before: ModuleType, data: torch.Tensor, spec: str, batch_size: int, rounds: int, lr: float
) -> dict[str, float]:
    """Median seconds per epoch of each variant and the median per-round ratios."""
    parsed = pyro_vae.objectives.parse(spec)
    torch.manual_seed(0)
    floor = "iwae" if parsed.name == "iwae-dreg" else parsed.name
    plain = PlainTorch(build(pyro_vae, "plain"), lr, floor, parsed.num_particles)
    epochs = {
        "before": fit_epochs(before, data, spec, batch_size, lr),
        "after": fit_epochs(pyro_vae, data, spec, batch_size, lr),
    }
    generator = torch.Generator().manual_seed(0)
    times: dict[str, list[float]] = {"plain": [], "before": [], "after": []}
    for round_ in range(rounds + 1):
        order = ("before", "after") if round_ % 2 == 0 else ("after", "before")
        measured = {name: next(epochs[name]) for name in order}
        tic = time.perf_counter()
        plain.epoch(data, batch_size, generator)
        measured["plain"] = time.perf_counter() - tic
        if round_ > 0:
            for name, seconds in measured.items():
                times[name].append(seconds)
    result = {name: statistics.median(values) for name, values in times.items()}
    for name in ("before", "after"):
        per_round = (a / b for a, b in zip(times[name], times["plain"], strict=True))
        result[f"{name}/plain"] = statistics.median(per_round)
    return result


def parse_cases(text: str) -> list[tuple[str, int]]:
    """``"spec@batch,spec@batch"`` as (spec, batch size) pairs."""
    cases = []
    for item in text.split(","):
        spec, sep, batch = item.rpartition("@")
        if not sep or not batch.isdigit():
            sys.exit(f"--cases: {item!r} is not OBJECTIVE@BATCH_SIZE")
        pyro_vae.objectives.parse(spec)
        cases.append((spec, int(batch)))
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="the commit to compare with")
    parser.add_argument("--data-dir", default=None, help="folder with mnist.npz (default: mnist5k)")
    parser.add_argument("--cases", default=DEFAULT_CASES, help="OBJECTIVE@BATCH,... to time")
    parser.add_argument(
        "--examples",
        default="analytic-kl=50000,4000",
        help="training images per case: 'N' for all, or 'objective=N,...,N' by objective "
        "name with a last default (default: %(default)s)",
    )
    parser.add_argument("--rounds", type=int, default=9, help="timed epochs per variant")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--benchmarks", default="BENCHMARKS.md")
    args = parser.parse_args()
    cases = parse_cases(args.cases)
    *named, fallback = args.examples.split(",")
    examples = {name: int(n) for name, n in (item.split("=") for item in named)}
    dataset = "mnist" if args.data_dir else "mnist5k"
    data = pyro_vae.data.load(dataset, "train", root=args.data_dir)
    with tempfile.TemporaryDirectory(prefix="before-") as folder:
        before = import_before(args.before, Path(folder))
        lines = [
            "",
            f"## Training speed before ({args.before}) and after, one process, interleaved",
            "",
            f"`pv.fit` of commit {args.before} (imported as `{BEFORE_NAME}`) and of this tree, "
            f"epoch by epoch in alternating order, beside the hand-written loop of "
            f"`bench/train_speed.py` (for DReG, the hand-written IWAE of the same K). MLP "
            f"784-{HIDDEN}-{LATENT}, Bernoulli, dynamic binarisation, {dataset}, Adam "
            f"{args.lr}, {torch.get_num_threads()} CPU threads; medians over {args.rounds} "
            "rounds after one warm-up round; each ratio is the median of per-round ratios.",
            "",
            "| objective | batch | examples | hand-written (s) | before (s) | after (s) "
            "| before / hand | after / hand | change |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for spec, batch_size in cases:
            name = pyro_vae.objectives.parse(spec).name
            n = examples.get(name, int(fallback))
            med = time_case(before, data[:n], spec, batch_size, args.rounds, args.lr)
            change = med["after/plain"] - med["before/plain"]
            lines.append(
                f"| {spec} | {batch_size} | {n} | {med['plain']:.2f} | {med['before']:.2f} | "
                f"{med['after']:.2f} | {med['before/plain']:.2f} | {med['after/plain']:.2f} | "
                f"{change:+.2f} |"
            )
            print(lines[-1], flush=True)
    append_section(args.benchmarks, lines)


if __name__ == "__main__":
    main()
