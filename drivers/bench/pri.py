"""cardctl bench pri: sustained call setups through one E1 PRI span pair, in this process.

cardd's side is the real PriSpan (drivers.signaling.pri, CPE, EuroISDN) with its 30
B-channel lines; the far side is the simulator's exchange (simulators.actors.pri_co,
libpri network side). Frames cross a wire of two queues and are delivered at once; time
advances one 20 ms tick per round, so libpri's timers run as they would.

Every round, the exchange places a call on every free B-channel (inbound: SETUP to cardd);
cardd offers it and the application answers at once (as a client answering on the
Incoming event would, without the bus); when the exchange sees CONNECT it clears the call
(cause 16) and the channel is free for the next round. With --direction out cardd dials
instead, the exchange answers at once and cardd clears. A round's 30 SETUPs go out
together, so a call's latency includes the work on the others of its round.

Figures (wall clock, this process, one core):
  setups_per_s   calls answered per second, sustained over the run
  setup_ms_p50   SETUP sent to CONNECT seen, median over the calls
  setup_ms_p99   the same, 99th percentile
The run checks itself: every call answered and cleared with cause 16, every channel idle
and no call record left in libpri on either side at the end.
"""
from __future__ import annotations

import argparse
import collections
import json
import sys
import time

import numpy as np

TICK_MS = 20


def run(calls: int = 3000, direction: str = "in") -> dict:
    from drivers.signaling import events as ev
    from drivers.signaling.pri import PriConfig, PriSpan, PriState
    from simulators.actors.pri_co import CoPlan, PriExchange

    timeslots = [*range(1, 16), *range(17, 32)]
    channels = [(ts, ts) for ts in timeslots]           # DAHDI numbering: channel = timeslot
    to_co: collections.deque[bytes] = collections.deque()
    to_span: collections.deque[bytes] = collections.deque()
    span = PriSpan(1, channels, PriConfig(node="cpe", tick_ms=TICK_MS))
    co = PriExchange(1, to_span.append, node="network")
    co.plans["default"] = CoPlan(after=0.0, alert_after=0.0, talk=False, ringback=False)
    started: dict[int, float] = {}                      # channel -> when SETUP was sent
    latencies: list[float] = []
    counts = collections.Counter()
    tick = 0

    def carry(pairs) -> None:
        for channel, action in pairs:
            if isinstance(action, ev.SendFrame):
                to_co.append(action.frame)
            elif isinstance(action, ev.Emit):
                e = action.event
                counts[type(e).__name__] += 1
                if isinstance(e, ev.Incoming):
                    # The application answers the offered call at once.
                    carry((channel, a) for a in span.lines[channel].on_command("answer", tick))
                elif isinstance(e, ev.Answered) and direction == "out":
                    latencies.append(time.perf_counter() - started.pop(channel))
                elif isinstance(e, ev.Cleared):
                    counts[f"cause {e.cause}"] += 1

    def deliver() -> None:
        while to_co or to_span:
            while to_co:
                co.receive(to_co.popleft())
            while to_span:
                carry(span.on_dframe(to_span.popleft(), tick))

    def step() -> None:
        nonlocal tick
        tick += 1
        carry(span.on_tick(tick))
        co.step(tick * TICK_MS / 1000)
        deliver()

    def clear_connected() -> None:
        """The called side clears every connected call (cause 16)."""
        if direction == "in":
            for c in co.calls:
                if c.state == "connected":
                    co.hang_up(c, 16)
        else:
            for ts, line in span.lines.items():
                if line.state == PriState.CONNECTED:
                    carry((ts, a) for a in line.on_command("hangup", tick, cause=16))
        deliver()

    for _ in range(5):
        step()
    if not (span.dchannel_up and co.dchannel_up):
        raise RuntimeError("the D-channel did not come up")

    placed = 0
    t0 = time.perf_counter()
    wall_ticks = 0
    while counts["Answered"] < calls:
        busy = co.busy_timeslots()
        for ts in timeslots:
            if placed >= calls:
                break
            line = span.lines[ts]
            if ts in busy or line.state != PriState.IDLE:
                continue
            placed += 1
            if direction == "in":
                c = co.place("95566", "13800138000", channel=ts)
                started[c.id] = time.perf_counter()
            else:
                started[ts] = time.perf_counter()
                carry((ts, a) for a in line.on_command("dial", tick, number="95566",
                                                        ani="13800138000"))
        deliver()
        if direction == "in":
            for c in list(co.calls):
                if c.id in started and c.answered:
                    latencies.append(time.perf_counter() - started.pop(c.id))
        clear_connected()
        step()
        wall_ticks += 1
        if wall_ticks > calls * 50:
            raise RuntimeError(f"stalled: {counts}")
    elapsed = time.perf_counter() - t0
    clear_connected()
    for _ in range(int(2000 / TICK_MS)):              # let the last releases complete
        step()
    idle = sum(1 for line in span.lines.values() if line.state == PriState.IDLE)
    lat_ms = np.array(latencies) * 1000
    return {
        "calls": counts["Answered"], "direction": direction, "channels": len(timeslots),
        "elapsed_s": round(elapsed, 3),
        "setups_per_s": round(counts["Answered"] / elapsed, 1),
        "setup_ms_p50": round(float(np.percentile(lat_ms, 50)), 3),
        "setup_ms_p99": round(float(np.percentile(lat_ms, 99)), 3),
        "ticks": wall_ticks, "simulated_s": round(wall_ticks * TICK_MS / 1000, 2),
        "cleared_16": counts["cause 16"], "channels_idle": idle,
        "records_left": span.link.active_calls() + co.link.active_calls(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="cardctl bench pri",
                                description="Sustained PRI call setups through one E1 span pair.")
    p.add_argument("--calls", type=int, default=3000)
    p.add_argument("--direction", choices=("in", "out"), default="in",
                   help="in: the exchange calls cardd; out: cardd dials the exchange")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    if args.calls < 1:
        p.error("--calls must be at least 1")
    try:
        r = run(args.calls, args.direction)
    except RuntimeError as e:
        print(f"cardctl bench pri: {e}", file=sys.stderr)
        return 1
    ok = r["cleared_16"] >= r["calls"] and r["channels_idle"] == r["channels"] \
        and r["records_left"] == 0
    if args.json:
        print(json.dumps(r))
        return 0 if ok else 1
    what = "the exchange calling cardd" if r["direction"] == "in" else "cardd dialling the exchange"
    print(f"PRI bench: {r['calls']} calls on one E1 span pair (30 B-channels), {what}, "
          f"in {r['elapsed_s']:.2f} s ({r['ticks']} ticks, {r['simulated_s']:g} s simulated)")
    print(f"  setups: {r['setups_per_s']:.0f} per second sustained")
    print(f"  setup latency (SETUP to CONNECT): p50 {r['setup_ms_p50']:.3f} ms, "
          f"p99 {r['setup_ms_p99']:.3f} ms")
    print(f"  check: {r['cleared_16']} cleared with cause 16, {r['channels_idle']}/"
          f"{r['channels']} channels idle, {r['records_left']} libpri call records left"
          + ("" if ok else "  <-- NOT CLEAN"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
