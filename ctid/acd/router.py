"""The ACD: matching calls to agents, driven by events and an injected clock.

Every entry point takes ``now`` (seconds on one monotonic clock the shell owns) and
returns the actions that followed, in order. Nothing here reads a clock, sleeps or
does I/O, so a simulation can run hours of traffic in seconds and tests are exact.

Invariant kept after every entry point: a queue never holds a waiting caller while
one of its members sits ready and idle. So a routing decision is one of two cheap
moves: a call arrives -> the front of the queue's ready index; an agent becomes ready
-> the best head among the queues they belong to (sticky calls for them first).

Timers (ring no answer, wrap-up end, overflow, maximum wait, announcements, sticky
expiry) live in one heap; each entry carries the epoch of what it refers to, and a
bump of that epoch cancels it without searching the heap.

Callbacks (callbacks.py), phones used outside the ACD and the reconciler (reconcile.py)
and restoring after a restart (restore.py) are mixins of ``Acd``: one object, one state.
"""
from __future__ import annotations

import dataclasses
import heapq
import itertools
import math
from typing import Optional

from . import agent as ag
from .actions import (AcdError, AgentStateChanged, Announce, CallbackDue, CallQueued,
                      CancelOffer, IllegalTransition, MusicOnHold, OfferCall, Overflow,
                      QueueFigures, Supervise, Target, ident)
from .agent import (AFTER_CALL_WORK, BUSY, LOGGED_OFF, NOT_READY, OFFERED as AG_OFFERED,
                    ON_CALL, READY, WORKING, Agent, Membership)
from .callbacks import CallbackMixin
from .overflow import MAX_HOPS
from .priority import PriorityPolicy, queue_key
from .queue import (CALLBACK, CALLBACK_RETRY, CONNECTED, DIALLING, DONE, NEW, OFFERED, STICKY,
                    WAITING, Call, Queue, QueueConfig, callback_step)
from .reconcile import ReconcilerMixin
from .restore import RestoreMixin
from .skills import SkillIndex, qualifies, skill_score, validate_skills
from .stats import QueueLog
from .timers import (ANNOUNCE as _ANNOUNCE, CB_RETRY as _CB_RETRY, MAX_WAIT as _MAX_WAIT,
                     OVERFLOW as _OVERFLOW, RING_ALL as _RING_ALL, RONA as _RONA,
                     STICKY as _STICKY, WRAPUP as _WRAPUP)

SUPERVISE_MODES = ("listen", "whisper", "barge")


@dataclasses.dataclass
class AcdConfig:
    seed: int = 0                           # random strategy
    figures_every_s: Optional[float] = 10.0  # QueueFigures from tick(); None: on demand only
    reconcile_grace_s: float = 5.0          # states younger than this are not "drifted"
    sticky_memory_s: float = 7 * 24 * 3600.0  # how long "who served this caller" is kept

    def __post_init__(self):
        if self.figures_every_s is not None and not self.figures_every_s > 0:
            raise AcdError("figures_every_s must be > 0 or None")
        if not self.reconcile_grace_s >= 0 or not self.sticky_memory_s >= 0:
            raise AcdError("reconcile_grace_s and sticky_memory_s must be >= 0")


