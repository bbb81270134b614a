"""A run folder is the record of an experiment: resume continues what was saved, one process
writes it at a time, and pv.load_run brings it back into Python."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import pyro_vae as pv
from pyro_vae.cli import commands as cli
from pyro_vae.cli._resume import CHANGEABLE_OPTIONS, FREE_OPTIONS, MODEL_OPTIONS, RUN_OPTIONS
from pyro_vae.train._run_folder import RunFolder
from tests.conftest import binary_data, small_vae

BASE = {"--dataset": "digits", "--hidden": "16", "--latent-dim": "2"}
QUIET = ["--no-progress", "--num-samples", "2"]


def _train(out: Path, options: dict[str, str] | None = None, extra=(), epochs: int = 1) -> int:
    options = BASE | (options or {})
    argv = ["train", "--out", str(out), "--epochs", str(epochs), *QUIET, *extra]
    for option, value in options.items():
        argv += [option] if value is None else [option, value]
    return cli.main(argv)


def _resume(out: Path, *extra: str, epochs: int = 2) -> int:
    return cli.main(
        ["train", "--out", str(out), "--resume", "--epochs", str(epochs), *QUIET, *extra]
    )


def _files(folder: Path) -> dict[str, bytes]:
    """The run's files, without the lock's bookkeeping (who holds it, rewritten by each holder)."""
    return {p.name: p.read_bytes() for p in folder.iterdir() if not p.name.startswith(".lock")}


def _shapes(path: Path) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in pv.checkpoints.load(path)["params"].items()}


# Every option that defines the model or the objective: (first run's options, and an
# option that contradicts it on resume). The first run leaves every default behind.
DEFINING = {
    "dataset": ({"--dataset": "digits"}, ["--dataset", "mnist5k"]),
    "prior": ({"--prior": "learned-normal"}, ["--prior", "mixture"]),
    "guide": ({"--guide": "full-normal"}, ["--guide", "iaf"]),
    "likelihood": ({"--likelihood": "continuous-bernoulli"}, ["--likelihood", "gaussian"]),
    "scale": ({"--likelihood": "gaussian", "--scale": "0.3"}, ["--scale", "0.5"]),
    "learn_scale": ({"--likelihood": "gaussian", "--learn-scale": None}, ["--scale", "0.2"]),
    "num_flows": ({"--guide": "iaf", "--num-flows": "3"}, ["--num-flows", "1"]),
    "components": ({"--prior": "mixture", "--components": "3"}, ["--components", "4"]),
    "net": ({"--net": "conv"}, ["--net", "mlp"]),
    "hidden": ({"--hidden": "24"}, ["--hidden", "32"]),
    "latent_dim": ({"--latent-dim": "3"}, ["--latent-dim", "4"]),
    "binarize": ({"--binarize": "static"}, ["--binarize", "dynamic"]),
    "classes": ({"--classes": "0,1"}, ["--classes", "1,2"]),
    "objective": ({"--objective": "iwae:k=2"}, ["--objective", "elbo"]),
    "num_particles": ({"--objective": "elbo", "--num-particles": "2"}, ["--num-particles", "3"]),
    "batch_size": ({"--batch-size": "50"}, ["--batch-size", "60"]),
    "seed": ({"--seed": "3"}, ["--seed", "4"]),
    "lr_schedule": (
        {"--lr-schedule": "geometric:growth=2,decay=0.5,stages=2"},
        ["--lr-schedule", "constant"],
    ),
    "adam_betas": ({"--adam-betas": "0.8,0.99"}, ["--adam-betas", "0.9,0.999"]),
    "adam_eps": ({"--adam-eps": "0.0001"}, ["--adam-eps", "0.001"]),
}


def test_every_train_option_is_classified_for_resume():
    """A new option must say whether it defines the run, may change on resume, or neither."""
    train = cli.make_parser().commands["train"]
    dests = {a.dest for a in train._actions if a.dest != "help"}  # noqa: SLF001
    classified = {*MODEL_OPTIONS, *RUN_OPTIONS, *CHANGEABLE_OPTIONS, *FREE_OPTIONS}
    assert dests == classified
    assert set(DEFINING) == {*MODEL_OPTIONS, *RUN_OPTIONS}


@pytest.mark.filterwarnings("ignore:analytic-kl. the KL")
@pytest.mark.parametrize("name", sorted(DEFINING))
def test_resume_rebuilds_the_run_from_its_config_and_refuses_a_contradiction(
    name, tmp_path, capsys
):
    options, contradiction = DEFINING[name]
    assert _train(tmp_path, options) == 0
    config = json.loads((tmp_path / "config.json").read_text())
    shapes = _shapes(tmp_path / "checkpoint.pt")
    capsys.readouterr()

    assert _resume(tmp_path) == 0  # none of the run's options given again
    resumed = json.loads((tmp_path / "config.json").read_text())
    assert {k: v for k, v in resumed.items() if k not in ("epochs", "resumes")} == {
        k: v for k, v in config.items() if k != "epochs"
    }
    assert _shapes(tmp_path / "checkpoint.pt") == shapes
    assert pv.checkpoints.load(tmp_path / "checkpoint.pt")["epoch"] == 2
    capsys.readouterr()

    before = (tmp_path / "checkpoint.pt").read_bytes()
    assert _resume(tmp_path, *contradiction, epochs=3) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pyro-vae train: error: cannot resume")
    assert f"trained with {contradiction[0]} " in err[0]
    assert (tmp_path / "checkpoint.pt").read_bytes() == before, "a refused resume changes nothing"


def test_a_repeated_option_equal_to_the_saved_value_is_accepted(tmp_path):
    assert _train(tmp_path, {"--objective": "iwae-dreg:k=3", "--latent-dim": "3"}) == 0
    same = ["--objective", "iwae-dreg", "--num-particles", "3", "--latent-dim", "3"]
    assert _resume(tmp_path, *same) == 0
    config = json.loads((tmp_path / "config.json").read_text())
    assert (config["objective"], config["num_particles"]) == ("iwae-dreg:k=3", 3)


def test_the_changeable_options_change_and_are_recorded(tmp_path, capsys):
    assert _train(tmp_path, extra=["--lr", "0.002", "--patience", "4"]) == 0
    assert _resume(tmp_path, "--lr", "0.0005", "--clip-grad-norm", "5", epochs=2) == 0
    config = json.loads((tmp_path / "config.json").read_text())
    assert (config["lr"], config["clip_grad_norm"], config["epochs"]) == (0.0005, 5.0, 2)
    assert config["patience"] == 4, "left out on resume, the run's own value stays"
    assert config["resumes"] == [
        {
            "epoch": 2,
            "step": 0,
            "changed": {"epochs": [1, 2], "lr": [0.002, 0.0005], "clip_grad_norm": [None, 5.0]},
        }
    ]
    state = pv.checkpoints.load(tmp_path / "checkpoint.pt")
    assert state["optim_state"]["adam"]["param_groups"][0]["lr"] == 0.0005
    assert state["config"]["resumes"] == config["resumes"]
    # Left out again, the epoch budget is the run's own: nothing left to do.
    assert _resume(tmp_path, epochs=2) == 0
    assert json.loads((tmp_path / "config.json").read_text())["resumes"] == config["resumes"]


def test_resuming_a_finished_run_says_so_and_changes_nothing(tmp_path, capsys):
    assert _train(tmp_path, epochs=1) == 0
    files = _files(tmp_path)
    capsys.readouterr()
    assert _resume(tmp_path, epochs=1) == 0
    captured = capsys.readouterr()
    assert "has already trained 1 epochs (epochs=1): nothing to train" in captured.err
    assert "test log p(x)" not in captured.out, "no re-evaluation"
    assert _files(tmp_path) == files


def test_resume_and_overwrite_together_are_refused(tmp_path, capsys):
    assert _train(tmp_path) == 0
    assert _resume(tmp_path, "--overwrite") == 2
    assert "give one of them" in capsys.readouterr().err


# fit(..., resume=True) in Python.


def _fit(out, vae=None, **kwargs):
    kwargs = {"batch_size": 10, "seed": 0, "progress": False, "epochs": 1} | kwargs
    return pv.fit(vae or small_vae(), binary_data(40), out=out, **kwargs)


def test_fit_resumes_with_the_run_s_own_objective_and_batch_size(tmp_path):
    _fit(tmp_path, objective="iwae-dreg:k=3", batch_size=20, binarize=True)
    history = pv.fit(small_vae(), binary_data(40), out=tmp_path, resume=True, epochs=2,
                     progress=False)  # fmt: skip
    assert len(history.rows) == 2
    config = json.loads((tmp_path / "config.json").read_text())
    assert (config["objective"], config["num_particles"], config["batch_size"]) == (
        "iwae-dreg:k=3",
        3,
        20,
    )
    assert config["binarize"] is True


@pytest.mark.parametrize(
    "change, message",
    [
        ({"objective": "elbo"}, "trained with objective iwae (K=3), got elbo (K=3)"),
        ({"num_particles": 5}, "trained with num_particles 3, got 5"),
        ({"binarize": True}, "trained with binarize False, got True"),
        ({"seed": 1}, "trained with seed 0, got 1"),
        ({"config": {"model": "b"}}, "trained with model 'a', got 'b'"),
    ],
)
def test_fit_refuses_to_resume_with_other_settings(tmp_path, change, message):
    _fit(tmp_path, objective="iwae", num_particles=3, config={"model": "a"})
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _fit(tmp_path, resume=True, epochs=2, **change)


def test_fit_refuses_another_architecture_in_one_line(tmp_path):
    _fit(tmp_path)
    with pytest.raises(ValueError) as error:
        _fit(tmp_path, small_vae(latent_dim=4), resume=True, epochs=2)
    message = str(error.value)
    assert "\n" not in message and "another architecture" in message
    assert "'prior.loc'" in message or "'guide." in message or "'likelihood." in message
    assert "of shape" in message


def test_fit_on_a_finished_run_returns_its_trained_state_without_writing(tmp_path):
    trained = small_vae()
    _fit(tmp_path, trained, valid=binary_data(10, seed=1), epochs=2)
    files = _files(tmp_path)
    again = small_vae()
    with pytest.warns(UserWarning, match="already trained 2 epochs"):
        history = _fit(tmp_path, again, valid=binary_data(10, seed=1), resume=True, epochs=2)
    assert history.nothing_to_do and len(history.rows) == 2
    for (name, a), b in zip(trained.state_dict().items(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert _files(tmp_path) == files


# One writer per run folder.

_HOLDER = """
import sys, time
from pyro_vae.train._run_folder import RunFolder
with RunFolder(sys.argv[1]).lock():
    print("locked", flush=True)
    time.sleep(60)
