"""fit(): per-example scaling, learning on real digits, run folders, resume, early stopping,
and the errors bad arguments get."""

from __future__ import annotations

import csv
import json
import math
import warnings

import pyro
import pyro.distributions as dist
import pytest
import torch
from conftest import binary_data, empty_guide, shift_model, small_vae

import pyro_vae as pv
from pyro_vae._checks import MAX_LEARNING_RATE, available_devices
from pyro_vae.infer._fused import PerExample
from pyro_vae.models.linear_gaussian import LinearGaussian
from pyro_vae.train._trainer import Trainer


@pytest.mark.parametrize("batch_size", [1, 7, 40])
def test_losses_are_per_example_nats_whatever_the_batch_size(batch_size):
    # With the exact posterior as guide every sample gives ELBO = log p(x) exactly,
    # so the per-example loss is known; a tiny learning rate keeps the model fixed.
    model = LinearGaussian.random(data_dim=5, latent_dim=2, seed=4)
    x = model.sample(40, seed=5)
    history = pv.fit(
        model.vae(),
        x,
        valid=x,
        objective="elbo",
        epochs=1,
        batch_size=batch_size,
        lr=1e-12,
        progress=False,
    )
    expected = -model.log_marginal(x).mean().item()
    assert history.rows[0]["train_loss"] == pytest.approx(expected, abs=1e-6)
    assert history.rows[0]["valid_loss"] == pytest.approx(expected, abs=1e-6)


def test_training_on_the_embedded_digits_improves_held_out_log_likelihood():
    train = pv.data.load("mnist5k", "train")[:1000]
    test = pv.data.load("mnist5k", "test", binarize="static")[:200]
    vae = pv.VAE(
        pv.priors.StandardNormal(8),
        pv.likelihoods.Bernoulli(pv.nets.MLP(8, [128], 784)),
        pv.guides.DiagonalNormal(pv.nets.MLP(784, [128]), latent_dim=8),
    )

    def held_out():
        return pv.evaluate.log_likelihood(vae.model, vae.guide, test, num_samples=20)

    before = held_out()
    pv.fit(vae, train, epochs=3, batch_size=50, lr=3e-3, binarize=True, seed=0, progress=False)
    gain = held_out() - before
    # The margin is the paired standard error of the mean gain over the test examples.
    margin = 5 * gain.std().item() / math.sqrt(len(gain))
    assert gain.mean().item() > margin
    assert gain.mean().item() > 0


