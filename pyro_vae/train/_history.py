"""What ``fit`` returns: the epochs of a run, as its ``log.csv`` holds them."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from pyro_vae.train._run_folder import LOG_COLUMNS

__all__ = ["History"]


@dataclass
class History:
    """What ``fit`` did: one row per finished epoch, as written to ``log.csv``.

    Attributes:
        rows: dicts with keys ``epoch``, ``train_loss`` (negative bound per example,
            averaged over the epoch's steps), ``valid_loss`` (the same on the
            validation data after the epoch, or NaN), ``seconds`` (training time) and
            ``test_log_likelihood`` (the anytime test log p(x) of ``fit(test=...)``, only
            after the epochs it measured; :meth:`column` gives NaN for the others).
        best_epoch: the epoch of the lowest validation loss, or ``None`` without validation.
        stopped_early: whether early stopping ended the run.
        rollbacks: one dict per non-finite step that was rolled back: ``epoch``,
            ``step``, ``objective``, ``problem`` and ``to`` (the ``(epoch, step)``
            training went back to).
        out_of_time: the run stopped at its wall-clock budget (``max_minutes``), at a
            checkpoint; resume it to go on.
        nothing_to_do: the run was resumed after it had already trained its epochs
            (or stopped early): nothing was trained, and nothing in its folder changed.
    """

    rows: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int | None = None
    stopped_early: bool = False
    rollbacks: list[dict[str, Any]] = field(default_factory=list)
    nothing_to_do: bool = False
    out_of_time: bool = False

    @property
    def kept_epoch(self) -> int | None:
        """The epoch whose parameters the model holds when ``fit`` returns: the best epoch
        where the run validated (``fit`` restores its parameters), else the last; ``None``
        without epochs."""
        if not self.rows:
            return None
        epochs = [int(row["epoch"]) for row in self.rows]
        return self.best_epoch if self.best_epoch in epochs else epochs[-1]

    def column(self, name: str) -> list[float]:
        """The values of one column, one per epoch."""
        if name not in LOG_COLUMNS:
            raise ValueError(f"unknown column {name!r}; choose one of: {', '.join(LOG_COLUMNS)}")
        return [row.get(name, math.nan) for row in self.rows]
