"""Initials in docstrings are prose, not lettered lists.

reST reads a paragraph that starts with a capital letter and a period as an item
of a lettered list: the reference ``1. Y. Burda, R. Grosse, ...`` became a list
item "1." holding a list item "Y." holding "Burda, ...", and a field
``num_particles: K.`` became an empty item "K.". The docstrings of pyro_vae use no
lettered lists, so this extension escapes such a period (``Y\\. Burda``, which
renders as ``Y. Burda``) in every docstring autodoc reads and in the tutorials'
prose, and fails the build (a warning, under ``-W``) if a lettered list is left on
any page.
"""

from __future__ import annotations

import re
from typing import Any

# Where a paragraph's text starts: after indentation and any list markers ("1. ", "- ")
# or field markers (":param k: ", ":ivar x: ", ":returns: ") that open the line.
_OPENERS = r"^(\s*(?:(?:\d+|#)\.\s+|[-*+]\s+|:[^:`\s][^:`]*:\s+)*)"
_INITIAL = re.compile(_OPENERS + r"([A-Z])\.(?=\s|$)")
_MARKER = re.compile(r"^\s*(?:(?:\d+|#)\.\s+|[-*+]\s+|:[^:`\s][^:`]*:\s+)")
_BARE_FIELD = re.compile(r"^\s*:[^:`\s][^:`]*:\s*$")  # napoleon puts "K." on the next line


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def escape_initials(lines: list[str]) -> list[str]:
    """The lines with the period of a paragraph-opening initial escaped.

    A line is changed when it opens a paragraph (it follows a blank line or a bare
    field marker, or starts with a list or field marker) and its text starts with
    ``X.`` and a space or the line's end. Lines of literal blocks (after a paragraph
    ending in ``::``) and doctests are kept.
    """
    out: list[str] = []
    literal_indent: int | None = None  # indentation of the paragraph that opened a literal
    previous = ""
    for line in lines:
        stripped = line.strip()
        if literal_indent is not None and stripped and _indent(line) <= literal_indent:
            literal_indent = None
        opens = not previous.strip() or bool(_BARE_FIELD.match(previous) or _MARKER.match(line))
        if literal_indent is None and opens and not stripped.startswith(">>>"):
            line = _INITIAL.sub(r"\1\2\\.", line, count=1)
        if stripped.endswith("::") and literal_indent is None:
            literal_indent = _indent(line)
        out.append(line)
        previous = line
    return out


def _escape_docstring(app: Any, what: str, name: str, obj: Any, options: Any, lines: list[str]):
    lines[:] = escape_initials(lines)


def _no_lettered_lists(app: Any, doctree: Any, docname: str) -> None:
    from docutils import nodes  # imported here: the tests use escape_initials without Sphinx
    from sphinx.util import logging

    for node in doctree.findall(nodes.enumerated_list):
        if node.get("enumtype") in ("upperalpha", "loweralpha"):
            text = node.astext().split("\n")[0][:60]
            logging.getLogger(__name__).warning(
                "a lettered list (an initial read as a list item?) near %r", text,
                location=node,
            )  # fmt: skip


def setup(app: Any) -> dict[str, Any]:
    # After napoleon (priority 500) has turned "Args:" sections into fields.
    app.connect("autodoc-process-docstring", _escape_docstring, priority=600)
    app.connect("doctree-resolved", _no_lettered_lists)
    return {"parallel_read_safe": True}
