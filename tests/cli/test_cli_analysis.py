"""The pyro-vae commands that look inside a trained model: plot, gaps, anomaly, denoise, sweep."""

from __future__ import annotations

import json

import pytest
import torch

from pyro_vae import data, plots
from pyro_vae.cli import commands as cli

TINY = ["--dataset", "digits", "--hidden", "32", "--no-progress", "--num-samples", "10"]


def _train(out, *extra: str) -> None:
    code = cli.main(["train", *TINY, "--epochs", "2", "--out", str(out), *extra])
    assert code == 0


@pytest.fixture(scope="module")
def run_2d(tmp_path_factory):
    """A run with a 2-D latent space trained on digits 0-4 only."""
    out = tmp_path_factory.mktemp("run2d")
    _train(out, "--latent-dim", "2", "--classes", "0,1,2,3,4")
    return out


@pytest.fixture(scope="module")
def run_4d(tmp_path_factory):
    out = tmp_path_factory.mktemp("run4d")
    _train(out, "--latent-dim", "4")
    return out


def _exit_code(argv: list[str]) -> int:
    """``cli.main``'s code; argparse's own errors exit through SystemExit(2)."""
    try:
        return cli.main(argv)
    except SystemExit as e:
        return int(e.code)


def _png(path) -> bool:
    return path.read_bytes()[:4] == b"\x89PNG"


def test_train_on_some_classes_records_them(run_2d):
    config = json.loads((run_2d / "config.json").read_text())
    assert config["classes"] == [0, 1, 2, 3, 4]


def test_plot_writes_every_figure_of_a_2d_run(run_2d, tmp_path, capsys):
    out = tmp_path / "figures"
    assert cli.main(["plot", str(run_2d / "best.pt"), "--examples", "200", "--out", str(out)]) == 0
    names = {p.name for p in out.iterdir()}
    assert names == {
        "samples.png",
        "reconstructions.png",
        "interpolations.png",
        "traversals.png",
        "manifold.png",
        "latent_map.png",
        "aggregate_posterior.png",
        "units.png",
    }
    assert all(_png(p) for p in out.iterdir())


def test_plot_all_skips_the_manifold_above_two_latents_but_refuses_it_by_name(
    run_4d, tmp_path, capsys
):
    out = tmp_path / "f"
    argv = ["plot", str(run_4d / "best.pt"), "--examples", "100", "--out", str(out)]
    assert cli.main([*argv, "--figures", "units,traversals"]) == 0
    assert {p.name for p in out.iterdir()} == {"units.png", "traversals.png"}
    capsys.readouterr()
    assert cli.main([*argv, "--figures", "manifold"]) == 2
    err = capsys.readouterr().err
    assert "latent size of 2" in err and err.count("\n") == 1


def test_plot_writes_into_the_run_folder_by_default(run_4d, capsys):
    assert cli.main(["plot", str(run_4d / "best.pt"), "--figures", "units"]) == 0
    assert _png(run_4d / "units.png")


def test_anomaly_scores_the_classes_left_out(run_2d, tmp_path, capsys):
    argv = ["anomaly", str(run_2d / "best.pt"), "--examples", "300", "--out", str(tmp_path)]
    assert cli.main(argv) == 0
    report = json.loads((tmp_path / "anomaly.json").read_text())
    assert report["normal_classes"] == [0, 1, 2, 3, 4]
    assert 0.0 <= report["roc_auc"] <= 1.0
    assert set(report["mean_score_per_class"]) == {str(c) for c in range(10)}
    assert _png(tmp_path / "anomaly.png")
    assert "ROC AUC" in capsys.readouterr().out


def test_anomaly_needs_normal_classes_for_a_run_on_every_class(run_4d, tmp_path, capsys):
    assert cli.main(["anomaly", str(run_4d / "best.pt"), "--out", str(tmp_path / "a")]) == 2
    assert "--normal-classes" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()
    argv = ["anomaly", str(run_4d / "best.pt"), "--normal-classes", "0,1,2", "--out"]
    assert cli.main([*argv, str(tmp_path / "b"), "--examples", "200"]) == 0
    assert json.loads((tmp_path / "b" / "anomaly.json").read_text())["normal_classes"] == [0, 1, 2]


def test_denoise_reports_errors_for_each_corruption_and_level(run_4d, tmp_path, capsys):
    argv = ["denoise", str(run_4d / "best.pt"), "--examples", "50", "--out", str(tmp_path)]
    assert cli.main([*argv, "--corruptions", "gaussian,dropout", "--levels", "0,0.5"]) == 0
    rows = json.loads((tmp_path / "denoising.json").read_text())
    assert [(r["kind"], r["level"]) for r in rows] == [
        ("gaussian", 0.0),
        ("gaussian", 0.5),
        ("dropout", 0.0),
        ("dropout", 0.5),
    ]
    assert all(r["corrupted_mse"] == 0.0 for r in rows if r["level"] == 0.0)
    assert all(r["corrupted_mse"] > 0.0 for r in rows if r["level"] == 0.5)
    for name in ("denoising_errors.png", "denoising.png"):
        assert _png(tmp_path / name)


