"""Small facts about Gaussians shared by the parts and the fused path."""

from __future__ import annotations

import math
from typing import Any

import pyro.distributions as dist
from torch.distributions import Independent, Normal

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def diagonal_normal(q: Any) -> Normal | None:
    """The ``Normal`` inside ``Independent(Normal, 1)`` (a diagonal Gaussian), else ``None``."""
    if not isinstance(q, Independent) or q.reinterpreted_batch_ndims != 1:
        return None
    base = q.base_dist
    return base if type(base) in (Normal, dist.Normal) else None
