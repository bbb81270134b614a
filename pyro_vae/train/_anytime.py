"""The anytime test curve of ``fit``: test log p(x) after every N-th epoch, into the log.

Each measurement is :func:`pyro_vae.evaluate.log_likelihood` with K importance
samples, averaged over the test examples, drawn from a generator seeded by the
epoch: the training's random streams are left as they were, so a run with the
curve trains exactly as one without it, and the same epoch always gives the
same estimate.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from pyro_vae._checks import check_data, check_positive_int
from pyro_vae.infer import evaluate
from pyro_vae.train import distributed

__all__ = ["AnytimeTest"]


@dataclass(frozen=True)
class AnytimeTest:
    """Test data ``(N, *event_shape)``, how often to measure, and K (``data=None``: never)."""

    data: torch.Tensor | None = None
    every: int | None = None
    num_samples: int = 1000

    @classmethod
    def checked(cls, data: torch.Tensor | None, every: int | None, num_samples: int) -> AnytimeTest:
        """The arguments ``test``, ``test_every`` and ``test_samples`` of ``fit``, checked.

        Raises:
            ValueError, TypeError: one is given without the other, or is malformed.
        """
        if (data is None) != (every is None):
            raise ValueError("test and test_every go together: give both or neither")
        check_positive_int("test_samples", num_samples)
        if data is None:
            return cls()
        check_data(data, "test")
        return cls(data, check_positive_int("test_every", every), num_samples)

    def to(self, device: torch.device) -> AnytimeTest:
        """The same, with the test data on ``device``."""
        data = self.data.to(device) if self.data is not None else None
        return AnytimeTest(data, self.every, self.num_samples)

    def due(self, epoch: int, last_epoch: int) -> bool:
        """Whether to measure after ``epoch``: every ``every``-th epoch, and the last."""
        if self.data is None or self.every is None:
            return False
        return epoch % self.every == 0 or epoch == last_epoch

    def measure(
        self,
        model: Callable[..., Any],
        guide: Callable[..., Any],
        epoch: int,
    ) -> float:
        """Mean test log p(x) in nats, with K = ``num_samples``, split between the processes."""
        assert self.data is not None
        device = self.data.device
        devices = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(epoch)

            def log_px(rows: torch.Tensor) -> torch.Tensor:
                return evaluate.log_likelihood(model, guide, rows, num_samples=self.num_samples)

            values = distributed.map_shards(log_px, self.data)
        value = values.mean().item()
        return value if math.isfinite(value) else math.nan
