"""Applications against known answers: anomaly scores on the linear-Gaussian model, ROC
against scikit-learn and the Mann–Whitney statistic, corruptions by construction, and
denoising with a projection autoencoder whose every error has a closed form."""

from __future__ import annotations

import math

import numpy as np
import pyro.distributions as dist
import pytest
import torch
from conftest import empty_guide, shift_model
from matplotlib.image import imread
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sklearn_roc_curve
from torch import nn

from pyro_vae import plots
from pyro_vae.analysis import applications
from pyro_vae.analysis.applications import corrupt, denoise, denoising_errors, roc_auc, roc_curve
from pyro_vae.models.guides import Guide
from pyro_vae.models.linear_gaussian import LinearGaussian

# --------------------------------------------------------------------------- anomaly scores


@pytest.fixture
def ppca():
    model = LinearGaussian.random(data_dim=6, latent_dim=2, noise_scale=0.5, seed=1)
    return model, model.sample(60, seed=2)


@pytest.mark.parametrize("score", applications.SCORES)
def test_scores_are_the_exact_negative_log_likelihood_with_the_exact_posterior(ppca, score):
    """With q(z|x) = p(z|x) every weight is p(x): both scores are -log p(x) exactly."""
    model, x = ppca
    vae = model.vae()
    scores = applications.anomaly_scores(vae.model, vae.guide, x, num_samples=7, score=score)
    torch.testing.assert_close(scores, -model.log_marginal(x), atol=1e-4, rtol=0)


class WidenedPosterior(Guide):
    """The exact posterior with its standard deviations doubled: KL(q ‖ p(z|x)) is known."""

    def __init__(self, model: LinearGaussian) -> None:
        super().__init__(nn.Identity(), model.latent_dim)
        self.model = model

    def forward(self, x):
        exact = self.model.posterior(x)
        return dist.Normal(exact.mean, 2 * exact.stddev).to_event(1)


def test_elbo_score_exceeds_the_likelihood_score_by_the_guides_kl(ppca):
    """-ELBO = -log p(x) + KL(q(z|x) ‖ p(z|x)); importance sampling removes the KL."""
    model, x = ppca
    vae = model.vae(WidenedPosterior(model))
    kl = model.kl_to_posterior(vae.encoder(x), x)
    by_elbo = applications.anomaly_scores(vae.model, vae.guide, x, num_samples=4000, score="elbo")
    by_likelihood = applications.anomaly_scores(vae.model, vae.guide, x, num_samples=4000)
    truth = -model.log_marginal(x)
    assert (by_elbo - truth - kl).abs().mean() < 0.05 * kl.mean()
    assert (by_likelihood - truth).abs().mean() < 0.05 * kl.mean()


def test_data_unlike_the_model_scores_higher_and_is_separated(ppca):
    model, x = ppca
    vae = model.vae()
    far = x + 3.0
    normal = applications.anomaly_scores(vae.model, vae.guide, x, num_samples=5)
    anomalous = applications.anomaly_scores(vae.model, vae.guide, far, num_samples=5)
    assert anomalous.mean() > normal.mean() + 5
    exact_auc = roc_auc(-model.log_marginal(x), -model.log_marginal(far))
    assert roc_auc(normal, anomalous) == pytest.approx(exact_auc, abs=1e-12)
    assert exact_auc > 0.95


def test_scores_of_any_pyro_program_pair():
    """A plain Pyro model without latents, x ~ N(b, 1) with b = 0: -log p(x) exactly."""
    x = torch.randn(9, 3)
    scores = applications.anomaly_scores(shift_model, empty_guide, x, num_samples=3)
    torch.testing.assert_close(scores, -dist.Normal(0.0, 1.0).log_prob(x).sum(-1))


def test_anomaly_score_arguments_are_named(ppca):
    model, x = ppca
    vae = model.vae()
    with pytest.raises(ValueError, match="score must be one of 'log-likelihood', 'elbo'"):
        applications.anomaly_scores(vae.model, vae.guide, x, score="kl")
    with pytest.raises(ValueError, match="num_samples must be a positive integer"):
        applications.anomaly_scores(vae.model, vae.guide, x, num_samples=0)
    with pytest.raises(ValueError, match="event shape"):
        applications.anomaly_scores(vae.model, vae.guide, x[:, :4])


