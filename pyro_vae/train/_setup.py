"""The checks and set-up of ``fit``: arguments, devices, objectives, and data against the model."""

from __future__ import annotations

import itertools
import json
import sys
import warnings
from typing import Any

import pyro.infer
import torch

from pyro_vae._checks import (
    FLOAT32_MAX,
    MAX_LEARNING_RATE,
    check_data_shape,
    check_data_values,
    check_device,
    check_finite_data,
    check_positive_float,
    check_support,
)
from pyro_vae.infer import objectives
from pyro_vae.models.likelihoods import Gaussian, Laplace
from pyro_vae.models.vae import VAE

__all__ = [
    "data_generator",
    "resolve_device",
    "make_objective",
    "objective_label",
    "check_inputs",
    "warn_of_fixed_scale",
    "check_config",
    "check_learning_rate",
    "first_batch",
]


def check_learning_rate(lr: object, name: str = "lr") -> float:
    """A positive learning rate whose Adam steps float32 can hold (at most
    :data:`~pyro_vae._checks.MAX_LEARNING_RATE`, about 3.4e37)."""
    lr = check_positive_float(name, lr)
    if lr > MAX_LEARNING_RATE:
        raise ValueError(
            f"{name} must be at most {MAX_LEARNING_RATE:.3g}: Adam's first step is "
            f"lr / (1 - beta1) = 10 lr, which must fit in float32 (at most {FLOAT32_MAX:.3g}), "
            f"got {lr!r}"
        )
    return lr


def check_config(config: Any) -> dict[str, Any]:
    """Checks that ``config`` is a dict of JSON data (it goes into config.json and checkpoints)."""
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise TypeError(f"config must be a dict of plain data, got {type(config).__name__}")
    try:
        json.dumps(config, allow_nan=True)
    except (TypeError, ValueError) as e:
        raise TypeError(
            f"config must hold only JSON data (numbers, strings, lists, dicts): {e}"
        ) from None
    return config


def data_generator(device: torch.device) -> torch.Generator:
    """The generator of batch order and binarisation, seeded from torch's global one."""
    seed = int(torch.randint(0, 2**62, (1,)).item())
    return torch.Generator(device=device).manual_seed(seed)


def resolve_device(
    device: str | torch.device | None, vae: VAE | None, data: torch.Tensor
) -> torch.device:
    """``device``, checked against this machine; by default the VAE's (else the data's).

    Raises:
        TypeError: neither a str nor a :class:`torch.device`.
        ValueError: not a device name, or one this machine lacks (``mps``, ``xla``,
            ``cuda`` without a GPU); the message lists the devices available.
    """
    if device is None:
        if vae is not None:
            first = next(vae.parameters(), None)
            return first.device if first is not None else data.device
        return data.device
    return check_device("device", device)


def _event_shape(vae: VAE) -> torch.Size:
    """The event shape of the VAE's data, from one draw of z decoded (on the VAE's device)."""
    with torch.no_grad():
        z = vae.sample_z(1)
        first = next(vae.parameters(), None)
        return vae.decode(z.to(first.device) if first is not None else z).event_shape


def make_objective(objective: str | pyro.infer.ELBO, num_particles: int | None) -> pyro.infer.ELBO:
    """An objective from a spec such as ``"iwae:k=5"``, or the ELBO given."""
    if isinstance(objective, pyro.infer.ELBO):
        if num_particles is not None:
            raise ValueError("num_particles goes with an objective given by name, not an ELBO")
        return objective
    if not isinstance(objective, str):
        raise TypeError(f"objective must be a name or a pyro.infer.ELBO, got {objective!r}")
    spec = objectives.parse(objective)
    if num_particles is None:
        return spec.make()
    if spec.num_particles not in (1, num_particles):
        raise ValueError(f"num_particles={num_particles} contradicts the objective {objective!r}")
    return spec.make(num_particles=num_particles)


def objective_label(loss: pyro.infer.ELBO) -> str:
    return getattr(loss, "objective_name", "") or type(loss).__name__


