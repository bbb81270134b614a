"""Carries the reproduction runs from one machine to the next, through the repository.

    python bench/reproduction_carry.py save RUNS_DIR [--store reproduction/runs]
    python bench/reproduction_carry.py restore RUNS_DIR [--store reproduction/runs]

A run of the papers' budgets trains for ten hours or more on one core, over several
sittings, in a folder outside the work tree (``runs/`` is ignored). A machine that is not
handed back to the next sitting takes those folders with it: on 2026-12-06 one took an
``iwae:k=5`` run at epoch 2,358 of 3,280 and the finished ``elbo`` run that the orderings
project from. So a sitting ends with ``save``: each run folder's record, ``config.json``,
``log.csv`` and ``metrics.json`` once scored, goes to ``STORE/NAME/``, with ``checkpoint.pt``
while the run is unfinished (a scored run needs none to be compared or redrawn). The next
sitting starts with ``restore``, which copies back each stored run that RUNS_DIR lacks or
holds at an earlier epoch, so that ``--resume`` goes on from the stored checkpoint.

Both take each run folder's lock (``pyro_vae.train._run_folder.RunFolder.lock``): a run that is
training is refused, never copied half-way. Every file is replaced atomically.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from pyro_vae._atomic import write_atomically
from pyro_vae.lab._run_files import read_log
from pyro_vae.train._resume import CHANGEABLE
from pyro_vae.train._run_folder import RunFolder, RunFolderLocked

ROOT = Path(__file__).resolve().parents[1]
RECORD = ("config.json", "log.csv", "metrics.json")
CHECKPOINT = "checkpoint.pt"
# What two copies of one run may differ in: the settings a resume may change, and its record
# of them ("resumes") and of the processes it ran on.
MAY_DIFFER = (*CHANGEABLE, "resumes", "world_size")


def carried_files(folder: Path) -> list[str]:
    """The files of run folder ``folder`` worth carrying: its record, and its checkpoint
    until the run is scored (``metrics.json``)."""
    names = [n for n in RECORD if (folder / n).is_file()]
    if "metrics.json" not in names and (folder / CHECKPOINT).is_file():
        names.append(CHECKPOINT)
    return names


def epochs_trained(folder: Path) -> int:
    """The last epoch in ``folder``'s ``log.csv``; 0 without one; a scored run counts as
    ahead of any unscored one."""
    if (folder / "metrics.json").is_file():
        return sys.maxsize
    if not (folder / "log.csv").is_file():
        return 0
    return read_log(folder / "log.csv")[0]


def copy_run(source: Path, target: Path) -> list[str]:
    """Replaces ``target``'s carried files by ``source``'s and removes those that ``source``
    no longer has (a scored run's checkpoint). The caller holds the run folder's lock."""
    names = carried_files(source)
    target.mkdir(parents=True, exist_ok=True)
    for name in names:
        with open(source / name, "rb") as f:
            write_atomically(target / name, lambda out, f=f: shutil.copyfileobj(f, out))
    for stale in set(RECORD + (CHECKPOINT,)) - set(names):
        (target / stale).unlink(missing_ok=True)
    return names


def same_run(a: Path, b: Path) -> bool:
    """Whether the ``config.json`` files of run folders ``a`` and ``b`` describe one run."""
    a_config, b_config = (json.loads((f / "config.json").read_text()) for f in (a, b))
    return all(
        a_config.get(key) == b_config.get(key)
        for key in set(a_config) | set(b_config)
        if key not in MAY_DIFFER
    )


def run_folders(parent: Path) -> list[Path]:
    """The run folders in ``parent``: those holding a ``config.json``."""
    return sorted(p for p in parent.iterdir() if (p / "config.json").is_file())


def save(runs: Path, store: Path) -> int:
    """Copies every run folder of ``runs`` into ``store``; 1 if one was in use."""
    status = 0
    for folder in run_folders(runs):
        try:
            with RunFolder(folder).lock():  # a run started now is refused until the copy ends
                names = copy_run(folder, store / folder.name)
        except RunFolderLocked as e:
            print(f"skipped: {e}", file=sys.stderr)
            status = 1
            continue
        print(f"saved {folder.name}: {', '.join(names)}")
    return status


def restore(runs: Path, store: Path) -> int:
    """Copies each stored run into ``runs`` where that folder is missing or behind; 1 if one
    was in use or holds a run of another configuration."""
    status = 0
    for stored in run_folders(store) if store.is_dir() else []:
        target = runs / stored.name
        try:
            with RunFolder(target).lock():
                print(_restore_one(stored, target))
        except (RunFolderLocked, ValueError) as e:
            print(f"skipped {stored.name}: {e}", file=sys.stderr)
            status = 1
    return status


def _restore_one(stored: Path, target: Path) -> str:
    """Copies ``stored`` into ``target`` unless ``target`` is as far; says what it did.

    Raises:
        ValueError: ``target`` holds a run of another configuration.
    """
    if (target / "config.json").is_file() and not same_run(stored, target):
        raise ValueError(f"{target} holds a run of another configuration")
    ahead = epochs_trained(stored)
    if epochs_trained(target) >= ahead:
        return f"kept {target}: it is as far as the stored run or further"
    copy_run(stored, target)
    return f"restored {target} ({'scored' if ahead == sys.maxsize else f'epoch {ahead}'})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("save", "restore"))
    parser.add_argument("runs", type=Path, help="the folder of run folders (RUNS_DIR)")
    parser.add_argument("--store", type=Path, default=ROOT / "reproduction" / "runs",
                        help="the carried copies (default: reproduction/runs)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.action == "save":
        if not args.runs.is_dir():
            parser.error(f"no folder {args.runs}")
        return save(args.runs, args.store)
    args.runs.mkdir(parents=True, exist_ok=True)
    return restore(args.runs, args.store)


if __name__ == "__main__":
    sys.exit(main())