# --------------------------------------------------------------------------- ROC


def _tied_scores(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    normal = torch.randint(0, 10, (50,), generator=g).double()
    anomalous = torch.randint(3, 13, (37,), generator=g).double()
    return normal, anomalous


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_roc_matches_scikit_learn_on_scores_with_ties(seed):
    normal, anomalous = _tied_scores(seed)
    labels = np.r_[np.zeros(len(normal)), np.ones(len(anomalous))]
    scores = np.r_[normal.numpy(), anomalous.numpy()]
    fpr, tpr, thresholds = roc_curve(normal, anomalous)
    ref_fpr, ref_tpr, ref_thresholds = sklearn_roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr.numpy(), ref_fpr, atol=1e-15)
    np.testing.assert_allclose(tpr.numpy(), ref_tpr, atol=1e-15)
    np.testing.assert_array_equal(thresholds[1:].numpy(), ref_thresholds[1:])
    assert thresholds[0] == math.inf
    assert roc_auc(normal, anomalous) == pytest.approx(roc_auc_score(labels, scores), abs=1e-14)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_trapezoid_area_under_the_curve_is_the_auc(seed):
    normal, anomalous = _tied_scores(seed)
    fpr, tpr, _ = roc_curve(normal, anomalous)
    assert torch.trapezoid(tpr, fpr).item() == pytest.approx(roc_auc(normal, anomalous), abs=1e-14)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0, 0, 1, 1)
    assert (fpr.diff() >= 0).all() and (tpr.diff() >= 0).all()


def test_auc_is_the_mann_whitney_probability_by_brute_force():
    normal, anomalous = torch.randn(30).round(), torch.randn(20).add(0.5).round()
    pairs = anomalous[:, None] - normal[None, :]
    expected = ((pairs > 0).double().mean() + 0.5 * (pairs == 0).double().mean()).item()
    assert roc_auc(normal, anomalous) == pytest.approx(expected, abs=1e-14)


def test_roc_hand_cases():
    assert roc_auc([1.0, 2.0], [3.0, 4.0, 5.0]) == 1.0
    assert roc_auc([3.0, 4.0, 5.0], [1.0, 2.0]) == 0.0
    assert roc_auc([2.0, 2.0, 2.0], [2.0, 2.0]) == 0.5
    fpr, tpr, thresholds = roc_curve([2.0, 2.0, 2.0], [2.0, 2.0])
    assert fpr.tolist() == [0, 1] and tpr.tolist() == [0, 1]
    assert thresholds.tolist() == [math.inf, 2.0]
    fpr, tpr, _ = roc_curve(np.array([0.0, 1.0]), torch.tensor([2.0, 3.0]))
    assert fpr.tolist() == [0, 0, 0, 0.5, 1] and tpr.tolist() == [0, 0.5, 1, 1, 1]


@pytest.mark.parametrize(
    "normal, error, match",
    [
        ([], ValueError, "normal_scores must hold at least one score"),
        ([1.0, float("nan")], ValueError, "normal_scores holds 1 NaN"),
        (torch.zeros(2, 2), ValueError, r"normal_scores must be 1-D .* got shape \(2, 2\)"),
        (torch.tensor([True, False]), TypeError, "normal_scores must hold real numbers"),
        (["a", "b"], TypeError, "normal_scores must be a 1-D tensor or sequence"),
    ],
)
def test_bad_scores_are_named(normal, error, match):
    for function in (roc_curve, roc_auc):
        with pytest.raises(error, match=match):
            function(normal, [1.0])
    with pytest.raises(ValueError, match="anomalous_scores must hold at least one"):
        roc_auc([1.0], torch.tensor([]))


# --------------------------------------------------------------------------- corruption


