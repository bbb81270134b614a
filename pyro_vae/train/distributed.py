"""Data-parallel runs with :mod:`torch.distributed`: launch detection, process group, collectives.

``torchrun --nproc_per_node=N -m pyro_vae train ...`` starts N copies of a
program with ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT`` in their environment. :func:`init` reads them and joins the
process group: ``gloo`` when training on the CPU, ``nccl`` on CUDA devices, one
GPU per process (``cuda:LOCAL_RANK``). :func:`~pyro_vae.fit` calls it, so a
training script needs no change to run data-parallel.

Every collective here turns a failure of another process into
:class:`PeerError`: a process that dies closes its connections, and the others
stop at their next collective with an error that says so, instead of waiting;
a process that hangs makes the others stop after the group's ``timeout``.

A single process (no launcher, or ``WORLD_SIZE=1``) is a group of one, for which
every collective returns its input, so code written against this module runs
unchanged without a launcher.
"""

from __future__ import annotations

import atexit
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist

__all__ = [
    "Group",
    "PeerError",
    "DEFAULT_TIMEOUT",
    "launched",
    "init",
    "current",
    "shutdown",
    "shard_range",
    "map_shards",
]

T = TypeVar("T")

DEFAULT_TIMEOUT = timedelta(minutes=30)
"""How long a collective waits for a silent process before failing (torch's default)."""

_LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


class PeerError(RuntimeError):
    """A collective failed: another process stopped, hung past the timeout, or diverged."""


@dataclass(frozen=True)
class Group:
    """This process's place in a data-parallel run.

    Attributes:
        rank: 0 ≤ rank < world_size; rank 0 prints and writes files.
        world_size: the number of processes.
        local_rank: the rank among the processes of this machine (its GPU index).
        backend: ``"gloo"``, ``"nccl"``, or ``None`` for a single process.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def distributed(self) -> bool:
        """Whether there is more than one process."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0, the process that prints and writes files."""
        return self.rank == 0

    def describe(self) -> str:
        """``"rank 1 of 4"``, for messages."""
        return f"rank {self.rank} of {self.world_size}"

    # ---------------------------------------------------------------- collectives

    def all_reduce_sum(self, tensor: torch.Tensor, what: str = "a sum") -> torch.Tensor:
        """Sums ``tensor`` over the processes, in place; returns it."""
        if self.distributed:
            with self._collective(what):
                dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def broadcast(self, tensor: torch.Tensor, what: str = "a tensor") -> torch.Tensor:
        """Overwrites ``tensor`` with rank 0's, in place; returns it."""
        if self.distributed:
            with self._collective(what):
                dist.broadcast(tensor, src=0)
        return tensor

    def broadcast_object(self, obj: T, what: str = "an object") -> T:
        """Rank 0's ``obj`` (any picklable value; tensors travel on the CPU)."""
        if not self.distributed:
            return obj
        box = [obj if self.is_main else None]
        with self._collective(what):
            dist.broadcast_object_list(box, src=0)
        return box[0]

    def all_gather_object(self, obj: T, what: str = "objects") -> list[T]:
        """Every process's ``obj``, in rank order."""
        if not self.distributed:
            return [obj]
        out: list[Any] = [None] * self.world_size
        with self._collective(what):
            dist.all_gather_object(out, obj)
        return out

    def on_main(self, fn: Callable[[], T], what: str = "a result") -> T:
        """Runs ``fn`` on rank 0 only and gives every process its result or its error.

        An exception ``fn`` raises on rank 0 is raised on every process, as the
        same type where it can be rebuilt from its message, else as :class:`PeerError`.
        """
        if not self.distributed:
            return fn()
        outcome: tuple[str, Any] | None = None
        error: Exception | None = None
        if self.is_main:
            try:
                outcome = ("value", fn())
            except Exception as e:  # noqa: BLE001 - every process must learn of it
                error, outcome = e, ("error", (type(e), str(e)))
        kind, payload = self.broadcast_object(outcome, what)
        if kind == "value":
            return payload
        if error is not None:
            raise error
        raise _rebuilt(payload[0], f"on rank 0: {payload[1]}")

    @contextmanager
    def _collective(self, what: str) -> Iterator[None]:
        if not dist.is_initialized():
            raise PeerError(
                f"{self.describe()}: cannot exchange {what}: the process group is gone "
                "(an earlier collective failed)"
            )
        try:
            yield
        except RuntimeError as e:
            _abandon()
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise PeerError(
                f"{self.describe()}: exchanging {what} with the other processes failed "
                f"({first}); another process of the run has stopped or hung, see its own "
                "error. Rank 0's last checkpoint.pt can be resumed"
            ) from None


def _rebuilt(kind: type[Exception], message: str) -> Exception:
    """An exception of ``kind`` with ``message``, or a PeerError where ``kind`` needs more."""
    try:
        error = kind(message)
    except Exception:  # noqa: BLE001 - a constructor with other arguments
        return PeerError(message)
    return error if str(error) == message else PeerError(message)


def launched() -> bool:
    """Whether this process was started by a launcher with more than one process."""
    return _environment().world_size > 1


