"""The agent state machine: states, the transition table, and the Agent record.

An agent is a person, not a phone: they log in at any extension (hot desking) or a
softphone, and carry their skills with them. The router drives the machine; every
change goes through ``Agent.transition``, which checks the table first and changes
nothing when the move is illegal.
"""
from __future__ import annotations

from .actions import IllegalTransition

LOGGED_OFF = "logged_off"
READY = "ready"
NOT_READY = "not_ready"
RESERVED = "reserved"            # picked by the router, the offer is on its way
RINGING = "ringing"              # the shell reports the device is alerting
BUSY = "busy"
ON_HOLD = "on_hold"
AFTER_CALL_WORK = "after_call_work"   # wrap-up

STATES = (LOGGED_OFF, READY, NOT_READY, RESERVED, RINGING, BUSY, ON_HOLD, AFTER_CALL_WORK)
# States in which the agent counts as staffing a queue (working or available).
WORKING = frozenset({READY, RESERVED, RINGING, BUSY, ON_HOLD, AFTER_CALL_WORK})
# States in which the agent holds a call the ACD routed or knows about.
ON_CALL = frozenset({BUSY, ON_HOLD})
OFFERED = frozenset({RESERVED, RINGING})

# (state, event) -> new state. Anything missing is illegal.
TRANSITIONS: dict[tuple[str, str], str] = {
    (LOGGED_OFF, "login"): NOT_READY,
    (NOT_READY, "ready"): READY,
    (AFTER_CALL_WORK, "ready"): READY,               # agent ends wrap-up early
    (READY, "not_ready"): NOT_READY,
    (NOT_READY, "not_ready"): NOT_READY,             # new reason code
    (AFTER_CALL_WORK, "not_ready"): NOT_READY,
    (READY, "logout"): LOGGED_OFF,
    (NOT_READY, "logout"): LOGGED_OFF,
    (AFTER_CALL_WORK, "logout"): LOGGED_OFF,
    (READY, "reserve"): RESERVED,
    (RESERVED, "ring"): RINGING,
    (RESERVED, "answer"): BUSY,
    (RINGING, "answer"): BUSY,
    (RESERVED, "no_answer"): NOT_READY,              # RONA
    (RINGING, "no_answer"): NOT_READY,
    (RESERVED, "cancel"): READY,                     # caller left / another agent answered
    (RINGING, "cancel"): READY,
    (BUSY, "hold"): ON_HOLD,
    (ON_HOLD, "retrieve"): BUSY,
    (BUSY, "end"): AFTER_CALL_WORK,                  # call ended or transferred out
    (ON_HOLD, "end"): AFTER_CALL_WORK,
    (AFTER_CALL_WORK, "wrapup_done"): READY,
    (AFTER_CALL_WORK, "wrapup_done_not_ready"): NOT_READY,   # not-ready asked during the call
    (READY, "transfer_in"): BUSY,                    # a transfer in is just a new busy
    (NOT_READY, "transfer_in"): BUSY,
    (AFTER_CALL_WORK, "transfer_in"): BUSY,
    (READY, "seize"): BUSY,                          # phone in use outside the ACD
    (BUSY, "release"): READY,                        # that call is over (no wrap-up: not ours)
    (BUSY, "release_not_ready"): NOT_READY,          # ... and not ready was asked meanwhile
    (BUSY, "transfer_in_seized"): BUSY,              # consulted, then handed the ACD call
}

# Supervisor force: allowed targets, from any logged-in state.
FORCE_TARGETS = (READY, NOT_READY, LOGGED_OFF)


def check(agent_id: str, state: str, event: str) -> str:
    """The state ``event`` leads to from ``state``, or IllegalTransition."""
    new = TRANSITIONS.get((state, event))
    if new is None:
        raise IllegalTransition(agent_id, state, event)
    return new


class Membership:
    """One agent in one queue: the facts a strategy sorts by."""
    __slots__ = ("queue", "order", "score", "last_turn")

    def __init__(self, queue, order: int, score: float):
        self.queue = queue          # the runtime Queue
        self.order = order          # top-down position (linear strategy)
        self.score = score          # skill weight in this queue (skill_weighted)
        self.last_turn = 0          # round robin: when this queue last offered to them


class Agent:
    __slots__ = ("id", "name", "skills", "seq", "state", "reason", "since", "extension",
                 "softphone", "call", "offered_call", "pending_not_ready",
                 "wrapup_until", "saved_wrapup_until", "acw_epoch", "offer_epoch",
                 "idle_since", "calls_handled", "talk_s", "time_in", "memberships",
                 "wrapup_s", "sticky", "acw_queue", "talk_mark", "acw_talk", "seized")

    def __init__(self, agent_id: str, skills: dict[str, int], seq: int, name: str = ""):
        self.id = agent_id
        self.name = name
        self.skills = skills
        self.seq = seq                       # registration order: the default linear order
        self.state = LOGGED_OFF
        self.reason = ""
        self.since = 0.0
        self.extension = ""
        self.softphone = False
        self.call = None                     # call id while busy/on hold
        self.offered_call = None             # call id while reserved/ringing
        self.pending_not_ready = None        # reason asked while on a call
        self.wrapup_until = 0.0
        self.saved_wrapup_until = 0.0        # wrap-up left when a transfer came in
        self.acw_epoch = 0
        self.offer_epoch = 0
        self.idle_since = 0.0                # longest idle: when they last became available
        self.calls_handled = 0
        self.talk_s = 0.0
        self.time_in = dict.fromkeys(STATES, 0.0)
        self.memberships: dict[str, Membership] = {}
        self.wrapup_s = 0.0                  # longest wrap-up among member queues
        self.sticky: list[str] = []          # calls waiting for this agent in particular
        self.acw_queue = None                # queue whose call the current wrap-up follows
        self.talk_mark = 0.0                 # talk_s when the current call began
        self.acw_talk = 0.0                  # talk of the call the wrap-up follows
        self.seized = ""                     # a call outside the ACD using their phone

    def transition(self, event: str, now: float, reason: str = "") -> str:
        """Apply ``event``; returns the old state. Raises before changing anything."""
        new = check(self.id, self.state, event)
        old = self.state
        spent = now - self.since
        self.time_in[old] += spent
        if old in ON_CALL:
            self.talk_s += spent
        self.state = new
        self.since = now
        self.reason = reason
        return old

    def force(self, new: str, now: float, reason: str) -> str:
        """Supervisor override: any logged-in state to one of FORCE_TARGETS."""
        if new not in FORCE_TARGETS:
            raise IllegalTransition(self.id, self.state, f"force:{new}",
                                    f"a supervisor may force only {FORCE_TARGETS}")
        if self.state == LOGGED_OFF:
            raise IllegalTransition(self.id, self.state, f"force:{new}",
                                    "the agent is not logged in")
        old = self.state
        spent = now - self.since
        self.time_in[old] += spent
        if old in ON_CALL:
            self.talk_s += spent
        self.state, self.since, self.reason = new, now, reason
        return old

    def times(self, now: float) -> dict[str, float]:
        """Seconds spent in each state, the current one counted up to ``now``."""
        out = dict(self.time_in)
        out[self.state] += now - self.since
        return out
