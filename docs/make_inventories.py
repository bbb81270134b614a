"""Writes the intersphinx inventories in ``docs/_inventories/``, offline.

The site links Python, Pyro, PyTorch and NumPy names to their online documentation,
but their inventories (``objects.inv``) cannot be downloaded when the site is built.
So the inventories are committed, made by this script from what is at hand:

- **Python**: Debian's ``python3-doc`` package ships the inventory of the
  interpreter's own documentation (``/usr/share/doc/python3.X/html/objects.inv``);
  it is copied as it is.
- **Pyro**: generated from Pyro's documentation sources (``docs/source/*.rst`` of a
  Pyro checkout) and the installed ``pyro`` package, the way Sphinx's autodoc would
  name things: every ``autoclass``, ``autofunction`` and ``automodule`` directive, the
  members of each module and class it documents, and the page it is on.
- **PyTorch and NumPy**: the names the site refers to, with the pages and anchors of
  their documentation (``TABLES`` below, checked against their ``docs/source``). A name
  missing here renders as code, as ``conf.py``'s ``nitpick_ignore_regex`` allows.

    python docs/make_inventories.py --python-inventory /usr/share/doc/python3.11/html/objects.inv \\
        --pyro-docs PYRO_CHECKOUT/docs/source

Run it again after upgrading Pyro or Python, and commit ``docs/_inventories``.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import re
import shutil
import zlib
from collections.abc import Iterator
from pathlib import Path

OUT = Path(__file__).resolve().parent / "_inventories"

# name -> (role, page#anchor) in the PyTorch and NumPy documentation. Aliases (the
# private paths that signatures show, e.g. ``torch._C.Generator``) point where the
# public name does.
TABLES: dict[str, dict[str, tuple[str, str]]] = {
    "torch": {
        "torch.Tensor": ("class", "tensors.html#torch.Tensor"),
        "torch.device": ("class", "tensor_attributes.html#torch.device"),
        "torch.dtype": ("class", "tensor_attributes.html#torch.dtype"),
        "torch.Generator": ("class", "generated/torch.Generator.html#torch.Generator"),
        "torch._C.Generator": ("class", "generated/torch.Generator.html#torch.Generator"),
        "torch.nn.Module": ("class", "generated/torch.nn.Module.html#torch.nn.Module"),
        "torch.nn.modules.module.Module": (
            "class",
            "generated/torch.nn.Module.html#torch.nn.Module",
        ),
        "torch.nn.RNNBase": ("class", "generated/torch.nn.RNNBase.html#torch.nn.RNNBase"),
        "torch.distributions.Distribution": (
            "class",
            "distributions.html#torch.distributions.distribution.Distribution",
        ),
        "torch.distributions.distribution.Distribution": (
            "class",
            "distributions.html#torch.distributions.distribution.Distribution",
        ),
        "torch.distributions.Distribution.expand": (
            "method",
            "distributions.html#torch.distributions.distribution.Distribution.expand",
        ),
        "torch.distributions.constraints.Constraint": (
            "class",
            "distributions.html#torch.distributions.constraints.Constraint",
        ),
        "torch.distributed": ("module", "distributed.html#module-torch.distributed"),
        "torch.distributed.init_process_group": (
            "function",
            "distributed.html#torch.distributed.init_process_group",
        ),
        "torch.nn.utils.clip_grad_norm_": (
            "function",
            "generated/torch.nn.utils.clip_grad_norm_.html#torch.nn.utils.clip_grad_norm_",
        ),
        "torch.optim.Adam": ("class", "generated/torch.optim.Adam.html#torch.optim.Adam"),
        "torch.save": ("function", "generated/torch.save.html#torch.save"),
        "torch.load": ("function", "generated/torch.load.html#torch.load"),
    },
    "numpy": {
        "numpy.ndarray": ("class", "reference/generated/numpy.ndarray.html#numpy.ndarray"),
    },
}

_DIRECTIVE = re.compile(r"^\.\. (automodule|autoclass|autofunction|include)::\s*(\S+)")


def write_inventory(path: Path, project: str, version: str, entries: dict[str, tuple]) -> None:
    """Writes a Sphinx inventory (version 2): one ``name domain:role 1 uri -`` per entry."""
    lines = [f"{name} py:{role} 1 {uri} -" for name, (role, uri) in sorted(entries.items())]
    header = (
        "# Sphinx inventory version 2\n"
        f"# Project: {project}\n# Version: {version}\n"
        "# The remainder of this file is compressed using zlib.\n"
    )
    path.write_bytes(header.encode() + zlib.compress(("\n".join(lines) + "\n").encode()))


def _role(obj: object) -> str:
    if inspect.isclass(obj):
        return "exception" if issubclass(obj, BaseException) else "class"
    if isinstance(obj, property):
        return "property"
    return "function" if callable(obj) else "data"


def _resolve(dotted: str) -> object | None:
    """The object a dotted name names, importing the longest module prefix."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for part in parts[cut:]:
                obj = getattr(obj, part)
        except AttributeError:
            return None
        return obj
    return None


