"""libpri (ISDN PRI Q.921/Q.931) as a small Pythonic binding, driven by callback I/O.

The only importer of the compiled module drivers.native._pri (cffi_build/build_pri.py).

One `PriLink` is one D-channel. It never touches a file descriptor or the wall clock:
- frames in: `receive_frame(frame)` hands libpri one whole received frame (without FCS);
- frames out: `send_frame(frame)` (a callable given to the constructor) is called with
  every frame libpri sends, without FCS, after libpri has returned (frames are collected
  during the libpri call and delivered afterwards, so `send_frame` may do anything except
  feed frames straight back into the same link: queue them instead);
- time: the link runs on the caller's clock. `run_timers(now)` advances it and runs
  every Q.921/Q.931 timer due; `next_timer()` tells when the next one is due.

libpri reports what happened as one `pri_event` per frame or timer; each is copied into
a small frozen dataclass (`Ring`, `Answer`, `Hangup`, ...) before libpri is called again.
A call is a `PriCall` handle: `new_call()` for outgoing calls, `Ring.call` for incoming
ones. Once a call is cleared (`Hangup`, `HangupAck`) its handle is ended and libpri's
record is gone; using it then raises `PriError` (except `hangup`, which is idempotent).

libpri is not thread-safe: drive each link from one thread. Its message and error
hooks are process-global; both go to the `drivers.native.libpri` logger (errors at
WARNING, protocol traces at DEBUG), named by each link's `name`.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import weakref
from typing import Callable, Iterable

from drivers.native._pri import ffi as _ffi, lib as _lib

log = logging.getLogger("drivers.native.libpri")

__all__ = [
    "PriLink", "PriCall", "PriError", "PriEvent",
    "DchanUp", "DchanDown", "Ring", "Info", "KeypadDigit", "SetupAck", "Proceeding",
    "Progress", "Ringing", "Answer", "ConnectAck", "HangupReq", "Hangup", "HangupAck",
    "Restart", "RestartAck", "ServiceChange", "ServiceAck", "Notify", "Facility",
    "ConfigError", "OtherEvent",
    "SWITCH_TYPES", "NODE_TYPES", "TON", "NPI", "PRESENTATION", "SCREENING", "BEARER",
    "SERVICE_STATES", "REDIRECT_REASONS", "cause_text", "libpri_version",
]

# ---- vocabulary: names for libpri's numbers -------------------------------------------
SWITCH_TYPES: dict[str, int] = {
    "unknown": _lib.PRI_SWITCH_UNKNOWN,
    "ni2": _lib.PRI_SWITCH_NI2,
    "dms100": _lib.PRI_SWITCH_DMS100,
    "lucent5e": _lib.PRI_SWITCH_LUCENT5E,
    "att4ess": _lib.PRI_SWITCH_ATT4ESS,
    "euroisdn_e1": _lib.PRI_SWITCH_EUROISDN_E1,
    "euroisdn_t1": _lib.PRI_SWITCH_EUROISDN_T1,
    "ni1": _lib.PRI_SWITCH_NI1,
    "gr303_eoc": _lib.PRI_SWITCH_GR303_EOC,
    "gr303_tmc": _lib.PRI_SWITCH_GR303_TMC,
    "qsig": _lib.PRI_SWITCH_QSIG,
}
NODE_TYPES: dict[str, int] = {"network": _lib.PRI_NETWORK, "cpe": _lib.PRI_CPE}

# Q.931 type of number and numbering plan; libpri's "plan" is (ton << 4) | npi.
TON: dict[str, int] = {"unknown": 0, "international": 1, "national": 2,
                       "network_specific": 3, "subscriber": 4, "abbreviated": 6}
NPI: dict[str, int] = {"unknown": 0, "isdn": 1, "data": 3, "telex": 4, "national": 8,
                       "private": 9}
PRESENTATION: dict[str, int] = {"allowed": 0x00, "restricted": 0x20, "unavailable": 0x40}
SCREENING: dict[str, int] = {"user_not_screened": 0, "user_passed": 1, "user_failed": 2,
                             "network": 3}
BEARER: dict[str, int] = {
    "speech": _lib.PRI_TRANS_CAP_SPEECH,
    "3.1khz": _lib.PRI_TRANS_CAP_3_1K_AUDIO,
    "digital": _lib.PRI_TRANS_CAP_DIGITAL,
    "restricted_digital": _lib.PRI_TRANS_CAP_RESTRICTED_DIGITAL,
    "7khz": _lib.PRI_TRANS_CAP_7K_AUDIO,
    "video": _lib.PRI_TRANS_CAP_VIDEO,
}
LAYER1: dict[str, int] = {"alaw": _lib.PRI_LAYER_1_ALAW, "ulaw": _lib.PRI_LAYER_1_ULAW}
SERVICE_STATES: dict[str, int] = {"in_service": 0, "maintenance": 1, "out_of_service": 2}
REDIRECT_REASONS: dict[str, int] = {"unknown": 0, "busy": 1, "no_reply": 2,
                                    "deflection": 3, "dte_out_of_order": 9,
                                    "forwarded_by_dte": 10, "unconditional": 15}
DEBUG_FLAGS: dict[str, int] = {
    "q921_raw": _lib.PRI_DEBUG_Q921_RAW,
    "q921_dump": _lib.PRI_DEBUG_Q921_DUMP,
    "q921_state": _lib.PRI_DEBUG_Q921_STATE,
    "q931_dump": _lib.PRI_DEBUG_Q931_DUMP,
    "q931_state": _lib.PRI_DEBUG_Q931_STATE,
    "q931_anomaly": _lib.PRI_DEBUG_Q931_ANOMALY,
}

_TON_NAMES = {v: k for k, v in TON.items()}
_NPI_NAMES = {v: k for k, v in NPI.items()}
_PRES_NAMES = {v: k for k, v in PRESENTATION.items()}
_SCREEN_NAMES = {v: k for k, v in SCREENING.items()}
_BEARER_NAMES = {v: k for k, v in BEARER.items()}
_SERVICE_NAMES = {v: k for k, v in SERVICE_STATES.items()}
_REDIRECT_NAMES = {v: k for k, v in REDIRECT_REASONS.items()}

# North American and T1 switch types: mu-law, 23 B-channels.
_T1_SWITCHES = frozenset({"ni1", "ni2", "dms100", "lucent5e", "att4ess", "euroisdn_t1",
                          "gr303_eoc", "gr303_tmc"})

# Switch types whose Q.931 variant carries SERVICE / SERVICE ACKNOWLEDGE (libpri encodes
# the Change Status IE only for these).
_SERVICE_SWITCHES = frozenset({"ni2", "dms100", "lucent5e", "att4ess"})

# libpri reads into a 1024-byte buffer and appends nothing: a frame plus its 2 FCS bytes
# must fit. Q.921's N201 is 260 octets, so real frames are far below this.
MAX_FRAME = 1022
# Address (2 octets) and control (1 octet) are the least a Q.921 frame has.
MIN_FRAME = 3
# Causes libpri sends as RELEASE COMPLETE when it rejects an unanswered SETUP.
_RELEASE_COMPLETE_CAUSES = frozenset({1, 34, 44, 81, 82})
# Bound on events taken from the timer queue in one run_timers() (a guard, not a limit
# any real link reaches: each call has a handful of timers).
_MAX_TIMER_EVENTS = 10000


class PriError(Exception):
    """A PriLink operation was refused (bad argument, ended call, libpri said no)."""


def cause_text(cause: int) -> str:
    """Q.850 cause as libpri names it ("Normal Clearing", "User busy", ...)."""
    return _ffi.string(_lib.pri_cause2str(int(cause))).decode("ascii", "replace")


def libpri_version() -> str:
    return _ffi.string(_lib.pri_get_version()).decode("ascii", "replace")


# ---- call handles and events ------------------------------------------------------------
class PriCall:
    """One Q.931 call on one link. Compared by identity."""

    __slots__ = ("_ptr", "_serial", "_link", "cref", "incoming", "_responded", "_channel",
                 "__weakref__")

    def __init__(self, link: "PriLink", ptr, serial: int):
        self._ptr = ptr
        self._serial = serial
        self._link = weakref.ref(link)
        self.cref = -1
        self.incoming = False
        # Incoming calls: whether we have answered the SETUP with anything yet.
        self._responded = True
        self._channel = 0

    @property
    def ended(self) -> bool:
        """True once libpri has freed the call record (the call is over)."""
        return self._serial == 0 or not _lib.hl_alive(self._ptr, self._serial)

    def __repr__(self) -> str:
        state = "ended" if self.ended else "active"
        return f"<PriCall cref={self.cref} {state}>"


@dataclasses.dataclass(frozen=True)
class PriEvent:
    pass


@dataclasses.dataclass(frozen=True)
class DchanUp(PriEvent):
    pass


@dataclasses.dataclass(frozen=True)
class DchanDown(PriEvent):
    pass


@dataclasses.dataclass(frozen=True)
class Ring(PriEvent):
    """Incoming SETUP."""
    call: PriCall
    channel: int | None            # B-channel asked for (None: any)
    exclusive: bool
    calling_number: str
    calling_name: str
    calling_ton: str
    calling_plan: str
    calling_presentation: str      # allowed / restricted / unavailable
    calling_screening: str
    called_number: str
    called_ton: str
    called_plan: str
    redirecting_number: str
    redirecting_reason: str
    complete: bool                 # Sending Complete seen: no more digits will follow
    bearer: str
    layer1: int
    ani: str = ""
    keypad: str = ""


@dataclasses.dataclass(frozen=True)
class Info(PriEvent):
    """Overlap receiving: digits from an INFORMATION message."""
    call: PriCall
    channel: int | None
    digits: str
    complete: bool


@dataclasses.dataclass(frozen=True)
class KeypadDigit(PriEvent):
    call: PriCall
    channel: int | None
    digits: str


@dataclasses.dataclass(frozen=True)
class SetupAck(PriEvent):
    """SETUP ACKNOWLEDGE: the far end wants more digits (send them with information())."""
    call: PriCall
    channel: int | None


@dataclasses.dataclass(frozen=True)
class Proceeding(PriEvent):
    call: PriCall
    channel: int | None
    progress_mask: int


@dataclasses.dataclass(frozen=True)
class Progress(PriEvent):
    call: PriCall
    channel: int | None
    progress_mask: int
    inband: bool                   # progress indicator 8: in-band information available
    cause: int


@dataclasses.dataclass(frozen=True)
class Ringing(PriEvent):
    """ALERTING."""
    call: PriCall
    channel: int | None
    progress_mask: int
    inband: bool


@dataclasses.dataclass(frozen=True)
class Answer(PriEvent):
    """CONNECT."""
    call: PriCall
    channel: int | None


@dataclasses.dataclass(frozen=True)
class ConnectAck(PriEvent):
    call: PriCall
    channel: int | None


@dataclasses.dataclass(frozen=True)
class HangupReq(PriEvent):
    """DISCONNECT received: answer with hangup(call, cause) to release."""
    call: PriCall
    channel: int | None
    cause: int


@dataclasses.dataclass(frozen=True)
class Hangup(PriEvent):
    """The far end released the call: it is over, its handle has ended."""
    call: PriCall
    channel: int | None
    cause: int


@dataclasses.dataclass(frozen=True)
class HangupAck(PriEvent):
    """Our release completed: the call is over, its handle has ended."""
    call: PriCall
    channel: int | None
    cause: int


@dataclasses.dataclass(frozen=True)
class Restart(PriEvent):
    """The far end restarted a B-channel (None: the whole interface); libpri acknowledged."""
    channel: int | None


@dataclasses.dataclass(frozen=True)
class RestartAck(PriEvent):
    channel: int | None


@dataclasses.dataclass(frozen=True)
class ServiceChange(PriEvent):
    """SERVICE received for a B-channel; libpri acknowledged it."""
    channel: int | None
    state: str


@dataclasses.dataclass(frozen=True)
class ServiceAck(PriEvent):
    channel: int | None
    state: str


@dataclasses.dataclass(frozen=True)
class Notify(PriEvent):
    call: PriCall | None
    channel: int | None
    info: int


@dataclasses.dataclass(frozen=True)
class Facility(PriEvent):
    call: PriCall | None


@dataclasses.dataclass(frozen=True)
class ConfigError(PriEvent):
    text: str


@dataclasses.dataclass(frozen=True)
class OtherEvent(PriEvent):
    """An event this binding does not model (HOLD, RETRIEVE...): its libpri name."""
    kind: int
    name: str


# ---- helpers ----------------------------------------------------------------------------
def _chan(value: int) -> int | None:
    """libpri's event channel: bits 0-7 B-channel, 0xFF or -1 for "any"."""
    if value < 0:
        return None
    ch = value & 0xFF
    return None if ch == 0xFF else ch


