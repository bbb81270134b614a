"""Reading a recipe run's files while it trains: ``config.json``, ``metrics.json`` and
``log.csv``, each replaced whole by the run, with errors that name the file and line."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

__all__ = ["read_json", "read_log", "scored_epoch"]


def read_json(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``.

    Raises:
        ValueError: the file is not valid JSON, or holds something other than an object.
    """
    try:
        value = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path} holds a {type(value).__name__}, expected an object")
    return value


def read_log(path: Path) -> tuple[int, list[tuple[int, float, float]]]:
    """The epochs trained in a run's ``log.csv``, and its anytime points
    ``(epoch, hours of training, −log p(x))``: the rows whose ``test_log_likelihood`` is
    not NaN, with the hours summed over the ``seconds`` of every row up to them.

    Raises:
        ValueError: a column is missing, or a row does not hold numbers.
    """
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = {"epoch", "seconds", "test_log_likelihood"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path} has no column {', '.join(sorted(missing))}")
        epoch, elapsed, points = 0, 0.0, []
        for row in reader:
            try:
                epoch, value = int(row["epoch"]), float(row["test_log_likelihood"])
                elapsed += float(row["seconds"]) / 3600
            except (TypeError, ValueError):
                raise ValueError(f"{path}, line {reader.line_num}: not numbers: {row}") from None
            if not math.isnan(value):
                points.append((epoch, elapsed, -value))
    return epoch, points


def scored_epoch(folder: Path, metrics: dict[str, Any]) -> int:
    """The epoch whose parameters a scored run's ``metrics`` were computed from.

    ``metrics.json`` names it (``"epoch"``); one written before it did gets the epoch
    that ``fit`` keeps, read from ``log.csv``: that of the lowest validation loss (the
    first of equals, as ``fit`` keeps the first), or the last epoch where the run did not
    validate.

    Raises:
        ValueError: ``log.csv`` has no ``valid_loss`` column, or a row does not hold numbers.
    """
    if metrics.get("epoch") is not None:
        return int(metrics["epoch"])
    path = folder / "log.csv"
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if "valid_loss" not in (reader.fieldnames or ()):
            raise ValueError(f"{path} has no column valid_loss")
        last, best, best_loss = 0, None, math.inf
        for row in reader:
            try:
                last, loss = int(row["epoch"]), float(row["valid_loss"])
            except (TypeError, ValueError):
                raise ValueError(f"{path}, line {reader.line_num}: not numbers: {row}") from None
            if loss < best_loss:
                best, best_loss = last, loss
    return last if best is None else best