def _images(n: int = 20, d: int = 48, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, d, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("kind", applications.KINDS)
def test_level_zero_leaves_the_images_intact(kind):
    x = _images()
    corrupted, mask = corrupt(x, kind, 0.0, image_shape=(3, 4, 4))
    assert torch.equal(corrupted, x) and mask.dtype == torch.bool and not mask.any()


@pytest.mark.parametrize("kind, fill", [("dropout", {0.0}), ("salt-and-pepper", {0.0, 1.0})])
def test_pixel_kinds_replace_exactly_the_fraction_asked(kind, fill):
    x = _images(200, 40)
    corrupted, mask = corrupt(x, kind, 0.3, generator=torch.Generator().manual_seed(1))
    assert corrupted.shape == x.shape and corrupted.dtype == x.dtype
    assert (mask.sum(1) == 12).all()
    assert set(corrupted[mask].unique().tolist()) == fill
    assert torch.equal(corrupted[~mask], x[~mask])
    if kind == "salt-and-pepper":
        assert corrupted[mask].mean().item() == pytest.approx(0.5, abs=0.03)


def test_gaussian_noise_has_the_level_as_standard_deviation_and_stays_in_range():
    x = torch.full((400, 50), 0.5)
    corrupted, mask = corrupt(x, "gaussian", 0.1, generator=torch.Generator().manual_seed(0))
    assert (corrupted - x).std().item() == pytest.approx(0.1, rel=0.02)
    assert torch.equal(mask, corrupted != x)
    black = torch.zeros(100, 50)
    corrupted, mask = corrupt(black, "gaussian", 0.5)
    assert corrupted.min() == 0 and corrupted.max() <= 1
    assert mask.float().mean().item() == pytest.approx(0.5, abs=0.03)  # half pushed below 0


def test_occlusion_is_one_square_patch_in_every_channel_at_random_places():
    x = torch.ones(300, 2 * 6 * 8)
    corrupted, mask = corrupt(x, "occlusion", 0.2, image_shape=(2, 6, 8))
    side = round(math.sqrt(0.2 * 48))  # 3
    patches = mask.reshape(300, 2, 6, 8)
    assert torch.equal(patches[:, 0], patches[:, 1])
    rows, cols = patches[:, 0].any(2), patches[:, 0].any(1)
    assert (rows.sum(1) == side).all() and (cols.sum(1) == side).all()
    assert (patches[:, 0].sum((1, 2)) == side * side).all()
    assert (corrupted[mask] == 0).all() and (corrupted[~mask] == 1).all()
    tops = rows.float().argmax(1)
    assert set(tops.tolist()) == set(range(6 - side + 1))
    whole, mask = corrupt(torch.ones(3, 1, 5, 7), "occlusion", 1.0, image_shape=(1, 5, 7))
    assert (mask.sum((1, 2, 3)) == 25).all()  # capped at the smaller side
    assert whole.shape == (3, 1, 5, 7)


@pytest.mark.parametrize("kind", applications.KINDS)
def test_a_seeded_generator_repeats_the_damage_and_leaves_the_global_stream(kind):
    x = _images()
    state = torch.get_rng_state()
    a = corrupt(x, kind, 0.4, image_shape=(3, 4, 4), generator=torch.Generator().manual_seed(5))
    b = corrupt(x, kind, 0.4, image_shape=(3, 4, 4), generator=torch.Generator().manual_seed(5))
    c = corrupt(x, kind, 0.4, image_shape=(3, 4, 4), generator=torch.Generator().manual_seed(6))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


@pytest.mark.parametrize(
    "x, kind, level, kwargs, error, match",
    [
        (None, "blur", 0.1, {}, ValueError, "kind must be one of 'gaussian', 'salt-and-pepper'"),
        (None, "dropout", 1.5, {}, ValueError, r"fraction of pixels in \[0, 1\], got 1.5"),
        (None, "dropout", -0.1, {}, ValueError, "fraction of pixels"),
        (None, "gaussian", -1.0, {}, ValueError, "standard deviation, a finite number >= 0"),
        (None, "gaussian", math.inf, {}, ValueError, "standard deviation"),
        (None, "gaussian", "0.1", {}, TypeError, "level must be a number"),
        (None, "occlusion", 0.1, {}, ValueError, r"needs image_shape=\(C, H, W\)"),
        (None, "occlusion", 0.1, {"image_shape": (1, 4, 4)}, ValueError, "holds 16 pixels"),
        (None, "dropout", 0.1, {"generator": 3}, TypeError, "generator must be a torch.Generator"),
        (torch.rand(4, 48) * 2, "dropout", 0.1, {}, ValueError, r"x must hold images .* \[0, 1\]"),
        (torch.zeros(4, 48, dtype=torch.long), "dropout", 0.1, {}, TypeError, "floating dtype"),
    ],
)
def test_bad_corruption_arguments_are_named(x, kind, level, kwargs, error, match):
    x = _images() if x is None else x
    with pytest.raises(error, match=match):
        corrupt(x, kind, level, **kwargs)


# --------------------------------------------------------------------------- denoising


@pytest.fixture
def subspace():
    """Data on a 4-D affine subspace of R^64 around 0.5, and a VAE that projects onto it.

    With orthonormal W and noise σ, the exact posterior mean is Wᵀ(x - b) / (1 + σ²), so
    reconstruct(x) = W Wᵀ (x - b) / (1 + σ²) + b: the identity on the clean data up to a
    shrinkage of 4e-6, and the orthogonal projection of anything else.
    """
    g = torch.Generator().manual_seed(0)
    weight, _ = torch.linalg.qr(torch.randn(64, 4, generator=g, dtype=torch.float64))
    model = LinearGaussian(weight, torch.full((64,), 0.5, dtype=torch.float64), 2e-3)
    z = 0.2 * torch.randn(400, 4, generator=g, dtype=torch.float64)
    clean = z @ weight.T + 0.5
    assert 0.1 < clean.min() and clean.max() < 0.9
    return model.vae(), clean


def test_denoise_projects_and_imputation_converges_to_the_clean_data(subspace):
    vae, clean = subspace
    torch.testing.assert_close(denoise(vae, clean), clean, atol=1e-5, rtol=0)
    corrupted, mask = corrupt(clean, "dropout", 0.25, generator=torch.Generator().manual_seed(0))
    once = denoise(vae, corrupted, mask=mask)
    assert torch.equal(once[~mask], clean[~mask])  # observed pixels are kept
    imputed = denoise(vae, corrupted, mask=mask, num_iterations=60)
    start, end = (corrupted - clean).pow(2).mean(), (imputed - clean).pow(2).mean()
    assert (once - clean).pow(2).mean() < start
    assert end < 1e-8 * start


def test_denoising_errors_follow_the_projection_closed_form(subspace):
    """Gaussian noise of variance s² keeps d/D of it after projection: MSE s² · 4/64."""
    vae, clean = subspace
    rows = denoising_errors(vae, clean, ["gaussian", "dropout"], [0.05, 0.0], num_iterations=60)
    assert [(r["kind"], r["level"]) for r in rows] == [
        ("gaussian", 0.0),
        ("gaussian", 0.05),
        ("dropout", 0.0),
        ("dropout", 0.05),
    ]
    for row in rows:
        assert tuple(row) == applications.DENOISING_COLUMNS
        if row["level"] == 0:
            assert row["corrupted_mse"] == 0 and row["changed_fraction"] == 0
            assert row["denoised_mse"] < 1e-12 and row["imputed_mse"] == 0
    noisy = rows[1]
    assert noisy["corrupted_mse"] == pytest.approx(0.05**2, rel=0.03)
    assert noisy["denoised_mse"] == pytest.approx(0.05**2 * 4 / 64, rel=0.15)
    dropped = rows[3]
    assert dropped["changed_fraction"] == pytest.approx(round(0.05 * 64) / 64)
    assert dropped["imputed_mse"] < 1e-8 * dropped["corrupted_mse"]


def test_denoising_errors_use_the_same_draws_for_every_call(subspace):
    vae, clean = subspace
    a = denoising_errors(vae, clean[:50], ["occlusion"], [0.3], image_shape=(1, 8, 8), seed=3)
    b = denoising_errors(vae, clean[:50], ["occlusion"], [0.3], image_shape=(1, 8, 8), seed=3)
    assert a == b
    assert a[0]["changed_fraction"] == pytest.approx(round(math.sqrt(0.3 * 64)) ** 2 / 64)


def test_denoising_arguments_are_named(subspace):
    vae, clean = subspace
    corrupted, mask = corrupt(clean, "dropout", 0.25)
    with pytest.raises(ValueError, match="num_iterations > 1 imputes missing pixels"):
        denoise(vae, corrupted, num_iterations=3)
    with pytest.raises(TypeError, match="mask must be a boolean tensor"):
        denoise(vae, corrupted, mask=mask.double())
    with pytest.raises(ValueError, match=r"mask must have the shape of x, \(400, 64\)"):
        denoise(vae, corrupted, mask=mask[:3])
    with pytest.raises(TypeError, match="vae must be a pyro_vae.VAE"):
        denoise(vae.model, corrupted)
    with pytest.raises(TypeError, match="dtype"):
        denoise(vae, corrupted.float())
    with pytest.raises(ValueError, match="kinds must be a non-empty list"):
        denoising_errors(vae, clean, [], [0.1])
    with pytest.raises(ValueError, match="kinds must be a non-empty list"):
        denoising_errors(vae, clean, "dropout", [0.1])
    with pytest.raises(ValueError, match="levels must be a non-empty list"):
        denoising_errors(vae, clean, ["dropout"], 0.1)
    with pytest.raises(ValueError, match="kind must be one of"):
        denoising_errors(vae, clean, ["dropout", "blur"], [0.1])
    with pytest.raises(ValueError, match="needs image_shape"):
        denoising_errors(vae, clean, ["occlusion"], [0.1])
    with pytest.raises(ValueError, match=r"clean must hold images with values in \[0, 1\]"):
        denoising_errors(vae, clean + 1, ["dropout"], [0.1])
    with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 2\*\*32\)"):
        denoising_errors(vae, clean, ["dropout"], [0.1], seed=-1)


