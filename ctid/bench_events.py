"""`ctictl bench events`: CTI event fan-out through ctid's real PUB/ROUTER sockets.

This process runs a CtiServer (CURVE on, keys made for the run) fed by a synthetic source
of CSTA events at a target rate; each subscriber is a separate process using the client
library. The source's events are made before the clock starts and handed to ctid every
--batch-ms (ctid itself publishes once per pass of its loop, i.e. per cardd tick). After a
warm-up second that is not measured, the run has two halves: the prompt clients alone,
then with one deliberately slow client (it sleeps after every event it is given).
Printed: events per second, latency from publication to receipt by the application (after
the client library has parsed and ordered the events) for the prompt clients in each
half, CPU seconds of ctid and of the busiest prompt client, and the gaps every client
detected, recovered and left unrecovered. When publishing ends the slow client stops
sleeping and every client must reach the last seq: each one's delivered sequence is checked
for a gap it did not report (gaps_undetected must be 0). --runs N repeats the whole run and
reports the median run with every run's figures, because on a small shared machine one
run's p99 says as much about the neighbours as about ctid.
"""
from __future__ import annotations

import argparse
import collections
import gc
import json
import math
import multiprocessing as mp
import os
import sys
import tempfile
import time

import zmq

from hotline_proto import cti_pb2

# Latency histogram bin edges: 1 us to 100 s, 1% apart (a percentile is read to within 1%).
EDGES = [1e-6 * 1.01 ** i for i in range(int(math.log(1e8) / math.log(1.01)) + 1)]


def percentile_ms(hist, q: float) -> float | None:
    """The q-th percentile of a histogram over EDGES (the bin's upper edge), in ms."""
    total = int(sum(hist))
    if not total:
        return None
    need, acc = q / 100 * total, 0
    for i, n in enumerate(hist):
        acc += n
        if acc >= need and n:
            return round(EDGES[min(i, len(EDGES) - 1)] * 1000, 3)
    return round(EDGES[-1] * 1000, 3)


NAMES = ("Delivered", "Established", "Held", "Retrieved", "Transferred", "ConnectionCleared",
         "CallCleared", "Originated", "Queued", "Diverted")


class SyntheticCalls:
    """A Service with a little state so Snapshot has something to say."""

    def __init__(self):
        self.calls: dict[str, cti_pb2.Call] = {}
        self.n = 0
        self._call = None
        tpl = cti_pb2.Event(device="ext:8001", calling="13812345678", called="12345",
                            cause="normalClearing",
                            data={"ani": "13812345678", "dnis": "12345", "trunk": "trunk:node1/5"})
        tpl.connections.add(device="trunk:node1/5", state=cti_pb2.CS_CONNECTED)
        tpl.connections.add(device="ext:8001", state=cti_pb2.CS_ALERTING)
        self.template = tpl
        self.ready: collections.deque[cti_pb2.Event] = collections.deque()

    def prepare(self, n: int) -> None:
        """Make n events now, before the clock starts: what the benchmark times is ctid's
        fan-out, not the making of synthetic events (which ctid's call model would do)."""
        self.ready = collections.deque(self.events(n))

    def events(self, n: int) -> list[cti_pb2.Event]:
        ready = self.ready
        if len(ready) >= n:
            return [ready.popleft() for _ in range(n)]
        out = []
        call = self._call
        for _ in range(n):
            self.n += 1
            if self.n % 8 == 1 or call is None:      # a new call every 8 events
                call = self._new_call(f"C{self.n // 8 + 1}")
            e = cti_pb2.Event()
            e.CopyFrom(call)
            e.name = NAMES[self.n % len(NAMES)]
            out.append(e)
        self._call = call
        return out

    def _new_call(self, call_id: str) -> cti_pb2.Event:
        tpl = cti_pb2.Event()
        tpl.CopyFrom(self.template)
        tpl.call_id = call_id
        for c in tpl.connections:
            c.call_id = call_id
        self.calls[call_id] = cti_pb2.Call(call_id=call_id, connections=tpl.connections)
        if len(self.calls) > 50:
            self.calls.pop(next(iter(self.calls)))
        return tpl

    def handle(self, req, now):
        from ctid.model.callmodel import RequestError
        raise RequestError("the benchmark's source takes no requests")

    def snapshot(self):
        return [], list(self.calls.values())

    def call_devices(self, call_id):
        return None

    def status(self):
        return {"source": "benchmark"}


