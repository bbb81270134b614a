"""Checks of data against a VAE, and of Pyro programs with their data.

The ground floor's :mod:`pyro_vae._checks` knows tensors and numbers; these
checks also know the VAE (its parameters' dtype and device, its likelihood's
event shape and support), so they live on the models floor.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch

from pyro_vae._checks import check_data_shape, check_finite_data, check_support, check_tensor

__all__ = ["model_event_shape", "check_vae_data"]


def _floating_tensors(module: torch.nn.Module) -> list[torch.Tensor]:
    tensors = itertools.chain(module.parameters(), module.buffers())
    return [t for t in tensors if t.is_floating_point()]  # not index buffers


def model_event_shape(vae: Any) -> torch.Size | None:
    """The event shape of a VAE's data: the likelihood's on a batch of no latents, or
    ``None`` for a decoder that cannot run on an empty batch.

    No row goes through the decoder, no random number is drawn (a lazy layer
    materialising here draws from a forked stream) and no batch statistics move
    (the likelihood's modules run in eval mode, then get their modes back).
    """
    tensors = _floating_tensors(vae)
    dtype = tensors[0].dtype if tensors else torch.get_default_dtype()
    device = tensors[0].device if tensors else torch.device("cpu")
    z = torch.zeros(0, vae.latent_dim, dtype=dtype, device=device)
    devices = [device.index or 0] if device.type == "cuda" else []
    modes = {module: module.training for module in vae.likelihood.modules()}
    try:
        vae.likelihood.eval()
        with torch.no_grad(), torch.random.fork_rng(devices=devices):
            return vae.likelihood(z).event_shape
    except (RuntimeError, ValueError, IndexError, TypeError):
        return None  # the evaluation itself will say what does not fit
    finally:
        for module, training in modes.items():
            module.training = training


def check_vae_data(vae: Any, x: object, name: str = "x", *, support: bool = True) -> torch.Tensor:
    """Checks data against a VAE: a floating tensor ``(N, *event_shape)`` of the VAE's
    dtype and device, finite, with the likelihood's event shape and, with ``support``,
    values in the likelihood's support.

    Raises:
        TypeError: not a tensor, or another dtype than the VAE's parameters.
        ValueError: wrong shape, device, NaN or Inf, or values outside the support.
    """
    x = check_finite_data(check_tensor(x, name), name)
    tensors = _floating_tensors(vae)
    dtypes = {t.dtype for t in tensors}
    if dtypes and dtypes != {x.dtype}:
        names = ", ".join(sorted(str(d) for d in dtypes))
        raise TypeError(
            f"{name} has dtype {x.dtype} but the VAE's parameters are {names}; convert one "
            f"of them ({name}.to({tensors[0].dtype}) or vae.to({x.dtype}))"
        )
    devices = {t.device for t in tensors}
    if devices and devices != {x.device}:
        device = tensors[0].device
        raise ValueError(
            f"{name} is on {x.device} but the VAE is on {device}; move it with "
            f"{name}.to({str(device)!r})"
        )
    likelihood = vae.likelihood if support else None
    return check_support(check_data_shape(x, name, model_event_shape(vae)), name, likelihood)
