"""Every public name of pyro_vae has its entry in the API reference.

The public names are ``pyro_vae.__all__`` and, for each public module in it
(``pv.priors``, ``pv.evaluate``, ...), that module's ``__all__``. After Sphinx has
read every page, a name with no entry in the reference is a warning, which fails
``make docs`` (``-W``): a new function or module cannot ship undocumented.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any


def public_names() -> Iterator[str]:
    """The dotted names a user reaches from ``import pyro_vae as pv``."""
    import pyro_vae

    for name in pyro_vae.__all__:
        yield f"pyro_vae.{name}"
        module = getattr(pyro_vae, name)
        if inspect.ismodule(module):
            yield from (f"pyro_vae.{name}.{member}" for member in getattr(module, "__all__", ()))


def _check(app: Any, env: Any) -> None:
    from sphinx.util import logging

    documented = set(env.get_domain("py").objects)
    for name in public_names():
        if name not in documented:
            logging.getLogger(__name__).warning("public name %s is not in the API reference", name)


def setup(app: Any) -> dict[str, Any]:
    app.connect("env-check-consistency", _check)
    return {"parallel_read_safe": True}
