"""Bad arguments to the parts and the registry: the error names the argument."""

from __future__ import annotations

import math
import re

import pytest
import torch
from bad_input import diagonal_guide, examples, names_an_argument
from conftest import small_vae
from hypothesis import given
from hypothesis import strategies as st

from pyro_vae.cli import commands as cli
from pyro_vae.models import guides, likelihoods, nets, priors
from pyro_vae.models.vae import HierarchicalVAE

INTS = st.sampled_from([0, -3, 1, 2, 3, 5, 2.5, True, False, "4", None, [2], math.nan])


SIZE_CONSTRUCTORS = {
    "latent_dim": [
        lambda v: priors.StandardNormal(v),
        lambda v: priors.LearnedNormal(v),
        lambda v: priors.FlowPrior(v),
        lambda v: guides.DiagonalNormal(nets.MLP(4, [4]), v),
        lambda v: guides.FullCovarianceNormal(nets.MLP(4, [4]), v),
        lambda v: guides.InverseAutoregressiveFlow(nets.MLP(4, [4]), v),
        lambda v: guides.AffineCouplingFlow(nets.MLP(4, [4]), v),
    ],
    "num_components": [lambda v: priors.MixtureOfGaussians(2, v)],
    "num_pseudo_inputs": [lambda v: priors.VampPrior(diagonal_guide(), v)],
    "num_flows": [
        lambda v: priors.FlowPrior(2, v),
        lambda v: guides.InverseAutoregressiveFlow(nets.MLP(4, [4]), 2, num_flows=v),
    ],
    "hidden": [
        lambda v: nets.MLP(3, [v]),
        lambda v: nets.MLP(3, v),
        lambda v: priors.FlowPrior(2, hidden=[v]),
    ],
    "in_features": [lambda v: nets.MLP(v, [4]), lambda v: nets.ConvDecoder(v, (1, 8, 8))],
    "out_features": [lambda v: nets.MLP(3, [4], v)],
    "image_shape": [lambda v: nets.ConvEncoder((1, v, 8)), lambda v: nets.ConvDecoder(2, v)],
    "channels": [lambda v: nets.ConvEncoder((1, 8, 8), channels=[v])],
    "context_dim": [lambda v: guides.InverseAutoregressiveFlow(nets.MLP(4, [4]), 2, context_dim=v)],
    "num_bins": [lambda v: likelihoods.DiscretizedLogistic(nets.MLP(2, [4], 4), num_bins=v)],
    "data_dim": [lambda v: HierarchicalVAE.mlp(v, [([4], 2)])],
    "layers": [lambda v: HierarchicalVAE.mlp(6, [([v], 2)]), lambda v: HierarchicalVAE.mlp(6, v)],
}


CONSTRUCTORS = [(name, make, INTS) for name, ms in SIZE_CONSTRUCTORS.items() for make in ms]


