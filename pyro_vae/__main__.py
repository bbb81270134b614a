"""``python -m pyro_vae`` (and ``torchrun -m pyro_vae``) runs the ``pyro-vae`` command."""

from pyro_vae.cli.commands import main

raise SystemExit(main())
