"""latent_size_sweep: one row per size under identical conditions, tables, figure, errors."""

from __future__ import annotations

import contextlib
import csv
import math

import numpy as np
import pytest
import torch
from conftest import binary_data, small_vae
from matplotlib.image import imread

from pyro_vae import data as datasets
from pyro_vae import plots
from pyro_vae.cli import commands as cli
from pyro_vae.lab import sweep as sweep_module
from pyro_vae.lab.sweep import SWEEP_COLUMNS, Sweep, latent_size_sweep

SMALL = dict(epochs=1, batch_size=10, num_samples=8)


def build(latent_dim: int):
    return small_vae(data_dim=12, latent_dim=latent_dim)


@pytest.fixture(scope="module")
def data():
    return binary_data(40, 12, seed=0), binary_data(20, 12, seed=1)


@pytest.fixture(scope="module")
def sweep(data):
    train, test = data
    return latent_size_sweep(build, train, test, [3, 1], **SMALL)


def test_one_row_per_size_with_every_column(sweep):
    assert [row["latent_dim"] for row in sweep.rows] == [1, 3] == sweep.latent_dims
    for row in sweep.rows:
        assert tuple(row) == SWEEP_COLUMNS
        for key in ("latent_dim", "epochs", "active_units"):
            assert type(row[key]) is int, key
        for key in set(SWEEP_COLUMNS) - {"latent_dim", "epochs", "active_units"}:
            assert isinstance(row[key], float) and math.isfinite(row[key]), key
        assert row["epochs"] == 1 and row["seconds"] > 0
        assert 0 <= row["active_units"] <= row["latent_dim"]
        assert row["kl"] > 0 and row["reconstruction"] < 0
        assert row["test_elbo"] == pytest.approx(row["reconstruction"] - row["kl"])
        assert row["test_log_px"] > row["test_elbo"] - 0.5  # IWAE_8 bounds log p(x) better
        assert 0 < row["test_log_px_mc_stderr"] < 1
    assert set(sweep.histories) == {1, 3}


def test_each_size_trains_as_it_would_alone(data, sweep):
    """Same seed for the weights and the data order: a size's row does not depend on the
    others, so a difference between sizes is the latent size's."""
    train, test = data
    alone = latent_size_sweep(build, train, test, [3], **SMALL).rows[0]
    together = sweep.rows[1]
    for key in SWEEP_COLUMNS:
        if key != "seconds":
            assert alone[key] == together[key], key


def test_tables_and_figure_are_written(sweep, tmp_path):
    written = sweep.write(tmp_path / "out")
    assert [p.name for p in written] == ["sweep.csv", "sweep.md", "latent_size_sweep.png"]
    with open(tmp_path / "out" / "sweep.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["latent_dim"]) for r in rows] == [1, 3]
    assert tuple(rows[0]) == SWEEP_COLUMNS
    assert float(rows[1]["kl"]) == pytest.approx(sweep.rows[1]["kl"])
    lines = sweep.markdown().splitlines()
    assert len(lines) == 4 and lines[0].startswith("| latent_dim |")
    image = imread(written[-1])
    assert image.shape[1] > 500 and np.ptp(image) > 0


def test_the_figure_takes_rows_and_refuses_bad_ones_before_writing(sweep, tmp_path):
    path = plots.save_latent_size_sweep(sweep.rows, tmp_path / "rows.png")
    assert path.read_bytes()[:4] == b"\x89PNG"
    target = tmp_path / "sub" / "bad.png"
    bad = [{k: v for k, v in row.items() if k != "kl"} for row in sweep.rows]
    with pytest.raises(ValueError, match=r"rows\[0\] lacks the keys \['kl'\]"):
        plots.save_latent_size_sweep(bad, target)
    with pytest.raises(ValueError, match="distinct positive integer latent_dim"):
        plots.save_latent_size_sweep([sweep.rows[0], sweep.rows[0]], target)
    with pytest.raises(ValueError, match="non-empty list of dicts"):
        plots.save_latent_size_sweep(Sweep(rows=[]), target)
    assert not target.parent.exists()


def _wrong_size(latent_dim: int):
    return small_vae(data_dim=12, latent_dim=2)


@pytest.mark.parametrize(
    "args, kwargs, error, match",
    [
        ((build, [], "data"), {}, ValueError, "latent_dims must hold at least one"),
        ((build, [2, 0], "data"), {}, ValueError, r"latent_dims\[1\] must be a positive integer"),
        ((build, [2, 4, 2], "data"), {}, ValueError, r"latent_dims must be distinct, got \[2\]"),
        ((build, "3", "data"), {}, TypeError, "latent_dims must be a list"),
        (("vae", [2], "data"), {}, TypeError, "build must be a callable"),
        (
            (_wrong_size, [2, 3], "data"),
            {},
            ValueError,
            r"build\(3\) returned a VAE of latent_dim 2",
        ),
        ((lambda d: None, [2], "data"), {}, TypeError, r"build\(2\) must return a pyro_vae.VAE"),
        ((build, [2], "data"), {"epochs": 0}, ValueError, "epochs must be a positive integer"),
        ((build, [2], "data"), {"objective": "nope"}, ValueError, "nope"),
        ((build, [2], "data"), {"num_samples": 0}, ValueError, "num_samples must be a positive"),
        ((build, [2], "test"), {}, ValueError, r"test has event shape \(5,\)"),
        ((build, [2], "grey"), {}, ValueError, "test has values outside the support"),
        ((build, [2], "grey"), {"binarize": 1}, TypeError, "binarize must be True or False"),
    ],
)
def test_bad_arguments_are_named_before_any_training(data, args, kwargs, error, match):
    train, test = data
    test = {"data": test, "test": torch.zeros(4, 5), "grey": torch.rand(4, 12)}[args[2]]
    with pytest.raises(error, match=match):
        latent_size_sweep(args[0], train, test, args[1], **{**SMALL, **kwargs})


def test_binarized_sweep_reads_grey_levels(data):
    train = torch.rand(30, 12)
    result = latent_size_sweep(build, train, torch.rand(10, 12), [2], binarize=True, **SMALL)
    assert math.isfinite(result.rows[0]["test_log_px"])
    with pytest.raises(ValueError, match=r"valid must hold intensities in \[0, 1\]"):
        latent_size_sweep(build, train, train, [2], valid=train * 3, binarize=True, **SMALL)


class _Captured(Exception):
    """Raised by a stand-in to stop the command once it has seen its arguments."""


def test_sweep_command_evaluates_on_a_fixed_class_balanced_test_subset(
    monkeypatch, tmp_path, capsys
):
    """mnist5k's test split is in label order: --test-examples 20 must not be 20 zeros."""
    seen = {}

    def stand_in(build, train, test, latent_dims, **options):
        seen["test"] = test
        raise _Captured

    monkeypatch.setattr(sweep_module, "latent_size_sweep", stand_in)
    argv = ["sweep", "--test-examples", "20", "--hidden", "8", "--latent-dims", "2"]
    with contextlib.suppress(_Captured):
        cli.main([*argv, "--no-progress", "--out", str(tmp_path / "s")])
    rows = datasets.subset_rows("mnist5k", "test", 20)
    assert torch.bincount(datasets.load_labels("mnist5k", "test")[rows]).tolist() == [2] * 10
    assert torch.equal(seen["test"], datasets.load("mnist5k", "test", binarize="static")[rows])
    assert "a fixed class-balanced subset" in capsys.readouterr().out
