"""The base of pyro_vae's estimators: K vectorised particles, a KL schedule, one draw per step.

:class:`ParticleELBO` is a :class:`pyro.infer.ELBO`: it checks the programs once, draws
the particles (:meth:`ParticleELBO._draw`: the fused path for a VAE's own programs,
the traced path for any other) and hands the draw to its subclass's
:meth:`~ParticleELBO._objective`, the one place each bound and gradient is written
(:mod:`pyro_vae.infer.estimators`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import pyro.infer
import torch

from pyro_vae._checks import check_finite_at_least, check_int_at_least
from pyro_vae.infer import _fused, _particles, _programs
from pyro_vae.infer._draw import Draw
from pyro_vae.infer._particles import Particles
from pyro_vae.infer._traced import TracedDraw

__all__ = ["KLSchedule", "ParticleELBO"]


@dataclass(frozen=True)
class KLSchedule:
    r"""The weight of the KL term over training.

    Attributes:
        beta: β, the final weight of :math:`\log p(z) - \log q(z \mid x)` (1: the true bound).
        warmup_steps: :math:`\beta_t = \beta \cdot \min(1, t / \mathtt{warmup\_steps})` after
            t training steps (0: no warm-up).
        free_bits: :math:`\lambda \ge 0` nats per latent dimension; 0 turns it off.
    """

    beta: float = 1.0
    warmup_steps: int = 0
    free_bits: float = 0.0

    def __post_init__(self) -> None:
        check_finite_at_least("beta", self.beta)
        check_int_at_least("warmup_steps", self.warmup_steps, low=0)
        check_finite_at_least("free_bits", self.free_bits)

    def beta_at(self, step: int) -> float:
        """β after ``step`` training steps."""
        if self.warmup_steps == 0:
            return self.beta
        return self.beta * min(1.0, step / self.warmup_steps)


class ParticleELBO(pyro.infer.ELBO):
    r"""Base of pyro_vae's estimators: K vectorised particles, per-example bounds.

    Subclasses implement ``_objective``, which turns one vectorised draw
    (:class:`~pyro_vae.infer._draw.Draw`) into the bound (summed over the batch with
    the sites' scales) and a surrogate whose gradient is the estimator's.

    Arguments:
        num_particles: :math:`K \ge 1` samples of z per example, drawn in one vectorised pass.
        max_plate_nesting: plates the programs nest, left of which the particle
            plate goes. By default it is found from the programs, as Pyro's ELBOs
            guess it, by one run without particles on the first batch (pyro_vae's
            models: 1, ``"data"``); a number given is used as it is.
        beta, warmup_steps, free_bits: the :class:`KLSchedule`.
    """

    objective_name: ClassVar[str] = ""
    reparameterized: ClassVar[bool] = True
    accepts_free_bits: ClassVar[bool] = False

    def __init__(
        self,
        num_particles: int = 1,
        *,
        max_plate_nesting: int | None = None,
        beta: float = 1.0,
        warmup_steps: int = 0,
        free_bits: float = 0.0,
    ) -> None:
        num_particles = check_int_at_least("num_particles", num_particles, low=1)
        if max_plate_nesting is not None:
            max_plate_nesting = check_int_at_least("max_plate_nesting", max_plate_nesting, low=1)
        self._given_nesting = max_plate_nesting
        # Pyro's own mark of a nesting still to be found from the programs.
        nesting = float("inf") if max_plate_nesting is None else max_plate_nesting
        super().__init__(num_particles=num_particles, max_plate_nesting=nesting)
        self._checked: tuple[Callable, Callable] | None = None
        self.schedule = KLSchedule(beta, warmup_steps, free_bits)
        if free_bits and not self.accepts_free_bits:
            raise ValueError(
                f"free_bits applies to the KL term of the ELBO; {self.objective_name!r} has "
                "no separate KL term (use elbo, analytic-kl or stl)"
            )
        self.step = 0

    @property
    def beta(self) -> float:
        """β at the current training step."""
        return self.schedule.beta_at(self.step)

    def state_dict(self) -> dict[str, int]:
        """The training state a checkpoint needs: the step count of the KL schedule."""
        return {"step": self.step}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Restores the step count that :meth:`state_dict` saved."""
        self.step = check_int_at_least("step", state["step"], low=0)

    def _check_programs(self, model: Callable, guide: Callable, args: tuple, kwargs: dict) -> None:
        """Checks the programs and finds their plate nesting, once per pair of programs.

        The check runs them without particles (:func:`_programs.check_programs`),
        so that every path (SVI, ``fit``) refuses a program outside the contract
        with the same message, before a particle plate can break it.
        """
        if self._checked is not None and self._checked == (model, guide):
            return
        caller = f"objective {self.objective_name!r}"
        depth = _programs.check_programs(model, guide, args, kwargs, caller)
        if self._given_nesting is None:
            self.max_plate_nesting = depth
        elif depth > self._given_nesting:
            raise ValueError(
                f"max_plate_nesting={self._given_nesting} but the programs nest plates "
                f"{depth} deep; leave max_plate_nesting out to find it from the programs"
            )
        self._checked = (model, guide)

    def _run(self, model: Callable, guide: Callable, args: tuple, kwargs: dict) -> Particles:
        """The traces of one vectorised draw of any Pyro model and guide."""
        self._check_programs(model, guide, args, kwargs)
        p = _particles.run(
            model,
            guide,
            args,
            kwargs,
            self.num_particles,
            self.max_plate_nesting,
            reparameterized=self.reparameterized,
        )
        if self.reparameterized:
            for name in p.latents:
                fn = p.guide_trace.nodes[name]["fn"]
                if not fn.has_rsample:
                    raise ValueError(
                        f"objective {self.objective_name!r} differentiates through the sample "
                        f"of site {name!r}, but {type(fn).__name__} cannot be reparameterised; "
                        "use 'score-function'"
                    )
        return p

    def _get_trace(self, model: Callable, guide: Callable, args: tuple, kwargs: dict) -> Any:
        raise NotImplementedError(
            f"{type(self).__name__} draws all particles at once; it has no per-particle traces"
        )

    def _objective(
        self, d: Draw, beta: float, grad: bool
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Returns ``(surrogate, bound)``, scalars; ``surrogate`` only when ``grad``."""
        raise NotImplementedError

    def _draw(self, model: Callable, guide: Callable, args: tuple, kwargs: dict) -> Draw:
        """One draw: from a VAE's parts where the fused path applies, else by tracing."""
        matched = _fused.match(model, guide, args, kwargs) if self._fusable() else None
        if matched is not None:
            d = _fused.draw(
                *matched,
                args[0],
                self.num_particles,
                reparameterized=self.reparameterized,
                objective=repr(self.objective_name),
            )
            if d is not None:
                return d
        return TracedDraw(self._run(model, guide, args, kwargs))

    def _fusable(self) -> bool:
        """Whether the fused path computes everything this estimator needs."""
        return True

    def loss(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> float:
        """The negative bound at the current β, in nats (no gradients)."""
        with torch.no_grad():
            _, bound = self._objective(self._draw(model, guide, args, kwargs), self.beta, False)
        return -bound.item()

    def differentiable_loss(
        self, model: Callable, guide: Callable, *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        """The negative bound as a tensor whose gradient is this estimator's."""
        d = self._draw(model, guide, args, kwargs)
        surrogate, bound = self._objective(d, self.beta, True)
        if surrogate is bound:
            return -bound
        loss = -(bound.detach() + surrogate - surrogate.detach())
        # inf - inf would turn an infinite bound into NaN; report the bound itself.
        return torch.where(torch.isfinite(bound.detach()), loss, -bound)

    def loss_and_grads(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> float:
        """One training step's loss; accumulates the estimator's gradients in ``.grad``."""
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        if loss.requires_grad:
            loss.backward(retain_graph=self.retain_graph)
        self.step += 1
        return loss.item()
