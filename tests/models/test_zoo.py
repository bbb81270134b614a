"""Every prior, guide, likelihood and hierarchy trains with every objective, and saves.

"Swap the prior, swap the guide, keep everything else": each combination is
built from the same small networks, trained for a few steps with ``fit``, and
then checked for a finite loss, a finite gradient that reaches every
parameter, and a checkpoint that restores the same numbers.
"""

from __future__ import annotations

import itertools
import warnings

import pyro
import pytest
import torch

import pyro_vae as pv
from pyro_vae.infer import evaluate, objectives
from pyro_vae.models import guides, likelihoods, nets, priors
from pyro_vae.train import checkpoints

DATA_DIM, LATENT = 12, 3

OBJECTIVES = [
    "elbo",
    "analytic-kl",
    "score-function:k=2",
    "stl",
    "stl:k=2,bound=iwae",
    "iwae:k=3",
    "renyi:k=3,alpha=0.5",
    "iwae-dreg:k=3",
]


def make_guide(name: str, latent: int = LATENT, inputs: int = DATA_DIM) -> guides.Guide:
    body = nets.MLP(inputs, [10])
    if name == "diagonal":
        return guides.DiagonalNormal(body, latent)
    if name == "full":
        return guides.FullCovarianceNormal(body, latent)
    if name == "iaf":
        return guides.InverseAutoregressiveFlow(body, latent, num_flows=2, context_dim=4)
    if name == "coupling":
        return guides.AffineCouplingFlow(body, latent, num_flows=2, context_dim=4)
    raise KeyError(name)


def make_prior(name: str, guide: guides.Guide, latent: int = LATENT) -> priors.Prior:
    if name == "standard-normal":
        return priors.StandardNormal(latent)
    if name == "learned-normal":
        return priors.LearnedNormal(latent)
    if name == "mixture":
        return priors.MixtureOfGaussians(latent, num_components=3)
    if name == "vamp":
        return priors.VampPrior(guide, num_pseudo_inputs=4)
    if name == "flow":
        return priors.FlowPrior(latent, num_flows=2)
    raise KeyError(name)


def make_likelihood(name: str, latent: int = LATENT) -> likelihoods.Likelihood:
    net = nets.MLP(latent, [10], DATA_DIM)
    if name == "bernoulli":
        return likelihoods.Bernoulli(net)
    if name == "continuous-bernoulli":
        return likelihoods.ContinuousBernoulli(net)
    if name == "gaussian":
        return likelihoods.Gaussian(net, scale=0.5)
    if name == "gaussian-learned":
        return likelihoods.Gaussian(net, scale=0.5, learn_scale=True)
    if name == "laplace":
        return likelihoods.Laplace(net, scale=0.5, learn_scale=True)
    if name == "discretized-logistic":
        return likelihoods.DiscretizedLogistic(net, num_bins=256)
    raise KeyError(name)


PRIORS = ["standard-normal", "learned-normal", "mixture", "vamp", "flow"]
GUIDES = ["diagonal", "full", "iaf", "coupling"]
LIKELIHOODS = [
    "bernoulli",
    "continuous-bernoulli",
    "gaussian",
    "gaussian-learned",
    "laplace",
    "discretized-logistic",
]


