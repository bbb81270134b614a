"""Figures: image grids, learning curves, estimator comparisons and the latent space.

Figures are drawn on ``matplotlib.figure.Figure`` objects with the Agg canvas,
never through pyplot's global state, so they work without a display and never
change the user's matplotlib backend. Each ``save_*`` function checks its
arguments before drawing, writes one image atomically and returns its path.

Modules, by what the figures show:

* :mod:`~pyro_vae.plots.training`: learning curves, the estimator comparison, gradient statistics.
* :mod:`~pyro_vae.plots.latent_space`: samples, reconstructions and the latent space.
"""

from ._figure import image_grid, save_image_grid
from .latent_space import (
    save_priors_and_aggregate_posteriors,
    save_reconstructions,
    save_samples,
)
from .training import save_comparison, save_gradient_stats, save_learning_curves

__all__ = [
    "image_grid",
    "save_image_grid",
    "save_samples",
    "save_reconstructions",
    "save_learning_curves",
    "save_comparison",
    "save_gradient_stats",
    "save_priors_and_aggregate_posteriors",
]
