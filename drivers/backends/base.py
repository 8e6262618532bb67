"""The hardware-backend interface: spans and channels, one audio block per tick for all.

Event and hook-operation numbers are DAHDI's (``<dahdi/user.h>``), so the DAHDI backend
passes them through and every other backend (the simulator, a vendor API) speaks the
same vocabulary. Signaling modules never see a backend's own words.
"""
from __future__ import annotations

import abc
import dataclasses
import enum

import numpy as np


class HwEvent(enum.IntEnum):
    """Channel/span events, numbered as DAHDI_EVENT_*."""
    NONE = 0
    ONHOOK = 1            # FXS port: phone hung up. FXO port: loop current lost
    RINGOFFHOOK = 2       # FXS port: phone went off-hook. FXO port: answer complete
    WINKFLASH = 3         # FXS port: hook flash
    ALARM = 4             # channel alarm (FXO: no battery on the line)
    NOALARM = 5           # alarm cleared (FXO: battery back)
    DIALCOMPLETE = 9
    RINGERON = 10         # FXO port: ring voltage on (cadence edge)
    RINGEROFF = 11        # FXO port: ring voltage off
    HOOKCOMPLETE = 12
    BITSCHANGED = 13      # E1 CAS: the received ABCD bits changed
    POLARITY = 17         # FXO port: battery polarity reversed
    RINGBEGIN = 18        # FXO port: first ring of a call detected
    REMOVED = 20


class HookOp(enum.IntEnum):
    """Hook operations, numbered as the DAHDI_HOOK ioctl's arguments."""
    ONHOOK = 0
    OFFHOOK = 1
    WINK = 2
    FLASH = 3
    START = 4
    RING = 5
    RINGOFF = 6


class SpanAlarm(enum.IntFlag):
    """Span alarm bits, as DAHDI_ALARM_*."""
    NONE = 0
    RECOVER = 1
    LOOPBACK = 2
    YELLOW = 4            # remote alarm indication (RAI)
    RED = 8               # loss of signal / loss of frame
    BLUE = 16             # AIS
    NOTOPEN = 32


class PortKind(str, enum.Enum):
    FXS = "fxs"           # our port feeds a phone
    FXO = "fxo"           # our port is attached to a CO line
    E1 = "e1"             # an E1 timeslot


@dataclasses.dataclass(frozen=True)
class SpanInfo:
    span: int
    name: str
    kind: str             # "analog" or "e1"
    alarms: int = 0


@dataclasses.dataclass(frozen=True)
class PortInfo:
    channel: int          # global channel number, as DAHDI numbers channels
    span: int
    kind: PortKind


@dataclasses.dataclass
class Inventory:
    spans: list[SpanInfo]
    ports: list[PortInfo]   # in the order of the rows of every audio block
    block: int = 160
    law: str = "alaw"


@dataclasses.dataclass(frozen=True)
class ChannelEvent:
    """A hardware event: channel 0 with a span number means a span event."""
    channel: int
    event: HwEvent
    span: int = 0
    value: int = 0


@dataclasses.dataclass
class TickIn:
    """What one tick brought in: audio (ports x block, law-coded uint8), events, frames."""
    tick: int
    rx: np.ndarray
    events: list[ChannelEvent]
    dframes: list[tuple[int, bytes]] = dataclasses.field(default_factory=list)   # (span, frame)
    cas: list[tuple[int, int]] = dataclasses.field(default_factory=list)         # (channel, abcd)


class BackendError(Exception):
    pass


class Backend(abc.ABC):
    """One card set. cardd calls open() once, then exchange() once per tick.

    exchange() is the clock: it hands over this tick's transmit audio for every port and
    returns when the next received block of every port is ready (DAHDI's blocking read;
    the simulator's tick message).
    """

    @abc.abstractmethod
    def open(self) -> Inventory: ...

    @abc.abstractmethod
    def exchange(self, tx: np.ndarray) -> TickIn:
        """tx: uint8 array (ports, block), law-coded. Returns the next TickIn."""

    @abc.abstractmethod
    def hook(self, channel: int, op: HookOp) -> None:
        """Queue a hook operation; it takes effect with the next exchange()."""

    def send_dframe(self, span: int, frame: bytes) -> None:
        raise BackendError("this backend has no D-channel")

    def set_cas(self, channel: int, bits: int) -> None:
        raise BackendError("this backend has no CAS signaling")

    def span_alarms(self, span: int) -> int:
        return 0

    def span_counters(self, span: int) -> dict[str, int]:
        """The span's error counters as running totals, named as in
        drivers.signaling.span_health.COUNTERS; only those the card has ({}: none yet)."""
        return {}

    def close(self) -> None:
        pass
