"""Span health: alarms, the signaling link, return to service with backoff, stuck channels.

Shared by the E1 span signaling modules (PRI and R2). A functional core: inputs are the
span's alarm bits, its signaling link state (PRI: the D-channel; R2 has none), error
counters and tick numbers; outputs are decisions the span carries out (`Down`: clear the
calls with cause 38 and take the channels out of service; `Up`: bring them back).

States and what moves them (the transition table is `SpanHealth.TRANSITIONS`):

    STARTING    the link has not come up yet (start-up grace)
    IN_SERVICE  no alarm, link up
    DOWN        an alarm, or the link is down
    RECOVERING  alarm cleared (and link up): waiting the backoff delay before Up; the
                link may drop and return meanwhile (Q.921 re-establishing after the
                outage) without starting the delay again
    AWAIT_LINK  the delay is over but the link is down: Up as soon as it is up

The delay before Up is `base` for an outage after a long quiet spell, doubled for each
outage that began within `stable` of the previous recovery (a flapping span), capped at
`cap`, plus a jitter of up to `jitter` x delay fixed by the span number: spans that fail
together (one cable, one card) come back at different ticks, not in one storm.

`StuckChannels` watches channels in transient states (clearing, restarting) and names
those that stayed too long, so the span can reset them (RESTART) and count it.
`SpanMetrics` holds the Prometheus metrics every span reports into.
"""
from __future__ import annotations

import dataclasses
import enum
import math

# DAHDI_ALARM_* bits (<dahdi/user.h>), with the E1 words for them.
# DAHDI's names: yellow is RAI (the far end lost our signal), blue is AIS, red is loss of
# signal or frame (with los / lof beside it when the card tells which).
ALARM_BITS: dict[int, str] = {
    1: "recover", 2: "loopback", 4: "yellow", 8: "red", 16: "blue", 32: "notopen",
    256: "los", 512: "lof", 1024: "lmfa",
}
ALARM_BY_NAME = {name: bit for bit, name in ALARM_BITS.items()}
ALARM_BY_NAME.update({"rai": 4, "ais": 16, "lfa": 512})
# Counters a card reports (running totals), named as cardd's SpanAlarm fields: controlled
# slips, CRC-4, bipolar violations, framing (DAHDI fecount), E-bit, frame alignment signal
# (fascount), and D-channel frames the card refused. A backend reports those it has.
COUNTERS = ("slips", "crc4_errors", "bpv_errors", "frame_errors", "ebit_errors",
            "fas_errors", "dchannel_errors")


def alarm_names(bits: int) -> list[str]:
    return [name for bit, name in ALARM_BITS.items() if bits & bit]


def alarm_bits(names) -> int:
    """'los' / ['red', 'ais'] / 'rai,los' -> DAHDI alarm bits (ValueError for unknown)."""
    if isinstance(names, int) and not isinstance(names, bool):
        return names
    if isinstance(names, str):
        names = [n for n in names.replace("+", ",").split(",") if n.strip()]
    bits = 0
    for n in names:
        key = str(n).strip().lower()
        if key not in ALARM_BY_NAME:
            raise ValueError(f"unknown span alarm {n!r} (known: "
                             f"{', '.join(sorted(ALARM_BY_NAME))})")
        bits |= ALARM_BY_NAME[key]
    return bits


def span_jitter(span: int) -> float:
    """A fraction 0..1 fixed by the span number (Knuth's multiplicative hash)."""
    return ((span * 2654435761) & 0xFFFFFFFF) / 0x100000000


class Health(enum.Enum):
    STARTING = "starting"
    IN_SERVICE = "in_service"
    DOWN = "down"
    RECOVERING = "recovering"
    AWAIT_LINK = "await_link"


@dataclasses.dataclass(frozen=True)
class Down:
    reason: str
    alarm: bool            # an alarm (clear calls now) rather than a link loss


@dataclasses.dataclass(frozen=True)
class Up:
    reason: str
    delay_ticks: int       # how long the span waited after the outage ended