# ---- subscribers (child processes) -------------------------------------------------------
def _subscriber(idx: int, slow_ms: float, ep: dict, ready, stop, drain_until, boundary, measured,
                results):
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    import numpy as np

    from hotline_proto import cti_pb2
    from ctid.cti.auth import load_keypair, load_public_key
    from ctid.cti.client import CtiClient, SnapshotTaken

    ctx = zmq.Context()
    client = CtiClient(ep["events"], ep["requests"], ctx=ctx,
                       server_key=load_public_key(ep["server_public"]),
                       keypair=load_keypair(ep["client_secret"]),
                       rcvhwm=ep["slow_rcvhwm"] if slow_ms else ep["rcvhwm"])
    # Each event's publication time and latency go into preallocated arrays, sorted into
    # the two halves (without / with the slow client) and binned once at the end: the
    # measuring must not cost the client more than the events do. The collector is frozen
    # for the same reason (a latency-minded client would do the same): what exists at the
    # start is never scanned again.
    pub, lat_s = np.zeros(ep["capacity"]), np.zeros(ep["capacity"])
    pub.fill(1.0)                      # touch every page now, not during the run
    lat_s.fill(1.0)
    fill = 0

    def record(times, now):
        nonlocal pub, lat_s, fill
        k = len(times)
        if fill + k > len(pub):
            grow = max(len(pub), k)
            pub = np.concatenate([pub, np.empty(grow)])
            lat_s = np.concatenate([lat_s, np.empty(grow)])
        pub[fill:fill + k] = times
        lat_s[fill:fill + k] = now - pub[fill:fill + k]
        fill += k
    gc.collect()
    gc.freeze()
    prev = 0                           # last seq handed to us
    undetected = reported = 0
    told_gap = False
    signalled = False
    clock = time.time
    stopping = False
    next_check = 0.0
    cpu0, thread0 = time.process_time(), time.thread_time()
    while True:
        items = client.poll(timeout_ms=50)
        now = clock()
        if now >= next_check:          # the shared flags take locks: look at them 50 times a second
            next_check = now + 0.02
            if not signalled and client.last_heartbeat:
                ready.set()            # connected and authenticated: heartbeats arrive
                signalled = True
            stopping = stop.is_set()
        if items and not slow_ms and all(type(it) is cti_pb2.Event and it.seq for it in (items[0], items[-1])) \
                and items[-1].seq - items[0].seq + 1 == len(items) and (not prev or items[0].seq == prev + 1):
            # The common case: a run of consecutive events (checked by its ends; the library
            # delivers in order, and a report or snapshot inside would break the arithmetic).
            prev = items[-1].seq
            told_gap = False
            t_first, t_last = items[0].time, items[-1].time
            if t_first == t_last:
                # One publication time for all (publish() stamps a batch with one time, and
                # times never go back): every event's latency is the same, so it is recorded
                # without reading each event - the measuring costs the client less, the
                # figures are exactly the same.
                record(np.full(len(items), t_first), now)
            else:
                record(np.fromiter((it.time for it in items), float, len(items)), now)
            items = ()
        for it in items:
            if isinstance(it, SnapshotTaken):
                prev, told_gap = it.seq, False
                continue
            if it.name == "SystemStatus":
                told_gap = True
                reported += 1
                continue
            if prev and it.seq != prev + 1 and not told_gap:
                undetected += 1
            if it.seq == prev + 1 or not prev:
                told_gap = False
            prev = it.seq
            record((it.time,), now)
            if slow_ms and not stopping:
                time.sleep(slow_ms / 1000)
                stopping = stop.is_set()
        if stopping:
            target = drain_until.value
            if target and prev >= target:
                break
            if clock() > ep["drain_deadline"] and target:
                break
    edges = np.asarray(EDGES)
    kept = pub[:fill] >= measured.value        # the warm-up is not measured
    second = pub[:fill] >= boundary.value
    hist = [np.bincount(np.searchsorted(edges, lat_s[:fill][half & kept]), minlength=len(edges) + 1)
            for half in (~second, second)]
    st = client.stats.as_dict()
    cpu = time.process_time() - cpu0          # the run itself, not the start-up
    loop_cpu = time.thread_time() - thread0   # without ZeroMQ's I/O thread

    results.put({"idx": idx, "slow": bool(slow_ms), "last_seq": prev, "undetected": undetected,
                 "cpu_s": cpu, "loop_cpu_s": loop_cpu,
                 "reported": reported, "stats": st,
                 "hist": [h.tolist() for h in hist]})
    client.close()
    ctx.term()


