"""``--config FILE.json`` of ``pyro-vae train`` and ``pyro-vae compare``.

The file is a JSON object whose keys are the command's long option names
(``latent_dim`` or ``latent-dim``) and whose values are written as on the command
line: numbers, strings, lists (``"hidden": [256, 128]``) and ``true``/``false`` for
flags. Each value goes through the same argparse type as on the command line, and
options given on the command line win over the file.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["apply_config", "given_options"]

_JSON_TYPES = {list: "array", str: "string", int: "number", float: "number", bool: "boolean"}
_JSON_TYPES[type(None)] = "null"


def apply_config(
    parser: argparse.ArgumentParser, args: argparse.Namespace, argv: Sequence[str]
) -> argparse.Namespace:
    """``args`` with the options of ``args.config`` under those given in ``argv``.

    The file's values become command-line options, ``--key=value``, checked by the
    same types as the command line (errors name the file), then the command line
    is parsed after them, so that its options win. Any problem with the file is one
    line on stderr and exit code 2.
    """
    command = parser.commands[args.command]  # type: ignore[attr-defined]
    path = args.config
    options = _config_options(command, _read_config(command, path), path)
    command.context = f"in --config {path}"
    try:
        command.parse_args(options)  # the file alone, so that its errors name it
    finally:
        command.context = None
    rest = list(argv)[list(argv).index(args.command) + 1 :]
    combined = parser.parse_args([args.command, *options, *rest])
    combined.given = given_options(command, [*options, *rest])
    return combined


def given_options(command: argparse.ArgumentParser, tokens: Sequence[str]) -> set[str]:
    """The ``dest`` of every option that ``tokens`` (a command's arguments) give.

    The tokens are parsed again with every default suppressed, so an option counts
    as given however it was spelt (``--latent-dim 8``, ``--latent-dim=8``, an
    abbreviation, or a ``--config`` key), and never because of its default.
    """
    actions = [a for a in command._actions if a.dest != "help"]  # noqa: SLF001
    saved = [a.default for a in actions]
    for action in actions:
        action.default = argparse.SUPPRESS
    try:
        return set(vars(command.parse_args(list(tokens))))
    finally:
        for action, default in zip(actions, saved, strict=True):
            action.default = default


def _read_config(command: argparse.ArgumentParser, path: str) -> dict[str, Any]:
    file = Path(path)
    if not file.exists():
        command.error(f"--config {path}: no such file")
    if not file.is_file():
        command.error(f"--config {path}: not a file; expected a JSON file")
    try:
        values = json.loads(file.read_text(encoding="utf-8"))
    except OSError as e:
        command.error(f"--config {path}: cannot be read ({e.strerror or e})")
    except UnicodeDecodeError:
        command.error(f"--config {path}: not a UTF-8 text file; expected JSON")
    except json.JSONDecodeError as e:
        command.error(f"--config {path}: invalid JSON at line {e.lineno}: {e.msg}")
    except (ValueError, RecursionError) as e:
        command.error(f"--config {path}: invalid JSON ({type(e).__name__}: {e})")
    if not isinstance(values, dict):
        command.error(
            f"--config {path}: expected a JSON object of option names and values, "
            f"got a JSON {_JSON_TYPES.get(type(values), type(values).__name__)}"
        )
    return values


def _config_options(
    command: argparse.ArgumentParser, values: dict[str, Any], path: str
) -> list[str]:
    """The file's ``{key: value}`` as ``--key=value`` options; ``null`` keeps the default."""
    actions = {
        option[2:]: action
        for action in command._actions  # noqa: SLF001
        for option in action.option_strings
        if option.startswith("--") and option not in ("--help", "--config")
    }
    options = []
    for key, value in values.items():
        action = actions.get(key.replace("_", "-"))
        if action is None:
            listed = [name for name, a in actions.items() if a.help != argparse.SUPPRESS]
            command.error(
                f"--config {path}: unknown option {key!r}; the options of "
                f"`pyro-vae {command.prog.split()[-1]}` are: {', '.join(sorted(listed))}"
            )
        option = action.option_strings[-1]
        if value is None:
            continue
        if action.nargs == 0:  # a flag such as --no-progress
            if not isinstance(value, bool):
                command.error(f"--config {path}: {key} must be true or false, got {value!r}")
            options += [option] if value else []
            continue
        items = value if isinstance(value, list) else [value]
        if not items or not all(
            isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in items
        ):
            command.error(
                f"--config {path}: {key} must be a number, a string or a list of them, "
                f"got {json.dumps(value)}"
            )
        options.append(f"{option}={','.join(str(v) for v in items)}")
    return options
