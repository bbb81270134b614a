"""Numerical robustness: float32 against float64, and extreme data and decoders.

Issue: "importance-sampled log-likelihood with K = 5000 in float32 stays finite and
matches float64 to 1e-3 nats on the linear-Gaussian model; extreme inputs (all zeros,
all ones) give finite log-likelihoods".

The float32 runs are compared without Monte Carlo noise: torch draws different numbers
in float32 and float64 from one seed, so either the estimate has no noise at all (the
exact posterior as guide: every importance weight is p(x)), or both precisions are fed
the same particles (a guide that draws its standard normal noise in float64 and casts
it). What remains of the difference is rounding.

The model makes float32 work: D = 500 pixels of magnitude ~100, the scale of raw 8-bit
intensities (x = W z + b + σ ε with W ~ 3 N(0, 1), b ~ 100 N(0, 1), σ = 1.5), so the
residuals x - W z - b ≈ σ are small differences of large numbers; log p(x|z), log p(z) and
log q(z|x) are hundreds of nats each, log p(x) ≈ -900; four latent dimensions; K = 5000.
Writing the squares as x² - 2xμ + μ² instead of (x - μ)² already costs 4e-3 nats here.
"""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from torch import nn

from pyro_vae.infer import evaluate, objectives
from pyro_vae.infer._fused import PerExample
from pyro_vae.infer._logsumexp import StreamedLogSumExp
from pyro_vae.models import guides, likelihoods, nets, priors
from pyro_vae.models.guides import Guide
from pyro_vae.models.linear_gaussian import ExactPosterior, LinearGaussian
from pyro_vae.models.vae import VAE

F32, F64 = torch.float32, torch.float64
K = 5000
TOL = 1e-3  # nats, per example
# (max_rows, batch_size): K in 5 chunks per batch; 3 batches (the last short) × 136 chunks of
# 37 particles (the last short).
CHUNKINGS = [(8192, None), (111, 3)]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small tensors: intra-op threads only add overhead."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --------------------------------------------------------------------------- float32 vs float64


def linear_gaussian(dtype: torch.dtype) -> tuple[LinearGaussian, torch.Tensor]:
    """The model and 8 examples; every number is a float32 number, so both precisions
    evaluate the very same model at the very same data and differ only in arithmetic."""
    g = torch.Generator().manual_seed(0)
    weight = (3 * torch.randn(500, 4, generator=g, dtype=F64)).float()
    bias = (100 * torch.randn(500, generator=g, dtype=F64)).float()
    x = LinearGaussian(weight.double(), bias.double(), 1.5).sample(8, seed=1).float()
    return LinearGaussian(weight.to(dtype), bias.to(dtype), 1.5), x.to(dtype)


class SharedNoiseGaussian(dist.MultivariateNormal):
    """N(μ, L Lᵀ) whose ``rsample`` draws ε in float64 and casts it to its own dtype.

    With the same seed a float32 and a float64 copy then draw the same ε (to rounding),
    so their estimates share their particles.
    """

    def rsample(self, sample_shape: tuple[int, ...] = ()) -> torch.Tensor:
        shape = self._extended_shape(sample_shape)
        eps = torch.randn(shape, dtype=F64).to(self.loc.dtype)
        return self.loc + (self._unbroadcasted_scale_tril @ eps[..., None])[..., 0]


class ImperfectPosterior(Guide):
    """q(z|x) = p(z|x) with its mean shifted by one posterior standard deviation per
    coordinate and its scale widened 1.5 times: the weights vary, the estimate is noisy."""

    def __init__(self, model: LinearGaussian) -> None:
        super().__init__(nn.Identity(), model.latent_dim)
        self.model = model

    def forward(self, x: torch.Tensor) -> dist.TorchDistribution:
        p = self.model.posterior(x)
        return SharedNoiseGaussian(p.loc + p.stddev, scale_tril=1.5 * p.scale_tril)


@pytest.mark.parametrize("max_rows, batch_size", CHUNKINGS)
def test_float32_estimate_with_the_exact_posterior_is_the_closed_form(max_rows, batch_size):
    """With q(z|x) = p(z|x) every weight is w_k = p(x, z_k) / p(z_k|x) = p(x), so
    log (1/K) Σ_k w_k = log p(x) = log N(x; b, W Wᵀ + σ² I) for any draw: no Monte Carlo
    error. In float32 with K = 5000, streamed in chunks of K and batches of x, the estimate
    must be that closed form (taken in float64) to 1e-3 nats per example, and the standard
    error of constant weights, sqrt((K Σ ŵ² - 1)/(K - 1)) with Σ ŵ² = 1/K, must be ~0."""
    model, x = linear_gaussian(F32)
    truth = linear_gaussian(F64)[0].log_marginal(x.double())
    assert (truth < -800).all()
    vae = model.vae(ExactPosterior(model))
    log_px, stderr = evaluate.log_likelihood(
        vae.model, vae.guide, x, K, max_rows=max_rows, batch_size=batch_size, return_stderr=True
    )
    assert log_px.dtype == F32 and torch.isfinite(log_px).all()
    assert (log_px.double() - truth).abs().max().item() < TOL
    assert stderr.max().item() < TOL