def test_a_run_folder_holds_config_log_and_checkpoints(tmp_path):
    x = binary_data(40)
    history = pv.fit(
        small_vae(),
        x,
        valid=x[:10],
        epochs=3,
        batch_size=16,
        out=tmp_path,
        config={"note": "hello"},
        progress=False,
    )
    assert {p.name for p in tmp_path.iterdir()} >= {
        "config.json",
        "log.csv",
        "checkpoint.pt",
        "best.pt",
    }
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["note"] == "hello" and config["objective"] == "analytic-kl"
    with open(tmp_path / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert float(rows[-1]["train_loss"]) == pytest.approx(history.rows[-1]["train_loss"])
    state = pv.checkpoints.load(tmp_path / "checkpoint.pt")
    assert state["epoch"] == 3 and set(state["params"]) == set(small_vae().state_dict())
    with pytest.raises(FileExistsError, match="already holds a run"):
        pv.fit(small_vae(), x, epochs=1, out=tmp_path, progress=False)
    pv.fit(small_vae(), x, epochs=1, out=tmp_path, overwrite=True, progress=False)
    assert not (tmp_path / "best.pt").exists()


def test_resuming_gives_the_same_parameters_as_training_straight_through(tmp_path):
    x = torch.rand(48, 12)  # intensities: dynamic binarisation draws from the RNG each step
    kwargs = dict(epochs=4, batch_size=10, binarize=True, seed=3, progress=False)
    pyro.set_rng_seed(0)
    straight = small_vae()
    pv.fit(straight, x, out=tmp_path / "a", **kwargs)

    pyro.set_rng_seed(0)
    interrupted = small_vae()
    pv.fit(interrupted, x, out=tmp_path / "b", **(kwargs | {"epochs": 2}))
    pyro.set_rng_seed(123)  # a restarted process has other generator states
    resumed = small_vae()  # and a freshly initialised model
    history = pv.fit(resumed, x, out=tmp_path / "b", resume=True, **kwargs)

    assert [r["epoch"] for r in history.rows] == [1, 2, 3, 4]
    for (name, a), b in zip(
        straight.state_dict().items(), resumed.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name


def test_early_stopping_restores_the_best_parameters_of_a_plain_pyro_model(tmp_path):
    # Training pulls b towards +1 while the validation data sit at -1: validation
    # loss rises after the first epoch, so training stops after `patience` more.
    train, valid = torch.ones(20, 2), -torch.ones(20, 2)
    history = pv.fit(
        shift_model,
        train,
        guide=empty_guide,
        valid=valid,
        objective="elbo",
        epochs=20,
        batch_size=5,
        lr=0.1,
        patience=2,
        out=tmp_path,
        progress=False,
    )
    assert history.stopped_early and history.best_epoch == 1 and len(history.rows) == 3
    assert history.kept_epoch == 1, "the model holds the best epoch's parameters"
    best = pv.checkpoints.load(tmp_path / "best.pt")["params"]["b"]
    torch.testing.assert_close(pyro.param("b").detach(), best)
    last = pv.checkpoints.load(tmp_path / "checkpoint.pt")["params"]["b"]
    assert (last > best).all()


def test_without_validation_the_kept_epoch_is_the_last():
    rows = [{"epoch": e, "train_loss": 1.0, "seconds": 1.0} for e in (1, 2, 3)]
    assert pv.History(rows).kept_epoch == 3 and pv.History().kept_epoch is None


def test_a_plain_pyro_model_resumes_from_its_checkpoint(tmp_path):
    train = torch.ones(20, 2)
    kwargs = dict(guide=empty_guide, objective="elbo", batch_size=5, lr=0.1, progress=False)
    pv.fit(shift_model, train, epochs=2, out=tmp_path, **kwargs)
    saved = pyro.param("b").detach().clone()
    pyro.clear_param_store()
    history = pv.fit(shift_model, train, epochs=3, out=tmp_path, resume=True, **kwargs)
    assert len(history.rows) == 3
    assert (pyro.param("b").detach() > saved).all()


def test_a_non_finite_loss_stops_training_with_the_step_named():
    def model(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(pyro.param("b", torch.zeros(2)), 1e-30).to_event(1), obs=x)

    with pytest.raises(
        FloatingPointError, match=r"epoch 1, step 1 \(analytic-kl\): the loss is inf"
    ):
        pv.fit(model, torch.ones(4, 2), guide=empty_guide, epochs=1, progress=False)
    assert torch.equal(pyro.param("b").detach(), torch.zeros(2)), "the bad step was applied"


@pytest.mark.parametrize(
    "data, kwargs, error, match",
    [
        (binary_data() * 255, {}, ValueError, r"support of the Bernoulli.*max 255.*binarise"),
        ((binary_data() * 255).to(torch.uint8), {}, TypeError, r"float\(\) / 255"),
        (binary_data().double(), {}, TypeError, "dtype torch.float64 but the VAE's"),
        (
            binary_data().masked_fill(torch.eye(40, 12, dtype=torch.bool), math.nan),
            {},
            ValueError,
            "NaN",
        ),
        (binary_data()[:, :5], {}, ValueError, r"event shape \(5,\), the model expects \(12,\)"),
        (torch.rand(40, 12) * 2, {"binarize": True}, ValueError, "intensities in"),
        (binary_data(), {"objective": "iwea"}, ValueError, "unknown objective 'iwea'"),
        (binary_data(), {"epochs": 0}, ValueError, "epochs must be a positive integer"),
        (binary_data(), {"lr": -1.0}, ValueError, "lr must be a positive number"),
        (binary_data(), {"num_particles": 0}, ValueError, "num_particles"),
        (binary_data(), {"patience": 2}, ValueError, "needs validation data"),
        (binary_data(), {"resume": True}, ValueError, "resume needs the run folder"),
        (binary_data(), {"guide": empty_guide}, ValueError, "guide must not be given"),
        (binary_data(), {"valid": torch.rand(5, 12)}, ValueError, "valid has values outside"),
        (binary_data(), {"device": "tpu:x"}, ValueError, "device must be"),
        (binary_data().numpy(), {}, TypeError, "torch.Tensor"),
        (binary_data(), {"on_nonfinite": "skip"}, ValueError, "on_nonfinite must be one of"),
        (binary_data(), {"checkpoint_every": 5}, ValueError, "checkpoint_every needs a run"),
        (binary_data(), {"clip_grad_norm": -1.0}, ValueError, "clip_grad_norm must be a positive"),
        (binary_data(), {"max_rollbacks": 0}, ValueError, "max_rollbacks must be a positive"),
        (binary_data(), {"config": {"f": print}}, TypeError, "config must hold only JSON data"),
        (binary_data(), {"config": [1]}, TypeError, "config must be a dict"),
        (binary_data(), {"binarize": "yes"}, TypeError, "binarize must be True or False"),
    ],
)
def test_bad_arguments_are_named(data, kwargs, error, match):
    with pytest.raises(error, match=match):
        pv.fit(small_vae(), data, epochs=kwargs.pop("epochs", 1), progress=False, **kwargs)


def test_resuming_a_folder_without_a_checkpoint_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint.pt"):
        pv.fit(small_vae(), binary_data(), out=tmp_path, resume=True, progress=False)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message without CUDA")
def test_asking_for_cuda_without_it_is_an_error():
    with pytest.raises(ValueError, match="CUDA is not available"):
        pv.fit(small_vae(), binary_data(), device="cuda", progress=False)


def test_a_plain_model_needs_a_guide():
    with pytest.raises(TypeError, match="guide=<function>"):
        pv.fit(shift_model, torch.ones(4, 2), progress=False)


def test_resuming_keeps_the_kl_warmup_where_it_stopped(tmp_path):
    x = torch.rand(30, 12)
    kwargs = dict(
        objective="elbo:beta=1.0,warmup_steps=7", epochs=3, batch_size=10, binarize=True,
        seed=5, progress=False,
    )  # fmt: skip
    pyro.set_rng_seed(0)
    straight = small_vae()
    pv.fit(straight, x, out=tmp_path / "a", **kwargs)
    pyro.set_rng_seed(0)
    interrupted = small_vae()
    pv.fit(interrupted, x, out=tmp_path / "b", **(kwargs | {"epochs": 1}))
    resumed = small_vae()
    pv.fit(resumed, x, out=tmp_path / "b", resume=True, **kwargs)
    state = pv.checkpoints.load(tmp_path / "b" / "checkpoint.pt")
    assert state["objective_state"] == {"step": 9}
    for key, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


def test_objectives_are_given_as_specs():
    x = binary_data(20)
    history = pv.fit(small_vae(), x, objective="iwae:k=3", epochs=1, batch_size=10, progress=False)
    assert len(history.rows) == 1
    with pytest.raises(ValueError, match="num_particles=5 contradicts the objective 'iwae:k=3'"):
        pv.fit(small_vae(), x, objective="iwae:k=3", num_particles=5, progress=False)
    with pytest.raises(ValueError, match="num_particles goes with an objective given by name"):
        pv.fit(small_vae(), x, objective=pv.objectives.make("elbo"), num_particles=2,
               progress=False)  # fmt: skip


def test_every_objective_sees_the_same_batches():
    """The data order and binarisation come from their own generator, not the particles'."""
    seen, x = {}, torch.rand(30, 12)
    for objective in ("elbo", "iwae:k=7"):
        batches = []

        small = small_vae()

        def model(x, batches=batches, small=small):
            batches.append(x.clone())
            small.model(x)

        pv.fit(model, x, guide=small.guide, objective=objective, epochs=2,
               batch_size=10, binarize=True, seed=1, progress=False)  # fmt: skip
        # The first calls create the parameters and check the programs' sites and plates.
        seen[objective] = batches[2:]
    assert len(seen["elbo"]) == len(seen["iwae:k=7"]) == 6
    for a, b in zip(seen["elbo"], seen["iwae:k=7"], strict=True):
        assert torch.equal(a, b)


def test_fit_takes_the_steps_of_svi_with_pyro_optim_adam():
    """One torch Adam over all parameters is pyro.optim.Adam's per-tensor Adam, step for step."""
    x, steps = binary_data(16), 6
    pyro.set_rng_seed(0)
    fitted = small_vae()
    reference = small_vae()
    reference.load_state_dict(fitted.state_dict())
    pv.fit(fitted, x, epochs=steps, batch_size=16, seed=4, lr=0.01, progress=False)

    pyro.set_rng_seed(4)
    generator = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,)).item()))
    svi = pyro.infer.SVI(
        PerExample(reference.model),
        PerExample(reference.guide),
        pyro.optim.Adam({"lr": 0.01}),
        pv.objectives.make(),
    )
    for _ in range(steps):
        svi.step(x[torch.randperm(16, generator=generator)])
    for (name, a), b in zip(
        fitted.state_dict().items(), reference.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)


