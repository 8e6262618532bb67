"""Benchmark: routing decisions of a large ACD (``ctictl bench acd``).

Builds agents with random skill sets and levels across queues with every strategy in
play, then drives a discrete-event stream (Poisson arrivals spread over the queues by
their size, exponential talk, some impatient callers, agents taking breaks) with the
offered load equal to the staff's capacity by default, so both kinds of decision occur: a call arriving picks an agent, an agent
becoming ready picks a call. Each entry point that carries one decision is timed on
the wall clock: ``call_arrived``, ``call_ended`` (no wrap-up: the agent is ready at
once) and ``set_ready``.

Ring-all queues get three required skills, so they stay small teams (ringing hundreds
of phones at once is not what ring-all is for, and its cost grows with the team).
"""
from __future__ import annotations

import gc
import heapq
import random
import time

from .actions import AcdError, CallbackDue, OfferCall
from .queue import QueueConfig
from .router import Acd, AcdConfig
from .stats import QueueLog
from .strategies import STRATEGIES

N_SKILLS = 40


def _percentile(sorted_ns: list[int], p: float) -> float:
    if not sorted_ns:
        return 0.0
    i = min(len(sorted_ns) - 1, int(round(p / 100.0 * (len(sorted_ns) - 1))))
    return sorted_ns[i] / 1e6


def build(agents: int, queues: int, seed: int) -> tuple[Acd, list[str], list[float]]:
    rng = random.Random(f"{seed}:build")
    acd = Acd(config=AcdConfig(seed=seed, figures_every_s=None), log=QueueLog(keep=False))
    skills = [f"skill{i:02d}" for i in range(N_SKILLS)]
    for i in range(agents):
        chosen = rng.sample(skills, rng.randint(3, 8))
        acd.add_agent(f"a{i:05d}", {s: rng.randint(1, 10) for s in chosen})
    names, weights = [], []
    for j in range(queues):
        strategy = STRATEGIES[j % len(STRATEGIES)]
        n_req = 3 if strategy == "ring_all" else rng.randint(1, 2)
        req = {s: rng.randint(1, 4) for s in rng.sample(skills, n_req)}
        name = f"q{j:03d}"
        acd.add_queue(QueueConfig(name, strategy=strategy, skills=req, wrapup_s=0.0,
                                  rona_s=30.0, announce_first_s=None, moh=None,
                                  priority_step_s=60.0))
        size = len(acd.queues[name].members)
        if size:
            names.append(name)
            weights.append(float(size))
    if not names:
        raise AcdError("no queue has any member; use more agents")
    return acd, names, weights


def run(agents: int = 5000, queues: int = 200, calls: int = 50000, seed: int = 1,
        occupancy: float = 1.0, aht_s: float = 180.0) -> dict:
    if agents < 1 or queues < 1 or calls < 1:
        raise AcdError("agents, queues and calls must be positive")
    if not 0 < occupancy < 1.5:
        raise AcdError("occupancy must be in (0, 1.5)")
    t0 = time.perf_counter()
    acd, names, weights = build(agents, queues, seed)
    ids = list(acd.agents)
    for i, aid in enumerate(ids):
        acd.agent_login(aid, f"ext{i:05d}", 0.0)
    setup_s = time.perf_counter() - t0
    members = sum(len(a.memberships) for a in acd.agents.values()) / len(ids)

    rng = random.Random(f"{seed}:traffic")
    lam = occupancy * agents / aht_s           # offered load near the staff's capacity
    cum = []
    total = 0.0
    for w in weights:
        total += w
        cum.append(total)
    events: list = []
    seq = 0
    answered = abandoned = 0
    samples_arrival: list[int] = []
    samples_ready: list[int] = []
    live: set[str] = set()
    clock = time.perf_counter_ns

    def push(t, kind, ref):
        nonlocal seq
        seq += 1
        heapq.heappush(events, (t, seq, kind, ref))

    def handle(acts, t):
        nonlocal answered
        for act in acts:
            if type(act) is OfferCall or type(act) is CallbackDue:
                if act.call in live and acd.calls[act.call].state == "offered":
                    # Answer right away; ring-all losers free up (their decisions are
                    # inside this call and not timed separately).
                    more = acd.agent_answered(act.agent, act.call, t)
                    answered += 1
                    push(t + rng.expovariate(1.0 / aht_s), "end", act.call)
                    handle(more, t)

    gc.collect()
    gc.freeze()                                # setup objects are long-lived
    push(rng.expovariate(lam), "arrive", 0)
    n = 0
    t_wall = time.perf_counter()
    while events:
        due = acd.next_due()
        if due is not None and due < events[0][0]:
            handle(acd.tick(due), due)
            continue
        t, _, kind, ref = heapq.heappop(events)
        if kind == "arrive":
            n += 1
            cid = f"c{n}"
            q = names[_pick(cum, rng.random() * total)]
            live.add(cid)
            s = clock()
            acts = acd.call_arrived(cid, q, "", None, None, t)
            samples_arrival.append(clock() - s)
            if rng.random() < 0.3:
                push(t + rng.expovariate(1.0 / 120.0), "abandon", cid)
            handle(acts, t)
            if n < calls:
                push(t + rng.expovariate(lam), "arrive", 0)
        elif kind == "end":
            live.discard(ref)
            aid = acd.calls[ref].agent
            s = clock()
            acts = acd.call_ended(ref, t)
            samples_ready.append(clock() - s)
            handle(acts, t)
            if rng.random() < 0.02:             # a short break now and then
                a = acd.agents[aid]
                if a.state == "ready":
                    acd.set_not_ready(aid, t, "break")
                    push(t + rng.expovariate(1.0 / 300.0), "back", aid)
        elif kind == "abandon":
            if ref in live and acd.calls[ref].state != "connected":
                live.discard(ref)
                handle(acd.call_abandoned(ref, t), t)
                abandoned += 1
        elif kind == "back":
            s = clock()
            acts = acd.set_ready(ref, t)
            samples_ready.append(clock() - s)
            handle(acts, t)
    wall_s = time.perf_counter() - t_wall
    gc.unfreeze()

    every = sorted(samples_arrival + samples_ready)
    arr = sorted(samples_arrival)
    rdy = sorted(samples_ready)
    busy_ns = sum(every)
    return {
        "agents": agents, "queues": queues, "calls": n, "seed": seed,
        "answered": answered, "abandoned": abandoned,
        "mean_queues_per_agent": round(members, 2),
        "decisions": len(every),
        "decisions_per_s": len(every) / (busy_ns / 1e9) if busy_ns else 0.0,
        "decision_ms_p50": _percentile(every, 50),
        "decision_ms_p99": _percentile(every, 99),
        "decision_ms_max": every[-1] / 1e6 if every else 0.0,
        "arrival_ms_p99": _percentile(arr, 99),
        "ready_ms_p99": _percentile(rdy, 99),
        "setup_s": setup_s, "run_wall_s": wall_s,
    }


def _pick(cum: list[float], x: float) -> int:
    lo, hi = 0, len(cum) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if cum[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo
