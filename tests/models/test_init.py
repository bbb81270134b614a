"""pv.init: Glorot-uniform weights and the data-mean output bias of the IWAE paper's code."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import pyro_vae as pv
from pyro_vae.models.registry import build_vae


def _vae(likelihood=pv.likelihoods.Bernoulli) -> pv.VAE:
    return pv.VAE(
        pv.priors.StandardNormal(2),
        likelihood(pv.nets.MLP(2, [8], 6)),
        pv.guides.DiagonalNormal(pv.nets.MLP(6, [8]), latent_dim=2),
    )


def test_glorot_draws_within_the_bound_with_the_right_spread_and_zero_biases():
    torch.manual_seed(0)
    net = pv.init.glorot_(nn.Sequential(nn.Linear(300, 500), nn.Tanh(), nn.Linear(500, 10)))
    for layer in (net[0], net[2]):
        bound = (6 / (layer.in_features + layer.out_features)) ** 0.5
        w = layer.weight
        assert w.abs().max() <= bound and w.abs().max() > 0.99 * bound
        # U(-a, a) has variance a² / 3
        assert abs(w.var().item() / (bound**2 / 3) - 1) < 0.05
        assert torch.all(layer.bias == 0)


def test_he_draws_normal_weights_of_variance_two_over_fan_in_and_keeps_biases():
    torch.manual_seed(0)
    layer = nn.Linear(400, 300)
    bias = layer.bias.detach().clone()
    pv.init.he_(layer)
    assert abs(layer.weight.var().item() / (2 / 400) - 1) < 0.05
    assert abs(layer.weight.mean().item()) < 3 * (2 / 400 / layer.weight.numel()) ** 0.5
    assert torch.equal(layer.bias, bias)


@pytest.mark.parametrize("init", [pv.init.glorot_, pv.init.he_])
def test_an_init_refuses_a_module_without_linear_layers(init):
    with pytest.raises(ValueError, match=f"{init.__name__}: Tanh holds no nn.Linear layer"):
        init(nn.Tanh())


def test_the_output_bias_is_the_logit_of_each_pixel_s_mean():
    vae = _vae()
    x = torch.tensor([[0.0, 1, 0.5, 0.2, 1, 0], [0, 1, 0.5, 0.4, 0, 0]])
    pv.init.output_bias_from_data_(vae, x)
    expected = torch.logit(torch.tensor([1e-3, 1 - 1e-3, 0.5, 0.3, 0.5, 1e-3]))
    torch.testing.assert_close(vae.likelihood.net.layers[-1].bias.detach(), expected)
    # so a decoder whose weights are zero predicts the mean image
    vae.likelihood.net.layers[-1].weight.data.zero_()
    probs = torch.sigmoid(vae.likelihood.net(torch.randn(3, 2)))
    torch.testing.assert_close(probs[0], expected.sigmoid())


def test_the_output_bias_names_bad_input():
    with pytest.raises(ValueError, match="needs a Bernoulli likelihood, got Gaussian"):
        pv.init.output_bias_from_data_(_vae(pv.likelihoods.Gaussian), torch.rand(4, 6))
    with pytest.raises(ValueError, match="x has 5 values per example, the decoder 6 outputs"):
        pv.init.output_bias_from_data_(_vae(), torch.rand(4, 5))
    with pytest.raises(ValueError, match=r"x must lie in \[0, 1\], got values in \[0, 255\]"):
        pv.init.output_bias_from_data_(_vae(), torch.tensor([[0.0, 255, 1, 1, 1, 1]]))
    with pytest.raises(ValueError, match="x holds 1 NaN"):
        pv.init.output_bias_from_data_(_vae(), torch.tensor([[float("nan"), 0, 1, 1, 1, 1]]))
    with pytest.raises(ValueError, match=r"clip must lie in \(0, 0.5\)"):
        pv.init.output_bias_from_data_(_vae(), torch.rand(4, 6), clip=0.5)


def test_a_run_config_names_its_initialisation():
    config = {
        "image_shape": [1, 2, 3], "prior": "standard-normal", "guide": "diagonal-normal",
        "likelihood": "bernoulli", "net": "mlp", "hidden": [8], "latent_dim": 2,
        "dataset": "mnist5k", "scale": 0.1, "learn_scale": False, "binarization": "dynamic",
    }  # fmt: skip
    torch.manual_seed(0)
    vae = build_vae({**config, "init": "glorot"})
    assert all(torch.all(m.bias == 0) for m in vae.modules() if isinstance(m, nn.Linear))
    torch.manual_seed(0)
    default = build_vae(config)
    assert any(torch.any(m.bias != 0) for m in default.modules() if isinstance(m, nn.Linear))
    with pytest.raises(ValueError, match=r"\['init'\] must be one of default, glorot, he, got"):
        build_vae({**config, "init": "orthogonal"})