# --------------------------------------------------------------------------- figures


def _is_png(path) -> bool:
    image = imread(path)
    return path.read_bytes()[:4] == b"\x89PNG" and image.shape[0] > 100 and np.ptp(image) > 0


def test_application_figures_are_written(tmp_path):
    normal, anomalous = torch.randn(200), torch.randn(150) + 1.5
    anomalous[0] = math.inf
    x = torch.rand(6, 16)
    rows = [
        {"kind": k, "level": lv, "corrupted_mse": lv, "denoised_mse": lv / 2, "imputed_mse": 0.1}
        for k in ("gaussian", "occlusion")
        for lv in (0.0, 0.2, 0.4)
    ]
    paths = [
        plots.save_anomaly_scores(normal, anomalous, tmp_path / "scores.png"),
        plots.save_denoising(x, x / 2, x / 3, (1, 4, 4), tmp_path / "one.png", title="t"),
        plots.save_denoising(
            x, {"a": x / 2, "b": x}, {"a": x, "b": x / 2}, (1, 4, 4), tmp_path / "two.png"
        ),
        plots.save_denoising_errors(rows, tmp_path / "errors.png"),
        plots.save_denoising_errors(
            [{k: v for k, v in r.items() if k != "imputed_mse"} for r in rows],
            tmp_path / "errors_without_imputation.png",
        ),
    ]
    for path in paths:
        assert _is_png(path), path


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda p: plots.save_anomaly_scores([], [1.0], p), ValueError, "normal_scores"),
        (
            lambda p: plots.save_anomaly_scores([1.0], [2.0], p, labels=("a",)),
            ValueError,
            "labels must be a pair",
        ),
        (
            lambda p: plots.save_denoising(torch.rand(3, 16), torch.rand(2, 16), {}, (1, 4, 4), p),
            ValueError,
            r"corrupted must have the shape of clean, \(3, 16\)",
        ),
        (
            lambda p: plots.save_denoising(
                torch.rand(3, 16), {"a": torch.rand(3, 16)}, {"b": torch.rand(3, 16)}, (1, 4, 4), p
            ),
            ValueError,
            "same labels",
        ),
        (
            lambda p: plots.save_denoising(
                torch.rand(3, 16), torch.rand(3, 16), torch.rand(3, 16), (1, 5, 5), p
            ),
            ValueError,
            "do not hold images of shape",
        ),
        (
            lambda p: plots.save_denoising_errors([{"kind": "dropout", "level": 0.1}], p),
            ValueError,
            r"rows\[0\] lacks the keys \['corrupted_mse', 'denoised_mse'\]",
        ),
        (
            lambda p: plots.save_denoising_errors(
                [{"kind": "x", "level": "high", "corrupted_mse": 1, "denoised_mse": 1}], p
            ),
            TypeError,
            r"rows\[0\]\['level'\] must be a number",
        ),
        (lambda p: plots.save_denoising_errors([], p), ValueError, "non-empty list of dicts"),
    ],
)
def test_application_figures_refuse_bad_input_before_writing(tmp_path, call, error, match):
    path = tmp_path / "sub" / "figure.png"
    with pytest.raises(error, match=match):
        call(path)
    assert not path.parent.exists()
