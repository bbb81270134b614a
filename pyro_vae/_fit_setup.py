"""The checks and set-up of ``fit``: arguments, devices, objectives, and data against the model."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pyro.infer
import torch

from . import objectives
from ._checks import FLOAT32_MAX, check_data, check_positive_float
from .vae import VAE

__all__ = [
    "data_generator",
    "resolve_device",
    "make_objective",
    "objective_label",
    "check_inputs",
    "check_config",
    "check_learning_rate",
    "first_batch",
]


def check_learning_rate(lr: object) -> float:
    """A positive learning rate that Adam can hold in float32."""
    lr = check_positive_float("lr", lr)
    if lr > FLOAT32_MAX:
        raise ValueError(f"lr must be at most {FLOAT32_MAX:.3g} (float32's largest), got {lr!r}")
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


def resolve_device(device: str | torch.device | None, vae: VAE | None, data: torch.Tensor):
    if device is None:
        if vae is not None:
            first = next(vae.parameters(), None)
            return first.device if first is not None else data.device
        return data.device
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} was asked for, but CUDA is not available")
    return device


def _event_shape(vae: VAE, device: torch.device) -> torch.Size:
    with torch.no_grad():
        return vae.decode(vae.sample_z(1).to(device)).event_shape


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
    device: torch.device,
) -> None:
    """Checks the data against the model before any training: dtype, event shape, support."""
    if vae is not None:
        vae.to(device)
        tensors = itertools.chain(vae.parameters(), vae.buffers())
        dtypes = {t.dtype for t in tensors if t.is_floating_point()}  # not index buffers
        if dtypes and dtypes != {data.dtype}:
            names = ", ".join(sorted(str(d) for d in dtypes))
            raise TypeError(
                f"data has dtype {data.dtype} but the VAE's parameters are {names}; convert "
                f"one of them (data.to({next(iter(dtypes))}) or vae.to({data.dtype}))"
            )
        event_shape = _event_shape(vae, device)
        check_data(
            data, "data", likelihood=None if binarize else vae.likelihood, event_shape=event_shape
        )
        if valid is not None:
            check_data(valid, "valid", likelihood=vae.likelihood, event_shape=event_shape)
    elif valid is not None:
        check_data(valid, "valid", event_shape=data.shape[1:])
    if valid is not None and valid.dtype != data.dtype:
        raise TypeError(f"valid has dtype {valid.dtype} but data has {data.dtype}; convert one")
    if binarize and not bool(((data >= 0) & (data <= 1)).all()):
        raise ValueError(
            "binarize=True draws x ~ Bernoulli(data): data must hold intensities in [0, 1], "
            f"found min {data.min().item():g}, max {data.max().item():g}"
        )


def first_batch(data: torch.Tensor, batch_size: int, binarize: bool) -> torch.Tensor:
    """A batch to create parameters from, drawn without touching any generator."""
    batch = data[: min(batch_size, data.shape[0])]
    return (batch > 0.5).to(batch.dtype) if binarize else batch
