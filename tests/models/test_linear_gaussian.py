"""The linear-Gaussian reference model: its closed forms against brute force."""

from __future__ import annotations

import pytest
import torch

from pyro_vae.models.linear_gaussian import LinearGaussian


def test_log_marginal_matches_numerical_integration_in_one_dimension():
    model = LinearGaussian(
        torch.tensor([[1.3], [-0.4]], dtype=torch.float64),
        torch.tensor([0.2, 0.5], dtype=torch.float64),
        noise_scale=0.7,
    )
    x = torch.tensor([[0.9, -0.1], [-2.0, 1.0]], dtype=torch.float64)
    z = torch.linspace(-12, 12, 200001, dtype=torch.float64)
    prior = torch.distributions.Normal(0.0, 1.0).log_prob(z)
    lik = (
        torch.distributions.Normal(z[:, None, None] * model.weight[:, 0] + model.bias, 0.7)
        .log_prob(x)
        .sum(-1)
    )
    integrand = (prior[:, None] + lik).exp()
    numeric = torch.trapezoid(integrand, z, dim=0).log()
    torch.testing.assert_close(model.log_marginal(x), numeric, atol=1e-8, rtol=0)


def test_posterior_is_bayes_rule():
    model = LinearGaussian.random(data_dim=4, latent_dim=2, seed=3)
    x = model.sample(3, seed=1)
    z = torch.randn(3, 2, dtype=torch.float64)
    joint = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1) + torch.distributions.Normal(
        z @ model.weight.T + model.bias, model.noise_scale
    ).log_prob(x).sum(-1)
    torch.testing.assert_close(model.posterior(x).log_prob(z), joint - model.log_marginal(x))


def test_samples_have_the_marginal_covariance():
    model = LinearGaussian.random(data_dim=3, latent_dim=2, seed=0)
    x = model.sample(200000, seed=7)
    torch.testing.assert_close(
        torch.cov(x.T), model.marginal().covariance_matrix, atol=0.06, rtol=0.02
    )


def test_the_exact_guide_has_no_parameters_and_bad_shapes_are_named():
    model = LinearGaussian.random(data_dim=3, latent_dim=2)
    assert list(model.vae().encoder.parameters()) == []
    with pytest.raises(ValueError, match="weight must be"):
        LinearGaussian(torch.zeros(3, 2), torch.zeros(2), 1.0)
    with pytest.raises(ValueError, match="noise_scale"):
        LinearGaussian(torch.zeros(3, 2), torch.zeros(3), 0.0)
