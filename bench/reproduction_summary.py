"""README.md's table of the reproduced papers, taken from REPRODUCTION.md's rows.

    python bench/reproduction_summary.py [--table REPRODUCTION.md] [--readme README.md]

It rewrites README.md's section "reproduction" (between ``<!-- begin reproduction -->``
and ``<!-- end reproduction -->``) with one line per row of REPRODUCTION.md, smoke
tests left out: the paper's value, ours (or the latest anytime estimate of a run in
progress), the epochs and the device. bench/reproduction_queue.sh runs it after each run.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pyro_vae.lab._reproduction import read_rows, write_section

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = ("recipe", "objective", "paper", "ours", "± over images", "epochs", "device")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", type=Path, default=ROOT / "REPRODUCTION.md")
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    args = parser.parse_args(argv)
    for path in (args.table, args.readme):
        if not path.is_file():
            parser.error(f"no file {path}")
    rows = [r for r in read_rows(args.table.read_text()) if "(smoke test)" not in r["objective"]]
    if not rows:
        print(f"{args.table} has no row to summarise", file=sys.stderr)
        return 1
    link = Path(os.path.relpath(args.table.resolve(), args.readme.resolve().parent)).as_posix()
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cell(row, c) for c in COLUMNS) + " |" for row in rows]
    lines += [
        "",
        f"Test −log p(x) in nats, lower is better; each row's curve and the orderings at "
        f"equal epochs are in [{link}]({link}).",
    ]
    write_section(args.readme, "reproduction", "\n".join(lines))
    print(f"wrote {len(rows)} row(s) into {args.readme}")
    return 0


def _cell(row: dict[str, str], column: str) -> str:
    value = row[column]
    return f"`{value}`" if column in ("recipe", "objective") else value


if __name__ == "__main__":
    sys.exit(main())
