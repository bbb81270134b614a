"""The papers' orderings at equal epochs, from the reproduction runs as they stand.

    python bench/reproduction_orderings.py RUNS_DIR [--table REPRODUCTION.md]

RUNS_DIR holds the run folders that bench/reproduction_queue.sh names RECIPE_OBJECTIVE.
For each ordering with a reference and at least one other run there, this draws
reproduction/ordering_NAME.png beside the table (the anytime curves, and each run's
difference from the reference at equal epochs) and rewrites the table's section
"orderings": the differences at a few epochs, how far each run has trained, and where
the reference is scored, the other run's final value projected from it
(pyro_vae.recipes.at_equal_epochs). An ordering whose runs are not in RUNS_DIR keeps its
subsection as last written, marked so, rather than losing it. Run it again whenever the runs
have gone on.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pyro_vae as pv
from pyro_vae.lab._reproduction import write_section

ROOT = Path(__file__).resolve().parents[1]

# name, title, the reference's folder, the other runs' folders, what the paper says
ORDERINGS = (
    ("layers", "Two stochastic layers against one (VAE, elbo)", "burda2015-1layer_elbo",
     ("burda2015-2layer_elbo",), "Burda et al., Table 1: 85.33 against 86.76."),
    ("iwae", "IWAE and DReG against the VAE (one layer)", "burda2015-1layer_elbo",
     ("burda2015-1layer_iwae_k-5", "burda2015-1layer_iwae-dreg_k-5",
      "burda2015-1layer_iwae_k-50"),
     "Burda et al., Table 1: IWAE 85.54 (k = 5) and 84.78 (k = 50) against 86.76; "
     "DReG (Tucker et al., 2019) no worse than IWAE at its k."),
    ("code", "The paper's code's Adam against its text's (one layer, elbo)",
     "burda2015-1layer_elbo", ("burda2015-1layer-code_elbo",),
     "one figure, 86.76; the text says Adam β₁ = 0.9, the code runs 0.99 on the summed "
     "gradient."),
    ("dreg", "DReG against IWAE, k = 5 (one layer)", "burda2015-1layer_iwae_k-5",
     ("burda2015-1layer_iwae-dreg_k-5",), "Tucker et al. (2019): DReG no worse than IWAE."),
    ("vampprior", "The VampPrior against the standard prior",
     "vampprior2018-standard_elbo_warmup_steps-50000",
     ("vampprior2018_elbo_warmup_steps-50000",),
     "Tomczak & Welling, Table 2: 85.57 against 88.56."),
)  # fmt: skip
# The epochs a table shows: early ones, then every 100 to 1,000, then every 500.
SHOWN = {20, 40, 60, 80} | set(range(100, 1001, 100)) | set(range(1500, 3281, 500))
LAST = 5  # shared epochs averaged for a projection
SINCE = 0.1  # of the budget: earlier differences still move, and are not projected from


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, help="the folder of the run folders")
    parser.add_argument("--table", type=Path, default=ROOT / "REPRODUCTION.md")
    args = parser.parse_args(argv)
    if not args.runs.is_dir():
        parser.error(f"no folder {args.runs}")
    lines = ["## Orderings at equal epochs", "", _INTRO, ""]
    drawn, written = 0, _written_subsections(args.table)
    for name, title, reference, others, paper in ORDERINGS:
        curves = [_curve(args.runs / folder) for folder in (reference, *others)]
        ref, rest = curves[0], [c for c in curves[1:] if c is not None]
        if ref is None or not rest:
            lines += _kept(written.get(title, []))
            continue
        figure = args.table.parent / "reproduction" / f"ordering_{name}.png"
        pv.plots.save_anytime_comparison(
            [(c.label, c.epochs, c.nll, c.paper) for c in (ref, *rest)], title, figure
        )
        pairs = [pv.recipes.at_equal_epochs(ref, other) for other in rest]
        lines += _section(title, paper, figure.relative_to(args.table.parent), pairs)
        drawn += 1
    if not drawn:
        print(f"no ordering has its runs in {args.runs}", file=sys.stderr)
        return 1
    lines.append(f"Command: `python bench/reproduction_orderings.py {args.runs}`")
    write_section(args.table, "orderings", "\n".join(lines))
    print(f"wrote {drawn} ordering(s) into {args.table}")
    return 0


_INTRO = (
    "Anytime test −log p(x) (K = 1000 on the same 1,000 test images) of runs of one protocol, "
    "at the epochs both measured; a negative difference means the run is better than the "
    "reference. Where the reference has trained its epochs and been scored, the other run is "
    f"projected to the end by adding the mean difference over the last {LAST} shared epochs "
    "to the reference's final score: an extrapolation that assumes the difference holds, "
    "not a result (the range of those differences is given beside it). Differences in the "
    f"first {SINCE:.0%} of the budget still move, and nothing is projected from them."
)


KEPT = (
    "*Kept as last written: the runs it was drawn from were not in the runs folder when this "
    "section was redrawn.*"
)
_COMMAND = "Command: `python bench/reproduction_orderings.py"


def _written_subsections(table: Path) -> dict[str, list[str]]:
    """The subsections of ``table``'s section "orderings" as written, by title: the lines
    from ``### TITLE`` to the next subsection (the closing command line left out)."""
    text = table.read_text() if table.is_file() else ""
    begin, end = text.find("<!-- begin orderings -->"), text.find("<!-- end orderings -->")
    if begin < 0 or end < begin:
        return {}
    subsections: dict[str, list[str]] = {}
    lines: list[str] | None = None
    for line in text[begin:end].splitlines():
        if line.startswith("### "):
            lines = subsections.setdefault(line[4:].strip(), [])
        if lines is not None and not line.startswith(_COMMAND):
            lines.append(line)
    return subsections


