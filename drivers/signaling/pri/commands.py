"""The commands a PRI B-channel takes, with their arguments checked before anything changes.

The same names as the analog lines' (drivers.signaling.analog.timers.COMMANDS) where they
mean the same; dial takes the ISDN number details; reset_channel and set_service are the
B-channel maintenance commands.
"""
from __future__ import annotations

from typing import Any, Callable

from drivers.native import libpri
from drivers.signaling.analog.config import SignalingError
from drivers.signaling.commands import check_args, check_files as _files, check_flag as _flag
from drivers.signaling.commands import check_prompt_id as _prompt_id
from drivers.signaling.commands import check_text as _text

from . import causes

DIAL_DIGITS = frozenset("0123456789*#")
DTMF_DIGITS = frozenset("0123456789*#ABCD")


def _digits(command: str, name: str, value, allowed=DIAL_DIGITS, *, required=True,
            limit=32) -> str:
    value = _text(command, name, value, required=required, limit=limit)
    bad = sorted(set(value) - allowed)
    if bad:
        raise SignalingError(f"{command}: {name} {value!r} has characters that are not "
                             f"digits: {''.join(bad)!r}")
    return value


def _word(command: str, name: str, table: dict, value) -> str:
    value = _text(command, name, value)
    if value and value.lower() not in table:
        raise SignalingError(f"{command}: {name} {value!r} is not one of {', '.join(table)}")
    return value.lower()


def _cause(command: str, value) -> int:
    try:
        return causes.check(value)
    except causes.CauseError as e:
        raise SignalingError(f"{command}: {e}") from None


def _mode(value) -> str:
    value = _text("dial", "channel_mode", value)
    if value not in ("", "preferred", "exclusive"):
        raise SignalingError(f"dial: channel_mode must be preferred or exclusive, not {value!r}")
    return value


# name -> {argument: (default, check)}; a default of ... means required.
COMMANDS: dict[str, dict[str, tuple[Any, Callable]]] = {
    "answer": {},
    "hangup": {"cause": (causes.NORMAL_CLEARING, lambda v: _cause("hangup", v))},
    "dial": {
        "number": (..., lambda v: _digits("dial", "number", v)),
        "ani": ("", lambda v: _digits("dial", "ani", v, required=False)),
        "caller_name": ("", lambda v: _text("dial", "caller_name", v, limit=50)),
        "called_ton": ("", lambda v: _word("dial", "called_ton", libpri.TON, v)),
        "called_plan": ("", lambda v: _word("dial", "called_plan", libpri.NPI, v)),
        "calling_ton": ("", lambda v: _word("dial", "calling_ton", libpri.TON, v)),
        "calling_plan": ("", lambda v: _word("dial", "calling_plan", libpri.NPI, v)),
        "presentation": ("", lambda v: _word("dial", "presentation", libpri.PRESENTATION, v)),
        "redirecting": ("", lambda v: _digits("dial", "redirecting", v, required=False)),
        "redirecting_reason": ("", lambda v: _word("dial", "redirecting_reason",
                                                    libpri.REDIRECT_REASONS, v)),
        "overlap": (False, lambda v: _flag("dial", "overlap", v)),
        "channel_mode": ("", _mode),
    },
    "ring": {"caller_id": ("", lambda v: v), "caller_name": ("", lambda v: v)},
    "play_tone": {"tone": (..., lambda v: _text("play_tone", "tone", v, required=True))},
    "stop_media": {},
    "play_prompt": {"files": (..., lambda v: _files("play_prompt", v)),
                    "barge_in": (False, lambda v: _flag("play_prompt", "barge_in", v)),
                    "id": (0, lambda v: _prompt_id("play_prompt", v))},
    "send_digits": {"digits": (..., lambda v: _digits("send_digits", "digits", v,
                                                       DTMF_DIGITS, limit=64))},
    "reset_channel": {},
    "set_service": {"in_service": (..., lambda v: _flag("set_service", "in_service", v))},
    "status": {},
}


def check_command(name: str, args: dict) -> dict:
    """The command's arguments with defaults filled in, or a SignalingError naming the fault."""
    return check_args(COMMANDS, name, args, line="a PRI channel")