def _class_members(name: str, cls: type) -> Iterator[tuple[str, str]]:
    for member, value in vars(cls).items():
        if member.startswith("_"):
            continue
        if isinstance(value, (staticmethod, classmethod)):
            value = value.__func__
        if isinstance(value, property):
            yield f"{name}.{member}", "property"
        elif inspect.isfunction(value):
            yield f"{name}.{member}", "method"


def _module_members(module_name: str) -> Iterator[tuple[str, object]]:
    module = importlib.import_module(module_name)
    names = getattr(module, "__all__", None)
    for member, value in vars(module).items():
        if member.startswith("_") or (names is not None and member not in names):
            continue
        if names is None and getattr(value, "__module__", None) != module_name:
            continue  # autodoc leaves out what a module imports
        if inspect.isclass(value) or inspect.isfunction(value):
            yield member, value


def _documented(page: str, text: str, docs: Path) -> Iterator[tuple[str, str, str]]:
    """(name, role, page) for every object one page of Pyro's docs documents."""
    for line in text.splitlines():
        match = _DIRECTIVE.match(line.strip())
        if not match:
            continue
        kind, target = match.groups()
        if kind == "include":
            included = docs / target
            if included.is_file():
                yield from _documented(page, included.read_text(), docs)
            continue
        obj = _resolve(target)
        if obj is None:
            continue
        if kind == "automodule":
            yield target, "module", page
            for member, value in _module_members(target):
                yield f"{target}.{member}", _role(value), page
                if inspect.isclass(value):
                    for name, role in _class_members(f"{target}.{member}", value):
                        yield name, role, page
        else:
            yield target, _role(obj), page
            if inspect.isclass(obj):
                for name, role in _class_members(target, obj):
                    yield name, role, page


# Where Pyro's classes are imported from in user code (and so in signatures and prose).
_PYRO_PACKAGES = (
    "pyro",
    "pyro.infer",
    "pyro.distributions",
    "pyro.nn",
    "pyro.optim",
    "pyro.poutine",
)


def _aliases(name: str, obj: object) -> Iterator[str]:
    """Other names of a documented class or function: where it is defined, and the
    public packages that re-export it (``pyro.infer.NUTS`` for ``pyro.infer.mcmc.NUTS``)."""
    if not (inspect.isclass(obj) or inspect.isfunction(obj)):
        return
    yield f"{obj.__module__}.{obj.__qualname__}"
    for package in _PYRO_PACKAGES:
        if getattr(importlib.import_module(package), obj.__name__, None) is obj:
            yield f"{package}.{obj.__name__}"


def pyro_entries(docs: Path) -> dict[str, tuple[str, str]]:
    """Pyro's objects as its documentation names them, each with its page and anchor,
    and their other names pointing to the same place."""
    entries: dict[str, tuple[str, str]] = {}
    aliases: dict[str, tuple[str, str]] = {}
    for source in sorted(docs.glob("*.rst")):
        for name, role, page in _documented(f"{source.stem}.html", source.read_text(), docs):
            anchor = f"module-{name}" if role == "module" else name
            entries.setdefault(name, (role, f"{page}#{anchor}"))
            for alias in _aliases(name, _resolve(name)):
                aliases.setdefault(alias, entries[name])
                if role == "class":  # its methods under the alias too: pyro.infer.SVI.step
                    for member, member_role in _class_members(alias, _resolve(name)):
                        documented = f"{name}.{member.rsplit('.', 1)[-1]}"
                        aliases.setdefault(member, (member_role, f"{page}#{documented}"))
    return aliases | entries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python-inventory", type=Path, required=True)
    parser.add_argument("--pyro-docs", type=Path, required=True, help="Pyro's docs/source")
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    shutil.copyfile(args.python_inventory, OUT / "python.inv")
    import numpy
    import pyro
    import torch

    pyro_objects = pyro_entries(args.pyro_docs)
    write_inventory(OUT / "pyro.inv", "Pyro", pyro.__version__, pyro_objects)
    write_inventory(OUT / "torch.inv", "PyTorch", torch.__version__, TABLES["torch"])
    write_inventory(OUT / "numpy.inv", "NumPy", numpy.__version__, TABLES["numpy"])
    print(f"wrote {OUT}: python (copied), pyro ({len(pyro_objects)} names), "
          f"torch ({len(TABLES['torch'])}), numpy ({len(TABLES['numpy'])})")  # fmt: skip


if __name__ == "__main__":
    main()
