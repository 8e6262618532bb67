"""Tick timers, and the table-driven core that FXS and FXO lines share.

A line is a functional core: inputs are hardware events, media-engine events, commands
and tick numbers; outputs are lists of actions. Time exists only as the tick numbers the
caller passes in. Every input is looked up in the line's transition table, keyed by
(state, input); a missing entry means the input does not apply in that state: events and
timers are then ignored, commands refused with a SignalingError.

Input keys:
    HwEvent member                  a hardware event
    "digit", "play_done", "callerid" media-engine events
    "tone.<name>", then "tone.*"    a detected tone, by name first
    "cmd.<name>"                    a command
    "timer.<name>"                  a timer that ran out
"""
from __future__ import annotations

import enum
import math
from typing import Any, Callable

from drivers.backends.base import HwEvent
from drivers.signaling import events as ev
from drivers.signaling.analog.config import DTMF_DIGITS, AnalogConfig, SignalingError
from drivers.signaling.commands import check_args, check_files as _files, check_flag as _flag
from drivers.signaling.commands import check_prompt_id as _prompt_id
from drivers.signaling.commands import check_text as _text

# Playback tags (the engine reports each finished playback as PlayDone(tag, interrupted)).
PROMPT_TAG = "prompt"      # the application's prompts: PlayDone becomes PromptDone
CALLERID_TAG = "callerid"  # a caller ID spill to a phone (FSK or DTMF)
DIAL_TAG = "dial"          # the number dialled on an FXO line


def prompt_tag(prompt_id: int) -> Any:
    """The playback tag of a play_prompt command: PROMPT_TAG, with the command's id when it
    has one, so that the PlayDone of that very prompt (played out, stopped, replaced,
    barged in) names it."""
    return (PROMPT_TAG, prompt_id) if prompt_id else PROMPT_TAG


def prompt_done(event) -> list:
    """[Emit(PromptDone)] for the PlayDone of an application prompt (echoing its id), else
    [] (the line's own playbacks: caller ID, dialling)."""
    tag = getattr(event, "tag", None)
    if tag == PROMPT_TAG:
        prompt_id = 0
    elif isinstance(tag, tuple) and len(tag) == 2 and tag[0] == PROMPT_TAG:
        prompt_id = tag[1]
    else:
        return []
    return [ev.Emit(ev.PromptDone(interrupted=bool(getattr(event, "interrupted", False)),
                                  digit=str(getattr(event, "digit", "") or ""), id=prompt_id))]


def ms_to_ticks(ms: int, tick_ms: int) -> int:
    """Whole ticks covering `ms`, rounded up so that a timer never fires early."""
    return math.ceil(ms / tick_ms) if ms > 0 else 0


class Timers:
    """Named one-shot deadlines, as absolute tick numbers.

    `next_due` (the earliest deadline, or None) lets the per-tick call return at once on
    the many lines with nothing due.
    """

    def __init__(self):
        self._due: dict[str, int] = {}
        self.next_due: int | None = None

    def _changed(self) -> None:
        self.next_due = min(self._due.values()) if self._due else None

    def start(self, name: str, now: int, ticks: int) -> None:
        self._due[name] = now + ticks
        self._changed()

    def cancel(self, *names: str) -> None:
        for name in names:
            self._due.pop(name, None)
        self._changed()

    def keep_only(self, names) -> None:
        for name in [n for n in self._due if n not in names]:
            del self._due[name]
        self._changed()

    def deadline(self, name: str) -> int | None:
        return self._due.get(name)

    def pop_expired(self, now: int) -> tuple[str, int] | None:
        """(name, deadline) of the earliest timer due at or before `now`, removed; or None.

        One at a time, because the handler of one may cancel or restart another.
        """
        if self.next_due is None or self.next_due > now:
            return None
        tick, name = min((tick, name) for name, tick in self._due.items())
        del self._due[name]
        self._changed()
        return name, tick


# ---- commands: the analog lines' own checks (the common ones: drivers.signaling.commands) -
def _dtmf(command, name, value, *, required=True, allowed=DTMF_DIGITS, limit=64):
    value = _text(command, name, value, required=required, limit=limit)
    bad = sorted(set(value) - allowed)
    if bad:
        raise SignalingError(f"{command}: {name} {value!r} has characters that cannot be sent "
                             f"as DTMF: {''.join(bad)!r}")
    return value


