"""The traced path's :class:`~pyro_vae.infer._draw.Draw`: log-densities from any Pyro program.

:func:`pyro_vae.infer._particles.run` traces the guide inside a plate of K particles
and replays the model against it; :class:`TracedDraw` reads from those traces what
the estimators need. Unlike the fused path it handles any number of latent and
observed sites, masks, scales set by ``poutine.scale`` (per site for the ELBO, one per
example for the importance-weighted bounds), latents the model conditions on each
other, and per-dimension KL terms (free bits).
"""

from __future__ import annotations

from typing import Any

import torch
from torch.distributions import Independent, kl_divergence

from pyro_vae.infer._draw import KLTerm, distribution_name
from pyro_vae.infer._particles import Particles, reduce_to_particles_and_data, same_scale

__all__ = ["TracedDraw"]


def _factorised(fn: Any) -> Any:
    """The scalar base of ``Independent(base, 1)``, or ``None``: where per-dimension terms exist."""
    if (
        isinstance(fn, Independent)
        and fn.reinterpreted_batch_ndims == 1
        and fn.base_dist.event_shape == ()
    ):
        return fn.base_dist
    return None


def _unsqueeze(scale: Any) -> Any:
    return scale.unsqueeze(-1) if isinstance(scale, torch.Tensor) else scale


