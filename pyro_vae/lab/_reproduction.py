"""A recipe run's results: the final scores, its row of ``REPRODUCTION.md`` and its figure.

The final score is the paper's protocol: mean −log p(x) over the test images
by importance sampling with K samples (:func:`pyro_vae.evaluate.log_likelihood`),
with two standard errors: over the images (how much another test set would move
it) and of the Monte Carlo estimate itself. It is saved in the run folder's
``metrics.json`` and computed once. A run that has not trained all its epochs
gets a row too, marked in progress, with its latest anytime value.

``REPRODUCTION.md`` keeps one row per (recipe, objective, device, smoke test);
a new result replaces the row of the same key. Each row links the figure of
its anytime curve, test −log p(x) against epochs and against training time,
with the paper's value as a line. What follows the table is kept as it is,
except sections between ``<!-- begin NAME -->`` and ``<!-- end NAME -->``
lines, which :func:`write_section` replaces (the benchmarks write theirs so).
Runs on two cores finish at any time: every change to the file is made under a
lock on it (``.REPRODUCTION.md.lock`` beside it), so that no row is lost.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import filelock
import torch

from pyro_vae._atomic import write_atomically
from pyro_vae.infer import evaluate
from pyro_vae.train._history import History
from pyro_vae.train._run_folder import RunFolder

if TYPE_CHECKING:
    from pyro_vae.lab._recipe import Recipe
    from pyro_vae.models.vae import VAE

__all__ = [
    "Reproduction", "final_scores", "write_results", "write_section", "read_rows", "device_name",
]  # fmt: skip

_COLUMNS = (
    "recipe", "objective", "paper", "ours", "± over images", "± Monte Carlo", "epochs",
    "training time", "device", "figure",
)  # fmt: skip
_HEADER = """# Reproduction of published results