def _cause(command, value):
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 127:
        raise SignalingError(f"{command}: cause must be a Q.850 cause value 1-127, not {value!r}")
    return value


# name -> {argument: (default, check)}; a default of ... means required.
COMMANDS: dict[str, dict[str, tuple[Any, Callable]]] = {
    "answer": {},
    "hangup": {"cause": (ev.CAUSE_NORMAL_CLEARING, lambda v: _cause("hangup", v))},
    "dial": {"number": (..., lambda v: _dtmf("dial", "number", v))},
    "ring": {"caller_id": ("", lambda v: _dtmf("ring", "caller_id", v, required=False,
                                               allowed=frozenset("0123456789*#"), limit=32)),
             "caller_name": ("", lambda v: _text("ring", "caller_name", v, limit=50))},
    "play_tone": {"tone": (..., lambda v: _text("play_tone", "tone", v, required=True))},
    "stop_media": {},
    "play_prompt": {"files": (..., lambda v: _files("play_prompt", v)),
                    "barge_in": (False, lambda v: _flag("play_prompt", "barge_in", v)),
                    "id": (0, lambda v: _prompt_id("play_prompt", v))},
    "send_digits": {"digits": (..., lambda v: _dtmf("send_digits", "digits", v))},
    "status": {},
}


def check_command(name: str, args: dict) -> dict:
    """The command's arguments with defaults filled in, or a SignalingError naming the fault."""
    return check_args(COMMANDS, name, args)


# ---- media events, recognised by shape (the engine's classes are not imported) ------------
def media_input(event) -> str | None:
    kind = type(event).__name__
    if kind == "DigitEvent" or (hasattr(event, "digit") and hasattr(event, "duration")):
        return "digit"
    if kind == "ToneEvent" or (hasattr(event, "tone") and hasattr(event, "sample")):
        tone = getattr(event, "tone", None)
        return f"tone.{tone}" if isinstance(tone, str) and tone else None
    if kind == "PlayDone" or (hasattr(event, "tag") and hasattr(event, "interrupted")):
        return "play_done"
    if kind == "CallerIdEvent" or (hasattr(event, "number") and hasattr(event, "name")):
        return "callerid" if getattr(event, "valid", True) else None
    return None


