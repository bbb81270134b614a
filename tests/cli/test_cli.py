"""The pyro-vae command: a whole run, evaluate and sample from its checkpoints, help, errors."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from pyro_vae._checks import available_devices
from pyro_vae.cli import commands as cli
from pyro_vae.cli._checks import os_error_line, too_large
from pyro_vae.train import checkpoints
from pyro_vae.train.options import SETTINGS


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    code = cli.main(
        [
            "train",
            "--dataset",
            "digits",
            "--epochs",
            "2",
            "--hidden",
            "32",
            "--latent-dim",
            "4",
            "--num-samples",
            "20",
            "--out",
            str(out),
            "--patience",
            "5",
            "--no-progress",
        ]
    )
    assert code == 0
    return out


def test_train_writes_a_complete_run_folder(run):
    names = {p.name for p in run.iterdir()}
    assert names >= {
        "config.json",
        "log.csv",
        "checkpoint.pt",
        "best.pt",
        "metrics.json",
        "samples.png",
        "reconstructions.png",
        "learning_curves.png",
    }
    config = json.loads((run / "config.json").read_text())
    assert config["dataset"] == "digits" and config["binarization"] == "dynamic"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["num_samples"] == 20
    assert metrics["elbo"] <= metrics["log_likelihood"] + 0.5 < 0.5


def test_evaluate_and_sample_rebuild_the_model_from_a_checkpoint(run, capsys):
    assert (
        cli.main(["evaluate", str(run / "best.pt"), "--split", "valid", "--num-samples", "10"]) == 0
    )
    out = capsys.readouterr().out
    assert "valid ELBO" in out and "valid log p(x) (K=10)" in out
    target = run / "more.png"
    assert cli.main(["sample", str(run / "checkpoint.pt"), "--num", "9", "--out", str(target)]) == 0
    assert target.read_bytes()[:4] == b"\x89PNG"


def test_resume_continues_a_run(run, capsys):
    assert (
        cli.main(
            [
                "train",
                "--dataset",
                "digits",
                "--epochs",
                "3",
                "--hidden",
                "32",
                "--latent-dim",
                "4",
                "--num-samples",
                "5",
                "--out",
                str(run),
                "--resume",
                "--no-progress",
            ]
        )
        == 0
    )
    assert "trained 3 epochs" in capsys.readouterr().out


def test_train_help_documents_every_option():
    parser = cli.make_parser()
    train = parser._subparsers._group_actions[0].choices["train"]  # noqa: SLF001
    options = {s for a in train._actions for s in a.option_strings}
    shared = {
        "--dataset",
        "--prior",
        "--guide",
        "--likelihood",
        "--latent-dim",
        "--objective",
        "--num-particles",
        "--epochs",
        "--batch-size",
        "--lr",
        "--seed",
        "--device",
        "--out",
        "--resume",
        "--num-samples",
    }
    assert shared <= options
    for action in train._actions:
        assert action.help, action.option_strings
    text = train.format_help()
    for option in options:
        assert option in text


@pytest.mark.parametrize(
    "argv, match",
    [
        (["train", "--epochs", "0"], "--epochs: expected a positive integer, got '0'"),
        (["train", "--dataset", "mnst"], "invalid choice: 'mnst'"),
        (["train", "--latent-dim", "x"], "--latent-dim"),
        (["train", "--lr", "-1"], "--lr: expected a positive number"),
        (["train", "--hidden", "10,a"], "--hidden"),
        (["train", "--likelihood", "poisson"], "invalid choice: 'poisson'"),
        (["evaluate"], "the following arguments are required: checkpoint"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["train", "--objective", "iwae:k=0"], "num_particles must be an integer >= 1, got 0"),
        (["compare", "--objectives", "elbo,vimco"], "unknown objective 'vimco'"),
        (["compare", "--objectives", "iwae:alpha=2"], "'iwae' has no option 'alpha'"),
        (["compare", "--gradient-ks", "0"], "--gradient-ks"),
    ],
)
def test_bad_arguments_give_one_line_and_exit_code_2(argv, match, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and match in err


@pytest.mark.parametrize(
    "make_argv, match",
    [
        (lambda tmp: ["evaluate", str(tmp / "missing.pt")], "no checkpoint or run folder at"),
        (lambda tmp: ["evaluate", str(tmp / "bad.pt")], "it is not a checkpoint"),
        (lambda tmp: ["evaluate", str(tmp / "foreign.pt")], "was not written by `pyro-vae train`"),
        (lambda tmp: ["train", "--device", "cuda:zero", "--out", str(tmp / "r")], "--device"),
        (
            lambda tmp: [
                "train",
                "--dataset",
                "digits",
                "--likelihood",
                "bernoulli",
                "--binarize",
                "none",
                "--epochs",
                "1",
                "--out",
                str(tmp / "r"),
            ],
            "outside the support of the Bernoulli likelihood",
        ),
        (
            lambda tmp: [
                "train",
                "--dataset",
                "mnist",
                "--data-dir",
                str(tmp / "nothing"),
                "--out",
                str(tmp / "r"),
            ],
            "Place mnist.npz",
        ),
    ],
)
def test_bad_input_gives_one_line_and_exit_code_2(make_argv, match, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PYRO_VAE_DATA", str(tmp_path / "nothing"))
    monkeypatch.setattr("pyro_vae.data.default_cache_dir", lambda: tmp_path / "cache")
    monkeypatch.setattr("urllib.request.urlopen", _offline)
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    checkpoints.save({"params": {}, "config": {"dataset": "digits"}}, tmp_path / "foreign.pt")
    assert cli.main(make_argv(tmp_path)) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and match in err


def _offline(*args, **kwargs):
    import urllib.error

    raise urllib.error.URLError("offline")


def test_python_dash_m_runs_the_command():
    result = subprocess.run(
        [sys.executable, "-m", "pyro_vae", "train", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0 and "--latent-dim" in result.stdout


def test_compare_writes_the_table_and_figures(tmp_path, capsys):
    argv = ["compare", "--dataset", "digits", "--objectives", "elbo,iwae:k=2",
            "--epochs", "1", "--hidden", "16", "--latent-dim", "3", "--num-samples", "10",
            "--bound-ks", "1,5", "--gradient-ks", "1,2", "--gradient-draws", "2",
            "--test-examples", "30", "--out", str(tmp_path), "--no-progress"]  # fmt: skip
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "| elbo |" in printed and "| iwae:k=2 |" in printed
    assert {"comparison.csv", "comparison.md", "gradients.csv", "comparison.png",
            "gradients.png", "runs"} <= {p.name for p in tmp_path.iterdir()}  # fmt: skip
    assert cli.main(argv) == 2  # the folder holds a comparison now
    assert "already holds a comparison" in capsys.readouterr().err


def test_compare_trains_with_the_optimiser_options(tmp_path):
    argv = ["compare", "--dataset", "digits", "--objectives", "elbo", "--epochs", "1",
            "--hidden", "16", "--latent-dim", "3", "--num-samples", "5", "--bound-ks", "1",
            "--gradient-ks", "1", "--gradient-draws", "2", "--test-examples", "20",
            "--lr-schedule", "burda2015", "--adam-betas", "0.8,0.99", "--adam-eps", "1e-4",
            "--out", str(tmp_path), "--no-progress"]  # fmt: skip
    assert cli.main(argv) == 0
    config = json.loads((tmp_path / "runs" / "elbo" / "config.json").read_text())
    assert config["lr_schedule"] == "burda2015" and config["adam_eps"] == 1e-4
    assert config["adam_betas"] == [0.8, 0.99]


def test_train_takes_an_objective_spec(tmp_path):
    argv = ["train", "--dataset", "digits", "--objective", "iwae-dreg:k=3", "--epochs", "1",
            "--hidden", "16", "--latent-dim", "3", "--num-samples", "5", "--out", str(tmp_path),
            "--no-progress"]  # fmt: skip
    assert cli.main(argv) == 0
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["objective"] == "iwae-dreg:k=3" and config["num_particles"] == 3


BASE_CONFIG = {
    "dataset": "digits",
    "image_shape": [1, 8, 8],
    "prior": "standard-normal",
    "guide": "diagonal-normal",
    "likelihood": "bernoulli",
    "scale": 0.1,
    "learn_scale": False,
    "net": "mlp",
    "hidden": [16],
    "latent_dim": 3,
    "binarization": "dynamic",
}


@pytest.mark.parametrize("prior", cli.PRIORS)
@pytest.mark.parametrize("guide", cli.GUIDES)
def test_build_vae_names_every_prior_and_guide(prior, guide):
    from pyro_vae.models import guides, priors

    config = BASE_CONFIG | {"prior": prior, "guide": guide, "num_flows": 3, "components": 7}
    vae = cli.build_vae(config)
    prior_cls = {
        "standard-normal": priors.StandardNormal,
        "learned-normal": priors.LearnedNormal,
        "mixture": priors.MixtureOfGaussians,
        "vamp": priors.VampPrior,
        "flow": priors.FlowPrior,
    }[prior]
    guide_cls = {
        "diagonal-normal": guides.DiagonalNormal,
        "full-normal": guides.FullCovarianceNormal,
        "iaf": guides.InverseAutoregressiveFlow,
        "coupling": guides.AffineCouplingFlow,
    }[guide]
    assert type(vae.prior) is prior_cls and type(vae.encoder) is guide_cls
    if prior in ("mixture", "vamp"):
        assert (
            vae.prior.num_components if prior == "mixture" else vae.prior.num_pseudo_inputs
        ) == 7
    if guide in ("iaf", "coupling"):
        assert len(vae.encoder.flows) == 3


@pytest.mark.parametrize(
    "likelihood, dataset, bins",
    [("laplace", "digits", None), ("discretized-logistic", "digits", 17),
     ("discretized-logistic", "mnist5k", 256)],
)  # fmt: skip
def test_build_vae_names_the_new_likelihoods(likelihood, dataset, bins):
    config = BASE_CONFIG | {"likelihood": likelihood, "dataset": dataset, "learn_scale": True}
    vae = cli.build_vae(config)
    assert (
        type(vae.likelihood).__name__
        == {
            "laplace": "Laplace",
            "discretized-logistic": "DiscretizedLogistic",
        }[likelihood]
    )
    if bins:
        assert vae.likelihood.num_bins == bins


@pytest.mark.filterwarnings("ignore:analytic-kl. the KL")  # the default objective's MC note
def test_a_run_with_a_vamp_prior_and_an_iaf_guide_evaluates_from_its_checkpoint(tmp_path, capsys):
    argv = ["train", "--dataset", "digits", "--epochs", "1", "--hidden", "16", "--latent-dim"]
    argv += ["3", "--num-samples", "5", "--prior", "vamp", "--components", "6", "--guide", "iaf"]
    argv += ["--likelihood", "discretized-logistic", "--no-progress", "--out", str(tmp_path)]
    assert cli.main(argv) == 0
    config = json.loads((tmp_path / "config.json").read_text())
    assert (config["prior"], config["guide"], config["components"]) == ("vamp", "iaf", 6)
    assert cli.main(["evaluate", str(tmp_path / "checkpoint.pt"), "--num-samples", "5"]) == 0
    assert "log p(x) (K=5)" in capsys.readouterr().out


def test_train_passes_checkpointing_and_non_finite_options_to_fit(tmp_path, monkeypatch):
    seen = {}

    def fake_fit(vae, data, options, **kwargs):
        seen.update(kwargs, **{name: getattr(options, name) for name in SETTINGS})
        raise ValueError("stop here")

    monkeypatch.setattr(cli, "fit", fake_fit)
    argv = ["train", "--dataset", "digits", "--out", str(tmp_path / "r"), "--no-progress"]
    extra = ["--checkpoint-every", "7", "--on-nonfinite", "rollback", "--clip-grad-norm", "2.5"]
    assert cli.main(argv + extra) == 2
    assert (seen["checkpoint_every"], seen["on_nonfinite"], seen["clip_grad_norm"]) == (
        7,
        "rollback",
        2.5,
    )
    assert seen["lr"] is None, "without --lr, fit picks 1e-3, or the run's own on --resume"
    assert cli.main(argv + ["--lr", "0.01"]) == 2 and seen["lr"] == 0.01


def test_an_interrupted_train_says_how_to_resume(tmp_path, monkeypatch, capsys):
    def interrupted_fit(vae, data, options, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "fit", interrupted_fit)
    argv = ["train", "--dataset", "digits", "--out", str(tmp_path / "r"), "--no-progress"]
    assert cli.main(argv) == 130
    assert "interrupted (resume it with --resume)" in capsys.readouterr().err


# --------------------------------------------------------------- issue 17: smaller defects

SMALL = ["--dataset", "digits", "--epochs", "1", "--hidden", "8", "--latent-dim", "2",
         "--num-samples", "2", "--no-progress"]  # fmt: skip


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    return err.strip()


def _exit_code(argv: list[str]) -> int:
    """``cli.main``'s exit code, from its return or from argparse's ``SystemExit``."""
    try:
        return cli.main(argv)
    except SystemExit as e:
        return e.code


@pytest.mark.parametrize("device", ["mps", "xla", "cuda:99", "garbage"])
@pytest.mark.parametrize(
    "command", ["train", "evaluate", "sample", "compare", "plot", "gaps", "anomaly", "denoise",
                "sweep"],
)  # fmt: skip
def test_a_device_this_machine_lacks_is_one_line_on_every_command(
    run, tmp_path, capsys, command, device
):
    if device in available_devices():
        pytest.skip(f"this machine has {device}")
    target = [str(run / "checkpoint.pt")] if command not in ("train", "compare", "sweep") else []
    out = ["--out", str(tmp_path / "out")] if not target else []
    assert cli.main([command, *target, *out, "--device", device]) == 2
    line = _one_error_line(capsys)
    assert line.startswith(f"pyro-vae {command}: error: --device") and ": auto, cpu" in line
    assert "truncated" not in line and "corrupt" not in line
    assert list(tmp_path.iterdir()) == []


def test_a_learning_rate_adam_cannot_step_with_is_named_not_called_out_of_memory(tmp_path, capsys):
    assert _exit_code(["train", *SMALL, "--lr", "1e38", "--out", str(tmp_path / "r")]) == 2
    line = _one_error_line(capsys)
    assert "--lr" in line and "up to 3.4e+37" in line and "memory" not in line
    overflow = RuntimeError("value cannot be converted to type float without overflow")
    assert too_large(overflow) is None  # a number beyond float32, not memory
    assert "out of memory" in too_large(RuntimeError("Storage size calculation overflowed"))


# sysfs refuses new files and folders to everyone, root included.
needs_sysfs = pytest.mark.skipif(not Path("/sys/kernel").is_dir(), reason="needs Linux's /sys")


@needs_sysfs
@pytest.mark.parametrize("command", ["train", "sample", "plot"])
def test_an_unwritable_out_is_one_line_naming_it(run, capsys, command):
    out = "/sys/pyro-vae-test" + (".png" if command == "sample" else "")
    target = [] if command == "train" else [str(run / "checkpoint.pt")]
    assert cli.main([command, *target, *(SMALL if command == "train" else []), "--out", out]) == 2
    line = _one_error_line(capsys)
    assert line.startswith(f"pyro-vae {command}: error: --out='{out}' cannot be written: "), line
    assert "Errno" not in line and ".tmp" not in line


def test_an_os_error_names_out_or_the_file_not_an_errno(tmp_path):
    out = tmp_path / "run"
    denied = PermissionError(13, "Permission denied", str(out / "config.json"))
    assert os_error_line(denied, str(out)) == (
        f"--out={str(out)!r} cannot be written: permission denied ({out / 'config.json'})"
    )
    read_only = OSError(30, "Read-only file system", str(out))
    assert (
        os_error_line(read_only, str(out))
        == f"--out={str(out)!r} cannot be written: read-only file system"
    )
    elsewhere = PermissionError(13, "Permission denied", "/data/mnist.npz")
    assert os_error_line(elsewhere, str(out)) == "/data/mnist.npz: permission denied"
    assert os_error_line(FileNotFoundError("no checkpoint at x.pt"), str(out)) is None


def test_an_atomic_write_that_cannot_start_names_the_file_not_its_temporary(tmp_path):
    from pyro_vae._atomic import write_atomically

    with pytest.raises(FileNotFoundError) as info:
        write_atomically(tmp_path / "missing" / "s.png", lambda f: f.write(b"x"))
    assert info.value.filename == str(tmp_path / "missing" / "s.png")


@pytest.mark.parametrize(
    "argv, option, instead",
    [
        (["sweep", "--latent-dim", "8"], "--latent-dim", "give --latent-dims 8"),
        (["sweep", "--latent-dim=8"], "--latent-dim", "give --latent-dims 8"),
        (["sample", "ck.pt", "--data-dir", "data"], "--data-dir", "reads no data"),
    ],
)
def test_an_option_a_command_does_not_use_is_refused(argv, option, instead, capsys):
    assert _exit_code(argv) == 2
    line = _one_error_line(capsys)
    assert f"{option} is not an option of `pyro-vae {argv[0]}`" in line and instead in line


def test_an_option_a_command_does_not_use_is_refused_in_a_config_file(tmp_path, capsys):
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps({"latent_dim": 8}))
    assert _exit_code(["sweep", "--config", str(path)]) == 2
    assert "give --latent-dims 8" in _one_error_line(capsys)


def test_warnings_print_as_one_line_without_python_s_source_line(monkeypatch, capsys):
    def evaluate(args):
        warnings.warn("the checkpoint\n  is old", UserWarning, stacklevel=1)

    monkeypatch.setattr(cli, "_evaluate", evaluate)
    shown = warnings.showwarning
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        assert cli.main(["evaluate", "ck.pt"]) == 0
    assert capsys.readouterr().err == "pyro-vae evaluate: warning: the checkpoint is old\n"
    assert warnings.showwarning is shown  # the library's warnings stay Python's