# ---- the run -----------------------------------------------------------------------------
def run(subscribers: int = 10, seconds: float = 10.0, rate: float = 50_000.0,
        slow_ms: float = 1.0, retain: int = 100_000, sndhwm: int = 1_000,
        batch_ms: float = 1.0, warmup_s: float = 1.0) -> dict:
    from ctid.cti.auth import generate_keypair
    from ctid.cti.server import CtiServer, CtiSettings

    if subscribers < 2:
        raise ValueError("--subscribers must be at least 2 (one of them is the slow one)")
    tmp = tempfile.mkdtemp(prefix="hotline-bench-events-")
    server_pub, _, server_sec = generate_keypair(tmp, "ctid")
    client_pub, client_pub_file, client_sec = generate_keypair(tmp, "bench")
    keys_file = os.path.join(tmp, "keys.toml")
    with open(keys_file, "w") as f:
        f.write(f'[clients.bench]\nkey = "{client_pub}"\nrole = "observer"\n')
    settings = CtiSettings(events=f"ipc://{tmp}/events.sock", requests=f"ipc://{tmp}/requests.sock",
                           retain=retain, sndhwm=sndhwm, server_key=server_sec, keys=keys_file,
                           heartbeat_s=1.0)
    ctx = zmq.Context()
    source = SyntheticCalls()
    server = CtiServer(ctx, settings, source).open()

    mpc = mp.get_context("spawn")
    stop = mpc.Event()
    drain_until = mpc.Value("Q", 0)
    boundary = mpc.Value("d", float("inf"))
    measured = mpc.Value("d", 0.0)
    results = mpc.Queue()
    half = seconds / 2
    ep = {"events": settings.events, "requests": settings.requests,
          "server_public": os.path.join(tmp, "ctid.key"), "client_secret": client_sec,
          "rcvhwm": 1_000, "slow_rcvhwm": 100, "drain_deadline": 0.0}
    procs, readies = [], []

    def start(idx, slow):
        ready = mpc.Event()
        p = mpc.Process(target=_subscriber, args=(idx, slow, dict(ep), ready, stop, drain_until,
                                                  boundary, measured, results), daemon=True)
        p.start()
        procs.append(p)
        readies.append(ready)
        return ready

    # Serve (heartbeats, requests) while the subscribers start and authenticate.
    def serve_until(cond, limit_s):
        poller = zmq.Poller()
        for s in server.sockets:
            poller.register(s, zmq.POLLIN)
        end = time.time() + limit_s
        while not cond() and time.time() < end:
            poller.poll(20)
            server.process()
        return cond()

    source.prepare(int(rate * (seconds + warmup_s) * 1.02) + 1000)
    # Room for every event a subscriber will see: growing the arrays mid-run would stall it.
    ep["capacity"] = int(rate * (seconds + warmup_s) * 1.1) + 100_000
    ep["drain_deadline"] = time.time() + seconds + 120
    for i in range(subscribers - 1):
        start(i, 0.0)
    if not serve_until(lambda: all(r.is_set() for r in readies), 60):
        raise RuntimeError("subscribers did not connect within 60 s")

    poller = zmq.Poller()
    for s in server.sockets:
        poller.register(s, zmq.POLLIN)

    def publish_for(duration: float) -> tuple[int, float]:
        t0 = time.perf_counter()
        sent = 0
        cap = max(1, int(rate / 100))         # at most 10 ms worth in one batch
        step = batch_ms / 1000
        while True:
            el = time.perf_counter() - t0
            if el >= duration:
                break
            due = int(el * rate) - sent
            if due > 0:
                n = min(due, cap)
                server.publish(source.events(n), time.time())
                sent += n
            server.process()
            # Serve requests until the source's next burst is due.
            left = step - (time.perf_counter() - t0 - el)
            if left > 0:
                poller.poll(max(1, round(left * 1000)))
        return sent, time.perf_counter() - t0

    publish_for(warmup_s)                      # connections, caches and pages settle first
    measured.value = time.time()
    cpu0, thread0 = time.process_time(), time.thread_time()
    sent1, took1 = publish_for(half)
    slow_ready = start(subscribers - 1, slow_ms)
    serve_until(slow_ready.is_set, 30)         # publishing pauses while it connects
    boundary.value = time.time()
    sent2, took2 = publish_for(half)
    drain_until.value = server.seq
    server_cpu = time.process_time() - cpu0
    server_loop_cpu = time.thread_time() - thread0     # without ZeroMQ's I/O thread
    stop.set()
    # Keep answering replays and sending heartbeats until every subscriber has reported.
    reports = []
    end = time.time() + 180
    while len(reports) < subscribers and time.time() < end:
        poller.poll(20)
        server.process()
        while True:
            try:
                reports.append(results.get_nowait())
            except Exception:
                break
    for p in procs:
        p.join(5)
        if p.is_alive():
            p.terminate()
    server.close()
    ctx.term()

    prompt = [r for r in reports if not r["slow"]]
    slow = [r for r in reports if r["slow"]]

    def merged(half_idx):
        """Percentiles over every event every prompt client received in that half."""
        import numpy as np
        h = np.sum([r["hist"][half_idx] for r in prompt], axis=0) if prompt else np.zeros(1)
        return {"events": int(h.sum()), "p50_ms": percentile_ms(h, 50),
                "p99_ms": percentile_ms(h, 99), "max_ms": percentile_ms(h, 100)}

    def total(key, rs=reports):
        return sum(r["stats"][key] for r in rs)

    without, with_slow = merged(0), merged(1)
    result = {
        "subscribers": subscribers, "slow_clients": len(slow), "target_rate": rate,
        "batch_ms": batch_ms, "warmup_s": warmup_s,
        "seconds": round(took1 + took2, 2), "events_published": sent1 + sent2,
        "events_per_s": round((sent1 + sent2) / (took1 + took2)),
        "latency_ms_p50": with_slow["p50_ms"], "latency_ms_p99": with_slow["p99_ms"],
        "prompt_without_slow": without, "prompt_with_slow": with_slow,
        "gaps_detected": total("gaps_detected"), "gaps_recovered": total("gaps_recovered"),
        "gaps_unrecovered": total("gaps_unrecovered"),
        "gaps_undetected": sum(r["undetected"] for r in reports),
        "prompt_gaps_detected": total("gaps_detected", prompt),
        "slow_gaps_detected": total("gaps_detected", slow),
        "slow_gaps_replayed": total("gaps_replayed", slow),
        "slow_gaps_snapshot": total("gaps_snapshot", slow),
        "slow_messages_lost": total("messages_lost", slow),
        "server_cpu_s": round(server_cpu, 2),
        "server_loop_cpu_s": round(server_loop_cpu, 2),
        "prompt_client_cpu_s": round(max(r["cpu_s"] for r in prompt), 2) if prompt else None,
        "prompt_client_loop_cpu_s": round(max(r["loop_cpu_s"] for r in prompt), 2) if prompt else None,
        "clients_reached_last_seq": sum(1 for r in reports if r["last_seq"] == drain_until.value),
        "clients_reported": len(reports),
    }
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="ctictl bench events", description=__doc__.splitlines()[0])
    configure(p)
    args = p.parse_args(argv)
    return run_cli(args)


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--subscribers", type=int, default=10, help="clients, one of them slow")
    p.add_argument("--seconds", type=float, default=10.0, help="publishing time (two halves)")
    p.add_argument("--rate", type=float, default=50_000.0, help="events per second offered")
    p.add_argument("--slow-ms", type=float, default=1.0,
                   help="the slow client's sleep after each event")
    p.add_argument("--batch-ms", type=float, default=1.0,
                   help="the source hands ctid what it produced every this many ms")
    p.add_argument("--warmup-s", type=float, default=1.0,
                   help="publishing before the measured halves (not counted)")
    p.add_argument("--retain", type=int, default=100_000, help="events retained for Replay")
    p.add_argument("--runs", type=int, default=1,
                   help="repeat the run; the figures are the median run's, with every run listed")
    p.add_argument("--json", action="store_true")


