"""objectives.make: names, particles, and the analytic-KL and Monte Carlo forms agreeing."""

from __future__ import annotations

import pyro.infer
import pytest
import torch
from conftest import binary_data, small_vae

from pyro_vae import objectives


def test_names_map_to_the_pyro_estimators():
    assert isinstance(objectives.make("elbo"), pyro.infer.Trace_ELBO)
    assert isinstance(objectives.make("analytic-kl"), pyro.infer.TraceMeanField_ELBO)
    assert objectives.make().__class__ is pyro.infer.TraceMeanField_ELBO
    elbo = objectives.make("elbo", num_particles=5)
    assert elbo.num_particles == 5 and elbo.vectorize_particles


def test_analytic_and_monte_carlo_kl_estimate_the_same_bound():
    vae, x = small_vae(), binary_data(30)
    analytic = objectives.make("analytic-kl", num_particles=4000)
    sampled = objectives.make("elbo", num_particles=4000)
    a = analytic.loss(vae.model, vae.guide, x)
    b = sampled.loss(vae.model, vae.guide, x)
    assert a == pytest.approx(b, rel=2e-3)


def test_vectorised_particles_reduce_the_spread_of_the_loss():
    vae, x = small_vae(), binary_data(8)
    one = torch.tensor([objectives.make("elbo").loss(vae.model, vae.guide, x) for _ in range(50)])
    many = torch.tensor(
        [objectives.make("elbo", 50).loss(vae.model, vae.guide, x) for _ in range(50)]
    )
    assert many.std() < one.std() / 3


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"name": "iwae-typo"}, "unknown objective 'iwae-typo'; choose one of: elbo, analytic-kl"),
        ({"num_particles": 0}, "num_particles"),
        ({"num_particles": 2.5}, "num_particles"),
        ({"max_plate_nesting": "1"}, "max_plate_nesting"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        objectives.make(**kwargs)
