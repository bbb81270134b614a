"""The fused path: a VAE's model and guide evaluated without Pyro's tracing.

``VAE.model`` and ``VAE.guide`` have a fixed structure: one latent site ``"z"``
and one observed site ``"x"``, both inside ``plate("data")``, with
z ~ prior(), x ~ likelihood(z) and z ~ encoder(x). For that structure the
log-densities every estimator needs can be computed directly from the parts,
with no trace, no site messages and no distribution broadcasting:

    log p(x|z_k)  = likelihood.log_prob(x, z_k)        (K, B)
    log p(z_k)    = prior.log_prob(z_k)                 (K, B)
    log q(z_k|x)  = q.log_prob(z_k), q = encoder(x)     (K, B)
    KL(q ‖ p)     = prior.kl_from(q)                    (B,)

The samples are drawn as Pyro draws them inside the particle plate, one call
to ``q.rsample((K,))`` of shape ``(K, B, D)``, so with the same random state
the fused and traced paths see the same z. Tests check that every estimator
gives the traced path's loss and gradients on random inputs.

The fused path applies only where it cannot change the meaning of the program:
the functions are a VAE's own ``model`` and ``guide``, or a HierarchicalVAE's
(:mod:`pyro_vae.infer._fused_hierarchy`), not overridden by a subclass,
optionally wrapped by :class:`PerExample`, called with the batch alone, with no
Pyro handler active (inside :class:`pyro.infer.SVI` or a user's ``poutine``
context the traced path runs), and the guide's distribution has batch shape
``(B,)`` and one event dimension.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyro.poutine as poutine
import torch
from pyro.poutine.runtime import _PYRO_STACK
from torch.distributions.utils import _standard_normal

from pyro_vae.infer import _fused_hierarchy
from pyro_vae.infer._draw import KLTerm, distribution_name
from pyro_vae.models._normal import HALF_LOG_2PI, diagonal_normal
from pyro_vae.models.vae import VAE, HierarchicalVAE

__all__ = ["PerExample", "FusedDraw", "match", "guide_distribution", "draw"]


class PerExample:
    """A Pyro program with its log-densities scaled by 1/B, B = ``x.shape[0]``.

    ``PerExample(vae.model)(x)`` is ``vae.model(x)`` under ``poutine.scale(1/B)``:
    losses computed on it are per example. The fused path recognises it.

    In a data-parallel step each process holds a shard of the global batch;
    setting ``batch_total`` to the global batch's size G scales by 1/G instead,
    so that the processes' losses and gradients *sum* to those per example of
    the global batch.
    """

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.batch_total: int | None = None

    def scale(self, x: torch.Tensor) -> float:
        """The factor on every log-density for the batch ``x``."""
        return 1.0 / (self.batch_total or x.shape[0])

    def __call__(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        with poutine.scale(scale=self.scale(x)):
            return self.fn(x, *args, **kwargs)


# The programs whose structure the fused path knows: a VAE's and a HierarchicalVAE's own.
_OWN = ((VAE.model, VAE.guide), (HierarchicalVAE.model, HierarchicalVAE.guide))


def match(
    model: Callable[..., Any], guide: Callable[..., Any], args: tuple, kwargs: dict
) -> tuple[VAE, float] | None:
    """``(vae, scale)`` when ``model(*args)``/``guide(*args)`` are one VAE's own programs.

    ``scale`` is the factor on every site's log-density: 1/B under
    :class:`PerExample` (1/G with its ``batch_total``), else 1. Returns ``None``
    where the fused path does not apply (see the module's docstring).
    """
    wrapper = model if isinstance(model, PerExample) and isinstance(guide, PerExample) else None
    if wrapper is not None:
        model, guide = model.fn, guide.fn
    vae = getattr(model, "__self__", None)
    if (
        _PYRO_STACK
        or kwargs
        or len(args) != 1
        or not isinstance(args[0], torch.Tensor)
        or args[0].dim() < 2
        or not isinstance(vae, VAE)
        or getattr(guide, "__self__", None) is not vae
        or (getattr(model, "__func__", None), getattr(guide, "__func__", None)) not in _OWN
    ):
        return None
    return vae, (wrapper.scale(args[0]) if wrapper is not None else 1.0)


@dataclass
class FusedDraw:
    """K particles z ~ q(z|x) for a batch, and the log-densities the estimators need.

    The :class:`~pyro_vae.infer._draw.Draw` of a VAE's own programs: every site has
    the same scale, and there is one latent site, ``"z"``.

    Attributes:
        vae: the VAE whose parts give the densities.
        x: the batch ``(B, *event_shape)``.
        q: q(z|x), batch shape ``(B,)``, event shape ``(D,)``.
        z: the particles ``(K, B, D)``, with a pathwise gradient when reparameterised.
        scale: the factor on every log-density (1/B in ``fit``).
        noise: for a diagonal-Gaussian q, the standard normal ε with z = μ + σ ε, else ``None``.
    """

    vae: VAE
    x: torch.Tensor
    q: Any
    z: torch.Tensor
    scale: float
    noise: torch.Tensor | None = None
    _cache: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    @property
    def num_particles(self) -> int:
        return self.z.shape[0]

    def log_likelihood(self) -> torch.Tensor:
        """log p(x|z_k): ``(K, B)``."""
        if "log_likelihood" not in self._cache:
            likelihood = self.vae._modules["likelihood"]
            self._cache["log_likelihood"] = likelihood.log_prob(self.x, self.z)
        return self._cache["log_likelihood"]

    def log_prior(self) -> torch.Tensor:
        """log p(z_k): ``(K, B)``."""
        if "log_prior" not in self._cache:
            self._cache["log_prior"] = self.vae._modules["prior"].log_prob(self.z)
        return self._cache["log_prior"]

    def log_q(self, *, path: bool = False) -> torch.Tensor:
        """log q(z_k|x): ``(K, B)``.

        With ``path``, the value is the same and the gradient keeps only the path
        through z, dropping the score term ∂/∂φ log q_φ(z)|_z (STL, DReG).
        """
        key = "log_q_path" if path else "log_q"
        if key not in self._cache:
            if self.noise is not None:
                self._cache[key] = self._diagonal_log_q(path)
                return self._cache[key]
            # With path, at a view of z: a flow would otherwise reuse its cached base draw,
            # a route around z that DReG's gradient hook on z cannot reweight.
            log_q = self.q.log_prob(self.z.view_as(self.z) if path else self.z)
            if path:
                score = self.q.log_prob(self.z.detach())
                log_q = log_q - score + score.detach()
            self._cache[key] = log_q
        return self._cache[key]

    def _diagonal_log_q(self, path: bool) -> torch.Tensor:
        """log q for q = N(μ, diag σ²) and z = μ + σε, written to be cheap.

        Total gradient: log N(μ + σε; μ, σ) = Σ_d [-ε_d²/2 - log σ_d] - (D/2) log 2π.
        Path only: log N(z; μ̄, σ̄) with μ̄, σ̄ cut, whose gradient flows through z alone.
        Both equal q.log_prob(z) in value and gradient, with fewer operations.
        """
        base = self.q.base_dist
        if path:
            loc, scale = base.loc.detach(), base.scale.detach()
            squares = ((self.z - loc) / scale).pow(2)
        else:
            scale, squares = base.scale, self.noise.pow(2)
        log_q = (-0.5 * squares - scale.log()).sum(-1)
        return log_q - self.noise.shape[-1] * HALF_LOG_2PI

    def kl(self) -> torch.Tensor:
        """KL(q(z|x) ‖ p(z)) in closed form: ``(B,)``; raises NotImplementedError without one."""
        return self.vae._modules["prior"].kl_from(self.q)

    def example_scale(self) -> float:
        return self.scale

    def reconstruction(self) -> torch.Tensor:
        """scale × log p(x|z), averaged over particles: ``(B,)``."""
        return _particle_mean(self.log_likelihood()) * self.scale

    def kl_terms(self, kind: str, *, groups: bool = False) -> list[KLTerm]:
        """The KL term of ``"z"``, per example ``(B,)`` (see :meth:`Draw.kl_terms`)."""
        if groups:
            raise NotImplementedError("the fused path has no per-dimension KL terms")
        fallback = None
        if kind == "analytic":
            try:
                return [KLTerm("z", self.kl() * self.scale)]
            except NotImplementedError:
                q, p = distribution_name(self.q), distribution_name(self.vae.prior())
                fallback = f"torch has no closed form for KL({q} ‖ {p})"
        kl = _particle_mean(self.log_q(path=kind == "path") - self.log_prior())
        return [KLTerm("z", kl * self.scale, fallback=fallback)]

    def path_hook_applies(self) -> bool:
        return True

    def reweight_path(self, coefficient: torch.Tensor) -> bool:
        if self.z.requires_grad:
            scaled = coefficient.unsqueeze(-1)
            self.z.register_hook(lambda g: g * scaled)
        return True

    def cut_log_densities(self, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError("the fused path reweights z's gradient by a hook")


def _particle_mean(t: torch.Tensor) -> torch.Tensor:
    """``(K, B) -> (B,)``; with one particle a view, not a reduction (a small step's time)."""
    return t[0] if t.shape[0] == 1 else t.mean(0)


def guide_distribution(vae: VAE, x: torch.Tensor) -> Any | None:
    """q(z|x) from the encoder, or ``None`` when it is not shaped as the fused path needs.

    The fused path needs batch shape ``(B,)`` and one event dimension; otherwise
    the traced path runs instead, which broadcasts as Pyro's plates do.
    """
    # _modules skips PyroModule's attribute hook, about 10 µs per access.
    q = vae._modules["encoder"](x)
    if q.batch_shape != x.shape[:1] or len(q.event_shape) != 1:
        return None
    return q


def draw(
    vae: VAE,
    scale: float,
    x: torch.Tensor,
    num_particles: int,
    *,
    reparameterized: bool = True,
    objective: str = "this objective",
    q: Any | None = None,
) -> FusedDraw | _fused_hierarchy.HierarchicalDraw | None:
    """Runs the encoder on ``x`` (unless ``q`` is given) and draws ``num_particles`` per example
    (of every layer, for a HierarchicalVAE: :func:`pyro_vae.infer._fused_hierarchy.draw`).

    Returns ``None``, with the random state as it was, when a guide's distribution is
    not shaped as the fused path needs (see :func:`guide_distribution`).

    Raises:
        ValueError: ``reparameterized`` but the guide's distribution has no ``rsample``.
    """
    q = guide_distribution(vae, x) if q is None else q
    if q is None:
        return None
    if isinstance(vae, HierarchicalVAE):
        return _fused_hierarchy.draw(
            vae, scale, x, q, num_particles, reparameterized=reparameterized, objective=objective
        )
    if not reparameterized:
        # A copy, so a flow's log_prob recomputes (with gradients) what sample() cached.
        z = q.sample((num_particles,)).clone()
        return FusedDraw(vae=vae, x=x, q=q, z=z, scale=scale)
    if not q.has_rsample:
        raise ValueError(
            f"{objective} differentiates through the sample of site 'z', but "
            f"{type(q).__name__} cannot be reparameterised; use 'score-function'"
        )
    base = diagonal_normal(q)
    if base is None:
        return FusedDraw(vae=vae, x=x, q=q, z=q.rsample((num_particles,)), scale=scale)
    # Normal.rsample's own steps, keeping ε: the same random numbers and the same z.
    loc = base.loc
    noise = _standard_normal((num_particles,) + loc.shape, dtype=loc.dtype, device=loc.device)
    return FusedDraw(vae=vae, x=x, q=q, z=loc + noise * base.scale, scale=scale, noise=noise)
