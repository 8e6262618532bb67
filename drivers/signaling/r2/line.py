"""R2Line: MFC/R2 on one E1 timeslot, both directions, as an explicit state machine.

Line signaling travels in the timeslot's ABCD bits (timeslot 16 multiframe): the line
sends `SetCas` actions and reads the far end's bits from `BITSCHANGED` hardware events
(`on_hw`) or `on_cas(bits, tick)`. Register signaling is compelled MF through the media
engine: `Media("r2_detect", (direction,))`, `Media("r2_send", (signal or None,))` out,
`R2Event(row, signal, sample)` in (`on_media`; signal 1..15 when a tone starts, 0 when it
ends). Everything the carrier decides (bit patterns, signal meanings, sequence, timers)
comes from the `Variant`; time is the tick numbers the caller passes in.

The compelled cycle: the outgoing (forward) register sends a signal; the incoming
(backward) register answers as soon as it hears it; the forward stops when it hears
the answer; the backward stops when the forward has stopped; the forward then acts on
the answer. Where the forward has nothing to send (no end-of-DNIS signal in China), the
backward ends the silence with a short pulse after `mf_back_cycle_ms`.

Incoming call: seize -> seize ack -> DNIS digits (A1 each) -> category and ANI when the
variant asks for them -> A3 -> the group II signal (China KD) -> `Incoming` is emitted
and the forward's signal is held while the application decides: `answer` sends the
"free" B signal and the answer bits, `accept` (or `accept_ms` of silence) sends the B
signal and lets it ring, `hangup(cause)` refuses with the B signal for that cause (busy,
unallocated, congestion...). Clearing: clear forward -> idle; our hangup -> clear back,
then idle once the far end has cleared forward.

Outgoing call: `dial(number, ani, category)` -> seize -> seize ack -> the digits the far
register asks for -> A3 -> group II -> `DialComplete` and `Proceeding` -> B signal:
free -> `Alerting`, refusal -> `Cleared` with its cause -> answer bits -> `Answered`.
Clearing: our hangup -> clear forward; clear back -> `Cleared`, clear forward; the
channel is idle again when the far end sends idle (release guard).

Inputs are looked up in `TRANSITIONS` keyed by (state, input):
    "cas.<signal>"  a change of the far end's bits, by line-signal name (several names can
                    share a bit pattern: the first with an entry for the state wins), then
                    "cas.*" for a pattern the state does not expect
    "mf.on", "mf.off"  the far register's tone started / ended
    "cmd.<name>"    a command;   "timer.<name>" a timer ran out
    HwEvent.ALARM / HwEvent.NOALARM
Events and timers without an entry are ignored; commands without one are refused.
"""
from __future__ import annotations

import collections
import dataclasses
import enum
import logging
from typing import Callable

from drivers.backends.base import HwEvent
from drivers.signaling import events as ev
from drivers.signaling.analog.config import SignalingError
from drivers.signaling.analog.timers import Timers, check_command, prompt_done, prompt_tag

from .trace import R2Trace
from .variant import A_MEANINGS, B_MEANINGS, CAUSE_OF_MEANING, Variant

log = logging.getLogger("r2")


# A command the line cannot carry out: the same exception the analog lines raise, so that
# cardd replies with its text as a refusal, not as a fault.
R2Error = SignalingError


@dataclasses.dataclass(frozen=True)
class SetCas(ev.Action):
    """Send these ABCD bits (A = bit 3) on this channel's timeslot (Backend.set_cas)."""
    bits: int


class R2State(enum.Enum):
    IDLE = "idle"
    BLOCKED = "blocked"                # the far end sends the blocking signal
    LOCAL_BLOCKED = "local_blocked"    # we send it (out of service for maintenance)
    OUT_OF_SERVICE = "out_of_service"  # channel alarm
    # incoming: we are the backward (called) side
    IN_REGISTER = "in_register"        # seize acknowledged: DNIS, category, ANI, group II
    IN_OFFERED = "in_offered"          # Incoming emitted; the forward's group II signal held
    IN_ACCEPTING = "in_accepting"      # "free" B signal on, until the forward stops
    IN_RINGING = "in_ringing"          # accepted, not answered
    IN_ANSWERING = "in_answering"      # answer delay running before the answer bits
    IN_REFUSING = "in_refusing"        # refusal B signal sent; waiting for clear forward
    IN_FAILED = "in_failed"            # register failure: congestion sent; waiting likewise
    IN_CLEAR_BACK = "in_clear_back"    # we cleared back; waiting for clear forward
    # outgoing: we are the forward (calling) side
    OUT_SEIZING = "out_seizing"        # seize sent, waiting for the acknowledgement
    OUT_REGISTER = "out_register"      # group I signals answered by group A
    OUT_GROUP_II = "out_group_ii"      # group II signal sent, waiting for group B
    OUT_ALERTING = "out_alerting"      # accepted (subscriber free), waiting for answer
    OUT_CLEAR_FWD = "out_clear_fwd"    # clear forward sent; waiting for idle (release guard)
    CONNECTED = "connected"            # answered (either direction)


S = R2State
IN_CALL_STATES = (S.IN_REGISTER, S.IN_OFFERED, S.IN_ACCEPTING, S.IN_RINGING, S.IN_ANSWERING)
OUT_SETUP = (S.OUT_SEIZING, S.OUT_REGISTER, S.OUT_GROUP_II, S.OUT_ALERTING)
MEDIA_COMMANDS = ("play_tone", "stop_media", "play_prompt", "send_digits")
# ISDN-only dial details cardd may pass: ignored on R2 (the wire has no room for them).
ISDN_DIAL_KEYS = ("called_ton", "called_plan", "calling_ton", "calling_plan", "screening",
                  "redirecting", "redirecting_reason", "channel_mode", "caller_name")


@dataclasses.dataclass
class R2Options:
    tick_ms: int = 20
    ringback_tone: str = "ringback"    # to the caller once an incoming call rings ("": none)
    max_dnis: int | None = None        # overrides the variant's (e.g. a 5-digit DNIS plan)
    max_ani: int | None = None


@dataclasses.dataclass
class _Call:
    direction: str                     # "in" | "out"
    dnis: str = ""
    ani: str = ""
    category: int = 0                  # calling party category signal (KA / II-n)
    service: int = 0                   # group II signal (China KD)
    reported: bool = False             # NewCall emitted
    cleared: bool = False              # Cleared + EndCall emitted
    # incoming register
    requested: str = "dnis"            # what our last request asked for
    dnis_done: bool = False
    ani_started: bool = False
    ani_done: bool = False
    restricted: bool = False
    answer_pending: bool = False
    release_pending: bool = False
    # outgoing register
    sending: str = "dnis"              # the number the forward digits belong to now
    dnis_idx: int = 0
    ani_idx: int = 0
    category_sent: bool = False
    pending: int = 0                   # backward signal heard, acted on when it ends
    alerted: bool = False


