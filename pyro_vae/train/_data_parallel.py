"""What a data-parallel training step exchanges: batches, gradients, parameters and random streams.

The scheme is DistributedDataParallel's, written as explicit collectives over
the trainer's parameter list (Pyro's parameters live in the param store and in
modules, which DDP's module wrapper does not see):

- every process draws the same epoch shuffle and the same binarisation of
  each *global* batch of G = B × world_size examples from one shared data
  generator, and keeps the rows ``rank::world_size``: DistributedSampler's
  split, so two processes with batch B see exactly the batches of one process
  with batch 2B;
- each process scales its shard's log-densities by 1/G, so one all-reduce
  (sum) of the flattened gradients and the loss gives every process the
  gradient and loss *per example of the global batch*;
- rank 0's parameters and data-generator state are broadcast at the start, and
  identical gradients applied by identical optimizers keep the parameters
  identical; a fingerprint checks it after every epoch;
- the particle draws (torch's, NumPy's and Python's generators) differ between
  processes: each one's stream is re-seeded from a shared seed and its rank.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pyro
import torch

from pyro_vae.train.distributed import Group, PeerError

__all__ = [
    "shard_of_batch",
    "sum_gradients",
    "broadcast_tensors",
    "fork_random_streams",
    "check_same_parameters",
    "check_same_setup",
    "data_summary",
]


def shard_of_batch(batch: torch.Tensor, group: Group) -> torch.Tensor:
    """This process's rows of a global batch: ``batch[rank::world_size]``."""
    if not group.distributed:
        return batch
    return batch[group.rank :: group.world_size]


def sum_gradients(group: Group, params: Sequence[torch.Tensor], loss: float) -> float:
    """Sums ``loss`` and every parameter's ``.grad`` over the processes, in one all-reduce.

    Each process's loss and gradients are its shard's share of the global
    batch's mean (scaled by 1/G), so the sums are the global mean's. A gradient
    that is ``None`` counts as zero; it stays ``None`` only where no process has
    one, so that Adam leaves the parameter alone as it would in one process.

    Returns:
        the global loss.
    """
    if not group.distributed:
        return loss
    by_dtype: dict[tuple[torch.dtype, torch.device], list[int]] = {}
    for i, p in enumerate(params):
        by_dtype.setdefault((p.dtype, p.device), []).append(i)
    first = True
    for (dtype, device), members in by_dtype.items():
        pieces = [
            params[i].grad.reshape(-1)
            if params[i].grad is not None
            else torch.zeros(params[i].numel(), dtype=dtype, device=device)
            for i in members
        ]
        # The loss (first group only) and a has-gradient flag per parameter ride along.
        flags = [float(params[i].grad is not None) for i in members]
        extra = torch.tensor(([loss] if first else []) + flags, dtype=dtype, device=device)
        flat = group.all_reduce_sum(torch.cat(pieces + [extra]), "gradients")
        sizes = [params[i].numel() for i in members] + [extra.numel()]
        *grads, reduced = flat.split(sizes)
        if first:
            loss, reduced = float(reduced[0]), reduced[1:]
            first = False
        for i, grad, flag in zip(members, grads, reduced.tolist(), strict=True):
            params[i].grad = grad.view_as(params[i]) if flag > 0 else None
    return loss


def broadcast_tensors(group: Group, tensors: Iterable[torch.Tensor], what: str) -> None:
    """Overwrites every tensor, in place, with rank 0's values (one broadcast per dtype)."""
    if not group.distributed:
        return
    by_dtype: dict[tuple[torch.dtype, torch.device], list[torch.Tensor]] = {}
    for t in tensors:
        by_dtype.setdefault((t.dtype, t.device), []).append(t)
    for members in by_dtype.values():
        flat = torch.cat([t.detach().reshape(-1) for t in members])
        group.broadcast(flat, what)
        with torch.no_grad():
            for t, value in zip(members, flat.split([t.numel() for t in members]), strict=True):
                t.copy_(value.view_as(t))


def fork_random_streams(group: Group) -> None:
    """Gives each process its own random stream, seeded from rank 0's generator and the rank.

    Runs after the shared set-up (parameter initialisation, data generator), so
    the processes agree on everything drawn before it and differ in the
    particles drawn after.
    """
    if not group.distributed:
        return
    base = torch.randint(0, 2**62, (1,), dtype=torch.int64)
    base = int(group.broadcast(base, "the random seed").item())
    seed = int(np.random.SeedSequence([base, group.rank]).generate_state(1)[0])
    pyro.set_rng_seed(seed)


def _fingerprint(tensors: Iterable[torch.Tensor]) -> list[float]:
    with torch.no_grad():
        return [float(t.detach().double().sum()) for t in tensors]


def check_same_parameters(group: Group, named: Sequence[tuple[str, torch.Tensor]]) -> None:
    """Checks every process holds the same parameters (by their sums); raises PeerError if not.

    Identical gradients applied by identical optimizers keep the parameters
    identical; a nondeterministic operation or a parameter updated outside the
    optimizer would silently split the run into different models.
    """
    if not group.distributed:
        return
    mine = (len(named), _fingerprint(t for _, t in named))
    everyone = group.all_gather_object(mine, "parameter fingerprints")
    for rank, theirs in enumerate(everyone):
        if theirs == mine:
            continue
        if theirs[0] != mine[0]:
            what = f"{theirs[0]} parameters, against {mine[0]} here"
        else:
            names = [n for (n, _), a, b in zip(named, mine[1], theirs[1], strict=True) if a != b]
            what = "different values of " + ", ".join(names[:3])
        raise PeerError(
            f"{group.describe()}: the processes' parameters have diverged (rank {rank} has "
            f"{what}); data-parallel training needs every process to apply the same update"
        )


def check_same_setup(group: Group, setup: dict[str, object]) -> None:
    """Checks every process was given the same data and settings; raises ValueError if not.

    ``setup`` maps names (``"data"``, ``"batch_size"``, …) to comparable values;
    processes launched with different arguments or data would otherwise train
    on silently different problems, or wait on each other forever.
    """
    if not group.distributed:
        return
    everyone = group.all_gather_object(setup, "the run's settings")
    for rank, theirs in enumerate(everyone):
        for name, value in setup.items():
            if theirs.get(name) != value:
                raise ValueError(
                    f"{group.describe()}: the processes were given different {name}: "
                    f"{value!r} here, {theirs.get(name)!r} on rank {rank}; launch every "
                    "process with the same arguments and data"
                )


def data_summary(data: torch.Tensor) -> tuple:
    """Shape, dtype and a float64 checksum of ``data``, to compare across processes."""
    with torch.no_grad():
        checksum = float(data.double().sum()) if data.numel() else 0.0
    return (tuple(data.shape), str(data.dtype), checksum)
