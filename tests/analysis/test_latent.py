"""The latent space: the aggregate posterior, paths, projections and KL per unit."""

from __future__ import annotations

import math
import sys

import pyro.distributions as dist
import pytest
import torch
from conftest import PartlyCollapsed, binary_data, small_vae
from torch import nn

from pyro_vae import plots
from pyro_vae.analysis import latent
from pyro_vae.infer import evaluate
from pyro_vae.models.guides import (
    DiagonalNormal,
    FullCovarianceNormal,
    Guide,
    InverseAutoregressiveFlow,
    location,
)
from pyro_vae.models.linear_gaussian import LinearGaussian
from pyro_vae.models.nets import MLP
from pyro_vae.models.priors import (
    FlowPrior,
    LearnedNormal,
    MixtureOfGaussians,
    StandardNormal,
    VampPrior,
)
from pyro_vae.models.vae import VAE, HierarchicalVAE


@pytest.mark.parametrize("guide_cls", [DiagonalNormal, InverseAutoregressiveFlow])
def test_aggregate_posterior_is_the_average_of_the_posteriors(guide_cls):
    torch.manual_seed(0)
    encoder = guide_cls(MLP(5, [8]), 2).double()
    x, z = torch.randn(7, 5).double(), torch.randn(11, 2).double()
    direct = sum(encoder(x[n : n + 1]).log_prob(z).exp() for n in range(7)) / 7
    got = latent.aggregate_posterior_log_prob(encoder, x, z, batch_size=3)  # chunks of 3, 3, 1
    torch.testing.assert_close(got, direct.log())


def test_aggregate_posterior_integrates_to_one_over_a_wide_grid():
    torch.manual_seed(0)
    encoder = DiagonalNormal(MLP(5, [8]), 2)
    axis, points = latent.grid(6.0, 121)
    density = latent.aggregate_posterior_log_prob(encoder, torch.randn(20, 5), points).exp()
    step = (axis[1] - axis[0]).item()
    assert density.sum().item() * step**2 == pytest.approx(1.0, abs=1e-3)


def test_grid_orders_points_as_an_image():
    axis, points = latent.grid(1.0, 3)
    assert torch.equal(axis, torch.tensor([-1.0, 0.0, 1.0]))
    image = points[:, 0].reshape(3, 3)
    assert torch.equal(image[0], axis) and torch.equal(points[:, 1].reshape(3, 3)[:, 0], axis)


def test_aggregate_posterior_rejects_mismatched_shapes():
    encoder = DiagonalNormal(MLP(5, [8]), 2)
    with pytest.raises(ValueError, match="latent size 3"):
        latent.aggregate_posterior_log_prob(encoder, torch.randn(4, 5), torch.randn(6, 3))
    with pytest.raises(ValueError, match=r"z must have shape \(M, latent_dim\)"):
        latent.aggregate_posterior_log_prob(encoder, torch.randn(4, 5), torch.randn(6))
    with pytest.raises(ValueError, match="NaN"):
        latent.aggregate_posterior_log_prob(
            encoder, torch.full((4, 5), math.nan), torch.randn(6, 2)
        )


def test_the_prior_and_aggregate_posterior_figure(tmp_path):
    vae = small_vae(latent_dim=2)
    path = plots.save_priors_and_aggregate_posteriors(
        {"a": vae}, torch.rand(9, 12), tmp_path / "f.png"
    )
    assert path.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="2-D latent space"):
        plots.save_priors_and_aggregate_posteriors(
            {"b": small_vae(latent_dim=3)}, torch.rand(3, 12), tmp_path / "g.png"
        )


# --- helpers: guides whose posteriors are known --------------------------------------------


class FixedGuide(Guide):
    """q(z|x) = N(m, diag s²) whatever x is: then q(z) = N(m, diag s²) and I(x; z) = 0."""

    def __init__(self, loc: torch.Tensor, scale: torch.Tensor) -> None:
        super().__init__(nn.Identity(), len(loc))
        self.register_buffer("loc", loc)
        self.register_buffer("scale", scale)

    def forward(self, x: torch.Tensor) -> dist.TorchDistribution:
        shape = (x.shape[0], self.latent_dim)
        return dist.Normal(self.loc.expand(shape), self.scale.expand(shape)).to_event(1)