def _digit_signal(d: str) -> int:
    return 10 if d == "0" else int(d)


def _signal_digit(s: int) -> str:
    return "0" if s == 10 else str(s)


def _table() -> dict:
    t: dict = {
        (S.IDLE, "cas.seize"): "_h_seized",
        (S.IDLE, "cas.blocked"): "_h_blocked",
        (S.IDLE, "cas.idle"): "_h_ignore",
        (S.IDLE, "cmd.dial"): "_h_dial",
        (S.IDLE, "cmd.set_service"): "_h_set_service",
        (S.BLOCKED, "cas.idle"): "_h_unblocked",
        (S.BLOCKED, "cas.*"): "_h_ignore",
        (S.BLOCKED, "cmd.set_service"): "_h_set_service",
        (S.LOCAL_BLOCKED, "cmd.set_service"): "_h_set_service",
        (S.LOCAL_BLOCKED, "cas.*"): "_h_ignore",
        (S.OUT_OF_SERVICE, HwEvent.NOALARM): "_h_restored",

        (S.IN_REGISTER, "mf.on"): "_h_in_fwd_on",
        (S.IN_REGISTER, "mf.off"): "_h_in_fwd_off",
        (S.IN_REGISTER, "timer.mf_cycle"): "_h_in_cycle_timeout",
        (S.IN_REGISTER, "timer.pulse"): "_h_pulse_end",
        (S.IN_OFFERED, "cmd.answer"): "_h_in_answer",
        (S.IN_OFFERED, "cmd.accept"): "_h_in_accept",
        (S.IN_OFFERED, "cmd.hangup"): "_h_in_refuse",
        (S.IN_OFFERED, "timer.accept"): "_h_in_accept",
        (S.IN_OFFERED, "mf.off"): "_h_in_offer_fwd_off",
        (S.IN_ACCEPTING, "mf.off"): "_h_in_accepted",
        (S.IN_ACCEPTING, "timer.mf_cycle"): "_h_in_accepted",
        (S.IN_ACCEPTING, "timer.pulse"): "_h_in_accepted",
        (S.IN_ACCEPTING, "cmd.answer"): "_h_in_answer_pending",
        (S.IN_ACCEPTING, "cmd.hangup"): "_h_in_release_pending",
        (S.IN_RINGING, "cmd.answer"): "_h_in_answer_now",
        (S.IN_RINGING, "cmd.hangup"): "_h_in_hangup",
        (S.IN_RINGING, "timer.ring_max"): "_h_in_ring_timeout",
        (S.IN_ANSWERING, "timer.answer_delay"): "_h_in_answer_now",
        (S.IN_ANSWERING, "cmd.answer"): "_h_ignore",
        (S.IN_ANSWERING, "cmd.hangup"): "_h_in_hangup",
        (S.IN_REFUSING, "mf.off"): "_h_stop_tone",
        (S.IN_REFUSING, "timer.mf_cycle"): "_h_stop_tone",
        (S.IN_REFUSING, "timer.pulse"): "_h_stop_tone",
        (S.IN_FAILED, "mf.off"): "_h_stop_tone",
        (S.IN_FAILED, "timer.pulse"): "_h_stop_tone",
        (S.IN_FAILED, "timer.mf_cycle"): "_h_stop_tone",
        (S.IN_CLEAR_BACK, "cas.clear_forward"): "_h_released",

        (S.OUT_SEIZING, "cas.seize_ack"): "_h_out_acked",
        (S.OUT_SEIZING, "cas.seize"): "_h_out_dual_seizure",
        (S.OUT_SEIZING, "timer.seize_ack"): "_h_out_seize_timeout",
        (S.OUT_SEIZING, "cas.*"): "_h_out_unexpected_cas",
        (S.OUT_ALERTING, "cas.answer"): "_h_out_answered",
        (S.OUT_ALERTING, "timer.answer"): "_h_out_no_answer",
        (S.OUT_CLEAR_FWD, "cas.idle"): "_h_released",
        (S.OUT_CLEAR_FWD, "cas.*"): "_h_ignore",

        (S.CONNECTED, "cmd.hangup"): "_h_hangup_connected",
        (S.CONNECTED, "cas.clear_forward"): "_h_connected_cas",
        (S.CONNECTED, "cas.clear_back"): "_h_connected_cas",
        (S.CONNECTED, "cas.forced_release"): "_h_connected_cas",
        (S.CONNECTED, "cas.idle"): "_h_connected_cas",
        (S.CONNECTED, "cas.answer"): "_h_ignore",
        (S.CONNECTED, "timer.double_answer"): "_h_double_answer",
        (S.CONNECTED, "digit"): "_h_digit",
        (S.CONNECTED, "play_done"): "_h_play_done",
    }
    for s in (S.OUT_REGISTER, S.OUT_GROUP_II):
        t[(s, "mf.on")] = "_h_out_bwd_on"
        t[(s, "mf.off")] = "_h_out_bwd_off"
        t[(s, "timer.fwd_safety")] = "_h_out_mf_timeout"
        t[(s, "cas.answer")] = "_h_out_answered_early"
        t[(s, "cas.*")] = "_h_out_unexpected_cas"
    for s in OUT_SETUP:
        t[(s, "cmd.hangup")] = "_h_out_abort"
        t[(s, "cas.idle")] = "_h_out_far_released"
        t[(s, "cas.forced_release")] = "_h_out_far_released"
    t[(S.OUT_ALERTING, "cas.clear_back")] = "_h_out_far_released"
    for s in IN_CALL_STATES:
        t[(s, "cas.clear_forward")] = "_h_in_clear_forward"
        t[(s, "cas.*")] = "_h_ignore"
    for s in (S.IN_REFUSING, S.IN_FAILED):
        t[(s, "cas.clear_forward")] = "_h_released"
        t[(s, "cas.*")] = "_h_ignore"
    for s in (S.IN_REFUSING, S.IN_FAILED, S.IN_CLEAR_BACK, S.OUT_CLEAR_FWD):
        t[(s, "timer.release_guard")] = "_h_release_timeout"
    for s in (S.IN_RINGING, S.OUT_ALERTING, S.CONNECTED):
        for c in MEDIA_COMMANDS:
            t[(s, f"cmd.{c}")] = "_h_media"
    for s in S:
        if s != S.OUT_OF_SERVICE:
            t[(s, HwEvent.ALARM)] = "_h_alarm"
            t[(s, "cmd.reset_channel")] = "_h_reset"
    return t


