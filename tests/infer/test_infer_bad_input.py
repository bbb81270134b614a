"""Bad arguments to evaluation, objectives and gradients: the error names the argument."""

from __future__ import annotations

import math

import pytest
import torch
from bad_input import examples, names_an_argument
from conftest import binary_data, small_vae
from hypothesis import given
from hypothesis import strategies as st

import pyro_vae as pv
from pyro_vae.analysis import latent
from pyro_vae.infer import evaluate, objectives


@st.composite
def tensors(draw: st.DrawFn) -> torch.Tensor:
    """Data for a VAE on 6 binary values: right or wrong in shape, dtype and values."""
    n = draw(st.sampled_from([0, 1, 3]))
    shape = draw(st.sampled_from([(n, 6), (n, 6), (n, 5), (n, 2, 3), (6,), (n, 6, 1)]))
    dtype = draw(st.sampled_from([torch.float32, torch.float32, torch.float64, torch.int64]))
    fill = draw(st.sampled_from(["binary", "binary", 0.5, 255.0, -1.0, math.nan, math.inf]))
    if fill == "binary":
        x = torch.bernoulli(torch.full(shape, 0.5), generator=torch.Generator().manual_seed(n))
    else:
        x = torch.full(shape, fill)
    return x.to(dtype)


EVALUATE = {
    "log_weights": lambda vae, x, k: evaluate.log_weights(vae.model, vae.guide, x, k),
    "log_likelihood": lambda vae, x, k: evaluate.log_likelihood(vae.model, vae.guide, x, k),
    "elbo": lambda vae, x, k: evaluate.elbo(vae.model, vae.guide, x, k),
    "iwae_bounds": lambda vae, x, k: evaluate.iwae_bounds(vae.model, vae.guide, x, (1, k)),
    "elbo_terms": lambda vae, x, k: evaluate.elbo_terms(vae.model, vae.guide, x, k),
    "unit_activity": lambda vae, x, k: evaluate.unit_activity(vae.guide, x, batch_size=k),
    "active_units": lambda vae, x, k: evaluate.active_units(vae.guide, x, batch_size=k),
    "aggregate": lambda vae, x, k: latent.aggregate_posterior_log_prob(
        vae.encoder, x, torch.zeros(2, 3), batch_size=k
    ),
    "encode": lambda vae, x, k: vae.encode(x),
    "reconstruct": lambda vae, x, k: vae.reconstruct(x),
}


SPECS = ["iwae:k=0", "renyi:alpha=x", "elbo:beta=nan", "stl:bound=foo", "elbo:jit=maybe"]


def _programs(vae):
    return vae.model, vae.guide


ALL_EVALUATE = [
    lambda vae, x: evaluate.log_weights(*_programs(vae), x, 2),
    lambda vae, x: evaluate.log_likelihood(*_programs(vae), x, 2),
    lambda vae, x: evaluate.elbo(*_programs(vae), x, 2),
    lambda vae, x: evaluate.iwae_bounds(*_programs(vae), x, (1, 2)),
    lambda vae, x: evaluate.elbo_terms(*_programs(vae), x),
]


GUIDE_ONLY = [
    lambda vae, x: evaluate.unit_activity(vae.guide, x),
    lambda vae, x: evaluate.active_units(vae.guide, x),
]


@examples(150)
@given(
    function=st.sampled_from(sorted(EVALUATE)),
    x=tensors(),
    k=st.sampled_from([1, 2, 0, -1, 2.5, True, None]),
)
def test_evaluation_works_or_names_the_bad_argument(function, x, k):
    vae = small_vae(data_dim=6)
    try:
        EVALUATE[function](vae, x, k)
    except (ValueError, TypeError) as e:
        assert names_an_argument(e, ("x", "num_samples", "batch_size", "ks")), (function, e)


@examples(100)
@given(spec=st.text(max_size=20) | st.sampled_from(SPECS))
def test_objective_specs_parse_or_raise_a_value_error(spec):
    try:
        objectives.parse(spec)
    except ValueError as e:
        assert str(e)


@pytest.mark.parametrize("function", ALL_EVALUATE + GUIDE_ONLY)
def test_evaluation_checks_x_against_the_vae(function):
    vae = small_vae()
    with pytest.raises(ValueError, match=r"x has event shape \(5,\), the model expects \(12,\)"):
        function(vae, torch.zeros(4, 5))
    with pytest.raises(TypeError, match="x has dtype torch.float64 but the VAE's parameters"):
        function(vae, torch.zeros(4, 12, dtype=torch.float64))


@pytest.mark.parametrize("function", ALL_EVALUATE)
def test_evaluation_checks_x_against_the_likelihoods_support(function):
    """elbo_terms let Pyro's own error through before; every function names x now."""
    with pytest.raises(ValueError, match="x has values outside the support of the Bernoulli"):
        function(small_vae(), torch.full((4, 12), 0.5))


@pytest.mark.parametrize("function", GUIDE_ONLY)
def test_the_guide_alone_reads_grey_levels(function):
    """Only the likelihood has a support: the encoder reads grey levels like any input."""
    result = function(small_vae(), torch.rand(4, 12))
    if isinstance(result, dict):  # unit_activity: Var_x(E_q[z_u|x]) per latent site
        assert all(torch.isfinite(v).all() and (v >= 0).all() for v in result.values())
    else:  # active_units: a count of the 3 latent units
        assert 0 <= result <= 3


def test_evaluation_names_the_device_of_x():
    vae = small_vae().to("meta")
    with pytest.raises(ValueError, match="x is on cpu but the VAE is on meta"):
        evaluate.elbo(vae.model, vae.guide, binary_data(4), 2)


def test_evaluation_of_other_programs_names_x_that_does_not_fit():
    vae = small_vae()

    def model(x):
        vae.model(x)

    def guide(x):
        vae.guide(x)

    with pytest.raises(ValueError, match=r"x of shape \(4, 5\) does not fit the model and guide"):
        evaluate.log_likelihood(model, guide, torch.zeros(4, 5), 2)
    with pytest.raises(ValueError, match=r"x of shape \(4, 5\) does not fit the model and guide"):
        evaluate.unit_activity(guide, torch.zeros(4, 5))
    with pytest.raises(TypeError, match="model must be a Pyro program"):
        evaluate.elbo(3, guide, binary_data(4), 2)
    with pytest.raises(TypeError, match="guide must be a Pyro program"):
        evaluate.unit_activity(None, binary_data(4))


def test_gradient_stats_names_x_of_the_wrong_shape():
    vae = small_vae()
    with pytest.raises(ValueError, match=r"\bx\b"):
        pv.gradients.gradient_stats(objectives.make("elbo"), vae.model, vae.guide,
                                    torch.zeros(4, 5), 2)  # fmt: skip
