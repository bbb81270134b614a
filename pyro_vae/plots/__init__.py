"""Figures: image grids, learning curves, estimator comparisons and the latent space.

Figures are drawn on ``matplotlib.figure.Figure`` objects with the Agg canvas,
never through pyplot's global state, so they work without a display and never
change the user's matplotlib backend. Each ``save_*`` function checks its
arguments before drawing, writes one image atomically and returns its path.

Modules, by what the figures show:

* ``plots.training``: learning curves, the estimator comparison, gradient statistics.
* ``plots.latent_space``: samples, reconstructions, interpolations, traversals,
  the decoded 2-D manifold, priors beside aggregate posteriors.
* ``plots.latent_maps``: latent maps coloured by label, the aggregate posterior
  against the prior, and the KL and activity of each latent unit.
* ``plots.applications``: anomaly detection, denoising and the latent-size sweep.
* ``plots.gaps``: the inference gaps and posteriors against MCMC.
* ``plots.elbo_forms``: the ELBO's three forms, the gap, prior matching by layer.
* ``plots.reproduction``: a recipe run's anytime curve against the paper's value, and
  several runs side by side at equal epochs.

Latent units are named z₁, z₂, … in every figure: unit ``u`` of the code (``z[:, u]``,
``dims=[u]``, counted from 0 as in Python) is drawn as z with subscript u + 1. Axes of
epochs carry whole-number ticks, and one image grid holds at most
:data:`MAX_GRID_IMAGES` images.
"""

from pyro_vae.plots._figure import MAX_GRID_IMAGES, image_grid, save_image_grid
from pyro_vae.plots.applications import (
    save_anomaly_scores,
    save_denoising,
    save_denoising_errors,
    save_latent_size_sweep,
)
from pyro_vae.plots.elbo_forms import save_elbo_forms
from pyro_vae.plots.gaps import save_inference_gaps, save_posterior_comparison
from pyro_vae.plots.latent_maps import (
    save_aggregate_posterior,
    save_latent_map,
    save_unit_diagnostics,
)
from pyro_vae.plots.latent_space import (
    save_interpolations,
    save_manifold,
    save_priors_and_aggregate_posteriors,
    save_reconstructions,
    save_samples,
    save_traversals,
)
from pyro_vae.plots.reproduction import save_anytime_comparison, save_reproduction_curve
from pyro_vae.plots.training import save_comparison, save_gradient_stats, save_learning_curves

__all__ = [
    "MAX_GRID_IMAGES",
    "image_grid",
    "save_image_grid",
    "save_elbo_forms",
    "save_samples",
    "save_reconstructions",
    "save_learning_curves",
    "save_comparison",
    "save_gradient_stats",
    "save_priors_and_aggregate_posteriors",
    "save_anomaly_scores",
    "save_denoising",
    "save_denoising_errors",
    "save_latent_size_sweep",
    "save_interpolations",
    "save_traversals",
    "save_manifold",
    "save_latent_map",
    "save_aggregate_posterior",
    "save_unit_diagnostics",
    "save_inference_gaps",
    "save_posterior_comparison",
    "save_reproduction_curve",
    "save_anytime_comparison",
]
