"""Validation of user data at the public boundary, with errors that name the problem."""

from __future__ import annotations

import torch

from .likelihoods import Likelihood

__all__ = ["check_data", "check_positive_int", "check_positive_float"]


def check_positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def check_positive_float(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    if value == float("inf"):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return float(value)


def check_data(
    x: object,
    name: str = "x",
    *,
    likelihood: Likelihood | None = None,
    event_shape: torch.Size | tuple[int, ...] | None = None,
) -> torch.Tensor:
    """Checks a data tensor of shape ``(N, *event_shape)`` and returns it.

    Raises ``TypeError`` or ``ValueError`` naming ``name`` when ``x`` is not a
    floating tensor with at least one example and one data dimension, holds NaN
    or Inf, has the wrong event shape, or has values outside the likelihood's
    support (such as 0-255 pixels fed to a Bernoulli likelihood).
    """
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
    if event_shape is not None and tuple(x.shape[1:]) != tuple(event_shape):
        raise ValueError(
            f"{name} has event shape {tuple(x.shape[1:])}, the model expects {tuple(event_shape)}"
        )
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        raise ValueError(f"{name} holds {bad} NaN or infinite values")
    if likelihood is not None and not bool(likelihood.support.check(x).all()):
        raise ValueError(
            f"{name} has values outside the support of the {type(likelihood).__name__} "
            f"likelihood ({likelihood.support_description}): found min {x.min().item():g}, "
            f"max {x.max().item():g}{likelihood.support_hint}"
        )
    return x