@pytest.mark.parametrize("max_rows, batch_size", CHUNKINGS)
def test_float32_estimate_matches_float64_on_the_same_particles(max_rows, batch_size):
    """With an imperfect guide log (1/K) Σ_k w_k is a noisy estimate, a function of the
    particles z_1..z_K. Evaluated on the same particles in float32 and in float64 it must
    agree to 1e-3 nats per example (K = 5000, chunked as above); the float64 estimate is
    checked to differ from log p(x) by more than that, so the weights are truly uneven."""
    estimates = {}
    for dtype in (F32, F64):
        model, x = linear_gaussian(dtype)
        vae = model.vae(ImperfectPosterior(model))
        pyro.set_rng_seed(0)
        estimates[dtype] = evaluate.log_likelihood(
            vae.model, vae.guide, x, K, max_rows=max_rows, batch_size=batch_size
        )
    assert estimates[F32].dtype == F32 and torch.isfinite(estimates[F32]).all()
    error = (estimates[F32].double() - estimates[F64]).abs().max().item()
    assert error < TOL
    truth = linear_gaussian(F64)[0].log_marginal(linear_gaussian(F64)[1])
    assert (estimates[F64] - truth).abs().max().item() > 10 * TOL


def test_streamed_log_sum_exp_keeps_float32_precision_over_thousands_of_chunks():
    """log Σ_k w_k accumulated over 5000 chunks of one particle each (how
    ``log_likelihood`` streams K when a batch fills ``max_rows``), with log w ≈ -900 ± 3,
    must equal float64's logsumexp of the same float32 numbers to 1e-3 nats. Combining
    per-chunk log-sums with logaddexp rounds at |log Σ w| ≈ 900 on every chunk (ε·900 ≈
    5e-5 each) and drifts further; a running maximum with linear-scale sums does not.
    Zero weights (log w = -inf) must give -inf for an example with no other weight and
    must not disturb the others."""
    g = torch.Generator().manual_seed(0)
    log_w = (-900 + 3 * torch.randn(K, 4, generator=g, dtype=F64)).float()
    log_w[:10, 1] = -math.inf  # an example whose first chunks carry no weight
    log_w[:, 2] = -math.inf  # an example with no weight at all
    acc = StreamedLogSumExp()
    for row in log_w.split(1):
        acc.add(row)
    expected = torch.logsumexp(log_w.double(), 0)
    assert acc.log_sum[2].item() == -math.inf
    finite = [0, 1, 3]
    assert (acc.log_sum[finite].double() - expected[finite]).abs().max().item() < TOL
    squares = torch.exp(torch.logsumexp(2 * log_w.double(), 0) - 2 * expected)
    torch.testing.assert_close(
        acc.normalised_sum_sq[finite].double(), squares[finite], rtol=1e-4, atol=0
    )


# --------------------------------------------------------------------------- extreme inputs

LIKELIHOODS = ["bernoulli", "continuous-bernoulli", "gaussian", "laplace", "discretized-logistic"]
D, LATENT = 12, 3


def small_vae(likelihood: str, dtype: torch.dtype, extreme: bool) -> VAE:
    """An untrained MLP VAE. ``extreme`` multiplies the decoder's last layer by 1e3 and adds
    a ramp from -1e4 to 1e4 to its bias (logits or locations of ±1e4), and puts a learned
    scale on its floor (ρ = -1e4: σ = min_scale)."""
    torch.manual_seed(0)
    decoder = nets.MLP(LATENT, [16], D)
    head = {
        "bernoulli": likelihoods.Bernoulli,
        "continuous-bernoulli": likelihoods.ContinuousBernoulli,
        "gaussian": lambda net: likelihoods.Gaussian(net, learn_scale=True),
        "laplace": lambda net: likelihoods.Laplace(net, learn_scale=True),
        "discretized-logistic": likelihoods.DiscretizedLogistic,
    }[likelihood](decoder)
    encoder = guides.DiagonalNormal(nets.MLP(D, [16]), latent_dim=LATENT)
    vae = VAE(priors.StandardNormal(LATENT), head, encoder).to(dtype)
    if extreme:
        with torch.no_grad():
            decoder.layers[-1].weight.mul_(1e3)
            decoder.layers[-1].bias.mul_(1e3).add_(torch.linspace(-1e4, 1e4, D, dtype=dtype))
            if getattr(head, "learn_scale", False):
                head.raw_scale.fill_(-1e4)
                assert head.scale.item() == pytest.approx(head.min_scale)
    return vae


