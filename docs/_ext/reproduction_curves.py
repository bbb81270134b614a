"""The reproduction page shows its curves, not only links to them.

REPRODUCTION.md (written by ``pyro-vae reproduce``) links each row's figure from the
table, which a repository browser opens on click. On the site, this extension writes
``_generated/reproduction_curves.md`` before the sources are read: one figure per
row, in the table's order, captioned with the row's recipe, objective, value and
epochs, and ``REPRODUCTION.md``'s page includes it under the table.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
_LINK = "[curve]("


def _rows(table: str) -> list[list[str]]:
    """The cells of the table rows that link a curve."""
    return [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in table.splitlines()
        if line.startswith("|") and _LINK in line
    ]


def _epochs_words(cell: str) -> str:
    """The epochs cell in words: ``"1187 of 2000, stopped early (best: 1137)"`` becomes
    ``"1187 of 2000 epochs, stopped early (best: 1137)"``."""
    match = re.fullmatch(r"(\d+ of \d+)(.*)", cell)
    return f"{match[1]} epochs{match[2]}" if match else f"{cell} epochs"


def curves_page(table: str) -> str:
    """The Markdown of the curves section for the text of REPRODUCTION.md."""
    lines = ["## The curves", ""]
    rows = _rows(table)
    if not rows:
        return "\n".join([*lines, "No row has a curve yet.", ""])
    for cells in rows:
        recipe, objective, paper, ours, *_, epochs, hours, device, figure = cells
        path = figure[len(_LINK) : figure.index(")")]
        lines += [
            f"```{{figure}} /../{path}",
            ":width: 100%",
            "",
            f"{recipe}, `{objective}`: {ours} against the paper's {paper}, "
            f"{_epochs_words(epochs)}, {hours} of training on {device}.",
            "```",
            "",
        ]
    return "\n".join(lines)


def write_curves(app: Any) -> None:
    """Writes ``_generated/reproduction_curves.md`` in the source folder, if it changed."""
    out = Path(app.srcdir) / "_generated" / "reproduction_curves.md"
    out.parent.mkdir(exist_ok=True)
    text = curves_page((REPO / "REPRODUCTION.md").read_text())
    if not out.exists() or out.read_text() != text:
        out.write_text(text)


def setup(app: Any) -> dict[str, Any]:
    app.connect("builder-inited", write_curves)
    return {"parallel_read_safe": True}