@examples(200)
@given(case=st.sampled_from(CONSTRUCTORS), data_=st.data())
def test_constructors_work_or_name_the_bad_argument(case, data_):
    name, make, values = case
    value = data_.draw(values)
    try:
        make(value)
    except (ValueError, TypeError) as e:
        assert names_an_argument(e, (name, "latent_dim")), (name, value, e)


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: nets.MLP(3, None), TypeError, "hidden must be a list of positive integers"),
        (lambda: nets.MLP(3, 5), TypeError, "hidden must be a list"),
        (lambda: nets.MLP(3, [4], activation=3), TypeError, "activation must be a callable"),
        (lambda: nets.ConvEncoder(8), TypeError, "image_shape"),
        (lambda: nets.ConvEncoder((1, True, 8)), ValueError, "image_shape"),
        (lambda: nets.ConvDecoder(2, (1, 8, 8), channels=5), TypeError, "channels must be a list"),
        (lambda: guides.DiagonalNormal(nets.MLP(4, [4]), 2, min_scale="x"), TypeError,
         "min_scale must be a number"),
        (lambda: guides.InverseAutoregressiveFlow(nets.MLP(4, [4]), 4, hidden=[2]), ValueError,
         "at least latent_dim=4"),
        (lambda: guides.AffineCouplingFlow(nets.MLP(4, [4]), 4, hidden=5), TypeError, "hidden"),
        (lambda: priors.LearnedNormal(2, init_scale="x"), TypeError, "init_scale must be a number"),
        (lambda: priors.LearnedNormal(2, min_scale=None), TypeError, "min_scale must be a number"),
        (lambda: priors.MixtureOfGaussians(2, init_spread="x"), TypeError, "init_spread"),
        (lambda: priors.FlowPrior(2, hidden=[True]), ValueError, r"hidden\[0\]"),
        (lambda: priors.FlowPrior(4, hidden=[2]), ValueError, "at least latent_dim=4"),
        (lambda: priors.VampPrior(diagonal_guide(), 3, input_shape=[5]), ValueError,
         r"input_shape gives pseudo-inputs of shape \(5,\).*reads inputs of shape \(4,\)"),
        (lambda: priors.VampPrior(diagonal_guide(), 3, init=torch.zeros(3, 5)), ValueError,
         r"init gives pseudo-inputs of shape \(5,\)"),
        (lambda: likelihoods.Gaussian(nets.MLP(2, [4], 4), scale="x"), TypeError,
         "scale must be a number"),
        (lambda: likelihoods.Laplace(nets.MLP(2, [4], 4), learn_scale="yes"), TypeError,
         "learn_scale must be True or False"),
    ],
)  # fmt: skip
def test_a_bad_argument_of_a_part_is_named(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_a_vamp_prior_on_a_conv_encoder_takes_image_shaped_pseudo_inputs():
    guide = guides.DiagonalNormal(nets.ConvEncoder((1, 8, 8), out_features=8), 2)
    prior = priors.VampPrior(guide, 3, init=torch.rand(3, 1, 8, 8))
    assert prior().event_shape == (2,)


def test_networks_name_the_input_width_they_expect():
    with pytest.raises(ValueError, match=r"MLP expects inputs of shape \(\*batch, 3\)"):
        nets.MLP(3, [4])(torch.zeros(2, 5))
    with pytest.raises(ValueError, match=r"ConvDecoder expects inputs of shape \(\*batch, 2\)"):
        nets.ConvDecoder(2, (1, 8, 8))(torch.zeros(2, 3))


@pytest.mark.parametrize(
    "prior",
    [
        priors.StandardNormal(3),
        priors.LearnedNormal(3),
        priors.MixtureOfGaussians(3, 2),
        priors.FlowPrior(3),
        priors.VampPrior(guides.DiagonalNormal(nets.MLP(4, [4]), 3), 2),
    ],
    ids=lambda p: type(p).__name__,
)
def test_priors_name_latents_of_the_wrong_size_or_kind(prior):
    with pytest.raises(ValueError, match=r"z must have shape \(\*batch, 3\), got \(2, 5\)"):
        prior.log_prob(torch.zeros(2, 5))
    with pytest.raises(TypeError, match="z must have a floating dtype"):
        prior.log_prob(torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(TypeError, match="z must be a torch.Tensor"):
        prior.log_prob([0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match=r"q must have event shape \(3,\), got \(2,\)"):
        prior.kl_from(diagonal_guide()(torch.zeros(2, 4)))


def test_networks_and_likelihoods_name_inputs_of_the_wrong_dtype_or_batch():
    with pytest.raises(
        TypeError, match="MLP expects inputs of dtype torch.float32, got torch.int64"
    ):
        diagonal_guide()(torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(TypeError, match="ConvEncoder expects inputs of dtype torch.float32"):
        nets.ConvEncoder((1, 8, 8))(torch.zeros(2, 64, dtype=torch.float64))
    with pytest.raises(TypeError, match="RecurrentEncoder expects a torch.Tensor"):
        nets.RecurrentEncoder(2, hidden_size=4)([[0.0, 0.0]])
    likelihood = likelihoods.Bernoulli(nets.MLP(2, [4], 6))
    with pytest.raises(ValueError, match=r"x has batch shape \(3,\).*against z's \(2,\)"):
        likelihood.log_prob(torch.zeros(3, 6), torch.zeros(2, 2))
    with pytest.raises(TypeError, match="x must have a floating dtype, got torch.int64"):
        likelihood.log_prob(torch.zeros(2, 6, dtype=torch.long), torch.zeros(2, 2))


def test_networks_leave_autocast_its_casts():
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert nets.MLP(4, [4], 2)(torch.zeros(2, 4, dtype=torch.bfloat16)).shape == (2, 2)


@pytest.mark.parametrize(
    "args, error, match",
    [
        ((0, [([4], 2)]), ValueError, "data_dim must be a positive integer"),
        ((6, []), ValueError, "layers must name at least one stochastic layer"),
        ((6, "ab"), ValueError, "layers must name at least one stochastic layer"),
        ((6, [3]), ValueError, r"layers\[0\] must be a pair"),
        ((6, [([], 2)]), ValueError, r"layers\[0\]\[0\] must hold at least one"),
        ((6, [([4], 0)]), ValueError, r"layers\[0\]\[1\] must be a positive integer"),
    ],
)
def test_hierarchical_mlp_names_the_bad_layer(args, error, match):
    with pytest.raises(error, match=match):
        HierarchicalVAE.mlp(*args)
    with pytest.raises(TypeError, match="likelihood must be a Likelihood class"):
        HierarchicalVAE.mlp(6, [([4], 2)], likelihood=3)
    with pytest.raises(TypeError, match="activation must be a callable"):
        HierarchicalVAE.mlp(6, [([4], 2)], activation=3)


def test_encode_and_decode_check_their_input_against_the_vae():
    vae = small_vae()
    with pytest.raises(ValueError, match=r"x has event shape \(5,\), the model expects \(12,\)"):
        vae.encode(torch.zeros(2, 5))
    with pytest.raises(TypeError, match="x has dtype torch.float64 but the VAE's parameters"):
        vae.reconstruct(torch.zeros(2, 12, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"z must have shape \(\*batch, 3\)"):
        vae.decode(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="z holds NaN"):
        vae.decode(torch.full((2, 3), math.nan))
    # The encoder reads grey levels even where the likelihood wants binary data.
    assert vae.reconstruct(torch.full((2, 12), 0.5)).shape == (2, 12)


@pytest.mark.parametrize(
    "change, match",
    [
        ({"latent_dim": 0}, "config['latent_dim'] must be a positive integer"),
        ({"hidden": "16"}, "config['hidden'] must be a list"),
        ({"image_shape": [1, 8]}, "config['image_shape'] must be a shape of 3 positive"),
        ({"prior": "gauss"}, "config['prior'] must be one of"),
        ({"scale": -1}, "config['scale'] must be a positive finite number"),
        ({"learn_scale": "no"}, "config['learn_scale'] must be true or false"),
        ({"components": 2.5}, "config['components'] must be a positive integer"),
    ],
)
def test_build_vae_names_the_bad_config_key(change, match):
    config = {"dataset": "digits", "image_shape": [1, 8, 8], "prior": "standard-normal",
              "guide": "diagonal-normal", "likelihood": "bernoulli", "scale": 0.1,
              "learn_scale": False, "net": "mlp", "hidden": [16], "latent_dim": 3,
              "binarization": "dynamic"}  # fmt: skip
    cli.build_vae(config)
    with pytest.raises((ValueError, TypeError), match=re.escape(match)):
        cli.build_vae(config | change)
    with pytest.raises(TypeError, match="config must be a dict"):
        cli.build_vae([1])
