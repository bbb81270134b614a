"""objectives: names, options, specs, and every estimator usable in Pyro's SVI."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pyro.infer
import pyro.optim
import pytest
import torch
from conftest import binary_data, small_vae

import pyro_vae as pv
from pyro_vae.infer import estimators, objectives

ALL_SPECS = [
    "elbo",
    "analytic-kl",
    "score-function",
    "stl",
    "stl:k=3,bound=iwae",
    "iwae:k=3",
    "renyi:k=3,alpha=0.5",
    "iwae-dreg:k=3",
    "elbo:k=2,beta=0.5,warmup_steps=3,free_bits=0.1",
]


def test_names_map_to_the_estimators():
    expected = {
        "elbo": estimators.MonteCarloELBO,
        "analytic-kl": estimators.AnalyticKLELBO,
        "score-function": estimators.ScoreFunctionELBO,
        "stl": estimators.STL,
        "iwae": estimators.IWAE,
        "renyi": estimators.RenyiELBO,
        "iwae-dreg": estimators.DReG,
    }
    assert objectives.OBJECTIVES == tuple(expected)
    for name, cls in expected.items():
        made = objectives.make(name, 5)
        assert type(made) is cls and isinstance(made, pyro.infer.ELBO)
        assert made.num_particles == 5
    assert type(objectives.make()) is estimators.AnalyticKLELBO


@pytest.mark.parametrize("spec", ALL_SPECS)
def test_every_objective_trains_in_pyro_svi(spec):
    vae, x = small_vae(), binary_data(20)
    objective = objectives.parse(spec).make()
    svi = pyro.infer.SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-2}), objective)
    before = {k: v.clone() for k, v in vae.state_dict().items()}
    losses = [svi.step(x) for _ in range(3)]
    assert all(torch.isfinite(torch.tensor(losses)))
    changed = [k for k, v in vae.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("encoder.") for k in changed), "the guide did not train"
    assert any(k.startswith("likelihood.") for k in changed), "the decoder did not train"
    assert objective.step == 3


def test_analytic_and_monte_carlo_kl_estimate_the_same_bound():
    vae, x = small_vae(), binary_data(30)
    a = objectives.make("analytic-kl", num_particles=4000).loss(vae.model, vae.guide, x)
    b = objectives.make("elbo", num_particles=4000).loss(vae.model, vae.guide, x)
    assert a == pytest.approx(b, rel=2e-3)


def test_vectorised_particles_reduce_the_spread_of_the_loss():
    vae, x = small_vae(), binary_data(8)
    one = torch.tensor([objectives.make("elbo").loss(vae.model, vae.guide, x) for _ in range(50)])
    many = torch.tensor(
        [objectives.make("elbo", 50).loss(vae.model, vae.guide, x) for _ in range(50)]
    )
    assert many.std() < one.std() / 3


def test_warmup_ramps_beta_by_training_step_and_is_saved():
    elbo = objectives.make("elbo", beta=2.0, warmup_steps=4)
    vae, x = small_vae(), binary_data(10)
    betas = []
    for _ in range(6):
        betas.append(elbo.beta)
        elbo.loss_and_grads(vae.model, vae.guide, x)
    assert betas == [0.0, 0.5, 1.0, 1.5, 2.0, 2.0]
    elbo.loss(vae.model, vae.guide, x)  # evaluation does not advance the schedule
    assert elbo.state_dict() == {"step": 6}
    fresh = objectives.make("elbo", beta=2.0, warmup_steps=4)
    fresh.load_state_dict(elbo.state_dict())
    assert fresh.beta == 2.0


def _coin_model(x):
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Bernoulli(0.5))
        loc = z.unsqueeze(-1).expand(z.shape + x.shape[-1:])
        pyro.sample("x", dist.Normal(loc, 1.0).to_event(1), obs=x)


def _coin_guide(x):
    logit = pyro.param("logit", torch.zeros(()))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Bernoulli(logits=logit.expand(x.shape[0])))


def test_a_discrete_latent_needs_the_score_function_estimator():
    x = torch.ones(16, 3)
    with pytest.raises(ValueError, match="cannot be reparameterised; use 'score-function'"):
        objectives.make("elbo").loss(_coin_model, _coin_guide, x)
    svi = pyro.infer.SVI(
        _coin_model, _coin_guide, pyro.optim.Adam({"lr": 0.1}), objectives.make("score-function", 4)
    )
    for _ in range(150):
        svi.step(x)
    # x = (1, 1, 1): p(x|z=1) / p(x|z=0) = exp(3/2), so p(z=1|x) = sigmoid(3/2), which
    # the guide (one probability for every example) reaches at the ELBO's optimum.
    exact = torch.sigmoid(torch.tensor(1.5)).item()
    assert torch.sigmoid(pyro.param("logit")).item() == pytest.approx(exact, abs=0.04)


@pytest.mark.parametrize(
    "call, match",
    [
        (
            lambda: objectives.make("iwae-typo"),
            "unknown objective 'iwae-typo'; choose one of: elbo",
        ),
        (lambda: objectives.make("elbo", 0), "num_particles must be an integer >= 1"),
        (lambda: objectives.make("elbo", 2.5), "num_particles"),
        (lambda: objectives.make("elbo", max_plate_nesting="1"), "max_plate_nesting"),
        (lambda: objectives.make("iwae", alpha=0.5), "'iwae' has no option 'alpha'; its options"),
        (lambda: objectives.make("renyi", alpha=1), "alpha must differ from 1"),
        (lambda: objectives.make("renyi", alpha=float("nan")), "alpha must be a finite number"),
        (lambda: objectives.make("iwae", free_bits=1.0), "free_bits applies to the KL term"),
        (lambda: objectives.make("elbo", beta=-1.0), "beta must be ≥ 0"),
        (lambda: objectives.make("elbo", warmup_steps=1.5), "warmup_steps must be an integer"),
        (lambda: objectives.make("stl", bound="vimco"), "bound must be 'elbo' or 'iwae'"),
        (lambda: objectives.parse("iwae:k"), "expected option=value, got 'k'"),
        (lambda: objectives.parse("iwae:k=five"), "num_particles must be int, got 'five'"),
        (lambda: objectives.parse("iwae:k=2,k=3"), "option 'num_particles' is given twice"),
        (lambda: objectives.parse(""), "non-empty string"),
        (lambda: objectives.parse_list("elbo,,iwae"), "empty item"),
        (lambda: objectives.parse_list("iwae:k=5,iwae:k=5"), "'iwae:k=5' is listed twice"),
    ],
)
def test_bad_objectives_and_options_are_named(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_specs_read_the_command_line_form():
    spec = objectives.parse("renyi:k=5:alpha=0.25,beta=0.5")
    assert spec == objectives.ObjectiveSpec("renyi", 5, {"alpha": 0.25, "beta": 0.5})
    assert spec.label == "renyi:k=5,alpha=0.25,beta=0.5"
    made = spec.make(num_particles=7)
    assert (made.num_particles, made.alpha, made.schedule.beta) == (7, 0.25, 0.5)
    labels = [s.label for s in objectives.parse_list("elbo, iwae-dreg:k=5, stl:bound=iwae,k=2")]
    assert labels == ["elbo", "iwae-dreg:k=5", "stl:k=2,bound=iwae"]
    assert objectives.parse("elbo:warmup=10").options == {"warmup_steps": 10}


def test_global_latents_are_refused_with_the_site_named():
    def model(x):
        pyro.sample("g", dist.Normal(0.0, 1.0))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(0.0, 1.0).expand([x.shape[0], 2]).to_event(1), obs=x)

    def guide(x):
        pyro.sample("g", dist.Normal(0.0, 1.0))

    with pytest.raises(ValueError, match="site 'g' of the guide is outside plate 'data'"):
        objectives.make("iwae", 2).loss(model, guide, torch.zeros(3, 2))


def test_importance_weighted_bounds_need_one_scale_per_example():
    vae, x = small_vae(), binary_data(6)

    def annealed_guide(x):
        with pyro.poutine.scale(scale=0.5):
            vae.guide(x)

    with pytest.raises(ValueError, match="scaled differently.*beta="):
        objectives.make("iwae", 2).loss(vae.model, annealed_guide, x)


@pytest.mark.filterwarnings("ignore:`torch.jit.trace` is deprecated")
def test_jit_is_offered_where_it_measured_faster():
    jitted = objectives.parse("elbo:k=2,jit=true").make()
    assert type(jitted) is pyro.infer.JitTrace_ELBO and jitted.num_particles == 2
    vae, x = small_vae(), binary_data(25)
    history = pv.fit(vae, x, objective=jitted, epochs=2, batch_size=10, progress=False)
    assert all(torch.isfinite(torch.tensor(history.column("train_loss"))))
    with pytest.raises(ValueError, match="offered for 'elbo' only"):
        objectives.make("analytic-kl", jit=True)
    with pytest.raises(ValueError, match="JitTrace_ELBO, which has no option 'beta'"):
        objectives.make("elbo", jit=True, beta=0.5)
    with pytest.raises(ValueError, match="jit must be true or false, got 'maybe'"):
        objectives.parse("elbo:jit=maybe")