def _text(arr) -> str:
    return _ffi.string(arr).decode("latin-1")


def _name(table: dict[str, int], value, what: str) -> int:
    if isinstance(value, bool):
        raise PriError(f"{what}: expected a name or number, got {value!r}")
    if isinstance(value, int):
        if value not in table.values():
            raise PriError(f"unknown {what} {value!r} (one of {sorted(set(table.values()))})")
        return value
    try:
        return table[str(value).lower()]
    except KeyError:
        raise PriError(f"unknown {what} {value!r} (one of {', '.join(table)})") from None


def _digits(value: str | None, what: str, limit: int = 255) -> bytes:
    if value is None:
        return b""
    if not isinstance(value, str):
        raise PriError(f"{what} must be a string, got {type(value).__name__}")
    try:
        raw = value.encode("ascii")
    except UnicodeEncodeError:
        raise PriError(f"{what} {value!r} is not ASCII") from None
    if len(raw) > limit:
        raise PriError(f"{what} is longer than {limit} characters")
    if b"\0" in raw:
        raise PriError(f"{what} contains a NUL character")
    return raw


_Q931_RELEASE_COMPLETE = 0x5A


def _q931_summary(frame: bytes) -> tuple[int, int, int] | None:
    """(call reference value, message type, cause or 0) of the Q.931 message in a
    Q.921 I or UI frame, or None."""
    if len(frame) < 4:
        return None
    if frame[2] & 0x01 == 0:          # I-frame: two control octets
        l3 = frame[4:]
    elif frame[2] & 0xEF == 0x03:     # UI frame
        l3 = frame[3:]
    else:
        return None
    if len(l3) < 3 or l3[0] != 0x08:
        return None
    cr_len = l3[1] & 0x0F
    if len(l3) < 3 + cr_len:
        return None
    cr = int.from_bytes(l3[2:2 + cr_len], "big") & ~(0x80 << (8 * (cr_len - 1))) \
        if cr_len else 0
    msg_type = l3[2 + cr_len]
    cause = 0
    pos = 3 + cr_len
    while pos + 1 < len(l3):
        ie = l3[pos]
        if ie & 0x80:                  # single-octet IE
            pos += 1
            continue
        ie_len = l3[pos + 1]
        body = l3[pos + 2:pos + 2 + ie_len]
        if ie == 0x08 and len(body) >= 2:
            # Octet 3 (location), octet 3a if octet 3 has no extension bit, then the cause.
            at = 1 if body[0] & 0x80 else 2
            cause = body[at] & 0x7F if len(body) > at else 0
            break
        pos += 2 + ie_len
    return cr, msg_type, cause