def check_inputs(
    vae: VAE | None,
    data: torch.Tensor,
    valid: torch.Tensor | None,
    binarize: bool,
) -> None:
    """Checks training and validation data against the model, once, before any training.

    ``data`` and ``valid`` have passed :func:`~pyro_vae._checks.check_tensor`; this
    checks the rest, one pass over the values of each: the VAE's dtype and event
    shape, finite values in the likelihood's support (with ``binarize``,
    intensities in [0, 1] instead), and warns of data far outside [0, 1] under a
    likelihood of fixed scale. ``fit`` calls it for its own data; the lab's
    experiments check theirs once for all their runs
    (:func:`pyro_vae.lab._experiment.check_splits`) and skip it.
    """
    check_finite_data(data, "data")
    event_shape = None
    if vae is not None:
        tensors = itertools.chain(vae.parameters(), vae.buffers())
        dtypes = {t.dtype for t in tensors if t.is_floating_point()}  # not index buffers
        if dtypes and dtypes != {data.dtype}:
            names = ", ".join(sorted(str(d) for d in dtypes))
            raise TypeError(
                f"data has dtype {data.dtype} but the VAE's parameters are {names}; convert "
                f"one of them (data.to({next(iter(dtypes))}) or vae.to({data.dtype}))"
            )
        event_shape = _event_shape(vae)
    likelihood = vae.likelihood if vae is not None else None
    check_support(
        check_data_shape(data, "data", event_shape), "data", None if binarize else likelihood
    )
    if binarize and not bool(((data >= 0) & (data <= 1)).all()):
        raise ValueError(
            "binarize=True draws x ~ Bernoulli(data): data must hold intensities in [0, 1], "
            f"found min {data.min().item():g}, max {data.max().item():g}"
        )
    if likelihood is not None:
        warn_of_fixed_scale(likelihood, data)
    if valid is not None:
        check_data_values(valid, "valid", likelihood, event_shape or data.shape[1:])
        if valid.dtype != data.dtype:
            raise TypeError(f"valid has dtype {valid.dtype} but data has {data.dtype}; convert one")


# Data "far outside [0, 1]": values beyond ±_FAR_OUTSIDE and a standard deviation over
# _SPREAD_PER_SCALE fixed scales (0-255 grey levels against the default scale 0.1).
_FAR_OUTSIDE = 10.0
_SPREAD_PER_SCALE = 10.0


def warn_of_fixed_scale(likelihood: object, data: torch.Tensor) -> None:
    """Warns (a ``UserWarning``) when data far outside [0, 1] meet a Gaussian or Laplace
    likelihood whose scale is fixed: every error is counted in units of that scale, so
    the loss runs to millions of nats and the fit is poor."""
    if not isinstance(likelihood, (Gaussian, Laplace)) or likelihood.learn_scale:
        return
    low, high = data.min().item(), data.max().item()
    spread, scale = data.std().item() if data.numel() > 1 else 0.0, likelihood.scale.item()
    if max(-low, high) <= _FAR_OUTSIDE or not spread > _SPREAD_PER_SCALE * scale:
        return
    warnings.warn(
        f"data range from {low:g} to {high:g} (standard deviation {spread:.3g}), far outside "
        f"[0, 1], but the {type(likelihood).__name__} likelihood's scale is fixed at "
        f"{scale:g}: errors count in units of {scale:g}, so the loss runs to millions of "
        "nats; rescale the data to about [0, 1] (8-bit images: x / 255) or learn the scale "
        "(learn_scale=True; pyro-vae --learn-scale)",
        UserWarning,
        stacklevel=_user_level(),
    )


def _user_level() -> int:
    """The ``stacklevel`` (for the caller of this function) of the first frame outside
    pyro_vae: the user's call, however deep in the package the warning is raised."""
    frame, level = sys._getframe(1), 1  # noqa: SLF001 - no public way on Python 3.11
    while frame is not None and frame.f_globals.get("__name__", "").startswith("pyro_vae"):
        frame, level = frame.f_back, level + 1
    return level


def first_batch(data: torch.Tensor, batch_size: int, binarize: bool) -> torch.Tensor:
    """A batch to create parameters from, drawn without touching any generator."""
    batch = data[: min(batch_size, data.shape[0])]
    return (batch > 0.5).to(batch.dtype) if binarize else batch
