"""A small CTI client library: subscribe to ctid's events, notice every gap, recover.

    client = CtiClient(events_endpoint, requests_endpoint,
                       server_key=load_public_key("ctid.key"),
                       keypair=load_keypair("agent-1001.key_secret"))
    while True:
        for item in client.poll(timeout_ms=500):
            if isinstance(item, SnapshotTaken): ...          # state at item.seq
            elif item.name == "SystemStatus": ...            # item.lost events went missing
            else: ...                                        # a CSTA event, in seq order
    reply = client.request(cti_pb2.Request(hold_call=...))

Every event carries a global seq and ctid's epoch. The Stream (a state machine, no sockets)
follows them: a batch whose first seq is beyond the next expected one, or a heartbeat whose
seq is at or beyond it, is a gap. The client is told at once (a SystemStatus item with
`lost`), then the library asks for a Replay of the missing events while it buffers what
keeps arriving; if ctid no longer holds them all it takes a Snapshot instead and resumes
from the seq the snapshot reflects (the ZeroMQ guide's Clone pattern). A new epoch (ctid
restarted) always means a snapshot. Events reach the application in seq order, each once.
"""
from __future__ import annotations

import collections
import dataclasses
import enum
import itertools
import time

import zmq
from google.protobuf.message import DecodeError

from hotline_proto import cti_pb2

from .server import EVENTS_TOPIC, HEARTBEAT_TOPIC


@dataclasses.dataclass
class SnapshotTaken:
    """The state at `seq` (devices and calls the client's scope covers); events follow from seq+1."""
    seq: int
    epoch: str
    devices: list
    calls: list
    reason: str = ""          # "start", "gap" (events no longer retained), "epoch" (ctid restarted)


class State(enum.Enum):
    WAITING = "waiting"            # no baseline yet
    LIVE = "live"
    REPLAYING = "replaying"        # a Replay request is out
    SNAPSHOTTING = "snapshotting"  # a Snapshot request is out


# What the stream wants sent: ("replay", from_seq) or ("snapshot",).
Want = tuple


@dataclasses.dataclass
class Stats:
    gaps_detected: int = 0
    gaps_recovered: int = 0         # by replay or snapshot
    gaps_replayed: int = 0          # of which every missing event was delivered
    gaps_snapshot: int = 0          # of which a snapshot replaced what was missing
    gaps_unrecovered: int = 0       # ctid did not answer: the events are lost to this client
    messages_lost: int = 0          # missing from the live stream (reported in SystemStatus)
    messages_replayed: int = 0
    messages_skipped: int = 0       # covered by a snapshot instead of delivered
    epoch_changes: int = 0
    delivered: int = 0

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def _status(lost: int, reason: str, now: float, epoch: str, first: int = 0) -> cti_pb2.Event:
    """The SystemStatus item a client gets when it lost messages (seq 0: not from the stream)."""
    return cti_pb2.Event(name="SystemStatus", lost=lost, reason=reason, time=now, epoch=epoch,
                         data={"first_missing": str(first)} if first else {})


