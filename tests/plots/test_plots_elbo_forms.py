"""save_elbo_forms: the three forms, the gap and the layers of several models in one figure."""

from __future__ import annotations

import pytest
from conftest import binary_data, small_vae
from matplotlib.image import imread

import pyro_vae as pv


@pytest.fixture
def forms():
    x = binary_data(8)
    one = small_vae()
    two = pv.HierarchicalVAE.mlp(12, [([8], 3), ([8], 2)])
    return {
        label: pv.evaluate.elbo_forms(vae.model, vae.guide, x, num_samples=5)
        for label, vae in (("one layer", one), ("two layers", two))
    }


def test_the_figure_is_written(forms, tmp_path):
    path = pv.plots.save_elbo_forms(forms, tmp_path / "f" / "elbo.png")
    height, width, _ = imread(path).shape
    assert width > height > 200


@pytest.mark.parametrize(
    "results, match",
    [({}, "non-empty dict of label -> ElboForms"), ([1], "non-empty dict"),
     ({"a": 1.0}, r"results\['a'\] must be an ElboForms, got float")],
)  # fmt: skip
def test_bad_results_are_named_before_anything_is_written(results, match, tmp_path):
    with pytest.raises(TypeError, match=match):
        pv.plots.save_elbo_forms(results, tmp_path / "elbo.png")
    assert not (tmp_path / "elbo.png").exists()


def test_a_bad_path_is_refused(forms, tmp_path):
    with pytest.raises(ValueError, match="image format"):
        pv.plots.save_elbo_forms(forms, tmp_path / "elbo.txt")
