"""The ACD's Prometheus metrics, on ctid's registry (served with ctid's /metrics).

Gauges per queue, refreshed from the ACD's live figures about once a second (a figure not
defined yet, such as the service level before any call left the queue, is NaN):

  hotline_ctid_acd_waiting{queue}                callers waiting (sticky waits included)
  hotline_ctid_acd_longest_wait_seconds{queue}
  hotline_ctid_acd_agents{queue,state}           member agents in each state
  hotline_ctid_acd_staffed{queue}                members logged in and not in not_ready
  hotline_ctid_acd_service_level{queue}          answered within the threshold / offered
  hotline_ctid_acd_asa_seconds{queue}            average speed of answer
  hotline_ctid_acd_abandon_rate{queue}           abandoned / offered
  hotline_ctid_acd_aht_seconds{queue}            average handle time (talk + wrap-up)

(the ratios cover the current statistics period). Counters, from the queue log as it is
written:

  hotline_ctid_acd_queue_events_total{queue,event}   entered, answered, abandoned,
                                                     overflowed, timed_out, rona,
                                                     completed, transferred, and callbacks
                                                     by outcome: callback_requested,
                                                     callback_completed (the customer
                                                     answered), callback_failed (an attempt),
                                                     callback_abandoned (given up)
  hotline_ctid_acd_agent_states_total{state}         agent state changes, by new state
"""
from __future__ import annotations

import math

from prometheus_client import CollectorRegistry, Counter, Gauge

from ctid.acd import STATES, LogRecord, QueueFigures

LOG_EVENTS = {"ENTERQUEUE": "entered", "CONNECT": "answered", "ABANDON": "abandoned",
              "OVERFLOW": "overflowed", "EXITWITHTIMEOUT": "timed_out", "RINGNOANSWER": "rona",
              "COMPLETE": "completed", "TRANSFER": "transferred",
              "CALLBACK_REQUESTED": "callback_requested", "CALLBACK_CONNECT": "callback_completed",
              "CALLBACK_FAILED": "callback_failed", "CALLBACK_ABANDONED": "callback_abandoned",
              "CALLBACK_CANCELLED": "callback_abandoned"}


def _value(v) -> float:
    return math.nan if v is None else float(v)


class AcdMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        r = self.registry = registry if registry is not None else CollectorRegistry()
        q = ["queue"]
        self.waiting = Gauge("hotline_ctid_acd_waiting", "Callers waiting in the queue", q, registry=r)
        self.longest_wait = Gauge("hotline_ctid_acd_longest_wait_seconds",
                                  "How long the longest-waiting caller has waited", q, registry=r)
        self.agents = Gauge("hotline_ctid_acd_agents", "Member agents by state", ["queue", "state"],
                            registry=r)
        self.staffed = Gauge("hotline_ctid_acd_staffed",
                             "Member agents logged in and not in not_ready", q, registry=r)
        self.service_level = Gauge("hotline_ctid_acd_service_level",
                                   "Calls answered within the threshold / calls offered "
                                   "(current period)", q, registry=r)
        self.asa = Gauge("hotline_ctid_acd_asa_seconds", "Average speed of answer (current period)",
                         q, registry=r)
        self.abandon_rate = Gauge("hotline_ctid_acd_abandon_rate",
                                  "Abandoned / offered (current period)", q, registry=r)
        self.aht = Gauge("hotline_ctid_acd_aht_seconds", "Average handle time, talk and wrap-up "
                         "(current period)", q, registry=r)
        self.queue_events = Counter("hotline_ctid_acd_queue_events",
                                    "Calls entering, answered, abandoned... per queue",
                                    ["queue", "event"], registry=r)
        self.agent_states = Counter("hotline_ctid_acd_agent_states",
                                    "Agent state changes, by new state", ["state"], registry=r)

    def figures(self, f: QueueFigures) -> None:
        name = f.queue
        self.waiting.labels(name).set(f.waiting)
        self.longest_wait.labels(name).set(f.longest_wait_s)
        for state in STATES:
            self.agents.labels(name, state).set(f.agents.get(state, 0))
        self.staffed.labels(name).set(f.staffed)
        self.service_level.labels(name).set(_value(f.service_level))
        self.asa.labels(name).set(_value(f.asa_s))
        self.abandon_rate.labels(name).set(_value(f.abandon_rate))
        self.aht.labels(name).set(_value(f.aht_s))

    def log_record(self, rec: LogRecord) -> None:
        event = LOG_EVENTS.get(rec.event)
        if event is not None and rec.queue:
            self.queue_events.labels(rec.queue, event).inc()
        elif rec.event == "AGENT_STATE":
            self.agent_states.labels(str(rec.data.get("to", ""))).inc()
