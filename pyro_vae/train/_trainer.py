"""One training step of stochastic variational inference, without Pyro's per-step overhead.

A step is what :meth:`pyro.infer.SVI.step` does: the objective's ``loss_and_grads``
on the model and guide, then an optimizer step on every parameter they use.
Two things differ, and neither changes the maths:

- one :class:`torch.optim.Adam` holds every parameter, where :func:`pyro.optim.Adam`
  keeps one Adam per parameter tensor and calls each in turn. Adam's update is
  elementwise, so the trajectory is the same; the step makes one optimizer call
  instead of one per tensor. Where every parameter allows it (floating, on the CPU
  or a CUDA device), it is torch's fused Adam, one kernel for all of them: the same
  update, and at batch 20 an epoch of the IWAE paper's VAE took 0.70× the time
  of the per-tensor loop (7.4 s against 10.6 s on one CPU core).
- no handler wraps the programs: SVI traces every step to collect parameters,
  which also stops :mod:`pyro_vae.infer._fused` from evaluating a VAE without tracing.
  The parameters of a VAE are known from the module; those of plain Pyro
  programs are collected by a parameter-only trace, as SVI does.

The loss is computed and checked before the update is applied (:meth:`Trainer.apply`),
so a non-finite loss never reaches the parameters.

In a data-parallel run (:mod:`pyro_vae.distributed`) each step is given the
global batch; the trainer keeps its process's shard, and the processes' losses
and gradients are summed into those per example of the global batch before the
check (:mod:`pyro_vae.train._data_parallel`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pyro
import pyro.infer
import pyro.poutine as poutine
import torch

from pyro_vae.infer._fused import PerExample
from pyro_vae.models.guides import location
from pyro_vae.models.vae import VAE
from pyro_vae.train._data_parallel import shard_of_batch, sum_gradients
from pyro_vae.train.distributed import Group

__all__ = ["Trainer"]


class Trainer:
    """SVI steps with one :class:`torch.optim.Adam` over the parameters the programs use.

    Arguments:
        model, guide: the Pyro programs; each step scales them by 1/B (:class:`PerExample`).
        objective: a :class:`pyro.infer.ELBO`.
        lr: Adam's learning rate.
        betas, eps: Adam's moment decay rates (β₁, β₂) and denominator constant ε.
        vae: the VAE the programs belong to, whose parameters are then known up front
            (``None`` for plain programs: their parameters are found as they appear).
        group: the data-parallel group (default: a single process).
    """

    def __init__(
        self,
        model: Callable[..., Any],
        guide: Callable[..., Any],
        objective: pyro.infer.ELBO,
        lr: float,
        vae: VAE | None = None,
        group: Group | None = None,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.model, self.guide = PerExample(model), PerExample(guide)
        self.betas, self.eps = tuple(betas), eps
        self.group = group or Group()
        self.objective = objective
        self.vae = vae
        self.lr = lr
        self.optimizer: torch.optim.Adam | None = None
        self.names: list[str] = []
        self._params: list[torch.Tensor] = []
        self._known: set[int] = set()

    def prepare(self, example: torch.Tensor) -> None:
        """Finds the parameters and builds the optimizer; call once, before training.

        Runs the programs without gradients on ``example`` (a batch) so that lazy
        layers and :func:`pyro.param` sites exist, then collects them. Plain programs
        draw their latent sites once here.

        Raises:
            ValueError: the programs have no parameters to train.
        """
        with torch.no_grad(), poutine.block():
            if self.vae is not None:
                self.vae.decode(location(self.vae.encode(example)))  # materialises lazy layers
                parts = self.vae._parts
                self.vae._register_params(*parts)
                names = self.vae._param_names([self.vae._modules[part] for part in parts])
                # The module's order (checkpoints store the optimizer's state by position),
                # under the param store's names (a tensor the parts share is listed once).
                self._add((names[id(p)][0], p) for p in self.vae.parameters())
            else:
                with poutine.trace(param_only=True) as capture:
                    trace = poutine.trace(self.guide).get_trace(example)
                    poutine.replay(self.model, trace=trace)(example)
                self._add_from_trace(capture.trace)
        if not self._params:
            raise ValueError("the model and guide have no parameters to train")
        self.optimizer = torch.optim.Adam(
            self._params, lr=self.lr, betas=self.betas, eps=self.eps, fused=_fusable(self._params)
        )

    def set_lr(self, lr: float) -> None:
        """Sets the learning rate of every parameter (a schedule's rate for this epoch)."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def loss_and_grads(self, x: torch.Tensor) -> float:
        """The loss on the batch ``x``, per example; leaves the gradients in ``.grad``.

        In a data-parallel run ``x`` is the global batch, the same on every
        process: each computes its shard's share and the shares are summed, so
        every process gets the loss and gradients of ``x``, per example.
        """
        if not self.group.distributed:
            return self._local_loss_and_grads(x)
        shard = shard_of_batch(x, self.group)
        self.model.batch_total = self.guide.batch_total = x.shape[0]
        try:
            if shard.shape[0] > 0:
                loss = self._local_loss_and_grads(shard)
            else:
                # A last global batch with fewer rows than processes leaves this one
                # none. It still takes a step, thrown away, so the objective's own
                # state (the KL warm-up's step count) stays in step with the others.
                self._local_loss_and_grads(x[:1])
                self.optimizer.zero_grad(set_to_none=True)
                loss = 0.0
        finally:
            self.model.batch_total = self.guide.batch_total = None
        return sum_gradients(self.group, self.optimizer.param_groups[0]["params"], loss)

    def _local_loss_and_grads(self, x: torch.Tensor) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        if self.vae is not None:
            return self.objective.loss_and_grads(self.model, self.guide, x)
        known = len(self._known)
        with poutine.trace(param_only=True) as capture:
            loss = self.objective.loss_and_grads(self.model, self.guide, x)
        self._add_from_trace(capture.trace)
        if self.group.distributed and len(self._known) != known:
            raise ValueError(
                f"the parameter {self.names[-1]!r} first appeared during training; a "
                "data-parallel run needs every pyro.param to exist after the programs' "
                "first run on a batch, so that all processes exchange the same gradients"
            )
        return loss

    def params(self) -> list[torch.Tensor]:
        """The tensors the optimizer updates, in the order of :attr:`names`."""
        return list(self.optimizer.param_groups[0]["params"])

    def apply(self) -> None:
        """Applies the update of the gradients left by :meth:`loss_and_grads`."""
        self.optimizer.step()

    def check_and_clip(self, loss: float, max_norm: float | None = None) -> str | None:
        """Checks the loss and the gradients are finite; clips the gradients' norm.

        With ``max_norm``, the gradients are scaled so that their joint 2-norm is
        at most ``max_norm`` (:func:`torch.nn.utils.clip_grad_norm_`).

        Returns:
            ``None`` when the step may be applied, else what is not finite, such
            as ``"the loss is nan"`` or ``"the gradient of encoder.net.0.weight is inf"``.
        """
        if not math.isfinite(loss):
            return f"the loss is {loss}"
        params = [p for p in self.optimizer.param_groups[0]["params"] if p.grad is not None]
        if not params:
            return None
        if max_norm is not None:
            total = torch.nn.utils.clip_grad_norm_(params, max_norm)
        else:
            # A sum is the cheapest reduction that NaN and ±inf survive: one read of each
            # gradient, half the cost of the norm (measured in BENCHMARKS.md's notes).
            total = torch.stack([p.grad.sum() for p in params]).sum()
        if bool(torch.isfinite(total)):
            return None
        every = self.optimizer.param_groups[0]["params"]
        names = dict(zip(map(id, every), self.names, strict=True))
        bad = [
            f"{names[id(p)]} is {'nan' if p.grad.isnan().any() else 'inf'}"
            for p in params
            if not bool(torch.isfinite(p.grad).all())
        ]
        if not bad:  # the sum or norm of finite gradients overflowed: nothing is wrong with them
            return None
        more = f" (and {len(bad) - 3} more)" if len(bad) > 3 else ""
        return "the gradient of " + ", ".join(bad[:3]) + more

    def loss(self, x: torch.Tensor) -> float:
        """The loss on the batch ``x`` without gradients, per example."""
        return self.objective.loss(self.model, self.guide, x)

    def _add_from_trace(self, trace: Any) -> None:
        store = pyro.get_param_store()
        self._add(
            (name, store._params[name])  # the unconstrained leaf tensor Adam updates
            for name, site in trace.nodes.items()
            if site["type"] == "param"
        )

    def _add(self, named: Any) -> None:
        # Before prepare() ends this is the optimizer's list to be; after, the
        # optimizer's own, so a parameter first used later is trained too.
        group = self.optimizer.param_groups[0] if self.optimizer is not None else None
        params = self._params if group is None else group["params"]
        for name, param in named:
            if id(param) not in self._known and param.requires_grad:
                self._known.add(id(param))
                self.names.append(name)
                params.append(param)

    def state_dict(self) -> dict[str, Any]:
        """The optimizer's state with the parameter names it is keyed by (plain data)."""
        return {"names": list(self.names), "adam": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores :meth:`state_dict`'s output, or the per-parameter state of ``pyro.optim``.

        Raises:
            ValueError: the saved parameters are not the ones this model uses.
        """
        if "names" not in state:
            state = _from_pyro_optim(state, self.names, self.optimizer.state_dict())
        if self.vae is None:
            # Parameters a program first used after the start are in the store, not yet here.
            store = pyro.get_param_store()
            self._add((name, store._params[name]) for name in state["names"] if name in store)
        if list(state["names"]) != self.names:
            missing = sorted(set(self.names) ^ set(state["names"]))
            raise ValueError(
                "the checkpoint's optimizer state is for other parameters than the model's "
                f"(differing: {', '.join(missing) or 'their order'})"
            )
        self.optimizer.load_state_dict(state["adam"])


def _from_pyro_optim(
    old: dict[str, Any], names: list[str], template: dict[str, Any]
) -> dict[str, Any]:
    """Converts :func:`pyro.optim.Adam`'s ``{name: per-tensor Adam state}`` (older checkpoints)."""
    if set(old) != set(names):
        missing = sorted(set(names) ^ set(old))
        raise ValueError(
            "the checkpoint's optimizer state is for other parameters than the model's "
            f"(differing: {', '.join(missing)})"
        )
    state = {i: old[name]["state"][0] for i, name in enumerate(names) if old[name]["state"]}
    groups = [dict(template["param_groups"][0], params=list(range(len(names))))]
    return {"names": names, "adam": {"state": state, "param_groups": groups}}


def _fusable(params: list[torch.Tensor]) -> bool:
    """Whether torch's fused Adam takes ``params``: floating tensors, all on the CPU or CUDA."""
    devices = {p.device.type for p in params}
    return (
        len(devices) == 1
        and devices <= {"cpu", "cuda"}
        and all(p.is_floating_point() for p in params)
    )
