"""Vectorised particles: runs a guide and a model once for K samples of every latent.

The estimators in :mod:`pyro_vae.objectives` all start from the same thing:
the guide run inside a plate of K particles, the model replayed against it,
and for every sample site its log-density reduced to one number per particle
and example, a tensor of shape ``(K, B)``. This module does that once, fast
(no ``Trace.compute_log_prob``, no score parts).

The checks of the programs themselves are :mod:`pyro_vae.infer._programs`'s.
:func:`run` checks that the scale of a site is a number or a per-example tensor.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyro
import pyro.poutine as poutine
import torch
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import prune_subsample_sites

__all__ = ["Particles", "data_plate_dim", "run", "site_log_prob"]


class _DetachedSamples(Messenger):
    """Draws every latent site with ``.sample()``: no pathwise gradient through z.

    Entered outside the particle plate so that it runs after the plates have
    broadcast the distribution to its full batch shape.
    """

    def _pyro_sample(self, msg: dict[str, Any]) -> None:
        if not msg["is_observed"] and msg["value"] is None:
            # A copy: a flow caches the base draw behind the tensor ``sample()`` returns,
            # computed without gradients, and its log_prob would reuse it and lose ∂/∂φ.
            msg["value"] = msg["fn"].sample().clone()


def data_plate_dim(site: dict[str, Any], program: str) -> int:
    for frame in site["cond_indep_stack"]:
        if frame.name == "data":
            return frame.dim
    raise ValueError(
        f"site {site['name']!r} of the {program} is outside plate 'data': pyro_vae's "
        "objectives and evaluation need every sample site inside the plate over the batch, "
        "for per-example bounds (for global latents use pyro.infer.Trace_ELBO directly)"
    )


def site_log_prob(
    site: dict[str, Any],
    particle_dim: int,
    data_dim: int,
    value: torch.Tensor | None = None,
    fn: Any = None,
) -> torch.Tensor:
    """log-density of one site, masked, unscaled, summed down to ``(K, B)``.

    Arguments:
        site: a sample site of a trace.
        particle_dim, data_dim: the (negative) dims of the particle and data plates.
        value: evaluate at this value instead of the site's (same shape).
        fn: evaluate this distribution instead of the site's.
    """
    fn = site["fn"] if fn is None else fn
    log_p = fn.log_prob(site["value"] if value is None else value)
    return reduce_to_particles_and_data(log_p, site["mask"], particle_dim, data_dim)


def reduce_to_particles_and_data(
    log_p: torch.Tensor, mask: Any, particle_dim: int, data_dim: int
) -> torch.Tensor:
    """Applies a site's mask and sums every dim but particles and data: ``(K, B)``."""
    if isinstance(mask, torch.Tensor):
        log_p = torch.where(mask, log_p, log_p.new_zeros(()))
    elif mask is False:
        log_p = torch.zeros_like(log_p)
    if log_p.dim() < -particle_dim:
        log_p = log_p.reshape((1,) * (-particle_dim - log_p.dim()) + log_p.shape)
    if log_p.dim() > 2:
        keep = {log_p.dim() + particle_dim, log_p.dim() + data_dim}
        summed = [d for d in range(log_p.dim()) if d not in keep]
        log_p = log_p.sum(summed)
    return log_p


@dataclass
class Particles:
    """The traces of one vectorised draw and their sites, in execution order.

    Attributes:
        model_trace, guide_trace: the traces (subsample sites pruned).
        observed: the model's observed sites.
        latents: names of the guide's latent sites, in the guide's order.
        num_particles: K.
        batch_size: B, the size of plate ``"data"``.
        particle_dim, data_dim: the dims of the particle and data plates.
        model, guide, args, kwargs: the programs and their arguments, for replays.
    """

    model_trace: Any
    guide_trace: Any
    observed: list[dict[str, Any]]
    latents: list[str]
    num_particles: int
    batch_size: int
    particle_dim: int
    data_dim: int
    model: Callable[..., Any]
    guide: Callable[..., Any]
    args: tuple
    kwargs: dict[str, Any]
    _replays: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.num_particles, self.batch_size)

    def log_prob(self, site: dict[str, Any], **kwargs: Any) -> torch.Tensor:
        """:func:`site_log_prob` of ``site``, broadcast to ``(K, B)``."""
        return site_log_prob(site, self.particle_dim, self.data_dim, **kwargs).expand(self.shape)

    def model_site(self, name: str) -> dict[str, Any] | None:
        """The model's site called ``name``, or ``None`` for a guide-only (auxiliary) latent."""
        return self.model_trace.nodes.get(name)

    def log_likelihood(self) -> torch.Tensor:
        """Σ over observed sites of log p(x|z), unscaled: ``(K, B)``."""
        total = None
        for site in self.observed:
            term = self.log_prob(site)
            total = term if total is None else total + term
        if total is None:
            return torch.zeros(self.shape)
        return total

    def replay_detached(self, program: str) -> Any:
        """The ``"model"`` or ``"guide"`` replayed at the latent values with their gradients cut.

        Gradients of log-densities in this trace are partial derivatives at fixed
        z: the score terms ∂/∂ψ log q_ψ(z) that STL and DReG remove. Cached.
        """
        if program not in self._replays:
            detached = poutine.Trace()
            for name in self.latents:
                site = self.guide_trace.nodes[name]
                detached.add_node(name, **{**site, "value": site["value"].detach()})
            fn = self.model if program == "model" else self.guide
            with pyro.plate("particles", self.num_particles, dim=self.particle_dim):
                trace = poutine.trace(poutine.replay(fn, trace=detached)).get_trace(
                    *self.args, **self.kwargs
                )
            self._replays[program] = prune_subsample_sites(trace)
        return self._replays[program]

    def scale(self, site: dict[str, Any]) -> torch.Tensor | float:
        """A site's scale, a number or a tensor broadcastable to ``(K, B)``."""
        scale = site["scale"]
        if isinstance(scale, torch.Tensor) and scale.dim() > 0:
            scale = reduce_scale(scale, self.particle_dim, self.data_dim)
        return scale

    def common_scale(self) -> torch.Tensor | float:
        """The one scale every site shares, for bounds that combine sites per example.

        Raises:
            ValueError: when sites carry different scales (an importance weight
                of an example needs all of its log-densities on the same footing).
        """
        sites = self.observed + [self.guide_trace.nodes[n] for n in self.latents]
        sites += [self.model_trace.nodes[n] for n in self.latents if n in self.model_trace]
        scales = [self.scale(s) for s in sites]
        first = scales[0]
        for site, scale in zip(sites[1:], scales[1:], strict=True):
            if not same_scale(scale, first):
                raise ValueError(
                    f"site {site['name']!r} is scaled differently from site "
                    f"{sites[0]['name']!r}: importance-weighted bounds need one scale per "
                    "example at every site (use the objective's beta= for KL weighting)"
                )
        return first


