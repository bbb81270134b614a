"""Training objectives by name: each is a ``pyro.infer.ELBO`` usable in ``pyro.infer.SVI``.

=============== ===================================================================
name            estimator
=============== ===================================================================
``elbo``        ``Trace_ELBO``: E_q[log p(x, z) - log q(z|x)], KL by Monte Carlo
``analytic-kl`` ``TraceMeanField_ELBO``: E_q[log p(x|z)] - KL(q(z|x) ‖ p(z)),
                KL in closed form where torch registers one
=============== ===================================================================

Particles are vectorised: K samples are drawn in one pass inside an extra
leading plate, never in a Python loop.
"""

from __future__ import annotations

from collections.abc import Callable

import pyro.infer

__all__ = ["OBJECTIVES", "DEFAULT_OBJECTIVE", "make"]

_CONSTRUCTORS: dict[str, Callable[..., pyro.infer.ELBO]] = {
    "elbo": pyro.infer.Trace_ELBO,
    "analytic-kl": pyro.infer.TraceMeanField_ELBO,
}
OBJECTIVES: tuple[str, ...] = tuple(_CONSTRUCTORS)
DEFAULT_OBJECTIVE = "analytic-kl"


def make(
    name: str = DEFAULT_OBJECTIVE, num_particles: int = 1, *, max_plate_nesting: int = 1
) -> pyro.infer.ELBO:
    """Builds the objective called ``name`` with ``num_particles`` vectorised samples.

    Arguments:
        name: one of :data:`OBJECTIVES`.
        num_particles: K, the number of samples of z per data point.
        max_plate_nesting: how many plates the model nests; pyro_vae's models have
            one, ``"data"``. The particle plate is placed to the left of them.

    Returns:
        a ``pyro.infer.ELBO`` whose loss is the negative bound, in nats.

    Example:
        >>> make("elbo", num_particles=5).num_particles
        5
    """
    if name not in _CONSTRUCTORS:
        raise ValueError(f"unknown objective {name!r}; choose one of: {', '.join(OBJECTIVES)}")
    if isinstance(num_particles, bool) or not isinstance(num_particles, int) or num_particles < 1:
        raise ValueError(f"num_particles must be a positive integer, got {num_particles!r}")
    if isinstance(max_plate_nesting, bool) or not isinstance(max_plate_nesting, int):
        raise ValueError(f"max_plate_nesting must be an integer, got {max_plate_nesting!r}")
    return _CONSTRUCTORS[name](
        num_particles=num_particles,
        vectorize_particles=num_particles > 1,
        max_plate_nesting=max_plate_nesting,
    )
