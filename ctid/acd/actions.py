"""What the ACD asks the shell to do, and the errors it raises.

Every ACD entry point returns a list of these frozen dataclasses, in the order they
happened. The shell (ctid) turns them into channel commands, CTI events and wallboard
updates; the ACD itself never touches a socket.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Optional


class AcdError(ValueError):
    """Bad input to the ACD (unknown agent/queue/call, bad value, time going backwards)."""


def ident(value, what: str) -> str:
    """``value`` as an identifier (agent, call, queue member, extension...), or AcdError."""
    if not isinstance(value, str) or not value:
        raise AcdError(f"{what} must be a non-empty string, got {value!r}")
    return value


class IllegalTransition(AcdError):
    """An agent state change the transition table does not allow. Nothing was changed."""

    def __init__(self, agent: str, state: str, event: str, detail: str = ""):
        self.agent, self.state, self.event = agent, state, event
        msg = f"agent {agent!r}: {event!r} is not allowed in state {state!r}"
        super().__init__(msg + (f" ({detail})" if detail else ""))


@dataclasses.dataclass(frozen=True, slots=True)
class Target:
    """Where an overflowing call goes: kind is queue, voicemail, callback or hangup."""
    kind: str
    name: str = ""

    KINDS = ("queue", "voicemail", "callback", "hangup")

    def __post_init__(self):
        if self.kind not in self.KINDS:
            raise AcdError(f"overflow target kind {self.kind!r} is not one of {self.KINDS}")
        if self.kind == "queue" and not self.name:
            raise AcdError("an overflow target of kind 'queue' needs a queue name")

    @classmethod
    def parse(cls, text: "str | Target") -> "Target":
        """'queue:sales', 'voicemail:100', 'voicemail', 'callback', 'hangup'."""
        if isinstance(text, Target):
            return text
        if not isinstance(text, str) or not text:
            raise AcdError(f"overflow target must be a non-empty string, got {text!r}")
        kind, _, name = text.partition(":")
        return cls(kind.strip(), name.strip())

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}" if self.name else self.kind


class Action:
    """Base of everything the ACD returns."""
    __slots__ = ()


@dataclasses.dataclass(frozen=True, slots=True)
class OfferCall(Action):
    """Ring this agent's device with this call (the agent is now reserved for it)."""
    agent: str
    call: str
    queue: str
    extension: str
    caller: str
    data: Any = None


@dataclasses.dataclass(frozen=True, slots=True)
class CancelOffer(Action):
    """Stop ringing the agent: the caller left, or another agent answered (ring all)."""
    agent: str
    call: str
    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class CallQueued(Action):
    """The call is waiting in the queue (first entry or back after ring-no-answer)."""
    call: str
    queue: str
    position: int
    ewt_s: int


@dataclasses.dataclass(frozen=True, slots=True)
class Announce(Action):
    """Tell the waiting caller their position and expected wait (audio is the shell's)."""
    call: str
    queue: str
    position: int
    ewt_s: int


@dataclasses.dataclass(frozen=True, slots=True)
class MusicOnHold(Action):
    """Start (on=True) or stop music on hold for a waiting caller."""
    call: str
    queue: str
    moh_class: str
    on: bool


@dataclasses.dataclass(frozen=True, slots=True)
class Overflow(Action):
    """The call leaves the queue for target; reason is 'wait', 'length' or 'max_wait'."""
    call: str
    queue: str
    target: Target
    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class CallbackRegistered(Action):
    """The caller asked to be called back; they keep their place and may hang up."""
    call: str
    queue: str
    number: str
    position: int
    ewt_s: int


@dataclasses.dataclass(frozen=True, slots=True)
class CallbackDue(Action):
    """A callback entry reached an agent: place the outbound call (agent reserved).
    The shell reports the customer answering (callback_connected) or not (callback_failed)."""
    call: str
    agent: str
    queue: str
    number: str
    extension: str
    attempt: int = 1            # 2, 3...: a retry after the customer was not reached


@dataclasses.dataclass(frozen=True, slots=True)
class AgentStateChanged(Action):
    agent: str
    old: str
    new: str
    reason: str
    time: float


@dataclasses.dataclass(frozen=True, slots=True)
class AgentStateCorrected(Action):
    """The reconciler found the agent's state contradicting the real channel."""
    agent: str
    extension: str
    channel_state: str
    old: str
    new: str


@dataclasses.dataclass(frozen=True, slots=True)
class Supervise(Action):
    """Bridge a supervisor into an agent's call: mode listen, whisper or barge."""
    supervisor: str
    agent: str
    call: str
    extension: str
    mode: str


@dataclasses.dataclass(frozen=True, slots=True)
class QueueFigures(Action):
    """Live figures of one queue for the current statistics period."""
    queue: str
    time: float
    waiting: int                # callers on the line waiting (sticky waits included)
    callbacks_waiting: int      # virtual entries holding a place
    longest_wait_s: float
    agents: dict                # state -> number of member agents in it
    staffed: int                # members logged in and not in not_ready
    offered: int                # answered + abandoned + overflowed + timed_out
    answered: int
    answered_within_sl: int
    abandoned: int
    overflowed: int
    timed_out: int
    service_level: Optional[float]
    sl_threshold_s: float
    asa_s: Optional[float]
    abandon_rate: Optional[float]
    aht_s: Optional[float]
    callbacks_requested: int
    callbacks_completed: int    # the customer answered the call back
    callbacks_failed: int = 0   # attempts that did not reach the customer
    callbacks_abandoned: int = 0  # entries given up: attempts used up, or cancelled
    callbacks_pending: int = 0  # entries not yet completed nor abandoned (any period)
