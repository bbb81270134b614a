"""Custom Pyro programs, as the README promises: a user's own model and guide work with
``objectives`` (in plain ``pyro.infer.SVI``), ``fit`` and ``evaluate`` with no extra settings,
and programs outside the contract get one clear message on every path."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pyro.infer
import pyro.optim
import pytest
import torch
from conftest import binary_data, empty_guide, shift_model, small_vae
from torch import nn

import pyro_vae as pv
from pyro_vae.infer import evaluate, objectives

DATA_DIM, LATENT_DIM = 6, 2


class BernoulliPrograms:
    """One Bernoulli VAE written as plain Pyro functions in two ways.

    ``nested_model`` puts the pixels in their own plate inside ``"data"`` (data at
    dim -2, pixels at dim -1), the layout the README's custom programs may use;
    ``flat_model`` keeps the pixels in the event. Both share their networks, and
    their draws of z hold the same numbers in the same order, so with one seed
    every bound of the two is the same number.
    """

    def __init__(self) -> None:
        self.decoder = nn.Linear(LATENT_DIM, DATA_DIM)
        self.encoder = nn.Linear(DATA_DIM, 2 * LATENT_DIM)

    def _q(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pyro.module("encoder", self.encoder)
        loc, log_scale = self.encoder(x).chunk(2, dim=-1)
        return loc, log_scale.exp()

    def nested_model(self, x: torch.Tensor) -> None:
        pyro.module("decoder", self.decoder)
        with pyro.plate("data", x.shape[0], dim=-2):
            z = pyro.sample("z", dist.Normal(x.new_zeros(LATENT_DIM), 1.0).to_event(1))
            logits = self.decoder(z).squeeze(-2)  # (..., B, 1, D) -> (..., B, D)
            with pyro.plate("pixels", DATA_DIM, dim=-1):
                pyro.sample("x", dist.Bernoulli(logits=logits), obs=x)

    def nested_guide(self, x: torch.Tensor) -> None:
        loc, scale = self._q(x)
        with pyro.plate("data", x.shape[0], dim=-2):
            pyro.sample("z", dist.Normal(loc.unsqueeze(-2), scale.unsqueeze(-2)).to_event(1))

    def flat_model(self, x: torch.Tensor) -> None:
        pyro.module("decoder", self.decoder)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(LATENT_DIM), 1.0).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=self.decoder(z)).to_event(1), obs=x)

    def flat_guide(self, x: torch.Tensor) -> None:
        loc, scale = self._q(x)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))


def global_scale_model(x: torch.Tensor) -> None:
    """A global latent s outside plate "data": under a particle plate s has shape (K, 1),
    which the batch's (B, D) cannot broadcast against."""
    s = pyro.sample("s", dist.LogNormal(0.0, 1.0))
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(x.new_zeros(x.shape), s).to_event(1))
        pyro.sample("x", dist.Normal(z, 1.0).to_event(1), obs=x)


def global_scale_guide(x: torch.Tensor) -> None:
    pyro.sample("s", dist.LogNormal(pyro.param("s_loc", torch.tensor(0.0)), 1.0))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Normal(pyro.param("z_loc", torch.zeros(x.shape[1])), 1.0).to_event(1))


# --------------------------------------------------------------------------- nested plates


@pytest.mark.parametrize("name", objectives.OBJECTIVES)
def test_a_nested_plate_gives_the_flat_program_s_bound_under_every_objective(name):
    programs, x = BernoulliPrograms(), binary_data(8, DATA_DIM)
    pyro.set_rng_seed(1)
    nested = objectives.make(name, 3).loss(programs.nested_model, programs.nested_guide, x)
    pyro.set_rng_seed(1)
    flat = objectives.make(name, 3).loss(programs.flat_model, programs.flat_guide, x)
    assert nested == pytest.approx(flat, rel=1e-5)


@pytest.mark.parametrize("name", objectives.OBJECTIVES)
def test_a_nested_plate_trains_in_plain_svi_under_every_objective(name):
    programs, x = BernoulliPrograms(), binary_data(8, DATA_DIM)
    before = programs.encoder.weight.detach().clone()
    objective = objectives.make(name, 3)
    svi = pyro.infer.SVI(
        programs.nested_model, programs.nested_guide, pyro.optim.Adam({"lr": 0.01}), objective
    )
    losses = [svi.step(x) for _ in range(3)]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert objective.max_plate_nesting == 2  # found from the programs
    assert not torch.equal(pyro.param("encoder$$$weight").detach(), before)


@pytest.mark.filterwarnings("ignore:`torch.jit.trace` is deprecated")
def test_a_nested_plate_trains_in_svi_with_pyro_s_compiled_elbo_too():
    programs, x = BernoulliPrograms(), binary_data(8, DATA_DIM)
    objective = objectives.make("elbo", 3, jit=True)
    svi = pyro.infer.SVI(
        programs.nested_model, programs.nested_guide, pyro.optim.Adam({"lr": 0.01}), objective
    )
    assert torch.isfinite(torch.tensor(svi.step(x)))


@pytest.mark.parametrize("name", objectives.OBJECTIVES)
def test_fit_trains_a_nested_plate_under_every_objective(name):
    programs, x = BernoulliPrograms(), binary_data(20, DATA_DIM)
    history = pv.fit(
        programs.nested_model,
        x,
        guide=programs.nested_guide,
        objective=f"{name}:k=2",
        epochs=2,
        batch_size=10,
        progress=False,
    )
    assert all(torch.isfinite(torch.tensor(history.column("train_loss"))))


