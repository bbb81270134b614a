"""How often a trained recipe run's guide leaves a range of log-variance.

    python bench/guide_log_variance.py RUN_FOLDER [--data-dir DIR] [--low -6] [--high 2]

The VampPrior paper's code passes the guide's log σ² through hardtanh(−6, 2), which also
stops its gradient outside; pyro_vae's guide has σ = softplus(ρ) + 1e-4 and no bound. If
the trained guide stays inside the range, the clip cannot be what separates a run from
the paper's. This loads the run's best parameters (``pv.load_run``), encodes the test images
the recipe scores (binarised once, as the recipe does) and prints, as Markdown, the
quantiles of log σ² over images and units, the fraction outside [low, high], and the same
for the active units (Burda et al.'s activity Var_x E_q[z_u | x] > 0.01), unit by unit
where any falls outside.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

import pyro_vae as pv
from pyro_vae import data
from pyro_vae.lab import recipes

QUANTILES = (0.0, 0.001, 0.01, 0.1, 0.5, 0.9, 1.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a run folder of `pyro-vae reproduce`")
    parser.add_argument("--data-dir", type=Path, default=None, help="where mnist.npz is")
    parser.add_argument("--low", type=float, default=-6.0)
    parser.add_argument("--high", type=float, default=2.0)
    args = parser.parse_args(argv)
    if not args.low < args.high:
        parser.error(f"--low must be below --high, got {args.low} and {args.high}")
    try:
        run = pv.load_run(args.run)
        if "recipe" not in run.config:
            raise ValueError(f"{args.run} is not a recipe run (its config names no recipe)")
        recipe = recipes.get(run.config["recipe"])
    except (FileNotFoundError, ValueError) as e:
        parser.error(str(e))
    dataset = recipe.plan(bool(run.config.get("smoke_test")))["dataset"]
    x = data.load(dataset, "test", binarize="static", root=args.data_dir)
    with torch.no_grad():
        q = run.vae.encoder(x)
        normal = getattr(q, "base_dist", q)
        if not isinstance(normal, torch.distributions.Normal):
            parser.error(f"the guide's distribution is a {type(normal).__name__}, not a Normal")
        log_var = 2 * normal.scale.log()  # (images, units)
    outside = (log_var < args.low) | (log_var > args.high)
    active = normal.loc.var(0) > 0.01  # Burda et al.'s activity, as pv.evaluate.active_units
    quantiles = torch.quantile(log_var.flatten()[:: max(1, log_var.numel() // 10**6)],
                               torch.tensor(QUANTILES))  # fmt: skip
    lines = [
        f"{args.run}: epoch {run.epoch}, {log_var.shape[0]:,} test images × "
        f"{log_var.shape[1]} units; {int(active.sum())} active",
        "",
        "| " + " | ".join(f"q{q:g}" for q in QUANTILES) + " |",
        "|" + "---|" * len(QUANTILES),
        "| " + " | ".join(f"{v:.2f}" for v in quantiles.tolist()) + " |",
        "",
        f"- outside [{args.low:g}, {args.high:g}]: {outside.float().mean().item():.2%} of all "
        f"(below: {(log_var < args.low).float().mean().item():.2%}); of the active units' "
        f"{outside[:, active].float().mean().item():.2%}",
    ]
    per_unit = outside.float().mean(0)
    for unit in per_unit.nonzero().flatten().tolist():
        state = "active" if active[unit] else "inactive"
        low, high = log_var[:, unit].min().item(), log_var[:, unit].max().item()
        lines.append(
            f"- unit {unit} ({state}): outside on {per_unit[unit].item():.1%} of the images, "
            f"log σ² from {low:.2f} to {high:.2f}"
        )
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