class Stream:
    """Sequence tracking and recovery for one subscription. Inputs: batches, heartbeats,
    replay and snapshot replies, the time. Outputs: items for the application and the one
    request (at most) that should be in flight."""

    def __init__(self, *, start: str = "live", replay_batch: int = 10_000,
                 request_timeout_s: float = 3.0, retries: int = 3, buffer_max: int = 500_000,
                 max_rounds: int = 20):
        if start not in ("live", "snapshot"):
            raise ValueError(f"start must be 'live' or 'snapshot', got {start!r}")
        self.start = start
        self.replay_batch = replay_batch
        self.request_timeout_s = request_timeout_s
        self.retries = retries
        self.buffer_max = buffer_max
        self.max_rounds = max_rounds
        self.state = State.WAITING
        self.epoch = ""
        self.expected = 0                # next seq to deliver
        self.buffer: collections.deque[list[cti_pb2.Event]] = collections.deque()
        self.buffered = 0
        self.want: Want | None = None    # the request in flight
        self.deadline = 0.0
        self.tries = 0
        self.rounds = 0                  # replays in this recovery
        self.recovery_used_snapshot = False
        self.snapshot_reason = ""
        self.stats = Stats()

    # ---- inputs -----------------------------------------------------------------------
    def begin(self, now: float) -> list[Want]:
        if self.start == "snapshot":
            return self._ask(("snapshot",), now, reason="start")
        return []

    def on_batch(self, events: list[cti_pb2.Event], now: float, out: list) -> list[Want]:
        if not events:
            return []
        epoch = events[0].epoch
        if self.state == State.WAITING and self.want is None:
            self.epoch, self.expected = epoch, events[0].seq
            self.state = State.LIVE
        if not self.epoch:
            self.epoch = epoch              # the first word from ctid while a snapshot is out
        if epoch != self.epoch:
            return self._epoch_changed(epoch, events, now, out)
        if self.state != State.LIVE:
            self._buffer(events)
            return []
        return self._take(events, now, out)

    def on_heartbeat(self, hb: cti_pb2.Event, now: float, out: list) -> list[Want]:
        if self.state == State.WAITING and self.want is None:
            self.epoch, self.expected, self.state = hb.epoch, hb.seq + 1, State.LIVE
            return []
        if not self.epoch:
            self.epoch = hb.epoch
        if hb.epoch != self.epoch:
            return self._epoch_changed(hb.epoch, [], now, out)
        if self.state == State.LIVE and hb.seq >= self.expected:
            return self._gap(hb.seq + 1 - self.expected, now, out)   # the tail went missing
        return []

    def on_reply(self, reply: cti_pb2.Reply, now: float, out: list) -> list[Want]:
        """The reply to the request in flight (the caller matched its id)."""
        want, self.want = self.want, None
        if want is None:
            return []
        if not reply.ok:
            self.want = want                   # try again after the timeout
            return []
        if reply.epoch and self.epoch and reply.epoch != self.epoch:
            self.buffer.clear()
            self.buffered = 0
            self.stats.epoch_changes += 1
            self.epoch = reply.epoch
            return self._ask(("snapshot",), now, reason="epoch")
        if want[0] == "snapshot":
            self.epoch = reply.epoch or self.epoch
            skipped = max(0, reply.seq + 1 - self.expected) if self.expected else 0
            self.stats.messages_skipped += skipped
            self.expected = reply.seq + 1
            out.append(SnapshotTaken(seq=reply.seq, epoch=reply.epoch, devices=list(reply.devices),
                                     calls=list(reply.calls), reason=self.snapshot_reason))
            self.recovery_used_snapshot = self.snapshot_reason == "gap"
            return self._drain(now, out)
        # replay
        if not reply.complete:
            self.recovery_used_snapshot = True
            return self._ask(("snapshot",), now, reason="gap")
        events = [e for e in reply.events if e.seq >= self.expected]
        if events and events[0].seq != self.expected:
            return self._ask(("snapshot",), now, reason="gap")   # not what was asked: start over
        if events:
            out.extend(events)
            self.stats.delivered += len(events)
            self.stats.messages_replayed += len(events)
            self.expected = events[-1].seq + 1
        if reply.more:
            return self._next_round(now)
        return self._drain(now, out)

    def on_time(self, now: float, out: list) -> list[Want]:
        """A request that got no answer in time is sent again; after `retries`, given up."""
        if self.want is None or now < self.deadline:
            return []
        if self.tries <= self.retries:
            self.tries += 1
            self.deadline = now + self.request_timeout_s
            return [self.want]
        # ctid does not answer: carry on with what arrives, the gap stays a gap.
        self.want = None
        self.stats.gaps_unrecovered += 1
        first = self.buffer[0][0].seq if self.buffer else 0
        lost = max(0, first - self.expected) if first else 0
        out.append(_status(lost, "recoveryFailed", now, self.epoch, self.expected))
        if self.buffer:
            self.expected = first
            self.state = State.LIVE
            return self._drain(now, out, counted=True)
        self.state = State.LIVE if self.expected else State.WAITING
        return []

    # ---- internals --------------------------------------------------------------------
    def _take(self, events: list[cti_pb2.Event], now: float, out: list) -> list[Want]:
        first, last = events[0].seq, events[-1].seq
        e = self.expected
        if last < e:
            return []                                   # already delivered
        if first > e:
            self._buffer(events)
            return self._gap(first - e, now, out)
        if first < e:
            events = events[e - first:]
        out.extend(events)
        self.stats.delivered += len(events)
        self.expected = last + 1
        return []

    def _gap(self, lost: int, now: float, out: list) -> list[Want]:
        self.stats.gaps_detected += 1
        self.stats.messages_lost += lost
        out.append(_status(lost, "messagesLost", now, self.epoch, self.expected))
        self.rounds = 0
        self.recovery_used_snapshot = False
        return self._ask(("replay", self.expected), now)

    def _next_round(self, now: float) -> list[Want]:
        self.rounds += 1
        if self.rounds > self.max_rounds:           # cannot catch up by replay: take a snapshot
            return self._ask(("snapshot",), now, reason="gap")
        return self._ask(("replay", self.expected), now)

    def _ask(self, want: Want, now: float, reason: str = "") -> list[Want]:
        self.want = want
        self.deadline = now + self.request_timeout_s
        self.tries = 1
        if want[0] == "snapshot":
            self.state = State.SNAPSHOTTING
            self.snapshot_reason = reason
        else:
            self.state = State.REPLAYING
        return [want]

    def _buffer(self, events: list[cti_pb2.Event]) -> None:
        if self.buffered + len(events) > self.buffer_max:
            return          # dropped here, asked for again by replay after the buffer drains
        self.buffer.append(events)
        self.buffered += len(events)

    def _drain(self, now: float, out: list, counted: bool = False) -> list[Want]:
        """Deliver what was buffered during recovery; a hole in it means another round."""
        while self.buffer:
            events = self.buffer[0]
            if events[-1].seq < self.expected:
                self.buffer.popleft()
                self.buffered -= len(events)
                continue
            if events[0].seq > self.expected:
                if counted:
                    return self._gap(events[0].seq - self.expected, now, out)
                return self._next_round(now)
            self.buffer.popleft()
            self.buffered -= len(events)
            events = events[self.expected - events[0].seq:]
            out.extend(events)
            self.stats.delivered += len(events)
            self.expected = events[-1].seq + 1
        was_recovering = self.state in (State.REPLAYING, State.SNAPSHOTTING)
        self.state = State.LIVE
        if was_recovering and not counted and self.snapshot_reason != "start" \
                and self.snapshot_reason != "epoch":
            self.stats.gaps_recovered += 1
            if self.recovery_used_snapshot:
                self.stats.gaps_snapshot += 1
            else:
                self.stats.gaps_replayed += 1
        self.snapshot_reason = ""
        return []

    def _epoch_changed(self, epoch: str, events: list, now: float, out: list) -> list[Want]:
        self.stats.epoch_changes += 1
        out.append(_status(0, "epochChanged", now, epoch))
        self.epoch = epoch
        self.buffer.clear()
        self.buffered = 0
        self.expected = 0
        if events:
            self._buffer(events)
        return self._ask(("snapshot",), now, reason="epoch")


