"""Sphinx configuration of pyro_vae's documentation site (``make docs``).

Every asset is local: MathJax comes from the ``sphinx-mathjax-offline`` package
and is copied into the built site, so the pages render their maths without a
network. Names from Python, Pyro, PyTorch and NumPy link to their online
documentation through inventories committed in ``_inventories/`` (written by
``make_inventories.py``): their sites cannot be reached when the site is built,
so nothing is fetched.

The local extensions in ``_ext/``: ``tutorial_gallery`` writes a page per tutorial
with the figures of its committed full run; ``initials`` keeps "Y. Burda" from
becoming a lettered list; ``public_names`` fails the build when a public name has
no entry in the reference; ``reproduction_curves`` shows the reproduction table's
curves on its page; ``attribute_lists`` lists a class's attributes once;
``required_docstrings`` fails the build for a public object without a docstring of
its own.
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
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",
    "myst_parser",  # the Markdown pages: README's sections, BENCHMARKS.md, REPRODUCTION.md
    "tutorial_gallery",  # a page per tutorial, with the figures of its committed full run
    "initials",  # "Y. Burda" in a docstring is a name, not a lettered list
    "public_names",  # every public name has its entry in the reference
    "reproduction_curves",  # the reproduction page shows each row's curve
    "attribute_lists",  # a class's "Attributes:" listed once, one entry per name
    "required_docstrings",  # a public object without a docstring of its own fails the build
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
autodoc_default_options = {
    "members": True,
    "undoc-members": True,
    "show-inheritance": True,
    "exclude-members": "extra_repr",  # torch's hook for printing a module, not our API
}

# Every cross-reference must resolve (make docs builds with -W -n). Python, Pyro,
# PyTorch and NumPy names resolve through the inventories below; what is left out:
nitpicky = True
nitpick_ignore_regex = [
    # libraries without an inventory here, and names that signatures and docstrings give
    # without their module (``nn.Module``, ``Tensor``) or that Pyro does not document
    (r"py:.*", r"(matplotlib|tqdm|filelock)(\..*)?"),
    (r"py:class", r"(nn\.Module|Module|Tensor|TransformModule|ExpandedDistribution)"),
    # pyro_vae's private modules, which the reference does not document
    (r"py:.*", r"pyro_vae(\.\w+)*\._\w+(\..*)?"),
    # type variables and aliases of signatures, and a protocol the figures accept
    (r"py:class", r"(pyro_vae\.train\.distributed\.T|Activation)"),
    (r"py:class", r"pyro_vae\.plots\.training\.ComparisonResult"),
]

# Python, Pyro, PyTorch and NumPy names link to their online documentation through
# inventories committed in _inventories/ (docs/make_inventories.py writes them): their
# sites cannot be reached when the site is built, so nothing is downloaded.
_INVENTORIES = Path(__file__).parent / "_inventories"
intersphinx_mapping = {
    name: (url, str(_INVENTORIES / f"{name}.inv"))
    for name, url in {
        "python": "https://docs.python.org/3.11/",
        "pyro": "https://docs.pyro.ai/en/stable/",
        "torch": "https://docs.pytorch.org/docs/stable/",
        "numpy": "https://numpy.org/doc/stable/",
    }.items()
}

html_theme = "alabaster"
# Wide enough for the code blocks and the benchmark tables to fit without scrolling.
html_theme_options = {"page_width": "1180px", "sidebar_width": "240px"}
html_title = f"pyro_vae {release}"
exclude_patterns = ["_build", "_generated"]  # _generated: included, not pages
