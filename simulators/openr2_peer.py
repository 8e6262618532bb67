"""openr2 1.3.3 as the far end of simulated E1 R2 timeslots: an independent R2 peer.

openr2 believes it drives DAHDI channels; its system calls are wrapped
(cffi_build/build_openr2.py) so each channel is a simulated CAS timeslot of the virtual
cards. Every tick the peer (a `World` director, like `R2Office`):
  1. sets openr2's clock to the tick's time (tick * 20 ms: its timers run on it);
  2. gives each channel the host's ABCD bits (a change queues BITSCHANGED) and the block
     the host sent last tick;
  3. runs openr2_chan_process_event once per channel (it reads that block, maybe writes
     one block of MF tone, maybe changes its bits);
  4. copies what it wrote (or silence) and its bits to the host's side;
  5. reads openr2's call events and log lines, and answers them the way a switch
     application would: an offered call is accepted (or refused with a cause) and
     answered after `answer_after` ticks; a far-end disconnect is completed with
     openr2_chan_disconnect_call.

Each channel keeps `calls` (what openr2 reported: dnis, ani, category, accepted,
answered, disconnect cause, protocol errors) and the peer keeps openr2's own log lines
(`log`), which read as a trace of its side.

Needs the compiled module simulators._openr2: `python cffi_build/build_openr2.py`.
"""
from __future__ import annotations

import collections
import dataclasses

import numpy as np

from drivers.media import g711

try:
    from simulators._openr2 import ffi, lib
except ImportError as _e:                    # not built: say how
    ffi = lib = None
    _IMPORT_ERROR = _e
else:
    _IMPORT_ERROR = None

VARIANTS = {"china": "OR2_VAR_CHINA", "itu": "OR2_VAR_ITU", "mexico": "OR2_VAR_MEXICO",
            "brazil": "OR2_VAR_BRAZIL", "argentina": "OR2_VAR_ARGENTINA"}
CAUSES = {"busy": "OR2_CAUSE_BUSY_NUMBER", "congestion": "OR2_CAUSE_NETWORK_CONGESTION",
          "unallocated": "OR2_CAUSE_UNALLOCATED_NUMBER", "out_of_order": "OR2_CAUSE_OUT_OF_ORDER",
          "normal": "OR2_CAUSE_NORMAL_CLEARING", "no_answer": "OR2_CAUSE_NO_ANSWER",
          "unspecified": "OR2_CAUSE_UNSPECIFIED", "forced_release": "OR2_CAUSE_FORCED_RELEASE"}
CATEGORIES = {"national_subscriber": "OR2_CALLING_PARTY_CATEGORY_NATIONAL_SUBSCRIBER",
              "national_priority_subscriber": "OR2_CALLING_PARTY_CATEGORY_NATIONAL_PRIORITY_SUBSCRIBER",
              "international_subscriber": "OR2_CALLING_PARTY_CATEGORY_INTERNATIONAL_SUBSCRIBER"}
EVENT_NAMES = {}                              # filled from lib on first use
PROTOCOL_ERRORS = ("invalid CAS bits", "invalid MF tone", "back MF timeout", "seize timeout",
                   "forward safety timeout", "broken MF sequence", "answer timeout",
                   "invalid R2 state", "invalid MF state", "invalid MF group", "library bug",
                   "internal error")


class OpenR2Error(Exception):
    pass


def available() -> str | None:
    """None when the openr2 peer can run, else why not."""
    if lib is None:
        return (f"simulators._openr2 is not built ({_IMPORT_ERROR}); run "
                f"`python cffi_build/build_openr2.py` (needs libopenr2-dev)")
    return None


def _need_lib():
    why = available()
    if why:
        raise OpenR2Error(why)
    if not EVENT_NAMES:
        for name in ("INIT", "OFFERED", "ACCEPTED", "ANSWERED", "DISCONNECT", "END",
                     "PROTOCOL_ERROR", "OS_ERROR", "IDLE", "BLOCKED", "ALARM", "DNIS_DIGIT",
                     "ANI_DIGIT", "BILLING"):
            EVENT_NAMES[getattr(lib, f"HL_EV_{name}")] = name.lower()


@dataclasses.dataclass
class OpenR2Call:
    direction: str                    # "to_host" (openr2 called) | "from_host"
    started: int
    dnis: str = ""
    ani: str = ""
    category: int | None = None       # openr2's calling party category enum
    accepted: int | None = None
    answered: int | None = None
    disconnect_cause: str | None = None
    ended: int | None = None
    protocol_errors: list[str] = dataclasses.field(default_factory=list)
    dnis_digits: str = ""             # as openr2 reported them one by one
    ani_digits: str = ""