def test_the_adam_of_a_cpu_run_is_torch_s_fused_kernel():
    """The previous test holds it to pyro.optim.Adam's steps; fused is the faster kernel."""
    vae, x = small_vae(), binary_data(8)
    trainer = Trainer(vae.model, vae.guide, pv.objectives.make(), lr=0.01, vae=vae)
    trainer.prepare(x)
    assert trainer.optimizer.defaults["fused"] is True


def test_an_older_checkpoint_s_per_parameter_adam_state_is_converted():
    vae, x = small_vae(), binary_data(8)
    svi = pyro.infer.SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 0.01}), pv.objectives.make())
    svi.step(x)
    svi.step(x)
    trainer = Trainer(vae.model, vae.guide, pv.objectives.make(), lr=0.01, vae=vae)
    trainer.prepare(x)
    trainer.load_state_dict(svi.optim.get_state())
    store = pyro.get_param_store()
    for name, param in zip(trainer.names, trainer.optimizer.param_groups[0]["params"], strict=True):
        saved = svi.optim.optim_objs[store._params[name]].state_dict()["state"][0]
        torch.testing.assert_close(trainer.optimizer.state[param]["exp_avg"], saved["exp_avg"])
        assert trainer.optimizer.state[param]["step"] == 2


def test_optimizer_state_for_other_parameters_is_refused():
    vae, x = small_vae(), binary_data(8)
    trainer = Trainer(vae.model, vae.guide, pv.objectives.make(), lr=0.01, vae=vae)
    trainer.prepare(x)
    state = trainer.state_dict()
    state["names"] = state["names"][:-1] + ["vae$$$other"]
    with pytest.raises(ValueError, match="other parameters than the model's.*vae\\$\\$\\$other"):
        trainer.load_state_dict(state)