def _kept(lines: list[str]) -> list[str]:
    """A subsection that cannot be drawn now, as last written and marked so (once)."""
    if not lines:
        return []
    body = "\n".join(line for line in lines[1:] if line != KEPT).strip()
    return [lines[0], "", KEPT, "", *body.splitlines(), ""]


def _curve(folder: Path) -> pv.recipes.AnytimeCurve | None:
    """The folder's curve, or ``None`` if it does not exist or has measured nothing yet."""
    if not (folder / "log.csv").is_file():
        return None
    curve = pv.recipes.anytime_curve(folder)
    return curve if curve.epochs else None


def _section(
    title: str, paper: str, figure: Path, pairs: list[pv.recipes.EqualEpochs]
) -> list[str]:
    ref = pairs[0].reference
    lines = [f"### {title}", "", f"![{title}]({figure.as_posix()})", ""]
    header = ["epoch", ref.label]
    for pair in pairs:
        header += [pair.other.label, "difference"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    values = [dict((e, (r, o)) for e, r, o in pair.rows) for pair in pairs]
    shared = sorted(set().union(*values))
    reference = dict(zip(ref.epochs, ref.nll, strict=True))
    for epoch in [e for e in shared if e in SHOWN or e == shared[-1]]:
        cells = [str(epoch), f"{reference[epoch]:.2f}"]
        for at in values:
            ref_nll, nll = at.get(epoch, (None, None))
            cells += ["–", "–"] if nll is None else [f"{nll:.2f}", _signed(nll - ref_nll)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"The paper: {paper}", ""]
    for curve in (ref, *(pair.other for pair in pairs)):
        lines.append(f"- {_progress(curve)}")
    for pair in pairs:
        projection = pair.projection(LAST, since=int(SINCE * ref.planned))
        if projection is not None:
            lines.append(
                f"- Projected: {pair.other.label} at epoch {projection.epoch:,} (the "
                f"reference's scored epoch): "
                f"{ref.final:.2f} {_signed(projection.offset)} = {projection.value:.2f} "
                f"(differences {_signed(projection.low)} to {_signed(projection.high)} over epochs "
                f"{projection.over[0]}–{projection.over[-1]}; paper "
                f"{'–' if pair.other.paper is None else f'{pair.other.paper:.2f}'})."
            )
    return [*lines, ""]


def _signed(value: float) -> str:
    """``+0.12`` or ``−0.12``, with the minus sign of the rest of the page."""
    return f"{value:+.2f}".replace("-", "−")


def _progress(curve: pv.recipes.AnytimeCurve) -> str:
    done = f"{curve.trained:,} of {curve.planned:,} epochs trained"
    last = f"last estimate {curve.nll[-1]:.2f} at epoch {curve.epochs[-1]:,}"
    score = f"scored {curve.final:.2f}" if curve.finished else "still training"
    return f"{curve.label}: {done}, {last} after {curve.hours[-1]:.2f} h of training; {score}."


if __name__ == "__main__":
    sys.exit(main())
