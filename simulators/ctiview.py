"""ctid's side of the live view: a CTI client's events counted by CSTA name, the calls in
progress from a snapshot asked for once a second, and the last few events.

Polled from the live view's tick, never blocking (poll with a zero timeout, replies taken
when they have come). Counts come from the event stream in seq order (the client library
recovers gaps by replay or snapshot; its statistics say if anything was lost).
"""
from __future__ import annotations

import collections
import time

from hotline_proto import cti_pb2

SNAPSHOT_EVERY_S = 1.0
PERIODIC = {"QueueStatistics"}      # counted, but not shown among the last events
STATES = {v: k[3:].lower() for k, v in cti_pb2.ConnectionState.items()}


def describe(e: cti_pb2.Event) -> str:
    parts = [f"#{e.seq:<5} {e.name:<20}"]
    if e.call_id:
        parts.append(f"call {e.call_id}")
    if e.device:
        parts.append(f"at {e.device}")
    if e.calling or e.called:
        parts.append(f"{e.calling or '?'} -> {e.called or '?'}")
    if e.cause:
        parts.append(f"cause {e.cause}")
    return "  ".join(parts)


def describe_call(call: cti_pb2.Call) -> str:
    conns = ", ".join(f"{c.device} {STATES.get(c.state, c.state)}" for c in call.connections)
    return f"{call.call_id:<14}{conns}"


class CtiPanel:
    def __init__(self, client, clock=time.monotonic, recent: int = 6):
        self.client = client
        self.clock = clock
        self.counts: collections.Counter = collections.Counter()
        self.recent: collections.deque[cti_pb2.Event] = collections.deque(maxlen=recent)
        self.call_ids: set[str] = set()
        self.calls: list[cti_pb2.Call] = []       # from the latest snapshot
        self.snapshot_seq = 0
        self.last_seq = 0
        self.lost = 0                              # reported by SystemStatus items
        self._snapshot_id = 0
        self._next_snapshot = 0.0

    def poll(self) -> None:
        for item in self.client.poll(timeout_ms=0):
            if isinstance(item, cti_pb2.Event):
                self._on_event(item)
            else:                                  # SnapshotTaken: the calls at its seq
                self.calls = list(item.calls)
                self.snapshot_seq = item.seq
        now = self.clock()
        if self._snapshot_id:
            reply = self.client.take_reply(self._snapshot_id)
            if reply is not None:
                self._snapshot_id = 0
                if reply.ok:
                    self.calls = list(reply.calls)
                    self.snapshot_seq = reply.seq
        if not self._snapshot_id and now >= self._next_snapshot:
            self._next_snapshot = now + SNAPSHOT_EVERY_S
            self._snapshot_id = self.client.send(cti_pb2.Request(snapshot=cti_pb2.Snapshot()))

    def _on_event(self, e: cti_pb2.Event) -> None:
        if e.name == "SystemStatus" and not e.seq:
            self.lost += e.lost
            return
        self.counts[e.name] += 1
        self.last_seq = max(self.last_seq, e.seq)
        if e.call_id:
            self.call_ids.add(e.call_id)
        if e.name not in PERIODIC:
            self.recent.append(e)

    def render(self) -> list[str]:
        total = sum(self.counts.values())
        lines = [f"ctid: {total} CSTA events (seq {self.last_seq}), {len(self.call_ids)} calls seen"
                 + (f", {self.lost} lost" if self.lost else "")]
        by_name = "  ".join(f"{n} {c}" for n, c in sorted(self.counts.items()))
        lines.append(f"  by name: {by_name or '(none yet)'}")
        lines.append(f"  calls in progress (snapshot at seq {self.snapshot_seq}): {len(self.calls)}")
        lines += [f"    {describe_call(c)}" for c in self.calls[:8]]
        lines.append("  last CSTA events:")
        lines += [f"    {describe(e)}" for e in self.recent] or ["    (none yet)"]
        return lines

    def summary(self) -> dict:
        return {"events": sum(self.counts.values()), "calls": len(self.call_ids),
                "by_name": dict(sorted(self.counts.items())), "lost": self.lost,
                "last_seq": self.last_seq}
