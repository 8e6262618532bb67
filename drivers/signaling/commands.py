"""Line commands' argument checks shared by every kind of line (analog, PRI, R2): a command
table maps each command name to {argument: (default, check)}; check_args() fills in the
defaults and runs the checks, and the text/files/flag checks are the common ones."""
from __future__ import annotations

from typing import Any, Callable

from drivers.signaling.analog.config import SignalingError

# name -> {argument: (default, check)}; a default of ... means required.
CommandTable = dict[str, dict[str, tuple[Any, Callable]]]


def check_args(table: CommandTable, name: str, args: dict, *, line: str = "") -> dict:
    """The command's arguments with defaults filled in, or a SignalingError naming the fault.
    `line` names the kind of line in the unknown-command error ("a PRI channel")."""
    spec = table.get(name)
    if spec is None:
        where = f" for {line}" if line else ""
        raise SignalingError(f"unknown command {name!r}{where} (known: {', '.join(table)})")
    extra = sorted(set(args) - set(spec))
    if extra:
        raise SignalingError(f"{name}: unexpected argument {extra[0]!r}")
    out = {}
    for arg, (default, check) in spec.items():
        if arg not in args:
            if default is ...:
                raise SignalingError(f"{name}: {arg} is missing")
            out[arg] = default
        else:
            out[arg] = check(args[arg])
    return out


def check_text(command: str, name: str, value, *, required=False, limit=64) -> str:
    if not isinstance(value, str):
        raise SignalingError(f"{command}: {name} must be text, not {type(value).__name__}")
    if required and not value:
        raise SignalingError(f"{command}: {name} is missing")
    if len(value) > limit:
        raise SignalingError(f"{command}: {name} is longer than {limit} characters")
    return value


def check_files(command: str, value) -> tuple:
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not value:
        raise SignalingError(f"{command}: files must be a non-empty list of prompt files")
    for f in value:
        if not isinstance(f, str) or not f:
            raise SignalingError(f"{command}: every file must be a non-empty path, not {f!r}")
    return tuple(value)


def check_flag(command: str, name: str, value) -> bool:
    if not isinstance(value, bool):
        raise SignalingError(f"{command}: {name} must be true or false, not {value!r}")
    return value


def check_prompt_id(command: str, value) -> int:
    """The application's prompt id (PlayPrompt.id, echoed in PromptDone): 0..2**32-1."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2 ** 32:
        raise SignalingError(f"{command}: id must be a whole number 0..4294967295, not {value!r}")
    return value
