r"""The estimators behind :mod:`pyro_vae.objectives`, as :class:`pyro.infer.ELBO` subclasses.

Notation, for one example x with K particles :math:`z_k \sim q(z \mid x)` (one extra
leading plate, vectorised) and a KL weight β (1 unless asked otherwise): the
log-weights and the normalised weights are

.. math::

    \log w_k = \log p(x \mid z_k) + \beta \left[\log p(z_k) - \log q(z_k \mid x)\right],
    \qquad \tilde w_k = \frac{w_k}{\sum_j w_j},

and the bounds

.. math::

    \begin{aligned}
    \mathrm{ELBO} &= \frac{1}{K} \sum_k \log w_k
        && \text{(MonteCarloELBO, STL)} \\
    &= \frac{1}{K} \sum_k \log p(x \mid z_k) - \beta\, \mathrm{KL}(q(z \mid x) \,\|\, p(z))
        && \text{(AnalyticKLELBO)} \\
    \mathrm{IWAE}_K &= \log \frac{1}{K} \sum_k w_k
        && \text{(IWAE, DReG)} \\
    \mathcal{L}_\alpha &= \frac{1}{1 - \alpha} \log \frac{1}{K} \sum_k w_k^{1 - \alpha}
        && \text{(RenyiELBO)}
    \end{aligned}

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
  autograd of the bound through :math:`z = g_\phi(\epsilon)`.
- ``ScoreFunctionELBO``: z is drawn without a pathwise gradient and the guide is
  trained by REINFORCE, :math:`\sum_k (\log w_k - b_k) \nabla \log q(z_k \mid x)`, with a
  leave-one-out baseline :math:`b_k`.
- ``STL`` (sticking the landing): drops the score term
  :math:`-\beta\, \partial_\phi \log q_\phi(z)|_z`, which has mean zero; at
  :math:`q = p(z \mid x)` the guide's gradient is then exactly zero.
- ``DReG`` (doubly reparameterised IWAE gradient): the guide's gradient
  :math:`\sum_k \tilde w_k^2\, \frac{\partial \log w_k}{\partial z_k}
  \frac{\partial z_k}{\partial \phi}`, unbiased for :math:`\nabla_\phi \mathrm{IWAE}_K`,
  whose signal-to-noise ratio does not vanish as K grows. With :math:`\beta \ne 1` the weight is
  :math:`(1 - \beta) \tilde w_k + \beta \tilde w_k^2`.

β can ramp up linearly over the first ``warmup_steps`` training steps (KL
annealing); ``free_bits`` λ replaces the KL of each latent dimension, averaged
over the batch, by :math:`\max(\lambda, \mathrm{KL})` (Kingma et al. 2016).

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
from typing import Any, ClassVar

import torch

from pyro_vae._checks import check_finite_at_least
from pyro_vae.infer._draw import Draw, KLTerm, log_weights
from pyro_vae.infer._particle_elbo import KLSchedule, ParticleELBO

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


def _scaled_sum(per_example: torch.Tensor, scale: torch.Tensor | float) -> torch.Tensor:
    """Σ_b s_b t_b for per-example values ``(B,)`` and a scale ``(B,)`` or a number."""
    if isinstance(scale, torch.Tensor):
        return (scale * per_example).sum()
    return per_example.sum() * scale


def _iwae(log_w: torch.Tensor, scale: torch.Tensor | float) -> torch.Tensor:
    """Σ_b s_b [logsumexp_k log w_kb - log K]: the IWAE bound per example, summed."""
    return _scaled_sum(torch.logsumexp(log_w, dim=0) - math.log(log_w.shape[0]), scale)


# --------------------------------------------------------------------------- ELBO family


class MonteCarloELBO(ParticleELBO):
    r"""``elbo``: Trace_ELBO's estimator:

    .. math::

        \mathbb{E}_q[\log p(x \mid z)] - \beta\, \mathbb{E}_q[\log q(z \mid x) - \log p(z)].

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
        r""":math:`\mathrm{KL}(q(z \mid x) \,\|\, p(z))` per example, summed over latent sites,
        as this objective estimates it (by Monte Carlo here; in closed form where one exists
        for :class:`AnalyticKLELBO`): ``(B,)``, times the sites' scales."""
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
    r"""``analytic-kl``: TraceMeanField_ELBO's estimator:

    .. math::

        \mathbb{E}_q[\log p(x \mid z)] - \beta\, \mathrm{KL}(q(z \mid x) \,\|\, p(z)).

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
    r"""``stl``: sticking the landing, for the ELBO or (``bound="iwae"``) the IWAE bound.

    The bound's value is unchanged; its gradient drops the score term
    :math:`-\beta \frac{\partial}{\partial \phi} \log q_\phi(z \mid x)|_z` (zero in
    expectation), leaving the path derivative through z. When :math:`q(z \mid x)` equals
    :math:`p(z \mid x)`, :math:`\log w` is constant in z and the guide's gradient is exactly
    zero for every sample. For the IWAE bound the estimator :math:`\sum_k \tilde w_k` (path
    derivative of :math:`\log w_k`) is biased (Tucker et al. 2019); DReG is its unbiased
    counterpart.

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
    r"""``score-function``: the ELBO with z drawn without a pathwise gradient (REINFORCE).

    The guide's gradient is the score-function estimator
    :math:`\tfrac{1}{K} \sum_k (\log w_k - b_k) \nabla_\phi \log q(z_k \mid x)` (plus the
    zero-mean term :math:`-\beta \nabla_\phi \log q_\phi(z)|_z`, as Pyro's TraceGraph_ELBO
    keeps it), computed per example. The baseline :math:`b_k` is the mean log-weight of the
    example's other particles when :math:`K > 1`, and of the batch's other examples when
    :math:`K = 1`: it does not depend on :math:`z_k`, so the estimator stays unbiased. The
    decoder's gradient is the usual :math:`\nabla_\theta \log p(x, z_k)`. Its variance is
    what reparameterisation removes.
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
    r"""``iwae``: the importance-weighted bound per example (Burda et al.):

    .. math:: \mathrm{IWAE}_K = \log \frac{1}{K} \sum_k w_k.

    :math:`\mathrm{IWAE}_1` is the ELBO; :math:`\mathrm{IWAE}_K` grows with K and tends to
    :math:`\log p(x)`. The gradient is reparameterised: :math:`\sum_k \tilde w_k \nabla \log w_k`.
    """

    objective_name = "iwae"

    def _bound(self, log_w: torch.Tensor, scale: torch.Tensor | float) -> torch.Tensor:
        return _iwae(log_w, scale)

    def _objective(self, d, beta, grad):
        bound = self._bound(log_weights(d, beta), d.example_scale())
        return (bound if grad else None), bound


class RenyiELBO(IWAE):
    r"""``renyi``: the Rényi α bound per example (Li & Turner):

    .. math:: \frac{1}{1 - \alpha} \log \frac{1}{K} \sum_k w_k^{1 - \alpha}.

    :math:`\alpha = 0` gives :math:`\mathrm{IWAE}_K`; :math:`\alpha \to 1` approaches the ELBO.
    For :math:`\alpha \ge 0` it is a lower bound of :math:`\log p(x)` in expectation;
    :math:`\alpha < 0` can exceed :math:`\log p(x)`.

    Arguments:
        alpha: α, any finite number other than 1 (default 0.5).
        others: as :class:`ParticleELBO`.
    """

    objective_name = "renyi"

    def __init__(self, num_particles: int = 1, *, alpha: float = 0.5, **kwargs: Any) -> None:
        alpha = check_finite_at_least("alpha", alpha, low=-math.inf)
        if alpha == 1:
            raise ValueError("alpha must differ from 1 (alpha → 1 is the ELBO: use 'elbo')")
        super().__init__(num_particles, **kwargs)
        self.alpha = alpha

    def _bound(self, log_w: torch.Tensor, scale: torch.Tensor | float) -> torch.Tensor:
        one_minus = 1.0 - self.alpha
        per_example = (torch.logsumexp(one_minus * log_w, 0) - math.log(log_w.shape[0])) / one_minus
        return _scaled_sum(per_example, scale)


class DReG(IWAE):
    r"""``iwae-dreg``: the IWAE bound with doubly reparameterised gradients (Tucker et al.).

    The decoder's gradient is IWAE's, :math:`\sum_k \tilde w_k \nabla_\theta \log p(x, z_k)`.
    The guide's is

    .. math::

        \sum_k c_k \frac{\partial \log w_k}{\partial z_k} \cdot \frac{\partial z_k}{\partial \phi}
        \quad \text{with} \quad c_k = (1 - \beta) \tilde w_k + \beta \tilde w_k^2

    (:math:`\tilde w_k^2` at :math:`\beta = 1`): unbiased for
    :math:`\nabla_\phi \mathrm{IWAE}_K`, with a signal-to-noise ratio that grows with K where
    IWAE's falls like :math:`1/\sqrt{K}`.

    With one latent site the weights are applied by a gradient hook on z in a
    single backward pass; with several the model and guide are replayed once at
    the cut latent values, which costs one more forward pass of each.
    """

    objective_name = "iwae-dreg"

    def _objective(self, d, beta, grad):
        scale = d.example_scale()
        if not grad:
            return None, _iwae(log_weights(d, beta), scale)
        if not d.path_hook_applies():
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
