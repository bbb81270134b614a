"""pv.registry: the names a run's config uses, and the VAE they build."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import pyro_vae as pv
from pyro_vae.models.registry import build_vae

BASE = {
    "dataset": "digits", "image_shape": [1, 8, 8], "prior": "standard-normal",
    "guide": "diagonal-normal", "likelihood": "bernoulli", "scale": 0.1, "learn_scale": False,
    "net": "mlp", "hidden": [16, 8], "latent_dim": 3, "binarization": "dynamic",
}  # fmt: skip


@pytest.mark.parametrize(
    "activation, kind", [("relu", nn.ReLU), ("tanh", nn.Tanh), (None, nn.ReLU)]
)
def test_the_activation_names_the_mlps_nonlinearity(activation, kind):
    vae = build_vae({**BASE, "activation": activation})
    found = {type(m) for m in vae.modules() if isinstance(m, (nn.ReLU, nn.Tanh))}
    assert found == {kind}


def test_gated_mlps_use_gated_linear_units():
    vae = build_vae({**BASE, "activation": "gated"})
    assert sum(isinstance(m, pv.nets.GatedLinear) for m in vae.modules()) == 4  # 2 + 2
    assert not any(isinstance(m, (nn.ReLU, nn.Tanh)) for m in vae.modules())
    x = torch.bernoulli(torch.full((5, 64), 0.3))
    assert pv.evaluate.log_likelihood(vae.model, vae.guide, x, num_samples=3).shape == (5,)


def test_layers_build_a_hierarchical_vae():
    vae = build_vae({**BASE, "activation": "tanh", "layers": [[[16], 4], [[8], 2]]})
    assert isinstance(vae, pv.HierarchicalVAE) and vae.latent_dims == (4, 2)


@pytest.mark.parametrize(
    "change, match",
    [
        ({"activation": "sigmoid"}, "config\\['activation'\\] must be one of relu, tanh, gated"),
        ({"layers": [[16, 4]]}, "config\\['layers'\\]\\[0\\]\\[0\\]"),
        ({"layers": "deep"}, "config\\['layers'\\] must be a list of"),
        ({"layers": [[[16], 4]], "prior": "vamp"}, "hierarchical VAE with prior 'standard-normal'"),
        ({"layers": [[[16], 4]], "activation": "gated"}, "not gated ones"),
    ],
)
def test_bad_configs_are_named(change, match):
    with pytest.raises((ValueError, TypeError), match=match):
        build_vae({**BASE, **change})


def test_gated_linear_is_value_times_gate():
    layer = pv.nets.GatedLinear(4, 3)
    x = torch.randn(2, 5, 4)
    expected = layer.value(x) * torch.sigmoid(layer.gate(x))
    assert torch.equal(layer(x), expected) and layer(x).shape == (2, 5, 3)
