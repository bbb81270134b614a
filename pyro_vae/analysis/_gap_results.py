"""The results of :mod:`pyro_vae.gaps`: inference gaps and posteriors against NUTS, as tables."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from pyro_vae._labelled import check_labelled
from pyro_vae.analysis._local_guides import LocalGuide

__all__ = ["InferenceGaps", "gaps_table", "PosteriorComparison"]


def _mean_and_stderr(values: torch.Tensor) -> tuple[float, float]:
    """The mean over examples and its standard error s / √N (NaN for one example)."""
    n = values.numel()
    stderr = (values.std() / math.sqrt(n)).item() if n > 1 else float("nan")
    return values.mean().item(), stderr


@dataclass(frozen=True)
class InferenceGaps:
    r""":math:`\log p(x)`, the two ELBOs and the gaps of each example, tensors ``(N,)`` in nats.

    ``approximation_gap + amortisation_gap == inference_gap == log_px - elbo_amortised``.

    Attributes:
        log_px: :math:`\log p(x)`, given or importance-sampled (see ``log_px_source``).
        elbo_amortised: :math:`\mathrm{ELBO}[q_\phi(z \mid x)]`, the encoder's.
        elbo_local: :math:`\mathrm{ELBO}[q^*(z \mid x)]`, the best of the family for each x.
        local_guide: :math:`q^*`, the :class:`LocalGuide`.
        log_px_source: ``"given"``, or the guide whose draws estimated it: ``"local"``
            (:math:`q^*`) or ``"amortised"`` (:math:`q_\phi`).
        log_px_stderr: the Monte Carlo standard error of an estimated :math:`\log p(x)`,
            ``(N,)``.
    """

    log_px: torch.Tensor
    elbo_amortised: torch.Tensor
    elbo_local: torch.Tensor
    local_guide: LocalGuide
    log_px_source: str
    log_px_stderr: torch.Tensor | None = None

    @property
    def approximation_gap(self) -> torch.Tensor:
        r"""What the family cannot fit, per example ``(N,)``:

        .. math:: \log p(x) - \mathrm{ELBO}[q^*].
        """
        return self.log_px - self.elbo_local

    @property
    def amortisation_gap(self) -> torch.Tensor:
        r"""The price of one encoder for every x, per example ``(N,)``:

        .. math:: \mathrm{ELBO}[q^*] - \mathrm{ELBO}[q_\phi].
        """
        return self.elbo_local - self.elbo_amortised

    @property
    def inference_gap(self) -> torch.Tensor:
        r"""The inference gap, ``(N,)``:

        .. math::

            \log p(x) - \mathrm{ELBO}[q_\phi] = \mathrm{KL}(q_\phi(z \mid x) \,\|\, p(z \mid x)).
        """
        return self.log_px - self.elbo_amortised

    def summary(self) -> dict[str, tuple[float, float]]:
        """``name -> (mean, standard error of the mean)`` over the examples."""
        return {name: _mean_and_stderr(getattr(self, name)) for name, _ in _COLUMNS}

    def markdown(self, label: str = "") -> str:
        """A Markdown table of :meth:`summary` (see :func:`gaps_table`)."""
        return gaps_table({label: self})


_COLUMNS = (
    ("log_px", "log p(x)"),
    ("elbo_amortised", "ELBO[q_φ]"),
    ("elbo_local", "ELBO[q*]"),
    ("approximation_gap", "approximation gap"),
    ("amortisation_gap", "amortisation gap"),
    ("inference_gap", "inference gap"),
)


def gaps_table(results: Mapping[str, InferenceGaps]) -> str:
    """A Markdown table with one row per label: mean ± standard error of each quantity, nats."""
    results = check_labelled("results", results, InferenceGaps)
    lines = ["| guide | " + " | ".join(title for _, title in _COLUMNS) + " |"]
    lines.append("|---" * (len(_COLUMNS) + 1) + "|")
    for label, gaps in results.items():
        cells = [f"{mean:.2f} ± {stderr:.2f}" for mean, stderr in gaps.summary().values()]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


@dataclass(frozen=True)
class PosteriorComparison:
    r"""A guide against NUTS samples of :math:`p(z \mid x)`, per example.

    Attributes:
        log_px: :math:`\log p(x)` used by the inclusive KLs, ``(N,)``.
        nuts_mean, nuts_std: the posterior's mean and standard deviation from NUTS, ``(N, D)``.
        amortised_mean, amortised_std: those of :math:`q_\phi(z \mid x)`, ``(N, D)``.
        inclusive_kl_amortised: :math:`\mathrm{KL}(p(z \mid x) \,\|\, q_\phi(z \mid x))`,
            ``(N,)``.
        local_mean, local_std, inclusive_kl_local: the same for :math:`q^*`, when it was given.
    """

    log_px: torch.Tensor
    nuts_mean: torch.Tensor
    nuts_std: torch.Tensor
    amortised_mean: torch.Tensor
    amortised_std: torch.Tensor
    inclusive_kl_amortised: torch.Tensor
    local_mean: torch.Tensor | None = None
    local_std: torch.Tensor | None = None
    inclusive_kl_local: torch.Tensor | None = None

    def _guide(self, guide: str) -> tuple[torch.Tensor, torch.Tensor]:
        if guide not in ("amortised", "local") or getattr(self, f"{guide}_mean") is None:
            have = "'amortised', 'local'" if self.local_mean is not None else "'amortised'"
            raise ValueError(f"guide must be one of {have}, got {guide!r}")
        return getattr(self, f"{guide}_mean"), getattr(self, f"{guide}_std")

    def mean_error(self, guide: str = "amortised") -> torch.Tensor:
        r""":math:`\|\mathbb{E}_q[z] - \mathbb{E}_{p(z \mid x)}[z]\|`, Euclidean, ``(N,)``."""
        return (self._guide(guide)[0] - self.nuts_mean).norm(dim=-1)

    def std_ratio(self, guide: str = "amortised") -> torch.Tensor:
        """The geometric mean over dimensions of σ_q / σ_p(z|x), ``(N,)``; < 1: q is too narrow."""
        return (self._guide(guide)[1] / self.nuts_std).log().mean(-1).exp()

    def markdown(self) -> str:
        """A Markdown table with one row per example."""
        guides = ["amortised"] + (["local"] if self.local_mean is not None else [])
        names = {"amortised": "q_φ", "local": "q*"}
        header = ["example", "log p(x)"]
        for g in guides:
            header += [f"KL(p ‖ {names[g]})", f"‖μ_{names[g]} - μ_p‖", f"σ_{names[g]} / σ_p"]
        lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
        for n in range(len(self.log_px)):
            cells = [str(n), f"{self.log_px[n]:.2f}"]
            for g in guides:
                kl = getattr(self, f"inclusive_kl_{g}")[n]
                cells += [
                    f"{kl:.3f}",
                    f"{self.mean_error(g)[n]:.3f}",
                    f"{self.std_ratio(g)[n]:.2f}",
                ]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)
