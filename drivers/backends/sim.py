"""The `sim` backend: cardd's end of the simwire, a DEALER to ctisim's virtual cards.

Protocol (hotline_proto.simwire_pb2.Envelope, one message per ZeroMQ frame):
  open():      send hello            -> receive inventory
  exchange():  send tx for the tick last received (tick 0 before the first)
               -> receive the next tick (rx audio of every port, events, frames, CAS,
                  and the error counters of spans whose counts changed)
Hook operations, D-channel frames and CAS bits are queued and ride on the next tx.
A message that does not parse or does not fit the inventory is counted in `malformed`
and ignored: a confused simulator never takes cardd down.
"""
from __future__ import annotations

import time

import numpy as np
import zmq
from google.protobuf.message import DecodeError

from drivers.media.g711 import LAWS
from hotline_proto import simwire_pb2

from .base import (Backend, BackendError, ChannelEvent, HookOp, HwEvent, Inventory, PortInfo,
                   PortKind, SpanInfo, TickIn)

DEFAULT_ENDPOINT = "ipc://run/ctisim-cards.sock"
# simwire SpanCounters fields (named as cardd's SpanAlarm counters), span number aside.
_COUNTER_FIELDS = tuple(f.name for f in simwire_pb2.SpanCounters.DESCRIPTOR.fields
                        if f.name != "span")


