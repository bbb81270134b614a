"""Priors: the contract (event shape, empty batch shape, device-following buffers) and densities."""

from __future__ import annotations

import math

import pytest
import torch

from pyro_vae.models.priors import StandardNormal


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


# --- learned, mixture, VampPrior and flow priors ---------------------------------------------

import pyro  # noqa: E402
from pyro.distributions import transforms as T  # noqa: E402
from torch.autograd.functional import jacobian  # noqa: E402

import pyro_vae as pv  # noqa: E402
from pyro_vae.models.guides import (  # noqa: E402
    AffineCouplingFlow,
    DiagonalNormal,
    FullCovarianceNormal,
    InverseAutoregressiveFlow,
)
from pyro_vae.models.nets import MLP  # noqa: E402
from pyro_vae.models.priors import FlowPrior, LearnedNormal, MixtureOfGaussians, VampPrior  # noqa: E402


def _jiggle(module: torch.nn.Module, size: float = 0.3) -> torch.nn.Module:
    torch.manual_seed(0)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(size * torch.randn_like(p))
    return module


def test_learned_normal_density_and_closed_form_kls():
    prior = _jiggle(LearnedNormal(3)).double()
    z = torch.randn(5, 2, 3, dtype=torch.float64)
    reference = torch.distributions.Normal(prior.loc, prior.scale)
    torch.testing.assert_close(prior.log_prob(z), reference.log_prob(z).sum(-1))
    torch.testing.assert_close(prior().log_prob(z), prior.log_prob(z))
    diag = torch.distributions.Normal(torch.randn(4, 3).double(), torch.rand(4, 3).double() + 0.1)
    torch.testing.assert_close(
        prior.kl_from(torch.distributions.Independent(diag, 1)),
        torch.distributions.kl_divergence(diag, reference).sum(-1),
    )
    full = FullCovarianceNormal(MLP(6, [8]), 3).double()(torch.randn(4, 6, dtype=torch.float64))
    as_mvn = torch.distributions.MultivariateNormal(prior.loc, torch.diag(prior.scale.pow(2)))
    torch.testing.assert_close(prior.kl_from(full), torch.distributions.kl_divergence(full, as_mvn))
    standard = torch.distributions.MultivariateNormal(
        torch.zeros(3).double(), torch.eye(3).double()
    )
    torch.testing.assert_close(
        StandardNormal(3).double().kl_from(full), torch.distributions.kl_divergence(full, standard)
    )


def test_mixture_density_is_the_direct_sum_over_components():
    prior = _jiggle(MixtureOfGaussians(3, num_components=4)).double()
    z = 2 * torch.randn(6, 5, 3, dtype=torch.float64)
    weights = torch.softmax(prior.logits, 0)
    scales = torch.nn.functional.softplus(prior.raw_scale) + prior.min_scale
    direct = sum(
        weights[c] * torch.distributions.Normal(prior.loc[c], scales[c]).log_prob(z).sum(-1).exp()
        for c in range(4)
    )
    torch.testing.assert_close(prior.log_prob(z), direct.log(), rtol=1e-12, atol=1e-12)
    single = prior.float()
    torch.testing.assert_close(single.log_prob(z.float()), direct.log().float(), atol=1e-4, rtol=0)


def test_mixture_samples_have_the_mixture_s_moments():
    prior = _jiggle(MixtureOfGaussians(2, num_components=3), size=1.0)
    d = prior()
    pyro.set_rng_seed(0)
    z = d.sample((200_000,))
    torch.testing.assert_close(z.mean(0), d.mean, atol=0.02, rtol=0)
    torch.testing.assert_close(z.var(0), d.variance, atol=0.05, rtol=0.02)


