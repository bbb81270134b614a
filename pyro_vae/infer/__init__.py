"""The inference floor: bounds, estimators and evaluation of Pyro models and guides.

:mod:`.objectives` names the objectives and builds their estimators
(:mod:`.estimators`); :mod:`.evaluate` estimates log p(x) and the bounds of
trained models; :mod:`.gradients` measures the estimators' gradient noise.
:mod:`._particles` runs any Pyro program with vectorised particles (traced);
:mod:`._fused` computes a VAE's own densities without tracing.

Imports the models floor and the ground floor.
"""
