"""What the live ACD costs ctid per call: the call model with the ACD service, driven by
synthetic cardd events on a simulated clock (no sockets), for many agents and trunks.

    python -m ctid.acd_service.bench [--agents 200] [--trunks 240] [--calls 20000]

Callers arrive at random (Poisson) at a load that keeps the agents about 90% busy; agents
answer 2 s after their phone rings, talk 30-240 s and hang up; a tenth of the callers give
up after 20-120 s in the queue. Every cardd event, 100 ms timer tick and the reconciler
run through CallModel.channel_event / tick exactly as in ctid. Prints the wall time per
call and per event, and the ACD's own figures to show the traffic was real.
"""
from __future__ import annotations

import argparse
import heapq
import itertools
import random
import time

from hotline_proto import cardd_pb2


def run(agents: int, trunks: int, calls: int, seed: int = 1) -> dict:
    from ctid.acd import QueueConfig
    from ctid.model.callmodel import CallModel
    from ctid.model.calls import ChannelRef, Device, DeviceType
    from ctid.model.routing import DialPlan, Route

    from .service import AcdService
    from .settings import AcdSettings, AgentSettings

    rng = random.Random(seed)
    devices = [Device(f"ext:{8000 + i}", DeviceType.EXTENSION, number=str(8000 + i),
                      channel=ChannelRef("node1", 1 + i)) for i in range(agents)]
    trunk_ch = [1000 + i for i in range(trunks)]
    devices += [Device(f"trunk:node1/{ch}", DeviceType.TRUNK, number="12345", group="co",
                       channel=ChannelRef("node1", ch)) for ch in trunk_ch]
    model = CallModel(devices, DialPlan([Route("12345", "queue:q")], {}))
    people = [AgentSettings(f"a{i}", extension=str(8000 + i), login=True) for i in range(agents)]
    svc = AcdService([QueueConfig("q", wrapup_s=5, rona_s=15, announce_first_s=None)], people,
                     AcdSettings(figures_every_s=10.0, reconcile_every_s=5.0)).attach(model)

    def ev(channel, **kind):
        e = cardd_pb2.ChannelEvent(channel=channel)
        (field, msg), = kind.items()
        getattr(e, field).CopyFrom(msg)
        return e

    heap: list = []
    seq = itertools.count()
    mean_talk = 135.0
    gap = mean_talk / (0.9 * agents)          # arrivals for ~90% occupancy
    t = 0.0
    for _ in range(calls):
        t += rng.expovariate(1.0 / gap)
        heapq.heappush(heap, (t, next(seq), "arrive", None))
    free = list(trunk_ch)
    on_trunk: dict[str, int] = {}              # call id -> trunk channel
    events = 0
    blocked = 0
    now = 0.0
    next_tick = 0.0
    started = time.perf_counter()

    def feed(out):
        nonlocal events
        for e in out.events:
            if e.name == "Delivered" and e.device.startswith("ext:"):
                ch = model.devices[e.device].channel.channel
                heapq.heappush(heap, (now + 2.0, next(seq), "answer", (ch, e.call_id)))
            elif e.name == "Established" and e.device.startswith("ext:"):
                ch = model.devices[e.device].channel.channel
                heapq.heappush(heap, (now + rng.uniform(30, 240), next(seq), "agent_hangup", (ch, e.call_id)))
            elif e.name == "CallCleared":
                tr = on_trunk.pop(e.call_id, None)
                if tr is not None:
                    free.append(tr)

    while heap:
        at, _, what, arg = heapq.heappop(heap)
        while next_tick <= at:                 # ctid's 100 ms timer
            now = next_tick
            feed(model.tick(now))
            next_tick += 0.1
        now = at
        if what == "arrive":
            if not free:
                blocked += 1
                continue
            tr = free.pop()
            out = model.channel_event("node1", ev(tr, incoming=cardd_pb2.Incoming(
                ani=f"138{rng.randrange(10**8):08d}")), now)
            call_id = out.events[0].call_id if out.events else ""
            on_trunk[call_id] = tr
            if rng.random() < 0.1:
                heapq.heappush(heap, (now + rng.uniform(20, 120), next(seq), "abandon", (tr, call_id)))
            feed(out)
        elif what == "answer":
            ch, call_id = arg
            if model.parties[f"ext:{8000 + ch - 1}"].call_id == call_id:
                feed(model.channel_event("node1", ev(ch, answered=cardd_pb2.Answered()), now))
        elif what == "agent_hangup":
            ch, call_id = arg
            if model.parties[f"ext:{8000 + ch - 1}"].call_id == call_id:
                feed(model.channel_event("node1", ev(ch, on_hook=cardd_pb2.OnHook()), now))
        elif what == "abandon":
            tr, call_id = arg
            if on_trunk.get(call_id) == tr and svc.calls.get(call_id) and not svc.calls[call_id].agent:
                feed(model.channel_event("node1", ev(tr, cleared=cardd_pb2.Cleared(cause=16)), now))
        events += 1
    took = time.perf_counter() - started
    f = svc.acd.queue_figures("q", now)
    return {"agents": agents, "trunks": trunks, "calls": calls, "simulated_s": now,
            "wall_s": took, "events": events, "ticks": int(now / 0.1), "blocked": blocked,
            "answered": f.answered, "abandoned": f.abandoned,
            "service_level": f.service_level, "asa_s": f.asa_s}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m ctid.acd_service.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--agents", type=int, default=200)
    p.add_argument("--trunks", type=int, default=240)
    p.add_argument("--calls", type=int, default=20000)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args(argv)
    r = run(a.agents, a.trunks, a.calls, a.seed)
    per_call = r["wall_s"] / max(1, r["calls"] - r["blocked"]) * 1e3
    print(f"live ACD: {r['agents']} agents, {r['trunks']} trunks, {r['calls']} callers over "
          f"{r['simulated_s'] / 3600:.1f} simulated hours in {r['wall_s']:.1f} s wall "
          f"({r['simulated_s'] / r['wall_s']:.0f}x real time)")
    print(f"  {per_call:.2f} ms of ctid time per call: its {r['events'] / max(1, r['calls']):.1f} "
          f"cardd events, with ctid's 100 ms ticks ({r['ticks']}) and the reconciler included")
    sl = r["service_level"]
    print(f"  answered {r['answered']}, abandoned {r['abandoned']}, blocked (no trunk) "
          f"{r['blocked']}; service level {sl:.2f}, ASA {r['asa_s']:.1f} s" if sl is not None else "")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
