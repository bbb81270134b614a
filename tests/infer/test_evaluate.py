"""Evaluation against closed forms on the linear-Gaussian (probabilistic PCA) model.

z ~ N(0, I), x | z ~ N(Wz + b, σ²I): log p(x) = log N(x; b, WWᵀ + σ²I) and p(z|x) is
Gaussian, so the importance-sampled log-likelihood and the ELBO can be checked exactly.
"""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from conftest import binary_data, small_vae
from torch import nn

from pyro_vae.infer import evaluate
from pyro_vae.models.guides import Guide
from pyro_vae.models.linear_gaussian import LinearGaussian


class ShiftedPosterior(Guide):
    """A Gaussian guide that is not the posterior: the exact one, shifted and rescaled."""

    def __init__(self, model: LinearGaussian, shift: float, scale: float) -> None:
        super().__init__(nn.Identity(), model.latent_dim)
        self.model, self.shift, self.scale = model, shift, scale

    def forward(self, x):
        exact = self.model.posterior(x)
        loc = exact.mean + self.shift
        std = exact.covariance_matrix.diagonal(dim1=-2, dim2=-1).sqrt() * self.scale
        return dist.Normal(loc, std).to_event(1)


@pytest.fixture
def ppca():
    model = LinearGaussian.random(data_dim=6, latent_dim=2, noise_scale=0.5, seed=1)
    return model, model.sample(40, seed=2)


@pytest.mark.parametrize("num_samples", [1, 7, 300])
def test_exact_posterior_gives_the_exact_log_likelihood_for_any_k(ppca, num_samples):
    model, x = ppca
    vae = model.vae()
    log_px, stderr = evaluate.log_likelihood(
        vae.model, vae.guide, x, num_samples, return_stderr=True
    )
    torch.testing.assert_close(log_px, model.log_marginal(x), atol=1e-4, rtol=0)
    if num_samples > 1:
        assert stderr.max() < 1e-6


def test_batching_and_particle_chunks_do_not_change_the_answer(ppca):
    model, x = ppca
    vae = model.vae()
    whole = evaluate.log_weights(vae.model, vae.guide, x, 50)
    assert whole.shape == (50, 40)
    chunked = evaluate.log_weights(vae.model, vae.guide, x, 50, batch_size=7, max_rows=30)
    torch.testing.assert_close(chunked, whole, atol=1e-9, rtol=0)


@pytest.mark.parametrize("shift, scale", [(0.3, 1.0), (-0.5, 0.6), (0.0, 1.8)])
def test_elbo_equals_log_likelihood_minus_kl_to_the_posterior(ppca, shift, scale):
    model, x = ppca
    guide = ShiftedPosterior(model, shift, scale)
    vae = model.vae(guide)
    num_samples = 4000
    log_w = evaluate.log_weights(vae.model, vae.guide, x, num_samples)
    estimate = log_w.mean(0)
    truth = model.log_marginal(x) - model.kl_to_posterior(guide(x), x)
    stderr = log_w.std(0) / math.sqrt(num_samples)
    assert ((estimate - truth).abs() < 5 * stderr + 1e-9).all()
    assert (truth < model.log_marginal(x)).all()
    torch.testing.assert_close(evaluate.elbo(vae.model, vae.guide, x, 10).shape, x.shape[:1])


def test_importance_sampling_closes_the_gap_as_k_grows(ppca):
    model = ppca[0]
    x = model.sample(200, seed=2)
    vae = model.vae(ShiftedPosterior(model, 0.4, 1.5))
    truth = model.log_marginal(x)
    gaps = []
    for k in (1, 10, 1000):
        pyro.set_rng_seed(3)
        log_px, stderr = evaluate.log_likelihood(vae.model, vae.guide, x, k, return_stderr=True)
        gaps.append((truth - log_px).mean().item())
        if k == 1000:
            assert ((log_px - truth).abs() < 5 * stderr + 1e-3).all()
    assert gaps[0] > gaps[1] > gaps[2] > -1e-3


def test_float32_bernoulli_vae_estimates_are_finite_and_ordered():
    vae, x = small_vae(), binary_data(30)
    elbo = evaluate.elbo(vae.model, vae.guide, x, 200)
    log_px = evaluate.log_likelihood(vae.model, vae.guide, x, 200)
    assert torch.isfinite(log_px).all() and (elbo <= log_px + 1e-4).all()


def test_a_latent_outside_the_data_plate_is_reported():
    def model(x):
        g = pyro.sample("g", dist.Normal(0.0, 1.0))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(g, 1.0).expand([x.shape[0], 2]).to_event(1), obs=x)

    def guide(x):
        pyro.sample("g", dist.Normal(0.0, 1.0))

    with pytest.raises(ValueError, match="'g'.*outside plate 'data'"):
        evaluate.log_likelihood(model, guide, torch.zeros(3, 2), 4)


