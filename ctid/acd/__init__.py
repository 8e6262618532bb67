"""ACD: automatic call distribution for ctid, as a functional core.

Queues with skills, strategies, caller priority with ageing, sticky agents, overflow,
callbacks, the agent state machine, a reconciler, statistics, and a discrete-event
simulation, all driven by explicit calls carrying ``now`` (seconds, one monotonic
clock owned by the shell). Every entry point returns a list of actions (``actions``).

    acd = Acd([QueueConfig("sales", skills={"mandarin": 3}, wrapup_s=15)],
              AcdConfig(), PriorityPolicy(vip_numbers={"13900000000"}))
    acd.add_agent("a1", {"mandarin": 5})
    acd.agent_login("a1", "8001", now)                 # hot desking: any extension
    acd.call_arrived("call-1", "sales", "13800138000", None, {"tier": "gold"}, now)
    acd.agent_ringing / agent_answered / agent_no_answer(agent, call, now)
    acd.agent_hold / agent_retrieve(agent, now)
    acd.call_ended(call, now); acd.call_abandoned(call, now)
    acd.call_withdrawn(call, now, reason)              # taken back, not an abandon
    acd.call_transferred(call, now, to_agent=None, to_queue=None)
    acd.request_callback(call, number, now)            # a place kept; CallbackDue later
    acd.agent_answered(...) on a callback: dialling; then the customer answers or not:
    acd.callback_connected(call, now); acd.callback_failed(call, now, reason)  # retried
    acd.set_ready(agent, now); acd.set_not_ready(agent, now, reason)
    acd.agent_logout(agent, now); acd.set_skills(agent, skills, now)
    acd.force_state(agent, state, now, by, reason); acd.supervise(sup, agent, mode, now)
    acd.reconcile({extension: "idle" | "ringing" | "connected"}, now)
    acd.tick(now); acd.next_due()                      # timers
    acd.queue_figures(queue, now); acd.reset_stats(now); acd.position(call)
    acd.log.drain()                                    # queue log records for SQL

Modules: agent (state machine), queue (config, runtime queue, calls), strategies,
skills, priority (classes and ageing), overflow (rules), router (the Acd: state,
routing and dispatch, the call, agent and supervisor APIs, timers, figures), its mixins
callbacks (requests, dialling, retries), reconcile (phones used outside the ACD, the
reconciler) and restore (state put back after a restart), timers (the heap's timer
kinds), stats (log and figures), erlang (formulas), simulate (``ctictl acd-sim``),
bench (``ctictl bench acd``). Bad input raises ``AcdError`` (``IllegalTransition`` for agent states) with a
message naming what is wrong, and changes nothing.
"""
from .actions import (AcdError, Action, AgentStateChanged, AgentStateCorrected, Announce,
                      CallbackDue, CallbackRegistered, CallQueued, CancelOffer,
                      IllegalTransition, MusicOnHold, OfferCall, Overflow, QueueFigures,
                      Supervise, Target)
from .agent import STATES, TRANSITIONS
from .overflow import OverflowRule
from .priority import PriorityPolicy
from .queue import QueueConfig
from .router import Acd, AcdConfig
from .stats import LogRecord, QueueLog
from .strategies import STRATEGIES

__all__ = [
    "Acd", "AcdConfig", "AcdError", "Action", "AgentStateChanged", "AgentStateCorrected",
    "Announce", "CallbackDue", "CallbackRegistered", "CallQueued", "CancelOffer",
    "IllegalTransition", "LogRecord", "MusicOnHold", "OfferCall", "Overflow",
    "OverflowRule", "PriorityPolicy", "QueueConfig", "QueueFigures", "QueueLog",
    "STATES", "STRATEGIES", "Supervise", "Target", "TRANSITIONS",
]
