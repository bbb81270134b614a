"""Full-MNIST files on disk: finding them (or downloading them once) and reading them.

:func:`find_mnist` looks for a Keras ``mnist.npz`` or the four LeCun IDX files (each
optionally gzipped) in the directories it is given and, if allowed, downloads
``mnist.npz`` into the first writable one, checking its SHA-256. :func:`read_mnist`
parses the files and checks every array's shape, dtype and value range, with errors
that name the file. The search order, splits and in-memory caching live in
:mod:`pyro_vae.data`.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import tempfile
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "ENV_VAR",
    "MnistSource",
    "check_value_range",
    "find_mnist",
    "integral_labels",
    "read_mnist",
]

ENV_VAR = "PYRO_VAE_DATA"
_MNIST_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
_MNIST_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"
_DOWNLOAD_TIMEOUT_S = 30
_NPZ_NAME = "mnist.npz"
_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
_IDX_NAMES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
_IDX_IMAGES_MAGIC = 2051
_IDX_LABELS_MAGIC = 2049
_MNIST_SIDE = 28
_NUM_CLASSES = 10


@dataclass(frozen=True)
class MnistSource:
    """MNIST files found on disk: one Keras ``.npz`` or the four IDX files, in _IDX_NAMES order."""

    kind: str
    files: tuple[Path, ...]


# --------------------------------------------------------------------------- finding files


def find_mnist(
    root: Path | None,
    search_dirs: Callable[[Path | None], Sequence[Path]],
    download: bool,
) -> MnistSource:
    """Locate the MNIST files, downloading ``mnist.npz`` if allowed and none is found.

    Arguments:
        root: the user's ``root``, already ``expanduser``-ed: the path of a Keras ``.npz``
            file, a directory, or ``None``.
        search_dirs: called with ``root`` when ``root`` is not a file, gives the
            directories to search, in order; the download goes into the first writable
            one. It is called only then, so a root file needs no other directory.
        download: whether to download ``mnist.npz`` when no directory holds the files.

    Returns:
        Where the files are.

    Raises:
        FileNotFoundError: the files are not found and not downloaded, or a directory holds
            only some of the IDX files.
        ValueError: the downloaded file's SHA-256 checksum is wrong.
    """
    if root is not None and root.is_file():
        return MnistSource("npz", (root,))
    if root is not None and not root.exists() and root.suffix == ".npz":
        raise FileNotFoundError(
            f"root {str(root)!r} does not exist; expected a Keras-layout MNIST .npz file "
            "or a directory holding the MNIST files"
        )
    directories = list(search_dirs(root))
    for directory in directories:
        source = _source_in(directory)
        if source is not None:
            return source
    target = next((d for d in directories if _is_writable_dir(d)), None)
    if not download:
        reason = "download=False, so nothing was downloaded."
    elif target is None:
        reason = "None of these directories is writable, so nothing was downloaded."
    else:
        return MnistSource("npz", (_download_mnist(target, directories),))
    raise FileNotFoundError(_not_found_message(directories, target, reason))


def _source_in(directory: Path) -> MnistSource | None:
    npz = directory / _NPZ_NAME
    if npz.is_file():
        return MnistSource("npz", (npz,))
    found = {name: _idx_file(directory, name) for name in _IDX_NAMES}
    present = [path for path in found.values() if path is not None]
    if not present:
        return None
    if len(present) < len(_IDX_NAMES):
        missing = [name for name, path in found.items() if path is None]
        raise FileNotFoundError(
            f"directory {directory} holds only some of the MNIST IDX files: missing "
            f"{', '.join(missing)}; expected all four of {', '.join(_IDX_NAMES)} "
            "(each optionally gzipped, .gz)"
        )
    return MnistSource("idx", tuple(present))


def _idx_file(directory: Path, name: str) -> Path | None:
    for candidate in (directory / name, directory / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _is_writable_dir(path: Path) -> bool:
    """Whether ``path`` is, or could be created as, a directory this process can write to."""
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            return False
        probe = probe.parent
    return probe.is_dir() and os.access(probe, os.W_OK | os.X_OK)


def _not_found_message(directories: list[Path], target: Path | None, reason: str) -> str:
    where = str(target) if target is not None else "one of the searched directories"
    searched = ", ".join(str(d) for d in directories)
    return (
        f"MNIST files not found (searched: {searched}). Place {_NPZ_NAME} (Keras layout: "
        f"{', '.join(_NPZ_KEYS)}) or the four IDX files {', '.join(_IDX_NAMES)} (each "
        f"optionally .gz) in {where}, or set the {ENV_VAR} environment variable to a "
        f"directory holding them. {reason}"
    )


def _download_mnist(target: Path, directories: list[Path]) -> Path:
    """Download ``mnist.npz`` into ``target`` and return its path after checking its SHA-256."""
    destination = target / _NPZ_NAME
    temporary: str | None = None
    try:
        with urllib.request.urlopen(_MNIST_URL, timeout=_DOWNLOAD_TIMEOUT_S) as response:
            target.mkdir(parents=True, exist_ok=True)
            descriptor, temporary = tempfile.mkstemp(
                prefix=f".{_NPZ_NAME}.", suffix=".part", dir=target
            )
            digest = hashlib.sha256()
            with os.fdopen(descriptor, "wb") as file:
                while chunk := response.read(1 << 20):
                    digest.update(chunk)
                    file.write(chunk)
        if digest.hexdigest() != _MNIST_SHA256:
            raise ValueError(
                f"downloaded {_MNIST_URL} has SHA-256 checksum {digest.hexdigest()}; expected "
                f"{_MNIST_SHA256}. The download was discarded; place a copy of {_NPZ_NAME} "
                f"in {target} by hand"
            )
        os.replace(temporary, destination)
        temporary = None
    except (OSError, http.client.HTTPException) as error:  # urllib's URLError is an OSError
        reason = f"Downloading {_MNIST_URL} failed: {error}"
        raise FileNotFoundError(_not_found_message(directories, target, reason)) from error
    finally:
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
    return destination


# --------------------------------------------------------------------------- reading files


def read_mnist(source: MnistSource) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Read the MNIST files of ``source`` and validate every array.

    Arguments:
        source: the files, as returned by :func:`find_mnist`.

    Returns:
        ``(x_train, y_train, x_test, y_test)``: images ``(N, 28, 28)``, uint8 (float32 when
        the file holds floats) with grey levels in ``[0, 255]``, and int64 labels ``(N,)``
        in 0..9, one per image.

    Raises:
        ValueError: a file cannot be read, is truncated or corrupt, or holds arrays of the
            wrong keys, shape, dtype or value range.
    """
    if source.kind == "npz":
        x_train, y_train, x_test, y_test = _read_npz(source.files[0])
    else:
        x_train, y_train, x_test, y_test = (
            _read_idx(path, _IDX_IMAGES_MAGIC if i % 2 == 0 else _IDX_LABELS_MAGIC)
            for i, path in enumerate(source.files)
        )
    names = [str(f) for f in source.files] * (4 if source.kind == "npz" else 1)
    x_train = _checked_images(x_train, f"x_train of {names[0]}")
    y_train = _checked_labels(y_train, len(x_train), f"y_train of {names[1]}")
    x_test = _checked_images(x_test, f"x_test of {names[2]}")
    y_test = _checked_labels(y_test, len(x_test), f"y_test of {names[3]}")
    return x_train, y_train, x_test, y_test


