"""Discrete-event simulation of one queue, driving the real ACD core.

Poisson arrivals, exponential talk times, optional exponential patience, agents who
answer at once (or after a fixed ring time). One heap of events (arrivals, answers,
hang-ups, abandons) interleaved with the ACD's own timers (``next_due``/``tick``):
simulated time jumps from event to event, so hours take seconds.

``aht_s`` is the mean handle time, talk plus wrap-up: talk is exponential with mean
``aht_s - wrapup_s`` and wrap-up is the queue's fixed wrap-up. Arrivals stop after
``hours``; the calls already in the system are then served to the end, so every
offered call is counted. Occupancy is measured over the arrival window.
"""
from __future__ import annotations

import heapq
import random
from typing import Optional

from .actions import AcdError, OfferCall
from .agent import AFTER_CALL_WORK, BUSY, ON_HOLD
from .erlang import erlang_a, erlang_c, erlang_c_asa, erlang_c_service_level
from .queue import QueueConfig
from .router import Acd, AcdConfig
from .stats import QueueLog

_ARRIVAL, _ANSWER, _END, _ABANDON, _SNAPSHOT = range(5)
QUEUE = "sim"


def simulate(agents: int = 20, calls_per_hour: float = 360.0, aht_s: float = 180.0,
             hours: float = 1.0, seed: int = 1, patience_s: Optional[float] = None,
             wrapup_s: float = 0.0, strategy: str = "longest_idle",
             answer_delay_s: float = 0.0, warmup_h: float = 0.0) -> dict:
    """Run the simulation; returns the figures as a JSON-ready dict."""
    if not isinstance(agents, int) or agents < 1:
        raise AcdError(f"agents must be a positive integer, got {agents!r}")
    for name, v in (("calls_per_hour", calls_per_hour), ("aht_s", aht_s), ("hours", hours)):
        if not v > 0:
            raise AcdError(f"{name} must be > 0, got {v!r}")
    if patience_s is not None and not patience_s > 0:
        raise AcdError(f"patience_s must be > 0, got {patience_s!r}")
    if not 0 <= wrapup_s < aht_s:
        raise AcdError(f"wrapup_s must be >= 0 and below aht_s, got {wrapup_s!r}")
    if not 0 <= answer_delay_s:
        raise AcdError(f"answer_delay_s must be >= 0, got {answer_delay_s!r}")
    if not 0 <= warmup_h < hours:
        raise AcdError("warmup_h must be >= 0 and shorter than hours")

    acd = Acd(config=AcdConfig(seed=seed, figures_every_s=None), log=QueueLog(keep=False))
    acd.add_queue(QueueConfig(QUEUE, strategy=strategy, wrapup_s=wrapup_s,
                              rona_s=max(3600.0, 10 * answer_delay_s + 1),
                              announce_first_s=None, moh=None, sl_threshold_s=20.0,
                              default_aht_s=aht_s))
    ids = [f"agent{i:04d}" for i in range(agents)]
    for i, aid in enumerate(ids):
        acd.add_agent(aid)
        acd.agent_login(aid, f"ext{i:04d}", 0.0)

    r_arr = random.Random(f"{seed}:arrivals")
    r_talk = random.Random(f"{seed}:talk")
    r_pat = random.Random(f"{seed}:patience")
    lam = calls_per_hour / 3600.0
    talk_mean = aht_s - wrapup_s
    horizon = hours * 3600.0
    warmup = warmup_h * 3600.0

    events: list = []
    seq = 0
    arrived: dict[str, float] = {}       # call -> arrival time, while not answered/abandoned
    waits: list[float] = []              # waits of answered calls counted in the figures
    counted: set[str] = set()            # calls arriving after the warm-up
    n_calls = 0
    n_events = 0
    busy_at_horizon = 0.0
    busy_at_warmup = 0.0

    def push(t, kind, ref):
        nonlocal seq
        seq += 1
        heapq.heappush(events, (t, seq, kind, ref))

    def handle(acts, t):
        work = list(acts)
        while work:
            act = work.pop(0)
            if type(act) is OfferCall:
                if answer_delay_s > 0:
                    push(t + answer_delay_s, _ANSWER, (act.agent, act.call))
                else:
                    work.extend(answer(act.agent, act.call, t))

    def answer(agent, call, t):
        a0 = arrived.pop(call, None)
        if a0 is None:
            return []
        if call in counted:
            waits.append(t - a0)
        push(t + r_talk.expovariate(1.0 / talk_mean), _END, call)
        return acd.agent_answered(agent, call, t)

    def occupied(t):
        total = 0.0
        for aid in ids:
            times = acd.agents[aid].times(t)
            total += times[BUSY] + times[ON_HOLD] + times[AFTER_CALL_WORK]
        return total

    push(r_arr.expovariate(lam), _ARRIVAL, None)
    push(horizon, _SNAPSHOT, "end")
    if warmup > 0:
        push(warmup, _SNAPSHOT, "warmup")
    while True:
        due = acd.next_due()
        if events and (due is None or events[0][0] <= due):
            t, _, kind, ref = heapq.heappop(events)
        elif due is not None:
            n_events += 1
            handle(acd.tick(due), due)
            continue
        else:
            break
        n_events += 1
        if kind == _ARRIVAL:
            n_calls += 1
            cid = f"c{n_calls}"
            arrived[cid] = t
            if t >= warmup:
                counted.add(cid)
            if patience_s is not None:
                push(t + r_pat.expovariate(1.0 / patience_s), _ABANDON, cid)
            handle(acd.call_arrived(cid, QUEUE, "", None, None, t), t)
            nxt = t + r_arr.expovariate(lam)
            if nxt < horizon:
                push(nxt, _ARRIVAL, None)
        elif kind == _END:
            handle(acd.call_ended(ref, t), t)
        elif kind == _ANSWER:
            agent, call = ref
            if call in acd.calls and acd.calls[call].state == "offered":
                handle(answer(agent, call, t), t)
        elif kind == _ABANDON:
            if ref in arrived:              # still not answered
                del arrived[ref]
                handle(acd.call_abandoned(ref, t), t)
        elif kind == _SNAPSHOT:
            if ref == "warmup":
                acd.reset_stats(t)
                busy_at_warmup = occupied(t)
            else:
                busy_at_horizon = occupied(t)

    fig = acd.queue_figures(QUEUE)
    window = horizon - warmup
    out = {
        "agents": agents, "calls_per_hour": calls_per_hour, "aht_s": aht_s, "hours": hours,
        "warmup_h": warmup_h, "seed": seed, "patience_s": patience_s, "wrapup_s": wrapup_s,
        "strategy": strategy,
        "offered": fig.offered, "answered": fig.answered, "abandoned": fig.abandoned,
        "p_wait": (sum(1 for w in waits if w > 1e-9) / len(waits)) if waits else 0.0,
        "asa_s": fig.asa_s if fig.asa_s is not None else 0.0,
        "service_level_20s": fig.service_level if fig.service_level is not None else 0.0,
        "abandon_rate": fig.abandon_rate if fig.abandon_rate is not None else 0.0,
        "aht_measured_s": fig.aht_s,
        "occupancy": (busy_at_horizon - busy_at_warmup) / (agents * window),
        "events": n_events,
    }
    a = lam * aht_s
    if patience_s is None:
        out["erlang_c"] = {"offered_erlangs": a, "p_wait": erlang_c(agents, a),
                           "asa_s": erlang_c_asa(agents, a, aht_s),
                           "service_level_20s": erlang_c_service_level(agents, a, aht_s, 20.0),
                           "occupancy": min(1.0, a / agents)}
    else:
        ea = erlang_a(agents, lam, 1.0 / aht_s, 1.0 / patience_s)
        out["erlang_a"] = {"offered_erlangs": a, "p_wait_arrivals": ea["p_wait"],
                           "p_abandon": ea["p_abandon"]}
    return out
