"""Inference gaps, local guides and NUTS posteriors against the linear-Gaussian closed forms."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import binary_data, small_vae
from torch import nn

import pyro_vae as pv
from pyro_vae.analysis import gaps
from pyro_vae.models import guides, nets
from pyro_vae.models._normal import inverse_softplus
from pyro_vae.models.linear_gaussian import LinearGaussian

DATA, LATENT = 5, 2


@pytest.fixture(scope="module")
def model() -> LinearGaussian:
    """A linear-Gaussian model whose posterior is strongly correlated (latent columns align)."""
    g = torch.Generator().manual_seed(0)
    column = torch.randn(DATA, generator=g, dtype=torch.float64)
    weight = torch.stack(
        [column, column + 0.4 * torch.randn(DATA, generator=g, dtype=torch.float64)], 1
    )
    return LinearGaussian(weight, torch.randn(DATA, generator=g, dtype=torch.float64), 0.6)


@pytest.fixture(scope="module")
def data(model) -> torch.Tensor:
    return model.sample(5, seed=1)


def near_posterior(model: LinearGaussian, family: type, *, seed: int = 0) -> guides.Guide:
    """A guide of ``family`` whose q(z|x) is p(z|x) with its mean map and scales perturbed.

    Close to the posterior, so its log-weights vary little and Monte Carlo checks are tight;
    off it by about half a nat, so the amortisation gap is not zero.
    """
    body = nn.Linear(DATA, DATA).double()
    guide = family(body, latent_dim=LATENT).double()
    w, b, s = model.weight, model.bias, model.noise_scale
    precision = w.T @ w + s**2 * torch.eye(LATENT, dtype=w.dtype)
    slope = torch.linalg.solve(precision, w.T)  # posterior mean = slope (x - b)
    factor = torch.linalg.cholesky(1.5 * s**2 * torch.inverse(precision))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        body.weight.copy_(torch.eye(DATA))
        body.bias.zero_()
        guide.head.weight.zero_()
        guide.head.weight[:LATENT] = slope + 0.1 * torch.randn(
            slope.shape, generator=g, dtype=w.dtype
        )
        guide.head.bias.zero_()
        guide.head.bias[:LATENT] = -slope @ b + 0.1
        diagonal = (
            factor.diagonal() if family is guides.FullCovarianceNormal else factor.norm(dim=1)
        )
        guide.head.bias[LATENT : 2 * LATENT] = torch.tensor(
            [inverse_softplus(v - guide.min_scale) for v in diagonal.tolist()]
        )
        if family is guides.FullCovarianceNormal:
            guide.head.bias[2 * LATENT :] = factor[1, 0]
    return guide


def closed_form_min_diagonal_kl(model: LinearGaussian, x: torch.Tensor) -> torch.Tensor:
    """min over diagonal Gaussians q of KL(q ‖ p(z|x)) = ½ (Σ_i log Λ_ii - log det Λ)."""
    precision = torch.inverse(model.posterior(x).covariance_matrix)
    return 0.5 * (precision.diagonal(dim1=-2, dim2=-1).log().sum(-1) - torch.logdet(precision))


def elbo_stderr(vae: pv.VAE, guide, x: torch.Tensor, k: int) -> torch.Tensor:
    """The Monte Carlo standard error of a k-sample ELBO estimate, per example."""
    return pv.evaluate.log_weights(vae.model, guide, x, 2000).std(0) / math.sqrt(k)


# --- the guides' local family -------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: guides.DiagonalNormal(nets.MLP(6, [8]), latent_dim=3),
        lambda: guides.FullCovarianceNormal(nets.MLP(6, [8]), latent_dim=3),
        lambda: guides.InverseAutoregressiveFlow(nets.MLP(6, [8]), latent_dim=3),
        lambda: guides.AffineCouplingFlow(nets.MLP(6, [8]), latent_dim=3),
    ],
    ids=["diagonal", "full", "iaf", "coupling"],
)
def test_a_guide_is_its_family_at_its_local_parameters(make):
    guide = make().double()
    x = torch.randn(4, 6, dtype=torch.float64)
    z = torch.randn(7, 4, 3, dtype=torch.float64)
    params = guide.local_parameters(x)
    assert params.shape[0] == 4 and params.dim() == 2
    q = guide.distribution(params)
    assert q.batch_shape == (4,) and q.event_shape == (3,)
    torch.testing.assert_close(q.log_prob(z), guide(x).log_prob(z))
    with pytest.raises(ValueError, match=r"params must have shape \(B, "):
        guide.distribution(params[:, :-1])


def test_a_guide_without_a_local_family_says_what_to_implement(model):
    with pytest.raises(NotImplementedError, match="local_parameters"):
        pv.linear_gaussian.ExactPosterior(model).local_parameters(torch.zeros(1, DATA))
    with pytest.raises(TypeError, match="no local family"):
        gaps.fit_local_guides(model.vae(), torch.zeros(2, DATA, dtype=torch.float64))


# --- the gaps against closed forms ----------------------------------------------------------


def test_full_covariance_has_no_approximation_gap_and_the_closed_form_amortisation_gap(model, data):
    vae = model.vae(guide=near_posterior(model, guides.FullCovarianceNormal))
    exact = model.log_marginal(data)
    result = gaps.inference_gaps(vae, data, log_px=exact, elbo_samples=4000)
    with torch.no_grad():
        kl_local = model.kl_to_posterior(result.local_guide.distribution(), data)
        kl_amortised = model.kl_to_posterior(vae.encoder(data), data)
    assert kl_local.max() < 1e-3
    assert result.approximation_gap.abs().max() < 1e-3
    assert kl_amortised.min() > 0.1  # a gap worth measuring
    tolerance = 5 * elbo_stderr(vae, vae.guide, data, 4000) + 1e-3
    assert ((result.amortisation_gap - kl_amortised).abs() < tolerance).all()
    torch.testing.assert_close(result.inference_gap, exact - result.elbo_amortised)
    torch.testing.assert_close(
        result.approximation_gap + result.amortisation_gap, result.inference_gap
    )
    # q* is the exact posterior: its importance weights all equal p(x)
    estimated = gaps.inference_gaps(vae, data, local_guide=result.local_guide, num_samples=100)
    assert estimated.log_px_source == "local"
    torch.testing.assert_close(estimated.log_px, exact, atol=1e-4, rtol=0)


def test_diagonal_approximation_gap_is_the_closed_form_best_diagonal_kl(model, data):
    vae = model.vae(guide=near_posterior(model, guides.DiagonalNormal))
    best = closed_form_min_diagonal_kl(model, data)
    assert best.min() > 0.1  # a correlated posterior: the diagonal family misses it
    # more particles than the default: a correlated posterior makes the gradients noisy
    local = gaps.fit_local_guides(vae, data, num_particles=16)
    with torch.no_grad():
        kl = model.kl_to_posterior(local.distribution(), data)
    assert (kl >= best - 1e-9).all()  # nothing in the family beats the closed-form optimum
    assert (kl - best).max() < 0.02
    result = gaps.inference_gaps(
        vae, data, local_guide=local, log_px=model.log_marginal(data), elbo_samples=4000
    )
    tolerance = 5 * elbo_stderr(vae, local, data, 4000) + 0.02
    assert ((result.approximation_gap - best).abs() < tolerance).all()


def test_gaps_are_nonnegative_and_the_vae_is_left_as_it_was():
    vae, x = small_vae(), binary_data(6)
    vae.likelihood.net.layers[0].bias.requires_grad_(False)  # a flag that must survive
    flags = {name: p.requires_grad for name, p in vae.named_parameters()}
    before = {name: p.detach().clone() for name, p in vae.named_parameters()}
    rng = torch.get_rng_state()
    result = gaps.inference_gaps(vae, x, num_samples=500, elbo_samples=500)
    assert torch.equal(torch.get_rng_state(), rng)
    assert (result.approximation_gap > -0.05).all()
    assert (result.amortisation_gap > 0.1).all()  # an untrained encoder is far from q*
    for name, p in vae.named_parameters():
        assert torch.equal(p, before[name]) and p.grad is None, name
        assert p.requires_grad == flags[name], name
    summary = result.summary()
    assert summary["amortisation_gap"][0] == pytest.approx(result.amortisation_gap.mean().item())
    assert "amortisation gap" in result.markdown("diag")
    again = gaps.fit_local_guides(vae, x)
    torch.testing.assert_close(again.params, result.local_guide.params)  # seed 0 both times


def test_requires_grad_is_restored_when_the_fit_fails(monkeypatch):
    vae, x = small_vae(), binary_data(4)

    def broken(*args, **kwargs):
        raise RuntimeError("decoder failed")

    monkeypatch.setattr(vae.likelihood, "log_prob", broken)
    with pytest.raises(RuntimeError, match="decoder failed"):
        gaps.fit_local_guides(vae, x)
    assert all(p.requires_grad for p in vae.parameters())


def exact_local_guide(model: LinearGaussian, vae: pv.VAE, x: torch.Tensor) -> gaps.LocalGuide:
    """The local guide whose q*(z|x_n) is the exact posterior, for a full-covariance guide."""
    posterior = model.posterior(x)
    tril = posterior.scale_tril
    raw = (tril.diagonal(dim1=-2, dim2=-1) - vae.encoder.min_scale).expm1().log()
    params = torch.cat([posterior.mean, raw, tril[:, 1:, :1].flatten(1)], dim=-1)
    return gaps.LocalGuide(vae.encoder, x, params)


def test_a_local_guide_is_a_pyro_guide_for_its_data_and_blocks_of_it(model, data):
    vae = model.vae(guide=near_posterior(model, guides.FullCovarianceNormal))
    local = exact_local_guide(model, vae, data)
    exact = model.log_marginal(data)
    with torch.no_grad():
        assert model.kl_to_posterior(local.distribution(), data).abs().max() < 1e-10
    # every weight of the exact posterior is p(x), whatever the batches
    elbo = pv.evaluate.elbo(vae.model, local, data, 10, batch_size=2)
    torch.testing.assert_close(elbo, exact, atol=1e-6, rtol=0)
    log_px = pv.evaluate.log_likelihood(vae.model, local, data[1:4], 10)
    torch.testing.assert_close(log_px, exact[1:4], atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="neither that x nor a block"):
        local(data.flip(0))
    with pytest.raises(ValueError, match="neither that x nor a block"):
        local(torch.zeros(2, DATA, dtype=torch.float64))


def test_flow_local_guides_improve_on_the_amortised_elbo(model, data):
    guide = guides.AffineCouplingFlow(nets.MLP(DATA, [8]), latent_dim=LATENT, hidden=[8]).double()
    vae = model.vae(guide=guide)
    result = gaps.inference_gaps(
        vae, data, log_px=model.log_marginal(data), fit_options={"steps": 300}
    )
    assert (result.amortisation_gap > 0).all()
    assert (result.approximation_gap > -0.05).all()


# --- NUTS ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nuts(model, data):
    vae = model.vae()
    x = data[:2]
    before = {name: p.detach().clone() for name, p in vae.named_parameters()}
    samples = gaps.nuts_posterior(vae, x, num_samples=400, warmup_steps=200)
    return vae, x, samples, before


def test_nuts_samples_have_the_exact_posterior_moments(model, nuts):
    vae, x, samples, before = nuts
    assert samples.shape == (2, 400, LATENT)
    posterior = model.posterior(x)
    std = posterior.covariance_matrix.diagonal(dim1=-2, dim2=-1).sqrt()
    assert ((samples.mean(1) - posterior.mean).abs() < 0.3 * std).all()
    for n in range(2):
        covariance = torch.cov(samples[n].T)
        torch.testing.assert_close(
            covariance, posterior.covariance_matrix[n], rtol=0.35, atol=0.05 * std.max().item()
        )
    for name, p in vae.named_parameters():
        assert torch.equal(p, before[name]) and p.grad is None and p.requires_grad, name


def test_inclusive_kl_is_zero_for_the_exact_posterior_and_closed_form_otherwise(model, nuts):
    vae, x, samples, _ = nuts
    exact = vae.encoder(x)
    comparison = gaps.compare_with_nuts(vae, x, samples)
    assert comparison.inclusive_kl_amortised.abs().max() < 1e-6
    torch.testing.assert_close(comparison.amortised_mean, exact.mean)
    assert comparison.mean_error().shape == (2,) and comparison.std_ratio().shape == (2,)
    # a Gaussian q_φ off the posterior: KL(p ‖ q_φ) in closed form; q* is the posterior
    vae = model.vae(guide=near_posterior(model, guides.FullCovarianceNormal))
    local = gaps.fit_local_guides(vae, x)
    comparison = gaps.compare_with_nuts(vae, x, samples, local_guide=local)
    with torch.no_grad():
        q = vae.encoder(x)
        closed = torch.distributions.kl_divergence(model.posterior(x), q)
        z = samples.transpose(0, 1)
        spread = (model.posterior(x).log_prob(z) - q.log_prob(z)).std(0)
    assert closed.min() > 0.1
    # 400 correlated NUTS draws count as about 100 independent ones
    tolerance = 4 * spread / math.sqrt(100)
    assert ((comparison.inclusive_kl_amortised - closed).abs() < tolerance).all()
    assert comparison.inclusive_kl_local.abs().max() < 0.01
    assert "KL(p ‖ q*)" in comparison.markdown()


# --- errors -------------------------------------------------------------------------------


def test_errors_name_the_argument(model, data, nuts):
    vae = model.vae(guide=near_posterior(model, guides.DiagonalNormal))
    hierarchical = pv.HierarchicalVAE.mlp(DATA, [([4], 2), ([4], 2)])
    with pytest.raises(TypeError, match="HierarchicalVAE has 2 stochastic layers"):
        gaps.fit_local_guides(hierarchical, torch.zeros(2, DATA))
    with pytest.raises(TypeError, match="HierarchicalVAE"):
        gaps.nuts_posterior(hierarchical, torch.zeros(2, DATA))
    with pytest.raises(TypeError, match="vae must be a pyro_vae.VAE"):
        gaps.inference_gaps(vae.model, data)
    with pytest.raises(ValueError, match="x has event shape"):
        gaps.fit_local_guides(vae, data[:, :3])
    with pytest.raises(ValueError, match="x has event shape"):
        gaps.nuts_posterior(vae, data[:, :3])
    for name, value in (("steps", 0), ("lr", -1.0), ("num_particles", 2.5)):
        with pytest.raises(ValueError, match=name):
            gaps.fit_local_guides(vae, data, **{name: value})
    with pytest.raises(ValueError, match=r"log_px must have shape \(5,\)"):
        gaps.inference_gaps(vae, data, log_px=torch.zeros(4, dtype=torch.float64))
    with pytest.raises(ValueError, match="log_px_guide"):
        gaps.inference_gaps(vae, data, log_px_guide="best")
    with pytest.raises(TypeError, match="other than seed"):
        gaps.inference_gaps(vae, data, fit_options={"seed": 1})
    with pytest.raises(ValueError, match=r"params must have shape \(5, P\)"):
        gaps.LocalGuide(vae.encoder, data, torch.zeros(4, 4, dtype=torch.float64))
    local = gaps.fit_local_guides(vae, data[:2], steps=50)
    with pytest.raises(ValueError, match="neither that x nor a block"):
        gaps.inference_gaps(vae, data, local_guide=local)
    _, x, samples, _ = nuts
    with pytest.raises(ValueError, match=r"samples must have shape \(2, S, 2\)"):
        gaps.compare_with_nuts(vae, x, samples[:1])
    with pytest.raises(ValueError, match="target_accept_prob"):
        gaps.nuts_posterior(vae, x, target_accept_prob=1.5)


# --- figures ------------------------------------------------------------------------------


def test_figures_are_written(model, data, nuts, tmp_path):
    vae = model.vae(guide=near_posterior(model, guides.DiagonalNormal))
    result = gaps.inference_gaps(vae, data, num_samples=50, elbo_samples=50)
    written = [
        pv.plots.save_inference_gaps(result, tmp_path / "one.png"),
        pv.plots.save_inference_gaps({"a": result, "b": result}, tmp_path / "two.png"),
    ]
    _, x, samples, _ = nuts
    written.append(
        pv.plots.save_posterior_comparison(
            vae, x, samples, tmp_path / "posterior.png", local_guide=result.local_guide
        )
    )
    written.append(
        pv.plots.save_posterior_comparison(
            vae, x, samples, tmp_path / "images.png", dims=(1, 0), image_shape=(1, 1, DATA)
        )
    )
    for path in written:
        assert path.read_bytes()[:4] == b"\x89PNG", path


def test_posterior_comparison_names_latent_units_from_one(nuts, tmp_path, monkeypatch):
    figures = []
    monkeypatch.setattr(pv.plots.gaps, "save_figure", lambda fig, path: figures.append(fig))
    vae, x, samples, _ = nuts
    pv.plots.save_posterior_comparison(vae, x, samples, tmp_path / "p.png", dims=(1, 0))
    panels = [ax for ax in figures[0].axes if ax.get_xlabel()]
    assert {(ax.get_xlabel(), ax.get_ylabel()) for ax in panels} == {("z₂", "z₁")}


def test_figures_refuse_bad_input_before_writing(model, nuts, tmp_path):
    vae, x, samples, _ = nuts
    path = tmp_path / "figure.png"
    with pytest.raises(TypeError, match="gaps must be an InferenceGaps"):
        pv.plots.save_inference_gaps([1, 2], path)
    with pytest.raises(ValueError, match="dims must be two different"):
        pv.plots.save_posterior_comparison(vae, x, samples, path, dims=(0, 0))
    with pytest.raises(ValueError, match="samples must have shape"):
        pv.plots.save_posterior_comparison(vae, x, samples[:, :, :1], path)
    with pytest.raises(ValueError, match="image_shape"):
        pv.plots.save_posterior_comparison(vae, x, samples, path, image_shape=(1, 2, 2))
    with pytest.raises(ValueError, match="image format"):
        pv.plots.save_posterior_comparison(vae, x, samples, tmp_path / "figure.txt")
    one_dim = LinearGaussian.random(DATA, 1).vae()
    with pytest.raises(ValueError, match="latent_dim must be >= 2"):
        pv.plots.save_posterior_comparison(
            one_dim, x, torch.zeros(2, 5, 1, dtype=torch.float64), path
        )
    assert not path.exists()
