"""The simulator's clock: one loop, one tick at a time, for the cards, the world and the host.

Every tick: cards.next_tick(); world.step(tick); frontend.deliver(); frontend.collect(deadline).

- "realtime": ticks every `tick_s` (20 ms) against time.monotonic(), like a card's
  interrupt. The world runs whether or not a host is connected or answers in time. A tick
  whose slot had already ended when it started is *late*; when the loop falls more than
  `max_behind` ticks behind it slips (restarts its schedule) instead of racing to catch up.
- "fast": lockstep. The next tick starts as soon as the host answered the last one, and
  while no host is connected the world waits (so simulated time never runs unobserved).

Stop conditions: `until()` returning true, `max_ticks`, `max_seconds` (wall clock), or
stop() from anywhere (a signal handler, another thread).
"""
from __future__ import annotations

import dataclasses
import time
from typing import Callable, Protocol

from .cards import Frontend, VirtualCards

MODES = ("realtime", "fast")
TICK_S = 0.020


class WorldLike(Protocol):
    def step(self, tick: int) -> None: ...


@dataclasses.dataclass
class ClockStats:
    ticks: int = 0
    late: int = 0              # realtime: ticks started after their slot ended
    slips: int = 0             # realtime: schedule restarts after falling far behind
    unanswered: int = 0        # realtime: ticks the connected host did not answer in time
    waited_for_host_s: float = 0.0
    elapsed_s: float = 0.0
    stopped_by: str = ""


class Clock:
    def __init__(self, cards: VirtualCards, world: WorldLike, frontend: Frontend,
                 mode: str = "fast", tick_s: float | None = None, poll_s: float = 0.05,
                 max_behind: int = 50):
        if mode not in MODES:
            raise ValueError(f"unknown clock {mode!r}; expected one of {', '.join(MODES)}")
        self.cards = cards
        self.world = world
        self.frontend = frontend
        self.mode = mode
        self.tick_s = tick_s if tick_s is not None else cards.block / 8000
        self.poll_s = poll_s
        self.max_behind = max_behind
        self.stats = ClockStats()
        self._stop = False

    def stop(self) -> None:
        self._stop = True

    def step(self) -> None:
        """One tick of the cards and the world, delivered to the host (not collected)."""
        self.cards.next_tick()
        self.world.step(self.cards.tick)
        self.frontend.deliver()
        self.stats.ticks += 1

    def run(self, until: Callable[[], bool] | None = None, max_ticks: int | None = None,
            max_seconds: float | None = None) -> ClockStats:
        self._stop = False
        started = time.monotonic()
        end = started + max_seconds if max_seconds is not None else None
        first = self.stats.ticks

        def reason() -> str:
            if self._stop:
                return "stop"
            if until is not None and until():
                return "until"
            if max_ticks is not None and self.stats.ticks - first >= max_ticks:
                return "max_ticks"
            if end is not None and time.monotonic() >= end:
                return "max_seconds"
            return ""

        try:
            if self.mode == "fast":
                self.stats.stopped_by = self._run_fast(reason)
            else:
                self.stats.stopped_by = self._run_realtime(reason)
        finally:
            self.stats.elapsed_s += time.monotonic() - started
        return self.stats

    def _run_fast(self, reason: Callable[[], str]) -> str:
        while True:
            why = reason()
            if why:
                return why
            if not self.frontend.connected():
                waited = time.monotonic()
                self.frontend.collect(time.monotonic() + self.poll_s)
                self.stats.waited_for_host_s += time.monotonic() - waited
                continue
            self.step()
            # Lockstep: wait for the answer, but keep checking the stop conditions.
            while not self.frontend.collect(time.monotonic() + self.poll_s):
                why = reason()
                if why:
                    return why
                if not self.frontend.connected():
                    break          # the host went away: wait for the next one at the top

    def _run_realtime(self, reason: Callable[[], str]) -> str:
        t0 = time.monotonic()
        slot = 0
        while True:
            why = reason()
            if why:
                return why
            start = t0 + slot * self.tick_s
            now = time.monotonic()
            while now < start:
                # Early: a waiting host may say hello meanwhile; otherwise just wait.
                if self.frontend.connected():
                    time.sleep(start - now)
                else:
                    self.frontend.collect(start)
                now = time.monotonic()
            if now - start > self.max_behind * self.tick_s:
                self.stats.slips += 1
                t0, slot, start = now, 0, now
            if time.monotonic() > start + self.tick_s:
                self.stats.late += 1
            self.step()
            slot += 1
            if self.frontend.connected() and not self.frontend.collect(t0 + slot * self.tick_s):
                self.stats.unanswered += 1
