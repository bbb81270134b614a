"""Bad arguments and files for the data sets: the error names them and says what to do."""

from __future__ import annotations

import pytest
import torch
from bad_input import examples, isolated, names_an_argument
from hypothesis import given
from hypothesis import strategies as st

from pyro_vae import data


@examples(40)
@given(
    name=st.sampled_from(["digits", "mnist5k", "mnist", "nope", "", None, 3]),
    split=st.sampled_from(["train", "test", "train+valid", "dev", None]),
    binarize=st.sampled_from([None, "static", "dynamic", True]),
    seed=st.sampled_from([0, -1, 2.5, "1", 2**70]),
    root=st.sampled_from([None, "@missing", "@garbage", "@folder", 3]),
)
def test_data_loading_works_or_names_the_bad_argument(files, name, split, binarize, seed, root):
    if isinstance(root, str):
        root = files[{"@missing": "missing", "@garbage": "garbage", "@folder": "folder"}[root]]
    with isolated(files["folder"].parent):
        try:
            x = data.load(name, split, binarize=binarize, seed=seed, root=root)
        except (ValueError, TypeError, FileNotFoundError) as e:
            names = ("data set", "split", "binarize", "seed", "root", "MNIST")
            assert names_an_argument(e, names), e
        else:
            assert x.dtype == torch.float32 and x.dim() == 2


def test_data_loading_names_a_bad_root_or_download(tmp_path):
    with pytest.raises(TypeError, match="root must be a path"):
        data.load("mnist", root=3)
    with pytest.raises(TypeError, match="download must be True or False"):
        data.load("mnist", root=tmp_path, download="no")


def test_a_corrupt_mnist_file_says_what_to_do_and_downloads_nothing(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("tried to download")

    monkeypatch.setattr("urllib.request.urlopen", no_network)
    (tmp_path / "mnist.npz").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ValueError, match="not a zip archive.*delete it, or replace it"):
        data.load("mnist", "test", root=tmp_path)
