r"""Recipe runs side by side at equal epochs: the papers' orderings, and where a run would end.

A recipe run logs an anytime estimate :math:`a(e)` of test :math:`-\log p(x)` every few
epochs, always on the same class-balanced test images with the same K
(:class:`AnytimeCurve`). Two runs of one protocol can then be compared at the epochs both
measured (:func:`at_equal_epochs`) while they train: the difference
:math:`a_\mathrm{other}(e) - a_\mathrm{ref}(e)` at equal epochs is what the papers'
orderings are about (two layers against one, IWAE against the VAE, the VampPrior against
the standard prior).

When the reference has trained its epochs and been scored, a run still on its way is
projected to the end of training by assuming that its difference holds
(:meth:`EqualEpochs.projection`, :class:`Projection`): an extrapolation, not a result.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["AnytimeCurve", "EqualEpochs", "Projection", "at_equal_epochs"]


@dataclass(frozen=True)
class AnytimeCurve:
    """The anytime test −log p(x) of one recipe run (:func:`pyro_vae.recipes.anytime_curve`).

    Attributes:
        recipe: the recipe's name.
        objective: the objective's spec.
        epochs: the epochs with an anytime estimate, increasing.
        nll: test −log p(x) in nats at those epochs (K = ``protocol["test_samples"]``
            on ``protocol["test_examples"]`` test images).
        hours: training time in hours up to each of those epochs.
        trained: the epochs trained so far.
        planned: the recipe's budget in epochs.
        final: the final score (``metrics.json``), or ``None`` before the run is scored.
        paper: the published value it is compared with, or ``None``.
        protocol: what the anytime estimates measured: ``dataset``, ``smoke_test``,
            ``test_examples`` and ``test_samples``. Only curves of one protocol compare.
        path: the run folder.
        scored_epoch: the epoch whose parameters ``final`` scored (the best epoch where the
            run validated, else the last), or ``None`` before the run is scored.
    """

    recipe: str
    objective: str
    epochs: tuple[int, ...]
    nll: tuple[float, ...]
    hours: tuple[float, ...]
    trained: int
    planned: int
    final: float | None
    paper: float | None
    protocol: dict[str, Any]
    path: Path
    scored_epoch: int | None = None

    @property
    def label(self) -> str:
        """``"recipe, objective"``."""
        return f"{self.recipe}, {self.objective}"

    @property
    def finished(self) -> bool:
        """Whether the run has been scored (it trained its epochs, or stopped early)."""
        return self.final is not None


@dataclass(frozen=True)
class Projection:
    r"""Where a run on its way would end if its difference from a finished reference held.

    With :math:`\mathrm{NLL}_\mathrm{ref}` the reference's final score (the paper's
    protocol), :math:`a` the runs' anytime estimates and :math:`e_1, \dots, e_n` the last n
    epochs both runs measured,

    .. math::

        \widehat{\mathrm{NLL}}_\mathrm{other} = \mathrm{NLL}_\mathrm{ref}
        + \frac{1}{n} \sum_{j=1}^{n} \bigl(a_\mathrm{other}(e_j) - a_\mathrm{ref}(e_j)\bigr).

    That is an extrapolation: it assumes the difference stays where it was. ``low`` and
    ``high`` show how steady the differences averaged were.

    Attributes:
        value: the projected final −log p(x): the reference's final score plus ``offset``.
        epoch: the epoch it is projected to: the reference's scored epoch (its best
            where it validated, else its last).
        offset: the mean difference other − reference over the epochs in ``over``.
        low, high: the smallest and largest of those differences.
        over: the shared epochs averaged.
    """

    value: float
    epoch: int
    offset: float
    low: float
    high: float
    over: tuple[int, ...]


@dataclass(frozen=True)
class EqualEpochs:
    """Two runs at the epochs both measured.

    Attributes:
        reference: the run compared against.
        other: the run compared.
        rows: ``(epoch, reference's −log p(x), other's −log p(x))`` at each shared epoch.
    """

    reference: AnytimeCurve
    other: AnytimeCurve
    rows: tuple[tuple[int, float, float], ...]

    @property
    def differences(self) -> tuple[float, ...]:
        """The difference other − reference in nats at each shared epoch; it is negative where
        the other run is better."""
        return tuple(other - ref for _, ref, other in self.rows)

    def projection(self, last: int = 5, since: int = 0) -> Projection | None:
        """The other run's final −log p(x), extrapolated from the last ``last`` differences.

        Early in training the differences still move (the IWAE paper's k = 5 against its
        VAE went from −1.7 nats at epoch 20 to about −1.0 from epoch 240 on, here), so
        ``since`` leaves out the epochs before it.

        ``None`` unless the reference is scored, the other run is not, and they share at
        least ``last`` epochs from ``since`` on.

        Raises:
            ValueError: ``last`` is not a positive integer, or ``since`` not an integer ≥ 0.
        """
        if isinstance(last, bool) or not isinstance(last, int) or last < 1:
            raise ValueError(f"last must be a positive integer, got {last!r}")
        if isinstance(since, bool) or not isinstance(since, int) or since < 0:
            raise ValueError(f"since must be an epoch (an integer ≥ 0), got {since!r}")
        rows = [(epoch, other - ref) for epoch, ref, other in self.rows if epoch >= since]
        final = self.reference.final
        if final is None or self.other.finished or len(rows) < last:
            return None
        used = [difference for _, difference in rows[-last:]]
        offset = sum(used) / len(used)
        over = tuple(epoch for epoch, _ in rows[-last:])
        at = self.reference.scored_epoch
        at = self.reference.trained if at is None else at
        return Projection(final + offset, at, offset, min(used), max(used), over)


def at_equal_epochs(reference: AnytimeCurve, other: AnytimeCurve) -> EqualEpochs:
    """The two runs' anytime estimates at the epochs both measured.

    Raises:
        ValueError: the curves were measured under different protocols (data, test
            images or K), so their differences would mean nothing.
    """
    if reference.protocol != other.protocol:
        raise ValueError(
            f"{other.label} ({other.path}) and {reference.label} ({reference.path}) were "
            f"measured differently ({_protocol_text(other.protocol)} against "
            f"{_protocol_text(reference.protocol)}); only curves of one protocol compare"
        )
    theirs = dict(zip(other.epochs, other.nll, strict=True))
    rows = tuple(
        (epoch, ref, theirs[epoch])
        for epoch, ref in zip(reference.epochs, reference.nll, strict=True)
        if epoch in theirs
    )
    return EqualEpochs(reference, other, rows)


def _protocol_text(protocol: dict[str, Any]) -> str:
    smoke = ", smoke test" if protocol.get("smoke_test") else ""
    return (
        f"{protocol.get('dataset')}{smoke}, K = {protocol.get('test_samples')} on "
        f"{protocol.get('test_examples')} test images"
    )
