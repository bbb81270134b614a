"""A class's attributes, as its docstring's "Attributes:" section states them, once.

Two things went wrong with napoleon's ``napoleon_use_ivar``, which renders the
section as a "Variables" list:

- an entry naming several attributes (``epoch, step: where it happened``), which
  napoleon reads correctly under "Args:", came out as ``step (epoch,)``. Before
  napoleon runs, such an entry becomes one entry per name, each with the text.
- autodoc then listed the same attributes again, as bare entries (a dataclass's
  fields, with ``undoc-members``). Members that the class's list names are skipped.
"""

from __future__ import annotations

import re
from typing import Any

_NAMES = re.compile(r"\w+(?:, \w+)+")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def split_attribute_names(lines: list[str]) -> list[str]:
    """Google-style docstring lines with each multi-name "Attributes:" entry split.

    ``a, b: text`` (and its continuation lines) becomes ``a: text`` and ``b: text``,
    each followed by the continuation lines.
    """
    out: list[str] = []
    i, in_section, entry_indent = 0, False, None
    while i < len(lines):
        line, stripped = lines[i], lines[i].strip()
        if stripped == "Attributes:":
            in_section, entry_indent = True, None
            section_indent = _indent(line)
        elif in_section and stripped and _indent(line) <= section_indent:
            in_section = False
        elif in_section and stripped and entry_indent is None:
            entry_indent = _indent(line)
        names, colon, text = stripped.partition(": ")
        if in_section and _indent(line) == entry_indent and colon and _NAMES.fullmatch(names):
            end = i + 1
            while end < len(lines) and (
                not lines[end].strip() or _indent(lines[end]) > entry_indent
            ):
                end += 1
            continuation = lines[i + 1 : end]
            for name in names.split(", "):
                out += [" " * entry_indent + f"{name}: {text}", *continuation]
            i = end
            continue
        out.append(line)
        i += 1
    return out


def listed_attributes(lines: list[str]) -> set[str]:
    """The names of napoleon's ``:ivar name:`` fields in a processed docstring."""
    return {line.split()[1].rstrip(":") for line in lines if line.startswith(":ivar ")}


_LISTED: set[str] = set()  # the attributes of the class autodoc is documenting


def _split(app: Any, what: str, name: str, obj: Any, options: Any, lines: list[str]) -> None:
    lines[:] = split_attribute_names(lines)


def _remember(app: Any, what: str, name: str, obj: Any, options: Any, lines: list[str]) -> None:
    if what in ("class", "exception"):
        _LISTED.clear()
        _LISTED.update(listed_attributes(lines))


def _skip(app: Any, what: str, name: str, obj: Any, skip: bool, options: Any) -> bool | None:
    listed = what in ("class", "exception") and name in _LISTED and not callable(obj)
    return True if listed else None


def setup(app: Any) -> dict[str, Any]:
    app.connect("autodoc-process-docstring", _split, priority=400)  # before napoleon (500)
    app.connect("autodoc-process-docstring", _remember, priority=600)  # after it
    app.connect("autodoc-skip-member", _skip)
    return {"parallel_read_safe": True}
