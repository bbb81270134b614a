"""The estimators of pyro_vae.estimators, verified on models whose answers are known.

Issue: "Verified, not assumed". On the linear-Gaussian model

    z ~ N(0, I_d),    x | z ~ N(W z + b, σ² I_D),

log p(x) = log N(x; b, W Wᵀ + σ² I) and p(z|x) = N(M⁻¹ Wᵀ (x - b), σ² M⁻¹) with
M = Wᵀ W + σ² I, so for a Gaussian guide ELBO(x) = log p(x) - KL(q(z|x) ‖ p(z|x))
in closed form, differentiable in the decoder's W, b and the guide's parameters.
Each test below checks an estimator against such a truth:

- values: each bound equals its definition computed by hand from the same draw;
- order: ELBO ≤ IWAE_K ≤ IWAE_2K ≤ log p(x), and IWAE_K → log p(x);
- gradients: every estimator's average gradient is the gradient of its own bound,
  within five standard errors per coordinate (the tolerance comes from the
  sample variance of the gradients, plus that of the truth where the truth is
  itself a Monte Carlo estimate);
- STL's zero variance at the exact posterior, the score function's large variance,
  DReG's two code paths, analytic-kl's fallback, agreement with Pyro's own ELBOs
  and disagreement with Pyro's RenyiELBO under mini-batch scaling, free bits,
  β and KL warm-up.

Notation: log w_k = log p(x|z_k) + β [log p(z_k) - log q(z_k|x)] for K particles
z_k ~ q(z|x); every loss is the negative bound summed over the batch.

Gradient samples come from one estimator call on the batch repeated ``copies``
times: each row of the repeated batch draws its own particles, so the call's
gradient divided by ``copies`` is the mean of ``copies`` independent draws of the
gradient for the original batch; ``calls`` such calls give the mean and its
standard error.
"""

from __future__ import annotations

import itertools
import math
import warnings

import pyro
import pyro.distributions as dist
import pyro.infer
import pytest
import torch
from torch import nn

from pyro_vae.infer import _particles, estimators, objectives
from pyro_vae.infer._fused import PerExample as _per_example
from pyro_vae.infer._traced import TracedDraw
from pyro_vae.models.guides import Guide
from pyro_vae.models.linear_gaussian import LinearGaussian

F64 = torch.float64
D, LATENT, SIGMA, N = 3, 2, 0.5, 3  # data dim, latent dim, noise σ, examples
LOG_2PI = math.log(2 * math.pi)
N_SE = 5.0  # tolerance in standard errors, per coordinate


# --------------------------------------------------------------------------- helpers


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The tensors here are small: intra-op threads only add overhead (and on a machine
    shared with other jobs, spinning threads slow elementwise ops a hundredfold)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class AffineNormal(Guide):
    """q(z|x) = N(A x + c, diag exp(2ρ)): holds the exact posterior when it is diagonal."""

    def __init__(self, data_dim: int, latent_dim: int) -> None:
        super().__init__(nn.Linear(data_dim, latent_dim), latent_dim)
        self.log_scale = nn.Parameter(torch.zeros(latent_dim))

    def forward(self, x: torch.Tensor) -> dist.TorchDistribution:
        loc = self.net(x)
        return dist.Normal(loc, self.log_scale.exp().expand(loc.shape)).to_event(1)


def linear_gaussian_vae(*, offset: float = 1.0, orthogonal: bool = False, seed: int = 0):
    """A linear-Gaussian VAE, its data and its closed forms: ``(model, vae, x)``.

    The guide starts at the posterior's mean map A = M⁻¹Wᵀ, c = -M⁻¹Wᵀb and the
    posterior's marginal standard deviations s, then moves by ``offset`` times
    N(0, 1) noise: 0.02 on A, s on c and 0.3 on ρ = log s (about 3 nats from the
    posterior over the batch at ``offset=1``). With ``orthogonal`` W has orthogonal
    columns, so M and the posterior covariance σ²M⁻¹ are diagonal and ``offset=0``
    gives q(z|x) = p(z|x) exactly.
    """
    model = LinearGaussian.random(D, LATENT, SIGMA, seed=seed, dtype=F64)
    if orthogonal:
        q, _ = torch.linalg.qr(model.weight)
        model = LinearGaussian(q * torch.tensor([2.0, 0.7], dtype=F64), model.bias, SIGMA)
    w, b = model.weight, model.bias
    m = w.T @ w + SIGMA**2 * torch.eye(LATENT, dtype=F64)
    gain = torch.linalg.solve(m, w.T)
    std = (SIGMA**2 * torch.linalg.inv(m).diagonal()).sqrt()
    guide = AffineNormal(D, LATENT).double()
    g = torch.Generator().manual_seed(seed + 100)

    def shift(*shape):
        return offset * torch.randn(*shape, generator=g, dtype=F64)

    with torch.no_grad():
        guide.net.weight.copy_(gain + 0.02 * shift(LATENT, D))
        guide.net.bias.copy_(-gain @ b + std * shift(LATENT))
        guide.log_scale.copy_(std.log() + 0.3 * shift(LATENT))
    return model, model.vae(guide), model.sample(N, seed=seed + 200)


def parameters(vae) -> list[torch.Tensor]:
    """Decoder W, b then guide A, c, ρ: the coordinates every gradient is compared on."""
    return [vae.likelihood.net.weight, vae.likelihood.net.bias, *vae.encoder.parameters()]


NUM_DECODER = D * LATENT + D  # the first coordinates of a flat gradient are the decoder's


def flat_grad(loss: torch.Tensor, params: list[torch.Tensor]) -> torch.Tensor:
    """∂loss/∂params, flattened into one vector (zeros for parameters it does not use)."""
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    pairs = zip(params, grads, strict=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for p, g in pairs])


def noise(seed: int, num_particles: int, batch: int, latent_dim: int = LATENT) -> torch.Tensor:
    """ε ~ N(0, I) of shape (K, B, d), drawn exactly as the estimators draw it after the seed."""
    pyro.set_rng_seed(seed)
    return torch.randn(num_particles, batch, latent_dim, dtype=F64)


