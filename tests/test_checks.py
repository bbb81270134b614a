"""The ground floor's checks name the bad argument."""

from __future__ import annotations

import os

import pytest
import torch


def test_a_number_argument_of_another_type_is_named():
    from pyro_vae._checks import check_number

    assert check_number("scale", torch.tensor(0.5)) == 0.5
    for value in ("x", None, True, [1.0]):
        with pytest.raises(TypeError, match="scale must be a number"):
            check_number("scale", value)


@pytest.mark.parametrize(
    "make, folder, error, match",
    [
        (lambda t: t / "a-file", True, ValueError, "is a file; expected a folder"),
        (lambda t: t / "a-file" / "run", True, ValueError, "a-file is a file, not a folder"),
        (lambda t: t, False, ValueError, "is a folder; expected a file path"),
        (lambda t: "", True, ValueError, "non-empty path"),
        (lambda t: 3, True, TypeError, "must be a path"),
    ],
)
def test_an_output_path_that_cannot_be_created_is_named(tmp_path, make, folder, error, match):
    from pyro_vae._checks import check_output_path

    (tmp_path / "a-file").write_text("x")
    with pytest.raises(error, match=match):
        check_output_path("out", make(tmp_path), folder=folder)


def test_an_output_path_without_write_permission_is_named(tmp_path, monkeypatch):
    from pyro_vae._checks import check_output_path

    monkeypatch.setattr(os, "access", lambda *args, **kwargs: False)
    with pytest.raises(PermissionError, match="out=.*cannot be written: no write permission"):
        check_output_path("out", tmp_path / "new", folder=True)


def test_labelled_results_are_a_non_empty_dict_of_one_kind():
    from pyro_vae._labelled import check_labelled

    assert check_labelled("rows", {1: 2.0}, float) == {"1": 2.0}
    assert check_labelled("rows", 2.0, float, alone=True) == {"": 2.0}
    with pytest.raises(TypeError, match=r"rows must be a non-empty dict of label -> float, got"):
        check_labelled("rows", {}, float)
    with pytest.raises(TypeError, match=r"rows must be a float or a non-empty dict"):
        check_labelled("rows", [2.0], float, alone=True)
    with pytest.raises(TypeError, match=r"rows\['a'\] must be an int, got str"):
        check_labelled("rows", {"a": "x"}, int)
