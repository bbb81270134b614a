"""Appending a benchmark's table to BENCHMARKS.md, with the command that produced it."""

from __future__ import annotations

import sys
from pathlib import Path

HEADER = "# Benchmarks\n\nTables written by the scripts in bench/.\n"


def append_section(path: str | Path, lines: list[str]) -> None:
    """Appends ``lines`` and the command line of this process to ``path`` (created if missing)."""
    path = Path(path)
    if not path.exists():
        path.write_text(HEADER)
    command = " ".join(["python"] + sys.argv)
    with open(path, "a") as f:
        f.write("\n".join(lines + ["", f"Command: `{command}`", ""]))