def _int_variable(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(
            f"the environment variable {name} must be an integer, got {value!r}"
        ) from None


def _environment() -> Group:
    """The group the launcher's variables describe (a single process without them)."""
    world_size = _int_variable("WORLD_SIZE")
    if world_size is None or world_size == 1:
        return Group()
    rank, local_rank = _int_variable("RANK"), _int_variable("LOCAL_RANK")
    if world_size < 1:
        raise ValueError(f"the environment variable WORLD_SIZE must be ≥ 1, got {world_size}")
    if rank is None:
        raise ValueError(
            f"WORLD_SIZE={world_size} is set but RANK is not: launch with torchrun, "
            "or set RANK, LOCAL_RANK, MASTER_ADDR and MASTER_PORT for every process"
        )
    if not 0 <= rank < world_size:
        raise ValueError(f"RANK must be in [0, WORLD_SIZE={world_size}), got {rank}")
    local_rank = rank if local_rank is None else local_rank
    if local_rank < 0:
        raise ValueError(f"LOCAL_RANK must be ≥ 0, got {local_rank}")
    return Group(rank=rank, world_size=world_size, local_rank=local_rank)


_group: Group | None = None


def current() -> Group:
    """The group :func:`init` joined, or a single process's group."""
    if _group is not None and dist.is_initialized():
        return _group
    if dist.is_available() and dist.is_initialized():  # joined by the user's own code
        return Group(
            dist.get_rank(), dist.get_world_size(), _int_variable("LOCAL_RANK") or 0,
            dist.get_backend(),
        )  # fmt: skip
    return Group()


def init(
    device: str | torch.device | None = None,
    *,
    backend: str | None = None,
    timeout: timedelta | float = DEFAULT_TIMEOUT,
) -> Group:
    """Joins the process group of a ``torchrun`` launch; a group of one without a launcher.

    Idempotent: a group already joined (by an earlier call or by the user's own
    :func:`torch.distributed.init_process_group`) is used as it is.

    Arguments:
        device: the device training runs on; decides the backend. On CUDA the
            process uses ``cuda:LOCAL_RANK``.
        backend: ``"gloo"`` or ``"nccl"`` (default: ``nccl`` for CUDA, else ``gloo``).
        timeout: how long a collective waits for a silent process (a ``timedelta``
            or seconds) before :class:`PeerError`.

    Raises:
        ValueError: malformed launcher variables, an unknown backend, or ``nccl``
            without CUDA.
        PeerError: the other processes did not join within ``timeout``.
    """
    global _group
    if dist.is_available() and dist.is_initialized():
        return current()
    group = _environment()
    if not group.distributed:
        return group
    if not dist.is_available():
        raise ValueError("this torch build has no torch.distributed; run a single process")
    device = torch.device(device) if device is not None else torch.device("cpu")
    backend = backend or ("nccl" if device.type == "cuda" else "gloo")
    if backend not in ("gloo", "nccl"):
        raise ValueError(f"backend must be 'gloo' or 'nccl', got {backend!r}")
    if backend == "nccl" and not torch.cuda.is_available():
        raise ValueError("the nccl backend needs CUDA; use gloo for training on the CPU")
    if not isinstance(timeout, timedelta):
        seconds = float(timeout)
        if not seconds > 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        timeout = timedelta(seconds=seconds)
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if not os.environ.get(name):
            raise ValueError(
                f"WORLD_SIZE={group.world_size} is set but {name} is not: launch with torchrun"
            )
    if device.type == "cuda":
        torch.cuda.set_device(local_device(device, group))
    try:
        dist.init_process_group(
            backend, rank=group.rank, world_size=group.world_size, timeout=timeout
        )
    except RuntimeError as e:
        raise PeerError(
            f"{group.describe()}: joining the process group at "
            f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']} failed: {e}"
        ) from None
    _group = Group(group.rank, group.world_size, group.local_rank, backend)
    atexit.register(_at_exit)
    return _group


def local_device(device: torch.device, group: Group) -> torch.device:
    """The device this process trains on: ``cuda`` without an index becomes ``cuda:LOCAL_RANK``."""
    if device.type == "cuda" and device.index is None and group.distributed:
        return torch.device("cuda", group.local_rank)
    return device


def shutdown(*, wait: bool = True) -> None:
    """Leaves the process group (at exit, or to end distributed work early).

    With ``wait``, first waits (up to the group's timeout) for every process to
    leave too: a process that tears gloo down while another still talks to it
    can abort at exit. A process leaving because of an error must not wait, as
    the others may be inside a collective it will never join; they then stop
    with :class:`PeerError`.
    """
    global _group
    _group = None
    if dist.is_available() and dist.is_initialized():
        if wait and dist.get_world_size() > 1:
            try:
                dist.barrier()
            except RuntimeError:
                pass  # already failing; leave anyway
        dist.destroy_process_group()


def _at_exit() -> None:
    shutdown(wait=not hasattr(sys, "last_value"))  # set when an uncaught exception ends it


def _abandon() -> None:
    # After a failed collective the group is unusable; destroying it lets the
    # process exit normally instead of aborting in the backend's destructor.
    try:
        shutdown(wait=False)
    except Exception:  # noqa: BLE001, S110 - already failing; the PeerError says why
        pass


def shard_range(n: int, group: Group | None = None) -> range:
    """This process's contiguous share of n items: sizes differ by at most one, rank order."""
    group = group or current()
    base, extra = divmod(n, group.world_size)
    start = group.rank * base + min(group.rank, extra)
    return range(start, start + base + (group.rank < extra))


def map_shards(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """``fn(x)`` computed in shards: each process takes its rows, the results are gathered.

    ``fn`` maps rows to per-row results (the evaluation functions' contract); the
    result is the same ``(N, ...)`` tensor on every process, in the order of ``x``.
    Without a launcher it is ``fn(x)``.
    """
    group = current()
    if not group.distributed:
        return fn(x)
    rows = shard_range(x.shape[0], group)
    local = fn(x[rows.start : rows.stop]) if len(rows) else None
    parts = group.all_gather_object(None if local is None else local.detach().cpu(), "results")
    present = [p for p in parts if p is not None]
    if not present:
        return fn(x)
    return torch.cat(present).to(x.device)