def run_cli(args) -> int:
    results = []
    for i in range(args.runs):
        r = run(subscribers=args.subscribers, seconds=args.seconds, rate=args.rate,
                slow_ms=args.slow_ms, retain=args.retain, batch_ms=args.batch_ms,
                warmup_s=args.warmup_s)
        results.append(r)
        if args.runs > 1:
            print(f"run {i + 1}/{args.runs}: {r['events_per_s']} events/s, p50 "
                  f"{r['latency_ms_p50']} ms, p99 {r['latency_ms_p99']} ms (without the slow "
                  f"client {r['prompt_without_slow']['p99_ms']} ms), gaps {r['gaps_detected']} "
                  f"detected {r['gaps_recovered']} recovered", file=sys.stderr, flush=True)
    result = median_run(results)
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True))
    else:
        for k, v in result.items():
            print(f"{k:<26} {v}")
    ok = all(r["gaps_undetected"] == 0 and r["gaps_unrecovered"] == 0
             and r["clients_reached_last_seq"] == r["subscribers"] for r in results)
    return 0 if ok else 1


def median_run(results: list[dict]) -> dict:
    """One run's figures: the run whose p99 (with the slow client) is the median, with every
    run's p50/p99 beside it, so that a noisy machine shows as a spread, not a lucky number."""
    if len(results) == 1:
        return results[0]
    ordered = sorted(results, key=lambda r: r["latency_ms_p99"] or 0.0)
    out = dict(ordered[(len(ordered) - 1) // 2])
    out["runs"] = [{"latency_ms_p50": r["latency_ms_p50"], "latency_ms_p99": r["latency_ms_p99"],
                    "p99_ms_without_slow": r["prompt_without_slow"]["p99_ms"],
                    "events_per_s": r["events_per_s"], "gaps_detected": r["gaps_detected"],
                    "gaps_recovered": r["gaps_recovered"]} for r in results]
    out["latency_ms_p99_max"] = ordered[-1]["latency_ms_p99"]
    return out


if __name__ == "__main__":
    sys.exit(main())
