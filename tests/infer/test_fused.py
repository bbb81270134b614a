"""The fused path gives the traced path's numbers, and runs only where it may."""

from __future__ import annotations

import math
import warnings

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import pytest
import torch
from conftest import binary_data, small_vae

import pyro_vae as pv
from pyro_vae.infer import _fused, evaluate, objectives
from pyro_vae.models.guides import Guide

SPECS = [
    "elbo",
    "analytic-kl",
    "score-function:k=3",
    "stl",
    "stl:k=3,bound=iwae",
    "iwae:k=5",
    "renyi:k=4,alpha=0.3",
    "iwae-dreg:k=5",
    "iwae-dreg:k=4,beta=0.5",
    "elbo:k=2,beta=0.3",
    "analytic-kl:k=2,warmup_steps=10",
]
LIKELIHOODS = ["bernoulli", "gaussian", "continuous-bernoulli"]


def _vae(likelihood: str) -> pv.VAE:
    torch.manual_seed(1)
    vae = small_vae(likelihood=likelihood).double()
    if likelihood == "gaussian":  # a learned scale, so its gradient is compared too
        vae.likelihood = pv.likelihoods.Gaussian(vae.likelihood.net, scale=0.7, learn_scale=True)
        vae.double()
    return vae


def _traced(fn):
    """The same program behind a function the fused path does not recognise."""
    return lambda x: fn(x)


