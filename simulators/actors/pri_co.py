"""The central office on an E1 PRI span: libpri's network side over the simulated span.

`PriExchange` is the exchange's call handling, a functional core on its own clock (no
world, no cards): it places calls towards the host (SETUP with the calling and called
numbers' type, plan, presentation, the redirecting number, a B-channel preferred or
exclusive, the number en bloc or overlapped), answers or rejects the host's calls as a
plan says (CALL PROCEEDING, ALERTING with in-band ringback, CONNECT after a delay; or a
cause, with busy or congestion tone in-band first), clears calls with a cause, restarts
channels, and notes everything it saw (the causes the host sent among them). It plays
the CPE side instead when the host's span is the network side (pri_net).

`PriCentralOffice` puts an exchange on a span of the virtual cards: D-channel frames
through `VirtualCards` (send_dframe / take_dframes_from_host), audio on the span's
timeslots through one `PriBearer` actor per B-channel (tones and speech from the world's
media engine, DTMF heard from the host), span alarms (`alarm` / `clear_alarm`: while in
alarm no frame crosses the span, as on a cut line), and damaged frames (`garble` sends
junk, `corrupt` damages the next real frames), and line errors the card counts (`slip`,
`errors`: VirtualCards.span_counters, which reach cardd's SpanAlarm). Scenarios drive it with `pri: SPAN` steps
(see PRI_ACTIONS, PRI_CHECKS, PRI_FINAL_CHECKS); `attach_pri(world, cfg)` puts one on
every PRI span of a cardd configuration.
"""
from __future__ import annotations

import collections
import dataclasses
import enum
import random

from drivers.native import libpri as L
from drivers.signaling.pri import causes
from drivers.signaling.pri.pcap import PcapWriter
from drivers.signaling.span_health import alarm_bits, alarm_names

from . import Actor, ActorError, speech_like
from .span_faults import SpanFaults

E1_TIMESLOTS = [*range(1, 16), *range(17, 32)]
DEFAULT_ALERT_S = 0.3
KEEP_DONE = 200                 # finished calls kept in PriExchange.calls


@dataclasses.dataclass
class CoPlan:
    """What the exchange does with a call the host places to a number."""
    answer: bool = True             # answer after `after` seconds (False: ring for ever)
    after: float = 2.0
    alert_after: float = DEFAULT_ALERT_S
    ringback: bool = True           # ALERTING with in-band ringback (progress indicator 8)
    cause: int = 0                  # reject with this Q.850 cause instead
    inband: bool = True             # before a rejection: PROGRESS + busy/congestion tone
    tone_s: float = 2.0             # ...for this long
    stuck: bool = False             # never complete a release the host starts
    assign_channel: int = 0         # answer the SETUP naming this B-channel instead
    digits: int = 0                 # overlap receiving: the number is complete at this length
    talk: bool = True               # speech on the channel once connected


@dataclasses.dataclass(eq=False)
class CoCall:
    """One call as the exchange sees it."""
    id: int
    to_host: bool                   # placed by the exchange towards the host
    call: L.PriCall
    timeslot: int | None
    state: str = "setup"            # setup, overlap, proceeding, alerting, connected,
    #                                 clearing, done
    called: str = ""
    calling: str = ""
    ring: L.Ring | None = None      # the host's SETUP (calls from the host)
    plan: CoPlan | None = None
    answered: bool = False
    cause_from_host: int = 0        # cause of the host's DISCONNECT/RELEASE
    cause_to_host: int = 0
    events: list = dataclasses.field(default_factory=list)
    due: dict = dataclasses.field(default_factory=dict)     # what -> time (s)
    pending_info: str = ""

    @property
    def active(self) -> bool:
        return self.state != "done"


