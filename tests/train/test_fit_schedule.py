"""fit's optimiser settings, wall-clock budget and anytime test curve: lr_schedule, adam_betas,
adam_eps, max_minutes, test/test_every."""

from __future__ import annotations

import json
import math

import pyro
import pytest
import torch

import pyro_vae as pv
from pyro_vae.cli import commands as cli
from pyro_vae.train import schedules
from tests.conftest import binary_data, small_vae

X = binary_data(40)


def _fit(out=None, vae=None, **kwargs):
    kwargs = {"batch_size": 10, "seed": 0, "progress": False, "epochs": 4} | kwargs
    return pv.fit(vae or small_vae(), X, out=out, **kwargs)


def _adam(out) -> dict:
    return pv.checkpoints.load(out / "checkpoint.pt")["optim_state"]["adam"]["param_groups"][0]


def _twins():
    """Two VAEs with the same initial parameters."""
    pyro.set_rng_seed(0)
    a = small_vae()
    pyro.set_rng_seed(0)
    return a, small_vae()


def _same(a, b) -> None:
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), name


def test_burda2015_is_the_paper_s_schedule():
    s = schedules.parse("burda2015")
    assert s.epochs == 3280 == sum(3**i for i in range(8))
    ends = [sum(3**j for j in range(i + 1)) for i in range(8)]
    for i, end in enumerate(ends):
        assert s.stage(end) == i and s.stage(end + 1) == min(i + 1, 7)
        assert s.factor(end) == pytest.approx(10 ** (-i / 7), rel=1e-12)
    assert s.factor(10_000) == s.factor(3280)


@pytest.mark.parametrize(
    "spec, match",
    [
        ("cosine", "unknown learning-rate schedule 'cosine'; choose one of: constant"),
        ("geometric:growth=2", "give decay, stages"),
        ("geometric:growth=2,decay=2,stages=3", "decay must be in"),
        ("burda2015:x=1", "takes no options"),
    ],
)
def test_a_bad_schedule_is_named(spec, match):
    with pytest.raises(ValueError, match=match):
        schedules.parse(spec)
    with pytest.raises(ValueError, match=match):
        _fit(lr_schedule=spec)


def test_each_epoch_trains_at_the_schedule_s_rate(tmp_path):
    spec = "geometric:growth=2,decay=0.5,stages=3"  # epochs 1 | 2-3 | 4-7 at 1, 1/2, 1/4
    for epochs, factor in ((1, 1.0), (2, 0.5), (3, 0.5), (4, 0.25), (5, 0.25)):
        _fit(tmp_path, epochs=epochs, lr=0.01, lr_schedule=spec, resume=epochs > 1)
        assert _adam(tmp_path)["lr"] == pytest.approx(0.01 * factor), epochs
    config = json.loads((tmp_path / "config.json").read_text())
    assert (config["lr"], config["lr_schedule"]) == (0.01, spec)


def test_a_scheduled_run_resumes_exactly(tmp_path):
    spec = "geometric:growth=2,decay=0.5,stages=3"
    straight, resumed = _twins()
    _fit(tmp_path / "a", straight, epochs=5, lr=0.01, lr_schedule=spec)
    _fit(tmp_path / "b", resumed, epochs=2, lr=0.01, lr_schedule=spec)
    history = _fit(tmp_path / "b", resumed, epochs=5, resume=True)
    assert len(history.rows) == 5
    _same(straight, resumed)


def test_adam_settings_reach_the_optimizer_and_are_fixed_on_resume(tmp_path):
    _fit(tmp_path, epochs=1, adam_betas=(0.5, 0.9), adam_eps=1e-4)
    group = _adam(tmp_path)
    assert (tuple(group["betas"]), group["eps"]) == ((0.5, 0.9), 1e-4)
    _fit(tmp_path, epochs=2, resume=True)  # the run's own, left out
    with pytest.raises(ValueError, match=r"trained with adam_eps 0.0001, got 1e-08"):
        _fit(tmp_path, epochs=3, resume=True, adam_eps=1e-8)
    with pytest.raises(ValueError, match="trained with lr_schedule 'constant', got 'burda2015'"):
        _fit(tmp_path, epochs=3, resume=True, lr_schedule="burda2015")


