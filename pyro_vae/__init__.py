"""pyro_vae: variational autoencoders as Pyro programs with swappable parts.

The public names are re-exported here explicitly; the modules ``priors``,
``guides``, ``likelihoods``, ``nets``, ``objectives``, ``estimators``,
``evaluate``, ``gradients``, ``latent``, ``gaps``, ``applications``, ``sweep``, ``data``,
``distributed``, ``registry``, ``init``, ``recipes``, ``schedules`` and ``plots`` are
reached as attributes (``pv.priors.StandardNormal``).
"""

from . import (
    applications,
    checkpoints,
    data,
    distributed,
    estimators,
    evaluate,
    gaps,
    gradients,
    guides,
    init,
    latent,
    likelihoods,
    nets,
    objectives,
    plots,
    priors,
    recipes,
    registry,
    schedules,
    sweep,
)
from ._run_folder import RunFolderLocked
from .compare import Comparison, compare
from .runs import Run, load_run
from .train import History, NonFiniteLossError, fit
from .vae import VAE, HierarchicalVAE

__all__ = [
    "VAE",
    "HierarchicalVAE",
    "History",
    "fit",
    "NonFiniteLossError",
    "RunFolderLocked",
    "load_run",
    "Run",
    "registry",
    "compare",
    "Comparison",
    "checkpoints",
    "data",
    "distributed",
    "estimators",
    "evaluate",
    "gradients",
    "latent",
    "guides",
    "likelihoods",
    "nets",
    "objectives",
    "plots",
    "priors",
    "applications",
    "gaps",
    "sweep",
    "init",
    "recipes",
    "schedules",
]
__version__ = "0.1.0"
