"""Likelihoods: the contract (event shape from the network, particles broadcast), supports,
densities against their formulas, gradients and save/load."""

from __future__ import annotations

import io
import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from pyro_vae.likelihoods import Bernoulli, ContinuousBernoulli, Gaussian
from pyro_vae.nets import MLP, ConvDecoder

HEADS = [Bernoulli, ContinuousBernoulli, lambda net: Gaussian(net, scale=0.3, learn_scale=True)]


@pytest.mark.parametrize("make", HEADS)
def test_event_shape_comes_from_the_network_and_particles_broadcast(make):
    head = make(MLP(3, [8], 10))
    z = torch.randn(4, 5, 3)  # particles, batch, latent
    px = head(z)
    assert px.batch_shape == (4, 5) and px.event_shape == (10,)
    x = px.sample()
    assert x.shape == (4, 5, 10)
    torch.testing.assert_close(px.log_prob(x)[1, 2], head(z[1, 2]).log_prob(x[1, 2]))


def test_image_shaped_network_output_gives_an_image_event():
    net = nn.Sequential(ConvDecoder(3, (1, 6, 6)), nn.Unflatten(-1, (1, 6, 6)))
    assert Bernoulli(net)(torch.randn(2, 3)).event_shape == (1, 6, 6)


@pytest.mark.parametrize("make", HEADS)
def test_every_parameter_gets_a_gradient_and_state_round_trips(make):
    head = make(MLP(3, [8], 10))
    z = torch.randn(6, 3)
    x = torch.rand(6, 10).round() if not isinstance(head, Gaussian) else torch.randn(6, 10)
    head(z).log_prob(x).sum().backward()
    for name, p in head.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    buffer = io.BytesIO()
    torch.save(head.state_dict(), buffer)
    buffer.seek(0)
    copy = make(MLP(3, [8], 10))
    copy.load_state_dict(torch.load(buffer, weights_only=True))
    torch.testing.assert_close(copy(z).log_prob(x), head(z).log_prob(x))


def test_bernoulli_density_is_the_stable_logit_formula():
    logits = torch.tensor([[-30.0, 0.0, 2.0, 30.0]])
    x = torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    expected = (x * logits - F.softplus(logits)).sum(-1)
    torch.testing.assert_close(Bernoulli(nn.Identity())(logits).log_prob(x), expected)
    assert torch.isfinite(Bernoulli(nn.Identity())(logits).log_prob(x)).all()


def test_continuous_bernoulli_integrates_to_one():
    head = ContinuousBernoulli(nn.Identity())
    grid = torch.linspace(0, 1, 20001)[:, None]
    for logit in (-3.0, 0.3, 4.0):
        density = head(torch.full((1,), logit)).log_prob(grid).exp()
        assert torch.trapezoid(density, grid[:, 0]).item() == pytest.approx(1.0, abs=1e-4)


def test_gaussian_density_with_fixed_and_learned_scale():
    mean = torch.tensor([[0.5, -1.0]])
    x = torch.tensor([[0.0, 1.0]])
    for head in (
        Gaussian(nn.Identity(), scale=0.7),
        Gaussian(nn.Identity(), 0.7, learn_scale=True),
    ):
        expected = -0.5 * ((x - mean) / 0.7) ** 2 - math.log(0.7) - 0.5 * math.log(2 * math.pi)
        torch.testing.assert_close(head(mean).log_prob(x), expected.sum(-1))
    assert list(Gaussian(nn.Identity(), scale=0.7).parameters()) == []


def test_supports_declare_what_data_each_head_accepts():
    binary, unit, real = torch.tensor([0.0, 1.0]), torch.tensor([0.2, 1.0]), torch.tensor([-3.0])
    assert Bernoulli.support.check(binary).all() and not Bernoulli.support.check(unit).all()
    assert ContinuousBernoulli.support.check(unit).all()
    assert not ContinuousBernoulli.support.check(torch.tensor([255.0])).all()
    assert Gaussian.support.check(real).all()


def test_a_network_that_drops_leading_dimensions_is_reported():
    with pytest.raises(ValueError, match="keep z's leading dimensions"):
        Bernoulli(nn.Flatten(0))(torch.randn(2, 3, 4))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"scale": 0.0}, "scale"),
        ({"scale": float("nan")}, "scale"),
        ({"scale": 1.0, "min_scale": 2.0}, "min_scale"),
    ],
)
def test_gaussian_rejects_bad_scales(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Gaussian(nn.Identity(), **kwargs)