Each row is a recipe of `pv.recipes` trained by `pyro-vae reproduce RECIPE --objective OBJ`
and scored with the paper's protocol: test −log p(x) in nats (lower is better) by importance
sampling. "± over images" is the standard error of the mean over the test images; "± Monte
Carlo" that of the importance-sampling estimate. Training time is the time of the training
steps alone (no evaluation). A row "in progress" is a run that has not trained its epochs yet:
its value is the latest anytime estimate (fewer samples and images, see its figure), a point on
the way, not a result; a scored row stays until another run of its recipe, objective and
device is scored. Where a recipe validates, the score is that of the parameters of the epoch
with the lowest validation loss, named in the epochs column when it is not the last ("best:
1137"); "stopped early" means the validation loss stopped improving before the planned epochs
(the recipe's patience). Smoke-test rows come from the embedded data set and mean nothing.
"""


@dataclass(frozen=True)
class Reproduction:
    """What :func:`pyro_vae.recipes.reproduce` did.

    Attributes:
        recipe: the recipe.
        objective: the objective's spec.
        history: the run's epochs (with the anytime ``test_log_likelihood``).
        scores: ``metrics.json``'s final scores, or ``None`` before the run has
            trained all its epochs.
        out (pathlib.Path): the run folder.
        smoke_test: whether it was the smoke test.
        plan: the budget and protocol the run used.
        device: the device it trained on, in words.
    """

    recipe: Recipe
    objective: str
    history: History
    scores: dict[str, Any] | None
    out: Path
    smoke_test: bool
    plan: dict[str, Any]
    device: str


def device_name(device: torch.device) -> str:
    """The device in words: ``CPU (x86_64, 1 thread)`` or the GPU's name."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    threads = torch.get_num_threads()
    return f"CPU ({platform.machine()}, {threads} thread{'s' if threads > 1 else ''})"


def final_scores(
    vae: VAE,
    test: torch.Tensor,
    num_samples: int,
    folder: RunFolder,
    *,
    recompute: bool,
    epoch: int | None = None,
) -> dict[str, Any]:
    """The final test scores, from ``metrics.json`` unless ``recompute`` or missing.

    ``epoch`` is the epoch whose parameters ``vae`` holds (``History.kept_epoch``: the best
    epoch where the run validated), saved with the scores.

    Returns:
        ``{"nll", "stderr_images", "stderr_mc", "num_samples", "examples",
        "seconds", "device", "epoch"}``, also written to the run folder's ``metrics.json``
        (one written before the scores named their epoch has no ``"epoch"``).
    """
    path = folder.path / "metrics.json"
    if not recompute and path.exists():
        return json.loads(path.read_text())
    device = next(vae.parameters()).device
    vae.eval()
    tic = time.perf_counter()
    with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
        torch.manual_seed(0)
        log_px, stderr = evaluate.log_likelihood(
            vae.model, vae.guide, test.to(device), num_samples=num_samples, return_stderr=True
        )
    n = log_px.shape[0]
    scores = {
        "nll": -log_px.mean().item(),
        "stderr_images": log_px.std().item() / math.sqrt(n) if n > 1 else math.nan,
        "stderr_mc": stderr.pow(2).sum().sqrt().item() / n,
        "num_samples": num_samples,
        "examples": n,
        "seconds": time.perf_counter() - tic,
        "device": device_name(device),
        "epoch": epoch,
    }
    text = json.dumps(scores, indent=2) + "\n"
    write_atomically(path, lambda f: f.write(text.encode()))
    return scores


def write_results(result: Reproduction, table: str | Path | None) -> None:
    """Draws the run's figure into its folder and puts its row into ``table``.

    A scored row of the same recipe, objective and device is replaced only by another
    scored row: a run in progress (an anytime estimate, which reads high) leaves it and
    its figure as they are, with a warning that says where the run's own figure is.
    """
    from pyro_vae.plots.reproduction import save_reproduction_curve

    paper, against = result.recipe.paper_value(result.objective)
    figure = result.out / "reproduction.png"
    if result.history.rows:
        title = f"{result.recipe.name}, {result.objective}"
        final = None
        if result.scores is not None:
            scores = result.scores
            final = (
                scores["nll"],
                scores["stderr_images"],
                f"final score (K = {scores['num_samples']}, {scores['examples']:,} images)",
            )
        save_reproduction_curve(
            result.history, paper, f"paper ({against})", title, figure, final=final
        )
    if table is None:
        return
    table = Path(table)
    if result.scores is None and _scored_row(table, result) is not None:
        warnings.warn(
            f"{table} keeps its scored row of {result.recipe.name} {result.objective} on "
            f"{result.device}: a run in progress does not replace it (its curve: {figure})",
            stacklevel=2,
        )
        return
    row = _row(result, paper, against, figure, table)

    def add_row(text: str) -> str:
        rows = [r for r in read_rows(text) if _key(r) != _key(row)] + [row]
        rows.sort(key=lambda r: (r["recipe"], r["objective"], r["device"]))
        lines = [_HEADER, "| " + " | ".join(_COLUMNS) + " |", "|" + "---|" * len(_COLUMNS)]
        lines += ["| " + " | ".join(r[c] for c in _COLUMNS) + " |" for r in rows]
        return "\n".join(lines) + "\n" + _after_table(text)

    _edit(table, add_row)


def write_section(table: str | os.PathLike, name: str, body: str) -> None:
    """Puts ``body`` into ``table`` between the lines ``<!-- begin NAME -->`` and
    ``<!-- end NAME -->``, replacing what was there; at the end of the file if it has
    no such section yet. The rest of the file is kept as it is.

    Raises:
        ValueError: ``name`` is empty or holds ``-->`` or a line break, or ``table``
            has a begin line for it without an end line after it.
    """
    if not name or "-->" in name or "\n" in name:
        raise ValueError(f"a section name is a non-empty line without '-->', got {name!r}")
    begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
    block = f"{begin}\n{body.strip()}\n{end}\n"

    def put(text: str) -> str:
        lines = text.splitlines(keepends=True)
        starts = [i for i, line in enumerate(lines) if line.strip() == begin]
        if not starts:
            return text + ("\n" if text and not text.endswith("\n\n") else "") + block
        ends = [i for i, line in enumerate(lines) if line.strip() == end and i > starts[0]]
        if not ends:
            raise ValueError(f"{table}: {begin!r} has no {end!r} after it")
        return "".join(lines[: starts[0]]) + block + "".join(lines[ends[0] + 1 :])

    _edit(Path(table), put)


@contextmanager
def _locked(table: Path) -> Iterator[None]:
    """Holds the lock of ``table``: one process at a time reads and rewrites it."""
    table.parent.mkdir(parents=True, exist_ok=True)
    with filelock.FileLock(table.with_name(f".{table.name}.lock")):
        yield


def _edit(table: Path, change: Callable[[str], str]) -> None:
    """Rewrites ``table`` (empty if missing) as ``change`` of its text, under its lock."""
    with _locked(table):
        text = change(table.read_text() if table.exists() else "")
        write_atomically(table, lambda f: f.write(text.encode()))


def _row(
    result: Reproduction, paper: float | None, against: str, figure: Path, table: Path
) -> dict[str, str]:
    history, scores = result.history, result.scores
    seconds = sum(row["seconds"] for row in history.rows)
    planned = result.plan["epochs"]
    if scores is not None:
        ours = f"{scores['nll']:.2f}"
        images, mc = f"{scores['stderr_images']:.2f}", f"{scores['stderr_mc']:.3f}"
    else:
        curve = [v for v in history.column("test_log_likelihood") if not math.isnan(v)]
        ours = f"{-curve[-1]:.2f} (in progress)" if curve else "in progress"
        images = mc = "–"
    objective = result.objective + (" (smoke test)" if result.smoke_test else "")
    # "iwae:k=5" -> "iwae_k-5": no ':' (not allowed in Windows file names) or '=' in links
    name = result.objective.replace(":", "_").replace("=", "-")
    copy = table.parent / "reproduction" / f"{result.recipe.name}_{name}.png"
    if figure.exists() and not result.smoke_test:
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(figure, copy)
        link = f"[curve]({copy.relative_to(table.parent).as_posix()})"
    else:
        link = "–"
    return {
        "recipe": result.recipe.name,
        "objective": objective,
        "paper": "–"
        if paper is None
        else f"{paper:.2f}" + (f" ({against})" if against != result.objective else ""),
        "ours": ours,
        "± over images": images,
        "± Monte Carlo": mc,
        "epochs": _epochs_cell(history, planned, scored=scores is not None),
        "training time": f"{seconds / 3600:.2f} h",
        "device": result.device,
        "figure": link,
    }


def _epochs_cell(history: History, planned: int, *, scored: bool) -> str:
    """``"1187 of 2000, stopped early (best: 1137)"``: the epochs trained of those planned,
    whether early stopping ended the run, and, for a scored run, the epoch whose parameters
    were scored where it is not the last (``fit`` restores the best epoch's)."""
    epochs = history.rows[-1]["epoch"] if history.rows else 0
    cell = f"{int(epochs)} of {planned}"
    if history.stopped_early:
        cell += ", stopped early"
    if scored and history.kept_epoch != epochs:
        cell += f" (best: {history.kept_epoch})"
    return cell


def _key(row: dict[str, str]) -> tuple[str, str, str]:
    return row["recipe"], row["objective"], row["device"]


def _scored_row(table: Path, result: Reproduction) -> dict[str, str] | None:
    """``table``'s row of ``result``'s recipe, objective and device if it holds a final
    score (not an estimate in progress), else ``None``."""
    if not table.exists():
        return None
    objective = result.objective + (" (smoke test)" if result.smoke_test else "")
    key = (result.recipe.name, objective, result.device)
    for row in read_rows(table.read_text()):
        if _key(row) == key and "in progress" not in row["ours"]:
            return row
    return None


def _after_table(text: str) -> str:
    """What follows the table in ``text`` (notes written by hand), kept as it is."""
    lines = text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.startswith("| recipe |")]
    if not starts:
        return ""
    end = starts[0]
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    return "".join(lines[end:])


def read_rows(text: str) -> list[dict[str, str]]:
    """The rows of the table in ``text`` (none if it has no such table)."""
    rows = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and len(cells) == len(_COLUMNS) and cells[0] != "recipe":
            rows.append(dict(zip(_COLUMNS, cells, strict=True)))
    return rows
