"""R2 benchmark: a whole E1 span of simultaneous R2 calls through the simulated span.

    python -m drivers.signaling.r2.bench [--channels 30] [--variant china] [--json]

Every timeslot gets an inbound call at once (the simulator's office calls the host with
an 8-digit ANI and a 5-digit DNIS; the host side, run the way cardd runs it, answers on
Incoming). Both sides' compelled MF goes through their media engines as audio. Prints
the simulated set-up time per call (seize to Incoming), the host's and the office's CPU
per tick, and whole calls per second of wall time. Set OPENBLAS_NUM_THREADS=1.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time


def run(channels: int = 30, variant: str = "china") -> dict:
    from drivers.backends.base import PortInfo, PortKind, SpanInfo
    from drivers.signaling import events as ev
    from drivers.signaling.r2 import R2Options
    from simulators.actors.r2_co import HostSide, R2Office
    from simulators.cards import VirtualCards
    from simulators.world import World

    chans = list(range(1, channels + 1))
    cards = VirtualCards([SpanInfo(1, "bench", "e1")], [PortInfo(c, 1, PortKind.E1) for c in chans])
    world = World(cards)
    office = R2Office(world, chans, variant).attach()
    host = HostSide(cards, chans, variant, options=R2Options(max_dnis=5))
    host_s, office_s = [], []

    def tick():
        cards.next_tick()
        t0 = time.process_time()
        world.step(cards.tick)
        t1 = time.process_time()
        host.step(cards.tick)
        t2 = time.process_time()
        office_s.append(t1 - t0)
        host_s.append(t2 - t1)

    for _ in range(3):
        tick()
    start = cards.tick
    for i, ch in enumerate(chans):
        office.trunk(ch).call(f"9{i:04d}", f"8{i:07d}")
    wall = time.perf_counter()
    offered: dict[int, int] = {}
    while len(offered) < channels and cards.tick - start < 3000:
        tick()
        for t, ch, e in host.events:
            if isinstance(e, ev.Incoming) and ch not in offered:
                offered[ch] = t
                host.command(ch, "answer")
    while len([1 for c in chans if office.trunk(c).check("connected")]) < channels \
            and cards.tick - start < 4000:
        tick()
    wall = time.perf_counter() - wall
    bad = [ch for ch in offered
           if (host.of(ch, ev.Incoming)[0].dnis, host.of(ch, ev.Incoming)[0].ani)
           != (office.trunk(ch).current.dnis, office.trunk(ch).current.ani)]
    setup_ticks = [t - start for t in offered.values()]
    tick_ms = cards.block * 1000 / 8000
    return {
        "variant": variant, "channels": channels, "offered": len(offered),
        "connected": sum(1 for c in chans if office.trunk(c).check("connected")),
        "numbers_wrong": len(bad),
        "setup_s_median": round(statistics.median(setup_ticks) * tick_ms / 1000, 2) if setup_ticks else None,
        "setup_s_max": round(max(setup_ticks) * tick_ms / 1000, 2) if setup_ticks else None,
        "host_cpu_ms_per_tick_mean": round(statistics.mean(host_s) * 1000, 3),
        "host_cpu_ms_per_tick_p99": round(sorted(host_s)[int(len(host_s) * 0.99)] * 1000, 3),
        "office_cpu_ms_per_tick_mean": round(statistics.mean(office_s) * 1000, 3),
        "calls_per_wall_s": round(channels / wall, 1) if wall > 0 else None,
        "simulated_s": round((cards.tick - start) * tick_ms / 1000, 2),
        "wall_s": round(wall, 2),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m drivers.signaling.r2.bench",
                                description="Simultaneous R2 calls over a simulated E1 span.")
    p.add_argument("--channels", type=int, default=30)
    p.add_argument("--variant", default="china")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if not 1 <= args.channels <= 30:
        p.error("--channels: an E1 span has 1..30 bearer channels")
    r = run(args.channels, args.variant)
    if args.json:
        print(json.dumps(r))
    else:
        print(f"R2 {r['variant']}: {r['offered']}/{r['channels']} calls offered, "
              f"{r['connected']} connected, {r['numbers_wrong']} with wrong numbers")
        print(f"  set-up (seize to Incoming, 8-digit ANI, 5-digit DNIS): median "
              f"{r['setup_s_median']} s, max {r['setup_s_max']} s simulated")
        print(f"  host CPU per 20 ms tick: mean {r['host_cpu_ms_per_tick_mean']} ms, p99 "
              f"{r['host_cpu_ms_per_tick_p99']} ms; office {r['office_cpu_ms_per_tick_mean']} ms")
        print(f"  {r['simulated_s']} s simulated in {r['wall_s']} s wall "
              f"({r['calls_per_wall_s']} call set-ups per wall second)")
    return 0 if r["connected"] == r["channels"] and not r["numbers_wrong"] else 1


if __name__ == "__main__":
    sys.exit(main())
