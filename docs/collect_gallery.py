"""Runs every tutorial in full and keeps its figures for the site's gallery.

The gallery shows figures from a committed full run rather than retraining at
build time: ``make docs`` stays fast and CI never trains. For each
``tutorials/NN_name.py`` this script runs ``python tutorials/NN_name.py --out
RUNS/NN_name`` (unless that run already finished: ``RUNS/NN_name.done``), then
copies the run's PNG figures into ``docs/gallery/NN_name/`` with ``run.json``:
the command, the wall time, the date, the commit and the device, which the
tutorial's page prints under each figure.

    python docs/collect_gallery.py --runs /work/runs/gallery [--only 07_elbo_three_ways]

Run it pinned to one core (``OMP_NUM_THREADS=1 taskset -c 0``) so that the wall
times it records are one core's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TUTORIALS = REPO / "tutorials"
GALLERY = REPO / "docs" / "gallery"


def _commit() -> str:
    done = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    return done.stdout.strip() or "unknown"


def _device() -> str:
    threads = os.environ.get("OMP_NUM_THREADS", str(os.cpu_count()))
    return f"CPU ({platform.machine()}, {threads} thread{'s' if threads != '1' else ''})"


def run_tutorial(script: Path, out: Path) -> dict[str, object]:
    """Runs ``script`` in full into ``out``; returns what ``run.json`` records."""
    command = [sys.executable, str(script.relative_to(REPO)), "--out", str(out)]
    started = datetime.now(timezone.utc)
    tic = time.perf_counter()
    env = os.environ | {"MPLBACKEND": "Agg"}
    with open(out.with_suffix(".log"), "w") as log:
        subprocess.run(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env,
                       check=True)  # fmt: skip
    record = {
        "command": f"python tutorials/{script.name}",
        "seconds": round(time.perf_counter() - tic),
        "date": started.strftime("%Y-%m-%d"),
        "commit": _commit(),
        "device": _device(),
    }
    out.with_suffix(".done").write_text(json.dumps(record))
    return record


def collect(script: Path, runs: Path) -> Path:
    """The tutorial's finished run (run now if needed), its figures copied into the gallery."""
    out = runs / script.stem
    done = out.with_suffix(".done")
    record = json.loads(done.read_text()) if done.exists() else run_tutorial(script, out)
    figures = sorted(out.glob("*.png"))  # the tutorial's own figures, not its runs' ones
    if not figures:
        raise SystemExit(f"{script.name}: its run in {out} wrote no figures")
    target = GALLERY / script.stem
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for figure in figures:
        shutil.copy2(figure, target / figure.name)
    (target / "run.json").write_text(json.dumps(record, indent=2) + "\n")
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, required=True, help="folder of the full runs")
    parser.add_argument("--only", nargs="*", help="tutorial names (default: all)")
    args = parser.parse_args()
    args.runs.mkdir(parents=True, exist_ok=True)
    for script in sorted(TUTORIALS.glob("[0-9]*.py")):
        if args.only and script.stem not in args.only:
            continue
        print(f"{script.name}: {collect(script, args.runs)}", flush=True)


if __name__ == "__main__":
    main()
