"""The top floor: the ``pyro-vae`` command (``python -m pyro_vae``).

:mod:`.commands` runs the commands; the parser and the option types live in
the private modules beside it.
"""

from pyro_vae.cli.commands import main

__all__ = ["main"]