class PriExchange:
    """One span's exchange (libpri network side by default) on the caller's clock."""

    def __init__(self, span: int, send, *, node: str = "network",
                 switch: str = "euroisdn_e1", timeslots=None, name: str | None = None,
                 media=None, hunt_descending: bool | None = None):
        self.span = span
        self.node = node
        self.timeslots = list(timeslots or E1_TIMESLOTS)
        self.media = media or (lambda timeslot, what: None)
        self._send = send
        self._out: list[bytes] = []
        self.link = L.PriLink(node, switch, self._out.append, name=name or f"co-span{span}",
                              bchannels=self.timeslots, overlap_dial=True,
                              service_messages=switch in ("ni2", "dms100", "lucent5e",
                                                          "att4ess"))
        # The network hunts from the bottom, the CPE from the top (the host does the
        # opposite), so that glare stays rare.
        descending = (node != "network") if hunt_descending is None else hunt_descending
        self.hunt = sorted(self.timeslots, reverse=descending)
        self.now = 0.0
        self.plans: dict[str, CoPlan] = {"default": CoPlan()}
        self.calls: list[CoCall] = []
        self.by_call: dict[int, CoCall] = {}
        self.dchannel_up = False
        self.dchannel_events: list[tuple[float, bool]] = []
        self.restarts: list[int | None] = []       # channels the host restarted
        self.rejected_by_host = 0
        # Totals over the whole run (calls themselves are kept only for a while).
        self.totals: collections.Counter = collections.Counter()
        self._next_id = 1
        self.flush()

    # ---- frames and time ----------------------------------------------------------------
    def flush(self) -> None:
        while self._out:
            self._send(self._out.pop(0))

    def receive(self, frame: bytes) -> None:
        try:
            events = self.link.receive_frame(frame)
        except L.PriError:
            events = []
        for e in events:
            self._event(e)
        self.flush()

    def step(self, now: float) -> None:
        self.now = max(self.now, now)
        if self.now > self.link.now:       # libpri's clock follows ours every step
            for e in self.link.run_timers(self.now):
                self._event(e)
        for c in list(self.calls):
            if c.active and c.due:
                self._call_timers(c)
        self.flush()
        if len(self.calls) > 2 * KEEP_DONE:            # keep the recent past for reports
            done = [c for c in self.calls if not c.active]
            old = {id(c) for c in done[:-KEEP_DONE]}
            self.calls = [c for c in self.calls if id(c) not in old]

    # ---- what scenarios and tests ask for -------------------------------------------------
    def busy_timeslots(self) -> set[int]:
        return {c.timeslot for c in self.calls if c.active and c.timeslot is not None}

    def free_timeslot(self) -> int | None:
        busy = self.busy_timeslots()
        return next((ts for ts in self.hunt if ts not in busy), None)

    def place(self, number: str, ani: str = "", *, channel: int | None = None,
              exclusive: bool = True, number_ton: str = "unknown", number_plan: str = "isdn",
              ani_ton: str = "unknown", ani_plan: str = "isdn",
              presentation: str = "allowed", screening: str = "network",
              name: str = "", redirecting: str = "", redirecting_reason: str = "unknown",
              overlap_digits: int = 0) -> CoCall:
        """SETUP towards the host. channel None: a free one (exclusive); 0 with exclusive
        False: "any channel". overlap_digits: send only that many digits in SETUP and
        the rest with INFORMATION once the host acknowledges."""
        if channel is None:
            channel = self.free_timeslot()
            if channel is None:
                raise ActorError(f"span {self.span}: every B-channel is busy")
        if channel and channel not in self.timeslots:
            raise ActorError(f"span {self.span}: no B-channel {channel} "
                             f"(timeslots 1-15, 17-31)")
        call = self.link.new_call()
        first = number[:overlap_digits] if overlap_digits else number
        self.link.setup(call, channel or None, exclusive, called=first, calling=ani,
                        called_ton=number_ton, called_plan=number_plan, calling_ton=ani_ton,
                        calling_plan=ani_plan, calling_presentation=presentation,
                        calling_screening=screening, calling_name=name,
                        redirecting=redirecting or None,
                        redirecting_reason=redirecting_reason, overlap=bool(overlap_digits))
        c = self._new(True, call, channel or None, called=number, calling=ani)
        c.pending_info = number[overlap_digits:] if overlap_digits else ""
        c.events.append("setup")
        self.flush()
        return c

    def hang_up(self, c: CoCall, cause: int = causes.NORMAL_CLEARING) -> None:
        if not c.active or c.state == "clearing":
            return
        c.cause_to_host = cause
        c.events.append(f"hangup {cause}")
        c.due.clear()
        self.media(c.timeslot, "quiet")
        if self.link.hangup(c.call, cause):
            c.state = "clearing"
        else:
            self._done(c)
        self.flush()

    def hang_up_all(self, cause: int = causes.NORMAL_CLEARING) -> int:
        calls = [c for c in self.calls if c.active and c.state != "clearing"]
        for c in calls:
            self.hang_up(c, cause)
        return len(calls)

    def restart(self, timeslot: int | None = None) -> None:
        """RESTART one B-channel (None: every one, one after the other); our calls on it
        end at once."""
        for c in self.calls:
            if c.active and (timeslot is None or c.timeslot == timeslot):
                self.link.hangup(c.call, causes.TEMPORARY_FAILURE)
                self._done(c)
        self.link.restart(timeslot)
        self.flush()

    def lose_everything(self, cause: int = causes.NETWORK_OUT_OF_ORDER) -> None:
        """The line failed: every call is gone at once (as an alarm does)."""
        for c in self.calls:
            if c.active:
                c.events.append(f"lost {cause}")
                self.link.hangup(c.call, cause)
                self._done(c)
        self._out.clear()

    def call_on(self, timeslot: int) -> CoCall | None:
        for c in reversed(self.calls):
            if c.active and c.timeslot == timeslot:
                return c
        return None

    def count(self, state: str | None = None, to_host: bool | None = None) -> int:
        return sum(1 for c in self.calls if (state is None or c.state == state)
                   and (to_host is None or c.to_host == to_host))

    # ---- libpri events ------------------------------------------------------------------
    def _new(self, to_host: bool, call, timeslot, **kw) -> CoCall:
        c = CoCall(id=self._next_id, to_host=to_host, call=call, timeslot=timeslot, **kw)
        self.totals["to_host" if to_host else "from_host"] += 1
        self._next_id += 1
        self.calls.append(c)
        self.by_call[id(call)] = c
        return c

    def _done(self, c: CoCall) -> None:
        if c.state == "done":
            return
        c.state = "done"
        self.totals["cleared"] += 1
        for cause in {c.cause_from_host, c.cause_to_host} - {0}:
            self.totals[f"cause {cause}"] += 1
        c.due.clear()
        self.by_call.pop(id(c.call), None)
        self.media(c.timeslot, "quiet")

    def _event(self, e) -> None:
        if isinstance(e, L.DchanUp):
            self.dchannel_up = True
            self.dchannel_events.append((self.now, True))
            return
        if isinstance(e, L.DchanDown):
            self.dchannel_up = False
            self.dchannel_events.append((self.now, False))
            return
        if isinstance(e, L.Ring):
            return self._ring(e)
        if isinstance(e, L.Restart):
            self.restarts.append(e.channel)
            for c in self.calls:
                if c.active and (e.channel is None or c.timeslot == e.channel):
                    self.link.hangup(c.call, causes.TEMPORARY_FAILURE)
                    c.events.append("restarted")
                    self._done(c)
            return
        c = self.by_call.get(id(getattr(e, "call", None)))
        if c is None:
            if isinstance(e, L.HangupReq):
                self.link.hangup(e.call, e.cause if e.cause > 0 else causes.NORMAL_CLEARING)
            return
        name = type(e).__name__
        c.events.append(name)
        if isinstance(e, L.SetupAck):
            c.state = "overlap"
            if c.pending_info:
                self.link.information(c.call, c.pending_info)
                c.pending_info = ""
        elif isinstance(e, L.Proceeding):
            c.state = "proceeding"
            if e.channel:
                c.timeslot = e.channel
        elif isinstance(e, L.Ringing):
            c.state = "alerting"
            if e.channel:
                c.timeslot = e.channel
        elif isinstance(e, L.Answer):
            c.state = "connected"
            c.answered = True
            self.totals["answered"] += 1
            if e.channel:
                c.timeslot = e.channel
            self.media(c.timeslot, "talk")
        elif isinstance(e, L.Info):
            self._digits(c, e.digits, e.complete)
        elif isinstance(e, L.HangupReq):
            c.cause_from_host = e.cause
            if c.plan is not None and c.plan.stuck:
                c.state = "clearing"            # and never answer it
                return
            self.link.hangup(c.call, e.cause if e.cause > 0 else causes.NORMAL_CLEARING)
            c.state = "clearing"
            c.due.clear()
            self.media(c.timeslot, "quiet")
        elif isinstance(e, (L.Hangup, L.HangupAck)):
            if isinstance(e, L.Hangup) and not c.cause_from_host:
                c.cause_from_host = e.cause
                if c.to_host and not c.answered and e.cause in (
                        causes.REQUESTED_CHANNEL_UNAVAILABLE, causes.NO_CIRCUIT_AVAILABLE):
                    self.rejected_by_host += 1
            self._done(c)

    def _ring(self, ring: L.Ring) -> None:
        ts = ring.channel
        mine = self.call_on(ts) if ts is not None else None
        if mine is not None and self.node == "cpe" and ring.exclusive and mine.to_host \
                and mine.state == "setup":
            # Glare, and we are the CPE: the network's call has priority; ours gives way.
            mine.events.append("glare")
            mine.cause_from_host = causes.REQUESTED_CHANNEL_UNAVAILABLE
            self.link.hangup(mine.call, causes.REQUESTED_CHANNEL_UNAVAILABLE)
            self._done(mine)
            mine = None
        if mine is not None:
            if ring.exclusive:
                self.link.hangup(ring.call, causes.REQUESTED_CHANNEL_UNAVAILABLE)
                return
            ts = None
        if ts is None:
            ts = self.free_timeslot()
            if ts is None:
                self.link.hangup(ring.call, causes.NO_CIRCUIT_AVAILABLE)
                return
        c = self._new(False, ring.call, ts, called=ring.called_number,
                      calling=ring.calling_number, ring=ring)
        c.events.append("Ring")
        c.plan = self.plans.get(ring.called_number) or self.plans["default"]
        if c.plan.assign_channel:
            c.timeslot = c.plan.assign_channel
        if not ring.complete and c.plan.digits and len(c.called) < c.plan.digits:
            self.link.need_more_info(c.call, c.timeslot)
            c.state = "overlap"
            return
        self._route(c)

    def _digits(self, c: CoCall, digits: str, complete: bool) -> None:
        c.called += digits
        if c.state == "overlap" and (complete or len(c.called) >= c.plan.digits):
            c.plan = self.plans.get(c.called) or c.plan
            self._route(c)

    def _route(self, c: CoCall) -> None:
        plan = c.plan
        self.link.proceeding(c.call, c.timeslot)
        c.state = "proceeding"
        if plan.cause:
            if plan.inband:
                self.link.progress(c.call, c.timeslot, inband=True)
                self.media(c.timeslot, causes.tone_for(plan.cause))
                c.due["reject"] = self.now + plan.tone_s
            else:
                c.due["reject"] = self.now
            return
        c.due["alert"] = self.now + plan.alert_after
        if plan.answer:
            c.due["answer"] = self.now + max(plan.after, plan.alert_after)

    def _call_timers(self, c: CoCall) -> None:
        for what, when in sorted(c.due.items(), key=lambda kv: kv[1]):
            if when > self.now or not c.active:
                continue
            del c.due[what]
            if what == "alert" and c.state == "proceeding":
                self.link.alerting(c.call, c.timeslot, inband=c.plan.ringback)
                c.state = "alerting"
                if c.plan.ringback:
                    self.media(c.timeslot, "ringback")
            elif what == "answer" and c.state in ("proceeding", "alerting"):
                self.link.answer(c.call, c.timeslot)
                c.state = "connected"
                c.answered = True
                self.totals["answered"] += 1
                self.media(c.timeslot, "talk" if c.plan.talk else "quiet")
            elif what == "reject":
                self.hang_up(c, c.plan.cause)


