"""Learning-rate schedules: the factor of the base learning rate in each epoch.

A schedule is a pure function of the epoch, so a resumed run is at the right
rate with nothing more saved than its position. ``fit(..., lr=η, lr_schedule=s)``
trains epoch e at rate η · s.factor(e).

- ``constant``: factor 1.
- ``geometric:growth=g,decay=d,stages=n``: stage i (from 0) lasts gⁱ epochs at
  factor dⁱ, i = 0 … n − 1; after the last stage the last factor stays.
- ``burda2015``: Burda et al. (2015)'s schedule, ``geometric`` with g = 3,
  d = 10^(−1/7), n = 8: 3ⁱ epochs at 0.001 · 10^(−i/7) for the base rate 0.001,
  Σ 3ⁱ = 3,280 epochs in all.

References:
    1. Y. Burda, R. Grosse, R. Salakhutdinov. Importance weighted autoencoders.
       ICLR 2016 (arXiv:1509.00519), section 5.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["SCHEDULES", "Schedule", "parse"]

#: The learning-rate schedules by name, as :func:`parse` and ``--lr-schedule`` take them.
SCHEDULES = ("constant", "geometric", "burda2015")


@dataclass(frozen=True)
class Schedule:
    """Stage i (from 0) lasts ``growth``ⁱ epochs at factor ``decay``ⁱ, for ``stages`` stages.

    ``stages=1`` with an unbounded first stage is the constant schedule.

    Example:
        >>> s = parse("burda2015")
        >>> [s.stage(e) for e in (1, 2, 4, 5, 13, 14, 3280, 5000)]
        [0, 1, 1, 2, 2, 3, 7, 7]
        >>> round(s.factor(14), 4)  # 10 ** (-3 / 7)
        0.3728
        >>> s.epochs
        3280
    """

    name: str
    growth: float = 1.0
    decay: float = 1.0
    stages: int = 1

    @property
    def epochs(self) -> int | None:
        """The epochs of all stages together (``None`` for the constant schedule)."""
        if self.name == "constant":
            return None
        return sum(round(self.growth**i) for i in range(self.stages))

    def stage(self, epoch: int) -> int:
        """The stage (from 0) of ``epoch`` (from 1); the last stage goes on forever."""
        if self.name == "constant":
            return 0
        end = 0
        for i in range(self.stages):
            end += round(self.growth**i)
            if epoch <= end:
                return i
        return self.stages - 1

    def factor(self, epoch: int) -> float:
        """The factor of the base learning rate in ``epoch`` (from 1)."""
        return self.decay ** self.stage(epoch)

    @property
    def label(self) -> str:
        """The spec that :func:`parse` reads back into this schedule."""
        if self.name in ("constant", "burda2015"):
            return self.name
        return f"geometric:growth={self.growth:g},decay={self.decay:g},stages={self.stages}"


_BURDA2015 = Schedule("burda2015", growth=3.0, decay=10 ** (-1 / 7), stages=8)


def parse(spec: str) -> Schedule:
    """Reads ``constant``, ``burda2015`` or ``geometric:growth=3,decay=0.5,stages=4``.

    Raises:
        ValueError: an unknown name (the message lists the known ones) or a bad option.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"a learning-rate schedule must be a non-empty string, got {spec!r}")
    name, _, rest = spec.strip().partition(":")
    name = name.strip()
    if name not in SCHEDULES:
        raise ValueError(
            f"unknown learning-rate schedule {name!r}; choose one of: {', '.join(SCHEDULES)}"
        )
    if name != "geometric":
        if rest.strip():
            raise ValueError(f"learning-rate schedule {name!r} takes no options, got {spec!r}")
        return _BURDA2015 if name == "burda2015" else Schedule("constant")
    options = _options(rest, spec)
    growth, decay, stages = options["growth"], options["decay"], options["stages"]
    if not (math.isfinite(growth) and growth >= 1):
        raise ValueError(f"in schedule {spec!r}: growth must be a number ≥ 1, got {growth:g}")
    if not (0 < decay <= 1):
        raise ValueError(f"in schedule {spec!r}: decay must be in (0, 1], got {decay:g}")
    if stages != int(stages) or not 1 <= stages <= 100:
        raise ValueError(f"in schedule {spec!r}: stages must be an integer from 1 to 100")
    return Schedule("geometric", growth, decay, int(stages))


def _options(text: str, spec: str) -> dict[str, float]:
    options: dict[str, float] = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        key, eq, value = item.partition("=")
        key = key.strip()
        if key not in ("growth", "decay", "stages") or not eq:
            raise ValueError(
                f"in schedule {spec!r}: expected growth=, decay= and stages=, got {item!r}"
            )
        try:
            options[key] = float(value)
        except ValueError:
            raise ValueError(
                f"in schedule {spec!r}: {key} must be a number, got {value!r}"
            ) from None
    missing = [k for k in ("growth", "decay", "stages") if k not in options]
    if missing:
        raise ValueError(f"in schedule {spec!r}: give {', '.join(missing)}")
    return options