class TracedDraw:
    """The log-densities of one traced, vectorised draw (see :class:`~pyro_vae.infer._draw.Draw`).

    Arguments:
        p: the traces of the draw.
    """

    def __init__(self, p: Particles) -> None:
        self.p = p
        self.num_particles = p.num_particles

    # ------------------------------------------------------------------ log-densities

    def log_likelihood(self) -> torch.Tensor:
        return self.p.log_likelihood()

    def log_prior(self) -> torch.Tensor:
        p, total = self.p, torch.zeros(self.p.shape)
        for name in p.latents:
            site = p.model_site(name)
            if site is not None:
                total = total + p.log_prob(site)
        return total

    def log_q(self, *, path: bool = False) -> torch.Tensor:
        p, total = self.p, None
        for name in p.latents:
            term = self._path_log_q(name) if path else p.log_prob(p.guide_trace.nodes[name])
            total = term if total is None else total + term
        return total

    def _path_log_q(self, name: str) -> torch.Tensor:
        """log q(z|x) whose gradient keeps the path through z and drops ∂/∂φ log q_φ(z)|_z.

        The dropped score term is the gradient of log q_φ at z with its gradient
        cut; with one latent site the site's own distribution gives it, with
        several the guide is replayed at the cut values so that the conditioning
        on earlier latents is cut too.
        """
        p = self.p
        site = p.guide_trace.nodes[name]
        if len(p.latents) == 1:
            score = p.log_prob(site, value=site["value"].detach())
        else:
            score = p.log_prob(p.replay_detached("guide").nodes[name])
        # At a view of z: a flow would otherwise reuse its cached base draw, a route
        # around z that DReG's gradient hook on z cannot reweight.
        value = site["value"].view_as(site["value"])
        return p.log_prob(site, value=value) - score + score.detach()

    def example_scale(self) -> torch.Tensor | float:
        """The common scale, per example ``(B,)``; it must not vary over particles."""
        p = self.p
        scale = p.common_scale()
        if not isinstance(scale, torch.Tensor):
            return scale
        scale = scale.expand(p.shape)
        if not torch.equal(scale, scale[:1].expand_as(scale)):
            raise ValueError("a site's scale must not vary over particles")
        return scale[0]

    # ------------------------------------------------------------------ the ELBO's terms

    def reconstruction(self) -> torch.Tensor:
        p, total = self.p, None
        for site in p.observed:
            term = (p.scale(site) * p.log_prob(site)).mean(0)
            total = term if total is None else total + term
        return total if total is not None else torch.zeros(p.batch_size)

    def kl_terms(self, kind: str, *, groups: bool = False) -> list[KLTerm]:
        terms = []
        for name in self.p.latents:
            scale = self._latent_scale(name)
            kl, fallback = self._latent_kl(name, kind, groups)  # (K, B, G)
            kl = kl * _unsqueeze(scale)
            if groups:
                terms.append(KLTerm(name, kl.sum(1), self._total_scale(scale), fallback))
            else:
                terms.append(KLTerm(name, kl.sum(-1).mean(0), fallback=fallback))
        return terms

    def latent_kl(self, name: str, kind: str) -> tuple[torch.Tensor, str | None]:
        """One latent's KL term per particle and example ``(K, B)``, unscaled, and why the
        closed form was not used (for ``kind == "analytic"``; ``None`` when it was)."""
        kl, fallback = self._latent_kl(name, kind, False)
        return kl.squeeze(-1), fallback

    def _latent_scale(self, name: str) -> torch.Tensor | float:
        p = self.p
        scale = p.scale(p.guide_trace.nodes[name])
        model_site = p.model_site(name)
        if model_site is not None and not same_scale(scale, p.scale(model_site)):
            raise ValueError(
                f"latent site {name!r} is scaled differently in the model and the guide"
            )
        return scale

    def _total_scale(self, scale: Any) -> torch.Tensor | float:
        """Σ_b s_b over the batch (mean over particles): the weight of one nat per example."""
        if isinstance(scale, torch.Tensor):
            return scale.expand(self.p.shape).mean(0).sum()
        return scale * self.p.batch_size

    def _reduce_groups(self, t: torch.Tensor, mask: Any) -> torch.Tensor:
        """``(*batch, G)`` per-dimension terms → ``(K, B, G)``, masked, other plates summed."""
        p = self.p
        if isinstance(mask, torch.Tensor):
            t = torch.where(mask.unsqueeze(-1), t, t.new_zeros(()))
        elif mask is False:
            t = torch.zeros_like(t)
        reduced = [
            reduce_to_particles_and_data(g, True, p.particle_dim, p.data_dim)
            for g in t.movedim(-1, 0)
        ]
        return torch.stack(reduced, dim=-1).expand(p.shape + (t.shape[-1],))

    def _latent_kl(self, name: str, kind: str, groups: bool) -> tuple[torch.Tensor, str | None]:
        """One latent's KL term per particle and example ``(K, B, G)`` (G = 1 without
        groups), and why the closed form was not used, for ``kind == "analytic"``."""
        p = self.p
        model_site = p.model_site(name)
        if kind == "analytic" and model_site is not None:
            reason = self._closed_form_blocker(name)
            if reason is None:
                q_site = p.guide_trace.nodes[name]
                q_fn, p_fn = q_site["fn"], model_site["fn"]
                try:
                    q_base, p_base = _factorised(q_fn), _factorised(p_fn)
                    if groups and q_base is not None and p_base is not None:
                        return self._reduce_groups(
                            kl_divergence(q_base, p_base), q_site["mask"]
                        ), None
                    kl = reduce_to_particles_and_data(
                        kl_divergence(q_fn, p_fn), q_site["mask"], p.particle_dim, p.data_dim
                    )
                    return kl.expand(p.shape).unsqueeze(-1), None
                except NotImplementedError:
                    q_name, p_name = distribution_name(q_fn), distribution_name(p_fn)
                    reason = f"torch has no closed form for KL({q_name} ‖ {p_name})"
            return self._monte_carlo_kl(name, "mc", groups), reason
        return self._monte_carlo_kl(name, kind, groups), None

    def _monte_carlo_kl(self, name: str, kind: str, groups: bool) -> torch.Tensor:
        """log q(z|x) - log p(z) at the particles: ``(K, B, G)``."""
        p = self.p
        q_site, model_site = p.guide_trace.nodes[name], p.model_site(name)
        path = kind == "path"
        if groups:
            q_base = _factorised(q_site["fn"])
            p_base = _factorised(model_site["fn"]) if model_site is not None else None
            if q_base is not None and (model_site is None or p_base is not None):
                z = q_site["value"]
                kl = self._log_q_groups(name, q_base, z, path)
                if model_site is not None:
                    kl = kl - self._reduce_groups(p_base.log_prob(z), model_site["mask"])
                return kl
        kl = self._path_log_q(name) if path else p.log_prob(q_site)
        if model_site is not None:
            kl = kl - p.log_prob(model_site)
        return kl.unsqueeze(-1)

    def _log_q_groups(self, name: str, base: Any, z: torch.Tensor, path: bool) -> torch.Tensor:
        mask = self.p.guide_trace.nodes[name]["mask"]
        if not path:
            return self._reduce_groups(base.log_prob(z), mask)
        if len(self.p.latents) == 1:
            detached_base = base
        else:
            detached_base = _factorised(self.p.replay_detached("guide").nodes[name]["fn"])
        score = detached_base.log_prob(z.detach())
        return self._reduce_groups(base.log_prob(z) - score + score.detach(), mask)

    def _closed_form_blocker(self, name: str) -> str | None:
        """Why the closed-form KL of ``name`` would be wrong here, or ``None``.

        It is valid where the site's prior depends only on latents the guide samples
        before it (any one-latent VAE, top-down guides); a bottom-up guide of a
        hierarchical model gets it for the top layer only.
        """
        p = self.p
        model_order = [
            n
            for n, s in p.model_trace.nodes.items()
            if s["type"] == "sample" and not s["is_observed"]
        ]
        before_in_model = set(model_order[: model_order.index(name)])
        before_in_guide = set(p.latents[: p.latents.index(name)])
        if not before_in_model <= before_in_guide:
            later = ", ".join(sorted(before_in_model - before_in_guide))
            return f"its prior depends on {later}, which the guide samples after it"
        return None

    # ------------------------------------------------------------------ DReG

    def hook_shape(self) -> list[int] | None:
        """The shape that aligns ``(K, B)`` weights with the one latent site's value, if usable."""
        p = self.p
        if len(p.latents) != 1:
            return None
        site = p.guide_trace.nodes[p.latents[0]]
        batch_dims = site["value"].dim() - len(site["fn"].event_shape)
        if batch_dims < -p.particle_dim:
            return None
        shape = [1] * batch_dims
        shape[p.particle_dim], shape[p.data_dim] = p.num_particles, p.batch_size
        return shape + [1] * len(site["fn"].event_shape)

    def path_hook_applies(self) -> bool:
        return self.hook_shape() is not None

    def reweight_path(self, coefficient: torch.Tensor) -> bool:
        shape = self.hook_shape()
        if shape is None:
            return False
        z = self.p.guide_trace.nodes[self.p.latents[0]]["value"]
        if z.requires_grad:
            scaled = coefficient.reshape(shape)
            z.register_hook(lambda g: g * scaled)
        return True

    def cut_log_densities(self, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
        """The model and guide replayed at the cut latents (one more pass of each)."""
        p = self.p
        model = p.replay_detached("model")
        guide = p.replay_detached("guide")
        sites = model.nodes.values()
        cut_model = sum(p.log_prob(s) for s in sites if s["type"] == "sample" and s["is_observed"])
        cut_model = cut_model + beta * sum(
            p.log_prob(model.nodes[n]) for n in p.latents if n in model.nodes
        )
        cut_guide = sum(p.log_prob(guide.nodes[n]) for n in p.latents)
        return cut_model, cut_guide