class SharpGuide(Guide):
    """q(z|x) = N(W x, 0.001² I): posteriors of distinct x do not overlap, so I(x; z) = log N."""

    def __init__(self, data_dim: int, latent_dim: int) -> None:
        super().__init__(nn.Identity(), latent_dim)
        self.register_buffer("weight", torch.randn(latent_dim, data_dim))

    def forward(self, x: torch.Tensor) -> dist.TorchDistribution:
        loc = x @ self.weight.T
        return dist.Normal(loc, torch.full_like(loc, 1e-3)).to_event(1)


def _with_guide(guide: Guide, data_dim: int = 12) -> VAE:
    vae = small_vae(data_dim=data_dim, latent_dim=guide.latent_dim)
    vae.encoder = guide
    return vae


# --- interpolate ------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["linear", "spherical"])
@pytest.mark.parametrize("shape", [(5,), (3, 5)])
def test_interpolate_returns_the_endpoints_exactly(method, shape):
    z0, z1 = torch.randn(shape), torch.randn(shape)
    path = latent.interpolate(z0, z1, 7, method=method)
    assert path.shape == (7, *shape)
    assert torch.equal(path[0], z0) and torch.equal(path[-1], z1)


def test_linear_interpolation_passes_through_the_midpoint():
    z0, z1 = torch.randn(4, 6), torch.randn(4, 6)
    path = latent.interpolate(z0, z1, 5)
    torch.testing.assert_close(path[2], (z0 + z1) / 2)
    torch.testing.assert_close(path[1], 0.75 * z0 + 0.25 * z1)


def test_spherical_interpolation_follows_the_great_circle():
    z0 = torch.randn(6, dtype=torch.float64)
    z1 = torch.randn(6, dtype=torch.float64)
    z1 = z1 * z0.norm() / z1.norm()  # equal norms
    path = latent.interpolate(z0, z1, 9, method="spherical")
    torch.testing.assert_close(path.norm(dim=1), z0.norm().expand(9))
    omega = torch.arccos(z0 @ z1 / z0.norm() ** 2)
    angles = torch.arccos((path @ z0 / z0.norm() ** 2).clamp(-1, 1))
    torch.testing.assert_close(angles, torch.linspace(0, 1, 9, dtype=torch.float64) * omega)
    # every point lies in the plane of z0 and z1
    basis = torch.linalg.qr(torch.stack([z0, z1], dim=1)).Q
    torch.testing.assert_close(path @ basis @ basis.T, path)