def extreme_data(likelihood: str, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    data = {"zeros": torch.zeros(3, D, dtype=dtype), "ones": torch.ones(3, D, dtype=dtype)}
    if likelihood == "discretized-logistic":  # the two edge bins and their neighbours
        edges = torch.tensor([0.0, 1 / 255, 254 / 255, 1.0], dtype=dtype)
        data["edge bins"] = edges.repeat(3, D // 4)
    return data


@pytest.mark.parametrize("extreme", [False, True], ids=["untrained", "extreme-decoder"])
@pytest.mark.parametrize("dtype", [F32, F64], ids=["float32", "float64"])
@pytest.mark.parametrize("likelihood", LIKELIHOODS)
def test_extreme_data_and_decoders_give_finite_log_likelihoods(likelihood, dtype, extreme):
    """Every head is a positive probability (Bernoulli, discretised logistic) or density
    (continuous Bernoulli, Gaussian, Laplace) at every point of its support for finite
    parameters: log p(x|z) is finite, hence so are log p(x), the ELBO, every training loss
    and its gradients. No -inf is correct here; one would be a rounding artefact (such as
    log σ(-1e4) taken as log 0). A Bernoulli with logits ±1e4 on mismatching pixels is
    finite and very negative, as it should be. Checked on all-zero and all-one data (and
    the discretised logistic's edge bins), for ``evaluate.log_likelihood`` (K = 100),
    ``evaluate.elbo`` and three objectives' losses, each by the fused and the traced path,
    for an untrained decoder and one pushed to extremes (outputs ±1e4, scale at its floor).
    """
    vae = small_vae(likelihood, dtype, extreme)
    fused = (vae.model, vae.guide)
    traced = (lambda x: vae.model(x), lambda x: vae.guide(x))
    for name, x in extreme_data(likelihood, dtype).items():
        if extreme:
            outputs = vae.likelihood.net(vae.encoder(x).mean)
            assert outputs.abs().max().item() > 1e3
        for path, (model, guide) in (("fused", fused), ("traced", traced)):
            where = f"{name}, {path}"
            log_px = evaluate.log_likelihood(model, guide, x, 100)
            assert log_px.dtype == dtype and torch.isfinite(log_px).all(), (where, log_px)
            bound = evaluate.elbo(model, guide, x, 10)
            assert torch.isfinite(bound).all(), (where, bound)
            for objective in ("analytic-kl", "elbo", "iwae"):
                vae.zero_grad()
                loss = objectives.make(objective, 5).differentiable_loss(
                    PerExample(model) if path == "fused" else model,
                    PerExample(guide) if path == "fused" else guide,
                    x,
                )
                loss.backward()
                assert torch.isfinite(loss), (where, objective, loss)
                for param_name, param in vae.named_parameters():
                    if param.grad is not None:
                        assert torch.isfinite(param.grad).all(), (where, objective, param_name)


# --------------------------------------------------------------------------- delicate spots


def softplus(t: float) -> float:
    return max(t, 0.0) + math.log1p(math.exp(-abs(t)))


def continuous_bernoulli_log_prob(x: float, logit: float) -> float:
    """log p(x) = x ℓ - softplus(ℓ) + log C, C = ℓ / tanh(ℓ/2) (2 at ℓ = 0), in double."""
    log_c = math.log(2.0) if logit == 0 else math.log(logit / math.tanh(logit / 2))
    return x * logit - softplus(logit) + log_c


CB_LOGITS = [0.0, 1e-7, -1e-3, 4.1e-3, -0.01, 0.0999, 0.1, -1.0, 5.0, 15.0, -20.0, 40.0, 100.0]
CB_LOGITS += [-1e4, 1e4, 1e30]


@pytest.mark.parametrize("dtype", [F32, F64], ids=["float32", "float64"])
def test_continuous_bernoulli_is_exact_from_one_half_to_saturation(dtype):
    """λ = σ(ℓ) and C(λ) = 2 artanh(1 - 2λ)/(1 - 2λ) = ℓ / tanh(ℓ/2): near λ = ½ (ℓ → 0,
    where the λ form is 0/0) and at λ → 0 or 1 (|ℓ| → ∞, where C ≈ |ℓ| grows without
    bound) the head's log p(x|ℓ) = x ℓ - softplus(ℓ) + log C must match the formula taken in
    double precision, at x = 0, ½, 1, to float32's or float64's rounding; and its gradient
    must be finite, 0 at ℓ = 0 and equal to x - σ(ℓ) + 1/ℓ - 1/sinh ℓ elsewhere (float64).
    Torch's own ContinuousBernoulli clamps λ to [ε, 1 - ε]: 0.23 nats low per pixel at
    ℓ = 20 in float32, 0.1 at ℓ = 40 in float64."""
    head = likelihoods.ContinuousBernoulli(nn.Identity())
    logits = torch.tensor(CB_LOGITS, dtype=dtype).requires_grad_(True)
    x = torch.tensor([0.0, 0.5, 1.0], dtype=dtype)[:, None].expand(3, len(CB_LOGITS))
    log_p = head.distribution(logits.expand(3, -1)).log_prob(x)
    expected = torch.tensor(
        [[continuous_bernoulli_log_prob(v, t) for t in logits.tolist()] for v in (0, 0.5, 1)],
        dtype=F64,
    )
    tol = {F32: 1e-6, F64: 1e-13}[dtype]
    torch.testing.assert_close(log_p.double(), expected, rtol=tol, atol=tol)
    (grad,) = torch.autograd.grad(log_p[1].sum(), logits)  # at x = ½: 1/ℓ - 1/sinh ℓ - tanh(ℓ/2)/2
    assert torch.isfinite(grad).all() and grad[0].item() == 0
    if dtype == F64:
        t = logits.detach()
        # 1/ℓ - 1/sinh ℓ cancels as ℓ → 0, where its series ℓ/6 - 7ℓ³/360 stands in.
        d_log_c = torch.where(t.abs() < 1e-3, t / 6 - 7 * t**3 / 360, 1 / t - 1 / torch.sinh(t))
        expected_grad = 0.5 - torch.sigmoid(t) + d_log_c
        torch.testing.assert_close(grad, expected_grad, rtol=1e-9, atol=1e-15)


def test_continuous_bernoulli_integrates_to_one_up_to_steep_logits():
    """∫₀¹ C(λ) λ^x (1 - λ)^(1-x) dx = 1 for every λ, including ℓ = 0 (flat), around torch's
    switch at |λ - ½| = 0.001 (ℓ ≈ ±0.004) and ℓ = ±50, where torch's clamped λ under-counts
    C by 0.3 nats (float64, trapezoid rule on 200001 points, error ~ (ℓ h)²/12)."""
    head = likelihoods.ContinuousBernoulli(nn.Identity())
    grid = torch.linspace(0, 1, 200001, dtype=F64)[:, None]
    logits = torch.tensor([0.0, 4e-3, -4.1e-3, 0.3, -7.0, 50.0, -50.0], dtype=F64)
    density = head.distribution(logits.expand(len(grid), -1)).log_prob(grid).exp()
    mass = torch.trapezoid(density, grid[:, 0], dim=0)
    torch.testing.assert_close(mass, torch.ones_like(mass), rtol=0, atol=1e-6)


@pytest.mark.parametrize("dtype", [F32, F64], ids=["float32", "float64"])
def test_discretized_logistic_is_a_distribution_at_extreme_locations_and_scales(dtype):
    """Σ_x P(x) over the 256 grid values is 1 (logsumexp of log P = 0) and every log P is
    finite and ≤ 0, with μ far outside [0, 1] (±1e4), on it, at the edges and between
    bins, and s from its floor 1e-4 (bins 2.6e3 scales wide) to 1e3 (bins 4e-6 scales
    wide, so σ(a) - σ(b) cancels entirely if taken as a difference)."""
    grid = torch.arange(256, dtype=dtype)[:, None, None] / 255
    loc = torch.tensor([-1e4, -0.5, 0.0, 0.5 / 255, 0.3, 1.0, 1.5, 1e4], dtype=dtype)[:, None]
    scale = torch.tensor([1e-4, 1e-2, 1.0, 1e3], dtype=dtype)
    log_p = likelihoods.DiscretizedLogisticDistribution(loc, scale, 256).log_prob(grid)
    assert torch.isfinite(log_p).all() and (log_p <= 0).all()
    total = torch.logsumexp(log_p, 0)
    tol = {F32: 1e-5, F64: 1e-12}[dtype]
    torch.testing.assert_close(total, torch.zeros_like(total), rtol=0, atol=tol)
