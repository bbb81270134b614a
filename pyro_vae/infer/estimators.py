"""The estimators behind :mod:`pyro_vae.objectives`, as ``pyro.infer.ELBO`` subclasses.

Notation, for one example x with K particles z_k ~ q(z|x) (one extra leading
plate, vectorised) and a KL weight β (1 unless asked otherwise)::

    log w_k = log p(x|z_k) + β [log p(z_k) - log q(z_k|x)]
    w̃_k     = w_k / Σ_j w_j                                     (normalised weights)

    ELBO    = (1/K) Σ_k log w_k                                  (MonteCarloELBO, STL)
            = (1/K) Σ_k log p(x|z_k) - β KL(q(z|x) ‖ p(z))       (AnalyticKLELBO)
    IWAE_K  = log (1/K) Σ_k w_k                                  (IWAE, DReG)
    L_α     = 1/(1-α) log (1/K) Σ_k w_k^(1-α)                    (RenyiELBO)

Each estimator is written once, over the quantities of one vectorised draw
(:class:`~pyro_vae.infer._draw.Draw`): a VAE's own programs give them without
tracing (:mod:`~pyro_vae.infer._fused`), any other Pyro program through its traces
(:mod:`~pyro_vae.infer._traced`). Each estimator's loss is the negative bound summed
over the batch with the sites' scales (``pyro_vae.fit`` scales by 1/B, so its losses
are per example).
Every bound is computed *per example* and then summed: the logsumexp of the
importance-weighted bounds runs over particles, never over the batch.

Gradients (ψ stands for any parameter, of the decoder or the guide):

- reparameterised (``MonteCarloELBO``, ``AnalyticKLELBO``, ``IWAE``, ``RenyiELBO``):
  autograd of the bound through z = g_φ(ε).
- ``ScoreFunctionELBO``: z is drawn without a pathwise gradient and the guide is
  trained by REINFORCE, Σ_k (log w_k - b_k) ∇ log q(z_k|x), with a leave-one-out
  baseline b_k.
- ``STL`` (sticking the landing): drops the score term -β ∂/∂φ log q_φ(z)|_z, which
  has mean zero; at q = p(z|x) the guide's gradient is then exactly zero.
- ``DReG`` (doubly reparameterised IWAE gradient): the guide's gradient
  Σ_k w̃_k² ∂log w_k/∂z_k ∂z_k/∂φ, unbiased for ∇φ IWAE_K, whose signal-to-noise
  ratio does not vanish as K grows. With β ≠ 1 the weight is (1-β) w̃_k + β w̃_k².

β can ramp up linearly over the first ``warmup_steps`` training steps (KL
annealing); ``free_bits`` λ replaces the KL of each latent dimension, averaged
over the batch, by max(λ, KL) (Kingma et al. 2016).

References:
    1. Y. Burda, R. Grosse, R. Salakhutdinov. Importance weighted autoencoders. ICLR 2016.
    2. Y. Li, R. E. Turner. Rényi divergence variational inference. NeurIPS 2016.
    3. G. Roeder, Y. Wu, D. Duvenaud. Sticking the landing. NeurIPS 2017.
    4. G. Tucker, D. Lawson, S. Gu, C. J. Maddison. Doubly reparameterized gradient
       estimators for Monte Carlo objectives. ICLR 2019.
    5. T. Rainforth et al. Tighter variational bounds are not necessarily better. ICML 2018.
    6. D. P. Kingma et al. Improved variational inference with inverse autoregressive
       flow. NeurIPS 2016 (free bits).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import pyro.infer
import torch

from pyro_vae.infer import _fused, _particles, _programs
from pyro_vae.infer._draw import Draw, KLTerm, log_weights
from pyro_vae.infer._particles import Particles
from pyro_vae.infer._traced import TracedDraw

__all__ = [
    "KLSchedule",
    "ParticleELBO",
    "MonteCarloELBO",
    "AnalyticKLELBO",
    "ScoreFunctionELBO",
    "STL",
    "IWAE",
    "RenyiELBO",
    "DReG",
]


def _number(name: str, value: Any, *, low: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if value < low:
        raise ValueError(f"{name} must be ≥ {low:g}, got {value!r}")
    return float(value)


def _count(name: str, value: Any, *, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer ≥ {low}, got {value!r}")
    return value


@dataclass(frozen=True)
class KLSchedule:
    """The weight of the KL term over training.

    Attributes:
        beta: β, the final weight of log p(z) - log q(z|x) (1: the true bound).
        warmup_steps: β_t = β · min(1, t / warmup_steps) after t training steps
            (0: no warm-up).
        free_bits: λ ≥ 0 nats per latent dimension; 0 turns it off.
    """

    beta: float = 1.0
    warmup_steps: int = 0
    free_bits: float = 0.0

    def __post_init__(self) -> None:
        _number("beta", self.beta)
        _count("warmup_steps", self.warmup_steps, low=0)
        _number("free_bits", self.free_bits)

    def beta_at(self, step: int) -> float:
        """β after ``step`` training steps."""
        if self.warmup_steps == 0:
            return self.beta
        return self.beta * min(1.0, step / self.warmup_steps)


def _scaled_sum(per_example: torch.Tensor, scale: torch.Tensor | float) -> torch.Tensor:
    """Σ_b s_b t_b for per-example values ``(B,)`` and a scale ``(B,)`` or a number."""
    if isinstance(scale, torch.Tensor):
        return (scale * per_example).sum()
    return per_example.sum() * scale


def _iwae(log_w: torch.Tensor, scale: torch.Tensor | float) -> torch.Tensor:
    """Σ_b s_b [logsumexp_k log w_kb - log K]: the IWAE bound per example, summed."""
    return _scaled_sum(torch.logsumexp(log_w, dim=0) - math.log(log_w.shape[0]), scale)


class ParticleELBO(pyro.infer.ELBO):
    """Base of pyro_vae's estimators: K vectorised particles, per-example bounds.

    Subclasses implement :meth:`_objective`, which turns one vectorised draw
    (:class:`~pyro_vae.infer._draw.Draw`) into the bound (summed over the batch with
    the sites' scales) and a surrogate whose gradient is the estimator's.

    Arguments:
        num_particles: K ≥ 1 samples of z per example, drawn in one vectorised pass.
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
        num_particles = _count("num_particles", num_particles, low=1)
        if max_plate_nesting is not None:
            max_plate_nesting = _count("max_plate_nesting", max_plate_nesting, low=1)
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
        self.step = _count("step", state["step"], low=0)

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


# --------------------------------------------------------------------------- ELBO family


class MonteCarloELBO(ParticleELBO):
    """``elbo``: Trace_ELBO's estimator, E_q[log p(x|z)] - β E_q[log q(z|x) - log p(z)].

    The KL term is estimated by Monte Carlo from the same samples as the
    reconstruction term. Gradients are reparameterised.
    """

    objective_name = "elbo"
    accepts_free_bits = True
    kl_kind: ClassVar[str] = "mc"  # how the KL term is estimated (pyro_vae.infer._draw.KL_KINDS)

    def _fusable(self) -> bool:
        return self.schedule.free_bits == 0  # per-dimension KL terms need the traces

    def _kl_terms(self, d: Draw, *, groups: bool = False) -> list[KLTerm]:
        return d.kl_terms(self.kl_kind, groups=groups)

    def kl(self, d: Draw) -> torch.Tensor:
        """KL(q(z|x) ‖ p(z)) per example, summed over latent sites, as this objective
        estimates it (by Monte Carlo here; in closed form where one exists for
        :class:`AnalyticKLELBO`): ``(B,)``, times the sites' scales."""
        return sum(term.value for term in self._kl_terms(d))

    def _objective(self, d, beta, grad):
        free_bits = self.schedule.free_bits
        if free_bits > 0:  # max(λ, KL) per latent dimension, averaged over the batch
            kl = sum(
                torch.clamp(t.value.mean(0), min=free_bits * t.total_scale).sum()
                for t in self._kl_terms(d, groups=True)
            )
        else:
            kl = sum(t.value.sum() for t in self._kl_terms(d))
        bound = d.reconstruction().sum() - (kl if beta == 1 else beta * kl)
        return (bound if grad else None), bound


class AnalyticKLELBO(MonteCarloELBO):
    """``analytic-kl``: TraceMeanField_ELBO's estimator, E_q[log p(x|z)] - β KL(q(z|x) ‖ p(z)).

    The KL of a latent site is taken in closed form when torch registers one for
    the pair of distributions and when it is valid: the site's prior must depend
    only on latents the guide samples before it (true of any one-latent VAE and of
    top-down guides; a bottom-up guide of a hierarchical model gets the closed form
    for the top layer only). Elsewhere the site falls back to the Monte Carlo
    estimate of :class:`MonteCarloELBO`, and a warning says so once per site.
    """

    objective_name = "analytic-kl"
    kl_kind = "analytic"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._noted: set[str] = set()

    def _kl_terms(self, d: Draw, *, groups: bool = False) -> list[KLTerm]:
        terms = super()._kl_terms(d, groups=groups)
        for term in terms:
            if term.fallback is not None and term.name not in self._noted:
                self._noted.add(term.name)
                warnings.warn(
                    f"analytic-kl: the KL of site {term.name!r} is estimated by Monte Carlo: "
                    f"{term.fallback}",
                    stacklevel=5,
                )
        return terms


class STL(MonteCarloELBO):
    """``stl``: sticking the landing, for the ELBO or (``bound="iwae"``) the IWAE bound.

    The bound's value is unchanged; its gradient drops the score term
    -β ∂/∂φ log q_φ(z|x)|_z (zero in expectation), leaving the path derivative
    through z. When q(z|x) equals p(z|x), log w is constant in z and the guide's
    gradient is exactly zero for every sample. For the IWAE bound the estimator
    Σ_k w̃_k (path derivative of log w_k) is biased (Tucker et al. 2019); DReG is
    its unbiased counterpart.

    Arguments:
        bound: ``"elbo"`` (default) or ``"iwae"``.
        others: as :class:`ParticleELBO`.
    """

    objective_name = "stl"
    kl_kind = "path"

    def __init__(self, num_particles: int = 1, *, bound: str = "elbo", **kwargs: Any) -> None:
        if bound not in ("elbo", "iwae"):
            raise ValueError(f"bound must be 'elbo' or 'iwae', got {bound!r}")
        if bound == "iwae" and kwargs.get("free_bits"):
            raise ValueError(
                "free_bits applies to the ELBO's KL term, not to stl with bound='iwae'"
            )
        super().__init__(num_particles, **kwargs)
        self.bound = bound

    def _objective(self, d, beta, grad):
        if self.bound == "elbo":
            return super()._objective(d, beta, grad)
        bound = _iwae(log_weights(d, beta, path=grad), d.example_scale())
        return (bound if grad else None), bound.detach()


class ScoreFunctionELBO(ParticleELBO):
    """``score-function``: the ELBO with z drawn without a pathwise gradient (REINFORCE).

    The guide's gradient is the score-function estimator
    (1/K) Σ_k (log w_k - b_k) ∇φ log q(z_k|x) (plus the zero-mean term
    -β ∇φ log q_φ(z)|_z, as Pyro's TraceGraph_ELBO keeps it), computed per
    example. The baseline b_k is the mean log-weight of the example's other
    particles when K > 1, and of the batch's other examples when K = 1: it does
    not depend on z_k, so the estimator stays unbiased. The decoder's gradient is
    the usual ∇θ log p(x, z_k). Its variance is what reparameterisation removes.
    """

    objective_name = "score-function"
    reparameterized = False

    def _objective(self, d, beta, grad):
        scale = d.example_scale()
        log_q = d.log_q()
        log_w = d.log_likelihood() + beta * (d.log_prior() - log_q)
        bound = _scaled_sum(log_w.mean(0), scale)
        if not grad:
            return None, bound
        signal = (log_w - _leave_one_out(log_w)).detach()
        return bound + _scaled_sum((signal * log_q).mean(0), scale), bound


def _leave_one_out(log_w: torch.Tensor) -> torch.Tensor:
    """A baseline for each (k, b) that does not depend on z_kb: ``(K, B)``."""
    k, b = log_w.shape
    if k > 1:
        return (log_w.sum(0, keepdim=True) - log_w) / (k - 1)
    if b > 1:
        return (log_w.sum(1, keepdim=True) - log_w) / (b - 1)
    return torch.zeros_like(log_w)


# --------------------------------------------------------------------------- IWAE family


class IWAE(ParticleELBO):
    """``iwae``: the importance-weighted bound log (1/K) Σ_k w_k per example (Burda et al.).

    IWAE_1 is the ELBO; IWAE_K grows with K and tends to log p(x). The gradient
    is reparameterised: Σ_k w̃_k ∇ log w_k.
    """

    objective_name = "iwae"

    def _bound(self, log_w: torch.Tensor, scale: torch.Tensor | float) -> torch.Tensor:
        return _iwae(log_w, scale)

    def _objective(self, d, beta, grad):
        bound = self._bound(log_weights(d, beta), d.example_scale())
        return (bound if grad else None), bound


class RenyiELBO(IWAE):
    """``renyi``: the Rényi α bound 1/(1-α) log (1/K) Σ_k w_k^(1-α) per example (Li & Turner).

    α = 0 gives IWAE_K; α → 1 approaches the ELBO. For α ≥ 0 it is a lower bound
    of log p(x) in expectation; α < 0 can exceed log p(x).

    Arguments:
        alpha: α, any finite number other than 1 (default 0.5).
        others: as :class:`ParticleELBO`.
    """

    objective_name = "renyi"

    def __init__(self, num_particles: int = 1, *, alpha: float = 0.5, **kwargs: Any) -> None:
        alpha = _number("alpha", alpha, low=-math.inf)
        if alpha == 1:
            raise ValueError("alpha must differ from 1 (alpha → 1 is the ELBO: use 'elbo')")
        super().__init__(num_particles, **kwargs)
        self.alpha = alpha

    def _bound(self, log_w: torch.Tensor, scale: torch.Tensor | float) -> torch.Tensor:
        one_minus = 1.0 - self.alpha
        per_example = (torch.logsumexp(one_minus * log_w, 0) - math.log(log_w.shape[0])) / one_minus
        return _scaled_sum(per_example, scale)


class DReG(IWAE):
    """``iwae-dreg``: the IWAE bound with doubly reparameterised gradients (Tucker et al.).

    The decoder's gradient is IWAE's, Σ_k w̃_k ∇θ log p(x, z_k). The guide's is
    Σ_k c_k ∂log w_k/∂z_k · ∂z_k/∂φ with c_k = (1-β) w̃_k + β w̃_k² (w̃_k² at β = 1):
    unbiased for ∇φ IWAE_K, with a signal-to-noise ratio that grows with K where
    IWAE's falls like 1/√K.

    With one latent site the weights are applied by a gradient hook on z in a
    single backward pass; with several the model and guide are replayed once at
    the cut latent values, which costs one more forward pass of each.
    """

    objective_name = "iwae-dreg"

    def _objective(self, d, beta, grad):
        scale = d.example_scale()
        if not grad:
            return None, _iwae(log_weights(d, beta), scale)
        if isinstance(d, TracedDraw) and d.hook_shape() is None:
            return _dreg_by_replay(d, beta, scale)
        log_w = log_weights(d, beta, path=True)
        weights = torch.softmax(log_w.detach(), dim=0)
        d.reweight_path((1 - beta) + beta * weights)
        surrogate = _scaled_sum((weights * log_w).sum(0), scale)
        return surrogate, _iwae(log_w.detach(), scale)


def _dreg_by_replay(d: Draw, beta: float, scale: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """DReG for any number of latent sites.

    With M_k = log p(x|z̄_k) + β log p(z̄_k) and S_k = log q(z̄_k|x) at the cut
    values z̄ = stop_gradient(z), the surrogate

        Σ_k w̃_k M_k + Σ_k c_k (log w_k - M_k + β S_k)

    has the decoder's gradient Σ_k w̃_k ∂ψ M_k and the path term c_k ∂log w_k/∂z_k dz_k/dψ.
    """
    cut_model, cut_guide = d.cut_log_densities(beta)
    log_w = log_weights(d, beta)
    weights = torch.softmax(log_w.detach(), dim=0)
    coefficient = (1 - beta) * weights + beta * weights.pow(2)
    per_example = (weights * cut_model + coefficient * (log_w - cut_model + beta * cut_guide)).sum(
        0
    )
    return _scaled_sum(per_example, scale), _iwae(log_w.detach(), scale)
