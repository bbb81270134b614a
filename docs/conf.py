"""Sphinx configuration of pyro_vae's documentation site (``make docs``).

Every asset is local: MathJax comes from the ``sphinx-mathjax-offline`` package
and is copied into the built site, so the pages render their maths without a
network. Names from torch, Pyro and the standard library render as code: their
documentation sites cannot be reached when the site is built, so no inventory of
them is fetched (``nitpick_ignore_regex`` below keeps them from being reported).

The local extensions in ``_ext/``: ``tutorial_gallery`` writes a page per tutorial
with the figures of its committed full run; ``initials`` keeps "Y. Burda" from
becoming a lettered list; ``public_names`` fails the build when a public name has
no entry in the reference. Below, a hook fails it for a public object without a
docstring.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pyro_vae

sys.path.insert(0, str(Path(__file__).parent / "_ext"))

project = "pyro_vae"
author = "the pyro_vae authors"
copyright = "2026, the pyro_vae authors"
release = version = pyro_vae.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",
    "myst_parser",  # the Markdown pages: README's sections, BENCHMARKS.md, REPRODUCTION.md
    "tutorial_gallery",  # a page per tutorial, with the figures of its committed full run
    "initials",  # "Y. Burda" in a docstring is a name, not a lettered list
    "public_names",  # every public name has its entry in the reference
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
myst_heading_anchors = 3  # README's links to its own sections (#speed)
myst_enable_extensions = ["dollarmath"]  # README's $$ display, which GitHub renders too

napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True  # "Attributes:" as fields: a dataclass field is documented once
napoleon_custom_sections = [("References", "notes_style")]
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented"  # no second list for a dataclass
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "undoc-members": True, "show-inheritance": True}

# Every cross-reference must resolve (make docs builds with -W -n), except names
# that live outside this site: torch, Pyro, NumPy, matplotlib and the standard
# library, and pyro_vae's private modules, which the reference does not document.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(torch|pyro|numpy|np|nn|matplotlib|tqdm|filelock)(\..*)?"),
    (r"py:.*", r"(collections\.abc|typing|pathlib|os|argparse|contextlib|dataclasses)\..*"),
    (r"py:.*", r"(abc|datetime|enum)\..*"),
    (r"py:.*", r"(int|float|str|bool|dict|list|tuple|object|bytes|None|type|callable)"),
    # torch and Pyro classes that signatures name without their module
    (r"py:class", r"(Tensor|Module|TransformModule|ExpandedDistribution)"),
    (r"py:.*", r"pyro_vae(\.\w+)*\._\w+(\..*)?"),
    # type variables and aliases of signatures, and a protocol the figures accept
    (r"py:class", r"(pyro_vae\.train\.distributed\.T|Activation)"),
    (r"py:class", r"pyro_vae\.plots\.training\.ComparisonResult"),
]

html_theme = "alabaster"
# Wide enough for the code blocks and the benchmark tables to fit without scrolling.
html_theme_options = {"page_width": "1180px", "sidebar_width": "240px"}
html_title = f"pyro_vae {release}"
exclude_patterns = ["_build"]


def _require_docstring(app, what, name, obj, options, lines) -> None:
    """A public function, class, method, property or module without a docstring fails the build."""
    if what in ("function", "class", "method", "property", "module", "exception") and not any(
        line.strip() for line in lines
    ):
        from sphinx.util import logging

        logging.getLogger(__name__).warning("%s %s has no docstring", what, name)


def setup(app) -> None:
    app.connect("autodoc-process-docstring", _require_docstring)