def test_gaps_writes_the_decomposition(run_4d, tmp_path, capsys):
    argv = ["gaps", str(run_4d / "best.pt"), "--examples", "5", "--out", str(tmp_path)]
    assert cli.main([*argv, "--num-samples", "50", "--steps", "30", "--nuts", "1"]) == 0
    summary = json.loads((tmp_path / "gaps.json").read_text())
    mean, _ = summary["approximation_gap"]
    total, _ = summary["inference_gap"]
    assert summary["amortisation_gap"][0] == pytest.approx(total - mean, abs=1e-4)
    assert _png(tmp_path / "gaps.png") and _png(tmp_path / "posteriors.png")
    assert "KL(p" in capsys.readouterr().out


def test_sweep_trains_one_model_per_latent_size(tmp_path, capsys):
    out = tmp_path / "sweep"
    argv = ["sweep", *TINY, "--epochs", "1", "--latent-dims", "2,3", "--out", str(out)]
    assert cli.main([*argv, "--test-examples", "40"]) == 0
    assert _png(out / "latent_size_sweep.png")
    lines = (out / "sweep.csv").read_text().splitlines()
    assert lines[0].startswith("latent_dim") and [line.split(",")[0] for line in lines[1:]] == [
        "2",
        "3",
    ]


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["plot", "CKPT", "--figures", "nope"], "unknown name 'nope'"),
        (["denoise", "CKPT", "--levels", "2"], "levels in [0, 1]"),
        (["denoise", "CKPT", "--corruptions", "blur"], "unknown name 'blur'"),
        (["anomaly", "CKPT", "--normal-classes", "a"], "class labels"),
        (["anomaly", "CKPT", "--normal-classes", "12"], "labels from 0 to 9"),
        (["gaps", "CKPT", "--nuts", "-1"], "from 0 to 1000"),
        (["sweep", "--latent-dims", "0"], "positive integers"),
        (["sweep", "--latent-dims", "0,2"], "positive integers like 2,4,8,16, got '0,2'"),
        (["compare", "--bound-ks", "5,0"], "positive integers like 1,5,50,500"),
        (["train", "--hidden", "0"], "positive integers like 512,256"),
        (["sample", "CKPT", "--num", "100000"], "from 1 to 400 (one grid"),
        (["train", "--classes", "3,x"], "class labels"),
    ],
)
def test_bad_arguments_give_one_line_and_exit_code_2(argv, match, run_4d, tmp_path, capsys):
    argv = [str(run_4d / "best.pt") if a == "CKPT" else a for a in argv]
    code = _exit_code([*argv, "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and match in err and err.count("\n") == 1, err
    assert not (tmp_path / "o").exists()


def test_denoise_draws_a_class_balanced_subset_and_shows_different_classes(
    run_4d, tmp_path, monkeypatch, capsys
):
    shown = []

    def save_denoising(examples, *args, **kwargs):
        shown.append(examples.cpu())
        return save(examples, *args, **kwargs)

    save = plots.save_denoising
    monkeypatch.setattr(plots, "save_denoising", save_denoising)
    argv = ["denoise", str(run_4d / "best.pt"), "--examples", "50", "--out", str(tmp_path)]
    assert cli.main([*argv, "--corruptions", "dropout", "--levels", "0.5", "--seed", "2"]) == 0
    rows = data.subset_rows("digits", "test", 50, seed=2)
    x = data.load("digits", "test", binarize="static")
    assert torch.equal(shown[0], x[rows[:8]])
    assert data.load_labels("digits", "test")[rows[:8]].tolist() == list(range(8))
    out = capsys.readouterr().out
    assert "50 test examples: a class-balanced subset drawn with --seed 2" in out


def _option_help(command: str, option: str) -> str:
    parser = cli.make_parser().commands[command]
    (action,) = [a for a in parser._actions if option in a.option_strings]
    return " ".join(action.help.split())


def test_help_texts_describe_the_command_they_belong_to():
    for command in ("compare", "sweep"):
        assert "resume" not in _option_help(command, "--lr")
        assert "anomaly" not in _option_help(command, "--classes")
        assert "class-balanced" in _option_help(command, "--test-examples")
        assert "first N test" not in _option_help(command, "--test-examples")
    assert "--resume" in _option_help("train", "--lr")
    assert "anomaly" in _option_help("train", "--classes")
    assert "test" not in _option_help("evaluate", "--num-samples")
    assert "--split" in _option_help("evaluate", "--num-samples")
    for command in ("plot", "gaps", "anomaly", "denoise"):
        assert "class-balanced" in _option_help(command, "--examples")
    assert "at most 400" in _option_help("sample", "--num")