def hand_terms(vae, x: torch.Tensor, eps: torch.Tensor, *, path: bool = False, cut: bool = False):
    """``(log p(x|z), log p(z), log q(z|x))``, each (K, B), from z = μ(x) + s ⊙ ε, written out.

    log p(x|z) = Σ_i [-½ ((x_i - (Wz + b)_i)/σ)² - log σ - ½ log 2π]
    log p(z)   = Σ_j [-½ z_j² - ½ log 2π]
    log q(z|x) = Σ_j [-½ ((z_j - μ_j)/s_j)² - log s_j - ½ log 2π]

    ``path``: log q with μ, s cut from the graph, keeping only the path through z
    (STL's and DReG's log q). ``cut``: z itself cut from the graph (score function).
    """
    q = vae.encoder(x)
    loc, scale = q.base_dist.loc, q.base_dist.scale
    z = loc + scale * eps
    if cut:
        z = z.detach()
    weight, bias = vae.likelihood.net.weight, vae.likelihood.net.bias
    mean = z @ weight.T + bias
    log_lik = (-0.5 * ((x - mean) / SIGMA) ** 2 - math.log(SIGMA) - 0.5 * LOG_2PI).sum(-1)
    log_prior = (-0.5 * z**2 - 0.5 * LOG_2PI).sum(-1)
    if path:
        loc, scale = loc.detach(), scale.detach()
    log_q = (-0.5 * ((z - loc) / scale) ** 2 - scale.log() - 0.5 * LOG_2PI).sum(-1)
    return log_lik, log_prior, log_q


def hand_log_weights(vae, x: torch.Tensor, eps: torch.Tensor, beta: float = 1.0, **kwargs):
    """``(log w, log p(x|z))`` with log w = log p(x|z) + β (log p(z) - log q(z|x)): (K, B)."""
    log_lik, log_prior, log_q = hand_terms(vae, x, eps, **kwargs)
    return log_lik + beta * (log_prior - log_q), log_lik


def kl_to_prior(vae, x: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, diag s²) ‖ N(0, I)) = ½ Σ_j (μ_j² + s_j² - 1 - 2 log s_j), per dimension: (B, d)."""
    q = vae.encoder(x)
    loc, scale = q.base_dist.loc, q.base_dist.scale
    return 0.5 * (loc**2 + scale**2 - 1 - 2 * scale.log())


def iwae_bound(log_w: torch.Tensor) -> torch.Tensor:
    """IWAE_K per example: logsumexp_k log w_k - log K."""
    return torch.logsumexp(log_w, 0) - math.log(log_w.shape[0])


def renyi_bound(log_w: torch.Tensor, alpha: float) -> torch.Tensor:
    """L_α per example: 1/(1-α) [logsumexp_k (1-α) log w_k - log K]."""
    return (torch.logsumexp((1 - alpha) * log_w, 0) - math.log(log_w.shape[0])) / (1 - alpha)


def hand_bound(name: str, options: dict, vae, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """The bound ``name`` by its definition, per example: (B,)."""
    beta = options.get("beta", 1.0)
    log_w, log_lik = hand_log_weights(vae, x, eps, beta)
    if name == "analytic-kl":
        return log_lik.mean(0) - beta * kl_to_prior(vae, x).sum(-1)
    if name in ("iwae", "iwae-dreg") or options.get("bound") == "iwae":
        return iwae_bound(log_w)
    if name == "renyi":
        return renyi_bound(log_w, options["alpha"])
    return log_w.mean(0)  # elbo, score-function, stl


def exact_elbo(vae, x: torch.Tensor) -> torch.Tensor:
    """Σ_n [log p(x_n) - KL(q(z|x_n) ‖ p(z|x_n))], with W, b the decoder's own parameters."""
    lin = vae.likelihood.net
    model = LinearGaussian(lin.weight, lin.bias, SIGMA)
    return (model.log_marginal(x) - model.kl_to_posterior(vae.encoder(x), x)).sum()


def exact_beta_elbo(vae, x: torch.Tensor, beta: float) -> torch.Tensor:
    """Σ_n E_q[log p(x_n|z)] - β KL(q ‖ p(z)), both in closed form.

    E_q[log p(x|z)] = Σ_i [-½ ((x_i - (Wμ + b)_i)² + Σ_j W_ij² s_j²)/σ² - log σ - ½ log 2π].
    """
    q = vae.encoder(x)
    loc, scale = q.base_dist.loc, q.base_dist.scale
    weight, bias = vae.likelihood.net.weight, vae.likelihood.net.bias
    residual = x - loc @ weight.T - bias
    spread = scale**2 @ (weight**2).T
    expected_log_lik = (
        -0.5 * (residual**2 + spread) / SIGMA**2 - math.log(SIGMA) - 0.5 * LOG_2PI
    ).sum(-1)
    return (expected_log_lik - beta * kl_to_prior(vae, x).sum(-1)).sum()


def estimator_grads(objective, model, guide, x, params, *, calls: int, copies: int):
    """``calls`` draws of the estimator's gradient of the loss, each a mean of ``copies``."""
    batch = x.repeat(copies, 1)
    return torch.stack(
        [
            flat_grad(objective.differentiable_loss(model, guide, batch), params) / copies
            for _ in range(calls)
        ]
    )


def hand_grads(bound, vae, x, num_particles, *, beta=1.0, calls: int, copies: int):
    """Draws of -∇ Σ_n bound(log w(x_n)) by autograd of the hand-written bound (reparameterised)."""
    batch = x.repeat(copies, 1)
    params = parameters(vae)
    samples = []
    for _ in range(calls):
        eps = torch.randn(num_particles, len(batch), LATENT, dtype=F64)
        log_w, _ = hand_log_weights(vae, batch, eps, beta)
        samples.append(flat_grad(-bound(log_w).sum(), params) / copies)
    return torch.stack(samples)


