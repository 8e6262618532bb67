"""The world behind the wires: one actor per analog port, and the far side's media.

Each tick (`step`), in this order:
1. directors (a scenario run, the demo's traffic) act: they tell actors what to do;
2. actors step their state machines (ring cadence, timers, the host's hook operations);
3. the far side's media runs once for every port together: what the host sent last tick
   (`cards.from_host`) is decoded, DTMF/tones/caller ID detected where actors listen, and
   what actors play (tones, DTMF, caller ID, speech) is encoded into `cards.to_host` for
   the actors' rows; the detections go to the actors, who react next tick.

The far side's media is a `drivers.media.engine.MediaEngine` of its own (rows = ports):
the same generators and detectors cardd uses, pointed the other way.
"""
from __future__ import annotations

from typing import Protocol

import numpy as np

from drivers.backends.base import PortKind
from drivers.media import g711
from drivers.media.engine import CallerIdEvent, DigitEvent, MediaEngine, PlayDone, ToneEvent
from drivers.media.levels import rms_to_dbm0

from .actors import CoLine, Phone
from .cards import VirtualCards


class Director(Protocol):
    def step(self, tick: int) -> None: ...


class LineMedia:
    """The far side's media for every port: an engine plus per-row levels."""

    def __init__(self, cards: VirtualCards, plan: str = "cn"):
        self.cards = cards
        self.engine = MediaEngine(max(1, len(cards.ports)), block=cards.block, law=cards.law,
                                  plan=plan, load_prompts="inline")
        self.plan = self.engine.plan
        self.rows: list[int] = []                   # rows that actors own (written each tick)
        self.level_dbm0 = np.full(len(cards.ports), -120.0)
        self._power = g711.decode_table(cards.law).astype(np.float64) ** 2
        self._decode = g711.decode_table(cards.law)

    def claim(self, row: int) -> None:
        if row not in self.rows:
            self.rows.append(row)
            self.rows.sort()

    def heard_pcm(self, row: int) -> np.ndarray:
        """What the host sent on `row` last tick, as int16 (for recording)."""
        return self._decode[self.cards.from_host(self.cards.ports[row].channel)]

    def tick(self) -> list:
        rx = self.cards.from_host_all()
        tx, events = self.engine.tick(rx)
        if self.rows:
            rows = self.rows
            self.cards.host_rx()[rows] = tx[rows]
            self.level_dbm0[rows] = rms_to_dbm0(np.sqrt(self._power[rx[rows]].mean(axis=1)))
        return events


class World:
    def __init__(self, cards: VirtualCards, plan: str = "cn"):
        self.cards = cards
        self.media = LineMedia(cards, plan)
        self.tick_s = cards.block / 8000
        self.tick = 0
        self.actors: dict[int, Phone | CoLine] = {}
        self.directors: list[Director] = []
        self._by_row: dict[int, Phone | CoLine] = {}

    # ---- populating ---------------------------------------------------------------------
    def add_phone(self, channel: int, **options) -> Phone:
        port = self._port(channel, PortKind.FXS, "phone")
        return self._add(Phone(self, port, **options))

    def add_co_line(self, channel: int, **options) -> CoLine:
        port = self._port(channel, PortKind.FXO, "CO line")
        return self._add(CoLine(self, port, **options))

    def populate(self, options: dict[int, dict] | None = None) -> None:
        """A phone on every FXS port and a CO line on every FXO port (E1 comes later)."""
        options = options or {}
        for port in self.cards.ports:
            if port.channel in self.actors:
                continue
            opts = {k: v for k, v in options.get(port.channel, {}).items() if not k.startswith("__")}
            if port.info.kind == PortKind.FXS:
                self.add_phone(port.channel, **opts)
            elif port.info.kind == PortKind.FXO:
                self.add_co_line(port.channel, **opts)

    def phone(self, channel: int) -> Phone:
        actor = self.actors.get(channel)
        if not isinstance(actor, Phone):
            raise KeyError(f"no phone on channel {channel}")
        return actor

    def co_line(self, channel: int) -> CoLine:
        actor = self.actors.get(channel)
        if not isinstance(actor, CoLine):
            raise KeyError(f"no CO line on channel {channel}")
        return actor

    def _port(self, channel: int, kind: PortKind, what: str):
        port = self.cards.by_channel.get(channel)
        if port is None:
            raise KeyError(f"no port for channel {channel} on the virtual cards")
        if port.info.kind != kind:
            raise ValueError(f"channel {channel} is an {port.info.kind.value} port; "
                             f"a {what} needs an {kind.value} port")
        if channel in self.actors:
            raise ValueError(f"channel {channel} already has an actor")
        return port

    def _add(self, actor):
        self.actors[actor.channel] = actor
        self._by_row[actor.row] = actor
        self.media.claim(actor.row)
        return actor

    # ---- the tick ------------------------------------------------------------------------
    def step(self, tick: int) -> None:
        self.tick = tick
        for director in self.directors:
            director.step(tick)
        for actor in self.actors.values():
            actor.step(tick)
        for event in self.media.tick():
            actor = self._by_row.get(event.row)
            if actor is None:
                continue
            if isinstance(event, DigitEvent):
                actor.on_digit(event.digit)
            elif isinstance(event, ToneEvent):
                actor.on_tone(event.tone)
            elif isinstance(event, CallerIdEvent):
                actor.on_callerid(event.number, event.name)
            elif isinstance(event, PlayDone):
                actor.on_play_done(event.tag, event.interrupted)
        for actor in self.actors.values():
            actor.after_media(tick)

    def ticks(self, seconds: float) -> int:
        return int(round(seconds / self.tick_s))