class RequestTimeout(Exception):
    pass


class CtiClient:
    """The sockets around a Stream: SUB for events, DEALER for requests (CURVE when keys
    are given). poll() returns items in order; request() is a blocking call."""

    def __init__(self, events: str, requests: str, *, server_key: bytes | None = None,
                 keypair: tuple[bytes, bytes] | None = None, ctx: zmq.Context | None = None,
                 start: str = "live", rcvhwm: int = 2_000, request_timeout_s: float = 3.0,
                 replay_batch: int = 10_000, clock=time.monotonic, wall=time.time):
        self.ctx = ctx or zmq.Context.instance()
        self.clock = clock
        self.wall = wall
        self.stream = Stream(start=start, replay_batch=replay_batch,
                             request_timeout_s=request_timeout_s)
        self.sub = self.ctx.socket(zmq.SUB)
        self.dealer = self.ctx.socket(zmq.DEALER)
        for sock in (self.sub, self.dealer):
            sock.setsockopt(zmq.LINGER, 0)
            if server_key is not None:
                if keypair is None:
                    raise ValueError("CURVE needs the client's key pair as well as the server's key")
                sock.setsockopt(zmq.CURVE_SERVERKEY, server_key)
                sock.setsockopt(zmq.CURVE_PUBLICKEY, keypair[0])
                sock.setsockopt(zmq.CURVE_SECRETKEY, keypair[1])
        self.sub.setsockopt(zmq.RCVHWM, rcvhwm)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"")
        self.sub.connect(events)
        self.dealer.connect(requests)
        self._ids = itertools.count(1)
        self._pending_id = 0            # the stream's recovery request in flight
        self._stash: dict[int, cti_pb2.Reply] = {}
        self._awaited: set[int] = set()      # ids whose replies are still wanted
        self._poller = zmq.Poller()
        self._poller.register(self.sub, zmq.POLLIN)
        self._poller.register(self.dealer, zmq.POLLIN)
        self.malformed = 0
        self.last_heartbeat = 0.0
        self._begun = False

    @classmethod
    def from_files(cls, events: str, requests: str, server_public_file: str,
                   client_secret_file: str, **kw) -> "CtiClient":
        from .auth import load_keypair, load_public_key
        return cls(events, requests, server_key=load_public_key(server_public_file),
                   keypair=load_keypair(client_secret_file), **kw)

    @property
    def stats(self) -> Stats:
        return self.stream.stats

    # ---- requests ---------------------------------------------------------------------
    def send(self, req: cti_pb2.Request) -> int:
        if not req.id:
            req.id = next(self._ids)
        self._awaited.add(req.id)
        self.dealer.send(req.SerializeToString())
        return req.id

    def request(self, req: cti_pb2.Request, timeout_s: float = 5.0) -> cti_pb2.Reply:
        """Send and wait for the matching reply (events keep queueing meanwhile)."""
        rid = self.send(req)
        deadline = self.clock() + timeout_s
        while True:
            if rid in self._stash:
                self._awaited.discard(rid)
                return self._stash.pop(rid)
            left = deadline - self.clock()
            if left <= 0 or not self.dealer.poll(int(left * 1000) + 1):
                if self.clock() >= deadline:
                    self._awaited.discard(rid)       # a late reply is dropped, not kept
                    raise RequestTimeout(f"no reply to request {rid} within {timeout_s:g} s")
                continue
            self._read_replies()

    def take_reply(self, rid: int) -> cti_pb2.Reply | None:
        """The reply to a request sent with send(), if it has come (never waits)."""
        self._read_replies()
        reply = self._stash.pop(rid, None)
        if reply is not None:
            self._awaited.discard(rid)
        return reply

    def _read_replies(self) -> None:
        while True:
            try:
                data = self.dealer.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            reply = cti_pb2.Reply()
            try:
                reply.ParseFromString(data)
            except (DecodeError, ValueError):
                self.malformed += 1
                continue
            if reply.id in self._awaited:
                self._stash[reply.id] = reply

    def _send_wants(self, wants: list[Want]) -> None:
        for want in wants:
            if want[0] == "replay":
                req = cti_pb2.Request(replay=cti_pb2.Replay(
                    from_seq=want[1], max_events=self.stream.replay_batch, all_or_nothing=True))
            else:
                req = cti_pb2.Request(snapshot=cti_pb2.Snapshot())
            self._stash.pop(self._pending_id, None)
            self._awaited.discard(self._pending_id)  # superseded: its reply no longer matters
            self._pending_id = self.send(req)

    # ---- events -----------------------------------------------------------------------
    def poll(self, timeout_ms: int = 100, max_messages: int = 1000) -> list:
        """Items (events, SystemStatus reports, SnapshotTaken) in order; [] after timeout_ms."""
        out: list = []
        stream = self.stream
        if not self._begun:
            self._begun = True
            self._send_wants(stream.begin(self.clock()))
        deadline = self.clock() + timeout_ms / 1000
        sub, dealer = self.sub, self.dealer
        # Plain ints: flag enums cost a Python call per test.
        POLLIN, EVENTS, NOBLOCK, Again = int(zmq.POLLIN), int(zmq.EVENTS), int(zmq.NOBLOCK), zmq.Again
        while True:
            now = self.clock()
            # Replies matter only while one is awaited (the others are dropped when read).
            if self._awaited and dealer.get(EVENTS) & POLLIN:
                self._read_replies()
            if self._pending_id in self._stash:
                reply = self._stash.pop(self._pending_id)
                self._awaited.discard(self._pending_id)
                self._pending_id = 0
                self._send_wants(stream.on_reply(reply, now, out))
            n = 0
            while n < max_messages:
                # recv until Again (once per wake-up), not getsockopt(EVENTS) per message:
                # each EVENTS query makes libzmq process its command mailbox in full.
                try:
                    frames = sub.recv_multipart(NOBLOCK)
                except Again:
                    break
                n += 1
                if len(frames) != 2:
                    self.malformed += 1
                    continue
                topic, data = frames
                if topic == EVENTS_TOPIC:
                    batch = cti_pb2.EventBatch()
                    try:
                        batch.ParseFromString(data)
                    except (DecodeError, ValueError):
                        self.malformed += 1
                        continue
                    wants = stream.on_batch(batch.events, now, out)
                    if wants:
                        self._send_wants(wants)
                elif topic == HEARTBEAT_TOPIC:
                    hb = cti_pb2.Event()
                    try:
                        hb.ParseFromString(data)
                    except (DecodeError, ValueError):
                        self.malformed += 1
                        continue
                    self.last_heartbeat = now
                    self._send_wants(stream.on_heartbeat(hb, now, out))
            self._send_wants(stream.on_time(now, out))
            if out:
                return out
            left = deadline - self.clock()
            if left <= 0:
                return out
            self._poller.poll(max(1, int(left * 1000)))

    def close(self) -> None:
        self.sub.close(linger=0)
        self.dealer.close(linger=0)
