"""``python -m pyro_vae`` (and ``torchrun -m pyro_vae``) runs the ``pyro-vae`` command."""

from .cli import main

raise SystemExit(main())