@dataclasses.dataclass(frozen=True)
class Counted:
    """Error counters went up since the last report (totals and increases)."""
    totals: dict
    increases: dict


H = Health


class SpanHealth:
    TRANSITIONS = {
        (H.STARTING, "link_up"): "_to_service",
        (H.STARTING, "alarm"): "_to_down",
        (H.STARTING, "timer.grace"): "_grace_over",
        (H.IN_SERVICE, "alarm"): "_to_down",
        (H.IN_SERVICE, "link_down"): "_to_down",
        (H.DOWN, "alarm"): "_alarm_while_down",
        (H.DOWN, "alarm_clear"): "_maybe_recover",
        (H.DOWN, "link_up"): "_maybe_recover",
        (H.RECOVERING, "alarm"): "_to_down",
        (H.RECOVERING, "timer.recover"): "_recovered",
        (H.AWAIT_LINK, "link_up"): "_recovered",
        (H.AWAIT_LINK, "alarm"): "_to_down",
    }

    def __init__(self, span: int, *, tick_ms: int = 20, needs_link: bool = True,
                 grace_ms: int = 5000, base_ms: int = 2000, cap_ms: int = 60000,
                 stable_ms: int = 60000, jitter: float = 0.25):
        self.span = span
        self.tick_ms = tick_ms
        self.needs_link = needs_link
        self.base = self._ticks(base_ms)
        self.cap = self._ticks(cap_ms)
        self.stable = self._ticks(stable_ms)
        self.jitter = span_jitter(span) * jitter
        self.state = H.STARTING if needs_link else H.IN_SERVICE
        self.alarms = 0
        self.link_up = not needs_link
        self.flaps = 0                     # outages in a row, each soon after a recovery
        self.outages = 0
        self.last_up: int | None = None    # tick of the last return to service
        self.down_since: int | None = None
        self.clear_since: int | None = None
        self._timer: tuple[str, int] | None = None
        self._grace = self._ticks(grace_ms)
        self._started: int | None = None
        self.counters = {name: 0 for name in COUNTERS}

    def _ticks(self, ms: int) -> int:
        return math.ceil(ms / self.tick_ms) if ms > 0 else 0

    @property
    def in_service(self) -> bool:
        return self.state == H.IN_SERVICE

    def backoff_ticks(self) -> int:
        """The delay before the next Up, in ticks, for the present flap count."""
        delay = min(self.cap, self.base * (2 ** min(self.flaps, 30)))
        return delay + int(round(delay * self.jitter))

    # ---- inputs ---------------------------------------------------------------------
    def alarm(self, bits: int, tick: int) -> list:
        old, self.alarms = self.alarms, int(bits)
        if self.alarms and not old:
            return self._dispatch("alarm", tick)
        if old and not self.alarms:
            return self._dispatch("alarm_clear", tick)
        return []

    def link(self, up: bool, tick: int) -> list:
        if up == self.link_up:
            return []
        self.link_up = up
        return self._dispatch("link_up" if up else "link_down", tick)

    def counts(self, totals: dict, tick: int) -> list:
        """The card's error counters (running totals); a Counted when any went up."""
        increases = {}
        for name in COUNTERS:
            value = int(totals.get(name, 0) or 0)
            if value > self.counters[name]:
                increases[name] = value - self.counters[name]
            self.counters[name] = max(value, self.counters[name])
        return [Counted(dict(self.counters), increases)] if increases else []

    def tick(self, tick: int) -> list:
        if self._started is None:
            self._started = tick
            if self.state == H.STARTING:
                self._timer = ("grace", tick + self._grace)
        if self._timer is None or self._timer[1] > tick:
            return []
        name, _ = self._timer
        self._timer = None
        return self._dispatch(f"timer.{name}", tick)

    # ---- transitions ------------------------------------------------------------------
    def _dispatch(self, key: str, tick: int) -> list:
        handler = self.TRANSITIONS.get((self.state, key))
        return getattr(self, handler)(tick) if handler else []

    def _reason(self) -> str:
        if self.alarms:
            return "span alarm " + "+".join(alarm_names(self.alarms) or [str(self.alarms)])
        if self.needs_link and not self.link_up:
            return "D-channel down"
        return "span down"

    def _to_service(self, tick: int) -> list:
        # Start-up, not a recovery: an outage after it is not a flap.
        self.state = H.IN_SERVICE
        self._timer = None
        return [Up("D-channel up", 0)]

    def _grace_over(self, tick: int) -> list:
        self.state = H.DOWN
        self.down_since = tick
        return [Down("D-channel not established", alarm=False)]

    def _to_down(self, tick: int) -> list:
        was = self.state
        self.state = H.DOWN
        self._timer = None
        self.down_since = tick
        if was in (H.IN_SERVICE, H.RECOVERING, H.AWAIT_LINK):
            self.outages += 1
            # An outage soon after the last recovery (or during one) is a flap.
            recent = was in (H.RECOVERING, H.AWAIT_LINK) or (
                self.last_up is not None and tick - self.last_up < self.stable)
            self.flaps = self.flaps + 1 if recent else 0
        if was in (H.RECOVERING, H.AWAIT_LINK):
            return []            # the channels never came back: nothing to take down
        return [Down(self._reason(), alarm=bool(self.alarms))]

    def _alarm_while_down(self, tick: int) -> list:
        # Down already (the link had gone): an alarm now means calls kept over the link
        # loss are lost too.
        return [Down(self._reason(), alarm=True)]

    def _maybe_recover(self, tick: int) -> list:
        if self.alarms:
            return []
        self.state = H.RECOVERING
        self.clear_since = tick
        self._timer = ("recover", tick + self.backoff_ticks())
        return []

    def _recovered(self, tick: int) -> list:
        if self.needs_link and not self.link_up:
            self.state = H.AWAIT_LINK
            return []
        self.state = H.IN_SERVICE
        self.last_up = tick
        waited = tick - (self.clear_since if self.clear_since is not None else tick)
        return [Up(f"recovered after {waited * self.tick_ms / 1000:g} s", waited)]