def test_a_model_latent_missing_from_the_guide_is_reported():
    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x[:, 0])

    with pytest.raises(ValueError, match="'z'.*not sampled by the guide"):
        evaluate.log_likelihood(model, lambda x: None, torch.zeros(3, 1), 4)


@pytest.mark.parametrize(
    "x, kwargs, error, match",
    [
        (torch.zeros(3), {}, ValueError, r"shape \(N, \*event_shape\)"),
        (torch.full((2, 6), float("nan")), {}, ValueError, "NaN"),
        (torch.zeros(2, 6, dtype=torch.long), {}, TypeError, "floating"),
        (torch.zeros(2, 6), {"num_samples": 0}, ValueError, "num_samples"),
        (torch.zeros(2, 6), {"max_rows": -1}, ValueError, "max_rows"),
        (torch.zeros(2, 6), {"batch_size": 0}, ValueError, "batch_size"),
    ],
)
def test_bad_input_is_named(ppca, x, kwargs, error, match):
    vae = ppca[0].vae()
    with pytest.raises(error, match=match):
        evaluate.log_likelihood(vae.model, vae.guide, x, **({"num_samples": 3} | kwargs))


def test_iwae_bounds_are_ordered_and_exact_at_the_posterior(ppca):
    model, x = ppca
    exact = evaluate.iwae_bounds(model.vae().model, model.vae().guide, x, (1, 4, 16))
    for bound in exact.values():
        torch.testing.assert_close(bound, model.log_marginal(x), atol=1e-4, rtol=0)
    vae = model.vae(ShiftedPosterior(model, 0.4, 1.5))
    bounds = evaluate.iwae_bounds(vae.model, vae.guide, x, (1, 4, 16), num_samples=1600)
    means = [bounds[k].mean().item() for k in (1, 4, 16)]
    assert means[0] < means[1] < means[2] < model.log_marginal(x).mean().item()
    elbo = (model.log_marginal(x) - model.kl_to_posterior(vae.encoder(x), x)).mean().item()
    assert means[0] == pytest.approx(elbo, abs=0.1)  # 1600 samples per example
    with pytest.raises(
        ValueError, match=r"num_samples \(8\) must be at least the largest K \(16\)"
    ):
        evaluate.iwae_bounds(vae.model, vae.guide, x, (1, 16), num_samples=8)


def test_elbo_terms_add_up_to_the_elbo(ppca):
    """Reconstruction - KL(q ‖ p(z)) = log p(x) - KL(q ‖ p(z|x)) for a Gaussian guide."""
    model, x = ppca
    guide = ShiftedPosterior(model, 0.3, 1.2)
    vae = model.vae(guide)
    reconstruction, kl = evaluate.elbo_terms(vae.model, vae.guide, x, num_samples=4000)
    kl_exact = torch.distributions.kl_divergence(guide(x), vae.prior().expand([len(x)]))
    torch.testing.assert_close(kl, kl_exact)  # in closed form
    truth = model.log_marginal(x) - model.kl_to_posterior(guide(x), x)
    # Monte Carlo error of one example's reconstruction term: about 0.06 nats at K = 4000.
    torch.testing.assert_close(reconstruction - kl, truth, atol=0.3, rtol=0)
    assert (reconstruction - kl - truth).mean().abs() < 0.05


class _HalfIgnoringGuide(Guide):
    """q(z|x) whose mean depends on x in the first two of four units only."""

    def __init__(self) -> None:
        super().__init__(nn.Identity(), 4)

    def forward(self, x):
        loc = torch.cat([x[:, :2], torch.full((len(x), 2), 0.5)], dim=-1)
        return dist.Normal(loc, torch.ones_like(loc)).to_event(1)


def test_active_units_count_the_units_whose_mean_varies_with_x():
    x = torch.randn(200, 6)
    vae = LinearGaussian.random(6, 4).vae(_HalfIgnoringGuide().double())
    activity = evaluate.unit_activity(vae.guide, x.double(), batch_size=64)
    torch.testing.assert_close(activity["z"][:2], x[:, :2].double().var(0))
    assert activity["z"][2:].abs().max() == 0
    assert evaluate.active_units(vae.guide, x.double()) == 2
    assert evaluate.active_units(vae.guide, x.double(), threshold=100.0) == 0


def test_iwae_bounds_read_the_data_once_whatever_the_batches(monkeypatch):
    """The data are checked where they enter, not again for each batch of the evaluation."""
    vae, x = small_vae(), binary_data(40)
    start, end = x.untyped_storage().data_ptr(), x.untyped_storage().data_ptr() + x.nbytes
    passes = []
    isfinite = torch.isfinite

    def counting(t, *args, **kwargs):
        if start <= t.data_ptr() < end:  # x, or a batch of its rows
            passes.append(t.shape[0])
        return isfinite(t, *args, **kwargs)

    monkeypatch.setattr(torch, "isfinite", counting)
    evaluate.iwae_bounds(vae.model, vae.guide, x, (1, 2), num_samples=4, batch_size=10)
    assert passes == [40]
