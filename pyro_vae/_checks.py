"""Validation of user input at the public boundary, with errors that name the argument.

Every check raises ``TypeError`` (wrong kind of value) or ``ValueError`` (right kind,
wrong value) with a message of the form ``"<name> must be <what>, got <value>"``, so
that a bad argument never surfaces as an error from deep inside torch.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import torch


class Support(Protocol):
    """What :func:`check_data` asks of a likelihood: its support, described for messages."""

    support: Any  # a torch.distributions.constraints.Constraint
    support_description: str
    support_hint: str


# The largest learning rate or scale that float32 parameters and optimizer state can hold.
FLOAT32_MAX = torch.finfo(torch.float32).max
# The largest learning rate Adam can take: its first step is lr / (1 - beta1) = 10 lr (beta1 =
# 0.9), a float32 number; beyond this, torch fails with "cannot be converted ... without overflow".
MAX_LEARNING_RATE = FLOAT32_MAX * (1 - 0.9)

__all__ = [
    "Activation",
    "FLOAT32_MAX",
    "MAX_LEARNING_RATE",
    "check_data",
    "check_data_shape",
    "check_data_values",
    "check_finite_data",
    "check_support",
    "check_tensor",
    "check_int_at_least",
    "check_finite_at_least",
    "check_positive_int",
    "check_positive_float",
    "check_number",
    "check_activation",
    "check_sizes",
    "check_shape",
    "check_latents",
    "check_sample",
    "check_net_input",
    "check_event_shape",
    "check_seed",
    "check_device",
    "available_devices",
    "check_output_path",
]


def check_positive_int(name: str, value: object) -> int:
    """``value`` as an int ≥ 1; ``True``, 2.5 and ``"3"`` are refused."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def check_int_at_least(name: str, value: object, *, low: int, why: str = "") -> int:
    """``value`` as an int ≥ ``low`` (not a bool); ``why`` explains the bound in the message."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        reason = f" ({why})" if why else ""
        raise ValueError(f"{name} must be an integer >= {low}{reason}, got {value!r}")
    return value


def check_finite_at_least(name: str, value: object, *, low: float = 0.0) -> float:
    """``value`` as a finite float ≥ ``low`` (an int or a float, not a bool)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if value < low:
        raise ValueError(f"{name} must be ≥ {low:g}, got {value!r}")
    return float(value)


def check_positive_float(name: str, value: object) -> float:
    """``value`` as a finite float > 0 (an int or a float, not a bool)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    if value == float("inf"):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return float(value)


def check_seed(seed: object, *, optional: bool = False) -> int | None:
    """An integer seed in [0, 2**32), the range NumPy's and scikit-learn's generators take;
    ``None`` too when ``optional``."""
    if seed is None and optional:
        return None
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise ValueError(f"seed must be an integer in [0, 2**32), got {seed!r}")
    return seed


def available_devices() -> list[str]:
    """The devices torch can compute on here: ``cpu``, then ``cuda:N``, ``mps`` and ``xpu:N``
    where this machine and this build of torch have them."""
    names = ["cpu"]
    if torch.cuda.is_available():
        names += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        names.append("mps")
    xpu = getattr(torch, "xpu", None)
    if xpu is not None and xpu.is_available():
        names += [f"xpu:{i}" for i in range(xpu.device_count())]
    return names


def _is_available(device: torch.device, available: list[str]) -> bool:
    """Whether ``device`` (``cuda`` without an index: any of them) is among ``available``."""
    if device.type == "cpu":
        return True
    if device.index is None:
        return any(name.split(":")[0] == device.type for name in available)
    return str(device) in available or (device.type == "mps" and device.index == 0)


def check_device(name: str, device: object, *, also: Sequence[str] = ()) -> torch.device:
    """``device`` as a :class:`torch.device` this machine has, such as ``"cpu"`` or ``"cuda:0"``.

    Arguments:
        name: the argument's name in messages (``device``, ``--device``).
        device: a device name or a :class:`torch.device`.
        also: other values the caller accepts (such as ``auto``), listed in messages.

    Raises:
        TypeError: neither a str nor a :class:`torch.device`.
        ValueError: not a device name, or a device this machine or this build of torch
            lacks (``mps`` off Apple silicon, ``cuda`` without a GPU, ``xla``); the message
            lists the devices available.
    """
    available = available_devices()
    choices = ", ".join([*also, *available])
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"{name} must be a device name such as 'cpu', got {device!r}")
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        raise ValueError(
            f"{name} must be a device name such as cpu, cuda or cuda:N, got {str(device)!r}; "
            f"available on this machine: {choices}"
        ) from None
    if not _is_available(parsed, available):
        raise ValueError(
            f"{name} {str(device)!r} is not available: {_missing(parsed)}; available: {choices}"
        )
    return parsed


def _missing(device: torch.device) -> str:
    """Why an unavailable ``device`` is missing, in a few words."""
    if device.type == "cuda" and torch.cuda.is_available():
        return f"this machine has {torch.cuda.device_count()} CUDA device(s)"
    if device.type in ("cuda", "mps", "xpu"):
        return f"{device.type.upper()} is not available on this machine or in this build of torch"
    return f"this build of torch cannot compute on {device.type} devices here"


def check_number(name: str, value: object) -> float:
    """``value`` as a float: a real number or a 0-dimensional real tensor, not a bool.

    Only the type is checked here; callers check the range with their own message.
    """
    if isinstance(value, torch.Tensor) and value.dim() == 0 and not value.is_complex():
        if value.dtype != torch.bool:
            return float(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    return float(value)


# A constructor of a nonlinearity, such as ``nn.ReLU``: called once per layer.
Activation = Callable[[], torch.nn.Module]


def check_activation(activation: Any) -> Activation:
    """A constructor of a nonlinearity, such as ``nn.ReLU`` (called once per layer)."""
    if not callable(activation):
        raise TypeError(
            f"activation must be a callable returning an nn.Module (such as nn.ReLU), "
            f"got {activation!r}"
        )
    return activation


def check_sizes(
    name: str, value: object, *, allow_empty: bool = False, indexed: bool = True
) -> list[int]:
    """A list or tuple of positive integers, such as hidden widths ``[512, 256]``; a bad
    entry is named ``name[i]`` (``indexed``) or ``name``."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(f"{name} must be a list of positive integers, got {value!r}")
    sizes = [
        check_positive_int(f"{name}[{i}]" if indexed else name, v) for i, v in enumerate(value)
    ]
    if not sizes and not allow_empty:
        raise ValueError(f"{name} must hold at least one positive integer, got {value!r}")
    return sizes


