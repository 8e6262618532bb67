"""A live view of spans and channels in the terminal, and the run's summary.

A director in the world's tick: it follows cardd's events on its own subscription, asks
cardd for status (channel states, calls, numbers) once a second, and redraws a table of
channels with what the far side is doing and the most recent events: in place on a
terminal, as plain appended text every few seconds otherwise. Redrawing is paced by the
wall clock (it is for people); everything it counts comes from events. Given a CTI client
(ctid running), it shows ctid's side too (simulators.ctiview).
"""
from __future__ import annotations

import collections
import sys
import time
from typing import TextIO

from hotline_proto import cardd_pb2

from .carddclient import CarddClient
from .ctiview import CtiPanel
from .scenario import SeenEvent

STATUS_ID_BASE = 1 << 41
CLEAR = "\x1b[H\x1b[2J"


class LiveView:
    def __init__(self, client: CarddClient, world, title: str = "ctisim",
                 out: TextIO | None = None, tty: bool | None = None,
                 interval_s: float | None = None, cti=None):
        self.client = client
        self.cti = CtiPanel(cti) if cti is not None else None
        self.world = world
        self.title = title
        self.out = out or sys.stdout
        self.tty = self.out.isatty() if tty is None else tty
        self.interval_s = interval_s if interval_s is not None else (1.0 if self.tty else 5.0)
        self.recent: collections.deque[SeenEvent] = collections.deque(maxlen=8)
        self.last_event: dict[int, SeenEvent] = {}
        self.status: cardd_pb2.Reply | None = None
        self.counts: collections.Counter = collections.Counter()
        self.calls: set[str] = set()
        self.first_seq = self.last_seq = 0
        self.gaps = 0
        self.started = time.monotonic()
        self._next_draw = self.started + min(self.interval_s, 1.0)
        self._next_status = 0
        self._status_id = STATUS_ID_BASE
        self.tick = 0

    # ---- the tick -------------------------------------------------------------------------
    def step(self, tick: int) -> None:
        self.tick = tick
        for raw in self.client.poll_events():
            self._on_event(SeenEvent.from_proto(raw))
        for reply in self.client.poll_replies():
            if reply.id == self._status_id and reply.ok:
                self.status = reply
        if self.cti is not None:
            self.cti.poll()
        if tick >= self._next_status:
            self._status_id += 1
            self.client.send(cardd_pb2.Command(id=self._status_id, status=cardd_pb2.Status()))
            self._next_status = tick + self.world.ticks(1.0)
        now = time.monotonic()
        if now >= self._next_draw:
            self._next_draw = now + self.interval_s
            self.draw()

    def _on_event(self, ev: SeenEvent) -> None:
        if self.last_seq and ev.seq != self.last_seq + 1:
            self.gaps += 1
        self.first_seq = self.first_seq or ev.seq
        self.last_seq = ev.seq
        self.counts[ev.kind] += 1
        self.counts["events"] += 1
        if ev.call_id:
            self.calls.add(ev.call_id)
        if ev.channel:
            self.last_event[ev.channel] = ev
        self.recent.append(ev)

    # ---- drawing --------------------------------------------------------------------------
    def draw(self) -> None:
        text = self.render()
        if self.tty:
            self.out.write(CLEAR + text + "\n")
        else:
            self.out.write(text + "\n\n")
        self.out.flush()

    def render(self) -> str:
        elapsed = time.monotonic() - self.started
        lines = [f"{self.title}   tick {self.tick}   {elapsed:6.1f} s   "
                 f"calls {len(self.calls)}  answered {self.counts['answered']}  "
                 f"digits {self.counts['digit']}  events {self.counts['events']}"]
        spans = self.status.spans if self.status else []
        for s in spans:
            alarms = ",".join(s.alarm_names) or "ok"
            lines.append(f"span {s.span} {s.name} ({s.kind}, {s.channels} channels): {alarms}")
        lines.append("")
        lines.append(f"{'CHAN':<5}{'PORT':<5}{'STATE':<15}{'CALL':<12}{'ANI':<14}{'DNIS':<8}"
                     f"{'FAR SIDE':<34}LAST EVENT")
        by_channel = {c.channel: c for c in self.status.channels} if self.status else {}
        for channel, actor in sorted(self.world.actors.items()):
            c = by_channel.get(channel)
            state = cardd_pb2.ChannelState.Name(c.state).lower() if c else "?"
            if c is not None and not c.in_service:
                state = "OUT OF SERVICE"
            last = self.last_event.get(channel)
            lines.append(f"{channel:<5}{actor.port.info.kind.value:<5}{state:<15}"
                         f"{(c.call_id if c else '') or '-':<12}{(c.ani if c else '') or '-':<14}"
                         f"{(c.dnis if c else '') or '-':<8}{far_side(actor):<34}"
                         f"{_short(last) if last else '-'}")
        lines.append("")
        lines.append("recent events:")
        lines += [f"  {ev}" for ev in self.recent] or ["  (none yet)"]
        if self.cti is not None:
            lines.append("")
            lines += self.cti.render()
        return "\n".join(lines)

    # ---- the end --------------------------------------------------------------------------
    def summary(self) -> dict:
        return {"calls": len(self.calls), "answered": self.counts["answered"],
                "incoming": self.counts["incoming"], "digits": self.counts["digit"],
                "cleared": self.counts["cleared"], "events": self.counts["events"],
                "seq_gaps": self.gaps, "first_seq": self.first_seq, "last_seq": self.last_seq,
                "cti": self.cti.summary() if self.cti is not None else None}


def far_side(actor) -> str:
    """A few words on what the actor on a port is doing."""
    if actor.kind == "phone":
        if actor.offhook:
            return f"off-hook, hears {actor.hearing}"
        if actor.ringing:
            cid = f", CID {actor.caller_id}" if actor.caller_id else ""
            return f"ringing ({actor.ring_count}){cid}"
        return "on-hook"
    state = actor.state.value.replace("_", " ")
    if actor.calling_number:
        state += f" from {actor.calling_number}"
    if actor.state.value in ("collecting", "routing") and actor.digits:
        state += f" {actor.digits}"
    return state


def _short(ev: SeenEvent) -> str:
    shown = {k: v for k, v in ev.fields.items() if v not in ("", 0, False, [])}
    args = " ".join(f"{k}={v}" for k, v in shown.items())
    return f"{ev.kind} {args}".strip()
