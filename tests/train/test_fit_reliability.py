"""fit() under failure: non-finite steps (stop, rollback), gradient clipping, resuming
mid-epoch, and run folders that stay consistent whatever moment a run died at."""

from __future__ import annotations

import csv
import json
import math
import shutil

import pyro
import pyro.distributions as dist
import pytest
import torch
from conftest import binary_data, empty_guide, shift_model, small_vae

import pyro_vae as pv
from pyro_vae.train._trainer import Trainer


class Poison:
    """Which calls of Trainer.loss_and_grads (1-based) return NaN: those in ``at``,
    and every one from ``start`` on."""

    def __init__(self) -> None:
        self.at: set[int] = set()
        self.start: int | None = None
        self.calls = 0

    def __call__(self) -> bool:
        self.calls += 1
        return self.calls in self.at or (self.start is not None and self.calls >= self.start)


@pytest.fixture
def poison(monkeypatch):
    poison, real = Poison(), Trainer.loss_and_grads

    def loss_and_grads(self, x):
        loss = real(self, x)
        return math.nan if poison() else loss

    monkeypatch.setattr(Trainer, "loss_and_grads", loss_and_grads)
    return poison


def _fit_shift(**kwargs):
    pyro.clear_param_store()
    x = torch.linspace(-1, 3, 80).reshape(40, 2)
    kwargs = {"epochs": 2, "batch_size": 10, "lr": 0.05, "seed": 0, "progress": False} | kwargs
    history = pv.fit(shift_model, x, guide=empty_guide, **kwargs)
    return history, pyro.param("b").detach().clone()


def test_a_gradient_that_is_not_finite_stops_the_step_and_is_named():
    def model(x):
        b = pyro.param("b", torch.ones(2))
        scale = 1.0 + torch.sqrt(b - b.detach())  # the value 1, the derivative 1/0
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(0.0, scale).to_event(1), obs=x)

    with pytest.raises(pv.NonFiniteLossError, match="the gradient of b is inf") as info:
        pv.fit(model, torch.zeros(4, 2), guide=empty_guide, epochs=1, progress=False)
    assert (info.value.epoch, info.value.step, info.value.objective) == (1, 1, "analytic-kl")
    assert torch.equal(pyro.param("b").detach(), torch.ones(2)), "the bad step was applied"


def test_stopping_on_a_nan_leaves_the_last_good_checkpoint(poison, tmp_path):
    poison.at.add(6)  # epoch 2, step 2 of 4
    with pytest.raises(pv.NonFiniteLossError, match="epoch 2, step 2") as info:
        _fit_shift(out=tmp_path, checkpoint_every=1)
    assert str(tmp_path / "checkpoint.pt") in str(info.value)
    assert "on_nonfinite='rollback'" in str(info.value)
    state = pv.checkpoints.load(tmp_path / "checkpoint.pt")
    assert (state["position"]["epoch"], state["position"]["step"]) == (2, 1)


def test_a_rollback_returns_exactly_to_the_last_checkpoint(poison):
    # The model draws nothing at random, so the steps after a rollback replay those
    # the run would have taken: the end is the same as without the NaN, bit for bit.
    _, clean = _fit_shift()
    poison.calls, poison.at = 0, {6}
    with pytest.warns(RuntimeWarning, match=r"epoch 2, step 2 .*rolled back to epoch 2, step 0"):
        history, rolled = _fit_shift(on_nonfinite="rollback")
    assert torch.equal(clean, rolled)
    assert history.rollbacks == [
        {"epoch": 2, "step": 2, "objective": "analytic-kl", "problem": "the loss is nan",
         "to": (2, 0)}
    ]  # fmt: skip
    assert [r["epoch"] for r in history.rows] == [1, 2]


def test_a_rollback_goes_to_the_latest_checkpoint_within_the_epoch(poison, tmp_path):
    poison.at.add(7)  # epoch 2, step 3; checkpoints every 2 steps: the last at step 2
    with pytest.warns(RuntimeWarning):
        history, _ = _fit_shift(on_nonfinite="rollback", checkpoint_every=2, out=tmp_path)
    assert history.rollbacks[0]["to"] == (2, 2)


def test_rollbacks_give_up_after_max_rollbacks_in_a_row(poison):
    poison.start = 3  # every step from the third on
    with pytest.warns(RuntimeWarning), pytest.raises(
        pv.NonFiniteLossError, match="after 2 rollbacks in a row"
    ):  # fmt: skip
        _fit_shift(on_nonfinite="rollback", max_rollbacks=2)


def test_clipping_bounds_the_gradient_norm():
    trainer = Trainer(shift_model, empty_guide, pv.objectives.make("elbo"), 0.1)
    x = torch.full((5, 3), 100.0)
    trainer.prepare(x)
    loss = trainer.loss_and_grads(x)
    params = trainer.optimizer.param_groups[0]["params"]
    assert torch.nn.utils.get_total_norm([p.grad for p in params]) > 1.0
    assert trainer.check_and_clip(loss, max_norm=0.5) is None
    assert torch.nn.utils.get_total_norm([p.grad for p in params]).item() == pytest.approx(0.5)