def data_for(likelihood: str, n: int = 24, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    grey = torch.randint(0, 256, (n, DATA_DIM), generator=g).float() / 255
    return (grey > 0.5).float() if likelihood == "bernoulli" else grey


def build(prior: str, guide: str, likelihood: str, seed: int = 0) -> pv.VAE:
    torch.manual_seed(seed)
    q = make_guide(guide)
    return pv.VAE(make_prior(prior, q), make_likelihood(likelihood), q)


def train_and_check(vae: pv.VAE, data: torch.Tensor, spec: str) -> None:
    """A few fit steps, then one more loss whose gradient must reach every parameter."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="analytic-kl: the KL")
        history = pv.fit(vae, data, objective=spec, epochs=1, batch_size=8, progress=False)
        assert all(torch.isfinite(torch.tensor(row["train_loss"])) for row in history.rows)
        vae.zero_grad()
        pyro.set_rng_seed(1)
        loss = objectives.parse(spec).make().differentiable_loss(vae.model, vae.guide, data[:8])
    assert torch.isfinite(loss)
    loss.backward()
    for name, param in vae.named_parameters():
        assert param.grad is not None, f"{name} gets no gradient under {spec}"
        assert torch.isfinite(param.grad).all(), f"{name} has a non-finite gradient under {spec}"
        assert param.grad.abs().sum() > 0, f"{name}'s gradient is zero under {spec}"


def _combinations():
    """Every prior × guide × objective; the likelihood rotates so each one appears often."""
    for i, (prior, guide, spec) in enumerate(itertools.product(PRIORS, GUIDES, OBJECTIVES)):
        yield prior, guide, LIKELIHOODS[i % len(LIKELIHOODS)], spec


@pytest.mark.parametrize("prior, guide, likelihood, spec", list(_combinations()))
def test_every_prior_and_guide_trains_with_every_objective(prior, guide, likelihood, spec):
    vae = build(prior, guide, likelihood)
    train_and_check(vae, data_for(likelihood), spec)


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
@pytest.mark.parametrize("spec", OBJECTIVES)
def test_every_likelihood_trains_with_every_objective(likelihood, spec):
    vae = build("standard-normal", "diagonal", likelihood)
    train_and_check(vae, data_for(likelihood), spec)


def _log_px(vae: pv.VAE, x: torch.Tensor) -> torch.Tensor:
    pyro.set_rng_seed(7)
    return evaluate.log_likelihood(vae.model, vae.guide, x, num_samples=16)


@pytest.mark.parametrize("prior, guide", list(itertools.product(PRIORS, GUIDES)))
def test_a_checkpoint_restores_every_prior_and_guide(prior, guide, tmp_path):
    likelihood = "discretized-logistic" if guide == "iaf" else "bernoulli"
    vae, x = build(prior, guide, likelihood, seed=0), data_for(likelihood)
    pv.fit(vae, x, objective="elbo", epochs=1, batch_size=8, progress=False)
    checkpoints.save({"model": vae.state_dict()}, tmp_path / "vae.pt")
    restored = build(prior, guide, likelihood, seed=1)
    assert not torch.equal(_log_px(restored, x[:5]), _log_px(vae, x[:5]))
    restored.load_state_dict(checkpoints.load(tmp_path / "vae.pt")["model"])
    torch.testing.assert_close(_log_px(restored, x[:5]), _log_px(vae, x[:5]))


def two_layer(prior: str = "standard-normal", guide: str = "diagonal") -> pv.HierarchicalVAE:
    """z1 (4) and z2 (3) over 12 binary values; the top guide and prior are swappable."""
    torch.manual_seed(0)
    top = make_guide(guide, latent=3, inputs=4)
    return pv.HierarchicalVAE(
        make_prior(prior, top, latent=3),
        [guides.DiagonalNormal(nets.MLP(3, [8]), 4)],
        make_likelihood("bernoulli", latent=4),
        [guides.DiagonalNormal(nets.MLP(DATA_DIM, [10]), 4), top],
    )


@pytest.mark.parametrize("spec", OBJECTIVES)
def test_a_hierarchical_vae_trains_with_every_objective(spec):
    train_and_check(two_layer(), data_for("bernoulli"), spec)


@pytest.mark.parametrize("prior", PRIORS)
@pytest.mark.parametrize("guide", GUIDES)
def test_a_hierarchical_vae_takes_any_top_prior_and_guide(prior, guide):
    train_and_check(two_layer(prior, guide), data_for("bernoulli"), "iwae:k=2")


def test_the_hierarchy_s_sites_and_log_weight_are_its_definition():
    """log w = log p(z2) + log p(z1|z2) + log p(x|z1) - log q(z1|x) - log q(z2|z1)."""
    vae, x = two_layer(), data_for("bernoulli", n=5)
    pyro.set_rng_seed(3)
    guide_trace = pyro.poutine.trace(vae.guide).get_trace(x)
    model_trace = pyro.poutine.trace(pyro.poutine.replay(vae.model, guide_trace)).get_trace(x)

    def sites(trace):
        return [n for n in trace.stochastic_nodes + trace.observation_nodes if n != "data"]

    assert sites(model_trace) == ["z2", "z1", "x"] and sites(guide_trace) == ["z1", "z2"]
    z1, z2 = guide_trace.nodes["z1"]["value"], guide_trace.nodes["z2"]["value"]
    expected = (
        vae.prior().log_prob(z2)
        + vae.conditionals[0](z2).log_prob(z1)
        + vae.likelihood(z1).log_prob(x)
        - vae.encoder(x).log_prob(z1)
        - vae.upper_guides[0](z1).log_prob(z2)
    )
    pyro.set_rng_seed(3)
    bound = objectives.make("iwae", 1).loss(vae.model, vae.guide, x)
    assert bound == pytest.approx(-expected.sum().item(), rel=1e-5)


def test_the_iwae_paper_two_layer_architecture():
    vae = pv.HierarchicalVAE.mlp(784, [([200, 200], 100), ([100, 100], 50)])
    assert vae.latent_dims == (100, 50) and vae.latent_dim == 100
    widths = lambda module: [m.out_features for m in module.modules() if hasattr(m, "weight")]  # noqa: E731
    assert widths(vae.encoder) == [200, 200, 200]  # body, then (μ, ρ) of z1
    assert widths(vae.upper_guides[0]) == [100, 100, 100]
    assert widths(vae.conditionals[0]) == [100, 100, 200]
    assert widths(vae.likelihood) == [200, 200, 784]
    assert all(isinstance(m, torch.nn.Tanh) for m in vae.encoder.net.layers[1::2])
    assert vae.sample(3).shape == (3, 784)
    assert vae.sample_z(2).shape == (2, 100)


def test_hierarchical_vae_rejects_mismatched_layers():
    q1, q2 = guides.DiagonalNormal(nets.MLP(12, [8]), 4), guides.DiagonalNormal(nets.MLP(4, [8]), 3)
    like = make_likelihood("bernoulli", latent=4)
    wrong = guides.DiagonalNormal(nets.MLP(3, [8]), 5)
    with pytest.raises(ValueError, match=r"conditionals\[0\] is p\(z1 \| z2\)"):
        pv.HierarchicalVAE(priors.StandardNormal(3), [wrong], like, [q1, q2])
    with pytest.raises(ValueError, match="need 1 conditionals"):
        pv.HierarchicalVAE(priors.StandardNormal(3), [], like, [q1, q2])
    with pytest.raises(ValueError, match=r"p\(z2\) and must have latent_dim 3"):
        right = guides.DiagonalNormal(nets.MLP(3, [8]), 4)
        pv.HierarchicalVAE(priors.StandardNormal(5), [right], like, [q1, q2])
    with pytest.raises(ValueError, match="at least one stochastic layer"):
        pv.HierarchicalVAE.mlp(12, [])


@pytest.mark.parametrize("prior", ["mixture", "vamp", "flow"])
def test_analytic_kl_falls_back_to_monte_carlo_with_a_note_for_priors_without_one(prior):
    vae, x = build(prior, "diagonal", "bernoulli"), data_for("bernoulli", n=6)
    objective = objectives.make("analytic-kl")
    with pytest.warns(UserWarning, match="estimated by Monte Carlo: torch has no closed form"):
        pyro.set_rng_seed(0)
        fallback = objective.loss(vae.model, vae.guide, x)
    pyro.set_rng_seed(0)
    assert fallback == pytest.approx(objectives.make("elbo").loss(vae.model, vae.guide, x))


@pytest.mark.parametrize("guide", ["iaf", "coupling"])
def test_analytic_kl_falls_back_for_flow_guides(guide):
    vae, x = build("standard-normal", guide, "bernoulli"), data_for("bernoulli", n=6)
    with pytest.warns(UserWarning, match="estimated by Monte Carlo"):
        objectives.make("analytic-kl").loss(vae.model, vae.guide, x)


@pytest.mark.parametrize("prior", ["standard-normal", "learned-normal"])
@pytest.mark.parametrize("guide", ["diagonal", "full"])
def test_analytic_kl_is_closed_form_for_gaussian_pairs(prior, guide, recwarn):
    vae, x = build(prior, guide, "bernoulli"), data_for("bernoulli", n=6)
    with torch.no_grad():
        vae.prior.loc.add_(0.3) if prior == "learned-normal" else None
    q = vae.encoder(x)
    kl = vae.prior.kl_from(q)
    pyro.set_rng_seed(0)
    z = q.sample((200_000,))
    monte_carlo = (q.log_prob(z) - vae.prior().log_prob(z)).mean(0)
    torch.testing.assert_close(kl, monte_carlo, atol=0.02, rtol=0.02)
    objectives.make("analytic-kl").loss(vae.model, vae.guide, x)
    assert not [w for w in recwarn if "Monte Carlo" in str(w.message)]


@pytest.mark.parametrize("guide", ["iaf", "coupling", "full"])
def test_dreg_guide_gradient_is_its_definition_for_every_guide(guide):
    """∇φ = -Σ_k w̃_k² ∂log w_k/∂z_k · ∂z_k/∂φ, with log w_k a function of z_k at fixed φ.

    A flow's log q at its own sample is computed from the cached base draw, a route
    around z; the estimator must still weight the whole path derivative by w̃_k².
    """
    vae, x, k = build("standard-normal", guide, "bernoulli").double(), data_for("bernoulli", 4), 3
    x = x.double()
    params = list(vae.encoder.parameters())
    pyro.set_rng_seed(5)
    loss = objectives.make("iwae-dreg", k).differentiable_loss(vae.model, vae.guide, x)
    got = torch.autograd.grad(loss, params)

    pyro.set_rng_seed(5)
    z = vae.encoder(x).rsample((k,))
    free = z.detach().requires_grad_()
    log_w = (
        vae.likelihood(free).log_prob(x)
        + vae.prior().log_prob(free)
        - vae.encoder(x).log_prob(free)
    )
    weights = torch.softmax(log_w.detach(), dim=0)
    (by_z,) = torch.autograd.grad((weights.pow(2) * log_w).sum(), free)
    expected = torch.autograd.grad(z, params, grad_outputs=-by_z)
    for name_param, a, b in zip(vae.encoder.named_parameters(), got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9, msg=name_param[0])


def test_a_hierarchical_vae_checkpoint_restores_it(tmp_path):
    vae, x = two_layer("vamp", "iaf"), data_for("bernoulli")
    pv.fit(vae, x, objective="iwae:k=2", epochs=1, batch_size=8, progress=False)
    checkpoints.save({"model": vae.state_dict()}, tmp_path / "h.pt")
    torch.manual_seed(3)
    restored = two_layer("vamp", "iaf")
    restored.load_state_dict(checkpoints.load(tmp_path / "h.pt")["model"])
    torch.testing.assert_close(_log_px(restored, x[:5]), _log_px(vae, x[:5]))


@pytest.mark.parametrize("guide", GUIDES)
def test_reconstruct_and_sample_work_with_every_guide(guide):
    vae, x = build("flow", guide, "bernoulli"), data_for("bernoulli", n=5)
    assert vae.reconstruct(x).shape == x.shape and vae.sample(3).shape == (3, DATA_DIM)