def test_spherical_interpolation_is_linear_where_the_angle_vanishes_row_by_row():
    z0 = torch.tensor([[1.0, 2.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    z1 = torch.tensor([[2.0, 4.0, 0.0], [0.0, 1.0, 0.0], [1.0, 1.0, 1.0]])  # parallel, 90°, zero
    slerp = latent.interpolate(z0, z1, 5, method="spherical")
    lerp = latent.interpolate(z0, z1, 5, method="linear")
    assert torch.isfinite(slerp).all()
    torch.testing.assert_close(slerp[:, [0, 2]], lerp[:, [0, 2]])
    half = math.sqrt(0.5)
    torch.testing.assert_close(slerp[2, 1], torch.tensor([half, half, 0.0]))


def test_interpolate_refuses_bad_arguments():
    z = torch.randn(3)
    with pytest.raises(ValueError, match=r"method must be one of \('linear', 'spherical'\)"):
        latent.interpolate(z, z, method="cubic")
    with pytest.raises(ValueError, match=r"one shape.*\(3,\) and \(4,\)"):
        latent.interpolate(z, torch.randn(4))
    with pytest.raises(ValueError, match="num_steps must be an integer >= 2"):
        latent.interpolate(z, z, 1)
    with pytest.raises(ValueError, match=r"\(D,\) or \(B, D\)"):
        latent.interpolate(torch.randn(2, 2, 3), torch.randn(2, 2, 3))
    with pytest.raises(ValueError, match="z1 holds NaN"):
        latent.interpolate(z, torch.full((3,), math.nan))


# --- traverse ---------------------------------------------------------------------------------


def test_traverse_sets_one_coordinate_per_row():
    z = torch.randn(5)
    out = latent.traverse(z, [3, 0], [-1.0, 0.5, 2.0])
    assert out.shape == (2, 3, 5)
    assert torch.equal(out[0, :, 3], torch.tensor([-1.0, 0.5, 2.0]))
    assert torch.equal(out[1, :, 0], torch.tensor([-1.0, 0.5, 2.0]))
    others = [u for u in range(5) if u != 3]
    assert torch.equal(out[0][:, others], z[others].expand(3, 4))


def test_traverse_refuses_dimensions_out_of_range():
    with pytest.raises(ValueError, match=r"dims\[1\] must be an integer in 0 … 4, got 5"):
        latent.traverse(torch.zeros(5), [0, 5], [1.0])
    with pytest.raises(ValueError, match=r"dims\[0\].*-1"):
        latent.traverse(torch.zeros(5), [-1], [1.0])
    with pytest.raises(ValueError, match=r"one code of shape \(latent_dim,\)"):
        latent.traverse(torch.zeros(2, 5), [0], [1.0])
    with pytest.raises(ValueError, match="values must be finite"):
        latent.traverse(torch.zeros(5), [0], [math.inf])


# --- codes, PCA, t-SNE ------------------------------------------------------------------------


def test_codes_are_the_exact_posterior_means_of_the_linear_gaussian_model():
    model = LinearGaussian.random(data_dim=6, latent_dim=2)
    x = model.sample(25)
    got = latent.codes(model.vae(), x, batch_size=7)
    torch.testing.assert_close(got, model.posterior(x).mean)
    assert not got.requires_grad


def test_codes_of_a_flow_guide_are_its_location():
    vae = small_vae()
    vae.encoder = InverseAutoregressiveFlow(MLP(12, [16]), 3)
    x = binary_data(9)
    torch.testing.assert_close(latent.codes(vae, x, batch_size=4), location(vae.encoder(x)))


def test_pca_of_points_on_a_line_puts_all_variance_on_the_first_axis():
    t = torch.linspace(-2, 3, 50, dtype=torch.float64)
    direction = torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0], dtype=torch.float64)
    projected, ratio = latent.pca(t[:, None] * direction + 7.0, k=2)
    torch.testing.assert_close(ratio, torch.tensor([1.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(projected[:, 0], (t - t.mean()) * direction.norm())
    torch.testing.assert_close(projected[:, 1], torch.zeros(50, dtype=torch.float64))


def test_pca_of_decorrelated_data_recovers_its_variances():
    g = torch.Generator().manual_seed(0)
    # orthonormal centred columns, scaled, then rotated: the principal axes are known
    columns = torch.randn(100, 4, generator=g, dtype=torch.float64)
    columns = torch.linalg.qr(columns - columns.mean(0)).Q
    rotation = torch.linalg.qr(torch.randn(4, 4, generator=g, dtype=torch.float64)).Q
    scales = torch.tensor([3.0, 2.0, 1.0, 0.5], dtype=torch.float64)
    projected, ratio = latent.pca(columns * scales @ rotation.T, k=3)
    torch.testing.assert_close(ratio, scales[:3] ** 2 / (scales**2).sum())
    torch.testing.assert_close(projected.abs(), (columns * scales)[:, :3].abs())


def test_pca_refuses_more_components_than_the_codes_have():
    with pytest.raises(ValueError, match=r"k must be at most min\(N, latent_dim\) = 2"):
        latent.pca(torch.randn(10, 2), k=3)
    with pytest.raises(ValueError, match=r"codes must have shape \(N, latent_dim\) with N >= 2"):
        latent.pca(torch.randn(1, 4))


def test_embed_by_pca_is_the_first_two_components():
    z = torch.randn(30, 5)
    torch.testing.assert_close(latent.embed(z, "pca"), latent.pca(z, 2)[0])


def test_tsne_gives_two_coordinates_per_code_and_repeats_with_a_seed():
    z = torch.randn(20, 6)
    a, b = latent.embed(z, "tsne", seed=3), latent.embed(z, "tsne", seed=3)
    assert a.shape == (20, 2) and a.dtype == z.dtype
    torch.testing.assert_close(a, b)
    assert latent.embed(z[:4], "tsne").shape == (4, 2)  # perplexity clipped to (N - 1) / 3


def test_embed_refuses_unknown_methods_and_explains_a_missing_scikit_learn(monkeypatch):
    with pytest.raises(ValueError, match=r"method must be one of \('pca', 'tsne'\)"):
        latent.embed(torch.randn(5, 3), "umap")
    monkeypatch.setitem(sys.modules, "sklearn.manifold", None)
    with pytest.raises(ImportError, match="t-SNE needs scikit-learn"):
        latent.embed(torch.randn(5, 3), "tsne")


# --- the aggregate posterior ------------------------------------------------------------------


def test_aggregate_kl_of_a_guide_that_ignores_x_matches_the_closed_form():
    loc, scale = torch.tensor([1.0, -0.5, 0.0]), torch.tensor([0.5, 1.5, 1.0])
    vae = _with_guide(FixedGuide(loc, scale))
    got = latent.aggregate_kl(vae, binary_data(30), num_samples=4000)
    exact = 0.5 * (scale**2 + loc**2 - 1).sum() - scale.log().sum()
    assert abs(got.kl - exact.item()) < 4 * got.standard_error
    assert got.mutual_information == pytest.approx(0.0, abs=1e-5)
    assert got.average_kl == pytest.approx(got.kl, abs=1e-5)
    assert (got.num_samples, got.num_examples) == (4000, 30)


def test_aggregate_kl_is_zero_when_the_prior_is_the_aggregate_posterior():
    loc, scale = torch.tensor([1.0, -0.5]), torch.tensor([0.5, 1.5])
    vae = _with_guide(FixedGuide(loc, scale))
    vae.prior = LearnedNormal(2)
    with torch.no_grad():
        vae.prior.loc.copy_(loc)
        vae.prior.raw_scale.copy_(torch.log(torch.expm1(scale - vae.prior.min_scale)))
    assert latent.aggregate_kl(vae, binary_data(10)).kl == pytest.approx(0.0, abs=1e-5)


def test_mutual_information_reaches_log_n_for_posteriors_that_do_not_overlap():
    x = torch.eye(12)[:10]  # ten distinct inputs
    got = latent.aggregate_kl(_with_guide(SharpGuide(12, 3)), x, num_samples=500)
    assert got.mutual_information == pytest.approx(math.log(10), abs=1e-4)


@pytest.mark.parametrize("prior", ["standard", "learned", "mixture", "vamp", "flow"])
def test_mutual_information_lies_between_zero_and_log_n_for_any_prior(prior):
    vae = small_vae()
    vae.prior = {
        "standard": lambda: StandardNormal(3),
        "learned": lambda: LearnedNormal(3),
        "mixture": lambda: MixtureOfGaussians(3, 4),
        "vamp": lambda: VampPrior(vae.encoder, num_pseudo_inputs=5),
        "flow": lambda: FlowPrior(3),
    }[prior]()
    got = latent.aggregate_kl(vae, binary_data(40), num_samples=300, batch_size=16)
    assert 0 < got.mutual_information <= math.log(40)
    assert got.average_kl == pytest.approx(got.mutual_information + got.kl, abs=1e-4)
    assert math.isfinite(got.kl) and got.standard_error > 0


def test_the_average_kl_agrees_with_its_closed_form():
    vae, x = small_vae(), binary_data(40)
    got = latent.aggregate_kl(vae, x, num_samples=4000)
    _, kl = evaluate.elbo_terms(vae.model, vae.guide, x)
    assert got.average_kl == pytest.approx(kl.mean().item(), rel=0.05)


def test_aggregate_kl_leaves_the_global_random_stream_alone_and_repeats_with_its_seed():
    vae, x = small_vae(), binary_data(20)
    state = torch.get_rng_state()
    first = latent.aggregate_kl(vae, x, num_samples=50, seed=4)
    assert torch.equal(torch.get_rng_state(), state)
    assert latent.aggregate_kl(vae, x, num_samples=50, seed=4) == first
    assert latent.aggregate_kl(vae, x, num_samples=50, seed=5) != first


def test_aggregate_kl_refuses_bad_input():
    vae = small_vae()
    with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 2\*\*32\)"):
        latent.aggregate_kl(vae, binary_data(5), seed=-1)
    with pytest.raises(ValueError, match="num_samples must be a positive integer"):
        latent.aggregate_kl(vae, binary_data(5), num_samples=0)
    with pytest.raises(ValueError, match="event shape"):
        latent.aggregate_kl(vae, torch.rand(5, 7))
    hvae = HierarchicalVAE.mlp(12, [([8], 3), ([8], 2)])
    with pytest.raises(ValueError, match="one latent layer"):
        latent.aggregate_kl(hvae, binary_data(5))


def test_samples_of_the_aggregate_posterior_come_from_the_posteriors_of_x():
    loc, scale = torch.tensor([2.0, -1.0]), torch.tensor([0.5, 0.1])
    z = latent.sample_aggregate_posterior(FixedGuide(loc, scale), torch.rand(4, 3), 20000)
    assert z.shape == (20000, 2)
    torch.testing.assert_close(z.mean(0), loc, atol=0.02, rtol=0)
    torch.testing.assert_close(z.std(0), scale, atol=0.02, rtol=0)
    # two sharp posteriors: half the draws at each
    x = torch.eye(12)[:2]
    guide = SharpGuide(12, 3)
    z = latent.sample_aggregate_posterior(
        guide, x, 2000, generator=torch.Generator().manual_seed(0)
    )
    nearest = torch.cdist(z, x @ guide.weight.T).argmin(1)
    assert abs(nearest.float().mean().item() - 0.5) < 0.05


def test_sampling_with_a_generator_leaves_the_global_stream_alone():
    encoder, x = small_vae().encoder, binary_data(8)
    state = torch.get_rng_state()
    draws = [
        latent.sample_aggregate_posterior(
            encoder, x, 30, generator=torch.Generator().manual_seed(1)
        )
        for _ in range(2)
    ]
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(draws[0], draws[1])
    with pytest.raises(TypeError, match="generator must be a torch.Generator"):
        latent.sample_aggregate_posterior(small_vae().encoder, binary_data(8), 3, generator=1)


# --- KL per dimension -------------------------------------------------------------------------


def test_kl_per_dimension_sums_to_the_analytic_kl():
    vae, x = small_vae(), binary_data(30)
    per_unit = latent.kl_per_dimension(vae, x, batch_size=7)
    _, kl = evaluate.elbo_terms(vae.model, vae.guide, x)
    assert per_unit.shape == (30, 3)
    torch.testing.assert_close(per_unit.sum(1), kl)


def test_kl_per_dimension_with_a_learned_prior_sums_to_its_closed_form():
    vae, x = small_vae(), binary_data(10)
    vae.prior = LearnedNormal(3, init_scale=0.7)
    with torch.no_grad():
        vae.prior.loc.copy_(torch.tensor([0.3, -1.0, 2.0]))
        torch.testing.assert_close(
            latent.kl_per_dimension(vae, x).sum(1), vae.prior.kl_from(vae.encoder(x))
        )


def test_kl_per_dimension_of_a_full_covariance_guide_is_at_most_the_whole_kl():
    vae, x = small_vae(), binary_data(10)
    vae.encoder = FullCovarianceNormal(MLP(12, [16]), 3)
    with torch.no_grad():
        q = vae.encoder(x)
        marginal = dist.Normal(q.loc, q.covariance_matrix.diagonal(dim1=-2, dim2=-1).sqrt())
        expected = torch.distributions.kl_divergence(marginal, dist.Normal(0.0, 1.0))
        whole = vae.prior.kl_from(q)
    got = latent.kl_per_dimension(vae, x)
    torch.testing.assert_close(got, expected)
    assert (got.sum(1) <= whole + 1e-6).all()


def test_collapsed_units_have_no_kl_and_are_not_active():
    vae, x = _with_guide(PartlyCollapsed(active=2, collapsed=3)), binary_data(40)
    per_unit = latent.kl_per_dimension(vae, x)
    expected = 0.5 * (0.25 + 2.25 - 1 - math.log(0.25))
    torch.testing.assert_close(per_unit[:, :2], torch.full((40, 2), expected))
    torch.testing.assert_close(per_unit[:, 2:], torch.zeros(40, 3))
    assert evaluate.active_units(vae.guide, x) == 2


def test_kl_per_dimension_refuses_guides_and_priors_without_normal_marginals():
    vae, x = small_vae(), binary_data(5)
    vae.encoder = InverseAutoregressiveFlow(MLP(12, [16]), 3)
    with pytest.raises(ValueError, match="InverseAutoregressiveFlow with prior StandardNormal"):
        latent.kl_per_dimension(vae, x)
    vae = small_vae()
    vae.prior = VampPrior(vae.encoder, num_pseudo_inputs=3)
    with pytest.raises(ValueError, match="DiagonalNormal with prior VampPrior"):
        latent.kl_per_dimension(vae, x)
    with pytest.raises(ValueError, match="one latent layer"):
        latent.kl_per_dimension(HierarchicalVAE.mlp(12, [([8], 3), ([8], 2)]), x)


# --- the decoded grid -------------------------------------------------------------------------


def test_decoded_grid_decodes_every_grid_point():
    vae = small_vae(latent_dim=2)
    images = latent.decoded_grid(vae, limit=2.0, size=4)
    _, points = latent.grid(2.0, 4)
    assert images.shape == (16, 12)
    torch.testing.assert_close(images, vae.decode(points).mean.detach())
    with pytest.raises(ValueError, match="latent_dim 2.*got latent_dim 3"):
        latent.decoded_grid(small_vae(latent_dim=3))
    with pytest.raises(ValueError, match="limit must be a finite number > 0"):
        latent.decoded_grid(vae, limit=-1.0)
