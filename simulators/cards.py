"""Virtual cards: the state of every simulated port and span, advanced one tick at a time.

Two sides touch it:
- the *host side* (what cardd sees) through a front-end: the simwire server for cardd's
  `sim` backend, or the DAHDI emulation for its `dahdi` backend. A front-end takes
  `host_rx()` and `take_host_events()` each tick and hands back `host_tx()` and hook ops.
- the *far side* (the world: phones, central office lines, the PRI/R2 network) through
  `Port` objects: each tick an actor reads `port.from_host` (what cardd transmitted last
  tick, law-coded) and writes `port.to_host` (what it transmits this tick).

Everything is law-coded uint8 audio, `block` samples per tick.

E1 spans also keep error counters (`span_counters[span]`, running totals named as cardd's
SpanAlarm counters): actors and scenarios add to them with `count_errors` and `slip`; the
simwire front-end sends them on the tick after they change and the DAHDI emulation
answers them in SPANSTAT (which has no slip counter).
"""
from __future__ import annotations

import abc
import dataclasses

import numpy as np

from drivers.backends.base import (ChannelEvent, HookOp, HwEvent, Inventory, PortInfo,
                                   PortKind, SpanAlarm, SpanInfo)
from drivers.media import g711

# The E1 error counters a virtual span keeps (simwire SpanCounters fields).
SPAN_COUNTERS = ("slips", "crc4_errors", "bpv_errors", "frame_errors", "ebit_errors",
                 "fas_errors")
# The words scenario steps use for them (`{pri: 1, do: errors, crc4: 10}`).
ERROR_WORDS = {"crc4": "crc4_errors", "bpv": "bpv_errors", "frame": "frame_errors",
               "ebit": "ebit_errors", "fas": "fas_errors"}


@dataclasses.dataclass
class Port:
    info: PortInfo
    row: int
    hook: HookOp = HookOp.ONHOOK       # the host's last hook operation on this port
    ringing: bool = False              # FXS port: host is applying ring voltage
    battery: bool = True               # FXO port: CO battery present
    polarity: int = 0                  # FXO port: 0 normal, 1 reversed
    far_offhook: bool = False          # FXS port: the phone is off-hook
    cas_to_host: int = 0b1001          # E1 CAS bits the far end sends (ABCD)
    cas_from_host: int = 0b1001        # E1 CAS bits the host sends

    @property
    def channel(self) -> int:
        return self.info.channel


