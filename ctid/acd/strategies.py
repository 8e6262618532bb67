"""Agent-selection strategies: per-queue indexes of ready agents.

Each queue keeps its ready members in an index ordered by the strategy's metric, so a
routing decision reads the front of a sorted list instead of scanning agents. Metrics
only change while an agent is not ready (a call raises their count, a turn moves on),
so an agent's key is computed when they become ready and stays valid until they leave.

| name            | picks the ready member with ...                                   |
|-----------------|-------------------------------------------------------------------|
| longest_idle    | the earliest ``idle_since`` (longest available since login, call  |
|                 | wrap-up or not-ready); a cancelled offer keeps the old time       |
| fewest_calls    | the fewest calls answered (all queues), then longest idle         |
| least_talk_time | the least talk time (busy + on hold, all queues), then longest idle|
| round_robin     | the member this queue offered to least recently; members never    |
|                 | offered go first, in member order. An agent who was away when    |
|                 | their turn came is served first on return                         |
| ring_all        | all ready members at once; the first to answer gets the call      |
| linear          | the lowest member order (top-down hunt: always from the first)    |
| random          | uniformly at random, from a seeded generator                      |
| skill_weighted  | the highest weighted skill-level sum for this queue, then longest |
|                 | idle                                                              |
"""
from __future__ import annotations

import bisect
import random

from .actions import AcdError


def _longest_idle(agent, m):
    return (agent.idle_since, m.order)


def _fewest_calls(agent, m):
    return (agent.calls_handled, agent.idle_since, m.order)


def _least_talk(agent, m):
    return (agent.talk_s, agent.idle_since, m.order)


def _round_robin(agent, m):
    return (m.last_turn, m.order)


def _linear(agent, m):
    return (m.order,)


def _skill_weighted(agent, m):
    return (-m.score, agent.idle_since, m.order)


class SortedIndex:
    """Ready agents sorted by key; exact removal by remembered key (bisect + del)."""
    __slots__ = ("keyfn", "entries", "key_of")

    def __init__(self, keyfn):
        self.keyfn = keyfn
        self.entries: list[tuple] = []
        self.key_of: dict[str, tuple] = {}

    def add(self, agent, membership) -> None:
        if agent.id in self.key_of:
            return
        key = self.keyfn(agent, membership) + (agent.id,)
        self.key_of[agent.id] = key
        bisect.insort(self.entries, key)

    def remove(self, agent_id: str) -> None:
        key = self.key_of.pop(agent_id, None)
        if key is not None:
            entries = self.entries
            i = bisect.bisect_left(entries, key)
            del entries[i]

    def best(self):
        return self.entries[0][-1] if self.entries else None

    def ordered(self) -> list[str]:
        return [k[-1] for k in self.entries]

    def __contains__(self, agent_id) -> bool:
        return agent_id in self.key_of

    def __len__(self) -> int:
        return len(self.entries)


class RandomIndex:
    """Ready agents in a list with O(1) removal (swap with last) and seeded picks."""
    __slots__ = ("rng", "ids", "pos")

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.ids: list[str] = []
        self.pos: dict[str, int] = {}

    def add(self, agent, membership) -> None:
        if agent.id in self.pos:
            return
        self.pos[agent.id] = len(self.ids)
        self.ids.append(agent.id)

    def remove(self, agent_id: str) -> None:
        i = self.pos.pop(agent_id, None)
        if i is None:
            return
        last = self.ids.pop()
        if last != agent_id:
            self.ids[i] = last
            self.pos[last] = i

    def best(self):
        ids = self.ids
        if not ids:
            return None
        return ids[self.rng.randrange(len(ids))]

    def ordered(self) -> list[str]:
        return sorted(self.ids)

    def __contains__(self, agent_id) -> bool:
        return agent_id in self.pos

    def __len__(self) -> int:
        return len(self.ids)


_KEYS = {
    "longest_idle": _longest_idle,
    "fewest_calls": _fewest_calls,
    "least_talk_time": _least_talk,
    "round_robin": _round_robin,
    "ring_all": _longest_idle,      # offer order only; everyone rings
    "linear": _linear,
    "skill_weighted": _skill_weighted,
}
STRATEGIES = tuple(_KEYS) + ("random",)
ALIASES = {"top_down": "linear", "longest_available": "longest_idle", "ringall": "ring_all",
           "rr": "round_robin", "skills": "skill_weighted"}


def canonical(name: str) -> str:
    name = ALIASES.get(name, name)
    if name not in STRATEGIES:
        raise AcdError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    return name


def make_index(name: str, rng: random.Random):
    name = canonical(name)
    if name == "random":
        return RandomIndex(rng)
    return SortedIndex(_KEYS[name])