def check_shape(name: str, value: object, length: int | None = None) -> tuple[int, ...]:
    """A shape of positive integers, of ``length`` entries when given (``(C, H, W)``: 3)."""
    what = f"{length} positive integers" if length else "positive integers"
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(f"{name} must be a shape of {what}, got {value!r}")
    shape = tuple(value)
    ok = all(not isinstance(s, bool) and isinstance(s, int) and s >= 1 for s in shape)
    if not shape or not ok or (length is not None and len(shape) != length):
        raise ValueError(f"{name} must be a shape of {what}, got {value!r}")
    return shape


def check_data(
    x: object,
    name: str = "x",
    *,
    likelihood: Support | None = None,
    event_shape: torch.Size | tuple[int, ...] | None = None,
) -> torch.Tensor:
    """Checks a data tensor of shape ``(N, *event_shape)`` and returns it.

    Raises ``TypeError`` or ``ValueError`` naming ``name`` when ``x`` is not a
    floating tensor with at least one example and one data dimension, holds NaN
    or Inf, has the wrong event shape, or has values outside the likelihood's
    support (such as 0-255 pixels fed to a Bernoulli likelihood).
    """
    return check_data_values(check_tensor(x, name), name, likelihood, event_shape)


def check_tensor(x: object, name: str = "x") -> torch.Tensor:
    """The part of :func:`check_data` that reads no values: a floating tensor
    ``(N, *event_shape)`` with N ≥ 1 and at least one data dimension."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(
            f"{name} must have a floating dtype, got {x.dtype}; convert 8-bit images with "
            f"{name}.float() / 255"
        )
    if x.dim() < 2 or x.shape[0] == 0:
        raise ValueError(
            f"{name} must have shape (N, *event_shape) with N >= 1, got {tuple(x.shape)}"
        )
    return x


def check_data_values(
    x: torch.Tensor,
    name: str = "x",
    likelihood: Support | None = None,
    event_shape: torch.Size | tuple[int, ...] | None = None,
) -> torch.Tensor:
    """The rest of :func:`check_data`, for a tensor :func:`check_tensor` passed: the
    event shape, then the values (finite, in the likelihood's support)."""
    check_data_shape(x, name, event_shape)
    check_finite_data(x, name)
    return check_support(x, name, likelihood)


def check_data_shape(
    x: torch.Tensor, name: str, event_shape: torch.Size | tuple[int, ...] | None
) -> torch.Tensor:
    """``x`` of shape ``(N, *event_shape)`` (any event shape when it is ``None``)."""
    if event_shape is not None and tuple(x.shape[1:]) != tuple(event_shape):
        raise ValueError(
            f"{name} has event shape {tuple(x.shape[1:])}, the model expects {tuple(event_shape)}"
        )
    return x


def check_finite_data(x: torch.Tensor, name: str) -> torch.Tensor:
    """``x`` without NaN or Inf (one pass over its values)."""
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        raise ValueError(f"{name} holds {bad} NaN or infinite values")
    return x


def check_support(x: torch.Tensor, name: str, likelihood: Support | None) -> torch.Tensor:
    """``x`` in the support of ``likelihood`` (anything when it is ``None``)."""
    if likelihood is not None and not bool(likelihood.support.check(x).all()):
        raise ValueError(
            f"{name} has values outside the support of the {type(likelihood).__name__} "
            f"likelihood ({likelihood.support_description}): found min {x.min().item():g}, "
            f"max {x.max().item():g}{likelihood.support_hint}"
        )
    return x


def check_latents(name: str, z: object, latent_dim: int | None = None) -> torch.Tensor:
    """A floating tensor of latent codes ``(*batch, latent_dim)`` without NaN or Inf."""
    if not isinstance(z, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(z).__name__}")
    if not z.is_floating_point():
        raise TypeError(f"{name} must have a floating dtype, got {z.dtype}")
    if z.dim() < 1 or (latent_dim is not None and z.shape[-1] != latent_dim):
        size = latent_dim if latent_dim is not None else "latent_dim"
        raise ValueError(f"{name} must have shape (*batch, {size}), got {tuple(z.shape)}")
    if not bool(torch.isfinite(z).all()):
        raise ValueError(f"{name} holds NaN or infinite values")
    return z


def check_sample(name: str, value: object, size: int) -> torch.Tensor:
    """A floating tensor whose last dimension is ``size``; fast: no pass over the values."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if not value.is_floating_point():
        raise TypeError(f"{name} must have a floating dtype, got {value.dtype}")
    if value.dim() < 1 or value.shape[-1] != size:
        raise ValueError(f"{name} must have shape (*batch, {size}), got {tuple(value.shape)}")
    return value


def check_event_shape(name: str, q: Any, event_shape: tuple[int, ...]) -> Any:
    """A distribution with event shape ``event_shape``."""
    if not isinstance(q, torch.distributions.Distribution):
        raise TypeError(f"{name} must be a torch Distribution, got {type(q).__name__}")
    if tuple(q.event_shape) != tuple(event_shape):
        raise ValueError(
            f"{name} must have event shape {tuple(event_shape)}, got {tuple(q.event_shape)}"
        )
    return q


def check_net_input(net: torch.nn.Module, x: torch.Tensor, width: int | None) -> torch.Tensor:
    """Inputs of the network's dtype, of shape ``(*batch, width)`` unless ``width`` is None."""
    name = type(net).__name__
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} expects a torch.Tensor, got {type(x).__name__}")
    if width is not None and (x.dim() < 1 or x.shape[-1] != width):
        raise ValueError(
            f"{name} expects inputs of shape (*batch, {width}), got shape {tuple(x.shape)}"
        )
    weight = next(net.parameters(), None)
    if weight is not None and x.dtype != weight.dtype and not _autocast(x.device.type):
        raise TypeError(f"{name} expects inputs of dtype {weight.dtype}, got {x.dtype}")
    return x


