"""The check of labelled results: a dict of label -> result, as tables and figures take them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["check_labelled"]


def check_labelled(name: str, value: object, kind: type, *, alone: bool = False) -> dict[str, Any]:
    """A non-empty mapping of label -> ``kind`` (results to tabulate or draw side by side),
    as a dict with ``str`` labels; with ``alone``, one ``kind`` is taken as ``{"": value}``."""
    if alone and isinstance(value, kind):
        return {"": value}
    one = f"{'an' if kind.__name__[0].lower() in 'aeiou' else 'a'} {kind.__name__}"
    if not isinstance(value, Mapping) or not value:
        either = f"{one} or " if alone else ""
        raise TypeError(
            f"{name} must be {either}a non-empty dict of label -> {kind.__name__}, "
            f"got {type(value).__name__}"
        )
    for label, item in value.items():
        if not isinstance(item, kind):
            raise TypeError(f"{name}[{label!r}] must be {one}, got {type(item).__name__}")
    return {str(label): item for label, item in value.items()}
