"""The models floor: the VAE and its swappable parts, and the registry that builds them by name.

``VAE`` and ``HierarchicalVAE`` (:mod:`.vae`) are Pyro programs assembled from a
prior p(z) (:mod:`.priors`), a guide q(z|x) (:mod:`.guides`), a likelihood
p(x|z) (:mod:`.likelihoods`) and their networks (:mod:`.nets`, initialised by
:mod:`.init`). :mod:`.registry` maps names to parts and builds a VAE from a
config; the command line and the recipes use it. :mod:`.linear_gaussian` is the
exactly solvable model the tests check every estimator against.

Imports only the ground floor (``pyro_vae.data``, ``pyro_vae._checks``,
``pyro_vae._defaults``).
"""
