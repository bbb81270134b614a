# Quick start:  make demo   (install, train on the embedded digits, write figures)
#               make test   (install the test extras, run the test suite)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install -q -c constraints.txt
OUT ?= runs/demo

.PHONY: demo test lint format docs docs-check gallery bench clean

$(VENV)/.base: setup.cfg constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) torch==2.13.0
	$(PIP) -e .
	touch $@

$(VENV)/.test: $(VENV)/.base
	$(PIP) -e '.[test,lint]'
	touch $@

$(VENV)/.docs: $(VENV)/.base
	$(PIP) -e '.[docs]'
	touch $@

demo: $(VENV)/.base
	$(VENV)/bin/pyro-vae train --out $(OUT) --overwrite

# pytest exits 5 when it collects no tests; for this project an empty suite is
# a broken suite, so it fails with a message instead of passing silently.
test: $(VENV)/.test
	@$(PY) -m pytest -q $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; fi; exit $$rc

# ruff, then the import contracts of setup.cfg: each floor of the package imports only
# the floors below it, and no folder's modules import each other in a circle.
lint: $(VENV)/.test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache

format: $(VENV)/.test
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# The documentation site, into docs/_build/html: every warning (a broken cross-reference,
# a docstring that does not parse) fails the build. No network: MathJax is local. -E reads
# every source afresh, so a warning is never hidden by an earlier build's saved state.
docs: $(VENV)/.docs
	$(VENV)/bin/sphinx-build -q -E -W --keep-going -n -b html docs docs/_build/html

# The built site as a reader sees it, in headless Chromium (Debian's chromium): the maths
# typeset, the images there; screenshots into docs/_build/screenshots.
docs-check: docs
	$(PY) docs/check_site.py docs/_build/html --screenshots docs/_build/screenshots

# The gallery's figures: every tutorial run in full (its runs into RUNS, default
# runs/gallery), its figures copied into docs/gallery with the run's command, time, device
# and commit. Commit docs/gallery afterwards; the site shows these, it never trains.
gallery: $(VENV)/.base
	OMP_NUM_THREADS=1 $(PY) docs/collect_gallery.py --runs $(or $(RUNS),runs/gallery)

# Benchmarks append their tables to BENCHMARKS.md. The MNIST one needs full MNIST:
# ../shared/get-mnist DIR, then make bench MNIST_DIR=DIR.
bench: $(VENV)/.base
	$(PY) bench/objective_speed.py
	@if [ -n "$(MNIST_DIR)" ]; then \
		$(PY) bench/iwae_mnist.py --data-dir "$(MNIST_DIR)"; \
	else echo "skipping bench/iwae_mnist.py: set MNIST_DIR to a folder holding mnist.npz"; fi

clean:
	rm -rf $(VENV) runs .pytest_cache docs/_build docs/_generated docs/tutorials
