"""Every tutorial runs in smoke mode, and a tutorial missing from this file fails the suite."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TUTORIALS = Path(__file__).resolve().parent.parent / "tutorials"

# Each tutorial and the figures its smoke run must write.
COVERED = {
    "01_vae.py": ["samples.png", "reconstructions.png", "learning_curves.png"],
    "02_compare_estimators.py": ["comparison.png", "gradients.png"],
    "03_swap_priors_and_guides.py": ["aggregate_posteriors.png", "likelihood_samples.png"],
    "04_latent_space.py": [
        "manifold_2d.png",
        "latent_map_2d.png",
        "aggregate_posterior_2d.png",
        "interpolations.png",
        "traversals.png",
        "latent_map.png",
        "unit_diagnostics.png",
        "aggregate_posterior.png",
        "latent_size_sweep.png",
    ],
    "05_anomaly_detection.py": [
        "anomaly_scores.png",
        "anomaly_scores_elbo.png",
        "most_and_least_anomalous.png",
        "denoising_examples.png",
        "denoising_errors.png",
    ],
    "06_inference_gaps.py": ["inference_gaps.png", "posterior_comparison.png"],
    "07_elbo_three_ways.py": ["elbo_three_ways.png"],
}


def test_every_tutorial_is_covered():
    found = {p.name for p in TUTORIALS.glob("[0-9]*.py")}
    assert found, f"no tutorials found in {TUTORIALS}"
    assert found == set(COVERED), (
        f"tutorials without a smoke test: {sorted(found - set(COVERED))}; "
        f"listed but missing: {sorted(set(COVERED) - found)}"
    )


@pytest.mark.parametrize("name", sorted(COVERED))
def test_tutorial_runs_in_smoke_mode(name, tmp_path):
    env = os.environ | {"MPLBACKEND": "Agg"}
    result = subprocess.run(
        [sys.executable, str(TUTORIALS / name), "--smoke-test", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for figure in COVERED[name]:
        assert (tmp_path / figure).read_bytes()[:4] == b"\x89PNG", figure
