"""Bad arguments to the figures: the error names the argument, and nothing is left behind."""

from __future__ import annotations

import pytest
import torch
from bad_input import examples, listing, names_an_argument
from conftest import binary_data, small_vae
from hypothesis import given
from hypothesis import strategies as st

from pyro_vae import plots


@examples(60)
@given(
    images=st.sampled_from([torch.rand(4, 12), torch.rand(0, 12), torch.rand(3, 7), [[0.5]]]),
    shape=st.sampled_from([(1, 3, 4), (3, 1, 4), (2, 2, 3), (1, 0, 12), "ab", (1, 12)]),
    ncols=st.sampled_from([None, 2, 0, -1, 2.5]),
    pad=st.sampled_from([0, 1, -1, True]),
)
def test_image_grids_work_or_name_the_bad_argument(images, shape, ncols, pad):
    try:
        plots.image_grid(images, shape, ncols, pad)
    except (ValueError, TypeError) as e:
        assert names_an_argument(e, ("images", "image_shape", "ncols", "pad", "image_grid")), e


@pytest.mark.parametrize(
    "args, error, match",
    [
        (([[0.5] * 12], (1, 3, 4)), TypeError, "images must be a torch.Tensor"),
        ((torch.rand(3, 7), (1, 3, 4)), ValueError, r"do not hold images of shape \(1, 3, 4\)"),
        ((torch.rand(3, 12), "ab"), TypeError, "image_shape must be a shape"),
        ((torch.rand(3, 12), (1, 0, 12)), ValueError, "image_shape must be a shape"),
        ((torch.rand(3, 12), (1, 3, 4), 0), ValueError, "ncols must be a positive integer"),
        ((torch.rand(3, 12), (1, 3, 4), None, -1), ValueError, "pad must be an integer >= 0"),
    ],
)
def test_image_grids_name_their_bad_arguments(args, error, match):
    with pytest.raises(error, match=match):
        plots.image_grid(*args)


@pytest.mark.parametrize(
    "name, match",
    [
        ("s.xyz", "path must end in an image format suffix"),
        ("noext", "path must end in an image format suffix"),
        ("a-folder", "is a folder; expected a file path"),
        ("a-file/s.png", "a-file is a file, not a folder"),
    ],
)
def test_figures_refuse_a_path_they_cannot_write(tmp_path, name, match):
    (tmp_path / "a-folder").mkdir()
    (tmp_path / "a-file").write_text("x")
    before = listing(tmp_path)
    with pytest.raises(ValueError, match=match):
        plots.save_samples(small_vae(data_dim=16), (1, 4, 4), tmp_path / name, 4)
    assert listing(tmp_path) == before


def test_a_figure_that_fails_to_write_leaves_no_folder_or_temporary_file(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    def broken(*args, **kwargs):
        raise OSError("disk full (test)")

    monkeypatch.setattr(Figure, "savefig", broken)
    with pytest.raises(OSError, match="disk full"):
        plots.save_samples(small_vae(data_dim=16), (1, 4, 4), tmp_path / "a" / "b" / "s.png", 4)
    assert listing(tmp_path) == set()


def test_figures_name_their_bad_arguments(tmp_path):
    vae, path = small_vae(data_dim=16), tmp_path / "f.png"
    with pytest.raises(TypeError, match="vae must be a pyro_vae.VAE"):
        plots.save_samples(3, (1, 4, 4), path)
    with pytest.raises(ValueError, match=r"images of shape \(4, 16\) do not hold images"):
        plots.save_samples(vae, (1, 3, 5), path, 4)
    with pytest.raises(ValueError, match=r"x has event shape \(12,\), the model expects \(16,\)"):
        plots.save_reconstructions(vae, torch.zeros(3, 12), (1, 4, 4), path)
    with pytest.raises(ValueError, match="num must be a positive integer"):
        plots.save_reconstructions(vae, binary_data(3, 16), (1, 4, 4), path, num=0)
    with pytest.raises(TypeError, match="history must be a pyro_vae.History"):
        plots.save_learning_curves([1, 2], path)
    with pytest.raises(TypeError, match="comparison must be a Comparison"):
        plots.save_comparison({}, path)
    with pytest.raises(ValueError, match=r"rows\[0\] must be a dict with keys"):
        plots.save_gradient_stats([{"k": 1}], path)
    with pytest.raises(TypeError, match="vaes must be a dict of label -> pyro_vae.VAE"):
        plots.save_priors_and_aggregate_posteriors([vae], binary_data(3, 16), path)
    vae2 = small_vae(data_dim=16, latent_dim=2)
    with pytest.raises(ValueError, match="x has event shape"):
        plots.save_priors_and_aggregate_posteriors({"a": vae2}, torch.zeros(3, 5), path)
    assert not path.exists()
