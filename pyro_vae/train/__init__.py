"""The training floor: ``fit`` and what a run needs around it.

``fit`` (:mod:`._fit`) is a short front over a once-checked options object
(:mod:`._options`) and a run (:mod:`._run`: start, resume, save points,
rollback); the step itself is :mod:`._trainer`'s. :mod:`.checkpoints`,
:mod:`.schedules`, :mod:`.distributed` and :mod:`.runs` (``load_run``) are
public.

Imports the infer and models floors and the ground floor.
"""

from pyro_vae.train._fit import LOG_COLUMNS, ON_NONFINITE, History, NonFiniteLossError, fit

__all__ = ["History", "fit", "LOG_COLUMNS", "NonFiniteLossError", "ON_NONFINITE"]