def test_programs_without_parameters_are_refused():
    def model(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(0.0, 1.0).expand([2]).to_event(1), obs=x)

    with pytest.raises(ValueError, match="no parameters to train"):
        pv.fit(model, torch.ones(4, 2), guide=empty_guide, epochs=1, progress=False)


def test_a_parameter_first_used_later_is_trained_too(tmp_path):
    calls = []

    def model(x):
        calls.append(1)
        b = pyro.param("b", torch.zeros(2))
        loc = b + pyro.param("late", torch.zeros(2)) if len(calls) > 3 else b
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(loc, 1.0).to_event(1), obs=x)

    kwargs = dict(guide=empty_guide, objective="elbo", batch_size=2, lr=0.1, progress=False)
    pv.fit(model, torch.ones(8, 2), epochs=3, out=tmp_path, **kwargs)
    late = pyro.param("late").detach().clone()
    assert (late > 0).all()
    calls.clear()  # as in a new process: "late" is not used again until the fourth call
    pv.fit(model, torch.ones(8, 2), epochs=4, out=tmp_path, resume=True, **kwargs)
    assert not torch.equal(pyro.param("late").detach(), late)  # resumed, and still trained


def test_the_first_step_runs_with_pyro_s_distribution_checks():
    calls = []

    def model(x):
        calls.append(1)  # call 1 creates the parameters; call 2 is the first step
        scale = pyro.param("scale", torch.ones(2)) * (-1 if len(calls) == 2 else 1)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(0.0, scale).to_event(1), obs=x)

    with pytest.raises(ValueError, match="scale"):
        pv.fit(model, torch.ones(4, 2), guide=empty_guide, epochs=1, progress=False)
    assert pyro.distributions.is_validation_enabled()  # restored after training