def test_evaluation_of_a_nested_plate_matches_the_flat_program():
    programs, x = BernoulliPrograms(), binary_data(8, DATA_DIM)
    results = {}
    for layout in ("nested", "flat"):
        model, guide = getattr(programs, f"{layout}_model"), getattr(programs, f"{layout}_guide")
        pyro.set_rng_seed(2)
        log_px = evaluate.log_likelihood(model, guide, x, 20)
        bound = evaluate.elbo(model, guide, x, 20)
        bounds = evaluate.iwae_bounds(model, guide, x, ks=(1, 4))
        reconstruction, kl = evaluate.elbo_terms(model, guide, x, 4)
        results[layout] = torch.cat([log_px, bound, bounds[1], bounds[4], reconstruction, kl])
    assert torch.isfinite(results["nested"]).all()
    torch.testing.assert_close(results["nested"], results["flat"])


def test_a_given_max_plate_nesting_is_honoured():
    programs, x = BernoulliPrograms(), binary_data(8, DATA_DIM)
    roomy = objectives.make("iwae", 3, max_plate_nesting=3)
    pyro.set_rng_seed(1)
    loss = roomy.loss(programs.nested_model, programs.nested_guide, x)
    pyro.set_rng_seed(1)
    found = objectives.make("iwae", 3).loss(programs.nested_model, programs.nested_guide, x)
    assert roomy.max_plate_nesting == 3 and loss == pytest.approx(found, rel=1e-5)
    with pytest.raises(ValueError, match="max_plate_nesting=1 but the programs nest plates 2"):
        objectives.make("iwae", 3, max_plate_nesting=1).loss(
            programs.nested_model, programs.nested_guide, x
        )


# --------------------------------------------------------------------------- global latents


@pytest.mark.parametrize("name", objectives.OBJECTIVES)
def test_a_global_latent_gets_the_clear_message_in_plain_svi(name):
    x = torch.randn(10, 3)
    svi = pyro.infer.SVI(
        global_scale_model,
        global_scale_guide,
        pyro.optim.Adam({"lr": 0.01}),
        objectives.make(name, 5),
    )
    with pytest.raises(ValueError, match="site 's' of the guide is outside plate 'data'"):
        svi.step(x)


def test_a_global_latent_gets_the_same_message_from_fit_and_evaluate():
    x = torch.randn(10, 3)
    message = "site 's' of the guide is outside plate 'data'"
    with pytest.raises(ValueError, match=message):
        pv.fit(global_scale_model, x, guide=global_scale_guide, epochs=1, progress=False)
    with pytest.raises(ValueError, match=message):
        evaluate.log_likelihood(global_scale_model, global_scale_guide, x, 5)


# --------------------------------------------------------------------------- swapped programs

EVALUATIONS = {
    "log_weights": lambda model, guide, x: evaluate.log_weights(model, guide, x, 3),
    "log_likelihood": lambda model, guide, x: evaluate.log_likelihood(model, guide, x, 3),
    "elbo": lambda model, guide, x: evaluate.elbo(model, guide, x, 3),
    "iwae_bounds": lambda model, guide, x: evaluate.iwae_bounds(model, guide, x, ks=(1, 2)),
    "elbo_terms": lambda model, guide, x: evaluate.elbo_terms(model, guide, x, 2),
}


@pytest.mark.parametrize("function", EVALUATIONS)
def test_swapped_programs_are_refused_by_every_evaluation(function):
    vae, x = small_vae(), binary_data(6)
    swapped = rf"{function}: the model has no observed site; were model and guide swapped\?"
    with pytest.raises(ValueError, match=swapped):
        EVALUATIONS[function](vae.guide, vae.model, x)
    with pytest.raises(ValueError, match=swapped):
        EVALUATIONS[function](empty_guide, shift_model, torch.randn(6, 3))


@pytest.mark.parametrize("function", EVALUATIONS)
def test_a_vae_object_is_refused_with_the_method_to_pass(function):
    vae, x = small_vae(), binary_data(6)
    with pytest.raises(ValueError, match=rf"{function}: the model is a VAE.*pass vae\.model"):
        EVALUATIONS[function](vae, vae.guide, x)
    with pytest.raises(ValueError, match=rf"{function}: the guide is a VAE.*pass vae\.guide"):
        EVALUATIONS[function](vae.model, vae, x)


def test_a_guide_that_observes_a_site_is_refused():
    vae, x = small_vae(), binary_data(6)

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", vae.encode(x))
            pyro.sample("seen", dist.Normal(0.0, 1.0), obs=x[:, 0])

    with pytest.raises(ValueError, match="the guide has an observed site 'seen'; were model"):
        evaluate.log_likelihood(vae.model, guide, x, 3)


def test_swapped_programs_and_a_vae_object_are_refused_in_plain_svi():
    vae, x = small_vae(), binary_data(6)
    for model, guide, match in [
        (vae.guide, vae.model, "objective 'iwae': the model has no observed site"),
        (vae, vae.guide, r"objective 'iwae': the model is a VAE.*pass vae\.model"),
    ]:
        svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({}), objectives.make("iwae", 3))
        with pytest.raises(ValueError, match=match):
            svi.step(x)
    with pytest.raises(ValueError, match=r"unit_activity: the guide is a VAE.*pass vae\.guide"):
        evaluate.unit_activity(vae, x)


def test_a_recorded_deterministic_site_is_not_taken_for_an_observation():
    vae, x = small_vae(), binary_data(6)

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", vae.encode(x))
            pyro.deterministic("x_sum", x.sum(-1))

    assert torch.isfinite(evaluate.log_likelihood(vae.model, guide, x, 3)).all()