@pytest.mark.parametrize(
    "guide_cls",
    [DiagonalNormal, FullCovarianceNormal, AffineCouplingFlow, InverseAutoregressiveFlow],
)
def test_vamp_prior_is_the_mean_of_the_guide_at_its_pseudo_inputs(guide_cls):
    guide = _jiggle(guide_cls(MLP(6, [8]), 3)).double()
    prior = VampPrior(guide, num_pseudo_inputs=5).double()
    assert prior.pseudo_inputs.shape == (5, 6)
    z = torch.randn(4, 2, 3, dtype=torch.float64)
    each = torch.stack([guide(prior.pseudo_inputs[c : c + 1]).log_prob(z) for c in range(5)])
    direct = torch.logsumexp(each, 0) - math.log(5)  # log of the sum, without underflow
    torch.testing.assert_close(prior.log_prob(z), direct, rtol=1e-10, atol=1e-10)
    prior.log_prob(z).sum().backward()
    assert prior.pseudo_inputs.grad.abs().sum() > 0 and guide.head.weight.grad.abs().sum() > 0
    kind = "GaussianMixture" if guide_cls is DiagonalNormal else "ComponentMixture"
    assert type(prior()).__name__ == kind


def test_vamp_prior_accepts_the_vae_s_guide_and_shares_its_parameters():
    torch.manual_seed(0)
    encoder = DiagonalNormal(MLP(6, [8]), 3)
    vae = pv.VAE(StandardNormal(3), pv.likelihoods.Bernoulli(MLP(3, [8], 6)), encoder)
    vae.prior = VampPrior(vae.guide, num_pseudo_inputs=4, init=torch.rand(4, 6))
    assert vae.prior.guide is encoder
    pyro.clear_param_store()
    vae.model(torch.ones(2, 6))
    names = set(pyro.get_param_store().keys())
    assert "vae$$$encoder.head.weight" in names and "vae$$$prior.pseudo_inputs" in names
    assert not any(".guide." in n for n in names)  # shared tensors keep the guide's names


def test_vamp_prior_rejects_bad_arguments():
    guide = DiagonalNormal(MLP(6, [8]), 3)
    with pytest.raises(ValueError, match="num_pseudo_inputs must be a positive integer"):
        VampPrior(guide, num_pseudo_inputs=0)
    with pytest.raises(ValueError, match=r"init must be a tensor of shape \(4, ...\)"):
        VampPrior(guide, num_pseudo_inputs=4, init=torch.zeros(3, 6))
    with pytest.raises(ValueError, match="NaN"):
        VampPrior(guide, num_pseudo_inputs=2, init=torch.full((2, 6), float("nan")))
    with pytest.raises(TypeError, match="guide must be"):
        VampPrior("encoder")
    with pytest.raises(ValueError, match="pass input_shape"):
        VampPrior(DiagonalNormal(torch.nn.Sequential(torch.nn.Linear(6, 8)), 3), 2)


def test_flow_prior_density_is_the_change_of_variables_with_autograd_jacobians():
    """log p(z) = log N(f⁻¹(z); 0, I) + log |det ∂f⁻¹/∂z|."""
    prior = _jiggle(FlowPrior(3, num_flows=3, hidden=[12])).double()
    d = prior()
    z = torch.randn(4, 3, dtype=torch.float64)

    def pull(y):  # f⁻¹, the density direction
        for t in reversed(d.transforms):
            y = t.inv(y)
        return y

    log_det = torch.stack([torch.linalg.slogdet(jacobian(pull, z[b]))[1] for b in range(4)])
    expected = torch.distributions.Normal(0.0, 1.0).log_prob(pull(z)).sum(-1) + log_det
    torch.testing.assert_close(prior.log_prob(z), expected)
    sample = d.sample((5,))  # sampling inverts the autoregressive steps, in float64 too
    assert sample.dtype == torch.float64 and torch.isfinite(prior.log_prob(sample.clone())).all()


def test_flow_prior_takes_any_pyro_transform_modules():
    prior = FlowPrior(4, transforms=[T.spline_coupling(4), T.affine_coupling(4)])
    z = prior().sample((3,))
    assert z.shape == (3, 4) and prior.log_prob(z).shape == (3,)
    assert len(list(prior.parameters())) > 0
    with pytest.raises(TypeError, match="TransformModules"):
        FlowPrior(4, transforms=[T.ExpTransform()])
    with pytest.raises(ValueError, match="num_flows must be a positive integer"):
        FlowPrior(4, num_flows=0)
