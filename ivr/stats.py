"""Per-node IVR statistics: entries, exits by path (option key, next, fallback, fail...),
time spent, abandons (callers who hung up there), and events such as invalid keys and
timeouts. Sessions report into one shared `IvrStats`; the shell drains deltas into the
storage queue (table ivr_node_stats) and serves totals to ctictl and /metrics.
"""
from __future__ import annotations

import collections
import dataclasses


@dataclasses.dataclass
class NodeStats:
    entries: int = 0
    exits: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    time_s: float = 0.0
    abandons: int = 0
    events: collections.Counter = dataclasses.field(default_factory=collections.Counter)

    def add(self, other: "NodeStats") -> None:
        self.entries += other.entries
        self.exits.update(other.exits)
        self.time_s += other.time_s
        self.abandons += other.abandons
        self.events.update(other.events)

    def as_dict(self) -> dict:
        return {"entries": self.entries, "exits": dict(self.exits), "time_s": round(self.time_s, 3),
                "abandons": self.abandons, "events": dict(self.events)}


class IvrStats:
    def __init__(self):
        self.totals: dict[tuple[str, str], NodeStats] = {}
        self._delta: dict[tuple[str, str], NodeStats] = {}

    def _both(self, flow: str, node: str):
        key = (flow, node)
        return (self.totals.setdefault(key, NodeStats()), self._delta.setdefault(key, NodeStats()))

    def enter(self, flow: str, node: str) -> None:
        for s in self._both(flow, node):
            s.entries += 1

    def exit(self, flow: str, node: str, path: str, dwell_s: float) -> None:
        for s in self._both(flow, node):
            s.exits[path] += 1
            s.time_s += max(0.0, dwell_s)

    def abandon(self, flow: str, node: str, dwell_s: float) -> None:
        for s in self._both(flow, node):
            s.abandons += 1
            s.time_s += max(0.0, dwell_s)

    def event(self, flow: str, node: str, kind: str) -> None:
        for s in self._both(flow, node):
            s.events[kind] += 1

    def node(self, flow: str, node: str) -> NodeStats:
        return self.totals.get((flow, node), NodeStats())

    def snapshot(self) -> dict[str, dict[str, dict]]:
        out: dict[str, dict[str, dict]] = {}
        for (flow, node), s in sorted(self.totals.items()):
            out.setdefault(flow, {})[node] = s.as_dict()
        return out

    def drain(self, now: float) -> list[dict]:
        """Rows of what changed since the last drain (one per flow and node), for storage."""
        rows = [{"time": now, "flow": flow, "node": node, **s.as_dict()}
                for (flow, node), s in sorted(self._delta.items())]
        self._delta = {}
        return rows

    def report(self) -> str:
        """A plain-text table for operators."""
        lines = [f"{'flow':<14}{'node':<18}{'entries':>8}{'abandons':>9}{'avg s':>8}  exits"]
        for (flow, node), s in sorted(self.totals.items()):
            avg = s.time_s / s.entries if s.entries else 0.0
            exits = " ".join(f"{k}={v}" for k, v in sorted(s.exits.items()))
            lines.append(f"{flow:<14}{node:<18}{s.entries:>8}{s.abandons:>9}{avg:>8.1f}  {exits}")
        return "\n".join(lines)