def mean_and_se(samples: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return samples.mean(0), samples.std(0) / math.sqrt(samples.shape[0])


def z_scores(samples: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """|mean - truth| / SE per coordinate; ``truth`` is a vector or samples of its own."""
    mean, se = mean_and_se(samples)
    if truth.dim() == 2:
        truth, truth_se = mean_and_se(truth)
        se = (se**2 + truth_se**2).sqrt()
    return (mean - truth).abs() / (se + 1e-12)


def assert_unbiased(samples: torch.Tensor, truth: torch.Tensor) -> None:
    z = z_scores(samples, truth)
    assert z.max() <= N_SE, f"coordinates off by more than {N_SE} SE: z = {z.tolist()}"


def model_log_marginal(vae, x: torch.Tensor) -> torch.Tensor:
    """Σ_n log p(x_n) with the decoder's own W, b (differentiable)."""
    lin = vae.likelihood.net
    return LinearGaussian(lin.weight, lin.bias, SIGMA).log_marginal(x).sum()


def bound_expectation(objective, vae, x, *, calls: int, copies: int) -> tuple[float, float]:
    """Σ_n E[bound(x_n)] and its standard error, from ``calls`` losses on the repeated batch."""
    batch = x.repeat(copies, 1)
    values = torch.tensor(
        [-objective.loss(vae.model, vae.guide, batch) / copies for _ in range(calls)]
    )
    return values.mean().item(), values.std().item() / math.sqrt(calls)


def hand_gradient(name: str, options: dict, vae, x: torch.Tensor, eps: torch.Tensor):
    """The estimator ``name``'s gradient of the loss on the draw ε, by autograd of its definition.

    elbo, analytic-kl, iwae, renyi: -∇ of the bound through z = μ + s ε.
    stl: -∇ (1/K) Σ_k log w_k with log q's score ∂/∂φ log q_φ(z)|_z removed (``path``).
    iwae-dreg: decoder -Σ_k w̃_k ∇θ log w_k; guide -Σ_k c_k ∇φ log w_k(path),
    c_k = (1-β) w̃_k + β w̃_k².
    score-function: z cut; -∇ [(1/K) Σ_k log w_k + (1/K) Σ_k (log w_k - b_k) log q(z_k|x)]
    with b_k the mean of the other particles' log w (of the other examples' when K = 1).
    """
    params = parameters(vae)
    beta = options.get("beta", 1.0)
    k = eps.shape[0]
    if name == "score-function":
        log_w, _ = hand_log_weights(vae, x, eps, beta, cut=True)
        log_q = hand_terms(vae, x, eps, cut=True)[2]
        if k > 1:
            baseline = (log_w.sum(0, keepdim=True) - log_w) / (k - 1)
        else:
            baseline = (log_w.sum(1, keepdim=True) - log_w) / (log_w.shape[1] - 1)
        signal = (log_w - baseline).detach()
        return flat_grad(-(log_w + signal * log_q).mean(0).sum(), params)
    if name == "iwae-dreg":
        log_w, _ = hand_log_weights(vae, x, eps, beta)
        path_log_w, _ = hand_log_weights(vae, x, eps, beta, path=True)
        weights = torch.softmax(log_w.detach(), 0)
        coefficient = (1 - beta) * weights + beta * weights**2
        decoder = flat_grad(-(weights * log_w).sum(), params)[:NUM_DECODER]
        guide = flat_grad(-(coefficient * path_log_w).sum(), params)[NUM_DECODER:]
        return torch.cat([decoder, guide])
    if name == "stl":
        log_w, _ = hand_log_weights(vae, x, eps, beta, path=True)
        bound = iwae_bound(log_w) if options.get("bound") == "iwae" else log_w.mean(0)
        return flat_grad(-bound.sum(), params)
    return flat_grad(-hand_bound(name, options, vae, x, eps).sum(), params)


def one_draw(model, guide, x, num_particles: int, seed: int) -> _particles.Particles:
    pyro.set_rng_seed(seed)
    return _particles.run(model, guide, (x,), {}, num_particles, 1)


def pyro_grads(elbo, model, guide, x, params) -> tuple[float, torch.Tensor]:
    """Pyro's loss and the gradient its ``loss_and_grads`` leaves in ``.grad``."""
    for p in params:
        p.grad = None
    loss = elbo.loss_and_grads(model, guide, x)
    return loss, torch.cat([p.grad.reshape(-1) for p in params])


def reconstruction(vae, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Σ_n (1/K) Σ_k log p(x_n|z_k), through z = μ + s ε."""
    return hand_terms(vae, x, eps)[0].mean(0).sum()


def seeded_loss_and_grad(objective, model, guide, x, params, seed):
    pyro.set_rng_seed(seed)
    loss = objective.differentiable_loss(model, guide, x)
    return loss.item(), flat_grad(loss, params)


# ------------------------------------------------------------------ helpers: a two-layer model

D1, D2, S1 = 2, 1, 0.8  # the two-layer model's latent sizes and the scale of z1 | z2


class TwoLayer(nn.Module):
    """z2 ~ N(0, I), z1 | z2 ~ N(A z2, s² I), x | z1 ~ N(W z1 + b, σ² I), all in plate "data".

    The guide is bottom-up, q(z1|x) = N(C x + c, diag e^{2ρ1}) then
    q(z2|z1) = N(E z1 + e, diag e^{2ρ2}): the prior of z1 depends on z2, which the
    guide samples after z1. The guide starts near the exact conditionals: C, c the
    posterior mean map of z1 under its marginal prior N(0, AAᵀ + s²I), E the mean
    map of p(z2|z1), moved by ``offset`` times N(0, 1) noise. With ``exact`` it is
    the exact posterior (z2 is independent of x given z1, so p(z1, z2|x) = p(z1|x) p(z2|z1)).
    """

    def __init__(self, seed: int = 0, offset: float = 0.3, exact: bool = False) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)

        def randn(*shape):
            return torch.randn(*shape, generator=g, dtype=F64)

        self.a, self.w = nn.Parameter(randn(D1, D2)), nn.Parameter(randn(D, D1))
        self.b = nn.Parameter(randn(D))
        if exact:
            # A along the first axis and W with orthogonal columns make p(z1|x) diagonal,
            # so that with offset 0 the guide is the exact posterior p(z1|x) p(z2|z1).
            offset = 0.0
            with torch.no_grad():
                self.a.copy_(torch.tensor([[1.2], [0.0]], dtype=F64))
                self.w.copy_(torch.linalg.qr(self.w)[0] * torch.tensor([1.5, 0.8], dtype=F64))
        self.enc1, self.enc2 = nn.Linear(D, D1).double(), nn.Linear(D1, D2).double()
        self.log_s1 = nn.Parameter(torch.zeros(D1, dtype=F64))
        self.log_s2 = nn.Parameter(torch.zeros(D2, dtype=F64))
        with torch.no_grad():
            a, w = self.a, self.w
            prior1 = a @ a.T + S1**2 * torch.eye(D1, dtype=F64)
            gain1 = (
                prior1
                @ w.T
                @ torch.linalg.inv(w @ prior1 @ w.T + SIGMA**2 * torch.eye(D, dtype=F64))
            )
            cov1 = prior1 - gain1 @ w @ prior1
            m2 = a.T @ a + S1**2 * torch.eye(D2, dtype=F64)
            self.enc1.weight.copy_(gain1 + 0.05 * offset * randn(D1, D))
            self.enc1.bias.copy_(-gain1 @ self.b + offset * randn(D1) * cov1.diagonal().sqrt())
            self.log_s1.copy_(0.5 * cov1.diagonal().log() + offset * randn(D1))
            self.enc2.weight.copy_(torch.linalg.solve(m2, a.T) + offset * randn(D2, D1))
            self.enc2.bias.copy_(offset * randn(D2))
            self.log_s2.copy_(0.5 * (S1**2 / m2.diagonal()).log() + offset * randn(D2))

    def parameters_list(self) -> list[torch.Tensor]:
        """Model A, W, b then guide C, c, ρ1, E, e, ρ2."""
        guide = [self.enc1.weight, self.enc1.bias, self.log_s1]
        guide += [self.enc2.weight, self.enc2.bias, self.log_s2]
        return [self.a, self.w, self.b] + guide

    def sample(self, num: int, seed: int = 0) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            z2 = torch.randn(num, D2, generator=g, dtype=F64)
            z1 = z2 @ self.a.T + S1 * torch.randn(num, D1, generator=g, dtype=F64)
            return z1 @ self.w.T + self.b + SIGMA * torch.randn(num, D, generator=g, dtype=F64)

    def model(self, x: torch.Tensor) -> None:
        pyro.module("two_layer", self)
        with pyro.plate("data", x.shape[0]):
            z2 = pyro.sample("z2", dist.Normal(x.new_zeros(D2), 1.0).to_event(1))
            z1 = pyro.sample("z1", dist.Normal(z2 @ self.a.T, S1).to_event(1))
            pyro.sample("x", dist.Normal(z1 @ self.w.T + self.b, SIGMA).to_event(1), obs=x)

    def guide(self, x: torch.Tensor) -> None:
        pyro.module("two_layer", self)
        with pyro.plate("data", x.shape[0]):
            z1 = pyro.sample("z1", dist.Normal(self.enc1(x), self.log_s1.exp()).to_event(1))
            pyro.sample("z2", dist.Normal(self.enc2(z1), self.log_s2.exp()).to_event(1))


NUM_TWO_LAYER_DECODER = D1 * D2 + D * D1 + D


def two_layer_setup():
    net = TwoLayer()
    return net, net.sample(N, seed=1), net.parameters_list()


def two_layer_grads(name, net, x, params, k, *, calls=100, copies=100, **options):
    objective = objectives.make(name, k, **options)
    return estimator_grads(objective, net.model, net.guide, x, params, calls=calls, copies=copies)


# --------------------------------------------------------------------------- 1. values

VALUE_CASES = [
    ("elbo", {}),
    ("elbo", {"beta": 0.3}),
    ("analytic-kl", {}),
    ("analytic-kl", {"beta": 0.3}),
    ("score-function", {}),
    ("stl", {}),
    ("stl", {"bound": "iwae"}),
    ("iwae", {}),
    ("iwae", {"beta": 0.3}),
    ("renyi", {"alpha": 0.5}),
    ("renyi", {"alpha": -1.0, "beta": 0.3}),
    ("iwae-dreg", {}),
    ("iwae-dreg", {"beta": 0.3}),
]


@pytest.mark.parametrize("per_example", [False, True], ids=["summed", "per-example"])
@pytest.mark.parametrize("name, options", VALUE_CASES)
def test_each_bound_equals_its_definition_on_the_same_draw(name, options, per_example):
    """-loss = Σ_n s · bound(x_n), the bound written out by hand from the same ε.

    ELBO = (1/K) Σ_k log w_k; IWAE = logsumexp_k log w_k - log K;
    L_α = 1/(1-α) (logsumexp_k (1-α) log w_k - log K);
    analytic-kl = (1/K) Σ_k log p(x|z_k) - β Σ_j ½ (μ_j² + s_j² - 1 - 2 log s_j);
    log w_k = log p(x|z_k) + β (log p(z_k) - log q(z_k|x)). The scale s is 1, or 1/B
    with the model and guide wrapped as ``fit`` wraps them.
    """
    _, vae, x = linear_gaussian_vae()
    k, seed = 7, 11
    objective = objectives.make(name, k, **options)
    model, guide = vae.model, vae.guide
    scale = 1.0
    if per_example:
        model, guide, scale = _per_example(model), _per_example(guide), 1.0 / N
    pyro.set_rng_seed(seed)
    loss = objective.loss(model, guide, x)
    pyro.set_rng_seed(seed)
    differentiable = objective.differentiable_loss(model, guide, x)
    with torch.no_grad():
        expected = -scale * hand_bound(name, options, vae, x, noise(seed, k, N)).sum().item()
    assert loss == pytest.approx(expected, rel=1e-12, abs=1e-12)
    assert differentiable.item() == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_the_bounds_of_one_draw_are_ordered_as_power_means():
    """On any one draw, exp of each bound is a power mean (1/K Σ w_k^p)^(1/p) of the weights:
    p = 0 the ELBO estimate, p = 1 - α the Rényi bound, p = 1 IWAE; they increase with p."""
    _, vae, x = linear_gaussian_vae(offset=0.8)
    values = {}
    for label, name, options in [
        ("elbo", "elbo", {}),
        ("renyi 0.5", "renyi", {"alpha": 0.5}),
        ("iwae", "iwae", {}),
        ("renyi -1", "renyi", {"alpha": -1.0}),
    ]:
        pyro.set_rng_seed(5)
        values[label] = -objectives.make(name, 6, **options).loss(vae.model, vae.guide, x)
    ordered = list(values.values())
    assert all(a < b for a, b in itertools.pairwise(ordered)), values


# --------------------------------------------------------------------------- 2. order


def test_closed_forms_of_the_elbo_agree():
    """log p(x) - KL(q ‖ p(z|x)) = E_q log p(x|z) - KL(q ‖ p(z)): the two truths used below."""
    _, vae, x = linear_gaussian_vae()
    torch.testing.assert_close(exact_elbo(vae, x), exact_beta_elbo(vae, x, 1.0))


def test_bounds_are_ordered_and_iwae_tends_to_log_p_x():
    """ELBO < E IWAE_K < E IWAE_2K < log p(x), each gap significant, and IWAE_K → log p(x).

    The ELBO is exact (closed form) and the elbo estimator's mean matches it;
    the IWAE expectations are estimated with standard errors from independent calls.
    """
    model, vae, x = linear_gaussian_vae()
    log_px = model.log_marginal(x).sum().item()
    with torch.no_grad():
        elbo = exact_elbo(vae, x).item()

    def expectation(name, k, copies, calls=20):
        objective = objectives.make(name, k)
        return bound_expectation(objective, vae, x, calls=calls, copies=copies)

    mc_elbo, mc_elbo_se = expectation("elbo", 1, 2000)
    iwae_k, se_k = expectation("iwae", 3, 2000)
    iwae_2k, se_2k = expectation("iwae", 6, 1000)
    iwae_big, se_big = expectation("iwae", 4096, 10, calls=10)
    assert abs(mc_elbo - elbo) <= N_SE * mc_elbo_se
    assert iwae_k - elbo > N_SE * se_k
    assert iwae_2k - iwae_k > N_SE * math.hypot(se_k, se_2k)
    assert log_px - iwae_2k > N_SE * se_2k
    assert log_px - iwae_big > -N_SE * se_big  # still a lower bound
    # The gap log p(x) - E IWAE_K shrinks like Var(w/p(x)) / 2K.
    assert log_px - iwae_big < (log_px - iwae_k) / 20
    assert abs(log_px - iwae_big) < N_SE * se_big + 0.01
    print(
        f"log p(x) - bound: ELBO {log_px - elbo:.4f}, "
        f"IWAE_3 {log_px - iwae_k:.4f} ± {se_k:.4f}, IWAE_6 {log_px - iwae_2k:.4f} ± {se_2k:.4f}, "
        f"IWAE_4096 {log_px - iwae_big:.4f} ± {se_big:.4f}"
    )


# --------------------------------------------------------------------------- 3. gradients

GRADIENT_CASES = [
    # (name, options, K, truth): truth "elbo" is closed form, the others Monte Carlo.
    ("elbo", {}, 2, "elbo"),
    ("elbo", {"beta": 0.5}, 2, "elbo"),
    ("analytic-kl", {}, 2, "elbo"),
    ("analytic-kl", {"beta": 0.5}, 2, "elbo"),
    ("score-function", {}, 4, "elbo"),
    ("score-function", {}, 1, "elbo"),
    ("stl", {}, 2, "elbo"),
    ("iwae", {}, 5, "iwae"),
    ("iwae", {"beta": 0.5}, 5, "iwae"),
    ("renyi", {"alpha": 0.5}, 5, "renyi"),
    ("iwae-dreg", {}, 5, "iwae"),
    ("iwae-dreg", {"beta": 0.5}, 5, "iwae"),
]


def gradient_truth(truth: str, options: dict, vae, x, k: int) -> torch.Tensor:
    """-∇ of the bound: a vector (closed form) or (calls, P) samples (Monte Carlo)."""
    beta = options.get("beta", 1.0)
    if truth == "elbo":
        return flat_grad(-exact_beta_elbo(vae, x, beta), parameters(vae))
    if truth == "iwae":
        return hand_grads(iwae_bound, vae, x, k, beta=beta, calls=100, copies=200)
    alpha = options["alpha"]
    return hand_grads(
        lambda lw: renyi_bound(lw, alpha), vae, x, k, beta=beta, calls=100, copies=200
    )


@pytest.mark.parametrize(
    "name, options, k, truth",
    GRADIENT_CASES,
    ids=[f"{c[0]}-{c[1]}-k{c[2]}" for c in GRADIENT_CASES],
)
def test_each_estimator_is_unbiased_for_the_gradient_of_its_bound(name, options, k, truth):
    """E[estimator] = -∇(bound) for decoder W, b and guide A, c, ρ, within 5 SE per coordinate.

    Truths: the ELBO family against autograd of the closed form
    E_q log p(x|z) - β KL(q ‖ p(z)) (= log p(x) - KL(q ‖ p(z|x)) at β = 1); IWAE_K,
    DReG and Rényi against autograd of the hand-written bound averaged over
    independent draws (unbiased for ∇ E[bound]), whose own standard error is added.
    """
    _, vae, x = linear_gaussian_vae()
    objective = objectives.make(name, k, **options)
    calls, copies = (200, 200) if name == "score-function" else (100, 100)
    samples = estimator_grads(
        objective, vae.model, vae.guide, x, parameters(vae), calls=calls, copies=copies
    )
    assert_unbiased(samples, gradient_truth(truth, options, vae, x, k))


def test_the_gradient_tolerance_resolves_the_bias_of_a_wrong_bound():
    """The tests above can fail: at their sample sizes IWAE_5's gradient is many SE away
    from the ELBO's, and STL applied to IWAE (biased, Tucker et al. 2019) is caught."""
    _, vae, x = linear_gaussian_vae()
    params = parameters(vae)
    iwae = estimator_grads(
        objectives.make("iwae", 5), vae.model, vae.guide, x, params, calls=100, copies=100
    )
    elbo_truth = flat_grad(-exact_elbo(vae, x), params)
    assert z_scores(iwae, elbo_truth).max() > 4 * N_SE
    stl_iwae = estimator_grads(
        objectives.make("stl", 5, bound="iwae"),
        vae.model,
        vae.guide,
        x,
        params,
        calls=100,
        copies=100,
    )
    z = z_scores(stl_iwae, gradient_truth("iwae", {}, vae, x, 5))
    assert z[:NUM_DECODER].max() <= N_SE  # its decoder gradient is IWAE's
    assert z[NUM_DECODER:].max() > N_SE  # its guide gradient is not


@pytest.mark.parametrize("name, options", VALUE_CASES + [("score-function", {"beta": 0.3})])
@pytest.mark.parametrize("k", [1, 4])
def test_each_gradient_is_its_definition_on_the_same_draw(name, options, k):
    """Per draw, not only on average: the estimator's gradient equals autograd of its
    surrogate written out by hand from the same ε (see :func:`hand_gradient`)."""
    _, vae, x = linear_gaussian_vae()
    seed = 21
    objective = objectives.make(name, k, **options)
    pyro.set_rng_seed(seed)
    got = flat_grad(objective.differentiable_loss(vae.model, vae.guide, x), parameters(vae))
    expected = hand_gradient(name, options, vae, x, noise(seed, k, N))
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


# --------------------------------------------------------------------------- 4, 5. variance


def test_stl_sticks_the_landing_at_the_exact_posterior():
    """At q(z|x) = p(z|x), log w_k = log p(x|z_k) + log p(z_k) - log p(z_k|x) = log p(x) for
    every z_k: each draw of the bound is exact, and STL's guide gradient, the path
    derivative of a constant, is zero on every draw. Its decoder gradient,
    ∇θ log p_θ(x, z) at z ~ p(z|x), averages to ∇θ log p(x) (Fisher's identity).
    The plain reparameterised ELBO gradient keeps the score term -∇φ log q_φ(z): zero
    mean (the guide is optimal) but nonzero variance.
    """
    model, vae, x = linear_gaussian_vae(offset=0.0, orthogonal=True)
    posterior, q = model.posterior(x), vae.encoder(x)
    torch.testing.assert_close(q.base_dist.loc, posterior.mean, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(
        torch.diag_embed(q.base_dist.scale**2), posterior.covariance_matrix, rtol=1e-12, atol=1e-12
    )
    log_px = model.log_marginal(x).sum().item()
    stl, elbo = objectives.make("stl", 4), objectives.make("elbo", 4)
    for _ in range(5):
        assert stl.loss(vae.model, vae.guide, x) == pytest.approx(-log_px, rel=1e-12)
        assert elbo.loss(vae.model, vae.guide, x) == pytest.approx(-log_px, rel=1e-12)

    params = parameters(vae)
    truth = flat_grad(-exact_elbo(vae, x), params)
    log_px_grad = flat_grad(-model_log_marginal(vae, x), params)
    torch.testing.assert_close(truth[:NUM_DECODER], log_px_grad[:NUM_DECODER])
    assert truth[NUM_DECODER:].abs().max() < 1e-8  # the guide is at the optimum
    stl_grads = estimator_grads(stl, vae.model, vae.guide, x, params, calls=300, copies=1)
    elbo_grads = estimator_grads(elbo, vae.model, vae.guide, x, params, calls=300, copies=1)
    assert stl_grads[:, NUM_DECODER:].abs().max() < 1e-10
    assert_unbiased(stl_grads, truth)
    assert_unbiased(elbo_grads, truth)
    assert elbo_grads[:, NUM_DECODER:].std(0).min() > 0.5  # measured: 1.2 to 6.4


def test_score_function_guide_gradients_vary_far_more_than_reparameterised_ones():
    """Var[REINFORCE] / Var[reparameterised] per guide coordinate, same K = 4, same number of
    draws, with the guide about 4.5 nats per example from the posterior (a VAE early in
    training): the score function carries the whole spread of log w into each gradient,
    the reparameterised gradient only its local slope. (At the exact posterior log w is
    constant and both reduce to the score term -∇φ log q_φ(z): the ratio tends to 1.)
    Measured over seeds: 1.9 to 110 per coordinate (about 80 on the location offsets c),
    geometric mean 12 to 17.
    """
    _, vae, x = linear_gaussian_vae(offset=2.0)
    params = parameters(vae)
    spread = {}
    for name in ("score-function", "elbo"):
        grads = estimator_grads(
            objectives.make(name, 4), vae.model, vae.guide, x, params, calls=400, copies=1
        )
        spread[name] = grads[:, NUM_DECODER:].var(0)
    ratio = spread["score-function"] / spread["elbo"]
    print(
        f"score-function / elbo guide-gradient variance per coordinate: "
        f"{[round(r, 1) for r in ratio.tolist()]}"
    )
    geometric_mean = ratio.log().mean().exp()
    print(f"geometric mean {geometric_mean:.1f}")
    assert ratio.min() > 1.5
    assert geometric_mean > 5
    assert ratio.max() > 30


# --------------------------------------------------------------------------- 6. DReG


@pytest.mark.parametrize("beta", [1.0, 0.4])
def test_dreg_hook_and_replay_paths_agree_on_one_latent_site(beta):
    """One latent site: DReG weights z's gradient by a hook. ``_dreg_by_replay``, the path for
    several sites, must give the same surrogate gradient and bound on the same draw,
    and both equal the hand-written DReG gradient; the decoder's part is IWAE's."""
    _, vae, x = linear_gaussian_vae()
    params, k, seed = parameters(vae), 5, 8
    objective = estimators.DReG(k, beta=beta)
    hook_draw = one_draw(vae.model, vae.guide, x, k, seed)
    assert TracedDraw(hook_draw).hook_shape() is not None
    hook_surrogate, hook_bound = objective._objective(TracedDraw(hook_draw), beta, True)
    hook = flat_grad(-hook_surrogate, params)
    replay_surrogate, replay_bound = estimators._dreg_by_replay(
        TracedDraw(one_draw(vae.model, vae.guide, x, k, seed)), beta, 1.0
    )
    replay = flat_grad(-replay_surrogate, params)
    torch.testing.assert_close(hook, replay, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(hook_bound, replay_bound, rtol=1e-12, atol=1e-12)
    expected = hand_gradient("iwae-dreg", {"beta": beta}, vae, x, noise(seed, k, N))
    torch.testing.assert_close(hook, expected, rtol=1e-10, atol=1e-10)
    iwae = hand_gradient("iwae", {"beta": beta}, vae, x, noise(seed, k, N))
    torch.testing.assert_close(hook[:NUM_DECODER], iwae[:NUM_DECODER], rtol=1e-10, atol=1e-10)
    assert (hook[NUM_DECODER:] - iwae[NUM_DECODER:]).abs().max() > 1e-3  # guides differ


def test_dreg_on_two_latent_sites_replays_the_model_and_is_unbiased_for_iwae():
    """Two latent sites: DReG replays the model and guide at the cut latents. On each draw
    its model gradient is IWAE's, Σ_k w̃_k ∇θ log p(x, z_k); on average its guide
    gradient Σ_k w̃_k² ∂log w_k/∂z_k dz_k/dφ equals IWAE's Σ_k w̃_k ∇φ log w_k (Tucker et al.)."""
    net, x, params = two_layer_setup()
    k, seed = 5, 4
    assert TracedDraw(one_draw(net.model, net.guide, x, k, seed)).hook_shape() is None
    per_draw = {}
    for name in ("iwae-dreg", "iwae"):
        pyro.set_rng_seed(seed)
        loss = objectives.make(name, k).differentiable_loss(net.model, net.guide, x)
        per_draw[name] = (loss.item(), flat_grad(loss, params))
    assert per_draw["iwae-dreg"][0] == pytest.approx(per_draw["iwae"][0], rel=1e-12)
    dreg, iwae = per_draw["iwae-dreg"][1], per_draw["iwae"][1]
    cut = NUM_TWO_LAYER_DECODER
    torch.testing.assert_close(dreg[:cut], iwae[:cut], rtol=1e-10, atol=1e-10)
    assert (dreg[cut:] - iwae[cut:]).abs().max() > 1e-3

    dreg_mean = two_layer_grads("iwae-dreg", net, x, params, k)
    iwae_mean = two_layer_grads("iwae", net, x, params, k)
    assert_unbiased(dreg_mean[:, cut:], iwae_mean[:, cut:])
    # DReG's guide gradient is the less noisy one (its point).
    assert dreg_mean[:, cut:].var(0).sum() < iwae_mean[:, cut:].var(0).sum()


def test_stl_and_dreg_stick_the_landing_with_two_latent_sites():
    """At the exact posterior log w = log p(x) for every (z1, z2): each draw's bound is exact,
    and the path derivative ∂log w/∂z dz/dφ is zero, including the path through z1 where
    it conditions q(z2|z1), which the replay at cut latents keeps. STL's and DReG's guide
    gradients are zero on every draw; elbo's and iwae's are not."""
    net = TwoLayer(exact=True)
    x, params = net.sample(N, seed=1), net.parameters_list()
    a, w = net.a.detach(), net.w.detach()
    prior1 = a @ a.T + S1**2 * torch.eye(D1, dtype=F64)
    log_px = (
        dist.MultivariateNormal(
            net.b.detach(), w @ prior1 @ w.T + SIGMA**2 * torch.eye(D, dtype=F64)
        )
        .log_prob(x)
        .sum()
        .item()
    )
    cut = NUM_TWO_LAYER_DECODER
    for name, options in [("stl", {}), ("iwae-dreg", {}), ("elbo", {}), ("iwae", {})]:
        objective = objectives.make(name, 3, **options)
        assert objective.loss(net.model, net.guide, x) == pytest.approx(-log_px, rel=1e-12)
        grads = estimator_grads(objective, net.model, net.guide, x, params, calls=20, copies=1)
        if name in ("stl", "iwae-dreg"):
            assert grads[:, cut:].abs().max() < 1e-10, name
        else:
            assert grads[:, cut:].abs().max() > 0.1, name


def test_stl_on_two_latent_sites_is_unbiased_for_the_elbo():
    """STL (bound elbo) drops -∇φ log q_φ(z1, z2)|_z, cutting z1 also where it conditions
    q(z2|z1) (a replay of the guide): its mean gradient equals the ELBO estimator's."""
    net, x, params = two_layer_setup()
    stl = two_layer_grads("stl", net, x, params, 2)
    elbo = two_layer_grads("elbo", net, x, params, 2)
    assert_unbiased(stl, elbo)


# --------------------------------------------------------------------------- 7. analytic-kl


def test_analytic_kl_falls_back_to_monte_carlo_for_a_prior_sampled_later_and_stays_unbiased():
    """Bottom-up guide: p(z1|z2) depends on z2, which q samples after z1, so
    E_q[log q(z1|x) - log p(z1|z2)] has no closed form in the guide's order; analytic-kl
    warns once and estimates that term by Monte Carlo (z2's KL, to a fixed prior, stays
    closed form). Its value and gradient are then unbiased for the same ELBO as elbo's."""
    net, x, params = two_layer_setup()
    objective = objectives.make("analytic-kl", 2)
    with pytest.warns(UserWarning, match=r"site 'z1' is estimated by Monte Carlo") as record:
        objective.loss(net.model, net.guide, x)
        objective.differentiable_loss(net.model, net.guide, x)
        objective.loss(net.model, net.guide, x)
    messages = [str(w.message) for w in record if "Monte Carlo" in str(w.message)]
    assert len(messages) == 1 and "its prior depends on z2" in messages[0], messages

    values = {}
    for name in ("analytic-kl", "elbo"):
        obj = objectives.make(name, 2)
        batch = x.repeat(200, 1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            values[name] = torch.tensor(
                [-obj.loss(net.model, net.guide, batch) / 200 for _ in range(50)]
            )
    assert_unbiased(values["analytic-kl"][:, None], values["elbo"][:, None])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        analytic = two_layer_grads("analytic-kl", net, x, params, 2)
    elbo = two_layer_grads("elbo", net, x, params, 2)
    assert_unbiased(analytic, elbo)


# --------------------------------------------------------------------------- 8, 9. Pyro


def test_pyro_renyi_elbo_is_iwae_unscaled_but_not_under_mini_batch_scaling():
    """Pyro's RenyiELBO(alpha=0) is IWAE when no site is scaled, but it takes the logsumexp
    over particles of the *scaled* log-weights, Σ_b logsumexp_k (s log w_kb) - log K, which
    is not s Σ_b IWAE(x_b). Under ``poutine.scale(1/B)``, as ``fit`` wraps every model
    (``pyro_vae.infer._fused.PerExample``), it silently optimises another objective: the
    failure the issue warns about (pyro-ppl issues #2220, #3104).

    Ours is right: the scaled loss and gradient are exactly s times the unscaled ones.
    Pyro's differs: a recorded fact about pyro-ppl 1.9.2. If Pyro fixes this, relax
    the assertions marked "recorded", not the ones on ours.
    """
    _, vae, x = linear_gaussian_vae()
    params, k, seed = parameters(vae), 5, 13
    ours = objectives.make("iwae", k)
    theirs = pyro.infer.RenyiELBO(
        alpha=0, num_particles=k, vectorize_particles=True, max_plate_nesting=1
    )

    def both(model, guide):
        pyro.set_rng_seed(seed)
        loss = ours.differentiable_loss(model, guide, x)
        mine = (loss.item(), flat_grad(loss, params))
        pyro.set_rng_seed(seed)
        return mine, pyro_grads(theirs, model, guide, x, params)

    (loss, grad), (pyro_loss, pyro_grad) = both(vae.model, vae.guide)
    assert pyro_loss == pytest.approx(loss, rel=1e-12)
    torch.testing.assert_close(pyro_grad, grad, rtol=1e-10, atol=1e-10)

    s = 1.0 / N
    (scaled_loss, scaled_grad), (pyro_scaled, pyro_scaled_grad) = both(
        _per_example(vae.model), _per_example(vae.guide)
    )
    assert scaled_loss == pytest.approx(s * loss, rel=1e-12)
    torch.testing.assert_close(scaled_grad, s * grad, rtol=1e-10, atol=1e-10)
    # Recorded (pyro-ppl 1.9.2): Pyro's scaled value is not s × IWAE ...
    assert abs(pyro_scaled - s * loss) > 0.05 * abs(s * loss)
    assert (pyro_scaled_grad - s * grad).abs().max() > 0.05 * grad.abs().max() * s
    # ... it is the logsumexp of the scaled log-weights.
    with torch.no_grad():
        log_w, _ = hand_log_weights(vae, x, noise(seed, k, N))
    assert pyro_scaled == pytest.approx(-iwae_bound(s * log_w).sum().item(), rel=1e-10)


def test_pyro_renyi_elbo_is_iwae_on_the_two_layer_model_unscaled():
    """The same agreement with two latent sites (unscaled): the same draw, value and gradient."""
    net, x, params = two_layer_setup()
    k = 4
    pyro.set_rng_seed(2)
    loss = objectives.make("iwae", k).differentiable_loss(net.model, net.guide, x)
    grad = flat_grad(loss, params)
    pyro.set_rng_seed(2)
    theirs = pyro.infer.RenyiELBO(
        alpha=0, num_particles=k, vectorize_particles=True, max_plate_nesting=1
    )
    pyro_loss, pyro_grad = pyro_grads(theirs, net.model, net.guide, x, params)
    assert pyro_loss == pytest.approx(loss.item(), rel=1e-12)
    torch.testing.assert_close(pyro_grad, grad, rtol=1e-10, atol=1e-10)


PYRO_TWINS = [
    ("elbo", pyro.infer.Trace_ELBO, "one"),
    ("elbo", pyro.infer.Trace_ELBO, "two"),
    ("analytic-kl", pyro.infer.TraceMeanField_ELBO, "one"),
]


@pytest.mark.parametrize("per_example", [False, True], ids=["summed", "per-example"])
@pytest.mark.parametrize("name, twin, layers", PYRO_TWINS)
def test_elbo_and_analytic_kl_equal_pyros_trace_elbos_on_the_same_draw(
    name, twin, layers, per_example
):
    """elbo ≡ Trace_ELBO and analytic-kl ≡ TraceMeanField_ELBO (vectorised, K = 3): the same
    seed draws the same particles, so loss and gradients agree to rounding, scaled or not.
    (TraceMeanField_ELBO is compared on the one-site model only: on the bottom-up two-layer
    guide it takes KL(q(z1|x) ‖ p(z1|z2)) in closed form, which is not valid there; that
    is where analytic-kl falls back to Monte Carlo.)"""
    if layers == "one":
        _, vae, x = linear_gaussian_vae()
        model, guide, params = vae.model, vae.guide, parameters(vae)
    else:
        net, x, params = two_layer_setup()
        model, guide = net.model, net.guide
    if per_example:
        model, guide = _per_example(model), _per_example(guide)
    pyro.set_rng_seed(17)
    loss = objectives.make(name, 3).differentiable_loss(model, guide, x)
    grad = flat_grad(loss, params)
    pyro.set_rng_seed(17)
    pyro_loss = twin(num_particles=3, vectorize_particles=True, max_plate_nesting=1)
    theirs = pyro_loss.differentiable_loss(model, guide, x)
    assert theirs.item() == pytest.approx(loss.item(), rel=1e-12)
    torch.testing.assert_close(flat_grad(theirs, params), grad, rtol=1e-10, atol=1e-10)


# --------------------------------------------------------------------------- 10. KL schedule


@pytest.mark.parametrize("per_example", [False, True], ids=["summed", "per-example"])
@pytest.mark.parametrize("name", ["elbo", "analytic-kl", "stl"])
def test_free_bits_above_every_kl_leave_only_the_reconstruction_gradient(name, per_example):
    """With λ above every dimension's KL, each per-dimension term max(λ, KL_j) is the
    constant λ: loss = -E log p(x|z) + β λ d B s and the KL term gives no gradient, so
    the gradient is that of the reconstruction alone, on the same draw."""
    _, vae, x = linear_gaussian_vae()
    params, k, seed, beta, lam = parameters(vae), 4, 6, 0.7, 50.0
    with torch.no_grad():
        assert kl_to_prior(vae, x).max() < lam / 4  # far from the floor, Monte Carlo or not
    model, guide, s = vae.model, vae.guide, 1.0
    if per_example:
        model, guide, s = _per_example(model), _per_example(guide), 1.0 / N
    objective = objectives.make(name, k, beta=beta, free_bits=lam)
    loss, grad = seeded_loss_and_grad(objective, model, guide, x, params, seed)
    recon = s * reconstruction(vae, x, noise(seed, k, N))
    assert loss == pytest.approx(-recon.item() + beta * lam * LATENT * N * s, rel=1e-12)
    torch.testing.assert_close(grad, flat_grad(-recon, params), rtol=1e-10, atol=1e-10)


def test_free_bits_floor_each_dimension_separately():
    """analytic-kl with λ between the two dimensions' batch-average KLs: the loss is
    -E log p(x|z) + β Σ_j max(λ B, Σ_n KL_nj), so the dimension below λ gets no KL gradient
    and the one above gets its full KL gradient."""
    _, vae, x = linear_gaussian_vae()
    params, k, seed, beta = parameters(vae), 4, 6, 0.7
    with torch.no_grad():
        per_dim = kl_to_prior(vae, x).mean(0)
    low, high = per_dim.sort().values.tolist()
    assert high - low > 0.5  # λ sits well clear of both
    lam = (low + high) / 2
    objective = objectives.make("analytic-kl", k, beta=beta, free_bits=lam)
    loss, grad = seeded_loss_and_grad(objective, vae.model, vae.guide, x, params, seed)

    def surrogate(floor: float) -> torch.Tensor:
        kl = kl_to_prior(vae, x).sum(0)  # Σ_n KL_nj, per dimension
        recon = reconstruction(vae, x, noise(seed, k, N))
        return -recon + beta * kl.clamp(min=floor * N).sum()

    expected = surrogate(lam)
    assert loss == pytest.approx(expected.item(), rel=1e-12)
    torch.testing.assert_close(grad, flat_grad(expected, params), rtol=1e-10, atol=1e-10)
    assert (flat_grad(surrogate(0.0), params) - grad).abs().max() > 1e-3  # the floor bites


@pytest.mark.parametrize(
    "name, options",
    [("elbo", {}), ("analytic-kl", {}), ("stl", {}), ("iwae", {}), ("renyi", {"alpha": 0.5})],
)
def test_beta_zero_is_pure_reconstruction(name, options):
    """β = 0: log w_k = log p(x|z_k). The ELBO family gives -(1/K) Σ_k log p(x|z_k) and its
    gradient; IWAE and Rényi give their bounds of log p(x|z) alone."""
    _, vae, x = linear_gaussian_vae()
    params, k, seed = parameters(vae), 4, 9
    objective = objectives.make(name, k, beta=0.0, **options)
    loss, grad = seeded_loss_and_grad(objective, vae.model, vae.guide, x, params, seed)
    log_lik = hand_terms(vae, x, noise(seed, k, N))[0]
    if name == "iwae":
        bound = iwae_bound(log_lik)
    elif name == "renyi":
        bound = renyi_bound(log_lik, options["alpha"])
    else:
        bound = log_lik.mean(0)
    assert loss == pytest.approx(-bound.sum().item(), rel=1e-12)
    torch.testing.assert_close(grad, flat_grad(-bound.sum(), params), rtol=1e-10, atol=1e-10)


def test_warmup_ramps_beta_with_the_training_steps():
    """β_t = β min(1, t / T) after t calls of loss_and_grads (``loss`` does not count): the
    loss at step t is that of log p(x|z) + β_t (log p(z) - log q(z|x)), 0 at t = 0."""
    _, vae, x = linear_gaussian_vae()
    k, beta, warmup = 3, 0.8, 4
    objective = objectives.make("elbo", k, beta=beta, warmup_steps=warmup)
    for step in range(7):
        beta_t = beta * min(1.0, step / warmup)
        assert objective.step == step and objective.beta == pytest.approx(beta_t)
        with torch.no_grad():
            expected = -hand_bound("elbo", {"beta": beta_t}, vae, x, noise(30 + step, k, N))
        pyro.set_rng_seed(30 + step)
        assert objective.loss(vae.model, vae.guide, x) == pytest.approx(
            expected.sum().item(), rel=1e-12
        )
        assert objective.step == step
        pyro.set_rng_seed(30 + step)
        assert objective.loss_and_grads(vae.model, vae.guide, x) == pytest.approx(
            expected.sum().item(), rel=1e-12
        )
    assert objective.beta == beta
