"""The documentation site's own tools: the Chromium page check, the local Sphinx
extensions and the inventory writer.

``make docs-check`` runs the page check in a real browser; these tests give its
judgement DOMs with known faults, so that a check that could never fail would show
here. The extensions' pieces are tested on docstrings and tables made on the spot
(Sphinx itself is not needed), and the committed gallery and inventories are checked
to hold what the site uses.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
import zlib
from pathlib import Path
from types import ModuleType

import pytest
import torch.nn as nn

import pyro_vae as pv

REPO = Path(__file__).resolve().parent.parent


def _load(relative: str) -> ModuleType:
    """A module of docs/ by path, registered under its name (the extensions import each other)."""
    path = REPO / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


check_site = _load("docs/check_site.py")
initials = _load("docs/_ext/initials.py")
gallery = _load("docs/_ext/tutorial_gallery.py")
public_names = _load("docs/_ext/public_names.py")
curves = _load("docs/_ext/reproduction_curves.py")
attributes = _load("docs/_ext/attribute_lists.py")

TYPESET = '<mjx-container class="MathJax"><svg></svg></mjx-container>'


def _page(folder: Path, source: str) -> Path:
    path = folder / "page.html"
    path.write_text(source)
    return path


def test_a_page_whose_maths_was_typeset_passes(tmp_path):
    path = _page(tmp_path, '<span class="math">\\(\\log p(x)\\)</span>')
    dom = f"<p>The evidence {TYPESET} is bounded.</p>"
    assert check_site.problems_of("page.html", path, dom) == []


def test_maths_left_as_tex_is_reported(tmp_path):
    source = '<span class="math">\\(\\mathbb{E}_q[\\log w]\\)</span>'
    path = _page(tmp_path, source)
    problems = check_site.problems_of("page.html", path, f"<p>{source}</p>")
    assert len(problems) == 2
    assert "was not typeset" in problems[0]
    assert re.search(r"TeX source left on the page: .*\\mathbb", problems[1])


def test_tex_in_a_code_block_is_not_maths_left_over(tmp_path):
    path = _page(tmp_path, '<span class="math"></span>')
    dom = f"{TYPESET}<pre>r'''\\mathbb{{E}}_q[\\log w]'''</pre>"
    assert check_site.problems_of("page.html", path, dom) == []


def test_scripts_are_not_page_text(tmp_path):
    path = _page(tmp_path, "<p>no maths</p>")
    dom = "<script>MathJax = {tex: {inlineMath: [['\\\\(', '\\\\)']]}}</script><p>text</p>"
    assert check_site.problems_of("page.html", path, dom) == []


def test_images_must_be_files_of_the_site(tmp_path):
    (tmp_path / "figure.png").write_bytes(b"\x89PNG")
    path = _page(tmp_path, "<p>figures</p>")
    dom = '<img src="figure.png"><img src="gone.png?v=1"><img src="https://cdn.example.org/x.png">'
    problems = check_site.problems_of("page.html", path, dom)
    assert problems == [
        "page.html: image gone.png?v=1 is missing",
        "page.html: image https://cdn.example.org/x.png is not part of the site",
    ]


def _tutorial(folder: Path) -> Path:
    script = folder / "tutorials" / "09_demo.py"
    script.parent.mkdir(parents=True)
    script.write_text('"""Tutorial 9: a demo.\n\nIt trains and draws.\n"""\n')
    return script


def test_a_tutorial_page_shows_its_prose_figures_with_their_run_and_source(tmp_path):
    script = _tutorial(tmp_path)
    figures = tmp_path / "docs" / "gallery" / "09_demo"
    figures.mkdir(parents=True)
    (figures / "curves.png").write_bytes(b"\x89PNG")
    run = {"command": "python tutorials/09_demo.py", "seconds": 125, "date": "2026-12-06",
           "commit": "abc1234", "device": "CPU (x86_64, 1 thread)"}  # fmt: skip
    (figures / "run.json").write_text(json.dumps(run))
    page = gallery._page(script, tmp_path / "docs")
    lines = page.splitlines()
    assert lines[:2] == ["Tutorial 9: a demo.", "=" * len("Tutorial 9: a demo.")]
    assert "It trains and draws." in page
    assert ".. figure:: /gallery/09_demo/curves.png" in page
    assert (
        "From a full run: ``python tutorials/09_demo.py``, 2026-12-06, 2.1 min on "
        "CPU (x86_64, 1 thread), commit abc1234." in page
    )
    assert ".. literalinclude:: /../tutorials/09_demo.py" in page


def test_a_tutorial_without_collected_figures_says_so(tmp_path):
    page = gallery._page(_tutorial(tmp_path), tmp_path / "docs")
    assert "have not been collected yet" in page
    assert ".. figure::" not in page


def test_the_gallery_index_links_every_tutorial_with_a_thumbnail(tmp_path):
    script = _tutorial(tmp_path)
    figures = tmp_path / "docs" / "gallery" / "09_demo"
    figures.mkdir(parents=True)
    (figures / "a.png").write_bytes(b"\x89PNG")
    index = gallery._index([script], tmp_path / "docs")
    assert "   09_demo" in index.splitlines()
    assert ":doc:`Tutorial 9: a demo. <09_demo>`" in index
    assert ".. image:: /gallery/09_demo/a.png" in index


@pytest.mark.parametrize("script", sorted((REPO / "tutorials").glob("[0-9]*.py")), ids=str)
def test_every_tutorial_has_committed_figures_and_their_run(script):
    figures, run = gallery._figures(script.stem, REPO / "docs")
    assert figures, f"docs/gallery/{script.stem} has no figures: run make gallery"
    assert run is not None and run["command"] == f"python tutorials/{script.name}"
    assert {"seconds", "date", "commit", "device"} <= set(run)


def test_an_initial_opening_a_reference_or_a_field_is_escaped():
    lines = [
        "References:",
        "",
        "1. Y. Burda, R. Grosse. Importance weighted autoencoders. ICLR 2016.",
        "- D. P. Kingma et al. Improved variational inference. NeurIPS 2016.",
        ":param latent_dim:",
        "                   D.",
        ":ivar num_particles: K.",
    ]
    assert initials.escape_initials(lines) == [
        "References:",
        "",
        "1. Y\\. Burda, R. Grosse. Importance weighted autoencoders. ICLR 2016.",
        "- D\\. P. Kingma et al. Improved variational inference. NeurIPS 2016.",
        ":param latent_dim:",
        "                   D\\.",
        ":ivar num_particles: K\\.",
    ]


def test_initials_inside_a_paragraph_literal_blocks_and_doctests_are_kept():
    lines = [
        "A paragraph that wraps onto",
        "Y. Bengio's line stays as it is.",
        "",
        "Example::",
        "",
        "    X. is code here",
        "",
        ">>> A. = 1",
        "",
        "After the literal block, A. Author opens a paragraph.",
    ]
    escaped = initials.escape_initials(lines)
    assert escaped[:8] == lines[:8]
    assert escaped[9] == lines[9]
    assert initials.escape_initials(["", "A. Author wrote it."]) == ["", "A\\. Author wrote it."]


def test_the_public_names_are_the_package_s_and_its_public_modules():
    names = set(public_names.public_names())
    assert {"pyro_vae.fit", "pyro_vae.FitOptions", "pyro_vae.evaluate"} <= names
    assert {"pyro_vae.evaluate.elbo_forms", "pyro_vae.priors.VampPrior"} <= names
    assert {"pyro_vae.registry.PRIORS", "pyro_vae.distributed.PeerError"} <= names
    assert not any(name.split(".")[-1].startswith("_") for name in names)


inventories = _load("docs/make_inventories.py")


def _read_inventory(path: Path) -> dict[str, tuple[str, str]]:
    """name -> (domain:role, uri) of a Sphinx inventory (version 2), read without Sphinx."""
    data = path.read_bytes()
    header_end = 0
    for _ in range(4):
        header_end = data.index(b"\n", header_end) + 1
    assert data[:header_end].startswith(b"# Sphinx inventory version 2\n")
    entries = {}
    for line in zlib.decompress(data[header_end:]).decode().splitlines():
        name, role, _priority, uri, _display = line.split(" ", 4)
        entries[name] = (role, uri)
    return entries


def test_an_inventory_is_written_in_sphinx_s_format(tmp_path):
    path = tmp_path / "x.inv"
    table = {"torch.Tensor": ("class", "tensors.html#torch.Tensor")}
    inventories.write_inventory(path, "PyTorch", "2.13", table)
    assert _read_inventory(path) == {"torch.Tensor": ("py:class", "tensors.html#torch.Tensor")}


def test_pyro_s_inventory_follows_its_docs_pages_and_public_names(tmp_path):
    (tmp_path / "inference_algos.rst").write_text(
        "ELBO\n====\n\n.. automodule:: pyro.infer.elbo\n    :members:\n\n"
        ".. automodule:: pyro.infer.svi\n    :members:\n"
    )
    (tmp_path / "mcmc.rst").write_text(".. include:: mcmc.txt\n")
    (tmp_path / "mcmc.txt").write_text(".. autoclass:: pyro.infer.mcmc.NUTS\n    :members:\n")
    entries = inventories.pyro_entries(tmp_path)
    assert entries["pyro.infer.elbo"] == ("module", "inference_algos.html#module-pyro.infer.elbo")
    assert entries["pyro.infer.elbo.ELBO"] == ("class", "inference_algos.html#pyro.infer.elbo.ELBO")
    # the names user code writes point where the documented ones are
    assert entries["pyro.infer.ELBO"] == entries["pyro.infer.elbo.ELBO"]
    assert entries["pyro.infer.NUTS"] == ("class", "mcmc.html#pyro.infer.mcmc.NUTS")
    assert entries["pyro.infer.SVI.step"] == (
        "method",
        "inference_algos.html#pyro.infer.svi.SVI.step",
    )


def test_the_committed_inventories_hold_the_names_the_site_links():
    folder = REPO / "docs" / "_inventories"
    assert _read_inventory(folder / "python.inv")["pathlib.Path"][0] == "py:class"
    assert "pyro.infer.SVI" in _read_inventory(folder / "pyro.inv")
    assert "torch.Tensor" in _read_inventory(folder / "torch.inv")


TABLE = "\n".join(
    [
        "| recipe | objective | paper | ours | ± over images | ± Monte Carlo | epochs "
        "| training time | device | figure |",
        "|---|---|---|---|---|---|---|---|---|---|",
        "| burda2015-1layer | elbo | 86.76 | 87.70 (in progress) | – | – | 1854 of 3280 "
        "| 5.97 h | CPU (x86_64, 1 thread) | [curve](reproduction/a.png) |",
        "| vampprior2018 | elbo | 85.57 | 85.61 | 0.3 | 0.01 "
        "| 1200 of 2000, stopped early (best: 1150) | 9.1 h | CPU "
        "| [curve](reproduction/b.png) |",
    ]
)


def test_the_reproduction_page_shows_each_row_s_curve_in_order():
    page = curves.curves_page(TABLE)
    figures = [line for line in page.splitlines() if line.startswith("```{figure}")]
    assert figures == ["```{figure} /../reproduction/a.png", "```{figure} /../reproduction/b.png"]
    assert (
        "burda2015-1layer, `elbo`: 87.70 (in progress) against the paper's 86.76, "
        "1854 of 3280 epochs, 5.97 h of training on CPU (x86_64, 1 thread)." in page
    )
    assert "1200 of 2000 epochs, stopped early (best: 1150), 9.1 h of training on CPU." in page


def test_a_reproduction_table_without_curves_says_so():
    assert "No row has a curve yet." in curves.curves_page("| recipe |\n|---|\n")


def test_an_attribute_entry_naming_several_becomes_one_entry_per_name():
    lines = [
        "A failed step.",
        "",
        "Attributes:",
        "    epoch, step: where it happened",
        "        (1-based).",
        "    problem: what was not finite.",
        "",
        "Args:",
        "    a, b: two numbers, as napoleon reads them already.",
    ]
    assert attributes.split_attribute_names(lines) == [
        "A failed step.",
        "",
        "Attributes:",
        "    epoch: where it happened",
        "        (1-based).",
        "    step: where it happened",
        "        (1-based).",
        "    problem: what was not finite.",
        "",
        "Args:",
        "    a, b: two numbers, as napoleon reads them already.",
    ]


def test_the_attributes_a_class_lists_are_known_by_name():
    lines = [":ivar epoch: where", ":vartype epoch: int", ":ivar step: where", "text"]
    assert attributes.listed_attributes(lines) == {"epoch", "step"}


required = _load("docs/_ext/required_docstrings.py")


class _Net(nn.Module):
    def forward(self, x):  # no docstring: autodoc would show nn.Module's
        return x


class _Prior(pv.priors.StandardNormal):
    def log_prob(self, z):  # no docstring: pyro_vae's base class documents it
        return super().log_prob(z)


def test_a_method_that_would_show_torch_s_docstring_is_found():
    here = __name__
    assert required.outside_docstring("method", f"{here}._Net.forward", _Net.forward) == "Module"
    assert required.outside_docstring("method", f"{here}._Prior.log_prob", _Prior.log_prob) is None
    forward = pv.nets.MLP.forward  # documented
    assert required.outside_docstring("method", "pyro_vae.nets.MLP.forward", forward) is None