# --------------------------------------------------------------- issue 17: smaller defects


@pytest.mark.parametrize("device", ["mps", "xla", "cuda:99", "meta"])
def test_fit_names_a_device_this_machine_lacks_and_what_it_has(device):
    if device in available_devices():
        pytest.skip(f"this machine has {device}")
    with pytest.raises(ValueError, match=rf"device '{device}' is not available.*available: cpu"):
        pv.fit(small_vae(), binary_data(), epochs=1, device=device, progress=False)


def test_the_largest_learning_rate_is_where_adam_s_first_step_overflows_float32():
    def first_step(lr: float) -> None:
        w = torch.nn.Parameter(torch.zeros(2))
        w.grad = torch.ones(2)
        torch.optim.Adam([w], lr=lr).step()

    first_step(MAX_LEARNING_RATE)
    with pytest.raises(RuntimeError, match="without overflow"):
        first_step(math.nextafter(MAX_LEARNING_RATE, math.inf))
    with pytest.raises(ValueError, match=r"lr must be at most 3.4e\+37: Adam's first step"):
        pv.fit(small_vae(), binary_data(), epochs=1, lr=1e38, progress=False)


def _grey_level_vae(likelihood: type, **options) -> pv.VAE:
    head = likelihood(pv.nets.MLP(3, [16], 12), **options)
    guide = pv.guides.DiagonalNormal(pv.nets.MLP(12, [16]), latent_dim=3)
    return pv.VAE(pv.priors.StandardNormal(3), head, guide)


def _scale_warnings(vae: pv.VAE, x: torch.Tensor) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pv.fit(vae, x, valid=x, epochs=2, batch_size=10, progress=False)
    return [str(w.message) for w in caught if "far outside [0, 1]" in str(w.message)]


@pytest.mark.parametrize("likelihood", [pv.likelihoods.Gaussian, pv.likelihoods.Laplace])
def test_fit_warns_once_of_grey_levels_under_a_fixed_scale(likelihood):
    grey = torch.randint(0, 256, (40, 12), generator=torch.Generator().manual_seed(0)).float()
    [message] = _scale_warnings(_grey_level_vae(likelihood), grey)
    assert f"{likelihood.__name__} likelihood's scale is fixed at 0.1" in message
    assert "rescale the data" in message and "learn the scale" in message
    assert _scale_warnings(_grey_level_vae(likelihood, learn_scale=True), grey) == []
    assert _scale_warnings(_grey_level_vae(likelihood), grey / 255) == []
    assert _scale_warnings(_grey_level_vae(likelihood), torch.randn(40, 12)) == []
