"""The simwire front-end: serves the virtual cards to cardd's `sim` backend.

A ROUTER bound at `endpoint` (hotline_proto.simwire_pb2.Envelope, one frame per message):
  hello     -> inventory          (the newest hello's peer becomes the host: a restarted
                                   cardd simply says hello again)
  every tick: tick n to the host  (rx of every port in port order, hardware events,
                                   D-channel frames, CAS bit changes, the error counters
                                   of E1 spans whose counts changed since the host last
                                   got them)
  tx n from the host              (its tx audio, hook operations, frames, CAS bits) ends
                                   tick n; a late tx (for an older tick) still applies.
Before a host is connected, events and frames wait (bounded) so the host learns of them.
Anything that does not parse or does not fit the cards is counted and ignored.
"""
from __future__ import annotations

import collections
import time

import numpy as np
import zmq
from google.protobuf.message import DecodeError

from drivers.backends.base import HookOp, HwEvent
from drivers.bus import ensure_ipc_dir
from hotline_proto import simwire_pb2

from .cards import Frontend, VirtualCards

PENDING_LIMIT = 10_000          # events/frames held for a host that has not said hello yet


class SimwireFrontend(Frontend):
    def __init__(self, cards: VirtualCards, endpoint: str, context: zmq.Context | None = None):
        self.cards = cards
        self.endpoint = endpoint
        self._ctx = context or zmq.Context.instance()
        self._sock: zmq.Socket | None = None
        self._host: bytes | None = None
        self._answered = True           # the host answered the tick last delivered
        self._delivered = 0             # the tick last delivered
        self._pending_events: collections.deque = collections.deque(maxlen=PENDING_LIMIT)
        self._pending_dframes: collections.deque = collections.deque(maxlen=PENDING_LIMIT)
        self._counters_sent: dict[int, dict] = {}   # span -> totals the host has
        self.stats = collections.Counter()
        self._size = len(cards.ports) * cards.block

    # ---- Frontend ---------------------------------------------------------------------
    def start(self) -> None:
        ensure_ipc_dir(self.endpoint)
        sock = self._ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)   # sends to a vanished host raise, not vanish
        sock.setsockopt(zmq.SNDHWM, 2000)
        sock.bind(self.endpoint)
        self._sock = sock

    def connected(self) -> bool:
        return self._host is not None

    def deliver(self) -> None:
        self._pending_events.extend(self.cards.take_host_events())
        self._pending_dframes.extend(self.cards.take_dframes_to_host())
        self._delivered = self.cards.tick
        if self._host is None:
            self.stats["ticks_without_host"] += 1
            return
        msg = simwire_pb2.Tick(tick=self.cards.tick, rx=self.cards.host_rx().tobytes())
        for e in self._pending_events:
            msg.events.add(channel=e.channel, span=e.span, event=int(e.event), value=e.value)
            if e.event == HwEvent.BITSCHANGED:
                msg.cas.add(channel=e.channel, bits=e.value)
        for span, frame in self._pending_dframes:
            msg.dframes.add(span=span, data=frame)
        changed = self._changed_counters()
        for span, totals in changed.items():
            msg.counters.add(span=span, **totals)
        if self._send(simwire_pb2.Envelope(tick=msg)):
            self._pending_events.clear()
            self._pending_dframes.clear()
            self._counters_sent.update(changed)
            self._answered = False
            self.stats["ticks"] += 1

    def collect(self, deadline: float | None) -> bool:
        """Serve the socket until the host has answered the tick last delivered, or deadline."""
        while True:
            if self._host is not None and self._answered:
                return True
            wait_ms = -1 if deadline is None else int(max(0.0, deadline - time.monotonic()) * 1000)
            if not self._sock.poll(wait_ms):
                return self._host is not None and self._answered
            self._serve_one()

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close(linger=0)
            self._sock = None
        self._host = None

    def _changed_counters(self) -> dict[int, dict]:
        """Spans whose counters differ from what the host has (a new host has none)."""
        changed = {}
        for span, totals in self.cards.span_counters.items():
            have = self._counters_sent.get(span)
            if have != totals and (have is not None or any(totals.values())):
                changed[span] = dict(totals)
        return changed

    # ---- wire -------------------------------------------------------------------------
    def _send(self, env: simwire_pb2.Envelope, peer: bytes | None = None) -> bool:
        peer = peer if peer is not None else self._host
        try:
            self._sock.send_multipart([peer, env.SerializeToString()], zmq.NOBLOCK)
            return True
        except zmq.Again:
            self.stats["host_backlogged"] += 1     # the host is far behind: this tick is lost
            return False
        except zmq.ZMQError:
            # The host is gone: forget it until it (or a new one) says hello.
            self.stats["host_lost"] += 1
            if peer == self._host:
                self._host = None
            return False

    def _serve_one(self) -> None:
        frames = self._sock.recv_multipart()
        if len(frames) != 2:
            self.stats["malformed"] += 1
            return
        peer, payload = frames
        env = simwire_pb2.Envelope()
        try:
            env.ParseFromString(payload)
        except (DecodeError, ValueError):
            self.stats["malformed"] += 1
            return
        kind = env.WhichOneof("msg")
        if kind == "hello":
            self._hello(peer)
        elif kind == "tx" and peer == self._host:
            self._tx(env.tx)
        elif kind == "tx":
            self.stats["stray"] += 1          # a previous host still talking
        else:
            self.stats["malformed"] += 1

    def _hello(self, peer: bytes) -> None:
        inv = self.cards.inventory
        msg = simwire_pb2.Inventory(block=inv.block, law=inv.law)
        for s in inv.spans:
            msg.spans.add(span=s.span, name=s.name, kind=s.kind,
                          alarms=self.cards.span_alarms.get(s.span, 0))
        for p in inv.ports:
            msg.ports.add(channel=p.channel, span=p.span, kind=p.kind.value)
        if self._send(simwire_pb2.Envelope(inventory=msg), peer):
            self._host = peer
            self._answered = True           # a new host owes nothing for earlier ticks
            self._counters_sent = {}        # ... and has no counters yet
            self.stats["hellos"] += 1

    def _tx(self, msg: simwire_pb2.Tx) -> None:
        if msg.tick > self._delivered or (msg.tx and len(msg.tx) != self._size):
            self.stats["malformed"] += 1
            return
        cards = self.cards
        try:
            ops = [(o.channel, HookOp(o.op)) for o in msg.ops]
        except ValueError:
            self.stats["malformed"] += 1
            return
        if any(ch not in cards.by_channel for ch, _ in ops) or \
                any(c.channel not in cards.by_channel or c.bits > 0xF for c in msg.cas):
            self.stats["malformed"] += 1
            return
        if msg.tx:
            cards.host_tx(np.frombuffer(msg.tx, dtype=np.uint8).reshape(len(cards.ports), cards.block))
        for channel, op in ops:
            cards.host_hook(channel, op)
        for d in msg.dframes:
            cards.host_dframe(d.span, bytes(d.data))
        for c in msg.cas:
            cards.host_cas(c.channel, c.bits)
        if msg.tick == self._delivered:
            self._answered = True
            self.stats["answered"] += 1
        elif msg.tick:
            self.stats["late_tx"] += 1