@pytest.mark.parametrize("betas", [(0.9,), (0.9, 1.0), ("a", 0.9), (-0.1, 0.9)])
def test_bad_adam_betas_are_named(betas):
    with pytest.raises(ValueError, match="adam_betas must be two numbers in"):
        _fit(adam_betas=betas)


def test_the_anytime_curve_logs_test_log_px_and_leaves_training_alone(tmp_path):
    plain, measured = _twins()
    _fit(tmp_path / "plain", plain, epochs=5)
    curve = {"test": X[:8], "test_every": 2, "test_samples": 7}
    history = _fit(tmp_path / "curve", measured, epochs=5, **curve)
    _same(plain, measured)
    values = history.column("test_log_likelihood")
    assert [math.isnan(v) for v in values] == [True, False, True, False, False]  # 2, 4, the last
    assert all(v < 0 for v in values if not math.isnan(v))
    log = (tmp_path / "curve" / "log.csv").read_text().splitlines()
    assert log[0].endswith(",test_log_likelihood") and log[1].endswith(",nan")
    # The same epoch's estimate is the same number: it has its own seeded draws.
    again = _fit(tmp_path / "again", _twins()[0], epochs=2, **curve)
    assert again.column("test_log_likelihood")[1] == values[1]


def test_test_and_test_every_go_together():
    with pytest.raises(ValueError, match="test and test_every go together"):
        _fit(test=X[:8])
    with pytest.raises(ValueError, match="test_every must be a positive integer"):
        _fit(test=X[:8], test_every=0)


def test_a_run_past_its_wall_clock_budget_stops_at_a_checkpoint_and_resumes(tmp_path):
    history = _fit(tmp_path, epochs=4, max_minutes=1e-9)
    assert history.out_of_time and len(history.rows) == 1
    assert pv.checkpoints.load(tmp_path / "checkpoint.pt")["epoch"] == 1
    history = _fit(tmp_path, epochs=4, resume=True)
    assert not history.out_of_time and len(history.rows) == 4
    config = json.loads((tmp_path / "config.json").read_text())
    assert "max_minutes" not in config, "how to run is not part of the record"


def test_the_command_line_takes_the_schedule_budget_and_curve(tmp_path, capsys):
    argv = ["train", "--dataset", "digits", "--hidden", "16", "--latent-dim", "2", "--no-progress"]
    argv += ["--num-samples", "2", "--out", str(tmp_path), "--epochs", "3"]
    argv += ["--lr-schedule", "burda2015", "--adam-eps", "1e-4", "--adam-betas", "0.9,0.99"]
    argv += ["--test-every", "2", "--test-samples", "3", "--max-minutes", "1e-9"]
    assert cli.main(argv) == 0
    assert "stopped at --max-minutes 1e-09 after epoch 1; continue with" in capsys.readouterr().out
    assert not (tmp_path / "metrics.json").exists(), "an interrupted run is not evaluated"
    resume = ["train", "--out", str(tmp_path), "--resume", "--no-progress", "--num-samples", "2"]
    assert cli.main([*resume, "--test-every", "2", "--test-samples", "3"]) == 0
    config = json.loads((tmp_path / "config.json").read_text())
    assert (config["lr_schedule"], config["adam_eps"], config["adam_betas"]) == (
        "burda2015",
        1e-4,
        [0.9, 0.99],
    )
    rows = (tmp_path / "log.csv").read_text().splitlines()[1:]
    assert [r.endswith(",nan") for r in rows] == [True, False, False]
    assert cli.main(["train", "--out", str(tmp_path), "--resume", "--adam-eps", "0.1"]) == 2
    assert "trained with --adam-eps 0.0001, got 0.1" in capsys.readouterr().err
