"""pyro_vae: variational autoencoders as Pyro programs with swappable parts.

The public names are re-exported here explicitly; the modules ``priors``,
``guides``, ``likelihoods``, ``nets``, ``objectives``, ``evaluate``, ``data`` and
``plots`` are reached as attributes (``pv.priors.StandardNormal``).
"""

from . import checkpoints, data, evaluate, guides, likelihoods, nets, objectives, plots, priors
from .train import History, fit
from .vae import VAE

__all__ = [
    "VAE",
    "History",
    "fit",
    "checkpoints",
    "data",
    "evaluate",
    "guides",
    "likelihoods",
    "nets",
    "objectives",
    "plots",
    "priors",
]
__version__ = "0.1.0"
