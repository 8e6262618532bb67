"""The simulator's MFC/R2 far end: a central office on an E1 CAS span.

It is our own `R2Line` in the other role, one per timeslot, over the simulated span: the
office reads the host's ABCD bits (`Port.cas_from_host`), sends its own with
`VirtualCards.set_cas_to_host` (the host sees BITSCHANGED), and runs compelled MF
through a `MediaEngine` of its own (one row per timeslot), reading what the host sent
(`from_host`) and writing what it sends (`to_host`). It is a `World` director, so it runs
at the start of each tick, before the world's media (which leaves E1 rows alone).

`r2: SPAN` in scenarios is the office (R2_ACTIONS / R2_CHECKS / R2_FINAL_CHECKS below;
`attach_r2(world, cfg)` puts one on every R2 span of a cardd configuration). Per
timeslot, an `R2Trunk` actor is what tests script directly:
    call(dnis, ani="", category="")        place a call to the host (an inbound call)
    answer() / accept() / reject(signal="busy") / hang_up()
    talk(sound="speech") / quiet()         speech on a connected call
    block() / unblock()                    the blocking signal on an idle channel
and what happens to calls from the host (outbound calls) unless scripted, by options:
    on_incoming = "answer" (default) | "accept" | "reject" | "ignore"
    answer_after = 2.0 (seconds, or a scenario Duration: rings this long, then answers)
    reject_with = "busy" | "unallocated" | "congestion" | "out_of_order"
    hang_up_after = None (seconds after answer: the far end clears)
Checks (`expect` steps): offered, ringing, answered, connected, cleared(cause=None),
idle, dnis(number), ani(number). Final observations: dnis, ani, category, calls,
answered, cleared_cause.

`HostSide` is a cardd stand-in for in-process runs (tests, benchmarks): R2 lines on the
host's rows, the host's media engine, actions carried out against the same cards.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from drivers.media.engine import MediaEngine
from drivers.signaling import events as ev
from drivers.signaling.r2 import R2Line, R2Options, SetCas, Variant, load_variant

from . import Actor, ActorError, speech_like, test_tone
from .span_faults import SpanFaults

REFUSALS = {"busy": 17, "unallocated": 1, "congestion": 42, "out_of_order": 27}
INCOMING_PLANS = ("answer", "accept", "reject", "ignore")


@dataclasses.dataclass
class CallRecord:
    """One call as the far end saw it."""
    direction: str              # "to_host" (we called) | "from_host" (the host called us)
    dnis: str = ""
    ani: str = ""
    category: str = ""
    started: int = 0
    answered: int | None = None
    cleared: int | None = None
    cause: int | None = None
    reason: str = ""
    events: list = dataclasses.field(default_factory=list)


class R2Trunk(Actor):
    """The far end of one E1 timeslot."""
    kind = "r2"

    def __init__(self, world, port, office: "R2Office", on_incoming: str = "answer",
                 answer_after=None, reject_with: str = "busy", hang_up_after=None):
        super().__init__(world, port)
        self.office = office
        self.engine = office.engine
        self.erow = office.row_of[port.channel]           # row in the office's engine
        if on_incoming not in INCOMING_PLANS:
            raise ValueError(f"on_incoming must be one of {', '.join(INCOMING_PLANS)}, "
                             f"not {on_incoming!r}")
        if reject_with not in REFUSALS:
            raise ValueError(f"reject_with must be one of {', '.join(REFUSALS)}, not {reject_with!r}")
        self.on_incoming = on_incoming
        self.answer_after = self.to_ticks(answer_after, 2.0)
        self.reject_with = reject_with
        self.hang_up_after = self.to_ticks(hang_up_after)
        self.line = R2Line(port.channel, office.variant,
                           R2Options(tick_ms=office.tick_ms, ringback_tone="ringback"))
        self.calls: list[CallRecord] = []
        self.current: CallRecord | None = None
        self.seen_bits: int | None = None
        self._due: list[tuple[int, str]] = []             # (tick, action) scheduled
        self._talking = False

    # ---- scenario actions ----------------------------------------------------------------------
    def call(self, dnis: str, ani: str = "", category: str = "") -> None:
        self._command("dial", number=str(dnis), ani=str(ani or ""), category=category or "")
        self.current = CallRecord("to_host", dnis=str(dnis), ani=str(ani or ""),
                               category=category or "", started=self.tick)
        self.calls.append(self.current)
        self.note(f"calling the host: dnis {dnis} ani {ani or '-'}")

    def answer(self) -> None:
        state = self.line.state.value
        if state == "in_ringing" or state == "in_offered":
            self._command("answer")
        elif state in ("in_accepting", "in_answering"):
            self._command("answer")
        else:
            raise ActorError(f"r2 {self.channel} has no call from the host to answer ({state})")

    def accept(self) -> None:
        self._command("accept")

    def reject(self, signal: str = "busy") -> None:
        if signal not in REFUSALS:
            raise ActorError(f"r2 {self.channel}: unknown refusal {signal!r} "
                             f"(known: {', '.join(REFUSALS)})")
        self._command("hangup", cause=REFUSALS[signal])

    def hang_up(self) -> None:
        self._command("hangup")

    def talk(self, sound: str = "speech", level_dbm0: float = -20.0) -> None:
        clip = speech_like(6.0, level_dbm0) if sound == "speech" else test_tone(6.0, level_dbm0=level_dbm0)
        self.engine.play(self.erow, clip, tag="talk")
        self._talking = True

    def quiet(self) -> None:
        self._talking = False
        self.engine.stop(self.erow)

    def block(self) -> None:
        self._command("set_service", in_service=False)

    def unblock(self) -> None:
        self._command("set_service", in_service=True)

    def _command(self, name: str, **args) -> None:
        try:
            actions = self.line.on_command(name, self.tick, **args)
        except Exception as e:
            raise ActorError(f"r2 {self.channel}: {e}") from None
        self.office.carry_out(self, actions)

    # ---- what the line reports -----------------------------------------------------------------
    def on_event(self, event: ev.CallEvent) -> None:
        tick = self.tick
        name = type(event).__name__
        if self.current is not None:
            self.current.events.append((tick, name))
        if isinstance(event, ev.Incoming):
            self.current = CallRecord("from_host", dnis=event.dnis, ani=event.ani,
                                   category=event.category, started=tick)
            self.calls.append(self.current)
            self.note(f"call from the host: dnis {event.dnis} ani {event.ani or '-'} "
                      f"category {event.category or '-'}")
            plan = self.on_incoming
            if plan == "answer":
                if self.answer_after:
                    self._schedule(0, "accept")
                    self._schedule(self.answer_after, "answer")
                else:
                    self._schedule(0, "answer")
            elif plan == "accept":
                self._schedule(0, "accept")
            elif plan == "reject":
                self._schedule(0, "reject")
        elif isinstance(event, ev.Answered):
            if self.current is not None:
                self.current.answered = tick
            self.note("answered")
            if self.hang_up_after:
                self._schedule(self.hang_up_after, "hang_up")
        elif isinstance(event, ev.Cleared):
            if self.current is not None:
                self.current.cleared, self.current.cause, self.current.reason = tick, event.cause, event.reason
            self._due.clear()
            self._talking = False
            self.note(f"cleared: cause {event.cause} ({event.reason})")
        elif isinstance(event, (ev.Alerting, ev.Proceeding, ev.DialComplete)):
            self.note(name.lower())

    def _schedule(self, after: int, action: str) -> None:
        self._due.append((self.tick + after, action))

    def run_due(self, tick: int) -> None:
        due = [a for t, a in self._due if t <= tick]
        self._due = [(t, a) for t, a in self._due if t > tick]
        for action in due:
            try:
                if action == "reject":
                    self.reject(self.reject_with)
                else:
                    getattr(self, action)()
            except ActorError as e:
                self.note(f"{action} not possible: {e}")

    # ---- what the live view shows -------------------------------------------------------------
    @property
    def state(self):
        return self.line.state

    @property
    def calling_number(self) -> str:
        return self.current.ani if self.current is not None and self.current.cleared is None else ""

    @property
    def digits(self) -> str:
        return self.current.dnis if self.current is not None else ""

    # ---- checks and observations ---------------------------------------------------------------
    def _check_offered(self) -> bool:
        return self.current is not None and self.current.direction == "from_host"

    def _check_ringing(self) -> bool:
        return self.line.state.value in ("in_ringing", "out_alerting")

    def _check_answered(self) -> bool:
        return self.current is not None and self.current.answered is not None

    def _check_connected(self) -> bool:
        return self.line.state.value == "connected"

    def _check_cleared(self, cause: int | None = None) -> bool:
        c = self.current
        return c is not None and c.cleared is not None and (cause is None or c.cause == cause)

    def _check_idle(self) -> bool:
        return self.line.state.value == "idle"

    def _check_dnis(self, number: str) -> bool:
        return self.current is not None and self.current.dnis == number

    def _check_ani(self, number: str) -> bool:
        return self.current is not None and self.current.ani == number

    def observed(self, what: str, value) -> tuple[bool, str]:
        last = self.calls[-1] if self.calls else None
        if what in ("dnis", "ani", "category"):
            seen = [getattr(c, what) for c in self.calls]
            return value in seen, f"{what} seen: {seen}"
        if what == "calls":
            return len(self.calls) >= value, f"{len(self.calls)} calls"
        if what == "answered":
            n = sum(1 for c in self.calls if c.answered is not None)
            return n >= value, f"{n} calls answered"
        if what == "cleared_cause":
            return last is not None and last.cause == value, \
                f"last call cleared with cause {last.cause if last else None}"
        raise KeyError(what)

    def describe(self) -> str:
        return f"r2 {self.channel}: {self.line.describe()}; recent: {self.recent()}"


class R2Office(SpanFaults):
    """The R2 far end for the E1 timeslots `channels` of one span (a World director).

    Also the span-level scenario actor `r2: SPAN` (see R2_ACTIONS, R2_CHECKS,
    R2_FINAL_CHECKS): `channel` parameters are cardd's channel numbers, 0 = the first
    idle timeslot (for calls) or every call (for hang_up with all: true)."""
    kind = "r2"

    def __init__(self, world, channels: list[int], variant: Variant | str = "china",
                 options: dict[int, dict] | None = None, span: int = 0):
        self.world = world
        self.span = span
        self.log: list[tuple[int, str]] = []
        self.cards = world.cards
        self.variant = variant if isinstance(variant, Variant) else load_variant(variant)
        self.tick_ms = self.cards.block * 1000 // 8000
        self.channels = list(channels)
        self.row_of = {ch: i for i, ch in enumerate(self.channels)}
        self.card_rows = np.array([self.cards.port(ch).row for ch in self.channels])
        self.engine = MediaEngine(len(self.channels), block=self.cards.block, law=self.cards.law,
                                  plan=world.media.plan, load_prompts="inline")
        options = options or {}
        self.trunks: dict[int, R2Trunk] = {}
        for ch in self.channels:
            opts = {k: v for k, v in options.get(ch, {}).items() if not k.startswith("__")}
            self.trunks[ch] = R2Trunk(world, self.cards.port(ch), self, **opts)
        self.events: list[tuple[int, int, ev.CallEvent]] = []   # (tick, channel, event)

    def attach(self) -> "R2Office":
        """Join the world: a director for the span, an actor per timeslot (for scenarios)."""
        self.world.directors.append(self)
        for ch, trunk in self.trunks.items():
            self.world.actors[ch] = trunk
        return self

    def trunk(self, channel: int) -> R2Trunk:
        return self.trunks[channel]

    def close(self) -> None:
        pass                                  # nothing held outside the process

    # ---- the span-level scenario actor ------------------------------------------------------
    def note(self, text: str) -> None:
        self.log.append((self.world.tick, text))
        del self.log[:-50]

    def _pick(self, channel: int) -> R2Trunk:
        if channel:
            if channel not in self.trunks:
                raise ActorError(f"r2 span {self.span}: no channel {channel} (channels "
                                 f"{self.channels[0]}-{self.channels[-1]})")
            return self.trunks[channel]
        for trunk in self.trunks.values():
            if trunk.line.state.value == "idle":
                return trunk
        raise ActorError(f"r2 span {self.span}: no idle channel")

    def call(self, dnis: str, ani: str = "", category: str = "", channel: int = 0,
             count: int = 1) -> None:
        for _ in range(max(1, count)):
            trunk = self._pick(channel)
            trunk.call(dnis, ani, category)
            self.note(f"call on channel {trunk.channel}: dnis {dnis} ani {ani or '-'}")

    def hang_up(self, channel: int = 0, all: bool = False) -> None:
        busy = [t for t in self.trunks.values() if t.line.state.value not in ("idle", "blocked",
                                                                               "local_blocked")]
        targets = busy if (all or not channel) else [self._pick(channel)]
        for trunk in targets:
            trunk.hang_up()
        self.note(f"hung up {len(targets)} call(s)")

    def answer(self, channel: int = 0) -> None:
        for trunk in ([self._pick(channel)] if channel else self._offered()):
            trunk.answer()

    def reject(self, channel: int = 0, signal: str = "busy") -> None:
        for trunk in ([self._pick(channel)] if channel else self._offered()):
            trunk.reject(signal)

    def _offered(self) -> list[R2Trunk]:
        return [t for t in self.trunks.values()
                if t.line.state.value in ("in_offered", "in_ringing")]

    def plan(self, answer: bool = True, after: float = 2.0, reject: str = "",
             hang_up_after: float = 0.0) -> None:
        """What the far end does with calls from the host from now on."""
        if reject and reject not in REFUSALS:
            raise ActorError(f"r2 span {self.span}: unknown refusal {reject!r} "
                             f"(known: {', '.join(REFUSALS)})")
        for trunk in self.trunks.values():
            trunk.on_incoming = "reject" if reject else ("answer" if answer else "accept")
            trunk.reject_with = reject or trunk.reject_with
            trunk.answer_after = trunk.ticks(after)
            trunk.hang_up_after = trunk.ticks(hang_up_after) if hang_up_after else None

    def block(self, channel: int) -> None:
        self._pick(channel).block()

    def unblock(self, channel: int) -> None:
        self._pick(channel).unblock()

    def alarm(self, alarms: str = "red") -> None:
        from drivers.signaling.span_health import alarm_bits
        try:
            bits = alarm_bits(alarms)
        except ValueError as e:
            raise ActorError(str(e)) from None
        self.cards.set_span_alarms(self.span, bits)

    def clear_alarm(self) -> None:
        self.cards.set_span_alarms(self.span, 0)

    def _calls(self, direction: str | None = None) -> list[CallRecord]:
        return [c for t in self.trunks.values() for c in t.calls
                if direction is None or c.direction == direction]

    def check(self, what: str, /, **params) -> bool:
        return bool(getattr(self, f"_check_{what}")(**params))

    def _check_idle(self) -> bool:
        return all(t.line.state.value == "idle" for t in self.trunks.values())

    def _check_connected(self, count: int = 1) -> bool:
        return sum(1 for t in self.trunks.values() if t.line.state.value == "connected") >= count

    def _check_answered(self, count: int = 1) -> bool:
        return sum(1 for c in self._calls() if c.answered is not None) >= count

    def _check_cleared(self, count: int = 1, cause: int = 0) -> bool:
        return sum(1 for c in self._calls() if c.cleared is not None
                   and (not cause or c.cause == cause)) >= count

    def _check_calls_from_host(self, count: int = 1) -> bool:
        return len(self._calls("from_host")) >= count

    def _check_received(self, dnis: str = "", ani: str = "", category: str = "") -> bool:
        return any((not dnis or c.dnis == dnis) and (not ani or c.ani == ani)
                   and (not category or c.category == category)
                   for c in self._calls("from_host"))

    def observed(self, what: str, value) -> tuple[bool, str]:
        calls = self._calls()
        if what in ("dnis", "ani", "category"):
            seen = [getattr(c, what) for c in self._calls("from_host")]
            return value in seen, f"{what} of calls from the host: {seen}"
        have = {"answered": sum(1 for c in calls if c.answered is not None),
                "cleared": sum(1 for c in calls if c.cleared is not None),
                "calls_from_host": len(self._calls("from_host"))}[what]
        return have == value, f"{what} {have}"

    def describe(self) -> str:
        busy = [t.line.describe() for t in self.trunks.values() if t.line.state.value != "idle"]
        recent = "; ".join(f"tick {t}: {x}" for t, x in self.log[-5:]) or "nothing yet"
        return (f"r2 span {self.span} ({self.variant.name}): {len(busy)} busy channel(s) "
                f"{busy[:3]}; {recent}")

    # ---- the tick ------------------------------------------------------------------------------
    def step(self, tick: int) -> None:
        cards = self.cards
        for ch, trunk in self.trunks.items():
            bits = cards.port(ch).cas_from_host
            if bits != trunk.seen_bits:
                trunk.seen_bits = bits
                self.carry_out(trunk, trunk.line.on_cas(bits, tick))
        rx = cards.from_host_all()[self.card_rows]
        tx, events = self.engine.tick(np.ascontiguousarray(rx))
        for e in events:
            trunk = self.trunks[self.channels[e.row]]
            if type(e).__name__ == "PlayDone" and getattr(e, "tag", None) == "talk":
                if trunk._talking:
                    trunk.talk()                 # talk on until told to stop
                continue
            self.carry_out(trunk, trunk.line.on_media(e, tick))
        for trunk in self.trunks.values():
            self.carry_out(trunk, trunk.line.on_tick(tick))
            trunk.run_due(tick)
        cards.host_rx()[self.card_rows] = tx

    def carry_out(self, trunk: R2Trunk, actions) -> None:
        for action in actions or ():
            if isinstance(action, SetCas):
                self.cards.set_cas_to_host(trunk.channel, action.bits)
            elif isinstance(action, ev.Media):
                getattr(self.engine, action.method)(trunk.erow, *action.args)
            elif isinstance(action, ev.Emit):
                self.events.append((self.world.tick, trunk.channel, action.event))
                trunk.on_event(action.event)


# The span-level scenario vocabulary (simulators.scenario.register_target).
R2_ACTIONS: dict[str, dict[str, tuple]] = {
    "call": {"dnis": (str, "REQUIRED"), "ani": (str, ""), "category": (str, ""),
             "channel": (int, 0), "count": (int, 1)},
    "hang_up": {"channel": (int, 0), "all": (bool, False)},
    "answer": {"channel": (int, 0)},
    "reject": {"channel": (int, 0), "signal": (str, "busy")},
    "plan": {"answer": (bool, True), "after": (float, 2.0), "reject": (str, ""),
             "hang_up_after": (float, 0.0)},
    "block": {"channel": (int, "REQUIRED")},
    "unblock": {"channel": (int, "REQUIRED")},
    "alarm": {"alarms": (str, "red")},
    "clear_alarm": {},
    "slip": {"count": (int, 1)},
    "errors": {"crc4": (int, 0), "bpv": (int, 0), "frame": (int, 0), "ebit": (int, 0),
               "fas": (int, 0)},
}
R2_CHECKS: dict[str, dict[str, tuple]] = {
    "idle": {}, "connected": {"count": (int, 1)}, "answered": {"count": (int, 1)},
    "cleared": {"count": (int, 1), "cause": (int, 0)},
    "calls_from_host": {"count": (int, 1)},
    "received": {"dnis": (str, ""), "ani": (str, ""), "category": (str, "")},
}
R2_FINAL_CHECKS = {"answered": int, "cleared": int, "calls_from_host": int, "dnis": str,
                   "ani": str, "category": str}


def attach_r2(world, cfg) -> dict[int, R2Office]:
    """An R2 office on every span of a cardd configuration with signaling "r2"."""
    offices = {}
    for span in cfg.spans:
        if span.kind != "e1" or span.signaling != "r2":
            continue
        channels = sorted(c.channel for c in cfg.channels if c.span == span.span)
        offices[span.span] = R2Office(world, channels, span.r2_variant, span=span.span).attach()
    return offices


def span_actors(world, cfg, scenario=None) -> dict:
    """The R2 span actors of a run, keyed as scenario steps name them (("r2", span)).
    A scenario naming a span that is not an R2 span is refused."""
    offices = attach_r2(world, cfg)
    actors = {("r2", span): office for span, office in offices.items()}
    if scenario is not None:
        from simulators.scenario import ScenarioError
        for (kind, span), line in sorted(scenario.spans_used().items()):
            if kind == "r2" and (kind, span) not in actors:
                raise ScenarioError(scenario.path, line, kind,
                                    f"span {span} is not an R2 span of the configuration "
                                    f"(R2 spans: {', '.join(map(str, offices)) or 'none'})")
    return actors


# ---- a cardd stand-in for in-process runs ----------------------------------------------------------
class HostSide:
    """R2 lines on the host's side of the cards, run the way cardd runs them: hardware
    events, one media tick for every row, timers, actions. `events` collects what cardd
    would publish: (tick, channel, CallEvent)."""

    def __init__(self, cards, channels: list[int], variant: Variant | str = "china",
                 plan: str = "cn", options: R2Options | None = None):
        self.cards = cards
        self.variant = variant if isinstance(variant, Variant) else load_variant(variant)
        self.engine = MediaEngine(len(cards.ports), block=cards.block, law=cards.law, plan=plan,
                                  load_prompts="inline")
        tick_ms = cards.block * 1000 // 8000
        self.lines = {ch: R2Line(ch, self.variant, options or R2Options(tick_ms=tick_ms))
                      for ch in channels}
        self.row = {ch: cards.port(ch).row for ch in channels}
        self.by_row = {r: ch for ch, r in self.row.items()}
        self.events: list[tuple[int, int, ev.CallEvent]] = []
        self.tick = 0

    def step(self, tick: int) -> None:
        """After the far side has written this tick: what cardd does with it."""
        self.tick = tick
        for e in self.cards.take_host_events():
            if e.channel in self.lines:
                self._carry_out(e.channel, self.lines[e.channel].on_hw(e, tick))
        tx, media = self.engine.tick(self.cards.host_rx())
        for m in media:
            ch = self.by_row.get(m.row)
            if ch is not None:
                self._carry_out(ch, self.lines[ch].on_media(m, tick))
        for ch, line in self.lines.items():
            self._carry_out(ch, line.on_tick(tick))
        self.cards.host_tx(tx)

    def command(self, channel: int, name: str, **args) -> None:
        self._carry_out(channel, self.lines[channel].on_command(name, self.tick, **args))

    def _carry_out(self, channel: int, actions) -> None:
        for action in actions or ():
            if isinstance(action, SetCas):
                self.cards.host_cas(channel, action.bits)
            elif isinstance(action, ev.Media):
                getattr(self.engine, action.method)(self.row[channel], *action.args)
            elif isinstance(action, ev.Emit):
                self.events.append((self.tick, channel, action.event))

    def of(self, channel: int, kind: type | None = None) -> list:
        return [e for _, ch, e in self.events if ch == channel and (kind is None or isinstance(e, kind))]

