"""The signaling layer's own vocabulary: call events out, actions for the driver to carry out.

Signaling modules (analog, PRI, R2) return these; cardd translates them at the boundary
into protobuf events, hook operations and media-engine calls. Nothing here knows a socket.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from drivers.backends.base import HookOp


# ---- call events (cardd publishes each as a hotline_proto.cardd_pb2.ChannelEvent) --------
@dataclasses.dataclass(frozen=True)
class CallEvent:
    pass


@dataclasses.dataclass(frozen=True)
class OffHook(CallEvent):
    pass


@dataclasses.dataclass(frozen=True)
class OnHook(CallEvent):
    pass


@dataclasses.dataclass(frozen=True)
class Flash(CallEvent):
    pass


@dataclasses.dataclass(frozen=True)
class Digit(CallEvent):
    digit: str
    duration_ms: int = 0
    start_sample: int = 0


@dataclasses.dataclass(frozen=True)
class Incoming(CallEvent):
    ani: str = ""
    dnis: str = ""
    caller_name: str = ""
    category: str = ""
    # ISDN numbers' type of number, numbering plan and presentation (Q.931 words as
    # drivers.native.libpri names them); empty where the signaling has none.
    calling_ton: str = ""
    calling_plan: str = ""
    presentation: str = ""
    screening: str = ""
    called_ton: str = ""
    called_plan: str = ""
    redirecting: str = ""
    redirecting_reason: str = ""


@dataclasses.dataclass(frozen=True)
class Proceeding(CallEvent):
    inband: bool = False        # progress indicator: in-band information available


@dataclasses.dataclass(frozen=True)
class Alerting(CallEvent):
    inband: bool = False        # ringback comes in-band from the far end


@dataclasses.dataclass(frozen=True)
class Answered(CallEvent):
    pass


@dataclasses.dataclass(frozen=True)
class Cleared(CallEvent):
    cause: int = 16            # Q.850 normal clearing
    reason: str = ""


@dataclasses.dataclass(frozen=True)
class ServiceChange(CallEvent):
    in_service: bool
    reason: str = ""


@dataclasses.dataclass(frozen=True)
class ToneDetected(CallEvent):
    tone: str


@dataclasses.dataclass(frozen=True)
class PromptDone(CallEvent):
    interrupted: bool = False
    digit: str = ""
    id: int = 0          # the play_prompt command's id, echoed (0: it had none)


@dataclasses.dataclass(frozen=True)
class CallerIdSent(CallEvent):
    number: str


@dataclasses.dataclass(frozen=True)
class DialComplete(CallEvent):
    pass


@dataclasses.dataclass(frozen=True)
class Progress(CallEvent):
    """Call progress before answer (ISDN PROGRESS): in-band tones or announcements."""
    inband: bool = False
    cause: int = 0


@dataclasses.dataclass(frozen=True)
class ChannelReset(CallEvent):
    """The channel was reset (ISDN RESTART) by this node or the far end."""
    reason: str = ""
    by_far_end: bool = False


@dataclasses.dataclass(frozen=True)
class DChannel(CallEvent):
    """A span's signaling link (PRI D-channel) came up or went down (span-level)."""
    up: bool
    reason: str = ""


# ---- actions (cardd carries these out) --------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Action:
    pass


@dataclasses.dataclass(frozen=True)
class Hook(Action):
    op: HookOp


@dataclasses.dataclass(frozen=True)
class Media(Action):
    """Call `MediaEngine.<method>(row, *args)` for this channel's row."""
    method: str
    args: tuple[Any, ...] = ()


@dataclasses.dataclass(frozen=True)
class Emit(Action):
    event: CallEvent


@dataclasses.dataclass(frozen=True)
class NewCall(Action):
    """A call starts on this channel: cardd allocates a call id before later Emits."""


@dataclasses.dataclass(frozen=True)
class EndCall(Action):
    """The call on this channel is over: cardd forgets its call id after earlier Emits."""


@dataclasses.dataclass(frozen=True)
class SendFrame(Action):
    """Send one frame (without FCS) on the span's D-channel."""
    frame: bytes


@dataclasses.dataclass(frozen=True)
class TakeCall(Action):
    """The call on `from_channel` continues on this channel (the far end moved it to
    another B-channel): cardd moves its call id, ANI and DNIS here."""
    from_channel: int


# Q.850 cause values used by the signaling modules.
CAUSE_NORMAL_CLEARING = 16
CAUSE_USER_BUSY = 17
CAUSE_NO_USER_RESPONDING = 18
CAUSE_NO_ANSWER = 19
CAUSE_CALL_REJECTED = 21
CAUSE_INVALID_NUMBER = 28
CAUSE_NORMAL_UNSPECIFIED = 31
CAUSE_NO_CIRCUIT = 34
CAUSE_NETWORK_OUT_OF_ORDER = 38
CAUSE_TEMPORARY_FAILURE = 41
CAUSE_SWITCH_CONGESTION = 42
CAUSE_RECOVERY_ON_TIMER = 102
CAUSE_PROTOCOL_ERROR = 111
