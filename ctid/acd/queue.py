"""Queues: configuration, the runtime queue (waiting calls + ready-agent index), calls.

Waiting calls are kept in a sorted list of keys (see ``priority.queue_key``): the head
is ``waiting[0]``, a caller's position is a bisect, an abandon is an exact delete.
"""
from __future__ import annotations

import bisect
import dataclasses
import random
import zlib
from typing import Optional

from .actions import AcdError, Target
from .overflow import OverflowRule
from .skills import validate_skills
from .stats import QueueStats
from .strategies import canonical, make_index


def _num(name, value, *, allow_none=False, positive=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise AcdError(f"queue setting {name} must be a number, got {value!r}")
    if value < 0 or (positive and value == 0):
        raise AcdError(f"queue setting {name} must be {'> 0' if positive else '>= 0'}, got {value!r}")
    return float(value)


@dataclasses.dataclass
class QueueConfig:
    name: str
    strategy: str = "longest_idle"
    skills: dict = dataclasses.field(default_factory=dict)      # skill -> minimum level
    skill_weights: dict = dataclasses.field(default_factory=dict)
    members: tuple = ()                # explicit ordered members (optional restriction)
    wrapup_s: float = 10.0
    rona_s: float = 20.0               # ring no answer timeout
    max_wait_s: Optional[float] = None
    max_wait_target: Target = Target("voicemail")
    overflow: tuple = ()               # OverflowRule (or dict / text forms)
    sl_threshold_s: float = 20.0
    announce_first_s: Optional[float] = 30.0
    announce_every_s: Optional[float] = 60.0
    moh: Optional[str] = "default"
    sticky_wait_s: float = 0.0         # 0: no sticky agent
    priority_step_s: Optional[float] = 60.0   # ageing; None: strict classes
    boost_s: float = 0.0               # head start against other queues an agent serves
    care_line: bool = False
    default_aht_s: float = 180.0       # expected-wait estimate before any call was handled
    callback_retries: int = 2          # further attempts when the customer was not reached
    callback_retry_s: float = 300.0    # pause before the entry waits for an agent again

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise AcdError(f"queue name must be a non-empty string, got {self.name!r}")
        self.strategy = canonical(self.strategy)
        self.skills = validate_skills(self.skills, f"queue {self.name!r} skills")
        if not isinstance(self.skill_weights, dict) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in self.skill_weights.values()):
            raise AcdError(f"queue {self.name!r}: skill_weights must map skill names to numbers")
        if isinstance(self.members, str) or not all(isinstance(m, str) for m in self.members):
            raise AcdError(f"queue {self.name!r}: members must be a list of agent ids")
        self.members = tuple(self.members)
        self.wrapup_s = _num("wrapup_s", self.wrapup_s)
        self.rona_s = _num("rona_s", self.rona_s, positive=True)
        self.max_wait_s = _num("max_wait_s", self.max_wait_s, allow_none=True, positive=True)
        self.max_wait_target = Target.parse(self.max_wait_target)
        self.overflow = tuple(OverflowRule.parse(r) for r in self.overflow)
        self.sl_threshold_s = _num("sl_threshold_s", self.sl_threshold_s)
        self.announce_first_s = _num("announce_first_s", self.announce_first_s, allow_none=True)
        self.announce_every_s = _num("announce_every_s", self.announce_every_s, allow_none=True,
                                     positive=True)
        self.sticky_wait_s = _num("sticky_wait_s", self.sticky_wait_s)
        self.priority_step_s = _num("priority_step_s", self.priority_step_s, allow_none=True)
        self.boost_s = _num("boost_s", self.boost_s)
        self.default_aht_s = _num("default_aht_s", self.default_aht_s, positive=True)
        if isinstance(self.callback_retries, bool) or not isinstance(self.callback_retries, int) \
                or self.callback_retries < 0:
            raise AcdError(f"queue setting callback_retries must be a whole number >= 0, "
                           f"got {self.callback_retries!r}")
        self.callback_retry_s = _num("callback_retry_s", self.callback_retry_s)
        for rule in self.overflow:
            if rule.target.kind == "queue" and rule.target.name == self.name:
                raise AcdError(f"queue {self.name!r}: an overflow rule points at the queue itself")

    @classmethod
    def from_dict(cls, d: dict) -> "QueueConfig":
        if not isinstance(d, dict):
            raise AcdError(f"a queue definition must be a mapping, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise AcdError(f"queue {d.get('name', '?')!r}: unknown settings {sorted(unknown)}")
        return cls(**d)


# Call states inside the ACD.
NEW = "new"                  # arriving, overflowing or transferred in: not filed yet
WAITING = "waiting"          # in the queue's sorted list, caller on the line
STICKY = "sticky"            # held for the agent who served this caller last
OFFERED = "offered"          # an agent (several: ring all) reserved for it
CONNECTED = "connected"
CALLBACK = "callback"        # virtual entry in the sorted list, caller hung up
DIALLING = "dialling"        # callback: the agent answered, the customer is being dialled
CALLBACK_RETRY = "callback_retry"   # callback: customer not reached, out of the list until
                                    # its retry timer files it again under its own key
DONE = "done"

# How a callback entry moves (the entry points in router.py follow this table).
CALLBACK_TRANSITIONS = {
    (CALLBACK, "offer"): OFFERED,              # reached an agent: CallbackDue
    (OFFERED, "no_answer"): CALLBACK,          # agent did not answer: back at the head
    (OFFERED, "answer"): DIALLING,             # agent answered: dial the customer
    (OFFERED, "failed"): CALLBACK_RETRY,       # could not even start (or DONE: no attempts left)
    (DIALLING, "connected"): CONNECTED,        # the customer answered: completed
    (DIALLING, "failed"): CALLBACK_RETRY,      # not reached (or DONE: no attempts left)
    (CALLBACK_RETRY, "retry"): CALLBACK,       # the retry timer: waits again under its key
    (CALLBACK, "cancel"): DONE,
    (CALLBACK_RETRY, "cancel"): DONE,
}


def callback_step(call: "Call", event: str) -> str:
    """The state a callback entry goes to on ``event``; AcdError if the table forbids it."""
    new = CALLBACK_TRANSITIONS.get((call.state, event)) if call.callback is not None else None
    if new is None:
        what = "a callback" if call.callback is not None else "not a callback"
        raise AcdError(f"call {call.id!r} is {call.state} ({what}): {event!r} does not apply")
    return new


class Call:
    __slots__ = ("id", "caller", "data", "level", "pclass", "arrived", "queue", "entered",
                 "key", "state", "agents", "agent", "epoch", "callback", "sticky_agent",
                 "offered_at", "answered_at", "moh", "rona_count", "hops", "cb_key",
                 "cb_attempts")

    def __init__(self, call_id, caller, data, level, pclass, now):
        self.id = call_id
        self.caller = caller
        self.data = data
        self.level = level
        self.pclass = pclass
        self.arrived = now          # first arrival in the ACD: seniority for the key
        self.queue = None           # runtime Queue it is in (or was last in)
        self.entered = now          # entry into the current queue: waits count from here
        self.key = None
        self.state = NEW
        self.agents: tuple = ()     # reserved agents while offered
        self.agent = None           # the connected agent
        self.epoch = 0              # bumps invalidate this call's pending timers
        self.callback = None        # number to call back
        self.sticky_agent = None
        self.offered_at = 0.0
        self.answered_at = None
        self.moh = False
        self.rona_count = 0
        self.hops = 0
        self.cb_key = None          # callback: the key it was filed under (kept for retries)
        self.cb_attempts = 0        # callback: failed attempts so far


class Queue:
    """One queue at run time."""

    def __init__(self, cfg: QueueConfig, seed: int):
        self.cfg = cfg
        self.name = cfg.name
        self.members: dict = {}                 # agent id -> Membership
        self.rng = random.Random(seed ^ zlib.crc32(cfg.name.encode()))
        self.index = make_index(cfg.strategy, self.rng)
        self.ring_all = cfg.strategy == "ring_all"
        self.waiting: list[tuple] = []          # sorted keys; key[-1] is the call id
        self.live_waiting = 0                   # entries with the caller on the line
        self.sticky: set[str] = set()           # calls in sticky wait for a member
        self.staffed = 0                        # members in a WORKING state
        self.turn = 0                           # round-robin clock
        self.next_order = 0
        self.stats = QueueStats(cfg.sl_threshold_s, cfg.default_aht_s)
        self.wait_rules = tuple(r for r in cfg.overflow if r.when == "wait")
        self.length_rules = tuple(r for r in cfg.overflow if r.when == "length")
        self.callbacks_pending = 0              # requested, neither completed nor abandoned

    def insert(self, key) -> None:
        bisect.insort(self.waiting, key)

    def remove(self, key) -> None:
        w = self.waiting
        i = bisect.bisect_left(w, key)
        if i < len(w) and w[i] == key:
            del w[i]

    def position(self, key) -> int:
        """1-based place of a key among the entries (works for keys not in the list)."""
        return bisect.bisect_left(self.waiting, key) + 1

    def ewt_s(self, position: int) -> int:
        """Expected wait: position x average handle time / agents staffing the queue."""
        return int(round(position * self.stats.aht_estimate / max(1, self.staffed)))
