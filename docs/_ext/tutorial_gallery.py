"""A page per tutorial, generated at build time, and a gallery of them.

For each ``tutorials/NN_name.py`` the page ``tutorials/NN_name`` shows the
script's docstring (its prose), the figures of its committed full run from
``docs/gallery/NN_name/`` with the run's command, date, wall time, device and
commit under each, and the script itself. ``tutorials/index`` lists them with
the first figure of each as a thumbnail. The pages are written into
``docs/tutorials/`` (not committed) before Sphinx reads the sources; nothing is
executed.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

from initials import escape_initials

REPO = Path(__file__).resolve().parents[2]


def _docstring(script: Path) -> tuple[str, str]:
    """The title (first line) and the rest of a tutorial's docstring."""
    text = ast.get_docstring(ast.parse(script.read_text())) or script.stem
    title, _, body = text.partition("\n")
    return title.strip(), "\n".join(escape_initials(body.strip().splitlines()))


def _figures(name: str, docs: Path) -> tuple[list[Path], dict[str, Any] | None]:
    folder = docs / "gallery" / name
    record = folder / "run.json"
    run = json.loads(record.read_text()) if record.exists() else None
    return sorted(folder.glob("*.png")), run


def _caption(run: dict[str, Any]) -> str:
    minutes = run["seconds"] / 60
    took = f"{minutes:.1f} min" if minutes >= 1 else f"{run['seconds']} s"
    return (
        f"From a full run: ``{run['command']}``, {run['date']}, {took} on "
        f"{run['device']}, commit {run['commit']}."
    )


def _page(script: Path, docs: Path) -> str:
    title, body = _docstring(script)
    figures, run = _figures(script.stem, docs)
    lines = [title, "=" * len(title), "", body, ""]
    lines += ["Figures", "-------", ""]
    if not figures or run is None:
        lines += ["This tutorial's figures have not been collected yet "
                  "(``python docs/collect_gallery.py``).", ""]  # fmt: skip
    for figure in figures:
        lines += [f".. figure:: /gallery/{script.stem}/{figure.name}", "   :width: 100%", "",
                  f"   ``{figure.name}``. {_caption(run)}", ""]  # fmt: skip
    source = f".. literalinclude:: /../tutorials/{script.name}"
    lines += ["The script", "----------", "", source, "   :language: python", ""]
    return "\n".join(lines)


def _index(scripts: list[Path], docs: Path) -> str:
    title = "Tutorials"
    lines = [title, "=" * len(title), "",
             "Each tutorial is a script in ``tutorials/`` that runs end to end and writes its "
             "figures; ``--smoke-test`` runs it in seconds, and the test suite does. The "
             "figures below come from full runs, as each page says.", "",
             ".. toctree::", "   :maxdepth: 1", ""]  # fmt: skip
    lines += [f"   {script.stem}" for script in scripts]
    lines.append("")
    for script in scripts:
        figures, _ = _figures(script.stem, docs)
        title_line, _ = _docstring(script)
        lines += [f":doc:`{title_line} <{script.stem}>`", ""]
        if figures:
            lines += [f".. image:: /gallery/{script.stem}/{figures[0].name}", "   :height: 180px",
                      f"   :target: {script.stem}.html", ""]  # fmt: skip
    return "\n".join(lines)


def write_pages(app: Any) -> None:
    """Writes ``tutorials/*.rst`` into the source folder, changed files only."""
    docs = Path(app.srcdir)
    scripts = sorted((REPO / "tutorials").glob("[0-9]*.py"))
    out = docs / "tutorials"
    out.mkdir(exist_ok=True)
    pages = {f"{s.stem}.rst": _page(s, docs) for s in scripts} | {
        "index.rst": _index(scripts, docs)
    }
    for name, text in pages.items():
        path = out / name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)


def setup(app: Any) -> dict[str, Any]:
    app.connect("builder-inited", write_pages)
    return {"parallel_read_safe": True}