def _cause(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 127:
        raise R2Error(f"hangup: cause must be a Q.850 cause value 1-127, not {value!r}")
    return value


def _number(command, name, value, required, limit):
    if not isinstance(value, str):
        raise R2Error(f"{command}: {name} must be text, not {type(value).__name__}")
    if required and not value:
        raise R2Error(f"{command}: {name} is missing")
    if value and not value.isdigit() or not value.isascii():
        raise R2Error(f"{command}: {name} {value!r} can only have the digits 0-9 on an R2 line")
    if len(value) > limit:
        raise R2Error(f"{command}: {name} has {len(value)} digits; this variant sends at most {limit}")
    return value


class R2Line:
    State = R2State
    INITIAL = S.IDLE
    KIND = "R2"
    TRANSITIONS = _table()
    # Timers that may run in each state (the others are cancelled on entry).
    STATE_TIMERS = {
        S.IN_REGISTER: frozenset({"mf_cycle", "pulse"}),
        S.IN_OFFERED: frozenset({"accept"}),
        S.IN_ACCEPTING: frozenset({"mf_cycle", "pulse"}),
        S.IN_RINGING: frozenset({"ring_max"}),
        S.IN_ANSWERING: frozenset({"answer_delay"}),
        S.IN_REFUSING: frozenset({"mf_cycle", "pulse", "release_guard"}),
        S.IN_FAILED: frozenset({"mf_cycle", "pulse", "release_guard"}),
        S.IN_CLEAR_BACK: frozenset({"release_guard"}),
        S.OUT_SEIZING: frozenset({"seize_ack"}),
        S.OUT_REGISTER: frozenset({"fwd_safety"}),
        S.OUT_GROUP_II: frozenset({"fwd_safety"}),
        S.OUT_ALERTING: frozenset({"answer"}),
        S.OUT_CLEAR_FWD: frozenset({"release_guard"}),
        S.CONNECTED: frozenset({"double_answer"}),
    }
    WIRE_STATE = {
        S.IDLE: "IDLE", S.BLOCKED: "BLOCKED", S.LOCAL_BLOCKED: "BLOCKED",
        S.OUT_OF_SERVICE: "OUT_OF_SERVICE", S.IN_REGISTER: "COLLECTING",
        S.IN_OFFERED: "RINGING", S.IN_ACCEPTING: "RINGING", S.IN_RINGING: "RINGING",
        S.IN_ANSWERING: "RINGING", S.IN_REFUSING: "CLEARING", S.IN_FAILED: "CLEARING",
        S.IN_CLEAR_BACK: "CLEARING", S.OUT_SEIZING: "DIALING", S.OUT_REGISTER: "DIALING",
        S.OUT_GROUP_II: "PROCEEDING", S.OUT_ALERTING: "ALERTING",
        S.OUT_CLEAR_FWD: "CLEARING", S.CONNECTED: "CONNECTED",
    }
    STATE_TEXT = {
        S.IDLE: "idle", S.BLOCKED: "blocked by the far end",
        S.LOCAL_BLOCKED: "blocked (out of service for maintenance)",
        S.OUT_OF_SERVICE: "out of service (alarm)",
        S.IN_REGISTER: "receiving an incoming call's numbers",
        S.IN_OFFERED: "offering an incoming call", S.IN_ACCEPTING: "accepting an incoming call",
        S.IN_RINGING: "ringing (incoming call accepted)", S.IN_ANSWERING: "answering",
        S.IN_REFUSING: "refusing an incoming call", S.IN_FAILED: "clearing a failed call",
        S.IN_CLEAR_BACK: "clearing (waiting for the far end's clear forward)",
        S.OUT_SEIZING: "seizing", S.OUT_REGISTER: "sending the number",
        S.OUT_GROUP_II: "waiting for the called subscriber's state",
        S.OUT_ALERTING: "alerting (far end ringing)",
        S.OUT_CLEAR_FWD: "clearing (waiting for the far end's release guard)",
        S.CONNECTED: "connected",
    }
    REFUSALS = {
        (S.IDLE, "answer"): "there is no incoming call to answer",
        (S.IDLE, "hangup"): "there is no call to hang up",
        (S.IDLE, "accept"): "there is no incoming call to accept",
        (S.IN_REGISTER, "answer"): "the call's numbers are still being received",
        (S.IN_REGISTER, "hangup"): "no call has been offered yet",
        (S.CONNECTED, "answer"): "the call is already connected",
        (S.BLOCKED, "dial"): "the far end has blocked this channel",
        (S.LOCAL_BLOCKED, "dial"): "the channel is blocked (out of service)",
        (S.OUT_OF_SERVICE, "dial"): "the channel is in alarm",
        (None, "ring"): "an E1 R2 channel is a trunk and cannot ring a phone; use dial",
        (None, "dial"): "a call is already in progress",
        (None, "answer"): "there is no incoming call waiting for an answer",
        (None, "hangup"): "the call is already being cleared",
        (None, "set_service"): "the channel has a call",
    }

    def __init__(self, channel: int, variant: Variant, options: R2Options | None = None):
        self.channel = channel
        self.variant = variant
        self.opts = options or R2Options()
        self.max_dnis = self.opts.max_dnis if self.opts.max_dnis is not None else variant.max_dnis
        self.max_ani = self.opts.max_ani if self.opts.max_ani is not None else variant.max_ani
        self.state = self.INITIAL
        self.timers = Timers()
        self.call: _Call | None = None
        self.rx_bits: int | None = None        # the far end's ABCD (None: never reported)
        self.tx_bits: int | None = None        # ours, as last sent
        self.our_tone = 0                       # MF signal we send (0: none)
        self.far_tone = 0                       # MF signal we hear (0: none)
        self._detecting: str | None = None
        self._tone_name = ""
        self._far_name = ""
        self._double = 0
        self._started = False
        self.counters = collections.Counter()   # calls in/out, refusals, protocol errors
        self.last_call: dict = {}               # ani, dnis, category, result of the last call
        # tracing on demand
        self.tracing = False
        self.trace_sink: Callable[[R2Trace], None] | None = None
        self.trace: R2Trace | None = None
        self.traces: collections.deque[R2Trace] = collections.deque(maxlen=8)

    # ---- the inputs ---------------------------------------------------------------------------
    def on_hw(self, event, tick: int) -> list[ev.Action]:
        """A hardware event: a backend ChannelEvent (BITSCHANGED carries the bits in
        `value`) or a bare HwEvent for ALARM/NOALARM."""
        code = getattr(event, "event", event)
        try:
            code = HwEvent(code)
        except ValueError:
            return []
        if code == HwEvent.BITSCHANGED:
            value = getattr(event, "value", None)
            return [] if value is None else self.on_cas(int(value), tick)
        return self._dispatch(code, tick, code)

    def on_cas(self, bits: int, tick: int) -> list[ev.Action]:
        bits = int(bits) & 0xF
        old = self.rx_bits
        self.rx_bits = bits
        if old is not None and (old >> 2) == (bits >> 2):
            return []                        # only C or D moved: not a line signal
        names = self.variant.line.names(bits)
        self._trace(tick, "cas_rx", f"{bits:04b} {'/'.join(names) or 'unknown pattern'}")
        for name in names:
            if (self.state, f"cas.{name}") in self.TRANSITIONS:
                return self._dispatch(f"cas.{name}", tick, name)
        if (self.state, "cas.*") in self.TRANSITIONS:
            return self._dispatch("cas.*", tick, names)
        self._trace(tick, "error", f"line signal {'/'.join(names) or bin(bits)} not expected "
                    f"while {self.STATE_TEXT[self.state]}; ignored")
        return []

    def on_media(self, event, tick: int) -> list[ev.Action]:
        kind = type(event).__name__
        if kind == "R2Event" or (hasattr(event, "signal") and hasattr(event, "sample")):
            signal = int(event.signal)
            if signal:
                self.far_tone = signal
                self._far_name = self._rx_name(signal)
                self._trace(tick, "mf_rx", f"{self._far_name} on")
                return self._dispatch("mf.on", tick, signal)
            if not self.far_tone:
                return []
            was, self.far_tone = self.far_tone, 0
            self._trace(tick, "mf_rx", f"{self._far_name} off")
            return self._dispatch("mf.off", tick, was)
        if kind == "DigitEvent" or (hasattr(event, "digit") and hasattr(event, "duration")):
            return self._dispatch("digit", tick, event)
        if kind == "PlayDone" or (hasattr(event, "tag") and hasattr(event, "interrupted")):
            return self._dispatch("play_done", tick, event)
        return []

    def on_command(self, name: str, tick: int, **args) -> list[ev.Action]:
        args = self._check_command(name, args)
        if name == "status":
            return []
        handler = self.TRANSITIONS.get((self.state, f"cmd.{name}"))
        if handler is None:
            reason = (self.REFUSALS.get((self.state, name)) or self.REFUSALS.get((None, name))
                      or f"not possible while the line is {self.STATE_TEXT[self.state]}")
            raise R2Error(f"R2 channel {self.channel}: {name} refused: {reason}")
        args["command"] = name
        return getattr(self, handler)(tick, args)

    def on_tick(self, tick: int) -> list[ev.Action]:
        if not self._started:
            self._started = True               # the far end must see our idle pattern
            return self._cas(tick, "idle")
        if self.timers.next_due is None or self.timers.next_due > tick:
            return []
        actions: list[ev.Action] = []
        while (expired := self.timers.pop_expired(tick)) is not None:
            name, due = expired
            self._trace(due, "timer", f"{name} ran out")
            actions += self._dispatch(f"timer.{name}", due, None)
        return actions

    # ---- tracing on demand --------------------------------------------------------------------
    def set_trace(self, on: bool = True, sink: Callable[[R2Trace], None] | None = None) -> None:
        """Trace every call from the next one on (the call in progress is traced from now)."""
        self.tracing = bool(on)
        if sink is not None or not on:
            self.trace_sink = sink
        if on and self.call is not None and self.trace is None:
            self.trace = R2Trace(self.channel, self.call.direction, self.variant.name,
                                 started=0, tick_ms=self.opts.tick_ms)
        if not on:
            self.trace = None

    def _trace(self, tick: int, kind: str, text: str) -> None:
        if self.trace is not None:
            if not self.trace.entries:
                self.trace.started = tick
            self.trace.add(tick, kind, text)

    # ---- introspection -------------------------------------------------------------------------
    @property
    def wire_state(self) -> str:
        return self.WIRE_STATE.get(self.state, "IDLE")

    @property
    def ani(self) -> str:
        return self.call.ani if self.call else ""

    @property
    def dnis(self) -> str:
        return self.call.dnis if self.call else ""

    def describe(self) -> str:
        text = f"R2 channel {self.channel} ({self.variant.name}): {self.STATE_TEXT[self.state]}"
        if self.call:
            text += f"; {self.call.direction} call dnis={self.call.dnis!r} ani={self.call.ani!r}"
        return text

    # ---- dispatch and small helpers ----------------------------------------------------------------
    def _dispatch(self, key, tick: int, data) -> list[ev.Action]:
        handler = self.TRANSITIONS.get((self.state, key))
        if handler is None:
            return []
        return getattr(self, handler)(tick, data)

    def _goto(self, tick: int, state: R2State) -> None:
        if state != self.state:
            self._trace(tick, "state", f"{self.state.value} -> {state.value}")
        self.state = state
        self.timers.keep_only(self.STATE_TIMERS.get(state, ()))

    def _start(self, tick: int, name: str, timer: str) -> None:
        ticks = self.variant.timers.ticks(timer, self.opts.tick_ms)
        if ticks > 0:
            self.timers.start(name, tick, ticks)

    def _cas(self, tick: int, signal: str) -> list[ev.Action]:
        bits = self.variant.line.abcd(signal)
        self._trace(tick, "cas_tx", f"{bits:04b} {signal}")
        if bits == self.tx_bits:
            return []
        self.tx_bits = bits
        return [SetCas(bits)]

    def _detect(self, direction: str | None) -> list[ev.Action]:
        if direction == self._detecting:
            return []
        self._detecting = direction
        self.our_tone = 0
        self.far_tone = 0
        return [ev.Media("r2_detect", (direction,))]

    def _tone(self, tick: int, signal: int, why: str = "", group: str = "") -> list[ev.Action]:
        """Send MF `signal` of `group` (A, B, I, II: for the trace) from now on (0: stop)."""
        if signal == self.our_tone:
            return []
        if signal:
            self._tone_name = f"{group}-{signal}" if group else f"signal {signal}"
            self._trace(tick, "mf_tx", f"{self._tone_name} on" + (f": {why}" if why else ""))
        else:
            self._trace(tick, "mf_tx", f"{self._tone_name} off")
        self.our_tone = signal
        return [ev.Media("r2_send", (signal or None,))]

    def _rx_name(self, signal: int) -> str:
        call = self.call
        if call is None:
            return f"signal {signal}"
        if call.direction == "in":
            if call.requested == "group_ii":
                return f"II-{signal} ({self.variant.service_name(signal)})"
            if call.requested == "category":
                return f"KA/II-{signal} (category {self.variant.category_name(signal)})"
            if 1 <= signal <= 10:
                return f"I-{signal} ({call.requested.upper()} digit {_signal_digit(signal)})"
            v = self.variant
            if call.requested == "dnis":
                what = "end of DNIS" if signal == v.end_of_dnis else ""
            else:
                what = {v.end_of_ani: "end of ANI",
                        v.ani_restricted: "calling number withheld"}.get(signal, "")
            return f"I-{signal} ({what})" if what else f"I-{signal}"
        group = "B" if self.state == S.OUT_GROUP_II else "A"
        table = self.variant.group_b if group == "B" else self.variant.group_a
        return f"{group}-{signal} ({table.get(signal, 'no meaning in this variant')})"

    def _new_call(self, tick: int, direction: str) -> _Call:
        self.call = _Call(direction=direction)
        self.counters[f"calls_{direction}"] += 1
        if self.tracing:
            self.trace = R2Trace(self.channel, direction, self.variant.name, started=tick,
                                 tick_ms=self.opts.tick_ms)
            if direction == "in" and self.rx_bits is not None:     # the seize that began it
                self._trace(tick, "cas_rx", f"{self.rx_bits:04b} seize")
        return self.call

    def _emit_cleared(self, cause: int, reason: str) -> list[ev.Action]:
        call = self.call
        if call is None or not call.reported or call.cleared:
            return []
        call.cleared = True
        self.last_call["result"] = f"cleared {cause} {reason}"
        self._trace_call(f"cleared: cause {cause} ({reason})")
        return [ev.Emit(ev.Cleared(cause=cause, reason=reason)), ev.EndCall()]

    def _trace_call(self, text: str) -> None:
        if self.trace is not None:
            self.trace.add(self.trace.entries[-1].tick if self.trace.entries else 0, "call", text)

    def _to_idle(self, tick: int) -> list[ev.Action]:
        """The call is over on the wire: idle bits, MF off, trace handed over."""
        actions = self._cas(tick, "idle") + self._detect(None) + [ev.Media("stop")]
        if self.call is not None:
            self.last_call.setdefault("result", "no call reported")
        self._goto(tick, S.IDLE)
        self.call = None
        self._finish_trace(tick)
        return actions

    def _finish_trace(self, tick: int) -> None:
        trace, self.trace = self.trace, None
        if trace is None:
            return
        trace.ended = tick
        trace.summary = dict(self.last_call)
        self.traces.append(trace)
        if self.trace_sink is not None:
            try:
                self.trace_sink(trace)
            except Exception:                 # a broken sink never breaks the line
                log.exception("R2 trace sink failed on channel %d", self.channel)

    # ---- commands ---------------------------------------------------------------------------------
    def _check_command(self, name: str, args: dict) -> dict:
        def only(*allowed):
            extra = sorted(set(args) - set(allowed))
            if extra:
                raise R2Error(f"{name}: unexpected argument {extra[0]!r}")
        if name in ("answer", "accept", "stop_media", "status", "reset_channel"):
            only()
            return {}
        if name == "hangup":
            only("cause")
            return {"cause": _cause(args.get("cause", ev.CAUSE_NORMAL_CLEARING))}
        if name == "dial":
            only("number", "ani", "category", "presentation", "overlap", *ISDN_DIAL_KEYS)
            if args.get("overlap"):
                raise R2Error("dial: overlap sending is not available on an R2 line "
                              "(the register asks for the digits it wants)")
            v = self.variant
            out = {"number": _number("dial", "number", args.get("number", ""), True,
                                     self.max_dnis or 40),
                   "ani": _number("dial", "ani", args.get("ani", "") or "", False,
                                  self.max_ani or 40)}
            category = args.get("category", "") or ""
            try:
                out["category"] = v.category_signal(category) if category != "" else v.category
            except ValueError as e:
                raise R2Error(f"dial: {e}") from None
            presentation = args.get("presentation", "") or ""
            if presentation not in ("", "allowed", "restricted", "unavailable"):
                raise R2Error(f"dial: presentation {presentation!r} is not allowed, "
                              f"restricted or unavailable")
            out["restricted"] = presentation in ("restricted", "unavailable")
            return out
        if name == "set_service":
            only("in_service")
            value = args.get("in_service")
            if not isinstance(value, bool):
                raise R2Error("set_service: in_service must be true or false")
            return {"in_service": value}
        if name in MEDIA_COMMANDS:
            try:
                return check_command(name, args)
            except SignalingError as e:
                raise R2Error(str(e)) from None
        if name == "ring":
            raise R2Error(f"R2 channel {self.channel}: ring refused: {self.REFUSALS[(None, 'ring')]}")
        raise R2Error(f"unknown command {name!r} for an R2 channel (known: answer, accept, "
                      f"hangup, dial, set_service, reset_channel, {', '.join(MEDIA_COMMANDS)}, "
                      f"status)")

    def _h_media(self, tick, args):
        name = args["command"]
        if name == "play_tone":
            return [ev.Media("play_tone", (args["tone"],))]
        if name == "stop_media":
            return [ev.Media("stop")]
        if name == "play_prompt":
            return [ev.Media("play_prompts", (args["files"], prompt_tag(args["id"]), args["barge_in"]))]
        return [ev.Media("send_dtmf", (args["digits"],))]

    def _h_digit(self, tick, event):
        duration = int(getattr(event, "duration", 0) or 0)
        return [ev.Emit(ev.Digit(digit=str(event.digit), duration_ms=duration // 8,
                                 start_sample=int(getattr(event, "start", 0) or 0)))]

    def _h_play_done(self, tick, event):
        return prompt_done(event)

    def _h_ignore(self, tick, data):
        return []

    # ---- idle, blocking, alarms --------------------------------------------------------------------
    def _h_blocked(self, tick, _):
        self._goto(tick, S.BLOCKED)
        return [ev.Emit(ev.ServiceChange(in_service=False, reason="blocked by the far end"))]

    def _h_unblocked(self, tick, _):
        self._goto(tick, S.IDLE)
        return [ev.Emit(ev.ServiceChange(in_service=True, reason="unblocked by the far end"))]

    def _h_set_service(self, tick, args):
        if args["in_service"]:
            if self.state != S.LOCAL_BLOCKED:
                return []
            self._goto(tick, S.IDLE)
            return self._cas(tick, "idle") + [ev.Emit(ev.ServiceChange(True, "unblocked"))]
        if self.state == S.LOCAL_BLOCKED:
            return []
        self._goto(tick, S.LOCAL_BLOCKED)
        return self._cas(tick, "blocked") + [ev.Emit(ev.ServiceChange(False, "blocked locally"))]

    def _h_reset(self, tick, _):
        """Maintenance: whatever the channel was doing, it is idle now (a stuck call is
        cleared with cause 41); the far end sees our idle pattern."""
        self.counters["resets"] += 1
        actions = self._emit_cleared(ev.CAUSE_TEMPORARY_FAILURE, "channel reset")
        self._trace(tick, "error", "channel reset by command")
        self.tx_bits = None                   # send idle even if we think we did
        blocked = self.state == S.LOCAL_BLOCKED
        actions += self._to_idle(tick)
        if blocked:
            actions.append(ev.Emit(ev.ServiceChange(True, "reset")))
        return actions + [ev.Emit(ev.ChannelReset(reason="reset command", by_far_end=False))]

    def _h_alarm(self, tick, _):
        actions = self._emit_cleared(ev.CAUSE_NETWORK_OUT_OF_ORDER, "channel alarm")
        actions += self._detect(None)
        self.call = None
        self._goto(tick, S.OUT_OF_SERVICE)
        self._finish_trace(tick)
        return actions + [ev.Emit(ev.ServiceChange(in_service=False, reason="alarm"))]

    def _h_restored(self, tick, _):
        self._goto(tick, S.IDLE)
        self.tx_bits = None                   # send idle again whatever we sent before
        return self._cas(tick, "idle") + [ev.Emit(ev.ServiceChange(True, "alarm cleared"))]

    # ---- incoming: the backward register ----------------------------------------------------------
    def _h_seized(self, tick, _):
        call = self._new_call(tick, "in")
        call.requested = "dnis"
        self._goto(tick, S.IN_REGISTER)
        self._start(tick, "mf_cycle", "mf_back_cycle_ms")
        return self._cas(tick, "seize_ack") + self._detect("forward")

    def _h_in_fwd_on(self, tick, signal):
        call, v = self.call, self.variant
        self.timers.cancel("mf_cycle", "pulse")
        actions = []
        if self.our_tone:                    # a pulse still on: the forward answered it early
            actions += self._tone(tick, 0)
        what = call.requested
        if what == "dnis":
            if 1 <= signal <= 10:
                call.dnis += _signal_digit(signal)
            elif v.end_of_dnis and signal == v.end_of_dnis:
                call.dnis_done = True
            else:
                return actions + self._in_fail(tick, f"forward signal I-{signal} while receiving the DNIS")
        elif what == "category":
            call.category = signal
            if self.max_ani <= 0:
                call.ani_done = True
        elif what == "ani":
            if 1 <= signal <= 10:
                call.ani += _signal_digit(signal)
            elif signal == v.end_of_ani:
                call.ani_done = True
            elif v.ani_restricted and signal == v.ani_restricted:
                call.ani_done = call.restricted = True
            else:
                return actions + self._in_fail(tick, f"forward signal I-{signal} while receiving the ANI")
        elif what == "group_ii":
            call.service = signal
            return actions + self._in_offer(tick)
        else:                                # after a refusal: the forward should clear
            return actions
        self._start(tick, "mf_cycle", "mf_back_cycle_ms")
        return actions + self._in_request(tick, pulse=False)

    def _next_request(self) -> tuple[str, int]:
        """(what, signal): the incoming register's next request."""
        call, v = self.call, self.variant
        if self.max_dnis and len(call.dnis) >= self.max_dnis:
            call.dnis_done = True
        want_ani = v.ani_request != "never" and self.max_ani > 0
        if want_ani and not call.ani_started and not call.dnis_done and \
                v.ani_request == "after_first_digit" and len(call.dnis) == 1:
            call.ani_started = True
            return "category", v.request_category
        if call.ani_started and not call.ani_done:
            if len(call.ani) >= self.max_ani:
                call.ani_done = True
            else:
                return "ani", v.request_next_ani
        if not call.dnis_done:
            return "dnis", v.request_next_dnis
        if want_ani and not call.ani_started:
            call.ani_started = True
            return "category", v.request_category
        return "group_ii", v.address_complete

    def _in_request(self, tick, pulse: bool):
        what, signal = self._next_request()
        self.call.requested = what
        meaning = self.variant.group_a.get(signal, "")
        actions = self._tone(tick, signal, meaning, "A")
        if pulse:                            # the forward is silent: a short signal ends it
            self.timers.start("pulse", tick, self.variant.timers.ticks("mf_pulse_ms", self.opts.tick_ms))
        return actions

    def _h_in_fwd_off(self, tick, _):
        self._start(tick, "mf_cycle", "mf_back_cycle_ms")
        return self._tone(tick, 0)

    def _h_pulse_end(self, tick, _):
        self._start(tick, "mf_cycle", "mf_back_cycle_ms")
        return self._tone(tick, 0)

    def _h_in_cycle_timeout(self, tick, _):
        call = self.call
        if self.far_tone or self.our_tone:
            return self._in_fail(tick, "the compelled cycle did not complete")
        # Silence after our request: where that ends a number, move on with a pulse.
        if call.requested == "dnis" and call.dnis:
            call.dnis_done = True
            self._trace(tick, "state", f"DNIS {call.dnis!r} complete (no more digits)")
        elif call.requested == "ani":
            call.ani_done = True
            self._trace(tick, "state", f"ANI {call.ani!r} ended by silence (no end signal)")
        else:
            return self._in_fail(tick, f"no forward signal after our {call.requested} request")
        return self._in_request(tick, pulse=True)

    def _in_fail(self, tick, why: str):
        """A register failure: congestion to the forward, then wait for its clear forward."""
        self.counters["protocol_errors"] += 1
        self._trace(tick, "error", why)
        log.info("R2 channel %d: incoming call failed: %s", self.channel, why)
        self.last_call = {"dnis": self.call.dnis, "ani": self.call.ani, "result": f"failed: {why}"}
        group_b = self.call.requested == "group_ii"
        signal = self.variant.b_signal("congestion") if group_b else self.variant.a_congestion
        self.call.requested = "refused"
        self._goto(tick, S.IN_FAILED)
        actions = self._emit_cleared(ev.CAUSE_PROTOCOL_ERROR, why)
        actions += self._tone(tick, signal, "congestion", "B" if group_b else "A")
        if not self.far_tone:                # the forward is silent: a pulse
            self.timers.start("pulse", tick, self.variant.timers.ticks("mf_pulse_ms", self.opts.tick_ms))
        self._start(tick, "release_guard", "release_guard_ms")
        return actions

    def _in_offer(self, tick):
        call, v = self.call, self.variant
        call.reported = True
        self.counters["offered"] += 1
        category = v.category_name(call.category) if call.category else ""
        self.last_call = {"direction": "in", "dnis": call.dnis, "ani": call.ani,
                          "category": category, "service": v.service_name(call.service)}
        self._trace_call(f"incoming: dnis={call.dnis!r} ani={call.ani!r} category={category!r} "
                         f"service={v.service_name(call.service)!r}")
        self._goto(tick, S.IN_OFFERED)
        self._start(tick, "accept", "accept_ms")
        return [ev.NewCall(), ev.Emit(ev.Incoming(ani="" if call.restricted else call.ani,
                                                  dnis=call.dnis, category=category))]

    def _h_in_answer(self, tick, _):
        self.call.answer_pending = True
        return self._in_accept(tick)

    def _h_in_accept(self, tick, _):
        return self._in_accept(tick)

    def _in_accept(self, tick):
        v = self.variant
        self._goto(tick, S.IN_ACCEPTING)
        self._start(tick, "mf_cycle", "mf_back_cycle_ms")
        actions = self._tone(tick, v.b_signal(v.accept), v.accept, "B")
        if not self.far_tone:                # the forward already stopped: a pulse
            self.timers.start("pulse", tick, v.timers.ticks("mf_pulse_ms", self.opts.tick_ms))
        return actions

    def _h_in_answer_pending(self, tick, _):
        self.call.answer_pending = True
        return []

    def _h_in_release_pending(self, tick, args):
        self.call.release_pending = True
        return self._emit_cleared(args["cause"], "hangup")

    def _h_in_accepted(self, tick, _):
        call = self.call
        actions = self._tone(tick, 0) + self._detect(None)
        if call.release_pending:
            self._goto(tick, S.IN_CLEAR_BACK)
            self._start(tick, "release_guard", "release_guard_ms")
            return actions + self._cas(tick, "clear_back")
        if call.answer_pending:
            self._goto(tick, S.IN_ANSWERING)
            ticks = self.variant.timers.ticks("answer_delay_ms", self.opts.tick_ms)
            if ticks:
                self.timers.start("answer_delay", tick, ticks)
                return actions
            return actions + self._h_in_answer_now(tick, None)
        self._goto(tick, S.IN_RINGING)
        self._start(tick, "ring_max", "ring_max_ms")
        if self.opts.ringback_tone:
            actions.append(ev.Media("play_tone", (self.opts.ringback_tone,)))
        return actions

    def _h_in_answer_now(self, tick, _):
        actions = [ev.Media("stop")] if self.opts.ringback_tone else []
        self._goto(tick, S.CONNECTED)
        self._start(tick, "double_answer", "double_answer_ms")
        self._double = 0
        self.last_call["result"] = "answered"
        self._trace_call("answered")
        return actions + self._cas(tick, "answer") + [ev.Emit(ev.Answered())]

    def _h_double_answer(self, tick, _):
        # Answer, clear back, answer again: tells the exchange not to charge a collect call.
        self._double = getattr(self, "_double", 0) + 1
        if self._double == 1:
            self._start(tick, "double_answer", "double_answer_ms")
            return self._cas(tick, "clear_back")
        return self._cas(tick, "answer")

    def _h_in_refuse(self, tick, args):
        v, cause = self.variant, args["cause"]
        signal = v.refusal_signal(cause)
        self.counters["refused"] += 1
        self.call.requested = "refused"
        self._goto(tick, S.IN_REFUSING)
        self._start(tick, "release_guard", "release_guard_ms")
        self._start(tick, "mf_cycle", "mf_back_cycle_ms")
        actions = self._emit_cleared(cause, "refused")
        actions += self._tone(tick, signal, v.group_b.get(signal, ""), "B")
        if not self.far_tone:                # the forward already stopped: a pulse
            self.timers.start("pulse", tick, v.timers.ticks("mf_pulse_ms", self.opts.tick_ms))
        return actions

    def _h_in_offer_fwd_off(self, tick, _):
        self._trace(tick, "error", "the forward stopped its group II signal before our answer")
        return []

    def _h_stop_tone(self, tick, _):
        actions = self._tone(tick, 0)
        if self.rx_bits is not None and "clear_forward" in self.variant.line.names(self.rx_bits):
            return actions + self._h_released(tick, None)
        return actions

    def _h_in_hangup(self, tick, args):
        actions = self._emit_cleared(args["cause"], "hangup")
        self._goto(tick, S.IN_CLEAR_BACK)
        self._start(tick, "release_guard", "release_guard_ms")
        return actions + [ev.Media("stop")] + self._cas(tick, "clear_back")

    def _h_in_ring_timeout(self, tick, _):
        return self._h_in_hangup(tick, {"cause": ev.CAUSE_NO_ANSWER})

    def _h_in_clear_forward(self, tick, _):
        actions = self._emit_cleared(ev.CAUSE_NORMAL_CLEARING, "caller hung up (clear forward)")
        if self.call is not None and not self.call.reported:
            self._trace(tick, "error", "clear forward before the call was offered")
            self.last_call = {"dnis": self.call.dnis, "ani": self.call.ani,
                              "result": "abandoned during register signaling"}
        return actions + self._to_idle(tick)

    def _h_released(self, tick, _):
        return self._to_idle(tick)

    def _h_release_timeout(self, tick, _):
        self._trace(tick, "error", "the far end did not complete the release; channel idled")
        self.counters["release_timeouts"] += 1
        return self._to_idle(tick)

    # ---- outgoing: the forward register -----------------------------------------------------------
    def _h_dial(self, tick, args):
        v = self.variant
        if self.rx_bits is not None and "idle" not in v.line.names(self.rx_bits):
            raise R2Error(f"R2 channel {self.channel}: dial refused: the far end is not idle "
                          f"(it sends {self.rx_bits:04b})")
        call = self._new_call(tick, "out")
        call.dnis, call.ani, call.category = args["number"], args["ani"], args["category"]
        call.restricted = args["restricted"]
        call.reported = True
        self.last_call = {"direction": "out", "dnis": call.dnis, "ani": call.ani,
                          "category": v.category_name(call.category)}
        self._trace_call(f"dial: dnis={call.dnis!r} ani={call.ani!r} "
                         f"category={v.category_name(call.category)!r}")
        self._goto(tick, S.OUT_SEIZING)
        self._start(tick, "seize_ack", "seize_ack_ms")
        return [ev.NewCall()] + self._cas(tick, "seize")

    def _h_out_acked(self, tick, _):
        self._goto(tick, S.OUT_REGISTER)
        actions = self._detect("backward")
        return actions + self._send_next(tick, "dnis")

    def _send_next(self, tick, number: str):
        """Send the next signal of `number` ("dnis" or "ani"), its end signal, or nothing."""
        call, v = self.call, self.variant
        call.sending = number
        self._start(tick, "fwd_safety", "mf_fwd_safety_ms")
        if number == "dnis":
            if call.dnis_idx < len(call.dnis):
                d = call.dnis[call.dnis_idx]
                call.dnis_idx += 1
                return self._tone(tick, _digit_signal(d), f"DNIS digit {d}", "I")
            if v.end_of_dnis:
                return self._tone(tick, v.end_of_dnis, "end of DNIS", "I")
            self._trace(tick, "state", "no more DNIS digits: silent until the far end moves on")
            return []
        if call.restricted and v.ani_restricted and call.ani_idx == 0:
            call.sending = "dnis"
            call.ani_idx = len(call.ani) + 1
            return self._tone(tick, v.ani_restricted, "calling number withheld", "I")
        if not call.restricted and call.ani_idx < len(call.ani):
            d = call.ani[call.ani_idx]
            call.ani_idx += 1
            return self._tone(tick, _digit_signal(d), f"ANI digit {d}", "I")
        if v.end_of_ani:
            call.sending = "dnis"            # after the end of the ANI, A1 means DNIS again
            return self._tone(tick, v.end_of_ani, "end of ANI", "I")
        self._trace(tick, "state", "no more ANI digits: silent until the far end moves on")
        return []

    def _h_out_bwd_on(self, tick, signal):
        self.call.pending = signal
        self._start(tick, "fwd_safety", "mf_fwd_safety_ms")
        return self._tone(tick, 0)

    def _h_out_bwd_off(self, tick, signal):
        call = self.call
        signal = call.pending or signal
        call.pending = 0
        if self.state == S.OUT_GROUP_II:
            return self._out_group_b(tick, signal)
        meaning = self.variant.group_a.get(signal)
        v = self.variant
        if meaning in ("next_digit",):
            return self._send_next(tick, call.sending)
        if meaning == "next_dnis":
            return self._send_next(tick, "dnis")
        if meaning == "next_ani":
            return self._send_next(tick, "ani")
        if meaning == "category" or (meaning == "category_then_ani" and not call.category_sent):
            call.category_sent = True
            call.sending = "ani"
            self._start(tick, "fwd_safety", "mf_fwd_safety_ms")
            return self._tone(tick, call.category, f"category {v.category_name(call.category)}",
                              "I")
        if meaning == "category_then_ani":
            return self._send_next(tick, "ani")
        if meaning == "restart_dnis":
            call.dnis_idx = 0
            return self._send_next(tick, "dnis")
        if meaning in ("dnis_minus_1", "dnis_minus_2", "dnis_minus_3"):
            back = int(meaning[-1]) + 1
            call.dnis_idx = max(0, call.dnis_idx - back)
            return self._send_next(tick, "dnis")
        if meaning == "address_complete":
            self._goto(tick, S.OUT_GROUP_II)
            self._start(tick, "fwd_safety", "mf_fwd_safety_ms")
            group_ii = v.group_ii or call.category
            return ([ev.Emit(ev.DialComplete()), ev.Emit(ev.Proceeding())]
                    + self._tone(tick, group_ii, v.service_name(group_ii), "II"))
        if meaning == "address_complete_charge":
            return ([ev.Emit(ev.DialComplete()), ev.Emit(ev.Proceeding())]
                    + self._out_accepted(tick, "address complete, charge"))
        if meaning == "congestion":
            return self._out_refused(tick, ev.CAUSE_SWITCH_CONGESTION, "congestion (group A)")
        if meaning == "unallocated":
            return self._out_refused(tick, 1, "unallocated number (group A)")
        return self._out_protocol_error(tick, f"backward signal A-{signal} has no meaning in "
                                              f"the {v.name} variant")

    def _out_group_b(self, tick, signal):
        meaning = self.variant.group_b.get(signal)
        if meaning in ("free_charge", "free_no_charge"):
            return self._out_accepted(tick, B_MEANINGS[meaning])
        if meaning in CAUSE_OF_MEANING:
            return self._out_refused(tick, CAUSE_OF_MEANING[meaning], B_MEANINGS[meaning])
        return self._out_protocol_error(tick, f"backward signal B-{signal} has no meaning in "
                                              f"the {self.variant.name} variant")

    def _out_accepted(self, tick, why):
        call = self.call
        self._trace_call(f"accepted: {why}")
        actions = self._tone(tick, 0) + self._detect(None)
        self._goto(tick, S.OUT_ALERTING)
        self._start(tick, "answer", "answer_ms")
        if not call.alerted:
            call.alerted = True
            actions.append(ev.Emit(ev.Alerting()))
        return actions

    def _h_out_answered_early(self, tick, _):
        # Answer bits before the B signal ended (line signals are faster than MF detectors).
        actions = []
        if self.state == S.OUT_REGISTER:
            actions += [ev.Emit(ev.DialComplete()), ev.Emit(ev.Proceeding())]
        actions += self._out_accepted(tick, "answer before the end of the B signal")
        return actions + self._h_out_answered(tick, None)

    def _h_out_answered(self, tick, _):
        self._goto(tick, S.CONNECTED)
        self.last_call["result"] = "answered"
        self._trace_call("answered")
        return [ev.Emit(ev.Answered())]

    def _out_refused(self, tick, cause, why):
        self.counters["refused_by_far_end"] += 1
        actions = self._emit_cleared(cause, why)
        return actions + self._clear_forward(tick)

    def _out_protocol_error(self, tick, why):
        self.counters["protocol_errors"] += 1
        self._trace(tick, "error", why)
        log.info("R2 channel %d: outgoing call failed: %s", self.channel, why)
        return self._emit_cleared(ev.CAUSE_PROTOCOL_ERROR, why) + self._clear_forward(tick)

    def _clear_forward(self, tick):
        actions = self._tone(tick, 0) + self._detect(None) + [ev.Media("stop")]
        actions += self._cas(tick, "clear_forward")
        self._goto(tick, S.OUT_CLEAR_FWD)
        if self.rx_bits is not None and "idle" in self.variant.line.names(self.rx_bits):
            return actions + self._to_idle(tick)       # the far end is idle already
        self._start(tick, "release_guard", "release_guard_ms")
        return actions

    def _h_out_mf_timeout(self, tick, _):
        return self._out_protocol_error(tick, "no backward signal in time (register timeout)")

    def _h_out_seize_timeout(self, tick, _):
        self.counters["seize_timeouts"] += 1
        actions = self._emit_cleared(ev.CAUSE_RECOVERY_ON_TIMER, "no seize acknowledgement")
        return actions + self._to_idle(tick)

    def _h_out_dual_seizure(self, tick, _):
        self.counters["dual_seizures"] += 1
        self._trace(tick, "error", "dual seizure: both ends seized the channel")
        actions = self._emit_cleared(ev.CAUSE_NO_CIRCUIT, "dual seizure")
        return actions + self._to_idle(tick)

    def _h_out_unexpected_cas(self, tick, names):
        return self._out_protocol_error(tick, f"unexpected line signal {'/'.join(names) or '?'} "
                                              f"while {self.STATE_TEXT[self.state]}")

    def _h_out_far_released(self, tick, name):
        actions = self._emit_cleared(ev.CAUSE_NORMAL_CLEARING if name == "clear_back"
                                     else ev.CAUSE_TEMPORARY_FAILURE,
                                     f"far end released ({name}) before answer")
        return actions + self._clear_forward(tick)

    def _h_out_no_answer(self, tick, _):
        return self._emit_cleared(ev.CAUSE_NO_ANSWER, "no answer") + self._clear_forward(tick)

    def _h_out_abort(self, tick, args):
        return self._emit_cleared(args["cause"], "hangup") + self._clear_forward(tick)

    # ---- connected ----------------------------------------------------------------------------------
    def _h_hangup_connected(self, tick, args):
        if self.call.direction == "out":
            return self._emit_cleared(args["cause"], "hangup") + self._clear_forward(tick)
        return self._h_in_hangup(tick, args)

    def _h_connected_cas(self, tick, name):
        # The bits mean what the other end's role can send: a forward end clears forward
        # (the idle pattern), a backward end clears back (or goes idle, or forces release).
        if self.call.direction == "in":
            if name not in ("clear_forward", "idle"):
                return []
            return self._h_in_clear_forward(tick, name)
        if name not in ("clear_back", "forced_release", "idle"):
            return []
        reason = "far end hung up (clear back)" if name == "clear_back" else f"far end {name}"
        return self._emit_cleared(ev.CAUSE_NORMAL_CLEARING, reason) + self._clear_forward(tick)


def known_meanings() -> dict[str, dict[str, str]]:
    """Group A and B meanings a variant file may use, with their descriptions."""
    return {"group_a": dict(A_MEANINGS), "group_b": dict(B_MEANINGS)}

