"""The analysis floor: what a trained VAE has learned.

:mod:`.latent` (the latent space: encodings, traversals, interpolation),
:mod:`.gaps` (the inference gaps: approximation and amortisation) and
:mod:`.applications` (anomaly scores and denoising).

Imports the floors below it (train, infer, models) and the ground floor.
"""
