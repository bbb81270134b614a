"""The training floor: ``fit`` and what a run needs around it.

``fit`` (:mod:`._fit`) is a short front over a once-checked options object
(:class:`FitOptions` of :mod:`.options`, which the lab's experiments take too)
and a run (:mod:`._run`: start, resume, save points, rollback); the step itself
is :mod:`._trainer`'s. :mod:`.options`, :mod:`.checkpoints`, :mod:`.schedules`,
:mod:`.distributed` and :mod:`.runs` (``load_run``) are public.

Imports the infer and models floors and the ground floor.
"""

from pyro_vae.train._fit import LOG_COLUMNS, ON_NONFINITE, History, NonFiniteLossError, fit
from pyro_vae.train.options import FitOptions

__all__ = ["History", "fit", "FitOptions", "LOG_COLUMNS", "NonFiniteLossError", "ON_NONFINITE"]