class LineMachine:
    """Dispatch through TRANSITIONS; subclasses define the states, tables and handlers.

    TRANSITIONS: {(state, input key): handler method name}
    STATE_TIMERS: {state: timer names that may run in it} (others are cancelled on entry)
    WIRE_STATE: {state: cardd ChannelState name}
    REFUSALS: {(state or None, command): reason} for clearer refusals than the default
    """
    State: type[enum.Enum]
    INITIAL: enum.Enum
    TRANSITIONS: dict[tuple[enum.Enum, Any], str] = {}
    STATE_TIMERS: dict[enum.Enum, frozenset] = {}
    WIRE_STATE: dict[enum.Enum, str] = {}
    STATE_TEXT: dict[enum.Enum, str] = {}
    REFUSALS: dict[tuple[Any, str], str] = {}
    KIND = "line"

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        missing = sorted({h for h in cls.TRANSITIONS.values()
                          if not callable(getattr(cls, h, None))})
        if missing:
            raise TypeError(f"{cls.__name__}: transition table names missing handlers {missing}")

    def __init__(self, channel: int, cfg: AnalogConfig | None = None):
        self.channel = channel
        self.cfg = cfg if cfg is not None else AnalogConfig()
        self.state = self.INITIAL
        self.timers = Timers()

    # ---- the four inputs ----------------------------------------------------------------
    def on_hw(self, event, tick: int) -> list[ev.Action]:
        code = getattr(event, "event", event)       # a HwEvent, or a backend ChannelEvent
        try:
            code = HwEvent(code)
        except ValueError:
            return []
        return self._dispatch(code, tick, code)

    def on_media(self, event, tick: int) -> list[ev.Action]:
        key = media_input(event)
        if key is None:
            return []
        if key.startswith("tone.") and (self.state, key) not in self.TRANSITIONS:
            key = "tone.*"
        return self._dispatch(key, tick, event)

    def on_command(self, name: str, tick: int, **args) -> list[ev.Action]:
        args = check_command(name, args)
        if name == "status":
            return []
        handler = self.TRANSITIONS.get((self.state, f"cmd.{name}"))
        if handler is None:
            where = self.STATE_TEXT.get(self.state, self.state.name.lower())
            reason = (self.REFUSALS.get((self.state, name)) or self.REFUSALS.get((None, name))
                      or f"not possible while the line is {where}")
            raise SignalingError(f"{self.KIND} channel {self.channel}: {name} refused: {reason}")
        args["command"] = name
        return getattr(self, handler)(tick, args)

    def on_tick(self, tick: int) -> list[ev.Action]:
        if self.timers.next_due is None or self.timers.next_due > tick:
            return []                      # the common case, on every line every tick
        actions: list[ev.Action] = []
        while (expired := self.timers.pop_expired(tick)) is not None:
            name, due = expired
            # The handler runs at the deadline, so a late call keeps cadences exact.
            actions += self._dispatch(f"timer.{name}", due, None)
        return actions

    # ---- helpers for subclasses ---------------------------------------------------------
    @property
    def wire_state(self) -> str:
        """The state as cardd's ChannelState names it (for Status replies)."""
        return self.WIRE_STATE.get(self.state, "IDLE")

    def _dispatch(self, key, tick: int, data) -> list[ev.Action]:
        handler = self.TRANSITIONS.get((self.state, key))
        if handler is None:
            return []
        return getattr(self, handler)(tick, data)

    def _goto(self, state) -> None:
        self.state = state
        self.timers.keep_only(self.STATE_TIMERS.get(state, ()))

    def _ticks(self, ms: int) -> int:
        return ms_to_ticks(ms, self.cfg.tick_ms)

    def _digit(self, event) -> ev.Digit:
        duration = int(getattr(event, "duration", 0) or 0)
        return ev.Digit(digit=str(event.digit),
                        duration_ms=round(duration * 1000 / self.cfg.sample_rate),
                        start_sample=int(getattr(event, "start", 0) or 0))

    # Handlers every line uses the same way.
    def _h_ignore(self, tick, data):
        return []

    def _h_emit_digit(self, tick, event):
        return [ev.Emit(self._digit(event))]

    def _h_emit_tone(self, tick, event):
        return [ev.Emit(ev.ToneDetected(tone=event.tone))]

    def _h_prompt_done(self, tick, event):
        return prompt_done(event)

    @staticmethod
    def _media_for(args: dict) -> ev.Media:
        """The engine call a media command (its checked arguments) maps to."""
        name = args["command"]
        if name == "play_tone":
            return ev.Media("play_tone", (args["tone"],))
        if name == "stop_media":
            return ev.Media("stop")
        if name == "play_prompt":
            return ev.Media("play_prompts", (args["files"], prompt_tag(args["id"]), args["barge_in"]))
        if name == "send_digits":
            return ev.Media("send_dtmf", (args["digits"],))
        raise SignalingError(f"{name} is not a media command")


MEDIA_COMMANDS = ("play_tone", "stop_media", "play_prompt", "send_digits")


def _bench(argv=None) -> int:
    """Cost of the per-tick call on many lines (half of them with running timers)."""
    import argparse
    import time

    from drivers.signaling.analog.fxo import FxoLine
    from drivers.signaling.analog.fxs import FxsLine
    ap = argparse.ArgumentParser(prog="python -m drivers.signaling.analog.timers",
                                 description="Benchmark analog lines' on_tick.")
    ap.add_argument("--lines", type=int, default=960)
    ap.add_argument("--ticks", type=int, default=3000)
    a = ap.parse_args(argv)
    cfg = AnalogConfig()
    lines = [(FxsLine if i % 2 else FxoLine)(i + 1, cfg) for i in range(a.lines)]
    for i, line in enumerate(lines):       # ringing phones and dialling trunks: live timers
        if i % 4 == 1:
            line.on_command("ring", 0, caller_id="13812345678")
        elif i % 4 == 0:
            line.on_command("dial", 0, number="8001")
    actions = 0
    started = time.perf_counter()
    for tick in range(1, a.ticks + 1):
        for line in lines:
            actions += len(line.on_tick(tick))
    took = time.perf_counter() - started
    print(f"{a.lines} lines x {a.ticks} ticks: {took / a.ticks * 1000:.3f} ms per tick "
          f"({took / a.ticks / a.lines * 1e6:.2f} us per line), {actions} actions")
    return 0


if __name__ == "__main__":
    raise SystemExit(_bench())
