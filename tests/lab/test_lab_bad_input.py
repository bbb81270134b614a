"""Bad arguments to ``compare``: named before any work is done."""

from __future__ import annotations

import pytest
import torch
from conftest import binary_data, small_vae

import pyro_vae as pv

COMPARE_SMALL = dict(objectives="elbo", epochs=1, batch_size=10, bound_ks=(1,), num_samples=2,
                     gradient_ks=(), progress=False)  # fmt: skip


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"train": torch.zeros(20, 5)}, ValueError, "train has event shape"),
        ({"valid": binary_data(10).double()}, TypeError, "valid has dtype torch.float64"),
        ({"test": torch.full((5, 12), 0.5)}, ValueError, "test has values outside the support"),
        ({"train": torch.full((20, 12), 255.0), "binarize": True}, ValueError,
         r"train must hold intensities in \[0, 1\]"),
        ({"epochs": 0}, ValueError, "epochs must be a positive integer"),
        ({"lr": -1}, ValueError, "lr must be a positive number"),
        ({"seed": -1}, ValueError, r"seed must be an integer in \[0, 2\*\*32\)"),
        ({"device": "tpu"}, ValueError, "device must be"),
        ({"eval_batch_size": 0}, ValueError, "eval_batch_size must be a positive integer"),
        ({"progress": "yes"}, TypeError, "progress must be True or False"),
        ({"bound_ks": 5}, TypeError, "bound_ks must be a list of positive integers"),
    ],
)  # fmt: skip
def test_compare_names_a_bad_argument_before_any_work(tmp_path, kwargs, error, match):
    args = dict(train=binary_data(20), valid=binary_data(10), test=binary_data(5))
    args |= COMPARE_SMALL | {"out": tmp_path / "cmp"} | kwargs
    train = args.pop("train")
    with pytest.raises(error, match=match):
        pv.compare(small_vae(), train, **args)
    assert not (tmp_path / "cmp").exists()


def test_compare_refuses_a_file_as_its_folder(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match="out=.* is a file; expected a folder"):
        pv.compare(small_vae(), binary_data(20), valid=binary_data(10), test=binary_data(5),
                   out=tmp_path / "f", **COMPARE_SMALL)  # fmt: skip