def _addr(ptr) -> int:
    return int(_ffi.cast("uintptr_t", ptr))


# Links by their libpri instance, for the process-global message hooks.
_links: "weakref.WeakValueDictionary[int, PriLink]" = weakref.WeakValueDictionary()


def _callback_error(exc_type, exc_value, tb) -> None:
    log.error("exception in a libpri callback", exc_info=(exc_type, exc_value, tb))


@_ffi.def_extern(onerror=_callback_error)
def hl_pri_read(pri, buf, buflen):
    link: PriLink = _ffi.from_handle(_lib.pri_get_userdata(pri))
    frame = link._rx_frame
    link._rx_frame = None
    if frame is None:
        return 0
    n = len(frame)
    if n + 2 > buflen:
        return 0
    # One whole frame plus 2 FCS bytes: libpri strips the FCS without checking it.
    _ffi.memmove(buf, frame + b"\0\0", n + 2)
    return n + 2


@_ffi.def_extern(onerror=_callback_error)
def hl_pri_write(pri, buf, buflen):
    link: PriLink = _ffi.from_handle(_lib.pri_get_userdata(pri))
    if buflen > 2:
        link._tx.append(_ffi.unpack(_ffi.cast("char *", buf), buflen - 2))
    # libpri treats anything but buflen as a short write.
    return buflen


def _hook_text(pri, text) -> tuple[str, str]:
    link = _links.get(_addr(pri))
    name = link.name if link is not None else "pri"
    return name, _ffi.string(text).decode("latin-1").rstrip("\n")


@_ffi.def_extern(onerror=_callback_error)
def hl_pri_message(pri, text):
    if log.isEnabledFor(logging.DEBUG):
        name, msg = _hook_text(pri, text)
        if msg:
            log.debug("%s: %s", name, msg)


@_ffi.def_extern(onerror=_callback_error)
def hl_pri_error(pri, text):
    name, msg = _hook_text(pri, text)
    if msg:
        log.warning("%s: %s", name, msg.strip())


_lib.pri_set_message(_lib.hl_pri_message)
_lib.pri_set_error(_lib.hl_pri_error)


