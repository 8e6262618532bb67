"""Devices, calls and connections."""
from __future__ import annotations

import dataclasses
import enum


class DeviceType(enum.Enum):
    EXTENSION = "extension"
    TRUNK = "trunk"
    ACD_GROUP = "acd_group"
    IVR_PORT = "ivr_port"
    AGENT = "agent"


class ConnState(enum.Enum):
    """CSTA connection states (ECMA-269 6.1.4)."""
    NULL = "null"
    INITIATED = "initiated"
    ALERTING = "alerting"
    CONNECTED = "connected"
    HELD = "held"
    QUEUED = "queued"
    FAILED = "failed"


@dataclasses.dataclass(frozen=True)
class ChannelRef:
    node: str
    channel: int

    def __str__(self) -> str:
        return f"{self.node}/{self.channel}"


@dataclasses.dataclass
class Device:
    id: str                         # "ext:8001", "trunk:node1/5"
    type: DeviceType
    name: str = ""
    channel: ChannelRef | None = None
    number: str = ""                # the extension number, or the trunk's line number
    group: str = ""                 # trunk group name
    in_service: bool = True


@dataclasses.dataclass
class Connection:
    call_id: str
    device: str
    state: ConnState = ConnState.NULL


@dataclasses.dataclass
class Leg:
    """One party of a call for the CDR: who, when, how long, how it ended."""
    device: str
    role: str                       # "caller", "called", "transfer_target", "consulted"
    started: float
    answered: float | None = None
    ended: float | None = None
    cause: int = 0


@dataclasses.dataclass
class Call:
    id: str
    started: float
    calling: str = ""
    called: str = ""
    connections: dict[str, Connection] = dataclasses.field(default_factory=dict)
    data: dict[str, str] = dataclasses.field(default_factory=dict)
    legs: list[Leg] = dataclasses.field(default_factory=list)
    transfers: list[str] = dataclasses.field(default_factory=list)
    outcome: str = ""
    ended: float | None = None

    def connection(self, device: str) -> Connection | None:
        return self.connections.get(device)

    def leg(self, device: str) -> Leg | None:
        for leg in reversed(self.legs):
            if leg.device == device and leg.ended is None:
                return leg
        return None