def _loss_and_grads(objective, model, guide, vae, x, seed=3):
    pyro.set_rng_seed(seed)
    loss = objective.differentiable_loss(model, guide, x)
    grads = torch.autograd.grad(loss, list(vae.parameters()), allow_unused=True)
    return loss.detach(), grads


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("per_example", [False, True])
def test_every_estimator_matches_the_traced_path(spec, likelihood, per_example):
    vae, x = _vae(likelihood), binary_data(7).double()
    wrap = _fused.PerExample if per_example else (lambda f: f)
    model, guide = wrap(vae.model), wrap(vae.guide)
    assert _fused.match(model, guide, (x,), {}) == (vae, 1 / 7 if per_example else 1.0)
    objective = objectives.parse(spec).make()
    objective.step = 4  # mid warm-up where the spec has one
    fused = _loss_and_grads(objective, model, guide, vae, x)
    traced = _loss_and_grads(objective, _traced(model), _traced(guide), vae, x)
    torch.testing.assert_close(fused[0], traced[0], rtol=1e-12, atol=1e-12)
    for a, b in zip(fused[1], traced[1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    pyro.set_rng_seed(5)
    fused_value = objective.loss(model, guide, x)
    pyro.set_rng_seed(5)
    assert objective.loss(_traced(model), _traced(guide), x) == pytest.approx(
        fused_value, rel=1e-12
    )


def test_the_fused_draw_is_the_guide_s_own_rsample():
    vae, x = small_vae(), binary_data(6)
    torch.manual_seed(2)
    d = _fused.draw(vae, 1.0, x, 3)
    torch.manual_seed(2)
    expected = vae.encoder(x).rsample((3,))
    assert d.noise is not None and torch.equal(d.z, expected)


def test_the_fused_path_runs_only_for_a_vae_s_own_programs():
    vae, other, x = small_vae(), small_vae(), binary_data(4)
    assert _fused.match(vae.model, vae.guide, (x,), {}) == (vae, 1.0)
    assert _fused.match(vae.model, other.guide, (x,), {}) is None
    assert _fused.match(_traced(vae.model), vae.guide, (x,), {}) is None
    assert _fused.match(vae.model, vae.guide, (x, 1), {}) is None
    assert _fused.match(vae.model, vae.guide, (x,), {"k": 1}) is None
    assert _fused.match(_fused.PerExample(vae.model), vae.guide, (x,), {}) is None
    with poutine.scale(scale=2.0):  # any active handler changes the program's meaning
        assert _fused.match(vae.model, vae.guide, (x,), {}) is None

    class Overridden(pv.VAE):
        def model(self, x):
            return super().model(x)

    sub = Overridden(vae.prior, vae.likelihood, vae.encoder)
    assert _fused.match(sub.model, sub.guide, (x,), {}) is None


def test_a_handler_around_the_loss_is_honoured():
    """Inside poutine.scale the traced path runs, so the scale applies as Pyro defines it."""
    vae, x = small_vae(), binary_data(6)
    objective = objectives.make("elbo")
    pyro.set_rng_seed(0)
    plain = objective.loss(vae.model, vae.guide, x)
    pyro.set_rng_seed(0)
    with poutine.scale(scale=0.5):
        halved = objective.loss(vae.model, vae.guide, x)
    assert halved == pytest.approx(0.5 * plain, rel=1e-5)


class _SharedGuide(Guide):
    """A guide whose distribution has no batch dimension: Pyro's plate broadcasts it."""

    def __init__(self, latent_dim: int) -> None:
        super().__init__(torch.nn.Identity(), latent_dim)
        self.loc = torch.nn.Parameter(torch.zeros(latent_dim))

    def forward(self, x):
        return dist.Normal(self.loc, 1.0).to_event(1)


def test_a_guide_the_fused_path_cannot_shape_falls_back_to_tracing():
    vae, x = small_vae(), binary_data(5)
    vae.encoder = _SharedGuide(vae.latent_dim)
    assert _fused.draw(vae, 1.0, x, 2) is None
    objective = objectives.make("iwae", 3)
    fused = _loss_and_grads(objective, vae.model, vae.guide, vae, x)
    traced = _loss_and_grads(objective, _traced(vae.model), _traced(vae.guide), vae, x)
    torch.testing.assert_close(fused[0], traced[0])


class _FullCovarianceGuide(Guide):
    """A correlated Gaussian q(z|x): not diagonal, so the fused draw uses q.rsample."""

    def __init__(self, latent_dim: int) -> None:
        super().__init__(torch.nn.Linear(12, latent_dim), latent_dim)
        self.tril = torch.nn.Parameter(
            torch.eye(latent_dim) + 0.1 * torch.ones(latent_dim, latent_dim).tril()
        )

    def forward(self, x):
        return dist.MultivariateNormal(self.net(x), scale_tril=self.tril.tril())


@pytest.mark.parametrize("spec", ["elbo", "iwae:k=4", "stl", "iwae-dreg:k=4"])
def test_a_guide_that_is_not_diagonal_matches_the_traced_path_too(spec):
    vae, x = small_vae().double(), binary_data(5).double()
    vae.encoder = _FullCovarianceGuide(vae.latent_dim).double()
    assert _fused.draw(vae, 1.0, x, 2).noise is None
    objective = objectives.parse(spec).make()
    fused = _loss_and_grads(objective, vae.model, vae.guide, vae, x)
    traced = _loss_and_grads(objective, _traced(vae.model), _traced(vae.guide), vae, x)
    torch.testing.assert_close(fused[0], traced[0], rtol=1e-12, atol=1e-12)
    for a, b in zip(fused[1], traced[1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


class _StudentTPrior(pv.priors.Prior):
    def forward(self):
        return dist.StudentT(3.0, torch.zeros(self.latent_dim), 1.0).to_event(1)


def test_analytic_kl_without_a_closed_form_falls_back_with_a_warning():
    vae, x = small_vae().double(), binary_data(5).double()
    vae.prior = _StudentTPrior(vae.latent_dim).double()
    objective = objectives.make("analytic-kl")
    with pytest.warns(UserWarning, match="estimated by Monte Carlo.*StudentT"):
        fused = _loss_and_grads(objective, vae.model, vae.guide, vae, x)
    reference = _loss_and_grads(objectives.make("elbo"), vae.model, vae.guide, vae, x)
    torch.testing.assert_close(fused[0], reference[0])


class _NoRsampleGuide(Guide):
    def __init__(self, latent_dim):
        super().__init__(torch.nn.Linear(12, latent_dim), latent_dim)

    def forward(self, x):
        return dist.Bernoulli(logits=self.net(x)).to_event(1)


def test_a_guide_without_rsample_is_refused_by_name():
    vae, x = small_vae(), binary_data(5)
    vae.encoder = _NoRsampleGuide(vae.latent_dim)
    with pytest.raises(ValueError, match="'iwae' differentiates through.*use 'score-function'"):
        objectives.make("iwae", 2).differentiable_loss(vae.model, vae.guide, x)


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
def test_likelihood_log_prob_equals_the_distribution_s(likelihood):
    vae = _vae(likelihood)
    x = binary_data(6).double()
    x = x if likelihood == "bernoulli" else x * 0.8 + 0.1
    z = torch.randn(3, 6, vae.latent_dim, dtype=torch.float64)
    torch.testing.assert_close(
        vae.likelihood.log_prob(x, z), vae.likelihood(z).log_prob(x), rtol=1e-12, atol=1e-12
    )
    with pytest.raises(ValueError, match=r"x has shape \(6, 5\).*event shape is \(12,\)"):
        vae.likelihood.log_prob(x[:, :5], z)


def test_standard_normal_prior_formulas_equal_torch_s():
    prior = pv.priors.StandardNormal(4).double()
    z = torch.randn(3, 5, 4, dtype=torch.float64)
    torch.testing.assert_close(prior.log_prob(z), prior().log_prob(z), rtol=1e-12, atol=1e-12)
    q = dist.Normal(torch.randn(5, 4, dtype=torch.float64), torch.rand(5, 4).double() + 0.1)
    q = q.to_event(1)
    expected = torch.distributions.kl_divergence(q, prior())
    torch.testing.assert_close(prior.kl_from(q), expected, rtol=1e-12, atol=1e-12)
    student = dist.StudentT(3.0, torch.zeros(5, 4), 1.0).to_event(1)
    with pytest.raises(NotImplementedError):
        prior.kl_from(student)


def test_fused_evaluation_matches_the_traced_path_chunk_for_chunk():
    vae, x = _vae("bernoulli"), binary_data(9).double()
    results = []
    for model, guide in ((vae.model, vae.guide), (_traced(vae.model), _traced(vae.guide))):
        pyro.set_rng_seed(0)
        log_w = evaluate.log_weights(model, guide, x, 23, batch_size=4, max_rows=10)
        pyro.set_rng_seed(0)
        log_px, stderr = evaluate.log_likelihood(
            model, guide, x, 23, batch_size=4, max_rows=10, return_stderr=True
        )
        results.append((log_w, log_px, stderr))
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    log_w, log_px, stderr = results[0]
    # The streamed estimate and its error equal the ones from the full (K, N) weights.
    torch.testing.assert_close(log_px, torch.logsumexp(log_w, 0) - math.log(23))
    normalised = torch.softmax(log_w, 0)
    torch.testing.assert_close(stderr, ((23 * normalised.pow(2).sum(0) - 1) / 22).sqrt())


def test_evaluation_never_runs_more_rows_than_max_rows():
    vae, x = small_vae(), binary_data(10)
    seen = []
    net = vae.likelihood.net
    vae.likelihood.net = torch.nn.Sequential(net)
    vae.likelihood.net.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[:-1].numel()))
    evaluate.log_likelihood(vae.model, vae.guide, x, 50, max_rows=64)
    assert seen and max(seen) <= 64
    assert sum(seen) == 50 * 10


def _zoo_vae(prior: str, guide: str) -> pv.VAE:
    torch.manual_seed(1)
    body = pv.nets.MLP(12, [8])
    q = {
        "full": lambda: pv.guides.FullCovarianceNormal(body, 3),
        "iaf": lambda: pv.guides.InverseAutoregressiveFlow(body, 3, context_dim=4),
        "coupling": lambda: pv.guides.AffineCouplingFlow(body, 3, context_dim=4),
        "diagonal": lambda: pv.guides.DiagonalNormal(body, 3),
    }[guide]()
    p = {
        "learned": lambda: pv.priors.LearnedNormal(3),
        "mixture": lambda: pv.priors.MixtureOfGaussians(3, 4),
        "vamp": lambda: pv.priors.VampPrior(q, 5),
        "flow": lambda: pv.priors.FlowPrior(3),
        "standard": lambda: pv.priors.StandardNormal(3),
    }[prior]()
    likelihood = pv.likelihoods.Bernoulli(pv.nets.MLP(3, [8], 12))
    return pv.VAE(p, likelihood, q).double()


def _assert_fused_equals_traced(vae, x, spec: str) -> None:
    """The loss and gradients of ``spec`` on the fused path equal the traced path's (to the
    rounding that flows and mixtures leave after a different order of operations)."""
    objective = objectives.parse(spec).make()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="analytic-kl: the KL")
        fused = _loss_and_grads(objective, vae.model, vae.guide, vae, x)
        traced = _loss_and_grads(objective, _traced(vae.model), _traced(vae.guide), vae, x)
    torch.testing.assert_close(fused[0], traced[0], rtol=1e-10, atol=1e-10)
    for a, b in zip(fused[1], traced[1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize(
    "prior, guide",
    [("learned", "full"), ("mixture", "diagonal"), ("vamp", "diagonal"), ("vamp", "full"),
     ("flow", "diagonal"), ("standard", "iaf"), ("learned", "coupling")],
)  # fmt: skip
@pytest.mark.parametrize("spec", ["analytic-kl", "stl", "score-function:k=2", "iwae-dreg:k=3"])
def test_swapped_parts_give_the_traced_path_s_numbers(prior, guide, spec):
    vae, x = _zoo_vae(prior, guide), binary_data(6).double()
    _assert_fused_equals_traced(vae, x, spec)


# --------------------------------------------------------------------------- hierarchies


def _hierarchy(top_guide: str = "diagonal", layers: int = 3) -> pv.HierarchicalVAE:
    """Layers z1 (4), z2 (3), z3 (2) over 12 values, the first ``layers`` of them, in double
    precision."""
    torch.manual_seed(1)
    vae = pv.HierarchicalVAE.mlp(12, [([8], 4), ([6], 3), ([5], 2)][:layers])
    if top_guide == "iaf":
        vae.upper_guides[1] = pv.guides.InverseAutoregressiveFlow(
            pv.nets.MLP(3, [5]), 2, context_dim=4
        )
    elif top_guide == "full":
        vae.upper_guides[1] = pv.guides.FullCovarianceNormal(pv.nets.MLP(3, [5]), 2)
    return vae.double()


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("per_example", [False, True])
@pytest.mark.parametrize("layers", [1, 3])
def test_every_estimator_matches_the_traced_path_on_a_hierarchy(spec, per_example, layers):
    vae, x = _hierarchy(layers=layers), binary_data(7).double()
    wrap = _fused.PerExample if per_example else (lambda f: f)
    model, guide = wrap(vae.model), wrap(vae.guide)
    assert _fused.match(model, guide, (x,), {}) == (vae, 1 / 7 if per_example else 1.0)
    objective = objectives.parse(spec).make()
    objective.step = 4
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="analytic-kl: the KL")
        fused = _loss_and_grads(objective, model, guide, vae, x)
        traced = _loss_and_grads(objective, _traced(model), _traced(guide), vae, x)
    torch.testing.assert_close(fused[0], traced[0], rtol=1e-12, atol=1e-12)
    for a, b in zip(fused[1], traced[1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("top_guide", ["iaf", "full"])
@pytest.mark.parametrize("spec", ["analytic-kl", "stl", "score-function:k=2", "iwae-dreg:k=3"])
def test_a_hierarchy_with_another_top_guide_matches_the_traced_path(top_guide, spec):
    vae, x = _hierarchy(top_guide), binary_data(6).double()
    _assert_fused_equals_traced(vae, x, spec)


def test_the_hierarchy_s_draw_is_the_guide_s_own_and_its_sites_are_named():
    vae, x = _hierarchy(), binary_data(6).double()
    torch.manual_seed(2)
    d = _fused.draw(vae, 1.0, x, 3)
    torch.manual_seed(2)
    z1 = vae.encoder(x).rsample((3,))
    z2 = vae.upper_guides[0](z1).rsample()
    z3 = vae.upper_guides[1](z2).rsample()
    assert [z.shape for z in d.zs] == [(3, 6, 4), (3, 6, 3), (3, 6, 2)]
    for drawn, expected in zip(d.zs, (z1, z2, z3), strict=True):
        assert torch.equal(drawn, expected)
    assert [t.name for t in d.kl_terms("mc")] == ["z1", "z2", "z3"]
    assert d.num_particles == 3 and not d.path_hook_applies()


def test_analytic_kl_on_a_hierarchy_takes_the_top_layer_s_closed_form_and_says_why():
    vae, x = _hierarchy(), binary_data(5).double()
    d = _fused.draw(vae, 1.0, x, 4)
    terms = {t.name: t for t in d.kl_terms("analytic")}
    assert terms["z1"].fallback == "its prior depends on z2, z3, which the guide samples after it"
    assert terms["z2"].fallback == "its prior depends on z3, which the guide samples after it"
    assert terms["z3"].fallback is None
    exact = torch.distributions.kl_divergence(d.qs[2], vae.prior()).mean(0)
    torch.testing.assert_close(terms["z3"].value, exact)
    objective = objectives.make("analytic-kl")
    with pytest.warns(UserWarning) as caught:
        objective.loss(vae.model, vae.guide, x)
    assert [str(w.message) for w in caught] == [
        f"analytic-kl: the KL of site {name!r} is estimated by Monte Carlo: {terms[name].fallback}"
        for name in ("z1", "z2")
    ]


class _SharedTopGuide(Guide):
    """An upper guide that ignores the layer below: batch shape (), which Pyro broadcasts."""

    def __init__(self, latent_dim: int) -> None:
        super().__init__(torch.nn.Identity(), latent_dim)
        self.loc = torch.nn.Parameter(torch.zeros(latent_dim, dtype=torch.float64))

    def forward(self, z):
        return dist.Normal(self.loc, 1.0).to_event(1)


def test_an_upper_guide_the_fused_path_cannot_shape_falls_back_with_the_same_draws():
    vae, x = _hierarchy(), binary_data(5).double()
    vae.upper_guides[1] = _SharedTopGuide(2)
    torch.manual_seed(0)
    before = torch.get_rng_state()
    assert _fused.draw(vae, 1.0, x, 3) is None
    assert torch.equal(torch.get_rng_state(), before)  # as if nothing had been drawn
    objective = objectives.make("iwae", 3)
    fused = _loss_and_grads(objective, vae.model, vae.guide, vae, x)
    traced = _loss_and_grads(objective, _traced(vae.model), _traced(vae.guide), vae, x)
    torch.testing.assert_close(fused[0], traced[0], rtol=1e-12, atol=1e-12)


def test_a_hierarchy_s_own_programs_are_matched_and_an_overriding_one_s_are_not():
    vae, x = _hierarchy(), binary_data(4).double()
    assert _fused.match(vae.model, vae.guide, (x,), {}) == (vae, 1.0)
    one_layer = small_vae()
    assert _fused.match(vae.model, one_layer.guide, (x,), {}) is None

    class Overridden(pv.HierarchicalVAE):
        def guide(self, x):
            return super().guide(x)

    sub = Overridden(vae.prior, list(vae.conditionals), vae.likelihood,
                     [vae.encoder, *vae.upper_guides])  # fmt: skip
    assert _fused.match(sub.model, sub.guide, (x,), {}) is None


def test_fused_evaluation_of_a_hierarchy_matches_the_traced_path():
    vae, x = _hierarchy(), binary_data(9).double()
    results = []
    for model, guide in ((vae.model, vae.guide), (_traced(vae.model), _traced(vae.guide))):
        pyro.set_rng_seed(0)
        results.append(evaluate.log_weights(model, guide, x, 23, batch_size=4, max_rows=10))
    torch.testing.assert_close(results[0], results[1], rtol=1e-12, atol=1e-12)
