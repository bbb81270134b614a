"""compare: identical conditions for every objective, complete tables and figures."""

from __future__ import annotations

import contextlib
import csv

import pytest
import torch
from conftest import binary_data, small_vae

import pyro_vae as pv
from pyro_vae.cli import commands as cli

SMALL = dict(
    epochs=2,
    batch_size=10,
    bound_ks=(1, 4),
    num_samples=8,
    gradient_ks=(1, 2),
    gradient_draws=3,
    gradient_batch_size=8,
    progress=False,
)


def _data():
    return torch.rand(40, 12), torch.rand(20, 12), torch.rand(20, 12)


def test_same_estimator_under_two_labels_gives_identical_numbers(tmp_path):
    """Same initial weights, seed, data order and binarisation: only the objective differs."""
    train, valid, test = _data()
    vae = small_vae()
    initial = {k: v.clone() for k, v in vae.state_dict().items()}
    result = pv.compare(
        vae,
        train,
        valid=valid,
        test=test,
        objectives="elbo,elbo:beta=1.0,iwae:k=2",
        binarize=True,
        out=tmp_path,
        **SMALL,
    )
    a, b, c = result.rows
    for column in result.columns[1:]:
        if column != "seconds_per_epoch":
            assert a[column] == b[column], column
    assert a["test_iwae_1"] != c["test_iwae_1"]
    for key, value in vae.state_dict().items():  # the model given is left untrained
        assert torch.equal(value, initial[key]), key
    assert result.histories["iwae:k=2"].rows[0]["epoch"] == 1


def test_tables_and_figures_are_written(tmp_path):
    train, valid, test = _data()
    result = pv.compare(
        small_vae(),
        train,
        valid=valid,
        test=test,
        objectives=["elbo", "iwae-dreg:k=2"],
        binarize=True,
        out=tmp_path,
        **SMALL,
    )
    for name in (
        "comparison.csv",
        "comparison.md",
        "gradients.csv",
        "comparison.png",
        "gradients.png",
    ):
        assert (tmp_path / name).stat().st_size > 0, name
    with open(tmp_path / "comparison.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["objective"] for r in rows] == ["elbo", "iwae-dreg:k=2"]
    assert set(rows[0]) == set(result.columns)
    for row in result.rows:
        assert row["test_iwae_1"] <= row["test_iwae_4"] + 0.5
        assert 0 <= row["active_units"] <= 3 and row["kl"] > 0
    assert {(g["objective"], g["k"], g["group"]) for g in result.gradients} == {
        (o, k, g) for o in ("elbo", "iwae-dreg") for k in (1, 2) for g in ("guide", "model")
    }
    assert (tmp_path / "runs" / "iwae-dreg_k_2" / "log.csv").exists()
    assert "| elbo |" in (tmp_path / "comparison.md").read_text()
    with pytest.raises(FileExistsError, match="already holds a comparison"):
        pv.compare(
            small_vae(),
            train,
            valid=valid,
            test=test,
            objectives="elbo",
            out=tmp_path,
            binarize=True,
            **SMALL,
        )


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"objectives": "elbo,elbo"}, ValueError, "'elbo' is listed twice"),
        ({"objectives": []}, ValueError, "at least one objective"),
        ({"objectives": "vimco"}, ValueError, "unknown objective 'vimco'"),
        ({"bound_ks": (0,)}, ValueError, "bound_ks must be a positive integer"),
        ({"test": torch.full((4, 12), float("nan"))}, ValueError, "test.*NaN"),
    ],
)
def test_bad_arguments_are_named(kwargs, error, match):
    train = binary_data(20)
    args = dict(valid=binary_data(10), test=binary_data(10), **SMALL) | kwargs
    with pytest.raises(error, match=match):
        pv.compare(small_vae(), train, **args)


def test_the_reported_gradient_variances_show_what_reparameterisation_removes():
    """Same draws, same parameters: the decoder's gradient is the same for both estimators,
    and the guide's variance under REINFORCE exceeds the reparameterised one's."""
    train, valid, test = _data()
    result = pv.compare(
        small_vae(), train, valid=valid, test=test, objectives="elbo,score-function",
        binarize=True, **(SMALL | {"gradient_draws": 30, "gradient_ks": (1, 4)}),
    )  # fmt: skip
    stats = {(g["objective"], g["k"], g["group"]): g["variance"] for g in result.gradients}
    for k in (1, 4):
        assert stats[("score-function", k, "model")] == pytest.approx(stats[("elbo", k, "model")])
        assert stats[("score-function", k, "guide")] > 2 * stats[("elbo", k, "guide")]


# --- representative subsets -----------------------------------------------------------------


class _Captured(Exception):
    """Raised by a stand-in to stop a command once it has seen its arguments."""


def test_the_gradient_batch_is_a_seeded_subset_of_train_not_its_first_rows(monkeypatch):
    train, valid, test = binary_data(40), binary_data(20, seed=1), binary_data(20, seed=2)
    seen = []

    def stats(objective, model, guide, x, num_draws):
        seen.append(x)
        raise _Captured

    monkeypatch.setattr(pv.gradients, "gradient_stats", stats)
    options = {**SMALL, "epochs": 1, "gradient_ks": (1,), "seed": 3}
    with pytest.raises(_Captured):
        pv.compare(small_vae(), train, valid=valid, test=test, objectives="elbo", **options)
    rows = pv.data.shuffled_rows(len(train), SMALL["gradient_batch_size"], seed=3)
    assert torch.equal(seen[0], train[rows]) and not torch.equal(rows, torch.arange(len(rows)))


def test_compare_command_evaluates_on_a_fixed_class_balanced_test_subset(monkeypatch, tmp_path):
    """mnist5k's test split is in label order: --test-examples 30 must not be 30 zeros."""
    seen = {}

    def stand_in(vae, train, *, valid, test, **options):
        seen["test"] = test
        raise _Captured

    monkeypatch.setattr(cli, "compare", stand_in)
    argv = ["compare", "--test-examples", "30", "--hidden", "8", "--out", str(tmp_path / "c")]
    with contextlib.suppress(_Captured):
        cli.main([*argv, "--no-progress", "--seed", "5"])
    rows = pv.data.subset_rows("mnist5k", "test", 30)  # the same for every --seed
    assert torch.bincount(pv.data.load_labels("mnist5k", "test")[rows]).tolist() == [3] * 10
    assert torch.equal(seen["test"], pv.data.load("mnist5k", "test", binarize="static")[rows])
    help_text = cli.make_parser().commands["compare"].format_help()
    assert "class-balanced" in " ".join(help_text.split())