def test_fit_clips_every_step_when_asked(monkeypatch):
    calls = []
    real = torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(
        torch.nn.utils,
        "clip_grad_norm_",
        lambda params, max_norm, **kw: calls.append(max_norm) or real(params, max_norm, **kw),
    )
    _fit_shift(clip_grad_norm=0.25)
    assert calls == [0.25] * 8  # 2 epochs of 4 steps


def test_a_run_stopped_mid_epoch_resumes_exactly(monkeypatch, tmp_path):
    x = torch.rand(40, 12)
    kwargs = dict(epochs=3, batch_size=10, binarize=True, seed=1, progress=False)
    pyro.set_rng_seed(0)
    straight = small_vae()
    pv.fit(straight, x, objective="iwae:k=3", **kwargs)

    real_apply, calls = Trainer.apply, [0]

    def interrupted_apply(self):
        calls[0] += 1
        if calls[0] == 7:  # epoch 2, step 3: as if Ctrl-C arrived here
            raise KeyboardInterrupt
        real_apply(self)

    monkeypatch.setattr(Trainer, "apply", interrupted_apply)
    pyro.set_rng_seed(0)
    with pytest.raises(KeyboardInterrupt):
        pv.fit(small_vae(), x, objective="iwae:k=3", out=tmp_path, checkpoint_every=1, **kwargs)
    monkeypatch.setattr(Trainer, "apply", real_apply)
    position = pv.checkpoints.load(tmp_path / "checkpoint.pt")["position"]
    assert (position["epoch"], position["step"]) == (2, 2)

    resumed = small_vae()
    history = pv.fit(resumed, x, objective="iwae:k=3", out=tmp_path, resume=True, **kwargs)
    assert [r["epoch"] for r in history.rows] == [1, 2, 3]
    for key, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


def _run(out, **kwargs):
    x = binary_data(40)
    kwargs = {"valid": x[:10], "batch_size": 10, "seed": 0, "progress": False} | kwargs
    return pv.fit(small_vae(), x, out=out, **kwargs)


def test_resuming_takes_a_new_learning_rate_or_keeps_the_run_s(tmp_path):
    _run(tmp_path, epochs=1, lr=3e-3)
    _run(tmp_path, epochs=2, resume=True)
    state = pv.checkpoints.load(tmp_path / "checkpoint.pt")
    assert state["optim_state"]["adam"]["param_groups"][0]["lr"] == 3e-3
    _run(tmp_path, epochs=3, resume=True, lr=5e-4)
    state = pv.checkpoints.load(tmp_path / "checkpoint.pt")
    assert state["optim_state"]["adam"]["param_groups"][0]["lr"] == 5e-4
    assert json.loads((tmp_path / "config.json").read_text())["lr"] == 5e-4


def test_resuming_on_other_data_or_batches_is_refused(tmp_path):
    _run(tmp_path, epochs=1)
    with pytest.raises(ValueError, match=r"trained on data of shape \(40, 12\), got \(30, 12\)"):
        pv.fit(small_vae(), binary_data(30), out=tmp_path, resume=True, epochs=2, progress=False)
    with pytest.raises(ValueError, match="trained with batch_size=10, got 20"):
        _run(tmp_path, epochs=2, resume=True, batch_size=20)


def test_a_crash_between_the_checkpoint_and_best_pt_is_repaired_on_resume(tmp_path):
    _run(tmp_path, epochs=1, lr=1e-2)
    shutil.copy(tmp_path / "best.pt", tmp_path / "best-epoch-1.pt")
    _run(tmp_path, epochs=2, lr=1e-2, resume=True)
    state = pv.checkpoints.load(tmp_path / "checkpoint.pt")
    assert state["best_epoch"] == 2, "the test needs epoch 2 to improve"
    shutil.move(tmp_path / "best-epoch-1.pt", tmp_path / "best.pt")  # best.pt not yet rewritten
    with pytest.warns(UserWarning, match="already trained 2 epochs"):
        _run(tmp_path, epochs=2, resume=True)  # nothing to train, but best.pt is repaired
    best = pv.checkpoints.load(tmp_path / "best.pt")
    assert best["epoch"] == 2
    for key, value in state["params"].items():
        assert torch.equal(best["params"][key], value), key


def test_log_rows_after_the_checkpoint_are_dropped_on_resume(tmp_path):
    _run(tmp_path, epochs=1)
    with open(tmp_path / "log.csv", "a", newline="") as f:
        csv.writer(f).writerow([2, 1.0, 1.0, 0.1])  # an epoch that died before its checkpoint
    history = _run(tmp_path, epochs=2, resume=True)
    with open(tmp_path / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert float(rows[1]["train_loss"]) == pytest.approx(history.rows[1]["train_loss"])


def test_a_new_run_clears_what_killed_writes_left(tmp_path):
    (tmp_path / ".checkpoint.pt.k2j3.tmp").write_bytes(b"half")
    _run(tmp_path, epochs=1)
    assert not list(tmp_path.glob(".*.tmp"))


def test_run_files_get_the_usual_permissions(tmp_path):
    _run(tmp_path, epochs=1)
    modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
    assert all(mode & 0o044 for mode in modes.values()), modes  # not mkstemp's 0600
