"""Representative subsets of a data set's rows: seeded, class-balanced or shuffled.

Some splits are stored in label order (``mnist5k``'s test split starts with all its
0s), so "the first N examples" can hold one class only. These helpers pick N rows the
same way on every run and every machine instead:

* :func:`balanced_rows` (labels known): rows ordered so that every class comes round in
  turn (class order ascending), the rows of a class in a seeded random order. Any prefix
  of the order is as balanced as the classes allow, so the subset of N rows is the first
  N of the subset of N + 1, and its first 10 rows of 10 classes are one of each.
* :func:`shuffled_rows` (no labels): the first N rows of a seeded random permutation.

Both draw from their own generator seeded by ``seed``; the global random streams are
neither used nor advanced. Both are public as ``pyro_vae.data.<name>``, beside
:func:`pyro_vae.data.subset_rows`, which applies :func:`balanced_rows` to a split of a
named data set.
"""

from __future__ import annotations

import torch

from pyro_vae._checks import check_int_at_least, check_positive_int, check_seed

__all__ = ["balanced_rows", "shuffled_rows"]


def _check_size(num: object) -> int | None:
    return None if num is None else check_positive_int("num", num)


def shuffled_rows(num_rows: int, num: int | None, *, seed: int = 0) -> torch.Tensor:
    """Row indices of a seeded random subset of ``num`` of ``num_rows`` rows.

    Arguments:
        num_rows: how many rows there are, an integer ≥ 0.
        num: how many to keep, a positive integer; ``None`` (or more than ``num_rows``)
            keeps every row, shuffled.
        seed: seed of the draw, an integer in [0, 2**32).

    Returns:
        Int64 tensor ``(min(num, num_rows),)`` of distinct row indices, in drawn order.
    """
    check_int_at_least("num_rows", num_rows, low=0)
    num = _check_size(num)
    generator = torch.Generator().manual_seed(check_seed(seed))
    return torch.randperm(num_rows, generator=generator)[:num]


def balanced_rows(labels: torch.Tensor, num: int | None, *, seed: int = 0) -> torch.Tensor:
    """Row indices of a seeded, class-balanced subset of ``num`` rows, classes interleaved.

    Round r holds the r-th row of every class that has one, classes in ascending order;
    within a class the rows come in a random order seeded by ``seed``. With C classes,
    each class gets ``num // C`` or one more rows while it has them; a class that runs
    out leaves its turns to the others.

    Arguments:
        labels: integer class labels ``(N,)``, one per row.
        num: how many rows to keep, a positive integer; ``None`` (or more than N)
            keeps every row, in the interleaved order.
        seed: seed of the draw, an integer in [0, 2**32).

    Returns:
        Int64 tensor ``(min(num, N),)`` of distinct row indices into ``labels``.
    """
    if not isinstance(labels, torch.Tensor) or labels.dim() != 1 or labels.is_floating_point():
        found = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise ValueError(f"labels must be a 1-D integer tensor of class labels, got {found}")
    num = _check_size(num)
    labels = labels.detach().cpu().long()
    order = shuffled_rows(len(labels), None, seed=seed)  # random order within each class
    by_class = order[torch.sort(labels[order], stable=True).indices]
    _, counts = torch.unique_consecutive(labels[by_class], return_counts=True)
    starts = torch.repeat_interleave(counts.cumsum(0) - counts, counts)
    rank = torch.arange(len(labels)) - starts  # position of each row within its class
    return by_class[torch.sort(rank, stable=True).indices][:num]
