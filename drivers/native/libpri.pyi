"""Type stubs for drivers.native.libpri (libpri 1.6 through cffi, callback I/O)."""
from __future__ import annotations

import dataclasses
import logging
from typing import Callable, Iterable

log: logging.Logger

SWITCH_TYPES: dict[str, int]
NODE_TYPES: dict[str, int]
TON: dict[str, int]
NPI: dict[str, int]
PRESENTATION: dict[str, int]
SCREENING: dict[str, int]
BEARER: dict[str, int]
LAYER1: dict[str, int]
SERVICE_STATES: dict[str, int]
REDIRECT_REASONS: dict[str, int]
DEBUG_FLAGS: dict[str, int]
MAX_FRAME: int
MIN_FRAME: int


class PriError(Exception): ...


def cause_text(cause: int) -> str: ...
def libpri_version() -> str: ...


class PriCall:
    cref: int
    incoming: bool
    @property
    def ended(self) -> bool: ...


@dataclasses.dataclass(frozen=True)
class PriEvent: ...


@dataclasses.dataclass(frozen=True)
class DchanUp(PriEvent): ...


@dataclasses.dataclass(frozen=True)
class DchanDown(PriEvent): ...


@dataclasses.dataclass(frozen=True)
class Ring(PriEvent):
    call: PriCall
    channel: int | None
    exclusive: bool
    calling_number: str
    calling_name: str
    calling_ton: str
    calling_plan: str
    calling_presentation: str
    calling_screening: str
    called_number: str
    called_ton: str
    called_plan: str
    redirecting_number: str
    redirecting_reason: str
    complete: bool
    bearer: str
    layer1: int
    ani: str = ...
    keypad: str = ...


@dataclasses.dataclass(frozen=True)
class Info(PriEvent):
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
    inband: bool
    cause: int


@dataclasses.dataclass(frozen=True)
class Ringing(PriEvent):
    call: PriCall
    channel: int | None
    progress_mask: int
    inband: bool


@dataclasses.dataclass(frozen=True)
class Answer(PriEvent):
    call: PriCall
    channel: int | None


@dataclasses.dataclass(frozen=True)
class ConnectAck(PriEvent):
    call: PriCall
    channel: int | None


@dataclasses.dataclass(frozen=True)
class HangupReq(PriEvent):
    call: PriCall
    channel: int | None
    cause: int


@dataclasses.dataclass(frozen=True)
class Hangup(PriEvent):
    call: PriCall
    channel: int | None
    cause: int


@dataclasses.dataclass(frozen=True)
class HangupAck(PriEvent):
    call: PriCall
    channel: int | None
    cause: int


@dataclasses.dataclass(frozen=True)
class Restart(PriEvent):
    channel: int | None


@dataclasses.dataclass(frozen=True)
class RestartAck(PriEvent):
    channel: int | None


@dataclasses.dataclass(frozen=True)
class ServiceChange(PriEvent):
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
    kind: int
    name: str


class PriLink:
    node: str
    switch: str
    name: str
    bchannels: tuple[int, ...]
    frames_in: int
    frames_out: int
    frames_dropped: int

    def __init__(self, node: str = ..., switch: str = ...,
                 send_frame: Callable[[bytes], object] | None = ..., *,
                 now: float = ..., name: str | None = ..., overlap_dial: bool = ...,
                 service_messages: bool = ..., inband_disconnect: bool = ...,
                 bchannels: Iterable[int] | None = ...,
                 debug: int | Iterable[str] = ...) -> None: ...
    @property
    def now(self) -> float: ...
    def next_timer(self) -> float | None: ...
    def next_timeout(self, now: float | None = ...) -> float | None: ...
    def run_timers(self, now: float) -> list[PriEvent]: ...
    def receive_frame(self, frame: bytes) -> list[PriEvent]: ...
    def set_debug(self, debug: int | Iterable[str]) -> None: ...
    def set_overlap_dial(self, on: bool) -> None: ...
    def set_service_messages(self, on: bool) -> None: ...
    def set_timer(self, name: str, value_ms: int) -> None: ...
    def get_timer(self, name: str) -> int: ...
    def info(self) -> str: ...
    def active_calls(self) -> int: ...
    def close(self) -> None: ...
    def new_call(self) -> PriCall: ...
    def setup(self, call: PriCall, channel: int | None, exclusive: bool = ...,
              called: str = ..., calling: str = ..., *,
              called_ton: str | int = ..., called_plan: str | int = ...,
              calling_ton: str | int = ..., calling_plan: str | int = ...,
              calling_presentation: str | int = ..., calling_screening: str | int = ...,
              calling_name: str = ..., redirecting: str | None = ...,
              redirecting_ton: str | int = ..., redirecting_plan: str | int = ...,
              redirecting_reason: str | int = ..., overlap: bool = ...,
              bearer: str | int = ..., layer1: str | int | None = ...) -> None: ...
    def proceeding(self, call: PriCall, channel: int | None, inband: bool = ...) -> None: ...
    def progress(self, call: PriCall, channel: int | None, inband: bool = ...) -> None: ...
    def alerting(self, call: PriCall, channel: int | None, inband: bool = ...) -> None: ...
    def need_more_info(self, call: PriCall, channel: int | None) -> None: ...
    def answer(self, call: PriCall, channel: int | None) -> None: ...
    def information(self, call: PriCall, digits: str) -> None: ...
    def keypad(self, call: PriCall, digits: str) -> None: ...
    def hangup(self, call: PriCall, cause: int = ...) -> bool: ...
    def restart(self, channel: int | None = ...) -> None: ...
    def maintenance_service(self, span: int, channel: int | None,
                            state: str | int = ...) -> None: ...
