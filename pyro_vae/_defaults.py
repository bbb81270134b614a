"""The defaults of pyro_vae's settings: one source for the library and the command line.

``pv.fit``, ``pv.compare``, ``pv.sweep``, the parts' constructors and the
``pyro-vae`` options read their defaults from here, so that a model trained in
Python and one trained on the command line with the same arguments left out are
the same experiment. The one deliberate difference is the epoch budget:
``pyro-vae train`` trains :data:`DEMO_EPOCHS` (the quick start's demo), ``fit``
:data:`EPOCHS`.
"""

from __future__ import annotations

__all__ = [
    "BATCH_SIZE",
    "LEARNING_RATE",
    "EPOCHS",
    "DEMO_EPOCHS",
    "ON_NONFINITE",
    "LIKELIHOOD_SCALE",
    "NUM_FLOWS",
    "MIXTURE_COMPONENTS",
    "PSEUDO_INPUTS",
    "ADAM_BETAS",
    "ADAM_EPS",
    "LR_SCHEDULE",
]

BATCH_SIZE = 100  # Burda et al. (2015) and most VAE papers on MNIST
LEARNING_RATE = 1e-3  # Adam's
EPOCHS = 10
DEMO_EPOCHS = 60
ON_NONFINITE = "stop"
LIKELIHOOD_SCALE = 0.1  # of the Gaussian, Laplace and discretised-logistic heads, on [0, 1] data
NUM_FLOWS = 2
MIXTURE_COMPONENTS = 10
PSEUDO_INPUTS = 500
ADAM_BETAS = (0.9, 0.999)  # torch's
ADAM_EPS = 1e-8  # torch's
LR_SCHEDULE = "constant"
