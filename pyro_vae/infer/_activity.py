r"""Which latent units a guide uses: the activity of each unit over the data.

A unit whose posterior mean does not move with x carries no information about x;
its KL is near 0 and the decoder ignores it (posterior collapse). Re-exported by
:mod:`pyro_vae.evaluate`.
"""

from __future__ import annotations

from collections.abc import Callable

import pyro.poutine as poutine
import torch

from pyro_vae._checks import check_positive_float, check_positive_int
from pyro_vae.infer import _programs
from pyro_vae.infer._programs import check_programs_and_data, does_not_fit, sample_sites
from pyro_vae.models.guides import location

__all__ = ["unit_activity", "active_units"]

ModelFn = Callable[..., object]


def unit_activity(
    guide: ModelFn, x: torch.Tensor, *, batch_size: int = 1000
) -> dict[str, torch.Tensor]:
    r"""The activity of every latent unit u (Burda et al. 2015):

    .. math:: A_u = \mathrm{Var}_x(\mathbb{E}_q[z_u \mid x]).

    :math:`\mathbb{E}_q[z \mid x]` is the mean of the guide's distribution at each latent site;
    for a site that conditions on other latents it is the mean given one draw of them.

    Returns:
        ``{site name: tensor of shape (latent_dim,)}``, units flattened per site.
    """
    batch_size = check_positive_int("batch_size", batch_size)
    check_programs_and_data(None, guide, x, guide_only=True)
    _programs.refuse_vae_object(guide, "guide", "unit_activity")
    means: dict[str, list[torch.Tensor]] = {}
    with torch.no_grad(), poutine.block():
        for start in range(0, len(x), batch_size):
            batch = x[start : start + batch_size]
            try:
                trace = poutine.trace(guide).get_trace(batch)
            except (RuntimeError, IndexError, ValueError) as e:
                raise does_not_fit(x, e) from e
            for site in sample_sites(trace):
                if not site["is_observed"]:
                    mean = location(site["fn"]).reshape(batch.shape[0], -1)
                    means.setdefault(site["name"], []).append(mean)
    if len(x) < 2:
        raise ValueError("unit activity is a variance over examples: x needs at least 2 rows")
    return {name: torch.cat(m).var(dim=0) for name, m in means.items()}


def active_units(
    guide: ModelFn, x: torch.Tensor, *, threshold: float = 0.01, batch_size: int = 1000
) -> int:
    r"""How many latent units are active (Burda et al.):

    .. math:: \mathrm{Var}_x(\mathbb{E}_q[z_u \mid x]) > \mathtt{threshold}.

    Collapsed units, whose posterior mean ignores x, are the inactive ones.
    """
    threshold = check_positive_float("threshold", threshold)
    activity = unit_activity(guide, x, batch_size=batch_size)
    return int(sum((a > threshold).sum().item() for a in activity.values()))
