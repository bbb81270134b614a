"""A public object without a docstring of its own fails the build.

Every function, class, method, property, module and exception that the reference
documents must say what it is. A method without a docstring does not show an empty
entry: autodoc shows the docstring it inherits, which for ``forward`` is torch's
generic text about ``nn.Module``; that too is a warning (``-W`` makes it an error).
Inheriting from a pyro_vae class is fine: a subclass's ``log_prob`` means what the
base class says.
"""

from __future__ import annotations

import importlib
from typing import Any

_KINDS = ("function", "class", "method", "property", "module", "exception")


def owner(name: str) -> type | None:
    """The class a method's dotted name belongs to (``pyro_vae.nets.MLP.forward``: MLP)."""
    parts = name.split(".")[:-1]
    for cut in range(len(parts), 0, -1):
        try:
            found: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for part in parts[cut:]:
            found = getattr(found, part, None)
        return found if isinstance(found, type) else None
    return None


def outside_docstring(what: str, name: str, obj: Any) -> str | None:
    """The outside class (torch's, Pyro's) whose docstring a method without its own would
    show, e.g. ``Module`` for a ``forward`` left undocumented; ``None`` if there is none."""
    if what not in ("method", "property") or getattr(obj, "__doc__", None):
        return None
    cls, member = owner(name), name.rsplit(".", 1)[-1]
    for base in cls.__mro__[1:] if cls else ():
        if getattr(base.__dict__.get(member), "__doc__", None):
            return None if base.__module__.startswith("pyro_vae") else base.__qualname__
    return None


def _check(app: Any, what: str, name: str, obj: Any, options: Any, lines: list[str]) -> None:
    from sphinx.util import logging

    log = logging.getLogger(__name__)
    if what in _KINDS and not any(line.strip() for line in lines):
        log.warning("%s %s has no docstring", what, name)
    elif outside := outside_docstring(what, name, obj):
        log.warning("%s %s has no docstring of its own (it would show %s's)", what, name, outside)


def setup(app: Any) -> dict[str, Any]:
    app.connect("autodoc-process-docstring", _check)
    return {"parallel_read_safe": True}
