"""Argument checks of the inference-gap functions (:mod:`pyro_vae.gaps`)."""

from __future__ import annotations

import torch

from pyro_vae._checks import check_int_at_least, check_number
from pyro_vae.models.guides import Guide
from pyro_vae.models.vae import VAE, HierarchicalVAE

__all__ = [
    "check_vae",
    "check_local_family",
    "check_log_px",
    "check_samples",
    "check_tolerance",
    "check_count",
]


def check_vae(vae: object, what: str) -> VAE:
    """A VAE with one latent site "z"; hierarchical VAEs and plain functions are refused."""
    if isinstance(vae, HierarchicalVAE):
        raise TypeError(
            f"{what} needs a VAE with one latent site 'z'; a HierarchicalVAE has "
            f"{len(vae.latent_dims)} stochastic layers, and its local family (a free guide for "
            "each layer given the one below) is not implemented"
        )
    if not isinstance(vae, VAE):
        raise TypeError(
            f"vae must be a pyro_vae.VAE, got {type(vae).__name__}: {what} needs the prior, "
            "the decoder and the guide as separate parts, which a plain Pyro program does not "
            "expose"
        )
    return vae


def check_local_family(encoder: Guide) -> None:
    if type(encoder).local_parameters is Guide.local_parameters:
        raise TypeError(
            f"the VAE's guide, {type(encoder).__name__}, has no local family: it must implement "
            "local_parameters(x) and distribution(params) (as the guides of pyro_vae.guides do)"
        )


def check_log_px(log_px: object, n: int) -> torch.Tensor:
    if not isinstance(log_px, torch.Tensor) or not log_px.is_floating_point():
        raise TypeError(f"log_px must be a floating torch.Tensor of shape ({n},)")
    if log_px.shape != (n,):
        raise ValueError(
            f"log_px must have shape ({n},), one per example; got {tuple(log_px.shape)}"
        )
    if not bool(torch.isfinite(log_px).all()):
        raise ValueError("log_px holds NaN or infinite values")
    return log_px


def check_samples(samples: object, n: int, latent_dim: int) -> torch.Tensor:
    if not isinstance(samples, torch.Tensor) or not samples.is_floating_point():
        raise TypeError(
            f"samples must be a floating torch.Tensor ({n}, S, {latent_dim}) from nuts_posterior"
        )
    if samples.dim() != 3 or samples.shape[0] != n or samples.shape[2] != latent_dim:
        raise ValueError(
            f"samples must have shape ({n}, S, {latent_dim}), one chain per example of x; "
            f"got {tuple(samples.shape)}"
        )
    if samples.shape[1] < 2:
        raise ValueError("samples needs at least 2 draws per example to estimate a variance")
    if not bool(torch.isfinite(samples).all()):
        raise ValueError("samples holds NaN or infinite values")
    return samples


def check_tolerance(tolerance: object) -> float:
    value = check_number("tolerance", tolerance)
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"tolerance must be a finite number >= 0, got {tolerance!r}")
    return value


def check_count(name: str, value: object) -> int:
    """``value`` as an int ≥ 0."""
    return check_int_at_least(name, value, low=0)
