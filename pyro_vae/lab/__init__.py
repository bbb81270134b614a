"""The lab floor: experiments built from ``fit`` and ``evaluate``.

:mod:`.compare` trains one model under several objectives and compares them;
:mod:`.sweep` trains across latent sizes; :mod:`.recipes` reproduces published
configurations and writes REPRODUCTION.md.

Imports every floor below it, plots included; only the command line imports it.
"""