def same_scale(a: Any, b: Any) -> bool:
    """Whether two site scales (numbers or tensors) are equal everywhere."""
    if not isinstance(a, torch.Tensor) and not isinstance(b, torch.Tensor):
        return a == b
    a, b = torch.broadcast_tensors(torch.as_tensor(a), torch.as_tensor(b))
    return bool(torch.equal(a, b))


def reduce_scale(scale: torch.Tensor, particle_dim: int, data_dim: int) -> torch.Tensor:
    """A per-element scale tensor reduced to ``(K or 1, B or 1)`` (it must not vary elsewhere)."""
    if scale.dim() < -particle_dim:
        scale = scale.reshape((1,) * (-particle_dim - scale.dim()) + scale.shape)
    keep = {scale.dim() + particle_dim, scale.dim() + data_dim}
    other = [d for d in range(scale.dim()) if d not in keep]
    if other:
        first = scale.amax(other)
        if not torch.equal(first, scale.amin(other)):
            raise ValueError("a site's scale may vary over particles and examples only")
        scale = first
    return scale


def run(
    model: Callable[..., Any],
    guide: Callable[..., Any],
    args: tuple,
    kwargs: dict[str, Any],
    num_particles: int,
    max_plate_nesting: int,
    *,
    reparameterized: bool = True,
) -> Particles:
    """Runs ``guide`` inside a plate of ``num_particles`` and replays ``model`` against it.

    Arguments:
        model, guide: Pyro programs following pyro_vae's site and plate names.
        args, kwargs: their arguments (the batch first).
        num_particles: K.
        max_plate_nesting: plates the programs nest; the particle plate goes left of them.
        reparameterized: draw z pathwise (``rsample``); ``False`` draws it with no
            gradient through the sample, for score-function estimators.
    """
    particle_dim = -max_plate_nesting - 1
    sampling = contextlib.nullcontext() if reparameterized else _DetachedSamples()
    with sampling, pyro.plate("particles", num_particles, dim=particle_dim):
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
    with pyro.plate("particles", num_particles, dim=particle_dim):
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(
            *args, **kwargs
        )
    guide_trace = prune_subsample_sites(guide_trace)
    model_trace = prune_subsample_sites(model_trace)

    latents, data_dim, batch_size = [], None, None
    for name, site in guide_trace.nodes.items():
        if site["type"] == "sample" and not site["is_observed"]:
            data_dim = data_plate_dim(site, "guide")
            latents.append(name)
    observed = []
    for name, site in model_trace.nodes.items():
        if site["type"] != "sample":
            continue
        data_dim = data_plate_dim(site, "model")
        if site["is_observed"]:
            observed.append(site)
        elif name not in guide_trace.nodes:
            raise ValueError(f"latent site {name!r} of the model is not sampled by the guide")
    for site in list(model_trace.nodes.values()) + list(guide_trace.nodes.values()):
        if site["type"] == "sample":
            (frame,) = [f for f in site["cond_indep_stack"] if f.name == "data"]
            if frame.dim != data_dim or (batch_size is not None and frame.size != batch_size):
                raise ValueError(
                    f"plate 'data' differs between sites (at {site['name']!r}): every site "
                    "must use the same plate over the batch"
                )
            batch_size = frame.size
    if data_dim is None:
        raise ValueError("the model has no sample sites")
    if data_dim <= particle_dim:
        raise ValueError(
            f"plate 'data' is at dim {data_dim} but max_plate_nesting={max_plate_nesting} "
            "leaves no room for it; raise max_plate_nesting"
        )
    return Particles(
        model_trace=model_trace,
        guide_trace=guide_trace,
        observed=observed,
        latents=latents,
        num_particles=num_particles,
        batch_size=batch_size,
        particle_dim=particle_dim,
        data_dim=data_dim,
        model=model,
        guide=guide,
        args=args,
        kwargs=kwargs,
    )
