"""pyro_vae: variational autoencoders as Pyro programs with swappable parts.

The public names are re-exported here explicitly; the modules ``priors``,
``guides``, ``likelihoods``, ``nets``, ``objectives``, ``estimators``,
``evaluate``, ``gradients``, ``latent``, ``gaps``, ``applications``, ``sweep``, ``data``,
``distributed``, ``registry``, ``init``, ``recipes``, ``schedules`` and ``plots`` are
reached as attributes (``pv.priors.StandardNormal``).

The package is built in floors, each importing only those below it (an
import-linter contract in setup.cfg keeps it so): ``cli`` over ``lab`` over
``plots`` over ``analysis`` over ``train`` over ``infer`` over ``models`` over the
ground floor (``data``, ``_checks``, ``_atomic``, ``_defaults``). The public
modules keep the import paths they had before the floors (``pyro_vae.priors``
is ``pyro_vae.models.priors``).
"""

import sys as _sys

from pyro_vae import data, plots
from pyro_vae.analysis import applications, gaps, latent
from pyro_vae.infer import estimators, evaluate, gradients, objectives
from pyro_vae.lab import compare as _compare_module
from pyro_vae.lab import recipes, sweep
from pyro_vae.lab.compare import Comparison, compare
from pyro_vae.models import guides, init, likelihoods, nets, priors, registry
from pyro_vae.models import linear_gaussian as _linear_gaussian
from pyro_vae.models import vae as _vae
from pyro_vae.models.vae import VAE, HierarchicalVAE
from pyro_vae.train import checkpoints, distributed, schedules
from pyro_vae.train import runs as _runs
from pyro_vae.train._fit import History, NonFiniteLossError, fit
from pyro_vae.train._run_folder import RunFolderLocked
from pyro_vae.train.options import FitOptions
from pyro_vae.train.runs import Run, load_run

__all__ = [
    "VAE",
    "HierarchicalVAE",
    "History",
    "fit",
    "FitOptions",
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

# The public modules' paths from before the floors: ``import pyro_vae.priors``,
# ``from pyro_vae.vae import VAE`` and ``pv.linear_gaussian`` still work, and name the
# same module objects.
_PUBLIC_PATHS = {
    "priors": priors, "guides": guides, "likelihoods": likelihoods, "nets": nets, "init": init,
    "registry": registry, "vae": _vae, "linear_gaussian": _linear_gaussian,
    "objectives": objectives, "estimators": estimators, "evaluate": evaluate,
    "gradients": gradients, "latent": latent, "gaps": gaps, "applications": applications,
    "compare": _compare_module, "sweep": sweep, "recipes": recipes, "checkpoints": checkpoints,
    "distributed": distributed, "schedules": schedules, "runs": _runs,
}  # fmt: skip
for _name, _module in _PUBLIC_PATHS.items():
    _sys.modules.setdefault(f"{__name__}.{_name}", _module)
    globals().setdefault(_name, _module)  # pv.vae, pv.runs, ...; pv.compare stays the function