class StuckChannels:
    """Channels in a transient state with a deadline; `due(tick)` names the overdue."""

    def __init__(self):
        self._deadline: dict[int, tuple[int, str]] = {}
        self.resets = 0

    def watch(self, channel: int, tick: int, limit_ticks: int, what: str) -> None:
        self._deadline[channel] = (tick + max(1, limit_ticks), what)

    def clear(self, channel: int) -> None:
        self._deadline.pop(channel, None)

    def due(self, tick: int) -> list[tuple[int, str]]:
        """(channel, what it was doing) for each channel past its deadline (then forgotten)."""
        if not self._deadline:
            return []
        out = [(ch, what) for ch, (when, what) in self._deadline.items() if when <= tick]
        for ch, _ in out:
            del self._deadline[ch]
        self.resets += len(out)
        return sorted(out)


class SpanMetrics:
    """The span and D-channel metrics, in cardd's registry (one instance per cardd)."""

    def __init__(self, registry):
        from prometheus_client import Counter, Gauge
        r = registry
        self.in_service = Gauge("hotline_cardd_span_in_service",
                                "1 when the span takes calls (no alarm, link up, recovered)",
                                ["span"], registry=r)
        self.outages = Counter("hotline_cardd_span_outages",
                               "Times the span went out of service", ["span"], registry=r)
        self.errors = Counter("hotline_cardd_span_errors",
                              "Span error counts as the card reports them (counter: "
                              + ", ".join(COUNTERS) + ")",
                              ["span", "counter"], registry=r)
        self.link_up = Gauge("hotline_cardd_dchannel_up", "1 while the D-channel is up",
                             ["span"], registry=r)
        self.frames = Counter("hotline_cardd_dchannel_frames", "D-channel frames",
                              ["span", "direction"], registry=r)
        self.channel_resets = Counter("hotline_cardd_channel_resets",
                                      "B-channels restarted (RESTART), by why",
                                      ["span", "reason"], registry=r)
        self.calls = Counter("hotline_cardd_span_calls", "Calls set up on the span",
                             ["span", "direction"], registry=r)
