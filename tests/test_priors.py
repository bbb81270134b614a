"""Priors: the contract (event shape, empty batch shape, device-following buffers) and densities."""

from __future__ import annotations

import math

import pytest
import torch

from pyro_vae.priors import StandardNormal


def test_standard_normal_shapes_and_density():
    p = StandardNormal(4)()
    assert p.event_shape == (4,) and p.batch_shape == ()
    z = torch.randn(7, 3, 4)
    expected = -0.5 * z.pow(2).sum(-1) - 2 * math.log(2 * math.pi)
    torch.testing.assert_close(p.log_prob(z), expected)
    assert p.sample((5, 2)).shape == (5, 2, 4)


def test_standard_normal_follows_dtype_and_has_no_parameters():
    prior = StandardNormal(3).double()
    assert prior().sample().dtype == torch.float64
    assert list(prior.parameters()) == []
    assert set(prior.state_dict()) == {"loc", "scale"}


@pytest.mark.parametrize("bad", [0, -2, 2.5, True, "3"])
def test_latent_dim_must_be_a_positive_integer(bad):
    with pytest.raises(ValueError, match="latent_dim"):
        StandardNormal(bad)