def _autocast(device_type: str) -> bool:
    """Whether torch.autocast casts the inputs of layers on this device type."""
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch before 2.4 takes no device type
        return torch.is_autocast_enabled()


def check_output_path(name: str, path: object, *, folder: bool) -> Path:
    """A path where a folder (``folder=True``) or a file can be created or replaced.

    Nothing is created. The path must not be a file where a folder is wanted (or a
    folder where a file is), and its nearest existing ancestor must be a folder this
    process may write in.

    Raises:
        TypeError: not a str or path.
        ValueError: empty, or a file or folder stands in the way.
        PermissionError: no write permission where the path would be created.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a path (str or os.PathLike), got {path!r}")
    p = Path(path)
    if not str(path).strip():
        raise ValueError(f"{name} must be a non-empty path, got {str(path)!r}")
    if folder and p.exists() and not p.is_dir():
        raise ValueError(f"{name}={str(p)!r} is a file; expected a folder")
    if not folder and p.is_dir():
        raise ValueError(f"{name}={str(p)!r} is a folder; expected a file path")
    probe = p if folder else p.parent
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        raise ValueError(f"{name}={str(p)!r} cannot be created: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise PermissionError(
            f"{name}={str(p)!r} cannot be written: no write permission in {probe}"
        )
    return p