class Acd(CallbackMixin, ReconcilerMixin, RestoreMixin):
    """The ACD's state and its entry points: provisioning, routing and dispatch, the call
    and agent APIs, supervision, timers and figures here; callbacks, the reconciler and
    restoring after a restart in the mixins."""

    def __init__(self, queues=(), config: Optional[AcdConfig] = None,
                 policy: Optional[PriorityPolicy] = None, log: Optional[QueueLog] = None):
        self.cfg = config or AcdConfig()
        self.policy = policy or PriorityPolicy()
        self.log = log if log is not None else QueueLog()
        self.queues: dict[str, Queue] = {}
        self.agents: dict[str, Agent] = {}
        self.calls: dict[str, Call] = {}
        self.by_extension: dict[str, str] = {}
        self.skill_index = SkillIndex()
        self.last_agent: dict[str, tuple[str, float]] = {}
        self.now = -math.inf
        self._timers: list = []
        self._tseq = itertools.count()
        self._cseq = itertools.count()
        self._figures_due: Optional[float] = None
        for q in queues:
            self.add_queue(q)

    # ------------------------------------------------------------------ helpers
    def _clock(self, now) -> float:
        if isinstance(now, bool) or not isinstance(now, (int, float)) or now != now:
            raise AcdError(f"now must be a number of seconds, got {now!r}")
        if now < self.now:
            raise AcdError(f"time went backwards: {now} < {self.now}")
        self.now = now
        return now

    def _agent(self, agent_id) -> Agent:
        a = self.agents.get(agent_id)
        if a is None:
            raise AcdError(f"unknown agent {agent_id!r}")
        return a

    def _queue(self, name) -> Queue:
        q = self.queues.get(name)
        if q is None:
            raise AcdError(f"unknown queue {name!r}")
        return q

    def _call(self, call_id) -> Call:
        c = self.calls.get(call_id)
        if c is None:
            raise AcdError(f"unknown call {call_id!r} (never arrived, or already finished)")
        return c

    def _timer(self, due, kind, ref, epoch, extra=None) -> None:
        heapq.heappush(self._timers, (due, next(self._tseq), kind, ref, epoch, extra))

    def _log(self, now, q, call, agent, event, data=None):
        self.log.append(now, q, call, agent, event, data)

    # ------------------------------------------------------------- provisioning
    def add_queue(self, cfg) -> None:
        if isinstance(cfg, dict):
            cfg = QueueConfig.from_dict(cfg)
        if not isinstance(cfg, QueueConfig):
            raise AcdError(f"add_queue needs a QueueConfig or a dict, got {type(cfg).__name__}")
        if cfg.name in self.queues:
            raise AcdError(f"queue {cfg.name!r} already exists")
        q = Queue(cfg, self.cfg.seed)
        self.queues[cfg.name] = q
        if cfg.members:
            candidates = [a for a in cfg.members if a in self.agents]
        else:
            candidates = self.skill_index.candidates(cfg.skills, self.agents.keys())
        for aid in sorted(candidates, key=lambda i: self.agents[i].seq):
            a = self.agents[aid]
            if qualifies(a.skills, cfg.skills):
                self._join(a, q)

    def add_agent(self, agent_id, skills=None, name: str = "") -> None:
        ident(agent_id, "agent id")
        if agent_id in self.agents:
            raise AcdError(f"agent {agent_id!r} already exists")
        skills = validate_skills(skills, f"agent {agent_id!r} skills")
        a = Agent(agent_id, skills, len(self.agents), name)
        self.agents[agent_id] = a
        self.skill_index.add(agent_id, skills)
        for q in self.queues.values():
            if self._eligible(a, q):
                self._join(a, q)

    def set_skills(self, agent_id, skills, now) -> list:
        """Change an agent's skills; memberships follow at once."""
        a = self._agent(agent_id)
        skills = validate_skills(skills, f"agent {agent_id!r} skills")
        now = self._clock(now)
        acts: list = []
        self.skill_index.remove(a.id, a.skills)
        a.skills = skills
        self.skill_index.add(a.id, skills)
        joined = []
        for q in self.queues.values():
            member = q.name in a.memberships
            ok = self._eligible(a, q)
            if member and not ok:
                self._leave(a, q)
            elif ok and not member:
                self._join(a, q)
                joined.append(q)
            elif ok:
                m = a.memberships[q.name]
                m.score = skill_score(a.skills, q.cfg.skills, q.cfg.skill_weights)
                if a.state == READY:       # the key may have changed
                    q.index.remove(a.id)
                    q.index.add(a, m)
        self._log(now, "", "", a.id, "SKILLS", {"skills": dict(skills)})
        if a.state == READY:
            for q in joined:
                if q.waiting:              # an idle agent meets waiting calls
                    self._detach_ready(a)
                    self._agent_available(a, now, acts)
                    break
        return acts

    def _eligible(self, a: Agent, q: Queue) -> bool:
        cfg = q.cfg
        return (not cfg.members or a.id in cfg.members) and qualifies(a.skills, cfg.skills)

    def _join(self, a: Agent, q: Queue) -> None:
        cfg = q.cfg
        order = cfg.members.index(a.id) if cfg.members else a.seq
        m = Membership(q, order, skill_score(a.skills, cfg.skills, cfg.skill_weights))
        a.memberships[q.name] = m
        q.members[a.id] = m
        a.wrapup_s = max(a.wrapup_s, cfg.wrapup_s)
        if a.state in WORKING:
            q.staffed += 1
        if a.state == READY and not q.waiting:
            q.index.add(a, m)

    def _leave(self, a: Agent, q: Queue) -> None:
        q.index.remove(a.id)
        del q.members[a.id]
        del a.memberships[q.name]
        if a.state in WORKING:
            q.staffed -= 1
        a.wrapup_s = max((m.queue.cfg.wrapup_s for m in a.memberships.values()), default=0.0)

    def _detach_ready(self, a: Agent) -> None:
        for m in a.memberships.values():
            m.queue.index.remove(a.id)

    # ---------------------------------------------------------- state changes
    def _set_state(self, a: Agent, event, now, reason, acts, force_to=None) -> str:
        since = a.since
        old = a.force(force_to, now, reason) if force_to else a.transition(event, now, reason)
        new = a.state
        if (old in WORKING) != (new in WORKING):
            d = 1 if new in WORKING else -1
            for m in a.memberships.values():
                m.queue.staffed += d
        if old == READY:
            self._detach_ready(a)
        elif old == AFTER_CALL_WORK and a.acw_queue is not None:
            a.acw_queue.stats.on_handled(a.acw_talk, now - since)
            a.acw_queue = None
        if new == READY and event != "cancel":
            a.idle_since = now
        acts.append(AgentStateChanged(a.id, old, new, reason, now))
        self._log(now, "", a.offered_call or a.call or "", a.id, "AGENT_STATE",
                  {"from": old, "to": new, "reason": reason})
        return old

    def _agent_available(self, a: Agent, now, acts) -> None:
        """``a`` just became READY: give them a call, or file them as idle."""
        if a.seized:                 # their phone is on a call outside the ACD: busy, no offer
            self._set_state(a, "seize", now, "phone in use", acts)
            a.talk_mark = a.talk_s
            return
        st = a.sticky
        while st:
            call = self.calls.get(st.pop(0))
            if call is not None and call.state == STICKY and call.sticky_agent == a.id:
                call.queue.sticky.discard(call.id)
                self._offer(call, (a,), now, acts)
                return
        best = None
        bq = None
        for m in a.memberships.values():
            w = m.queue.waiting
            if w and (best is None or w[0] < best):
                best, bq = w[0], m.queue
        if bq is not None:
            del bq.waiting[0]
            call = self.calls[best[-1]]
            if call.state == WAITING:
                bq.live_waiting -= 1
            self._offer(call, (a,), now, acts)
            return
        for m in a.memberships.values():
            m.queue.index.add(a, m)

    def _after_cancel(self, a: Agent, now, acts) -> None:
        """An offer to ``a`` was withdrawn: a not-ready asked meanwhile applies now."""
        if a.pending_not_ready is not None:
            reason, a.pending_not_ready = a.pending_not_ready, None
            self._set_state(a, "not_ready", now, reason, acts)
        else:
            self._agent_available(a, now, acts)

    def _offer(self, call: Call, agents, now, acts) -> None:
        q = call.queue
        call.state = OFFERED
        call.agents = tuple(a.id for a in agents)
        call.offered_at = now
        call.epoch += 1
        for a in agents:
            a.offered_call = call.id
            self._set_state(a, "reserve", now, q.name, acts)
            a.offer_epoch += 1
            m = a.memberships.get(q.name)
            if m is not None:
                q.turn += 1
                m.last_turn = q.turn
            if call.callback is not None:
                acts.append(CallbackDue(call.id, a.id, q.name, call.callback, a.extension,
                                        call.cb_attempts + 1))
            else:
                acts.append(OfferCall(a.id, call.id, q.name, a.extension, call.caller, call.data))
            self._log(now, q.name, call.id, a.id, "OFFER", {"callback": call.callback is not None})
            if not q.ring_all:
                self._timer(now + q.cfg.rona_s, _RONA, a.id, a.offer_epoch)
        if q.ring_all:
            self._timer(now + q.cfg.rona_s, _RING_ALL, call.id, call.epoch)

    def _dispatch(self, q: Queue, now, acts) -> None:
        """Restore the invariant for one queue: match its head calls to its idle agents."""
        while q.waiting and len(q.index):
            key = q.waiting.pop(0)
            call = self.calls[key[-1]]
            if call.state == WAITING:
                q.live_waiting -= 1
            if q.ring_all:
                agents = [self.agents[i] for i in q.index.ordered()]
            else:
                agents = (self.agents[q.index.best()],)
            self._offer(call, agents, now, acts)

    # ------------------------------------------------------------ call routing
    def _route_new(self, call: Call, q: Queue, now, acts) -> None:
        """A call enters ``q`` (arrival, overflow or transfer)."""
        call.queue = q
        call.entered = now
        cfg = q.cfg
        call.key = queue_key(call.level, call.arrived, cfg.priority_step_s, cfg.boost_s,
                             next(self._cseq), call.id)
        if cfg.sticky_wait_s > 0 and call.caller:
            a = self._sticky_agent(call.caller, q, now)
            if a is not None:
                if a.state == READY:
                    self._log(now, q.name, call.id, a.id, "STICKY", {})
                    self._offer(call, (a,), now, acts)
                    return
                call.state = STICKY
                call.sticky_agent = a.id
                call.epoch += 1
                a.sticky.append(call.id)
                q.sticky.add(call.id)
                self._log(now, q.name, call.id, a.id, "STICKY_WAIT", {"until": now + cfg.sticky_wait_s})
                self._timer(now + cfg.sticky_wait_s, _STICKY, call.id, call.epoch)
                self._arm_wait_timers(call, q, now)
                self._queued(call, q, acts)
                return
        if len(q.index):
            if q.ring_all:
                agents = [self.agents[i] for i in q.index.ordered()]
            else:
                agents = (self.agents[q.index.best()],)
            self._offer(call, agents, now, acts)
            return
        if call.hops < MAX_HOPS:
            n = len(q.waiting)
            for rule in q.length_rules:
                if n >= rule.threshold:
                    self._overflow(call, q, rule.target, "length", now, acts)
                    return
        self._wait(call, q, now, acts)

    def _sticky_agent(self, caller, q: Queue, now) -> Optional[Agent]:
        rec = self.last_agent.get(caller)
        if rec is None or now - rec[1] > self.cfg.sticky_memory_s:
            return None
        a = self.agents.get(rec[0])
        if a is None or a.state == LOGGED_OFF or q.name not in a.memberships:
            return None
        return a

    def _remember(self, caller, agent_id, now) -> None:
        la = self.last_agent
        la.pop(caller, None)
        la[caller] = (agent_id, now)
        horizon = now - self.cfg.sticky_memory_s
        for _ in range(2):                  # amortized pruning, oldest first
            first = next(iter(la))
            if la[first][1] >= horizon:
                break
            del la[first]

    def _wait(self, call: Call, q: Queue, now, acts) -> None:
        call.state = WAITING
        call.epoch += 1
        q.insert(call.key)
        q.live_waiting += 1
        self._arm_wait_timers(call, q, now)
        self._queued(call, q, acts)

    def _queued(self, call: Call, q: Queue, acts) -> None:
        pos = q.position(call.key)
        acts.append(CallQueued(call.id, q.name, pos, q.ewt_s(pos)))
        if q.cfg.moh and not call.moh:
            call.moh = True
            acts.append(MusicOnHold(call.id, q.name, q.cfg.moh, True))

    def _arm_wait_timers(self, call: Call, q: Queue, now) -> None:
        """Timers count from the queue entry, so a call back after RONA keeps its clock."""
        cfg, ep, t0 = q.cfg, call.epoch, call.entered
        if cfg.max_wait_s is not None:
            self._timer(t0 + cfg.max_wait_s, _MAX_WAIT, call.id, ep)
        for i, rule in enumerate(q.wait_rules):
            self._timer(t0 + rule.threshold, _OVERFLOW, call.id, ep, i)
        if cfg.announce_first_s is not None:
            t = t0 + cfg.announce_first_s
            if t < now:
                if cfg.announce_every_s is None:
                    return
                t += math.ceil((now - t) / cfg.announce_every_s) * cfg.announce_every_s
            self._timer(t, _ANNOUNCE, call.id, ep)

    def _requeue_front(self, call: Call, now, acts) -> None:
        """Back to the head of its queue (ring no answer, offer withdrawn)."""
        q = call.queue
        call.agents = ()
        call.key = (0,) + call.key[1:]
        if call.callback is not None:
            call.state = CALLBACK
            call.epoch += 1
            q.insert(call.key)
        else:
            self._wait(call, q, now, acts)

    def _take_out(self, call: Call) -> None:
        """Remove a waiting/sticky/callback call from its queue's structures."""
        q = call.queue
        if call.state == WAITING:
            q.remove(call.key)
            q.live_waiting -= 1
        elif call.state == CALLBACK:
            q.remove(call.key)
        elif call.state == STICKY:
            q.sticky.discard(call.id)
        call.state = NEW

    def _finish(self, call: Call) -> None:
        call.state = DONE
        call.epoch += 1
        self.calls.pop(call.id, None)

    def _overflow(self, call: Call, q: Queue, target: Target, reason: str, now, acts) -> None:
        in_list = call.state in (WAITING, CALLBACK)
        if call.state in (WAITING, STICKY):
            self._take_out(call)
        wait = now - call.entered
        if reason == "max_wait":
            q.stats.timed_out += 1
            self._log(now, q.name, call.id, "", "EXITWITHTIMEOUT", {"target": str(target), "wait_s": wait})
        else:
            q.stats.overflowed += 1
            self._log(now, q.name, call.id, "", "OVERFLOW",
                      {"target": str(target), "reason": reason, "wait_s": wait})
        if target.kind == "queue" and target.name not in self.queues:
            # A configuration hole must not lose the caller: the queue's voicemail takes it.
            self._log(now, q.name, call.id, "", "OVERFLOW_FAILED", {"target": str(target)})
            target = Target("voicemail", q.name)
        if target.kind == "callback" and not call.caller:
            target = Target("voicemail", q.name)
        acts.append(Overflow(call.id, q.name, target, reason))
        if target.kind == "queue":
            call.hops += 1
            call.epoch += 1
            tq = self.queues[target.name]
            self._log(now, tq.name, call.id, "", "ENTERQUEUE",
                      {"caller": call.caller, "priority": call.level, "from": q.name})
            self._route_new(call, tq, now, acts)
        elif target.kind == "callback":
            if in_list:
                call.state = WAITING        # still filed: _make_callback keeps the key
                q.insert(call.key)
                q.live_waiting += 1
            self._make_callback(call, q, call.caller, now, acts)
        else:
            if call.moh:
                acts.append(MusicOnHold(call.id, q.name, q.cfg.moh or "", False))
            self._finish(call)

    # --------------------------------------------------------------- call API
    def call_arrived(self, call_id, queue, caller="", priority=None, data=None, now=None) -> list:
        """A caller reaches ``queue``. ``priority``: None (policy decides), a level or class."""
        ident(call_id, "call id")
        q = self._queue(queue)
        if call_id in self.calls:
            raise AcdError(f"call {call_id!r} is already in the ACD")
        if not isinstance(caller, str):
            raise AcdError(f"caller must be a string (a number), got {caller!r}")
        if data is not None and not isinstance(data, dict):
            raise AcdError(f"call data must be a dict, got {type(data).__name__}")
        if now is None:
            raise AcdError("call_arrived needs now")
        if priority is not None:
            self.policy.level_of(priority)
        now = self._clock(now)
        level, pclass = self.policy.classify(caller, data, q.name, q.cfg.care_line, priority, now)
        call = Call(call_id, caller, data, level, pclass, now)
        self.calls[call_id] = call
        self._log(now, q.name, call_id, "", "ENTERQUEUE",
                  {"caller": caller, "priority": level, "class": pclass})
        acts: list = []
        self._route_new(call, q, now, acts)
        return acts

    def call_abandoned(self, call_id, now) -> list:
        """The caller hung up before an agent answered (a connected call is ended instead)."""
        call = self._call(call_id)
        if call.state == CONNECTED:
            return self.call_ended(call_id, now)
        if call.state == DIALLING:          # the agent's side cleared before the customer answered
            return self.callback_failed(call_id, now, "cleared before the customer answered")
        now = self._clock(now)
        acts: list = []
        q = call.queue
        if call.callback is not None:       # the entry is given up: nobody is on the line
            self._cancel_callback(call, now, acts)
            return acts
        q.stats.abandoned += 1
        self._leave_unanswered(call, now, "caller_left", "ABANDON", {}, acts)
        return acts

    def call_withdrawn(self, call_id, now, reason: str = "") -> list:
        """A waiting or offered call is taken back by the party that placed it, which is
        not a caller's abandon (an agent cancelling a consultation that waits in a
        queue): out of the queue like an abandon (offers cancelled, the agents back as
        they were), logged WITHDRAWN with ``reason``, not counted in the figures."""
        call = self._call(call_id)
        if call.state not in (WAITING, STICKY, OFFERED) or call.callback is not None:
            what = "a callback entry" if call.callback is not None else call.state
            raise AcdError(f"call {call_id!r} is {what}; only a waiting or offered call "
                           f"can be withdrawn")
        if not isinstance(reason, str):
            raise AcdError(f"withdrawal reason must be a string, got {reason!r}")
        now = self._clock(now)
        acts: list = []
        self._leave_unanswered(call, now, "withdrawn", "WITHDRAWN", {"reason": reason}, acts)
        return acts

    def _leave_unanswered(self, call: Call, now, why: str, event: str, data: dict,
                          acts) -> None:
        """A call nobody answered leaves its queue (``why``: the offers' cancel reason)."""
        q = call.queue
        pos = q.position(call.key)
        cancelled = []
        if call.state == OFFERED:
            for aid in call.agents:
                a = self.agents[aid]
                self._set_state(a, "cancel", now, why, acts)
                a.offered_call = None
                acts.append(CancelOffer(aid, call.id, why))
                cancelled.append(a)
        else:
            self._take_out(call)
        self._log(now, q.name, call.id, "", event,
                  {"position": pos, "wait_s": now - call.entered, **data})
        self._finish(call)
        for a in cancelled:
            self._after_cancel(a, now, acts)

    def _offered_to(self, agent_id, call_id) -> tuple[Agent, Call]:
        a = self._agent(agent_id)
        call = self._call(call_id)
        if call.state != OFFERED or a.id not in call.agents:
            raise AcdError(f"call {call_id!r} is not offered to agent {agent_id!r} "
                           f"(call is {call.state}, agent is {a.state})")
        return a, call

    def agent_ringing(self, agent_id, call_id, now) -> list:
        a, call = self._offered_to(agent_id, call_id)
        ag.check(a.id, a.state, "ring")
        now = self._clock(now)
        acts: list = []
        self._set_state(a, "ring", now, call.queue.name, acts)
        return acts

    def agent_answered(self, agent_id, call_id, now) -> list:
        a, call = self._offered_to(agent_id, call_id)
        ag.check(a.id, a.state, "answer")
        now = self._clock(now)
        acts: list = []
        q = call.queue
        self._set_state(a, "answer", now, q.name, acts)
        a.offered_call = None
        a.call = call.id
        a.calls_handled += 1
        a.talk_mark = a.talk_s
        others = [i for i in call.agents if i != a.id]
        call.state = CONNECTED if call.callback is None else callback_step(call, "answer")
        call.agent = a.id
        call.agents = ()
        call.answered_at = now
        call.epoch += 1
        if call.callback is not None:       # completed only once the customer answers
            self._log(now, q.name, call.id, a.id, "CALLBACK_DIAL",
                      {"number": call.callback, "attempt": call.cb_attempts + 1})
        else:
            wait = now - call.entered
            q.stats.on_answered(wait)
            self._log(now, q.name, call.id, a.id, "CONNECT",
                      {"wait_s": wait, "ring_s": now - call.offered_at})
        if call.moh:
            call.moh = False
            acts.append(MusicOnHold(call.id, q.name, q.cfg.moh or "", False))
        if call.caller:
            self._remember(call.caller, a.id, now)
        for aid in others:
            b = self.agents[aid]
            self._set_state(b, "cancel", now, "answered_elsewhere", acts)
            b.offered_call = None
            acts.append(CancelOffer(aid, call.id, "answered_elsewhere"))
            self._after_cancel(b, now, acts)
        return acts

    def agent_no_answer(self, agent_id, call_id, now) -> list:
        """Ring no answer (or the agent rejected): agent to not_ready(rona), call to the head."""
        a, call = self._offered_to(agent_id, call_id)
        ag.check(a.id, a.state, "no_answer")
        now = self._clock(now)
        acts: list = []
        self._rona(a, call, now, acts)
        return acts

    def _rona(self, a: Agent, call: Call, now, acts) -> None:
        q = call.queue
        self._set_state(a, "no_answer", now, "rona", acts)
        a.offered_call = None
        a.pending_not_ready = None
        self._log(now, q.name, call.id, a.id, "RINGNOANSWER", {"ring_s": now - call.offered_at})
        call.rona_count += 1
        call.agents = tuple(i for i in call.agents if i != a.id)
        if not call.agents:
            self._requeue_front(call, now, acts)
            self._dispatch(q, now, acts)

    def call_ended(self, call_id, now) -> list:
        """The connected call is over (either side hung up). Before answer: an abandon."""
        call = self._call(call_id)
        if call.state != CONNECTED:
            return self.call_abandoned(call_id, now)
        now = self._clock(now)
        acts: list = []
        q = call.queue
        agent_id = call.agent or ""
        self._log(now, q.name, call.id, agent_id, "COMPLETE",
                  {"talk_s": now - call.answered_at, "wait_s": call.answered_at - call.entered})
        self._finish(call)
        if call.agent is not None:
            self._end_talk(self.agents[call.agent], q, now, acts)
        return acts

    def _end_talk(self, a: Agent, q: Queue, now, acts) -> None:
        """Talk over (hang-up or transfer out): one wrap-up, the longest that applies."""
        self._set_state(a, "end", now, q.name, acts)
        a.call = None
        talk = a.talk_s - a.talk_mark
        dur = max(a.wrapup_s, q.cfg.wrapup_s)
        until = max(now + dur, a.saved_wrapup_until)
        a.saved_wrapup_until = 0.0
        a.wrapup_until = until
        a.acw_epoch += 1
        a.acw_queue = q
        a.acw_talk = talk
        q.stats.on_talk_end(talk, dur)
        if until <= now:
            self._finish_wrapup(a, now, acts)
        else:
            self._timer(until, _WRAPUP, a.id, a.acw_epoch)

    def _finish_wrapup(self, a: Agent, now, acts) -> None:
        self._free_again(a, "wrapup_done", "wrapup_done_not_ready", now, acts)

    def _free_again(self, a: Agent, event: str, not_ready_event: str, now, acts) -> None:
        """``a``'s work is over (``event``): the not ready asked meanwhile applies now
        (``not_ready_event``), or they are ready for the next call."""
        if a.pending_not_ready is not None:
            reason, a.pending_not_ready = a.pending_not_ready, None
            self._set_state(a, not_ready_event, now, reason, acts)
        else:
            self._set_state(a, event, now, "", acts)
            self._agent_available(a, now, acts)

    def call_transferred(self, call_id, now, to_agent=None, to_queue=None) -> list:
        """The agent handed the call on: to an agent, a queue, or out of the ACD (neither).

        The transferring agent's talk ends and their wrap-up starts; a receiving agent
        simply becomes busy (if they were in wrap-up, what is left of it resumes after).
        """
        call = self._call(call_id)
        if call.state != CONNECTED:
            raise AcdError(f"call {call_id!r} is {call.state}; only a connected call can be transferred")
        if to_agent is not None and to_queue is not None:
            raise AcdError("transfer to an agent or to a queue, not both")
        b = tq = None
        if to_agent is not None:
            b = self._agent(to_agent)
            if b.id == call.agent:
                raise AcdError(f"call {call_id!r} is already with agent {to_agent!r}")
            # Busy on no ACD call: the consultation (or a call the reconciler saw) that
            # this transfer joins to the ACD call.
            b_event = "transfer_in_seized" if b.state == BUSY and b.call is None else "transfer_in"
            ag.check(b.id, b.state, b_event)
        if to_queue is not None:
            tq = self._queue(to_queue)
        now = self._clock(now)
        acts: list = []
        q = call.queue
        src = call.agent
        self._log(now, q.name, call.id, src or "", "TRANSFER",
                  {"to_agent": to_agent, "to_queue": to_queue})
        if b is not None:                   # b may be the one to pick up src's next call
            if b.state == AFTER_CALL_WORK:
                b.saved_wrapup_until = max(b.wrapup_until, b.saved_wrapup_until)
                b.acw_epoch += 1
            elif b.state == NOT_READY:           # back to not ready when this call is done
                b.pending_not_ready = b.reason or "not_ready"
            self._set_state(b, b_event, now, "transfer", acts)
            b.seized = ""
            b.call = call.id
            b.calls_handled += 1
            b.talk_mark = b.talk_s
            call.agent = b.id
        else:
            call.agent = None
        if src is not None:
            self._end_talk(self.agents[src], q, now, acts)
        if tq is not None:
            call.state = NEW
            call.answered_at = None
            call.epoch += 1
            self._log(now, tq.name, call.id, "", "ENTERQUEUE",
                      {"caller": call.caller, "priority": call.level, "transfer_from": q.name})
            self._route_new(call, tq, now, acts)
        elif b is None:
            self._finish(call)
        return acts

    # -------------------------------------------------------------- agent API
    def agent_login(self, agent_id, extension, now, ready: bool = True, softphone: bool = False) -> list:
        """Log in at any extension (hot desking) or a softphone."""
        a = self._agent(agent_id)
        ident(extension, "extension")
        self._check_seat(a, extension)
        now = self._clock(now)
        acts: list = []
        self._seat(a, extension, softphone, now, "login", acts)
        if ready:
            self._set_state(a, "ready", now, "", acts)
            self._agent_available(a, now, acts)
        return acts

    def _check_seat(self, a: Agent, extension) -> None:
        """``a`` may log in at ``extension``: nobody else is there, and the state allows."""
        holder = self.by_extension.get(extension)
        if holder is not None and holder != a.id:
            raise AcdError(f"extension {extension!r} already has agent {holder!r} logged in")
        ag.check(a.id, a.state, "login")

    def _seat(self, a: Agent, extension, softphone, now, why: str, acts, **noted) -> None:
        """``a`` logs in at ``extension`` (checked free); ``noted`` goes into AGENTLOGIN."""
        a.extension = extension
        a.softphone = bool(softphone)
        self.by_extension[extension] = a.id
        self._set_state(a, "login", now, why, acts)
        self._log(now, "", "", a.id, "AGENTLOGIN",
                  {"extension": extension, "softphone": a.softphone, **noted})

    def agent_logout(self, agent_id, now, reason: str = "") -> list:
        a = self._agent(agent_id)
        ag.check(a.id, a.state, "logout")
        now = self._clock(now)
        acts: list = []
        self._set_state(a, "logout", now, reason, acts)
        self._logged_off(a, now, acts)
        return acts

    def _logged_off(self, a: Agent, now, acts) -> None:
        self._log(now, "", "", a.id, "AGENTLOGOFF", {"extension": a.extension})
        self.by_extension.pop(a.extension, None)
        a.extension = ""
        a.seized = ""
        a.pending_not_ready = None
        a.acw_epoch += 1
        self._release_sticky(a, now, acts)

    def _release_sticky(self, a: Agent, now, acts) -> None:
        """Calls held for ``a`` join the queue at the place their key gives them."""
        touched = set()
        for cid in a.sticky:
            call = self.calls.get(cid)
            if call is not None and call.state == STICKY and call.sticky_agent == a.id:
                q = call.queue
                q.sticky.discard(cid)
                call.state = WAITING          # same epoch: wait timers stay armed
                q.insert(call.key)
                q.live_waiting += 1
                touched.add(q.name)
        a.sticky = []
        for name in sorted(touched):
            self._dispatch(self.queues[name], now, acts)

    def set_ready(self, agent_id, now) -> list:
        a = self._agent(agent_id)
        if a.state in AG_OFFERED or a.state in ON_CALL:
            if a.pending_not_ready is None:
                raise IllegalTransition(a.id, a.state, "ready", "the agent is on a call")
            now = self._clock(now)
            a.pending_not_ready = None
            self._log(now, "", "", a.id, "PENDING_CLEARED", {})
            return []
        ag.check(a.id, a.state, "ready")
        now = self._clock(now)
        acts: list = []
        a.acw_epoch += 1
        self._set_state(a, "ready", now, "", acts)
        self._agent_available(a, now, acts)
        return acts

    def set_not_ready(self, agent_id, now, reason: str = "break") -> list:
        """Not ready with a reason code; on a call it takes effect after the wrap-up."""
        a = self._agent(agent_id)
        ident(reason, "not-ready reason")
        if a.state in AG_OFFERED or a.state in ON_CALL:
            now = self._clock(now)
            a.pending_not_ready = reason
            self._log(now, "", "", a.id, "PENDING_NOT_READY", {"reason": reason})
            return []
        ag.check(a.id, a.state, "not_ready")
        now = self._clock(now)
        acts: list = []
        a.acw_epoch += 1
        self._set_state(a, "not_ready", now, reason, acts)
        return acts

    def agent_hold(self, agent_id, now) -> list:
        a = self._agent(agent_id)
        ag.check(a.id, a.state, "hold")
        now = self._clock(now)
        acts: list = []
        self._set_state(a, "hold", now, "", acts)
        return acts

    def agent_retrieve(self, agent_id, now) -> list:
        a = self._agent(agent_id)
        ag.check(a.id, a.state, "retrieve")
        now = self._clock(now)
        acts: list = []
        self._set_state(a, "retrieve", now, "", acts)
        return acts

    # ---------------------------------------------------------- supervisor API
    def force_state(self, agent_id, state, now, by, reason: str = "") -> list:
        """A supervisor sets an agent to ready, not_ready or logged_off, whatever they do.

        An offer in progress goes back to the head of its queue; a call in progress
        continues without the ACD tracking the agent on it. Audited in the log.
        """
        a = self._agent(agent_id)
        ident(by, "supervisor")
        if state not in ag.FORCE_TARGETS:
            raise IllegalTransition(a.id, a.state, f"force:{state}",
                                    f"a supervisor may force only {ag.FORCE_TARGETS}")
        if a.state == LOGGED_OFF:
            raise IllegalTransition(a.id, a.state, f"force:{state}", "the agent is not logged in")
        if a.state == state and state != NOT_READY:
            raise IllegalTransition(a.id, a.state, f"force:{state}", "the agent is already in that state")
        now = self._clock(now)
        acts: list = []
        old = a.state
        requeue = None
        if old in AG_OFFERED:
            call = self.calls.get(a.offered_call)
            if call is not None:
                call.agents = tuple(i for i in call.agents if i != a.id)
                acts.append(CancelOffer(a.id, call.id, "forced"))
                if not call.agents:
                    requeue = call
        elif old in ON_CALL:
            call = self.calls.get(a.call)
            if call is not None:
                call.agent = None
                a.time_in[old] += now - a.since    # fold in before stats read talk_s
                a.talk_s += now - a.since
                a.since = now
                call.queue.stats.on_handled(a.talk_s - a.talk_mark, 0.0)
        a.offered_call = None
        a.call = None
        a.pending_not_ready = None
        a.acw_epoch += 1
        self._set_state(a, None, now, reason or f"forced by {by}", acts, force_to=state)
        self._log(now, "", "", a.id, "SUPERVISOR_FORCE",
                  {"by": by, "from": old, "to": state, "reason": reason})
        if state == LOGGED_OFF:
            self._logged_off(a, now, acts)
        if requeue is not None:
            self._requeue_front(requeue, now, acts)
            self._dispatch(requeue.queue, now, acts)
        if state == READY:
            self._agent_available(a, now, acts)
        return acts

    def supervise(self, supervisor, agent_id, mode, now) -> list:
        """Listen, whisper (agent hears, caller does not) or barge into an agent's call."""
        ident(supervisor, "supervisor")
        a = self._agent(agent_id)
        if mode not in SUPERVISE_MODES:
            raise AcdError(f"supervise mode must be one of {SUPERVISE_MODES}, got {mode!r}")
        if a.state not in ON_CALL or a.call is None:
            raise AcdError(f"agent {agent_id!r} is {a.state}, not on a call to {mode}")
        now = self._clock(now)
        self._log(now, self.calls[a.call].queue.name, a.call, a.id, "SUPERVISE",
                  {"by": supervisor, "mode": mode})
        return [Supervise(supervisor, a.id, a.call, a.extension, mode)]

    # ---------------------------------------------------------------- timers
    def _timer_live(self, e) -> bool:
        _, _, kind, ref, epoch, _ = e
        if kind in (_RONA, _WRAPUP):
            a = self.agents.get(ref)
            if a is None:
                return False
            if kind == _RONA:
                return a.offer_epoch == epoch and a.state in AG_OFFERED
            return a.acw_epoch == epoch and a.state == AFTER_CALL_WORK
        call = self.calls.get(ref)
        if call is None or call.epoch != epoch:
            return False
        if kind == _RING_ALL:
            return call.state == OFFERED
        if kind == _STICKY:
            return call.state == STICKY
        if kind == _CB_RETRY:
            return call.state == CALLBACK_RETRY
        return call.state in (WAITING, STICKY)

    def next_due(self) -> Optional[float]:
        """When tick() next has something to do (None: nothing pending)."""
        h = self._timers
        while h and not self._timer_live(h[0]):
            heapq.heappop(h)
        due = h[0][0] if h else None
        f = self._figures_due
        if f is not None and (due is None or f < due):
            due = f
        return due

    def tick(self, now) -> list:
        """Fire every timer due by ``now``, each at its own due time."""
        if isinstance(now, bool) or not isinstance(now, (int, float)) or now != now:
            raise AcdError(f"now must be a number of seconds, got {now!r}")
        if now < self.now:
            raise AcdError(f"time went backwards: {now} < {self.now}")
        acts: list = []
        h = self._timers
        while h and h[0][0] <= now:
            e = heapq.heappop(h)
            if not self._timer_live(e):
                continue
            t = max(e[0], self.now)
            self.now = t
            self._fire(e, t, acts)
        self.now = now
        every = self.cfg.figures_every_s
        if every is not None:
            if self._figures_due is None:
                self._figures_due = now + every
            elif now >= self._figures_due:
                for name in self.queues:
                    acts.append(self.queue_figures(name, now))
                self._figures_due = now + every
        return acts

    def _fire(self, e, t, acts) -> None:
        _, _, kind, ref, _, extra = e
        if kind == _RONA:
            a = self.agents[ref]
            self._rona(a, self.calls[a.offered_call], t, acts)
        elif kind == _WRAPUP:
            self._finish_wrapup(self.agents[ref], t, acts)
        elif kind == _RING_ALL:
            call = self.calls[ref]
            q = call.queue
            agents = [self.agents[i] for i in call.agents]
            for a in agents:
                self._set_state(a, "cancel", t, "ring_all_timeout", acts)
                a.offered_call = None
                acts.append(CancelOffer(a.id, call.id, "timeout"))
            self._log(t, q.name, call.id, ",".join(call.agents), "RINGNOANSWER", {"ring_s": t - call.offered_at})
            call.agents = ()
            # Agents first find other waiting work; the call then rings whoever is idle.
            for a in agents:
                self._after_cancel(a, t, acts)
            self._requeue_front(call, t, acts)
            self._dispatch(q, t, acts)
        elif kind == _STICKY:
            call = self.calls[ref]
            q = call.queue
            a = self.agents.get(call.sticky_agent)
            call.sticky_agent = None
            q.sticky.discard(call.id)
            self._log(t, q.name, call.id, a.id if a else "", "STICKY_EXPIRED", {})
            call.state = WAITING              # same epoch: wait timers stay armed
            q.insert(call.key)
            q.live_waiting += 1
            self._dispatch(q, t, acts)
        elif kind == _CB_RETRY:             # the entry waits for an agent again, in its place
            call = self.calls[ref]
            q = call.queue
            call.state = callback_step(call, "retry")
            call.key = call.cb_key
            call.epoch += 1
            q.insert(call.key)
            self._dispatch(q, t, acts)
        else:
            call = self.calls[ref]
            q = call.queue
            if kind == _MAX_WAIT:
                self._overflow(call, q, q.cfg.max_wait_target, "max_wait", t, acts)
            elif kind == _OVERFLOW:
                if call.hops < MAX_HOPS:
                    self._overflow(call, q, q.wait_rules[extra].target, "wait", t, acts)
            elif kind == _ANNOUNCE:
                pos = q.position(call.key)
                acts.append(Announce(call.id, q.name, pos, q.ewt_s(pos)))
                if q.cfg.announce_every_s is not None:
                    self._timer(t + q.cfg.announce_every_s, _ANNOUNCE, call.id, call.epoch)

    # ------------------------------------------------------------- figures
    def queue_figures(self, queue, now=None) -> QueueFigures:
        q = self._queue(queue)
        now = self.now if now is None else now
        agents = dict.fromkeys(ag.STATES, 0)
        for aid in q.members:
            agents[self.agents[aid].state] += 1
        oldest = None
        callbacks = 0
        for key in q.waiting:
            c = self.calls[key[-1]]
            if c.state == CALLBACK:
                callbacks += 1
            elif oldest is None or c.entered < oldest:
                oldest = c.entered
        for cid in q.sticky:
            c = self.calls[cid]
            if oldest is None or c.entered < oldest:
                oldest = c.entered
        s = q.stats
        return QueueFigures(
            queue=q.name, time=now, waiting=q.live_waiting + len(q.sticky),
            callbacks_waiting=callbacks,
            longest_wait_s=0.0 if oldest is None else now - oldest,
            agents=agents, staffed=q.staffed, offered=s.offered, answered=s.answered,
            answered_within_sl=s.answered_within_sl, abandoned=s.abandoned,
            overflowed=s.overflowed, timed_out=s.timed_out, service_level=s.service_level(),
            sl_threshold_s=s.sl_threshold_s, asa_s=s.asa_s(), abandon_rate=s.abandon_rate(),
            aht_s=s.aht_s(), callbacks_requested=s.callbacks_requested,
            callbacks_completed=s.callbacks_completed, callbacks_failed=s.callbacks_failed,
            callbacks_abandoned=s.callbacks_abandoned, callbacks_pending=q.callbacks_pending)

    def reset_stats(self, now) -> None:
        """Start a new statistics period for every queue (e.g. each 15 minutes or day)."""
        now = self._clock(now)
        for q in self.queues.values():
            q.stats.reset(now)

    def position(self, call_id) -> int:
        call = self._call(call_id)
        if call.state not in (WAITING, STICKY, CALLBACK):
            raise AcdError(f"call {call_id!r} is {call.state}, not waiting")
        return call.queue.position(call.key)