def _read_npz(path: Path) -> tuple[np.ndarray, ...]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = list(npz.files)
            arrays = {key: npz[key] for key in _NPZ_KEYS if key in keys}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as error:
        # numpy takes any non-zip file for a pickle, and its advice to unpickle it is not ours.
        reason = "not a zip archive" if "pickled" in str(error) else error
        raise ValueError(
            f"cannot read MNIST file {path} as a .npz archive ({reason}); the file may be "
            f"truncated or corrupt: delete it, or replace it with a good copy of {_NPZ_NAME}"
        ) from error
    missing = [key for key in _NPZ_KEYS if key not in arrays]
    if missing:
        raise ValueError(
            f"MNIST file {path} lacks {', '.join(missing)}: found keys {keys or 'none'}; "
            f"expected the Keras layout {', '.join(_NPZ_KEYS)}"
        )
    return tuple(arrays[key] for key in _NPZ_KEYS)


def _read_idx(path: Path, magic: int) -> np.ndarray:
    """Parse an IDX file of unsigned bytes: images ``(n, rows, cols)`` or labels ``(n,)``."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as file:
                raw = file.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError, zlib.error) as error:
        raise ValueError(f"cannot read IDX file {path}: {error}") from error
    kind = "images" if magic == _IDX_IMAGES_MAGIC else "labels"
    ndim = 3 if magic == _IDX_IMAGES_MAGIC else 1
    header = 4 * (1 + ndim)
    if len(raw) < header:
        raise ValueError(
            f"IDX file {path} is truncated: {len(raw)} bytes, shorter than its {header}-byte header"
        )
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise ValueError(
            f"IDX file {path} has magic number {found}; expected {magic} (unsigned-byte {kind})"
        )
    dims = tuple(int.from_bytes(raw[4 * i : 4 * i + 4], "big") for i in range(1, ndim + 1))
    expected = int(np.prod(dims))
    payload = len(raw) - header
    if payload != expected:
        problem = "truncated" if payload < expected else "too long"
        raise ValueError(
            f"IDX file {path} is {problem}: header says {kind} of shape {dims}, i.e. "
            f"{expected} data bytes, but it holds {payload}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _checked_images(images: np.ndarray, what: str) -> np.ndarray:
    """Images ``(N, 28, 28)`` as uint8 or float32 after checking their shape and range."""
    expected = f"(N, {_MNIST_SIDE}, {_MNIST_SIDE}) with N >= 1"
    if images.ndim != 3 or images.shape[0] < 1 or images.shape[1:] != (_MNIST_SIDE,) * 2:
        raise ValueError(f"{what} has shape {images.shape}; expected {expected}")
    if images.dtype == np.uint8:
        return images
    if np.issubdtype(images.dtype, np.integer):
        check_value_range(images, 255.0, what)
        return images.astype(np.uint8)
    if np.issubdtype(images.dtype, np.floating):
        check_value_range(images, 255.0, what)
        return images.astype(np.float32)
    raise ValueError(f"{what} has dtype {images.dtype}; expected uint8 grey levels 0..255")


def _checked_labels(labels: np.ndarray, count: int, what: str) -> np.ndarray:
    if labels.shape != (count,):
        raise ValueError(f"{what} has shape {labels.shape}; expected ({count},), one per image")
    return integral_labels(labels, what)


# --------------------------------------------------------------------------- value checks


def check_value_range(values: np.ndarray, max_value: float, what: str) -> None:
    """Raise ValueError if ``values`` (any shape) hold NaN or infinities or leave
    ``[0, max_value]``; ``what`` names them in the message."""
    if values.size == 0:
        return
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{what} contain NaN or infinite values; expected 0..{max_value:g}")
    low, high = float(values.min()), float(values.max())
    if low < 0 or high > max_value:
        raise ValueError(f"{what} range from {low:g} to {high:g}; expected 0..{max_value:g}")


def integral_labels(labels: np.ndarray, what: str) -> np.ndarray:
    """Labels ``(N,)`` as int64 after checking they are whole numbers in 0..9."""
    if not (np.issubdtype(labels.dtype, np.integer) or np.issubdtype(labels.dtype, np.floating)):
        raise ValueError(f"{what} have dtype {labels.dtype}; expected integers")
    check_value_range(labels, _NUM_CLASSES - 1, what)
    as_int = labels.astype(np.int64)
    if not np.array_equal(as_int, labels):
        raise ValueError(f"{what} are not whole numbers; expected class labels 0..9")
    return as_int