# ---- the link ---------------------------------------------------------------------------
class PriLink:
    """One ISDN PRI D-channel (libpri instance) on the caller's clock."""

    def __init__(self, node: str = "cpe", switch: str = "euroisdn_e1",
                 send_frame: Callable[[bytes], object] | None = None, *,
                 now: float = 0.0, name: str | None = None, overlap_dial: bool = False,
                 service_messages: bool = False, inband_disconnect: bool = False,
                 bchannels: Iterable[int] | None = None,
                 debug: int | Iterable[str] = 0):
        node_type = _name(NODE_TYPES, node, "node type")
        switch_type = _name(SWITCH_TYPES, switch, "switch type")
        if node_type not in NODE_TYPES.values():
            raise PriError(f"unknown node type {node!r}")
        if switch_type not in SWITCH_TYPES.values():
            raise PriError(f"unknown switch type {switch!r}")
        if send_frame is None or not callable(send_frame):
            raise PriError("send_frame must be a callable taking one frame (bytes)")
        self.node = node if isinstance(node, str) else \
            {v: k for k, v in NODE_TYPES.items()}[node_type]
        self.switch = switch if isinstance(switch, str) else \
            {v: k for k, v in SWITCH_TYPES.items()}[switch_type]
        self.name = name or f"pri-{self.node}"
        if bchannels is None:
            # E1: timeslots 1-15 and 17-31 (16 carries the D-channel); T1: 1-23.
            bchannels = range(1, 24) if self.switch in _T1_SWITCHES else \
                [*range(1, 16), *range(17, 32)]
        self.bchannels: tuple[int, ...] = tuple(int(c) for c in bchannels)
        if any(not 1 <= c <= 127 for c in self.bchannels):
            raise PriError(f"B-channels must be 1..127, got {self.bchannels}")
        self._restart_queue: list[int] = []
        self._send_frame = send_frame
        self._now = self._check_time(now)
        self._rx_frame: bytes | None = None
        self._tx: list[bytes] = []
        self._calls: dict[int, PriCall] = {}
        # Incoming calls not answered yet by the upper layer, by call reference.
        self._unanswered: dict[int, PriCall] = {}
        self._closed = False
        self.frames_in = 0
        self.frames_out = 0
        self.frames_dropped = 0
        # The handle must outlive the libpri instance's use of it: kept for the link's life.
        self._handle = _ffi.new_handle(self)
        self._enter()
        # pri_new_cb sends SABME from inside: the write callback only queues it here.
        self._pri = _lib.pri_new_cb(-1, node_type, switch_type, _lib.hl_pri_read,
                                    _lib.hl_pri_write, self._handle)
        if self._pri == _ffi.NULL:
            raise PriError("libpri could not create the D-channel instance")
        _links[_addr(self._pri)] = self
        if overlap_dial:
            _lib.pri_set_overlapdial(self._pri, 1)
        self._overlap_dial = bool(overlap_dial)
        if service_messages:
            _lib.pri_set_service_message_support(self._pri, 1)
        if inband_disconnect:
            _lib.pri_set_inbanddisconnect(self._pri, 1)
        self.set_debug(debug)
        self._flush()

    # -- clock --------------------------------------------------------------------------
    @staticmethod
    def _check_time(now) -> float:
        try:
            value = float(now)
        except (TypeError, ValueError):
            raise PriError(f"time must be a number of seconds, got {now!r}") from None
        if not math.isfinite(value) or value < 0:
            raise PriError(f"time must be finite and >= 0, got {now!r}")
        return value

    def _enter(self) -> None:
        """Point libpri's clock at this link's time before every call into it."""
        sec = math.floor(self._now)
        usec = int(round((self._now - sec) * 1e6))
        if usec >= 1_000_000:
            sec, usec = sec + 1, usec - 1_000_000
        _lib.hl_set_now(sec, usec)

    @property
    def now(self) -> float:
        return self._now

    def next_timer(self) -> float | None:
        """Time (on the caller's clock) when the earliest libpri timer is due, or None."""
        self._check_open()
        sec = _ffi.new("long long *")
        usec = _ffi.new("long *")
        if not _lib.hl_next_timer(self._pri, sec, usec):
            return None
        return sec[0] + usec[0] / 1e6

    def next_timeout(self, now: float | None = None) -> float | None:
        """Seconds from `now` (default: the link's time) until the next timer, or None."""
        due = self.next_timer()
        if due is None:
            return None
        base = self._now if now is None else self._check_time(now)
        return max(0.0, due - base)

    def run_timers(self, now: float) -> list[PriEvent]:
        """Advance the link's clock to `now` and run every timer due by then."""
        self._check_open()
        now = self._check_time(now)
        if now < self._now:
            raise PriError(f"time went backwards ({now} < {self._now})")
        self._now = now
        events: list[PriEvent] = []
        try:
            self._run_due(events)
        finally:
            self._flush()
        return events

    def _run_due(self, events: list[PriEvent]) -> None:
        """Run the timers due at the link's time, collecting their events."""
        for _ in range(_MAX_TIMER_EVENTS):
            self._enter()
            ev = _lib.pri_schedule_run(self._pri)
            if ev == _ffi.NULL:
                break
            events.append(self._convert(ev))

    # -- frames -------------------------------------------------------------------------
    def receive_frame(self, frame: bytes) -> list[PriEvent]:
        """Feed one received D-channel frame (no FCS). Returns the events it caused."""
        self._check_open()
        if not isinstance(frame, (bytes, bytearray, memoryview)):
            raise PriError(f"a frame must be bytes, got {type(frame).__name__}")
        frame = bytes(frame)
        if not MIN_FRAME <= len(frame) <= MAX_FRAME:
            # Not a Q.921 frame: what a noisy or misframed line delivers. Dropped.
            self.frames_dropped += 1
            log.debug("%s: dropped a %d-byte frame", self.name, len(frame))
            return []
        self.frames_in += 1
        self._rx_frame = frame
        events: list[PriEvent] = []
        try:
            self._enter()
            ev = _lib.pri_check_event(self._pri)
            if ev != _ffi.NULL:
                events.append(self._convert(ev))
            # libpri posts some consequences of a frame as zero-delay timers (an N(R)
            # error's D-channel loss, for one): run them now, so events keep their order.
            self._run_due(events)
            if self._unanswered and self._tx:
                self._reap_silent_clears(events)
        finally:
            self._rx_frame = None
            self._flush()
        return events

    def _flush(self) -> None:
        while self._tx:
            frame = self._tx.pop(0)
            self.frames_out += 1
            self._send_frame(frame)

    # -- call handles -------------------------------------------------------------------
    def _handle_for(self, ptr) -> PriCall | None:
        if ptr == _ffi.NULL:
            return None
        key = _addr(ptr)
        call = self._calls.get(key)
        if call is not None and not call.ended:
            return call
        # Unknown, or an ended handle whose address libpri reused for a new record.
        serial = _lib.hl_track(ptr)
        call = PriCall(self, ptr, serial)
        self._calls[key] = call
        return call

    def _ended_handle(self, ptr) -> PriCall | None:
        """The handle for a record libpri has already freed (HANGUP_ACK)."""
        if ptr == _ffi.NULL:
            return None
        call = self._calls.pop(_addr(ptr), None)
        if call is None:
            call = PriCall(self, ptr, 0)
        return call

    def _live(self, call: PriCall, what: str) -> None:
        self._check_open()
        if not isinstance(call, PriCall):
            raise PriError(f"{what}: expected a PriCall, got {type(call).__name__}")
        if call._link() is not self:
            raise PriError(f"{what}: {call!r} belongs to another link")
        if call.ended:
            raise PriError(f"{what}: {call!r} has ended")

    def _check_open(self) -> None:
        if self._closed:
            raise PriError(f"{self.name} is closed")

    def _result(self, res: int, what: str) -> None:
        self._flush()
        if res != 0:
            raise PriError(f"{what} refused by libpri (result {res})")

    def _responded(self, call: PriCall) -> None:
        call._responded = True
        if self._unanswered.get(call.cref) is call:
            del self._unanswered[call.cref]

    def _reap_silent_clears(self, events: list[PriEvent]) -> None:
        """libpri treats an incoming SETUP that the upper layer has not answered as "not
        yet a call": if the caller clears it in that window, libpri answers with RELEASE
        COMPLETE by itself, reports nothing and keeps the record forever. Seen here from
        the frames it sends: report the Hangup and free the record."""
        for frame in self._tx:
            summary = _q931_summary(frame)
            if summary is None or summary[1] != _Q931_RELEASE_COMPLETE:
                continue
            call = self._unanswered.pop(summary[0], None)
            if call is None or call.ended:
                continue
            if any(getattr(e, "call", None) is call for e in events
                   if isinstance(e, (Hangup, HangupReq, HangupAck))):
                continue
            events.append(Hangup(call=call, channel=call._channel or None,
                                 cause=summary[2] or 16))
            self._enter()
            _lib.pri_destroycall(self._pri, call._ptr)
            self._calls.pop(_addr(call._ptr), None)

    def _learn_cref(self, ptr, cref: int) -> None:
        call = self._handle_for(ptr)
        if call is not None and call.cref < 0:
            call.cref = cref & 0x7FFF

    # -- event conversion (copies everything out of libpri's event union) ----------------
    def _convert(self, ev) -> PriEvent:
        e = ev.e
        if e == _lib.PRI_EVENT_RING:
            r = ev.ring
            call = self._handle_for(r.call)
            if call is not None:
                call.cref = r.cref
                call.incoming = True
                call._responded = False
                call._channel = max(0, _chan(r.channel) or 0)
                self._unanswered[call.cref] = call
            return Ring(
                call=call, channel=_chan(r.channel), exclusive=not r.flexible,
                calling_number=_text(r.callingnum), calling_name=_text(r.callingname),
                calling_ton=_TON_NAMES.get((r.callingplan >> 4) & 0x7, "unknown"),
                calling_plan=_NPI_NAMES.get(r.callingplan & 0xF, "unknown"),
                calling_presentation=_PRES_NAMES.get(r.callingpres & 0x60, "allowed"),
                calling_screening=_SCREEN_NAMES.get(r.callingpres & 0x03, "user_not_screened"),
                called_number=_text(r.callednum),
                called_ton=_TON_NAMES.get((r.calledplan >> 4) & 0x7, "unknown"),
                called_plan=_NPI_NAMES.get(r.calledplan & 0xF, "unknown"),
                redirecting_number=_text(r.redirectingnum),
                redirecting_reason=_REDIRECT_NAMES.get(r.redirectingreason, "unknown"),
                complete=bool(r.complete), bearer=_BEARER_NAMES.get(r.ctype, str(r.ctype)),
                layer1=r.layer1, ani=_text(r.callingani), keypad=_text(r.keypad_digits))
        if e == _lib.PRI_EVENT_INFO_RECEIVED:
            r = ev.ring
            return Info(call=self._handle_for(r.call), channel=_chan(r.channel),
                        digits=_text(r.callednum), complete=bool(r.complete))
        if e == _lib.PRI_EVENT_KEYPAD_DIGIT:
            d = ev.digit
            return KeypadDigit(call=self._handle_for(d.call), channel=_chan(d.channel),
                               digits=_text(d.digits))
        if e == _lib.PRI_EVENT_SETUP_ACK:
            s = ev.setup_ack
            return SetupAck(call=self._handle_for(s.call), channel=_chan(s.channel))
        if e == _lib.PRI_EVENT_PROCEEDING:
            p = ev.proceeding
            self._learn_cref(p.call, p.cref)
            return Proceeding(call=self._handle_for(p.call), channel=_chan(p.channel),
                              progress_mask=p.progressmask)
        if e == _lib.PRI_EVENT_PROGRESS:
            p = ev.proceeding
            return Progress(call=self._handle_for(p.call), channel=_chan(p.channel),
                            progress_mask=p.progressmask,
                            inband=bool(p.progressmask & _lib.PRI_PROG_INBAND_AVAILABLE),
                            cause=p.cause)
        if e == _lib.PRI_EVENT_RINGING:
            r = ev.ringing
            self._learn_cref(r.call, r.cref)
            return Ringing(call=self._handle_for(r.call), channel=_chan(r.channel),
                           progress_mask=r.progressmask,
                           inband=bool(r.progressmask & _lib.PRI_PROG_INBAND_AVAILABLE))
        if e == _lib.PRI_EVENT_ANSWER:
            a = ev.answer
            self._learn_cref(a.call, a.cref)
            return Answer(call=self._handle_for(a.call), channel=_chan(a.channel))
        if e == _lib.PRI_EVENT_CONNECT_ACK:
            a = ev.connect_ack
            return ConnectAck(call=self._handle_for(a.call), channel=_chan(a.channel))
        if e == _lib.PRI_EVENT_HANGUP_REQ:
            h = ev.hangup
            req_call = self._handle_for(h.call)
            if req_call is not None:
                self._responded(req_call)
            return HangupReq(call=self._handle_for(h.call), channel=_chan(h.channel),
                             cause=h.cause)
        if e == _lib.PRI_EVENT_HANGUP:
            h = ev.hangup
            call = self._handle_for(h.call)
            out = Hangup(call=call, channel=_chan(h.channel), cause=h.cause)
            if call is not None:
                self._responded(call)
            if call is not None and not call.ended:
                # The far end has released; libpri keeps the record until the upper layer
                # hangs up too. Do it now: the call is over and its handle ends here.
                self._enter()
                _lib.pri_hangup(self._pri, call._ptr, h.cause if h.cause > 0 else 16)
                self._calls.pop(_addr(call._ptr), None)
            return out
        if e == _lib.PRI_EVENT_HANGUP_ACK:
            h = ev.hangup
            return HangupAck(call=self._ended_handle(h.call), channel=_chan(h.channel),
                             cause=h.cause)
        if e == _lib.PRI_EVENT_DCHAN_UP:
            return DchanUp()
        if e == _lib.PRI_EVENT_DCHAN_DOWN:
            return DchanDown()
        if e == _lib.PRI_EVENT_RESTART:
            return Restart(channel=_chan(ev.restart.channel))
        if e == _lib.PRI_EVENT_RESTART_ACK:
            out = RestartAck(channel=_chan(ev.restartack.channel))
            self._restart_next(out.channel)
            return out
        if e == _lib.PRI_EVENT_SERVICE:
            s = ev.service
            return ServiceChange(channel=_chan(s.channel),
                                 state=_SERVICE_NAMES.get(s.changestatus, str(s.changestatus)))
        if e == _lib.PRI_EVENT_SERVICE_ACK:
            s = ev.service_ack
            return ServiceAck(channel=_chan(s.channel),
                              state=_SERVICE_NAMES.get(s.changestatus, str(s.changestatus)))
        if e == _lib.PRI_EVENT_NOTIFY:
            n = ev.notify
            return Notify(call=self._handle_for(n.call), channel=_chan(n.channel), info=n.info)
        if e == _lib.PRI_EVENT_FACILITY:
            return Facility(call=None)
        if e == _lib.PRI_EVENT_CONFIG_ERR:
            return ConfigError(text=_text(ev.err.err))
        return OtherEvent(kind=e, name=_ffi.string(_lib.pri_event2str(e)).decode())

    # -- configuration ------------------------------------------------------------------
    def set_debug(self, debug: int | Iterable[str]) -> None:
        """libpri trace flags (an int, or names from DEBUG_FLAGS; "all"); traces are
        logged at DEBUG."""
        self._check_open()
        if isinstance(debug, int):
            flags = debug
        else:
            flags = 0
            for item in debug:
                if item == "all":
                    flags |= 0xFFFF
                else:
                    flags |= _name(DEBUG_FLAGS, item, "debug flag")
        _lib.pri_set_debug(self._pri, flags)

    def set_overlap_dial(self, on: bool) -> None:
        """Overlap dialling: with it, SETUP carries Sending Complete only when the number
        is complete (needed to send setup(..., overlap=True))."""
        self._check_open()
        _lib.pri_set_overlapdial(self._pri, 1 if on else 0)
        self._overlap_dial = bool(on)

    def set_service_messages(self, on: bool) -> None:
        """Accept SERVICE (maintenance) messages from the far end."""
        self._check_open()
        _lib.pri_set_service_message_support(self._pri, 1 if on else 0)

    def set_timer(self, name: str, value_ms: int) -> None:
        """Set a Q.921/Q.931 timer or counter by its name ("T303", "T309", "N200"...)."""
        self._check_open()
        idx = _lib.pri_timer2idx(_digits(name, "timer name", 16))
        if idx < 0:
            raise PriError(f"unknown libpri timer {name!r}")
        if not isinstance(value_ms, int) or value_ms < 0:
            raise PriError(f"timer {name}: value must be an int >= 0, got {value_ms!r}")
        if _lib.pri_set_timer(self._pri, idx, value_ms) != 0:
            raise PriError(f"libpri refused timer {name}={value_ms}")

    def get_timer(self, name: str) -> int:
        self._check_open()
        idx = _lib.pri_timer2idx(_digits(name, "timer name", 16))
        if idx < 0:
            raise PriError(f"unknown libpri timer {name!r}")
        return _lib.pri_get_timer(self._pri, idx)

    def info(self) -> str:
        """libpri's own status dump (switch type, timers, counters, call records)."""
        self._check_open()
        raw = _lib.pri_dump_info_str(self._pri)
        if raw == _ffi.NULL:
            return ""
        try:
            return _ffi.string(raw).decode("latin-1")
        finally:
            _lib.hl_free_str(raw)

    def active_calls(self) -> int:
        """Number of call records libpri holds (0 when every call was released)."""
        for line in self.info().splitlines():
            if line.startswith("Total active-calls:"):
                return int(line.split(":")[1].split()[0])
        return 0

    def close(self) -> None:
        """Stop using this link. libpri 1.6 has no way to free an instance: its memory
        stays allocated, but nothing calls into it again."""
        if not self._closed:
            self._closed = True
            _links.pop(_addr(self._pri), None)

    # -- call control -------------------------------------------------------------------
    def new_call(self) -> PriCall:
        """A call handle for an outgoing call (then setup())."""
        self._check_open()
        self._enter()
        ptr = _lib.pri_new_call(self._pri)
        if ptr == _ffi.NULL:
            raise PriError("libpri has no call reference free")
        call = self._handle_for(ptr)
        assert call is not None
        return call

    def setup(self, call: PriCall, channel: int | None, exclusive: bool = True,
              called: str = "", calling: str = "", *,
              called_ton: str | int = "unknown", called_plan: str | int = "isdn",
              calling_ton: str | int = "unknown", calling_plan: str | int = "isdn",
              calling_presentation: str | int = "allowed",
              calling_screening: str | int = "user_not_screened",
              calling_name: str = "", redirecting: str | None = None,
              redirecting_ton: str | int = "unknown", redirecting_plan: str | int = "isdn",
              redirecting_reason: str | int = "unknown", overlap: bool = False,
              bearer: str | int = "speech", layer1: str | int | None = None) -> None:
        """Send SETUP. `channel` is the B-channel (timeslot) or None for any; with
        `overlap` the number is incomplete and more digits follow with information()."""
        self._live(call, "setup")
        if channel is not None and (not isinstance(channel, int) or not 1 <= channel <= 127):
            raise PriError(f"setup: channel must be 1..127 or None, got {channel!r}")
        if overlap and not self._overlap_dial:
            raise PriError("setup: overlap sending needs set_overlap_dial(True) on this link")
        called_b = _digits(called, "called number")
        calling_b = _digits(calling, "calling number")
        name_b = _digits(calling_name, "calling name")
        called_p = (_name(TON, called_ton, "type of number") << 4) | \
            _name(NPI, called_plan, "numbering plan")
        calling_p = (_name(TON, calling_ton, "type of number") << 4) | \
            _name(NPI, calling_plan, "numbering plan")
        pres = _name(PRESENTATION, calling_presentation, "presentation") | \
            _name(SCREENING, calling_screening, "screening")
        transmode = _name(BEARER, bearer, "bearer capability")
        if layer1 is None:
            layer1 = "ulaw" if self.switch in _T1_SWITCHES else "alaw"
        userl1 = _name(LAYER1, layer1, "layer 1 protocol")
        sr = _lib.pri_sr_new()
        if sr == _ffi.NULL:
            raise PriError("setup: out of memory")
        try:
            _lib.pri_sr_set_channel(sr, 0xFF if channel is None else channel,
                                    1 if exclusive else 0, 0)
            _lib.pri_sr_set_bearer(sr, transmode, userl1)
            # The char* arguments are copied by libpri before pri_setup returns.
            called_c = _ffi.new("char[]", called_b)
            calling_c = _ffi.new("char[]", calling_b)
            name_c = _ffi.new("char[]", name_b)
            _lib.pri_sr_set_called(sr, called_c, called_p, 0 if overlap else 1)
            _lib.pri_sr_set_caller(sr, calling_c if calling_b else _ffi.NULL,
                                   name_c if name_b else _ffi.NULL, calling_p, pres)
            if redirecting:
                red_c = _ffi.new("char[]", _digits(redirecting, "redirecting number"))
                red_p = (_name(TON, redirecting_ton, "type of number") << 4) | \
                    _name(NPI, redirecting_plan, "numbering plan")
                _lib.pri_sr_set_redirecting(sr, red_c, red_p, pres,
                                            _name(REDIRECT_REASONS, redirecting_reason,
                                                  "redirecting reason"))
            self._enter()
            res = _lib.pri_setup(self._pri, call._ptr, sr)
        finally:
            _lib.pri_sr_free(sr)
        self._result(res, "setup")

    def _chan_arg(self, channel: int | None, what: str) -> int:
        if channel is None:
            return 0
        if not isinstance(channel, int) or not 0 <= channel <= 127:
            raise PriError(f"{what}: channel must be 0..127 or None, got {channel!r}")
        return channel

    def proceeding(self, call: PriCall, channel: int | None, inband: bool = False) -> None:
        """CALL PROCEEDING (the number is complete; the call is being set up)."""
        self._live(call, "proceeding")
        self._responded(call)
        self._enter()
        self._result(_lib.pri_proceeding(self._pri, call._ptr,
                                         self._chan_arg(channel, "proceeding"),
                                         1 if inband else 0), "proceeding")

    def progress(self, call: PriCall, channel: int | None, inband: bool = True) -> None:
        """PROGRESS (in-band announcement or tones available)."""
        self._live(call, "progress")
        self._responded(call)
        self._enter()
        self._result(_lib.pri_progress(self._pri, call._ptr,
                                       self._chan_arg(channel, "progress"),
                                       1 if inband else 0), "progress")

    def alerting(self, call: PriCall, channel: int | None, inband: bool = True) -> None:
        """ALERTING (the called party is being rung; ringback in-band when `inband`)."""
        self._live(call, "alerting")
        self._responded(call)
        self._enter()
        self._result(_lib.pri_acknowledge(self._pri, call._ptr,
                                          self._chan_arg(channel, "alerting"),
                                          1 if inband else 0), "alerting")

    def need_more_info(self, call: PriCall, channel: int | None) -> None:
        """SETUP ACKNOWLEDGE: overlap receiving, ask for more digits."""
        self._live(call, "need_more_info")
        self._responded(call)
        self._enter()
        self._result(_lib.pri_need_more_info(self._pri, call._ptr,
                                             self._chan_arg(channel, "need_more_info"), 0),
                     "need_more_info")

    def answer(self, call: PriCall, channel: int | None) -> None:
        """CONNECT."""
        self._live(call, "answer")
        self._responded(call)
        self._enter()
        self._result(_lib.pri_answer(self._pri, call._ptr,
                                     self._chan_arg(channel, "answer"), 0), "answer")

    def information(self, call: PriCall, digits: str) -> None:
        """Overlap sending: one INFORMATION message per digit."""
        self._live(call, "information")
        raw = _digits(digits, "digits", 64)
        for ch in raw:
            if chr(ch) not in "0123456789*#ABCDabcd":
                raise PriError(f"information: {chr(ch)!r} is not a dial digit")
        for ch in raw:
            self._enter()
            res = _lib.pri_information(self._pri, call._ptr, bytes([ch]))
            self._result(res, "information")

    def keypad(self, call: PriCall, digits: str) -> None:
        """Keypad facility digits during the call."""
        self._live(call, "keypad")
        raw = _digits(digits, "digits", 63)
        self._enter()
        self._result(_lib.pri_keypad_facility(self._pri, call._ptr, raw), "keypad")

    def hangup(self, call: PriCall, cause: int = 16) -> bool:
        """Clear the call with a Q.850 cause (DISCONNECT, RELEASE or RELEASE COMPLETE as
        the call state requires). Returns False if the call had already ended."""
        self._check_open()
        if not isinstance(call, PriCall):
            raise PriError(f"hangup: expected a PriCall, got {type(call).__name__}")
        if call._link() is not self:
            raise PriError(f"hangup: {call!r} belongs to another link")
        if not isinstance(cause, int) or not 1 <= cause <= 127:
            raise PriError(f"hangup: cause must be a Q.850 value 1..127, got {cause!r}")
        if call.ended:
            return False
        if not call._responded and cause not in _RELEASE_COMPLETE_CAUSES:
            # libpri treats an unanswered SETUP as "not yet a call" and sends nothing for
            # a DISCONNECT in the Call Present state: answer it with CALL PROCEEDING first
            # so the DISCONNECT (and its cause) reaches the caller.
            self._responded(call)
            self._enter()
            _lib.pri_proceeding(self._pri, call._ptr, call._channel, 0)
        self._responded(call)
        self._enter()
        res = _lib.pri_hangup(self._pri, call._ptr, cause)
        if call.ended:
            self._calls.pop(_addr(call._ptr), None)
        self._result(res, "hangup")
        return True

    def restart(self, channel: int | None = None) -> None:
        """RESTART one B-channel; with channel None, every B-channel of the interface in
        turn (libpri restarts single channels only: the next RESTART goes out when the
        previous one is acknowledged, as RestartAck events arrive)."""
        self._check_open()
        if channel is None:
            self._restart_queue = list(self.bchannels)
            if not self._restart_queue:
                return
            channel = self._restart_queue[0]
        else:
            channel = self._chan_arg(channel, "restart")
            if channel == 0:
                raise PriError("restart: channel 0 is not a B-channel")
        self._enter()
        self._result(_lib.pri_reset(self._pri, channel), "restart")

    def _restart_next(self, acked: int | None) -> None:
        if not self._restart_queue or acked != self._restart_queue[0]:
            return
        self._restart_queue.pop(0)
        if self._restart_queue:
            self._enter()
            _lib.pri_reset(self._pri, self._restart_queue[0])

    def maintenance_service(self, span: int, channel: int | None,
                            state: str | int = "in_service") -> None:
        """SERVICE message (North American maintenance protocol): put a B-channel (or
        with channel None, the interface) in service, maintenance or out of service. The
        far end must accept SERVICE messages (set_service_messages)."""
        self._check_open()
        if self.switch not in _SERVICE_SWITCHES:
            raise PriError(f"maintenance_service: SERVICE messages exist only on "
                           f"{', '.join(sorted(_SERVICE_SWITCHES))} switches, not "
                           f"{self.switch}")
        if not isinstance(span, int) or not 0 <= span <= 127:
            raise PriError(f"maintenance_service: span must be 0..127, got {span!r}")
        status = _name(SERVICE_STATES, state, "service state")
        self._enter()
        res = _lib.pri_maintenance_service(
            self._pri, span, -1 if channel is None else self._chan_arg(channel,
                                                                       "maintenance_service"),
            status)
        self._result(res, "maintenance_service")

    def __repr__(self) -> str:
        return f"<PriLink {self.name} {self.node} {self.switch}>"


