"""ACD: automatic call distribution for ctid, as a functional core.

Queues with skills, strategies, caller priority with ageing, sticky agents, overflow,
callbacks, the agent state machine, a reconciler, statistics, and a discrete-event
simulation, all driven by explicit calls carrying ``now``. See ``router.Acd``.
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