class OpenR2Channel:
    """One timeslot driven by openr2."""

    def __init__(self, peer: "OpenR2Peer", slot: int, channel: int):
        self.peer = peer
        self.slot = slot
        self.channel = channel
        self.chan = lib.hl_chan_new(peer.ctx, slot, channel)
        if self.chan == ffi.NULL:
            raise OpenR2Error(f"openr2 would not open channel {channel}")
        lib.openr2_chan_set_log_level(self.chan, peer.log_level)
        self.calls: list[OpenR2Call] = []
        self.current: OpenR2Call | None = None
        self.on_offered = peer.on_offered
        self.answer_after = peer.answer_after
        self.hang_up_after: int | None = None
        self._due: list[tuple[int, str]] = []
        self.idle_events = 0

    # ---- actions ------------------------------------------------------------------------------
    def call(self, dnis: str, ani: str | None = "", category: str = "national_subscriber") -> None:
        tick = self.peer.tick
        cat = getattr(lib, CATEGORIES[category])
        ani_arg = ffi.NULL if ani is None else str(ani).encode()
        if lib.openr2_chan_make_call(self.chan, ani_arg, str(dnis).encode(), cat) != 0:
            raise OpenR2Error(f"openr2 refused to call on channel {self.channel}: {self.peer.log_tail(3)}")
        self.current = OpenR2Call("to_host", started=tick, dnis=str(dnis), ani=str(ani or ""),
                                  category=cat)
        self.calls.append(self.current)

    def answer(self) -> None:
        # openr2 1.3.3 reports no on_call_answered for its own answer: note it here.
        if lib.openr2_chan_answer_call(self.chan) == 0 and self.current is not None:
            self.current.answered = self.peer.tick

    def hang_up(self, cause: str = "normal") -> None:
        lib.openr2_chan_disconnect_call(self.chan, getattr(lib, CAUSES[cause]))

    @property
    def state(self) -> str:
        return (f"r2 {ffi.string(lib.openr2_chan_get_r2_state_string(self.chan)).decode()}, "
                f"mf {ffi.string(lib.openr2_chan_get_mf_state_string(self.chan)).decode()}, "
                f"call {ffi.string(lib.openr2_chan_get_call_state_string(self.chan)).decode()}")

    # ---- openr2's reports -----------------------------------------------------------------------
    def on_event(self, kind: str, value: int, ani: str, dnis: str) -> None:
        tick = self.peer.tick
        call = self.current
        if kind == "init":
            self.current = call = OpenR2Call("from_host", started=tick)
            self.calls.append(call)
        elif kind == "dnis_digit" and call is not None:
            call.dnis_digits += chr(value)
        elif kind == "ani_digit" and call is not None:
            call.ani_digits += chr(value)
        elif kind == "offered" and call is not None:
            call.dnis, call.ani, call.category = dnis, ani, value
            plan = self.on_offered
            if plan == "accept":
                lib.openr2_chan_accept_call(self.chan, lib.OR2_CALL_WITH_CHARGE)
            elif plan in CAUSES:
                lib.openr2_chan_disconnect_call(self.chan, getattr(lib, CAUSES[plan]))
        elif kind == "accepted" and call is not None:
            call.accepted = tick
            if call.direction == "from_host" and self.on_offered == "accept":
                self._due.append((tick + self.answer_after, "answer"))
        elif kind == "answered" and call is not None:
            call.answered = tick
            if self.hang_up_after is not None:
                self._due.append((tick + self.hang_up_after, "hang_up"))
        elif kind == "disconnect":
            if call is not None:
                call.disconnect_cause = self.peer.cause_name(value)
            lib.openr2_chan_disconnect_call(self.chan, lib.OR2_CAUSE_NORMAL_CLEARING)
        elif kind == "end":
            if call is not None:
                call.ended = tick
            self._due.clear()
        elif kind == "protocol_error":
            text = PROTOCOL_ERRORS[value] if 0 <= value < len(PROTOCOL_ERRORS) else str(value)
            if call is not None:
                call.protocol_errors.append(text)
                call.ended = tick
        elif kind == "idle":
            self.idle_events += 1

    def run_due(self, tick: int) -> None:
        due = [a for t, a in self._due if t <= tick]
        self._due = [(t, a) for t, a in self._due if t > tick]
        for action in due:
            getattr(self, action)()


