"""The fused path of a :class:`~pyro_vae.vae.HierarchicalVAE`: L latent layers without tracing.

``HierarchicalVAE.model`` and ``.guide`` have a fixed structure, all inside
``plate("data")``: the guide draws z_1 ~ q(z_1|x), then z_l ~ q(z_l|z_{l-1}) for
l = 2 … L; the model scores z_L ~ p(z_L), z_{l-1} ~ p(z_{l-1}|z_l) and x ~ p(x|z_1).
With K particles every log-density is computed from the parts directly:

    log p(x|z_1)   = likelihood.log_prob(x, z_1)                       (K, B)
    log p(z)       = prior.log_prob(z_L) + Σ_l log p(z_{l-1}|z_l)      (K, B)
    log q(z|x)     = log q(z_1|x) + Σ_l log q(z_l|z_{l-1})             (K, B)
    KL(q ‖ p) of z_L in closed form: prior.kl_from(q(z_L|z_{L-1}))    (K, B)

z_1 is drawn as Pyro draws it inside the particle plate (``q.rsample((K,))``, the
encoder run once per batch), and each upper layer from its guide at the layer below,
whose batch shape is already ``(K, B)``, so with the same random state this path and
the traced one see the same z. The tests check that every estimator gives the traced
path's loss and gradients.

What differs from a one-layer VAE (:mod:`pyro_vae.infer._fused`):

- The path derivative of log q (STL, DReG) drops ∂/∂φ log q_φ(z̄) at the cut latents
  z̄ = stop_gradient(z). For an upper layer that means its guide run again at the cut
  layer below, as the traced path replays the guide.
- A layer's prior p(z_{l-1}|z_l) depends on z_l, which the guide draws after z_{l-1}:
  its KL has no closed form here, and ``analytic-kl`` takes the top layer's alone.
- DReG's weights cannot be put on the gradient by one hook on z: the gradient reaching
  z_1 also comes through z_2. :func:`pyro_vae.infer.estimators._dreg_by_replay` uses the
  cut log-densities instead (:meth:`HierarchicalDraw.cut_log_densities`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from pyro_vae.infer._draw import KLTerm, distribution_name
from pyro_vae.models.vae import HierarchicalVAE

__all__ = ["HierarchicalDraw", "draw"]


@dataclass
class HierarchicalDraw:
    """K particles of every layer for a batch, and the log-densities the estimators need.

    The :class:`~pyro_vae.infer._draw.Draw` of a HierarchicalVAE's own programs: every
    site has the same scale, and the latent sites are ``"z1"`` … ``"zL"``.

    Attributes:
        vae: the model whose parts give the densities.
        x: the batch ``(B, *event_shape)``.
        qs: q(z_1|x) with batch shape ``(B,)``, then q(z_l|z_{l-1}) with ``(K, B)``;
            each with event shape ``(D_l,)``.
        zs: the particles of each layer, ``(K, B, D_l)``, bottom-up.
        scale: the factor on every log-density (1/B in ``fit``).
    """

    vae: HierarchicalVAE
    x: torch.Tensor
    qs: list[Any]
    zs: list[torch.Tensor]
    scale: float
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def num_particles(self) -> int:
        return self.zs[0].shape[0]

    @property
    def names(self) -> list[str]:
        """The latent sites, in the guide's order: ``["z1", …, "zL"]``."""
        return [f"z{layer}" for layer in range(1, len(self.zs) + 1)]

    def log_likelihood(self) -> torch.Tensor:
        """log p(x|z_1): ``(K, B)``."""
        if "log_likelihood" not in self._cache:
            likelihood = self.vae._modules["likelihood"]
            self._cache["log_likelihood"] = likelihood.log_prob(self.x, self.zs[0])
        return self._cache["log_likelihood"]

    def layer_log_priors(self) -> list[torch.Tensor]:
        """log p(z_1|z_2), …, log p(z_{L-1}|z_L), log p(z_L) at the particles: ``(K, B)``
        each, bottom-up."""
        if "layer_log_priors" not in self._cache:
            self._cache["layer_log_priors"] = self._log_priors_at(self.zs)
        return self._cache["layer_log_priors"]

    def _log_priors_at(self, zs: list[torch.Tensor]) -> list[torch.Tensor]:
        conditionals = self.vae._modules["conditionals"]
        terms = [conditionals[l](zs[l + 1]).log_prob(zs[l]) for l in range(len(zs) - 1)]
        return [*terms, self.vae._modules["prior"].log_prob(zs[-1])]

    def log_prior(self) -> torch.Tensor:
        """log p(z_L) + Σ_l log p(z_{l-1}|z_l): ``(K, B)``."""
        if "log_prior" not in self._cache:
            self._cache["log_prior"] = _total(self.layer_log_priors())
        return self._cache["log_prior"]

    def layer_log_qs(self, *, path: bool = False) -> list[torch.Tensor]:
        """log q(z_1|x), log q(z_l|z_{l-1}) …: ``(K, B)`` each, bottom-up; with ``path``
        the gradient drops ∂/∂φ log q_φ(z̄) at the cut latents (the value is the same)."""
        key = "layer_log_qs_path" if path else "layer_log_qs"
        if key not in self._cache:
            if path:
                cut = self.cut_log_qs()
                # At views of z: a flow would otherwise reuse its cached base draw.
                own = [q.log_prob(z.view_as(z)) for q, z in zip(self.qs, self.zs, strict=True)]
                terms = [t - s + s.detach() for t, s in zip(own, cut, strict=True)]
            else:
                terms = [q.log_prob(z) for q, z in zip(self.qs, self.zs, strict=True)]
            self._cache[key] = terms
        return self._cache[key]

    def cut_log_qs(self) -> list[torch.Tensor]:
        """Each layer's log q at the cut latents z̄, with the guide's parameters live:
        q(z̄_1|x), and each upper guide run again at the cut layer below: ``(K, B)`` each."""
        cut = [z.detach() for z in self.zs]
        upper = self.vae._modules["upper_guides"]
        terms = [self.qs[0].log_prob(cut[0])]
        terms += [upper[l - 1](cut[l - 1]).log_prob(cut[l]) for l in range(1, len(cut))]
        return terms

    def log_q(self, *, path: bool = False) -> torch.Tensor:
        """Σ over layers of log q: ``(K, B)`` (see :meth:`layer_log_qs`)."""
        key = "log_q_path" if path else "log_q"
        if key not in self._cache:
            self._cache[key] = _total(self.layer_log_qs(path=path))
        return self._cache[key]

    def example_scale(self) -> float:
        return self.scale

    def reconstruction(self) -> torch.Tensor:
        """scale × log p(x|z_1), averaged over particles: ``(B,)``."""
        return self.log_likelihood().mean(0) * self.scale

    def kl_terms(self, kind: str, *, groups: bool = False) -> list[KLTerm]:
        """Each layer's KL term per example ``(B,)``, bottom-up (see :meth:`Draw.kl_terms`).

        ``"analytic"`` takes the top layer's in closed form where torch has one; every
        other layer's prior depends on the layer above, which the guide draws later,
        so those terms are Monte Carlo estimates and say why.
        """
        if groups:
            raise NotImplementedError("the fused path has no per-dimension KL terms")
        names, top = self.names, len(self.zs) - 1
        log_qs, log_ps = self.layer_log_qs(path=kind == "path"), self.layer_log_priors()
        terms = []
        for layer, (log_q, log_p) in enumerate(zip(log_qs, log_ps, strict=True)):
            fallback = None
            if kind == "analytic" and layer < top:
                later = ", ".join(sorted(names[layer + 1 :]))
                fallback = f"its prior depends on {later}, which the guide samples after it"
            elif kind == "analytic":
                try:
                    kl = self.vae._modules["prior"].kl_from(self.qs[top])
                    if top > 0:  # q(z_L|z_{L-1}) has batch shape (K, B); q(z_1|x) has (B,)
                        kl = kl.mean(0)
                    terms.append(KLTerm(names[top], kl * self.scale))
                    continue
                except NotImplementedError:
                    q, p = distribution_name(self.qs[top]), distribution_name(self.vae.prior())
                    fallback = f"torch has no closed form for KL({q} ‖ {p})"
            kl = (log_q - log_p).mean(0) * self.scale
            terms.append(KLTerm(names[layer], kl, fallback=fallback))
        return terms

    def path_hook_applies(self) -> bool:
        return False  # the gradient reaching z_1 also comes through z_2

    def reweight_path(self, coefficient: torch.Tensor) -> bool:
        return False

    def cut_log_densities(self, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
        """log p(x|z̄_1) + β log p(z̄) and log q(z̄|x) at the cut latents: ``(K, B)`` each
        (one more pass of the decoder, the conditionals and the upper guides)."""
        cut = [z.detach() for z in self.zs]
        likelihood = self.vae._modules["likelihood"]
        cut_model = likelihood.log_prob(self.x, cut[0]) + beta * _total(self._log_priors_at(cut))
        cut_guide = _total(self.cut_log_qs())
        return cut_model, cut_guide


def _total(terms: list[torch.Tensor]) -> torch.Tensor:
    """The sum of per-layer terms, bottom-up (the traced path's order)."""
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total


def draw(
    vae: HierarchicalVAE,
    scale: float,
    x: torch.Tensor,
    q1: Any,
    num_particles: int,
    *,
    reparameterized: bool = True,
    objective: str = "this objective",
) -> HierarchicalDraw | None:
    """Draws ``num_particles`` of each layer per example, z_1 from ``q1`` = q(z_1|x).

    Returns ``None`` where an upper guide's distribution is not shaped as the fused
    path needs (batch shape ``(K, B)``, one event dimension); the random state is then
    as it was, so the traced path that runs instead draws what it would have drawn.

    Raises:
        ValueError: ``reparameterized`` but a layer's distribution has no ``rsample``.
    """
    start = _rng_state(x.device)
    qs, zs = [q1], [_sample(q1, (num_particles,), "z1", reparameterized, objective)]
    for layer, guide in enumerate(vae._modules["upper_guides"], start=2):
        q = guide(zs[-1])
        if q.batch_shape != zs[-1].shape[:-1] or len(q.event_shape) != 1:
            _set_rng_state(x.device, start)
            return None
        qs.append(q)
        zs.append(_sample(q, (), f"z{layer}", reparameterized, objective))
    return HierarchicalDraw(vae=vae, x=x, qs=qs, zs=zs, scale=scale)


def _sample(
    q: Any, shape: tuple[int, ...], name: str, reparameterized: bool, objective: str
) -> torch.Tensor:
    if not reparameterized:
        # A copy, so a flow's log_prob recomputes (with gradients) what sample() cached.
        return q.sample(shape).clone()
    if not q.has_rsample:
        raise ValueError(
            f"{objective} differentiates through the sample of site {name!r}, but "
            f"{type(q).__name__} cannot be reparameterised; use 'score-function'"
        )
    return q.rsample(shape)


def _rng_state(device: torch.device) -> torch.Tensor:
    """The state of the generator that draws on ``device``."""
    if device.type == "cuda":
        return torch.cuda.get_rng_state(device)
    return torch.get_rng_state()


def _set_rng_state(device: torch.device, state: torch.Tensor) -> None:
    if device.type == "cuda":
        torch.cuda.set_rng_state(state, device)
    else:
        torch.set_rng_state(state)