class VirtualCards:
    def __init__(self, spans: list[SpanInfo], ports: list[PortInfo], block: int = 160,
                 law: str = "alaw"):
        self.inventory = Inventory(spans=list(spans), ports=list(ports), block=block, law=law)
        self.block = block
        self.law = law
        self.tick = 0
        self.ports = [Port(info=p, row=i) for i, p in enumerate(ports)]
        self.by_channel = {p.channel: p for p in self.ports}
        self.span_alarms = {s.span: int(s.alarms) for s in spans}
        self.span_counters = {s.span: dict.fromkeys(SPAN_COUNTERS, 0)
                              for s in spans if s.kind == "e1"}
        self.silence = g711.silence_byte(law)
        n = len(ports)
        self._to_host = np.full((n, block), self.silence, dtype=np.uint8)
        self._from_host = np.full((n, block), self.silence, dtype=np.uint8)
        self._host_events: list[ChannelEvent] = []
        self._dframes_to_host: list[tuple[int, bytes]] = []
        self._dframes_from_host: list[tuple[int, bytes]] = []
        self._cas_changes: list[tuple[int, int]] = []
        self.hook_listeners: list = []     # callables(port, op) told of every host hook op

    # ---- far side -------------------------------------------------------------------
    def port(self, channel: int) -> Port:
        return self.by_channel[channel]

    def to_host(self, channel: int) -> np.ndarray:
        """The row the far side writes this tick (a view: assign into it)."""
        return self._to_host[self.by_channel[channel].row]

    def from_host(self, channel: int) -> np.ndarray:
        """What the host transmitted on this port during the last tick."""
        return self._from_host[self.by_channel[channel].row]

    def from_host_all(self) -> np.ndarray:
        """What the host transmitted during the last tick on every port (ports x block)."""
        return self._from_host

    def post_event(self, channel: int, event: HwEvent, span: int = 0, value: int = 0) -> None:
        self._host_events.append(ChannelEvent(channel=channel, event=HwEvent(event),
                                              span=span, value=value))

    def set_span_alarms(self, span: int, alarms: int) -> None:
        if self.span_alarms.get(span) != alarms:
            self.span_alarms[span] = alarms
            self.post_event(0, HwEvent.ALARM if alarms else HwEvent.NOALARM, span=span,
                            value=int(alarms))

    def count_errors(self, span: int, **counts: int) -> None:
        """Errors on an E1 span's line: add to its counters, e.g.
        count_errors(1, crc4_errors=10, ebit_errors=10). ValueError (changing nothing) for
        a span that is not E1, an unknown counter or a count that is not a whole number >= 0."""
        totals = self.span_counters.get(span)
        if totals is None:
            e1 = ", ".join(map(str, sorted(self.span_counters))) or "none"
            raise ValueError(f"span {span} is not an E1 span of the cards (E1 spans: {e1})")
        for name, n in counts.items():
            if name not in totals:
                raise ValueError(f"unknown span counter {name!r} (known: "
                                 f"{', '.join(SPAN_COUNTERS)})")
            if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                raise ValueError(f"{name}: a count is a whole number >= 0, not {n!r}")
        for name, n in counts.items():
            totals[name] += n

    def slip(self, span: int, count: int = 1) -> None:
        """Controlled slips on an E1 span (the far end's clock is not ours): counted only,
        the audio is not touched."""
        self.count_errors(span, slips=count)

    def send_dframe(self, span: int, frame: bytes) -> None:
        self._dframes_to_host.append((span, bytes(frame)))

    def take_dframes_from_host(self) -> list[tuple[int, bytes]]:
        out, self._dframes_from_host = self._dframes_from_host, []
        return out

    def set_cas_to_host(self, channel: int, bits: int) -> None:
        port = self.by_channel[channel]
        if port.cas_to_host != bits:
            port.cas_to_host = bits
            self.post_event(channel, HwEvent.BITSCHANGED, value=bits)

    # ---- host side --------------------------------------------------------------------
    def host_rx(self) -> np.ndarray:
        return self._to_host

    def take_host_events(self) -> list[ChannelEvent]:
        out, self._host_events = self._host_events, []
        return out

    def take_dframes_to_host(self) -> list[tuple[int, bytes]]:
        out, self._dframes_to_host = self._dframes_to_host, []
        return out

    def host_tx(self, tx: np.ndarray) -> None:
        self._from_host[...] = tx

    def host_dframe(self, span: int, frame: bytes) -> None:
        self._dframes_from_host.append((span, bytes(frame)))

    def host_cas(self, channel: int, bits: int) -> None:
        self.by_channel[channel].cas_from_host = bits

    def host_hook(self, channel: int, op: HookOp) -> None:
        port = self.by_channel[channel]
        op = HookOp(op)
        if op == HookOp.RING:
            port.ringing = True
        elif op in (HookOp.RINGOFF, HookOp.ONHOOK, HookOp.OFFHOOK):
            port.ringing = False
        if op in (HookOp.ONHOOK, HookOp.OFFHOOK):
            port.hook = op
        for listener in self.hook_listeners:
            listener(port, op)

    def next_tick(self) -> None:
        """Start a new tick: the far side writes fresh audio (silence unless an actor writes)."""
        self.tick += 1
        self._to_host.fill(self.silence)


class Frontend(abc.ABC):
    """How the host reaches the cards: the simwire server or the DAHDI emulation.

    The simulator's clock loop calls, every tick: cards.next_tick(); world.step();
    frontend.deliver(); then frontend.collect(deadline) which returns once the host has
    answered this tick (lockstep, for fast clocks) or the deadline has passed (real time).
    """

    @abc.abstractmethod
    def start(self) -> None: ...

    @abc.abstractmethod
    def deliver(self) -> None:
        """Hand this tick's rx audio, events and frames to the host."""

    @abc.abstractmethod
    def collect(self, deadline: float | None) -> bool:
        """Take the host's tx audio and ops for this tick into the cards. True if it answered."""

    @abc.abstractmethod
    def connected(self) -> bool: ...

    def close(self) -> None:
        pass