class OpenR2Peer:
    """openr2 on the E1 timeslots `channels` (a World director).

    on_offered: "accept" (accept with charge, answer after `answer_after` ticks) or a
    refusal cause name ("busy", "unallocated", "congestion", "out_of_order") or "ignore".
    max_ani must exceed the ANI length our side sends, so the ANI ends with its end
    signal (openr2 1.3.3 would otherwise ask for DNIS while we still send ANI).
    """

    def __init__(self, world, channels: list[int], variant: str = "itu", max_ani: int = 20,
                 max_dnis: int = 20, on_offered: str = "accept", answer_after: int = 10,
                 ani_first: bool | None = None, mf_back_timeout_ms: int | None = None,
                 log_lines: int = 5000):
        _need_lib()
        if variant not in VARIANTS:
            raise OpenR2Error(f"unknown openr2 variant {variant!r} (known: {', '.join(VARIANTS)})")
        if on_offered not in ("accept", "ignore") and on_offered not in CAUSES:
            raise OpenR2Error(f"on_offered must be accept, ignore or a cause ({', '.join(CAUSES)})")
        if world.cards.law != "alaw" or world.cards.block != 160:
            raise OpenR2Error("openr2 works on A-law 160-sample blocks")
        self.world = world
        self.cards = world.cards
        self.variant = variant
        self.tick_ms = 20
        self.tick = 0
        self.on_offered = on_offered
        self.answer_after = answer_after
        self.log_level = lib.OR2_LOG_ALL
        self.ctx = lib.hl_context_new(getattr(lib, VARIANTS[variant]), max_ani, max_dnis)
        if self.ctx == ffi.NULL:
            raise OpenR2Error("openr2_context_new failed")
        lib.openr2_context_set_log_level(self.ctx, self.log_level)
        if ani_first is not None:
            lib.openr2_context_set_ani_first(self.ctx, int(ani_first))
        if mf_back_timeout_ms is not None:
            lib.openr2_context_set_mf_back_timeout(self.ctx, mf_back_timeout_ms)
        self.channels: dict[int, OpenR2Channel] = {}
        for slot, ch in enumerate(channels):
            self.channels[ch] = OpenR2Channel(self, slot, ch)
        self.rows = {ch: self.cards.port(ch).row for ch in channels}
        self._silence = np.full(160, g711.silence_byte("alaw"), dtype=np.uint8)
        self._rx = ffi.new("unsigned char[160]")
        self._tx = ffi.new("unsigned char[160]")
        self._event = ffi.new("struct hl_event *")
        self._logbuf = ffi.new("char[256]")
        self.log: collections.deque[tuple[int, str]] = collections.deque(maxlen=log_lines)
        self._started = False

    def attach(self) -> "OpenR2Peer":
        self.world.directors.append(self)
        return self

    def channel(self, channel: int) -> OpenR2Channel:
        return self.channels[channel]

    def cause_name(self, value: int) -> str:
        for name, const in CAUSES.items():
            if getattr(lib, const) == value:
                return name
        return str(value)

    def log_tail(self, n: int = 20) -> str:
        return "\n".join(f"{t}: {line}" for t, line in list(self.log)[-n:])

    # ---- the tick ------------------------------------------------------------------------------
    def step(self, tick: int) -> None:
        self.tick = tick
        lib.hl_set_time(tick * self.tick_ms)
        cards = self.cards
        if not self._started:
            self._started = True
            for ch in self.channels.values():
                lib.hl_set_rxbits(ch.slot, cards.port(ch.channel).cas_from_host)
                lib.openr2_chan_set_idle(ch.chan)
                lib.openr2_chan_handle_cas(ch.chan)
        from_host = cards.from_host_all()
        to_host = cards.host_rx()
        for ch in self.channels.values():
            port = cards.port(ch.channel)
            lib.hl_set_rxbits(ch.slot, port.cas_from_host)
            block = np.ascontiguousarray(from_host[self.rows[ch.channel]])
            ffi.memmove(self._rx, ffi.from_buffer(block), 160)
            lib.hl_put_rx(ch.slot, self._rx, 160)
            lib.openr2_chan_process_event(ch.chan)
            n = lib.hl_take_tx(ch.slot, self._tx, 160)
            out = to_host[self.rows[ch.channel]]
            out[:] = self._silence
            if n > 0:
                out[:n] = np.frombuffer(ffi.buffer(self._tx, n), dtype=np.uint8)
            bits = lib.hl_get_txbits(ch.slot)
            if bits >= 0:
                cards.set_cas_to_host(ch.channel, bits)
        self._drain(tick)
        for ch in self.channels.values():
            ch.run_due(tick)

    def _drain(self, tick: int) -> None:
        while lib.hl_next_log(self._logbuf, 256):
            self.log.append((tick, ffi.string(self._logbuf).decode("utf-8", "replace").rstrip()))
        # Callbacks may call openr2 again (disconnect completes a clear): loop until quiet.
        for _ in range(8):
            got = False
            while lib.hl_next_event(self._event):
                got = True
                e = self._event
                ch = self.channels.get(e.channo)
                if ch is not None:
                    ch.on_event(EVENT_NAMES.get(e.type, str(e.type)), e.value,
                                ffi.string(e.ani).decode(), ffi.string(e.dnis).decode())
            while lib.hl_next_log(self._logbuf, 256):
                self.log.append((tick, ffi.string(self._logbuf).decode("utf-8", "replace").rstrip()))
            if not got:
                break

    def close(self) -> None:
        # openr2_context_delete frees the context's channels itself: only free the slots.
        for ch in self.channels.values():
            lib.hl_chan_delete(ffi.NULL, ch.slot)
        self.channels.clear()
        if self.ctx is not None:
            lib.openr2_context_delete(self.ctx)
            self.ctx = None
