"""The option types of the ``pyro-vae`` command: one-line errors, numbers, lists, refusals.

Each type turns the text of one option into a value or raises
``argparse.ArgumentTypeError`` with a message that says what was expected, so
that the parser prints one line naming the option.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import NoReturn

from pyro_vae._checks import FLOAT32_MAX, MAX_LEARNING_RATE
from pyro_vae.train import schedules

__all__ = [
    "Parser",
    "MAX_FLOWS",
    "int_or_none",
    "positive_int",
    "int_up_to",
    "seed",
    "positive_float",
    "learning_rate",
    "int_list",
    "refuse_option",
    "lr_schedule",
    "adam_betas",
    "validated_by",
]


_MAX_INT = 2**63 - 1  # sizes beyond int64 cannot be tensor sizes
MAX_FLOWS = 1000


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line; ``context`` is appended to them."""

    context: str | None = None
    commands: dict[str, argparse.ArgumentParser]

    def error(self, message: str) -> NoReturn:
        if self.context:
            message = f"{message} ({self.context})"
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())}\n")


def int_or_none(text: str) -> int | None:
    """``text`` as an int, or ``None`` if it is not one."""
    try:
        return int(text)
    except (ValueError, TypeError):
        return None  # also for text of more than 4300 digits


def positive_int(text: str) -> int:
    value = int_or_none(text)
    if value is None or not 1 <= value <= _MAX_INT:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def int_up_to(high: int, note: str = "") -> Callable[[str], int]:
    """An argparse type for integers from 1 to ``high``; ``note`` explains the bound."""

    def parse(text: str) -> int:
        value = int_or_none(text)
        if value is None or not 1 <= value <= high:
            raise argparse.ArgumentTypeError(
                f"expected an integer from 1 to {high}{note}, got {text!r}"
            )
        return value

    return parse


def seed(text: str) -> int:
    value = int_or_none(text)
    if value is None or not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"expected an integer from 0 to 2**32 - 1, got {text!r}")
    return value


def _float_up_to(high: float, note: str = "") -> Callable[[str], float]:
    """An argparse type for numbers in (0, ``high``]; ``note`` explains the bound."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (0 < value <= high):
            raise argparse.ArgumentTypeError(
                f"expected a positive number up to {high:.2g}{note}, got {text!r}"
            )
        return value

    return parse


positive_float = _float_up_to(FLOAT32_MAX)
positive_float.__doc__ = "A positive number that float32 can hold."
# Adam's first step is lr / (1 - beta1) = 10 lr, which float32 must hold.
learning_rate = _float_up_to(MAX_LEARNING_RATE, " (Adam's first step, 10 lr, must fit in float32)")


def int_list(example: str) -> Callable[[str], list[int]]:
    """An argparse type for comma-separated positive integers; its error shows ``example``."""

    def parse(text: str) -> list[int]:
        values = [int_or_none(v) for v in text.split(",")]
        if any(v is None or not 1 <= v <= _MAX_INT for v in values):
            raise argparse.ArgumentTypeError(
                f"expected positive integers like {example}, got {text!r}"
            )
        return values  # type: ignore[return-value]

    return parse


class _Refused(argparse.Action):
    """An option a command does not take though others do: giving it is a one-line error
    that says what to do instead (not a value silently ignored)."""

    def __init__(self, option_strings: list[str], dest: str, instead: str, **kwargs) -> None:
        super().__init__(option_strings, dest, nargs="?", help=argparse.SUPPRESS, **kwargs)
        self.instead = instead

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        instead = self.instead.format(value=values if values is not None else "N")
        parser.error(f"{option_string} is not an option of `{parser.prog}`: {instead}")


def refuse_option(p: argparse.ArgumentParser, option: str, instead: str) -> None:
    """Makes ``option`` an error on ``p`` that says ``instead`` (``{value}``: the value given);
    its value in the namespace is ``None``."""
    p.add_argument(option, action=_Refused, instead=instead, default=None)


def validated_by(check: Callable[[str], object]) -> Callable[[str], str]:
    """An argparse type that keeps the text once ``check(text)`` accepts it; the
    ``ValueError`` that ``check`` raises is the option's one-line error."""

    def parse(text: str) -> str:
        try:
            check(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
        return text

    return parse


# A learning-rate schedule spec that pyro_vae.schedules.parse reads.
lr_schedule = validated_by(schedules.parse)


def adam_betas(text: str) -> tuple[float, float]:
    """Adam's ``beta1,beta2``: two numbers in [0, 1)."""
    parts = text.split(",")
    try:
        values = tuple(float(v) for v in parts)
    except ValueError:
        values = ()
    if len(values) != 2 or not all(0 <= v < 1 for v in values):
        raise argparse.ArgumentTypeError(
            f"expected two numbers in [0, 1) like 0.9,0.999, got {text!r}"
        )
    return values  # type: ignore[return-value]
