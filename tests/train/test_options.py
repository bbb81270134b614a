"""FitOptions: one checked object of training options, shared by fit, compare and the sweep;
and the data checked once on its way through them."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from conftest import binary_data, small_vae

import pyro_vae as pv
from pyro_vae.train.options import SETTINGS


def _params(vae: pv.VAE) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in vae.state_dict().items()}


def test_the_options_are_frozen_and_checked_when_made():
    options = pv.FitOptions(epochs=3, lr=0.01)
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.epochs = 4  # type: ignore[misc]
    with pytest.raises(ValueError, match="epochs"):
        pv.FitOptions(epochs=0)
    with pytest.raises(ValueError, match="unknown objective 'iwea'"):
        pv.FitOptions(objective="iwea:k=5")
    with pytest.raises(ValueError, match="valid_objective|unknown objective"):
        pv.FitOptions(valid_objective="nope")
    with pytest.raises(ValueError, match="adam_betas"):
        options.replace(adam_betas=(0.9, 1.0))
    assert options.replace(epochs=5).epochs == 5 and options.epochs == 3


def test_fit_with_options_trains_as_fit_with_the_same_keywords():
    data = binary_data()
    settings = dict(epochs=2, batch_size=10, lr=0.01, seed=3, objective="iwae:k=2")
    vae_a, vae_b = small_vae(), small_vae()
    vae_b.load_state_dict(vae_a.state_dict())
    a = pv.fit(vae_a, data, progress=False, **settings)
    b = pv.fit(vae_b, data, pv.FitOptions(**settings), progress=False)
    assert a.column("train_loss") == b.column("train_loss")
    for name, value in _params(vae_a).items():
        assert torch.equal(value, vae_b.state_dict()[name]), name


def test_keywords_replace_the_fields_of_the_options_and_none_leaves_them(tmp_path):
    options = pv.FitOptions(epochs=1, batch_size=10, seed=0, config={"note": "base"})
    history = pv.fit(small_vae(), binary_data(), options, epochs=2, lr=None, progress=False)
    assert len(history.rows) == 2
    pv.fit(small_vae(), binary_data(), options, out=tmp_path / "run", progress=False)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["epochs"] == 1 and config["note"] == "base"


def test_fit_names_an_unknown_setting_and_refuses_other_options():
    with pytest.raises(TypeError, match="unexpected keyword argument 'epoch'.*epochs"):
        pv.fit(small_vae(), binary_data(), epoch=2)
    with pytest.raises(TypeError, match="options must be a pyro_vae.FitOptions, got dict"):
        pv.fit(small_vae(), binary_data(), {"epochs": 2})  # type: ignore[arg-type]


def test_every_field_is_a_setting_that_fit_records():
    assert set(SETTINGS) - {"config"} <= set(pv.FitOptions().record(1e-3, 1, 1, None))


def _count_value_passes(monkeypatch, *tensors: torch.Tensor) -> dict[int, int]:
    """Counts, per tensor, the calls of torch.isfinite on it: one per check of its values."""
    counts = {id(t): 0 for t in tensors}
    isfinite = torch.isfinite

    def counting(x, *args, **kwargs):
        if id(x) in counts:
            counts[id(x)] += 1
        return isfinite(x, *args, **kwargs)

    monkeypatch.setattr(torch, "isfinite", counting)
    return counts


def test_fit_reads_the_values_of_its_data_once(monkeypatch):
    data, valid = binary_data(), binary_data(20, seed=1)
    counts = _count_value_passes(monkeypatch, data, valid)
    pv.fit(small_vae(), data, valid=valid, epochs=2, batch_size=10, progress=False)
    assert counts == {id(data): 1, id(valid): 1}


def test_compare_checks_its_training_data_once_for_all_its_runs(monkeypatch):
    train, valid, test = torch.rand(40, 12).round(), torch.rand(20, 12).round(), torch.rand(8, 12)
    counts = _count_value_passes(monkeypatch, train, valid)
    pv.compare(
        small_vae(), train, valid=valid, test=test.round(), objectives="elbo,analytic-kl",
        epochs=1, batch_size=10, bound_ks=(1,), num_samples=4, gradient_ks=(), progress=False,
    )  # fmt: skip
    assert counts == {id(train): 1, id(valid): 1}


def test_compare_trains_every_objective_with_the_options_given(tmp_path):
    train, valid, test = torch.rand(40, 12), torch.rand(20, 12), torch.rand(10, 12)
    options = pv.FitOptions(
        epochs=3, batch_size=10, lr=0.01, lr_schedule="geometric:growth=1,decay=0.5,stages=3",
        adam_eps=1e-4, binarize=True, seed=4,
    )  # fmt: skip
    result = pv.compare(
        small_vae(), train, valid=valid, test=test, objectives="elbo,iwae:k=2", options=options,
        out=tmp_path, bound_ks=(1,), num_samples=4, gradient_ks=(), progress=False,
    )  # fmt: skip
    runs = sorted((tmp_path / "runs").iterdir())
    assert len(runs) == len(result.labels) == 2
    for run in runs:
        config = json.loads((run / "config.json").read_text())
        assert config["lr_schedule"] == options.lr_schedule
        assert (config["adam_eps"], config["seed"], config["binarize"]) == (1e-4, 4, True)
        assert (config["lr"], config["epochs"]) == (0.01, 3)
        assert config["valid_objective"] == "analytic-kl"


def test_compare_names_its_objectives_itself():
    train, valid, test = torch.rand(40, 12), torch.rand(20, 12), torch.rand(10, 12)
    for options in (pv.FitOptions(objective="elbo"), pv.FitOptions(num_particles=5)):
        with pytest.raises(ValueError, match="leave objective and num_particles unset"):
            pv.compare(small_vae(), train, valid=valid, test=test, options=options)


def test_the_sweep_takes_the_same_options():
    train, test = torch.rand(40, 12), torch.rand(10, 12)
    options = pv.FitOptions(epochs=2, batch_size=10, lr=0.01, objective="iwae:k=2", seed=1)

    def build(d: int) -> pv.VAE:
        return small_vae(latent_dim=d)

    sweep = pv.sweep.latent_size_sweep(
        build, train.round(), test.round(), [2], options=options, num_samples=4
    )
    assert sweep.rows[0]["epochs"] == 2
    with pytest.raises(ValueError, match="patience .* needs validation data"):
        pv.sweep.latent_size_sweep(build, train, test, [2], options=options.replace(patience=2))