# ---- on the virtual cards ----------------------------------------------------------------
class BearerState(enum.Enum):
    """A B-channel as the exchange sees it (for status views)."""
    IDLE = "idle"
    SETUP = "setup"
    OVERLAP = "overlap"
    PROCEEDING = "proceeding"
    ALERTING = "alerting"
    CONNECTED = "connected"
    CLEARING = "clearing"


class PriBearer(Actor):
    """The far end's audio on one B-channel: tones, speech, and the digits it hears; DTMF
    keyed into the channel (a caller in an IVR), and a capture of the audio the host sent
    (law-coded, as it came off the wire) for checks against prompt files."""
    kind = "pri_bearer"
    CAPTURE_MAX_S = 300.0           # a capture keeps the last five minutes

    def __init__(self, world, port, timeslot: int):
        super().__init__(world, port)
        self.timeslot = timeslot
        self.office: "PriCentralOffice | None" = None
        self.playing = "quiet"
        self.digits = ""
        self.quiet_caller = False       # an IVR caller listens: no talk when answered
        self.capturing = False
        self._heard: list = []
        self._talk = None

    # ---- a caller's keys and ears -------------------------------------------------------------
    def send_digits(self, digits: str) -> None:
        """Key DTMF into the B-channel (100 ms tone, 100 ms gap each), as a caller's phone
        does through the exchange; bad digits raise ActorError."""
        from drivers.media.engine import MediaError
        try:
            self.engine.send_dtmf(self.row, digits, tag="keys")
        except MediaError as e:
            raise ActorError(str(e)) from None
        self.note(f"keyed {digits}")

    def say(self, seconds: float, level_dbm0: float = -20.0) -> None:
        """Talk once for `seconds` (a caller leaving a message after the beep), then quiet."""
        if not 0 < seconds <= 600:
            raise ActorError(f"talk: seconds must be above 0 and at most 600, got {seconds}")
        self.engine.play(self.row, speech_like(seconds, level_dbm0, seed=self.channel), tag="say")
        self.note(f"talks {seconds:g} s")

    def start_capture(self) -> None:
        """Forget what was heard so far and record what the host sends from now on."""
        self._heard = []
        self.capturing = True

    def heard_codes(self):
        """What the host sent since start_capture, law-coded uint8 (1-D)."""
        import numpy as np
        if not self._heard:
            return np.zeros(0, dtype=np.uint8)
        return np.concatenate(self._heard)

    def after_media(self, tick: int) -> None:
        if self.capturing:
            self._heard.append(self.world.cards.from_host(self.channel).copy())
            if len(self._heard) > self.CAPTURE_MAX_S / self.world.tick_s:
                del self._heard[:len(self._heard) // 10]

    def play(self, what: str) -> None:
        if what == "talk" and self.quiet_caller:
            what = "quiet"
        if what == self.playing:
            return
        self.playing = what
        self.engine.stop(self.row)
        if what in ("ringback", "busy", "congestion"):
            self.engine.play_tone(self.row, what)
        elif what == "talk":
            self._talk = speech_like(6.0, -20.0, seed=self.channel)
            self.engine.play(self.row, self._talk, tag="talk")
        if what != "talk":
            self._talk = None

    def on_play_done(self, tag, interrupted: bool) -> None:
        if tag == "talk" and not interrupted and self.playing == "talk":
            self.engine.play(self.row, self._talk, tag="talk")

    def on_digit(self, digit: str) -> None:
        self.digits += digit

    def _call(self):
        return self.office.co.call_on(self.timeslot) if self.office is not None else None

    @property
    def state(self) -> BearerState:
        call = self._call()
        return BearerState.IDLE if call is None else BearerState(call.state)

    @property
    def calling_number(self) -> str:
        call = self._call()
        return call.calling if call is not None else ""

    def describe(self) -> str:
        return f"B-channel {self.timeslot} playing {self.playing}, digits {self.digits!r}"


class PriCentralOffice(SpanFaults):
    """An exchange on one PRI span of the world's virtual cards (a director of the world)."""
    kind = "pri"

    def __init__(self, world, span: int, *, node: str = "network",
                 switch: str = "euroisdn_e1", pcap: PcapWriter | None = None):
        self.world = world
        self.cards = world.cards
        self.span = span
        ports = sorted((p for p in self.cards.ports if p.info.span == span),
                       key=lambda p: p.channel)
        if len(ports) != len(E1_TIMESLOTS):
            raise ValueError(f"span {span}: a PRI span has {len(E1_TIMESLOTS)} B-channels, "
                             f"the cards have {len(ports)} ports on it")
        self.bearers: dict[int, PriBearer] = {}
        self.channel_of: dict[int, int] = {}
        for port, ts in zip(ports, E1_TIMESLOTS):
            bearer = PriBearer(world, port, ts)
            bearer.office = self
            world._add(bearer)
            self.bearers[ts] = bearer
            self.channel_of[ts] = port.channel
        self.timeslot_of = {ch: ts for ts, ch in self.channel_of.items()}
        self.pcap = pcap
        self.alarms = 0
        self.frames_to_host = 0
        self.frames_from_host = 0
        self.garbled = 0
        self._corrupt: collections.deque[str] = collections.deque()
        self._last_frame = b""
        self._rng = random.Random(span * 7919)
        self.log: list[tuple[int, str]] = []
        self.co = PriExchange(span, self._to_host, node=node, switch=switch,
                              media=self._media, name=f"co-span{span}")

    # ---- the tick -------------------------------------------------------------------------
    @property
    def tick(self) -> int:
        return self.world.tick

    def note(self, text: str) -> None:
        self.log.append((self.tick, text))
        del self.log[:-50]

    def from_host(self, frame: bytes) -> None:
        if self.alarms:
            return                         # the line is cut: nothing arrives
        self.frames_from_host += 1
        if self.pcap is not None:
            self.pcap.write(frame, False, self.tick * self.world.tick_s)
        self.co.receive(frame)

    def step(self, tick: int) -> None:
        self.co.step(tick * self.world.tick_s)

    def _to_host(self, frame: bytes) -> None:
        if self.alarms:
            return
        self._last_frame = frame
        if self._corrupt:
            frame = self._damage(frame, self._corrupt.popleft())
        if self.pcap is not None:
            self.pcap.write(frame, True, self.tick * self.world.tick_s)
        self.frames_to_host += 1
        self.cards.send_dframe(self.span, frame)

    def _media(self, timeslot, what: str) -> None:
        bearer = self.bearers.get(timeslot)
        if bearer is not None:
            bearer.play(what)

    def _damage(self, frame: bytes, mode: str) -> bytes:
        if mode == "truncate":
            return frame[:self._rng.randrange(0, max(1, len(frame)))]
        if mode == "flip" and frame:
            i = self._rng.randrange(len(frame))
            return frame[:i] + bytes([frame[i] ^ (1 << self._rng.randrange(8))]) + frame[i + 1:]
        return bytes(self._rng.randrange(256) for _ in range(self._rng.randrange(0, 300)))

    # ---- scenario actions -------------------------------------------------------------------
    def call(self, number: str, ani: str = "", count: int = 1, channel: int = 0,
             exclusive: bool = True, number_ton: str = "unknown", number_plan: str = "isdn",
             ani_ton: str = "unknown", ani_plan: str = "isdn", presentation: str = "allowed",
             screening: str = "network", name: str = "", redirecting: str = "",
             redirecting_reason: str = "unknown", overlap_digits: int = 0) -> list[CoCall]:
        if not self.co.dchannel_up:
            raise ActorError(f"span {self.span}: the D-channel is down")
        if channel and count != 1:
            raise ActorError("call: a channel can be named only for a single call")
        if channel and channel not in self.timeslot_of:
            raise ActorError(f"call: channel {channel} is not on span {self.span} "
                             f"(channels {min(self.timeslot_of)}-{max(self.timeslot_of)})")
        out = []
        for _ in range(count):
            ts = self.timeslot_of[channel] if channel else (None if exclusive else 0)
            out.append(self.co.place(number, ani, channel=ts, exclusive=exclusive,
                                     number_ton=number_ton, number_plan=number_plan,
                                     ani_ton=ani_ton, ani_plan=ani_plan,
                                     presentation=presentation, screening=screening, name=name,
                                     redirecting=redirecting,
                                     redirecting_reason=redirecting_reason,
                                     overlap_digits=overlap_digits))
        self.note(f"{count} call(s) to {number} placed")
        return out

    def hang_up(self, channel: int = 0, cause: int = causes.NORMAL_CLEARING,
                all: bool = False) -> None:
        if all:
            n = self.co.hang_up_all(cause)
            self.note(f"{n} call(s) cleared with cause {cause}")
            return
        ts = self.timeslot_of.get(channel)
        c = self.co.call_on(ts) if ts is not None else None
        if c is None:
            raise ActorError(f"span {self.span}: no call on channel {channel}")
        self.co.hang_up(c, cause)
        self.note(f"call on timeslot {ts} cleared with cause {cause}")

    def plan(self, number: str = "default", answer: bool = True, after: float = 2.0,
             cause: int = 0, inband: bool = True, tone_s: float = 2.0, stuck: bool = False,
             assign_channel: int = 0, digits: int = 0, ringback: bool = True,
             talk: bool = True) -> None:
        if cause:
            causes.check(cause)
        if assign_channel and assign_channel not in self.timeslot_of:
            raise ActorError(f"plan: channel {assign_channel} is not on span {self.span}")
        ts = self.timeslot_of[assign_channel] if assign_channel else 0
        self.co.plans[str(number)] = CoPlan(answer=answer, after=after, cause=cause,
                                            inband=inband, tone_s=tone_s, stuck=stuck,
                                            assign_channel=ts, digits=digits,
                                            ringback=ringback, talk=talk)

    def alarm(self, alarms: str = "red") -> None:
        bits = alarm_bits(alarms)
        if not bits:
            raise ActorError("alarm needs at least one alarm name")
        self.alarms = bits
        self.co.lose_everything()
        self.cards.set_span_alarms(self.span, bits)
        self.note(f"span alarm {'+'.join(alarm_names(bits))}")

    def clear_alarm(self) -> None:
        self.alarms = 0
        self.cards.set_span_alarms(self.span, 0)
        self.note("span alarm cleared")

    def garble(self, frames: int = 10, mode: str = "garbage") -> None:
        """Send `frames` damaged frames now: random junk or truncated copies of the last."""
        if mode not in ("garbage", "truncate", "flip"):
            raise ActorError(f"garble mode must be garbage, truncate or flip, not {mode!r}")
        base = self._last_frame or bytes([0x02, 0x01, 0x7F])
        for _ in range(frames):
            frame = self._damage(base, mode)
            self.garbled += 1
            self.cards.send_dframe(self.span, frame)
        self.note(f"{frames} damaged frame(s) ({mode})")

    def corrupt(self, frames: int = 1, mode: str = "truncate") -> None:
        """Damage the next `frames` real frames to the host."""
        if mode not in ("garbage", "truncate", "flip"):
            raise ActorError(f"corrupt mode must be garbage, truncate or flip, not {mode!r}")
        self._corrupt.extend([mode] * frames)

    def dtmf(self, channel: int, digits: str) -> None:
        """The caller on `channel` keys `digits` (DTMF in the B-channel)."""
        self._bearer(channel, "dtmf").send_digits(digits)

    def talk(self, channel: int, seconds: float, level_dbm0: float = -20.0) -> None:
        """The caller on `channel` speaks for `seconds` (synthetic speech at `level_dbm0`)."""
        self._bearer(channel, "talk").say(seconds, level_dbm0)

    def listen(self, channel: int = 0, quiet: bool = True) -> None:
        """Callers on `channel` (0: every B-channel) capture what they hear from now on,
        and (quiet) say nothing when answered, as callers in an IVR do."""
        bearers = [self._bearer(channel, "listen")] if channel else list(self.bearers.values())
        for b in bearers:
            b.quiet_caller = quiet
            b.start_capture()

    def _bearer(self, channel: int, what: str) -> PriBearer:
        bearer = self.bearers.get(self.timeslot_of.get(channel, -1))
        if bearer is None:
            raise ActorError(f"{what}: channel {channel} is not on span {self.span} "
                             f"(channels {min(self.timeslot_of)}-{max(self.timeslot_of)})")
        return bearer

    def restart(self, channel: int = 0) -> None:
        if channel and channel not in self.timeslot_of:
            raise ActorError(f"restart: channel {channel} is not on span {self.span}")
        self.co.restart(self.timeslot_of[channel] if channel else None)
        self.note(f"RESTART {'channel ' + str(channel) if channel else 'all channels'}")

    # ---- scenario checks ---------------------------------------------------------------------
    def check(self, what: str, /, **params) -> bool:
        return bool(getattr(self, f"_check_{what}")(**params))

    def _check_dchannel_up(self) -> bool:
        return self.co.dchannel_up

    def _check_dchannel_down(self) -> bool:
        return not self.co.dchannel_up

    def _check_connected(self, count: int = 1) -> bool:
        return self.co.count("connected") >= count

    def _check_answered(self, count: int = 1) -> bool:
        return self.co.totals["answered"] >= count

    def _check_idle(self) -> bool:
        return self.co.count() == self.co.count("done")

    def _check_cleared(self, count: int = 1, cause: int = 0) -> bool:
        return self._cleared(cause) >= count

    def _check_calls_from_host(self, count: int = 1) -> bool:
        return self.co.totals["from_host"] >= count

    def _check_heard(self, channel: int, digits: str) -> bool:
        bearer = self.bearers.get(self.timeslot_of.get(channel))
        return bearer is not None and bearer.digits.endswith(digits)

    def _check_heard_prompt(self, channel: int, text: str = "", file: str = "", lang: str = "zh",
                            tts_cache: str = "run/tts-cache", tolerance: float = 0.02) -> bool:
        from simulators.prompt_match import expected_codes, find_prompt
        want = expected_codes(text=text, file=file, lang=lang, tts_cache=tts_cache,
                              law=self.cards.law)
        return find_prompt(self._bearer(channel, "heard_prompt").heard_codes(), want,
                           tolerance) >= 0

    def _cleared(self, cause: int = 0) -> int:
        return self.co.totals[f"cause {cause}" if cause else "cleared"]

    def observed(self, what: str, value) -> tuple[bool, str]:
        have = {"answered": self.co.totals["answered"],
                "cleared": self._cleared(), "calls_from_host": self.co.totals["from_host"],
                "rejected_by_host": self.co.rejected_by_host,
                "restarts": len(self.co.restarts)}[what]
        return have == value, f"{what} {have}"

    def close(self) -> None:
        if self.pcap is not None:
            self.pcap.close()

    def describe(self) -> str:
        states = collections.Counter(c.state for c in self.co.calls)
        recent = "; ".join(f"tick {t}: {x}" for t, x in self.log[-5:]) or "nothing yet"
        return (f"span {self.span} exchange: D-channel {'up' if self.co.dchannel_up else 'down'}"
                f", calls {dict(states)}; {recent}")


class PriNetwork:
    """The world's director for every PRI span: routes the host's D-channel frames to each
    span's exchange and runs them, once per tick (before the actors)."""

    def __init__(self, world):
        self.world = world
        self.offices: dict[int, PriCentralOffice] = {}

    def step(self, tick: int) -> None:
        for span, frame in self.world.cards.take_dframes_from_host():
            office = self.offices.get(span)
            if office is not None:
                office.from_host(frame)
        for office in self.offices.values():
            office.step(tick)


def attach_pri(world, cfg, pcap: str | None = None) -> dict[int, PriCentralOffice]:
    """An exchange on every PRI span of a cardd configuration (the network side for a
    pri_cpe span, the CPE side for pri_net). Returns {span: PriCentralOffice}."""
    spans = [s for s in cfg.spans if s.signaling in ("pri_cpe", "pri_net")]
    if not spans:
        return {}
    writer = PcapWriter(pcap, network_side=True) if pcap else None
    network = PriNetwork(world)
    for s in spans:
        node = "network" if s.signaling == "pri_cpe" else "cpe"
        if writer is not None and node == "cpe":
            writer.network_side = False
        network.offices[s.span] = PriCentralOffice(world, s.span, node=node,
                                                   switch=s.switchtype, pcap=writer)
    world.directors.append(network)
    network.pcap = writer
    return network.offices


# ---- the scenario vocabulary (simulators.scenario reads these) -------------------------------
REQUIRED = "REQUIRED"          # simulators.scenario maps it to its own marker
PRI_ACTIONS: dict[str, dict[str, tuple]] = {
    "call": {"number": (str, REQUIRED), "ani": (str, ""), "count": (int, 1),
             "channel": (int, 0), "exclusive": (bool, True), "number_ton": (str, "unknown"),
             "number_plan": (str, "isdn"), "ani_ton": (str, "unknown"),
             "ani_plan": (str, "isdn"), "presentation": (str, "allowed"),
             "screening": (str, "network"), "name": (str, ""), "redirecting": (str, ""),
             "redirecting_reason": (str, "unknown"), "overlap_digits": (int, 0)},
    "hang_up": {"channel": (int, 0), "cause": (int, 16), "all": (bool, False)},
    "plan": {"number": (str, "default"), "answer": (bool, True), "after": (float, 2.0),
             "cause": (int, 0), "inband": (bool, True), "tone_s": (float, 2.0),
             "stuck": (bool, False), "assign_channel": (int, 0), "digits": (int, 0),
             "ringback": (bool, True), "talk": (bool, True)},
    "alarm": {"alarms": (str, "red")},
    "clear_alarm": {},
    "slip": {"count": (int, 1)},
    "errors": {"crc4": (int, 0), "bpv": (int, 0), "frame": (int, 0), "ebit": (int, 0),
               "fas": (int, 0)},
    "garble": {"frames": (int, 10), "mode": (str, "garbage")},
    "corrupt": {"frames": (int, 1), "mode": (str, "truncate")},
    "restart": {"channel": (int, 0)},
    "dtmf": {"channel": (int, REQUIRED), "digits": (str, REQUIRED)},
    "listen": {"channel": (int, 0), "quiet": (bool, True)},
}
PRI_CHECKS: dict[str, dict[str, tuple]] = {
    "dchannel_up": {}, "dchannel_down": {}, "idle": {},
    "connected": {"count": (int, 1)}, "answered": {"count": (int, 1)},
    "cleared": {"count": (int, 1), "cause": (int, 0)},
    "calls_from_host": {"count": (int, 1)},
    "heard": {"channel": (int, REQUIRED), "digits": (str, REQUIRED)},
    "heard_prompt": {"channel": (int, REQUIRED), "text": (str, ""), "file": (str, ""),
                     "lang": (str, "zh"), "tts_cache": (str, "run/tts-cache"),
                     "tolerance": (float, 0.02)},
}
PRI_FINAL_CHECKS = {"answered": int, "cleared": int, "calls_from_host": int,
                    "rejected_by_host": int, "restarts": int}


def span_actors(world, cfg, scenario=None, pcap: str | None = None) -> dict:
    """The span-level actors of a run, keyed as scenario steps name them (("pri", span)):
    an exchange on every PRI span. A scenario naming a span without one is refused."""
    offices = attach_pri(world, cfg, pcap=pcap)
    actors = {("pri", span): office for span, office in offices.items()}
    if scenario is not None:
        from simulators.scenario import ScenarioError
        for (kind, span), line in sorted(scenario.spans_used().items()):
            if kind == "pri" and (kind, span) not in actors:
                raise ScenarioError(scenario.path, line, kind,
                                    f"span {span} is not a PRI span of the configuration "
                                    f"(PRI spans: {', '.join(map(str, offices)) or 'none'})")
    return actors
