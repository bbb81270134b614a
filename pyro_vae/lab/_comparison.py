"""What :func:`pyro_vae.compare` measured: :class:`Comparison`, its tables and figures."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyro_vae import plots
from pyro_vae._atomic import write_atomically
from pyro_vae.lab._experiment import format_number, write_csv
from pyro_vae.train._history import History

__all__ = ["Comparison", "BOUND_KS", "TABLE_COLUMNS", "GRADIENT_COLUMNS", "table_columns"]

BOUND_KS = (1, 5, 50, 500)
GRADIENT_COLUMNS = ("objective", "k", "group", "variance", "snr", "mean_norm", "num_draws")


def table_columns(bound_ks: Sequence[int]) -> tuple[str, ...]:
    """The columns of the comparison table with the test bounds E[IWAE_K] of ``bound_ks``."""
    return (
        "objective",
        "epochs",
        "seconds_per_epoch",
        "train_loss",
        "valid_elbo",
        *(f"test_iwae_{k}" for k in bound_ks),
        "test_log_px",
        "test_log_px_mc_stderr",
        "reconstruction",
        "kl",
        "active_units",
    )


TABLE_COLUMNS = table_columns(BOUND_KS)


@dataclass
class Comparison:
    """What :func:`compare` measured.

    Attributes:
        rows: one dict per objective with the keys of ``columns`` (nats per test
            example; ``test_iwae_1`` is the ELBO).
        columns: the table's columns, in order.
        histories: the training history of each objective, by label.
        gradients: one dict per (objective, K, group) with :data:`GRADIENT_COLUMNS`.
        num_samples: K of the log p(x) estimate.
        reference: the objective whose trained parameters the gradients were taken at.
    """

    rows: list[dict[str, Any]]
    columns: tuple[str, ...]
    histories: dict[str, History]
    gradients: list[dict[str, Any]] = field(default_factory=list)
    num_samples: int = 5000
    reference: str = ""

    @property
    def labels(self) -> list[str]:
        """The objectives' labels, one per row, in the order they ran."""
        return [row["objective"] for row in self.rows]

    def bound_ks(self) -> list[int]:
        """The K of the test bounds E[IWAE_K] in the table, in column order."""
        return [
            int(c.removeprefix("test_iwae_")) for c in self.columns if c.startswith("test_iwae_")
        ]

    def markdown(self) -> str:
        """The table as Markdown, one row per objective, numbers in nats per example."""
        header = "| " + " | ".join(self.columns) + " |"
        rule = "|" + "|".join("---" for _ in self.columns) + "|"
        lines = [header, rule]
        for row in self.rows:
            lines.append("| " + " | ".join(format_number(row[c]) for c in self.columns) + " |")
        return "\n".join(lines) + "\n"

    def gradients_markdown(self) -> str:
        """Gradient variance and SNR per objective, K and parameter group, as Markdown."""
        lines = [
            f"Gradients at the parameters trained with `{self.reference}`, "
            f"{self.gradients[0]['num_draws'] if self.gradients else 0} draws each.",
            "",
            "| objective | K | group | variance | SNR |",
            "|---|---|---|---|---|",
        ]
        for g in self.gradients:
            lines.append(
                f"| {g['objective']} | {g['k']} | {g['group']} | {g['variance']:.3g} | "
                f"{g['snr']:.3g} |"
            )
        return "\n".join(lines) + "\n"

    def write(self, out: str | Path) -> list[Path]:
        """Writes comparison.csv, comparison.md, gradients.csv and the figures into ``out``."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        written = [
            write_csv(out / "comparison.csv", self.columns, self.rows),
            write_csv(out / "gradients.csv", GRADIENT_COLUMNS, self.gradients),
        ]
        text = self.markdown() + "\n" + (self.gradients_markdown() if self.gradients else "")
        md = write_atomically(out / "comparison.md", lambda f: f.write(text.encode()))
        written.append(md)
        written.append(plots.save_comparison(self, out / "comparison.png"))
        if self.gradients:
            written.append(plots.save_gradient_stats(self.gradients, out / "gradients.png"))
        return written