"""


def _hold(folder: Path) -> subprocess.Popen:
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(folder)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_a_second_writer_is_refused_at_once_and_a_killed_holder_frees_the_folder(tmp_path):
    holder = _hold(tmp_path / "run")
    try:
        tic = time.monotonic()
        with pytest.raises(pv.RunFolderLocked, match=f"PID {holder.pid} on host"):
            _fit(tmp_path / "run")
        assert time.monotonic() - tic < 5, "refused at once, not after a wait"
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    history = _fit(tmp_path / "run")  # the kernel released the lock of the killed process
    assert len(history.rows) == 1


def test_the_command_line_names_the_holder_and_leaves_its_folder_alone(tmp_path, capsys):
    assert _train(tmp_path) == 0
    files = _files(tmp_path)
    holder = _hold(tmp_path)
    try:
        assert _resume(tmp_path) == 2
        assert _train(tmp_path, extra=["--overwrite"]) == 2
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2
    assert all(f"{tmp_path} is in use" in line and f"PID {holder.pid}" in line for line in err)
    assert _files(tmp_path) == files


def test_the_lock_is_reentrant_within_a_process(tmp_path):
    folder = RunFolder(tmp_path)
    with folder.lock(), folder.lock():
        history = _fit(tmp_path)  # fit takes it a third time
    assert len(history.rows) == 1


# pv.load_run.


def test_load_run_rebuilds_a_command_line_run_with_its_history(tmp_path):
    options = {"--prior": "mixture", "--components": "3", "--latent-dim": "3"}
    assert _train(tmp_path, options, epochs=2) == 0
    run = pv.load_run(tmp_path)
    assert run.checkpoint == tmp_path / "best.pt"
    assert isinstance(run.vae.prior, pv.priors.MixtureOfGaussians)
    assert run.config["latent_dim"] == 3 and not run.vae.training
    assert [row["epoch"] for row in run.history.rows] == [1, 2]
    best = pv.checkpoints.load(tmp_path / "best.pt")
    for name, value in run.vae.state_dict().items():
        assert torch.equal(value, best["params"][name]), name
    last = pv.load_run(tmp_path, which="last")
    assert last.checkpoint == tmp_path / "checkpoint.pt" and last.epoch == 2
    assert pv.load_run(tmp_path / "checkpoint.pt").history.rows == run.history.rows
    x = pv.data.load("digits", "test", binarize="static")[:5]
    assert pv.evaluate.log_likelihood(run.vae.model, run.vae.guide, x, num_samples=4).shape == (5,)


def test_load_run_says_what_is_wrong(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint or run folder at"):
        pv.load_run(tmp_path / "nothing")
    with pytest.raises(FileNotFoundError, match="holds no best.pt or checkpoint.pt"):
        pv.load_run(tmp_path)
    with pytest.raises(ValueError, match="which must be one of best, last"):
        pv.load_run(tmp_path, which="first")
    _fit(tmp_path / "python")  # a VAE built in Python: no model config to rebuild it from
    with pytest.raises(ValueError, match="names no model to build .* vae.load_state_dict"):
        pv.load_run(tmp_path / "python")
