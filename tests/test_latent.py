"""The aggregate posterior and the latent grid."""

from __future__ import annotations

import math

import pytest
import torch

from pyro_vae import latent, plots
from pyro_vae.guides import DiagonalNormal, InverseAutoregressiveFlow
from pyro_vae.nets import MLP


@pytest.mark.parametrize("guide_cls", [DiagonalNormal, InverseAutoregressiveFlow])
def test_aggregate_posterior_is_the_average_of_the_posteriors(guide_cls):
    torch.manual_seed(0)
    encoder = guide_cls(MLP(5, [8]), 2).double()
    x, z = torch.randn(7, 5).double(), torch.randn(11, 2).double()
    direct = sum(encoder(x[n : n + 1]).log_prob(z).exp() for n in range(7)) / 7
    got = latent.aggregate_posterior_log_prob(encoder, x, z, batch_size=3)  # chunks of 3, 3, 1
    torch.testing.assert_close(got, direct.log())


def test_aggregate_posterior_integrates_to_one_over_a_wide_grid():
    torch.manual_seed(0)
    encoder = DiagonalNormal(MLP(5, [8]), 2)
    axis, points = latent.grid(6.0, 121)
    density = latent.aggregate_posterior_log_prob(encoder, torch.randn(20, 5), points).exp()
    step = (axis[1] - axis[0]).item()
    assert density.sum().item() * step**2 == pytest.approx(1.0, abs=1e-3)


def test_grid_orders_points_as_an_image():
    axis, points = latent.grid(1.0, 3)
    assert torch.equal(axis, torch.tensor([-1.0, 0.0, 1.0]))
    image = points[:, 0].reshape(3, 3)
    assert torch.equal(image[0], axis) and torch.equal(points[:, 1].reshape(3, 3)[:, 0], axis)


def test_aggregate_posterior_rejects_mismatched_shapes():
    encoder = DiagonalNormal(MLP(5, [8]), 2)
    with pytest.raises(ValueError, match="latent size 3"):
        latent.aggregate_posterior_log_prob(encoder, torch.randn(4, 5), torch.randn(6, 3))
    with pytest.raises(ValueError, match=r"z must have shape \(M, latent_dim\)"):
        latent.aggregate_posterior_log_prob(encoder, torch.randn(4, 5), torch.randn(6))
    with pytest.raises(ValueError, match="NaN"):
        latent.aggregate_posterior_log_prob(
            encoder, torch.full((4, 5), math.nan), torch.randn(6, 2)
        )


def test_the_prior_and_aggregate_posterior_figure(tmp_path):
    from conftest import small_vae

    vae = small_vae(latent_dim=2)
    path = plots.save_priors_and_aggregate_posteriors(
        {"a": vae}, torch.rand(9, 12), tmp_path / "f.png"
    )
    assert path.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="2-D latent space"):
        plots.save_priors_and_aggregate_posteriors(
            {"b": small_vae(latent_dim=3)}, torch.rand(3, 12), tmp_path / "g.png"
        )
