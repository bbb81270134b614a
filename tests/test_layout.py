"""The package's floors: the import contracts hold and bite, and the public paths stay."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import pyro_vae as pv

ROOT = Path(__file__).resolve().parents[1]


def _lint_imports(tree: Path) -> subprocess.CompletedProcess:
    """lint-imports with the repository's contracts over the package in ``tree``."""
    run = "import sys; from importlinter.cli import lint_imports_command as c; sys.exit(c())"
    command = [sys.executable, "-c", run, "--config", str(ROOT / "setup.cfg"), "--no-cache"]
    return subprocess.run(
        command, cwd=tree, capture_output=True, text=True, env={"PYTHONPATH": str(tree)}
    )


@pytest.fixture
def package_copy(tmp_path: Path) -> Path:
    pytest.importorskip("importlinter", reason="the lint extra installs import-linter")
    shutil.copytree(
        ROOT / "pyro_vae", tmp_path / "pyro_vae", ignore=shutil.ignore_patterns("*.pyc")
    )
    return tmp_path


def test_the_package_keeps_its_import_contracts(package_copy):
    result = _lint_imports(package_copy)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


# module of the copy -> the import added to it -> what lint-imports reports
VIOLATIONS = {
    "upward": (
        "models/nets.py",
        "from pyro_vae.train import fit",
        "pyro_vae.models is not allowed to import pyro_vae.train",
    ),
    "plots-on-lab": (
        "plots/training.py",
        "from pyro_vae.lab import sweep",
        "pyro_vae.plots is not allowed to import pyro_vae.lab",
    ),
    "ground-on-models": (
        "_checks.py",
        "from pyro_vae.models import vae",
        "pyro_vae._checks is not allowed to import pyro_vae.models",
    ),
    "cycle": (
        "infer/_fused.py",
        "from pyro_vae.infer import estimators",
        "No cycles are allowed in pyro_vae.infer",
    ),
}


@pytest.mark.parametrize("importer, line, broken", VIOLATIONS.values(), ids=list(VIOLATIONS))
def test_an_import_against_the_floors_breaks_a_contract(package_copy, importer, line, broken):
    module = package_copy / "pyro_vae" / importer
    module.write_text(module.read_text() + f"\n{line}  # added by the test\n")
    result = _lint_imports(package_copy)
    assert result.returncode == 1
    assert broken in result.stdout


PUBLIC_PATHS = {
    "priors": "models.priors", "guides": "models.guides", "likelihoods": "models.likelihoods",
    "nets": "models.nets", "init": "models.init", "registry": "models.registry",
    "vae": "models.vae", "linear_gaussian": "models.linear_gaussian",
    "objectives": "infer.objectives", "estimators": "infer.estimators",
    "evaluate": "infer.evaluate", "gradients": "infer.gradients", "latent": "analysis.latent",
    "gaps": "analysis.gaps", "applications": "analysis.applications", "compare": "lab.compare",
    "sweep": "lab.sweep", "recipes": "lab.recipes", "checkpoints": "train.checkpoints",
    "distributed": "train.distributed", "schedules": "train.schedules", "runs": "train.runs",
}  # fmt: skip


@pytest.mark.parametrize("old, new", PUBLIC_PATHS.items(), ids=list(PUBLIC_PATHS))
def test_the_public_modules_keep_their_paths(old, new):
    module = importlib.import_module(f"pyro_vae.{new}")
    assert importlib.import_module(f"pyro_vae.{old}") is module
    if old != "compare":  # pv.compare is the function
        assert getattr(pv, old) is module


def test_old_imports_name_the_same_objects():
    from pyro_vae.priors import VampPrior
    from pyro_vae.vae import VAE

    from pyro_vae.train import fit

    assert (VampPrior, VAE, fit) == (pv.priors.VampPrior, pv.VAE, pv.fit)