# ---- benchmark: python -m drivers.native.libpri -------------------------------------------
def _benchmark(calls: int = 2000) -> None:
    """Two links back to back in this process: full calls, SETUP to RELEASE COMPLETE."""
    import collections
    import time

    to_net: collections.deque[bytes] = collections.deque()
    to_cpe: collections.deque[bytes] = collections.deque()
    net = PriLink("network", "euroisdn_e1", to_cpe.append, name="net")
    cpe = PriLink("cpe", "euroisdn_e1", to_net.append, name="cpe")
    clock = [0.0]

    def pump() -> list[PriEvent]:
        out: list[PriEvent] = []
        while to_net or to_cpe:
            while to_net:
                out += net.receive_frame(to_net.popleft())
            while to_cpe:
                out += cpe.receive_frame(to_cpe.popleft())
        clock[0] += 0.001
        out += net.run_timers(clock[0]) + cpe.run_timers(clock[0])
        return out

    pump()
    start = time.perf_counter()
    for i in range(calls):
        call = net.new_call()
        net.setup(call, 1 + i % 30 + (i % 30 >= 15), True, called="8001", calling="13800138000")
        ring = next(e for e in pump() if isinstance(e, Ring))
        cpe.answer(ring.call, ring.channel)
        pump()
        net.hangup(call, 16)
        req = next(e for e in pump() if isinstance(e, HangupReq))
        cpe.hangup(req.call, 16)
        pump()
    elapsed = time.perf_counter() - start
    print(f"libpri back to back: {calls} calls in {elapsed:.2f} s = {calls / elapsed:.0f} "
          f"calls/s (SETUP..RELEASE COMPLETE, both sides in one process); "
          f"records left: net {net.active_calls()}, cpe {cpe.active_calls()}")


if __name__ == "__main__":
    _benchmark()