class SimBackend(Backend):
    def __init__(self, endpoint: str = DEFAULT_ENDPOINT, timeout_s: float = 10.0,
                 client: str = "cardd", context: zmq.Context | None = None):
        if timeout_s <= 0:
            raise BackendError(f"sim backend: timeout_s must be positive, got {timeout_s!r}")
        self.endpoint = endpoint
        self.timeout_s = float(timeout_s)
        self.client = client
        self._ctx = context or zmq.Context.instance()
        self._sock: zmq.Socket | None = None
        self.inventory: Inventory | None = None
        self._channels: set[int] = set()
        self._tick = 0                          # the tick whose rx we last returned
        self._ops: list[tuple[int, int]] = []
        self._dframes: list[tuple[int, bytes]] = []
        self._cas: list[tuple[int, int]] = []
        self._alarms: dict[int, int] = {}
        self._counters: dict[int, dict[str, int]] = {}     # span -> running totals
        self.malformed = 0

    # ---- Backend ----------------------------------------------------------------------
    def open(self) -> Inventory:
        if self._sock is not None:
            raise BackendError("sim backend is already open")
        sock = self._ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(self.endpoint)
        self._sock = sock
        self._send(simwire_pb2.Envelope(hello=simwire_pb2.Hello(client=self.client)))
        env = self._receive("inventory", "the inventory")
        self.inventory = self._read_inventory(env.inventory)
        self._channels = {p.channel for p in self.inventory.ports}
        self._alarms = {s.span: s.alarms for s in self.inventory.spans}
        self._counters = {}
        return self.inventory

    def exchange(self, tx: np.ndarray) -> TickIn:
        inv = self._require_open()
        tx = np.asarray(tx)
        shape = (len(inv.ports), inv.block)
        if tx.dtype != np.uint8 or tx.shape != shape:
            raise BackendError(f"sim backend: tx must be uint8 {shape}, got {tx.dtype} {tx.shape}")
        msg = simwire_pb2.Tx(tick=self._tick, tx=tx.tobytes())
        for channel, op in self._ops:
            msg.ops.add(channel=channel, op=op)
        for span, frame in self._dframes:
            msg.dframes.add(span=span, data=frame)
        for channel, bits in self._cas:
            msg.cas.add(channel=channel, bits=bits)
        self._ops, self._dframes, self._cas = [], [], []
        self._send(simwire_pb2.Envelope(tx=msg))
        while True:
            env = self._receive("tick", "the next tick")
            tin = self._read_tick(env.tick, inv)
            if tin is not None:
                self._tick = tin.tick
                return tin

    def hook(self, channel: int, op: HookOp) -> None:
        self._require_channel(channel)
        self._ops.append((channel, int(HookOp(op))))

    def send_dframe(self, span: int, frame: bytes) -> None:
        inv = self._require_open()
        if span not in {s.span for s in inv.spans if s.kind == "e1"}:
            raise BackendError(f"sim backend: span {span} is not an E1 span of this card set")
        self._dframes.append((span, bytes(frame)))

    def set_cas(self, channel: int, bits: int) -> None:
        self._require_channel(channel)
        if not 0 <= bits <= 0xF:
            raise BackendError(f"sim backend: CAS bits are ABCD (0..15), got {bits!r}")
        self._cas.append((channel, int(bits)))

    def span_alarms(self, span: int) -> int:
        return self._alarms.get(span, 0)

    def span_counters(self, span: int) -> dict[str, int]:
        """The span's error counters as ctisim last sent them (running totals)."""
        return dict(self._counters.get(span, {}))

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close(linger=0)
            self._sock = None

    # ---- wire -------------------------------------------------------------------------
    def _require_open(self) -> Inventory:
        if self._sock is None or self.inventory is None:
            raise BackendError("sim backend is not open")
        return self.inventory

    def _require_channel(self, channel: int) -> None:
        self._require_open()
        if channel not in self._channels:
            raise BackendError(f"sim backend: no channel {channel} on the virtual cards")

    def _send(self, env: simwire_pb2.Envelope) -> None:
        try:
            self._sock.send(env.SerializeToString(), zmq.NOBLOCK)
        except zmq.Again:
            raise BackendError(f"sim backend: ctisim at {self.endpoint} is not taking messages") from None

    def _receive(self, kind: str, what: str) -> simwire_pb2.Envelope:
        """The next well-formed envelope of `kind`; others are counted and dropped."""
        deadline = time.monotonic() + self.timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not self._sock.poll(max(1, int(left * 1000))):
                raise BackendError(f"sim backend: {what} did not come from ctisim at "
                                   f"{self.endpoint} within {self.timeout_s:g} s")
            frames = self._sock.recv_multipart()
            env = simwire_pb2.Envelope()
            try:
                if len(frames) != 1:
                    raise DecodeError(f"{len(frames)} frames")
                env.ParseFromString(frames[0])
            except (DecodeError, ValueError):
                self.malformed += 1
                continue
            if env.WhichOneof("msg") == kind:
                return env
            self.malformed += 1    # e.g. a tick before the inventory, or a stray hello

    def _read_inventory(self, msg: simwire_pb2.Inventory) -> Inventory:
        law = msg.law or "alaw"
        if law not in LAWS or msg.block == 0:
            raise BackendError(f"sim backend: ctisim sent an unusable inventory "
                               f"(law {law!r}, block {msg.block})")
        try:
            spans = [SpanInfo(span=s.span, name=s.name, kind=s.kind, alarms=s.alarms)
                     for s in msg.spans]
            ports = [PortInfo(channel=p.channel, span=p.span, kind=PortKind(p.kind))
                     for p in msg.ports]
        except ValueError as e:
            raise BackendError(f"sim backend: ctisim sent an unusable inventory: {e}") from None
        return Inventory(spans=spans, ports=ports, block=msg.block, law=law)

    def _read_tick(self, msg: simwire_pb2.Tick, inv: Inventory) -> TickIn | None:
        size = len(inv.ports) * inv.block
        if len(msg.rx) != size or msg.tick <= self._tick:
            self.malformed += 1
            return None
        events = []
        for e in msg.events:
            try:
                kind = HwEvent(e.event)
            except ValueError:
                self.malformed += 1
                continue
            if e.channel and e.channel not in self._channels:
                self.malformed += 1
                continue
            events.append(ChannelEvent(channel=e.channel, event=kind, span=e.span, value=e.value))
            if e.channel == 0 and kind in (HwEvent.ALARM, HwEvent.NOALARM):
                self._alarms[e.span] = e.value if kind == HwEvent.ALARM else 0
        e1 = {s.span for s in inv.spans if s.kind == "e1"}
        for c in msg.counters:
            if c.span not in e1:
                self.malformed += 1
                continue
            self._counters[c.span] = {name: getattr(c, name) for name in _COUNTER_FIELDS}
        rx = np.frombuffer(msg.rx, dtype=np.uint8).reshape(len(inv.ports), inv.block)
        return TickIn(tick=msg.tick, rx=rx, events=events,
                      dframes=[(d.span, bytes(d.data)) for d in msg.dframes],
                      cas=[(c.channel, c.bits) for c in msg.cas if c.channel in self._channels])
