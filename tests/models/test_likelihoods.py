"""Likelihoods: the contract (event shape from the network, particles broadcast), supports,
densities against their formulas, gradients and save/load."""

from __future__ import annotations

import io
import math

import pyro
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from pyro_vae._checks import check_data
from pyro_vae.models import guides, priors
from pyro_vae.models.likelihoods import (
    Bernoulli,
    ContinuousBernoulli,
    DiscretizedLogistic,
    DiscretizedLogisticDistribution,
    Gaussian,
    Laplace,
)
from pyro_vae.models.nets import MLP, ConvDecoder
from pyro_vae.models.vae import VAE

HEADS = [
    Bernoulli,
    ContinuousBernoulli,
    lambda net: Gaussian(net, scale=0.3, learn_scale=True),
    lambda net: Laplace(net, scale=0.3, learn_scale=True),
    lambda net: DiscretizedLogistic(net, num_bins=17),
]


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
    x = torch.randn(6, 10) if isinstance(head, (Gaussian, Laplace)) else torch.rand(6, 10).round()
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


@pytest.mark.parametrize("image", [False, True])
@pytest.mark.parametrize(
    "z_batch, x_batch",
    [((5, 6), (6,)), ((6,), (6,)), ((5, 6), (5, 6))],
    ids=["particles", "no-particles", "x-per-particle"],
)
def test_bernoulli_log_prob_is_the_same_with_and_without_gradients(image, z_batch, x_batch):
    """Evaluation (no gradients) takes Σ x ℓ − Σ softplus ℓ, training BCE: equal to float64."""
    torch.manual_seed(0)
    shape = (1, 4, 7) if image else (28,)
    head = Bernoulli(nn.Sequential(nn.Linear(3, 28), nn.Unflatten(-1, shape)))
    z = torch.randn(*z_batch, 3)
    x = torch.rand(*x_batch, *shape)
    x[0] = x[0].round()  # binary pixels and, for other users, grey ones
    with torch.no_grad():
        evaluated = head.log_prob(x, z)
    trained = head.log_prob(x, z)
    assert trained.requires_grad and evaluated.shape == trained.shape == z_batch
    logits = head.net(z).double().flatten(len(z_batch))
    exact = (x.double().flatten(len(x_batch)) * logits - F.softplus(logits)).sum(-1)
    torch.testing.assert_close(trained.detach().double(), exact, rtol=0, atol=1e-4)


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


@pytest.mark.parametrize("make", HEADS)
def test_direct_log_prob_equals_the_distribution_with_particle_dims(make):
    head = make(MLP(3, [8], 10))
    z = torch.randn(4, 5, 3)  # particles, batch, latent
    x = head(z[0]).sample()  # (B, 10), in each head's support
    direct = head.log_prob(x, z)
    assert direct.shape == (4, 5)
    torch.testing.assert_close(direct, head(z).log_prob(x))


def test_laplace_density_with_fixed_and_learned_scale():
    mean = torch.tensor([[0.5, -1.0, 3.0]])
    x = torch.tensor([[0.0, 1.0, 3.0]])
    expected = torch.distributions.Laplace(mean, 0.7).log_prob(x).sum(-1)
    for head in (
        Laplace(nn.Identity(), scale=0.7),
        Laplace(nn.Identity(), 0.7, learn_scale=True),
    ):
        torch.testing.assert_close(head(mean).log_prob(x), expected)
        torch.testing.assert_close(head.log_prob(x, mean), expected)
    formula = (-(x - mean).abs() / 0.7 - math.log(2 * 0.7)).sum(-1)
    torch.testing.assert_close(Laplace(nn.Identity(), scale=0.7).log_prob(x, mean), formula)


def test_laplace_learned_scale_gets_a_gradient_and_fixed_scale_is_a_buffer():
    head = Laplace(nn.Identity(), 0.7, learn_scale=True, min_scale=0.1)
    torch.testing.assert_close(head.scale, torch.tensor(0.7))
    head.log_prob(torch.randn(3, 4), torch.randn(3, 4)).sum().backward()
    assert head.raw_scale.grad is not None and head.raw_scale.grad != 0
    assert list(Laplace(nn.Identity(), scale=0.7).parameters()) == []


@pytest.mark.parametrize("cls", [Gaussian, Laplace, DiscretizedLogistic])
def test_scale_state_dict_keys_are_raw_scale_or_fixed_scale(cls):
    learned = cls(nn.Identity(), scale=0.5, learn_scale=True)
    fixed = cls(nn.Identity(), scale=0.5, learn_scale=False)
    assert list(learned.state_dict()) == ["raw_scale"]
    assert list(fixed.state_dict()) == ["fixed_scale"]
    copy = cls(nn.Identity(), scale=0.2, learn_scale=True)
    copy.load_state_dict(learned.state_dict())
    torch.testing.assert_close(copy.scale, torch.tensor(0.5))


