"""gradients: parameter groups, and variance and SNR that follow the known 1/K law."""

from __future__ import annotations

import pytest
from conftest import binary_data, small_vae

from pyro_vae.infer import gradients, objectives


def test_groups_split_the_guide_from_the_model():
    vae, x = small_vae(), binary_data(4)
    groups = gradients.parameter_groups(vae.model, vae.guide, x)
    assert {id(p) for p in groups["guide"]} == {id(p) for p in vae.encoder.parameters()}
    assert {id(p) for p in groups["model"]} == {id(p) for p in vae.likelihood.parameters()}


def test_variance_of_a_k_particle_average_falls_like_one_over_k():
    """K vectorised particles average K independent estimates: Var_K = Var_1 / K."""
    vae, x = small_vae(), binary_data(16)
    one = gradients.gradient_stats(objectives.make("elbo", 1), vae.model, vae.guide, x, 100)
    many = gradients.gradient_stats(objectives.make("elbo", 16), vae.model, vae.guide, x, 100)
    for group in ("guide", "model"):
        ratio = one[group].variance / many[group].variance
        # 100 draws: one coordinate's variance is within ±14% (sqrt(2/100)); the mean over
        # hundreds of coordinates is tighter.
        assert ratio == pytest.approx(16, rel=0.3), group
        assert many[group].snr > 3 * one[group].snr
        assert one[group].num_coordinates == sum(
            p.numel() for p in (vae.encoder if group == "guide" else vae.likelihood).parameters()
        )


def test_the_mean_is_the_same_whatever_the_particle_count():
    vae, x = small_vae(), binary_data(16)
    one = gradients.gradient_stats(objectives.make("analytic-kl", 1), vae.model, vae.guide, x, 100)
    many = gradients.gradient_stats(objectives.make("analytic-kl", 8), vae.model, vae.guide, x, 100)
    assert many["model"].mean_norm == pytest.approx(one["model"].mean_norm, rel=0.1)


def test_bad_arguments_are_named():
    vae, x = small_vae(), binary_data(4)
    with pytest.raises(ValueError, match="num_draws must be at least 2"):
        gradients.gradient_stats(objectives.make(), vae.model, vae.guide, x, 1)
    with pytest.raises(ValueError, match="NaN"):
        gradients.gradient_stats(
            objectives.make(), vae.model, vae.guide, x.masked_fill(x > 0, float("nan")), 2
        )
    with pytest.raises(TypeError, match="no differentiable_loss"):
        gradients.gradient_stats(object(), vae.model, vae.guide, x, 2)
