"""The check at the door of every function that runs a model and a guide on data."""

from __future__ import annotations

from typing import Any

import torch

from pyro_vae._checks import check_data
from pyro_vae.models._data_checks import check_vae_data
from pyro_vae.models.vae import VAE

__all__ = ["check_programs_and_data"]


def check_programs_and_data(
    model: Any, guide: Any, x: object, *, guide_only: bool = False
) -> torch.Tensor:
    """Checks the programs and ``x``; for one VAE's own programs, ``x`` against the VAE:
    dtype, device, event shape and, unless ``guide_only``, the likelihood's support."""
    for name, program in (
        (("guide", guide),) if guide_only else (("model", model), ("guide", guide))
    ):
        if not callable(program):
            raise TypeError(f"{name} must be a Pyro program (a callable of x), got {program!r}")
    vae = getattr(guide, "__self__", None)
    if isinstance(vae, VAE) and (guide_only or getattr(model, "__self__", None) is vae):
        return check_vae_data(vae, x, "x", support=not guide_only)
    return check_data(x)
