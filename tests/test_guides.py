"""Guides: the contract (batch and event shapes, reparameterised), positivity, gradients."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from pyro_vae.guides import DiagonalNormal
from pyro_vae.nets import MLP, ConvEncoder


@pytest.mark.parametrize(
    "net, x",
    [
        (MLP(12, [8]), torch.randn(5, 12)),
        (ConvEncoder((1, 6, 6), out_features=8), torch.randn(5, 36)),
    ],
)
def test_diagonal_normal_contract(net, x):
    guide = DiagonalNormal(net, latent_dim=3)
    q = guide(x)
    assert q.batch_shape == (5,) and q.event_shape == (3,)
    assert q.has_rsample
    z = q.rsample((4,))
    assert z.shape == (4, 5, 3)
    z.sum().backward()
    for name, p in guide.named_parameters():
        assert p.grad is not None, name


def test_scale_stays_above_its_floor_for_extreme_inputs():
    guide = DiagonalNormal(MLP(2, [4]), latent_dim=2, min_scale=1e-3)
    with torch.no_grad():
        guide.head.bias.fill_(-1e4)
    assert (guide(torch.zeros(3, 2)).base_dist.scale >= 1e-3).all()


def test_a_body_without_out_features_gets_a_lazy_head():
    guide = DiagonalNormal(nn.Sequential(nn.Linear(5, 7), nn.Tanh()), latent_dim=2)
    assert guide(torch.randn(3, 5)).event_shape == (2,)
    assert guide.head.in_features == 7


def test_state_round_trips():
    guide = DiagonalNormal(MLP(6, [4]), latent_dim=2)
    buffer = io.BytesIO()
    torch.save(guide.state_dict(), buffer)
    buffer.seek(0)
    copy = DiagonalNormal(MLP(6, [4]), latent_dim=2)
    copy.load_state_dict(torch.load(buffer, weights_only=True))
    x = torch.randn(3, 6)
    torch.testing.assert_close(copy(x).mean, guide(x).mean)


def test_bad_arguments_are_named():
    with pytest.raises(TypeError, match="net must be a torch.nn.Module"):
        DiagonalNormal(lambda x: x, latent_dim=2)
    with pytest.raises(ValueError, match="latent_dim"):
        DiagonalNormal(MLP(2, [2]), latent_dim=0)
    with pytest.raises(ValueError, match="min_scale"):
        DiagonalNormal(MLP(2, [2]), latent_dim=1, min_scale=-1.0)
