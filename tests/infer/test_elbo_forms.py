"""The ELBO three ways, checked on the linear-Gaussian model, where every term is exact:

log p(x) − KL(q ‖ p(z|x)) = E_q[log p(x|z)] − KL(q ‖ p(z)) = E_q[log p(x, z) − log q(z|x)]
"""

from __future__ import annotations

import pyro.distributions as dist
import pytest
import torch
from conftest import binary_data
from test_evaluate import ShiftedPosterior

import pyro_vae as pv
from pyro_vae.infer import evaluate
from pyro_vae.models.linear_gaussian import LinearGaussian

K = 4000


@pytest.fixture
def ppca():
    model = LinearGaussian.random(data_dim=6, latent_dim=2, noise_scale=0.5, seed=1)
    return model, model.sample(30, seed=2)


def _within(estimate, truth, stderr, sigmas=5.0, slack=1e-6):
    """Every example's estimate within ``sigmas`` standard errors of the truth."""
    gap = (estimate - truth).abs()
    assert (gap <= sigmas * stderr + slack).all(), (gap.max(), stderr.max())


# Guides wider than the posterior: the importance weights then have finite variance, so
# the delta-method standard errors of log p̂(x) and of the gap hold (a narrower guide,
# scale 0.7, left estimates 6 standard errors out over 30 seeds).
@pytest.mark.parametrize("shift, scale", [(0.3, 1.3), (-0.2, 1.6)])
def test_each_piece_equals_its_closed_form(ppca, shift, scale):
    model, x = ppca
    guide = ShiftedPosterior(model, shift, scale)
    vae = model.vae(guide)
    forms = evaluate.elbo_forms(vae.model, vae.guide, x, num_samples=K)
    q = guide(x)
    prior = dist.Normal(torch.zeros(2, dtype=x.dtype), 1.0).to_event(1)
    log_px, gap = model.log_marginal(x), model.kl_to_posterior(q, x)
    elbo, prior_kl = log_px - gap, torch.distributions.kl_divergence(q, prior)

    _within(forms.log_px, log_px, forms.log_px_stderr)
    _within(forms.posterior_kl, gap, forms.posterior_kl_stderr)
    _within(forms.expected_log_weight, elbo, forms.expected_log_weight_stderr)
    _within(forms.reconstruction, elbo + prior_kl, forms.reconstruction_stderr)
    # one latent site, Normal against the standard normal: the closed form, exactly
    assert list(forms.layers) == ["z"] and forms.closed_form == {"z": True}
    torch.testing.assert_close(forms.layers["z"], prior_kl)
    assert forms.layers_stderr["z"].abs().max() == 0
    for form in (forms.form1, forms.form2, forms.form3):
        assert form.shape == (len(x),)
        _within(form, elbo, forms.reconstruction_stderr + forms.expected_log_weight_stderr)


def test_form_one_is_form_three_split_into_evidence_and_gap(ppca):
    model, x = ppca
    vae = model.vae(ShiftedPosterior(model, 0.5, 1.3))
    forms = evaluate.elbo_forms(vae.model, vae.guide, x, num_samples=50)
    torch.testing.assert_close(forms.form1, forms.form3)
    assert (forms.posterior_kl >= 0).all()  # Jensen: log mean w ≥ mean log w


def test_at_the_exact_posterior_the_gap_vanishes_and_every_weight_is_p_of_x(ppca):
    model, x = ppca
    vae = model.vae()
    forms = evaluate.elbo_forms(vae.model, vae.guide, x, num_samples=20)
    truth = model.log_marginal(x)
    torch.testing.assert_close(forms.log_px, truth, atol=1e-4, rtol=0)
    torch.testing.assert_close(forms.expected_log_weight, truth, atol=1e-4, rtol=0)
    assert forms.posterior_kl.abs().max() < 1e-4 and forms.log_px_stderr.max() < 1e-5


def test_a_two_layer_vae_splits_prior_matching_by_layer():
    torch.manual_seed(0)
    vae = pv.HierarchicalVAE.mlp(12, [([16], 4), ([8], 2)])
    x = binary_data(20)
    forms = evaluate.elbo_forms(vae.model, vae.guide, x, num_samples=2000)
    assert list(forms.layers) == ["z1", "z2"]
    # the top layer's prior p(z2) is fixed: its KL to q(z2|z1) in closed form, averaged
    # over the draws of z1; the lower layer's prior depends on z2, by Monte Carlo
    assert forms.closed_form == {"z1": False, "z2": True}
    assert forms.layers_stderr["z2"].max() > 0  # it varies with z1
    torch.testing.assert_close(forms.prior_kl, forms.layers["z1"] + forms.layers["z2"])
    errors = forms.reconstruction_stderr + forms.prior_kl_stderr + forms.expected_log_weight_stderr
    _within(forms.form2, forms.form3, errors)


def test_batches_give_every_example_its_own_pieces(ppca):
    model, x = ppca
    vae = model.vae(ShiftedPosterior(model, 0.3, 1.0))
    forms = evaluate.elbo_forms(vae.model, vae.guide, x, num_samples=30, batch_size=7)
    for name in ("log_px", "posterior_kl", "reconstruction", "expected_log_weight"):
        assert getattr(forms, name).shape == (30,)
        assert getattr(forms, f"{name}_stderr").shape == (30,)
    assert forms.layers["z"].shape == forms.prior_kl_stderr.shape == (30,)
    assert forms.num_samples == 30


@pytest.mark.parametrize(
    "change, error, match",
    [
        ({"num_samples": 1}, ValueError, r"integer >= 2 \(standard errors\)"),
        ({"num_samples": 2.5}, ValueError, "num_samples must be an integer"),
        ({"batch_size": 0}, ValueError, "batch_size must be a positive integer"),
        ({"x": torch.full((3, 6), float("nan"))}, ValueError, "x holds 18 NaN"),
        ({"x": torch.zeros(3, 5, dtype=torch.float64)}, ValueError, "event shape"),
        ({"model": None}, TypeError, "model must be a Pyro program"),
    ],
)
def test_bad_input_is_named(ppca, change, error, match):
    model, x = ppca
    vae = model.vae()
    arguments = {"model": vae.model, "guide": vae.guide, "x": x, "num_samples": 4} | change
    with pytest.raises(error, match=match):
        evaluate.elbo_forms(**arguments)
