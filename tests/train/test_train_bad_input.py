"""Bad arguments to ``fit`` and bad checkpoint files: the error names them."""

from __future__ import annotations

import pytest
from conftest import binary_data, small_vae

import pyro_vae as pv
from pyro_vae.train import checkpoints


def test_fit_names_a_learning_rate_too_large_for_float32():
    with pytest.raises(ValueError, match="lr"):
        pv.fit(small_vae(), binary_data(20), epochs=1, lr=1e300, progress=False)


@pytest.mark.parametrize("seed", [-1, 2**32, 2.5, True])
def test_fit_names_a_bad_seed(seed):
    with pytest.raises((ValueError, TypeError), match=r"\bseed\b"):
        pv.fit(small_vae(), binary_data(20), epochs=1, seed=seed, progress=False)


def test_fit_names_validation_data_of_another_dtype():
    with pytest.raises(TypeError, match="valid has dtype"):
        pv.fit(small_vae(), binary_data(20), valid=binary_data(10).double(), epochs=1,
               progress=False)  # fmt: skip


def test_fit_names_an_out_that_is_not_a_path():
    with pytest.raises(TypeError, match=r"\bout\b"):
        pv.fit(small_vae(), binary_data(20), epochs=1, out=3, progress=False)


def test_fit_refuses_an_empty_out(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"\bout\b"):
        pv.fit(small_vae(), binary_data(20), epochs=1, out="", progress=False)


def test_fit_names_an_out_under_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match=r"\bout\b"):
        pv.fit(small_vae(), binary_data(20), epochs=1, out=tmp_path / "f" / "run",
               progress=False)  # fmt: skip


def test_loading_a_text_file_as_a_checkpoint_is_a_value_error(tmp_path):
    (tmp_path / "c.pt").write_text("hello\n")
    with pytest.raises(ValueError, match="c.pt"):
        checkpoints.load(tmp_path / "c.pt")