@pytest.mark.parametrize("cls", [Laplace, DiscretizedLogistic])
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"scale": 0.0}, "scale"),
        ({"scale": -1.0}, "scale"),
        ({"scale": float("inf")}, "scale"),
        ({"scale": 1.0, "min_scale": 2.0}, "min_scale"),
        ({"scale": 1.0, "min_scale": -0.1}, "min_scale"),
    ],
)
def test_laplace_and_discretized_logistic_reject_bad_scales(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(nn.Identity(), **kwargs)


@pytest.mark.parametrize("num_bins", [1, 0, -3, 2.5, True, None])
def test_discretized_logistic_rejects_bad_num_bins(num_bins):
    with pytest.raises(ValueError, match="num_bins"):
        DiscretizedLogistic(nn.Identity(), num_bins=num_bins)
    with pytest.raises(ValueError, match="num_bins"):
        DiscretizedLogisticDistribution(torch.zeros(2), 1.0, num_bins)


def _grid(num_bins: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.arange(num_bins, dtype=dtype) / (num_bins - 1)


EXTREME_LOCS = [-50.0, -1.0, 0.0, 0.3, 0.5, 1.0, 1.7, 50.0]


@pytest.mark.parametrize("num_bins", [2, 17, 256])
@pytest.mark.parametrize("scale", [1e-4, 0.003, 0.1, 5.0])
def test_discretized_logistic_probabilities_sum_to_one(num_bins, scale):
    head = DiscretizedLogistic(nn.Identity(), num_bins, scale, learn_scale=False, min_scale=0)
    loc = torch.tensor(EXTREME_LOCS, dtype=torch.float64)  # one pixel per location
    grid = _grid(num_bins, torch.float64)[:, None]  # (n, 1) against (pixels,)
    log_p = head.distribution(loc).log_prob(grid)
    assert log_p.shape == (num_bins, len(EXTREME_LOCS)) and (log_p <= 0).all()
    torch.testing.assert_close(
        log_p.exp().sum(0), torch.ones_like(loc, dtype=torch.float64), atol=1e-6, rtol=0
    )


@pytest.mark.parametrize("num_bins", [2, 17, 256])
def test_discretized_logistic_equals_the_naive_difference_of_sigmoids(num_bins):
    loc = torch.linspace(-0.5, 1.5, 9, dtype=torch.float64)
    grid = _grid(num_bins, torch.float64)[:, None]
    half = 0.5 / (num_bins - 1)
    for scale in (0.02, 0.3, 2.0):
        upper = torch.where(grid > 1 - half, 1.0, torch.sigmoid((grid + half - loc) / scale))
        lower = torch.where(grid < half, 0.0, torch.sigmoid((grid - half - loc) / scale))
        naive = (upper - lower).log()
        stable = DiscretizedLogisticDistribution(loc, scale, num_bins).log_prob(grid)
        accurate = naive > math.log(1e-6)  # rounding error of the difference ≲ 1e-10 relative
        assert accurate.float().mean() > 0.1
        torch.testing.assert_close(stable[accurate], naive[accurate], rtol=1e-9, atol=1e-12)
        assert torch.isfinite(stable).all()  # also where the naive difference underflows


def test_discretized_logistic_is_finite_in_float32_for_extreme_inputs():
    num_bins = 256
    head = DiscretizedLogistic(nn.Identity(), num_bins, scale=1.0, min_scale=1e-4)
    loc = torch.tensor([-1e4, -50.0, 0.0, 0.5, 50.0, 1e4])
    grid = _grid(num_bins)[:, None].expand(num_bins, len(loc))  # every level at every loc
    for raw in (-30.0, 0.0, 30.0):  # s = min_scale, softplus(0) + 1e-4, about 30
        head.raw_scale.data.fill_(raw)
        z = loc.expand(num_bins, -1).clone().requires_grad_()
        log_p = head.log_prob(grid, z)
        assert torch.isfinite(log_p).all() and (log_p <= 0).all()
        log_p.sum().backward()
        assert torch.isfinite(z.grad).all() and torch.isfinite(head.raw_scale.grad).all()
        head.raw_scale.grad = None
        reference = head.double().log_prob(grid.double(), z.detach().double())
        head.float()
        torch.testing.assert_close(log_p.double(), reference, rtol=1e-4, atol=1e-4)
    for scale in (1e-4, 1e3):  # tiny and very wide bins relative to s, elementwise
        single = DiscretizedLogisticDistribution(loc, scale, num_bins).log_prob(grid)
        double = DiscretizedLogisticDistribution(loc.double(), scale, num_bins)
        torch.testing.assert_close(
            single.double(), double.log_prob(grid.double()), rtol=1e-5, atol=1e-5
        )


def test_discretized_logistic_support_checks_the_grid():
    head = DiscretizedLogistic(nn.Identity())
    support = head.support
    assert isinstance(support, torch.distributions.constraints.Constraint)
    assert support.check(_grid(256)).all()
    assert support.check(torch.randint(0, 256, (5, 28, 28)).float() / 255).all()
    for bad in (0.5 / 255, 0.3, -1 / 255, 1 + 1 / 255, 255.0, 2.0):
        assert not support.check(torch.tensor([bad])).any(), bad
    assert "1/255" in head.support_description and "grid" in head.support_description
    assert head.support_hint
    assert DiscretizedLogistic(nn.Identity(), num_bins=2).support_description.endswith("{0, 1}")
    assert head(torch.zeros(3, 4)).support.check(_grid(256)[:4]).all()


def test_discretized_logistic_with_17_levels_for_digits():
    head = DiscretizedLogistic(MLP(2, [8], 64), num_bins=17)
    digits = torch.randint(0, 17, (10, 64)).float() / 16
    assert "1/16" in head.support_description
    assert head.support.check(digits).all()
    assert check_data(digits, likelihood=head) is digits
    with pytest.raises(ValueError, match="1/16"):
        check_data(torch.randint(0, 256, (10, 64)).float() / 255, likelihood=head)
    z = torch.randn(3, 10, 2)
    log_p = head.log_prob(digits, z)
    assert log_p.shape == (3, 10) and torch.isfinite(log_p).all()
    with pytest.raises(ValueError, match="support"):
        head(z).log_prob(digits * 16 / 17)  # off the 1/16 grid


def test_discretized_logistic_samples_lie_on_the_grid_with_the_stated_probabilities():
    num_bins = 17
    loc = torch.tensor([0.1, 0.5, 1.2, -3.0])
    px = DiscretizedLogisticDistribution(loc, torch.tensor(0.15), num_bins)
    x = px.sample((20000,))
    assert x.shape == (20000, 4)
    assert px.support.check(x).all()
    grid = _grid(num_bins)[:, None]
    frequencies = (x[:, None, :] == grid).float().mean(0)  # (n, pixels)
    torch.testing.assert_close(frequencies, px.log_prob(grid).exp(), atol=0.015, rtol=0)


@pytest.mark.parametrize("num_bins", [2, 17, 256])
def test_discretized_logistic_mean_is_the_exact_expected_grid_value(num_bins):
    loc = torch.tensor(EXTREME_LOCS, dtype=torch.float64)
    for scale in (1e-4, 0.05, 3.0):
        px = DiscretizedLogisticDistribution(loc, scale, num_bins)
        grid = _grid(num_bins, torch.float64)[:, None]
        expected = (px.log_prob(grid).exp() * grid).sum(0)
        torch.testing.assert_close(px.mean, expected, atol=1e-9, rtol=0)
        assert ((px.mean >= 0) & (px.mean <= 1)).all()
    head = DiscretizedLogistic(MLP(3, [8], 10), num_bins)
    mean = head(torch.randn(4, 5, 3)).mean
    assert mean.shape == (4, 5, 10) and ((mean >= 0) & (mean <= 1)).all()


def test_discretized_logistic_distribution_expands_and_broadcasts():
    px = DiscretizedLogisticDistribution(torch.tensor([0.2, 0.7]), 0.1, num_bins=5)
    assert px.batch_shape == (2,) and px.event_shape == ()
    wide = px.expand((3, 2))
    assert wide.batch_shape == (3, 2) and wide.num_bins == 5
    x = torch.tensor([0.25, 0.75])
    torch.testing.assert_close(wide.log_prob(x), px.log_prob(x).expand(3, 2))
    assert wide.sample().shape == (3, 2)
    assert px.to_event(1).log_prob(x).shape == ()


def test_a_vae_with_a_discretized_logistic_head_trains_in_pyro():
    data = torch.randint(0, 17, (8, 12)).float() / 16
    vae = VAE(
        priors.StandardNormal(3),
        DiscretizedLogistic(MLP(3, [16], 12), num_bins=17),
        guides.DiagonalNormal(MLP(12, [16]), latent_dim=3),
    )
    loss = pyro.infer.Trace_ELBO().differentiable_loss(vae.model, vae.guide, data)
    assert torch.isfinite(loss)
    loss.backward()
    assert vae.likelihood.raw_scale.grad is not None
    samples = vae.sample(5, mean=False)
    assert vae.likelihood.support.check(samples).all()
