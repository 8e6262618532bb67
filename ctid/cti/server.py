"""ctid's CTI server: events out on a PUB socket, requests in on a ROUTER socket.

Events: each gets the next global seq and the run's epoch, is retained for Replay, and goes
out in a batch (one ZeroMQ message for all events published together; topic frame
"events"). Once a second a Heartbeat event (topic "heartbeat") carries the last seq, so a
client that lost the tail of the stream notices. PUB never blocks: a subscriber that falls
behind its high-water mark loses whole batches, sees the gap in seq and recovers by Replay
or Snapshot (docs/cti.md).

Requests: one Reply per Request. A message that is not a Request, is too large or has no
request in it gets an error reply and is counted; a request the client's role or scope does
not allow gets an error reply and an audit record. Snapshot, SystemStatus and Replay are
answered here; everything else goes to the Service (the call model in ctid).
"""
from __future__ import annotations

import dataclasses
import logging
import os
import time
import uuid
from typing import Protocol

import zmq
from google.protobuf.message import DecodeError
from zmq.utils.monitor import parse_monitor_message

from ctid.model.callmodel import RequestError
from hotline_proto import cti_pb2

from .auth import ANONYMOUS, AuditLog, Authorizer, Client, KeyStore, Refused, ZapHandler, load_keypair
from .retention import BATCH_TAG, REPLY_EVENTS_TAG, Retention, join_pieces, piece

log = logging.getLogger("ctid.cti")

EVENTS_TOPIC = b"events"
HEARTBEAT_TOPIC = b"heartbeat"
BEHIND_WINDOW_S = 10.0


class Service(Protocol):
    """What the server needs from the rest of ctid (the call model, or a benchmark's source)."""

    def handle(self, req: cti_pb2.Request, now: float) -> tuple[cti_pb2.Reply, list[cti_pb2.Event]]:
        """Carry out a request; raise RequestError with a clear reason to refuse it."""

    def snapshot(self) -> tuple[list[cti_pb2.Device], list[cti_pb2.Call]]: ...

    def call_devices(self, call_id: str) -> list[str] | None: ...

    def status(self) -> dict[str, str]: ...

    # Optional: agent_queues(agent_id) -> the queues the agent is a member of (() without
    # an ACD); a key scoped by queues then covers their members (Authorizer). And
    # agent_phones() -> {agent id: its extension devices}: such a key's Snapshot shows them.


@dataclasses.dataclass
class CtiSettings:
    events: str = "ipc://run/ctid-events.sock"
    requests: str = "ipc://run/ctid-requests.sock"
    retain: int = 100_000
    heartbeat_s: float = 1.0
    sndhwm: int = 2_000                  # batches queued per subscriber before it loses some
    max_request_bytes: int = 64 * 1024   # larger: error reply; over 1 MiB: peer disconnected
    replay_max_events: int = 10_000      # per reply; the client asks again for more
    batch_max_events: int = 2_000
    server_key: str | None = None        # NAME.key_secret; None: CURVE off (loud warning)
    keys: str | None = None              # the clients' keys file (TOML)
    audit_file: str | None = None


def new_epoch() -> str:
    return f"{int(time.time()):x}-{uuid.uuid4().hex[:8]}"


def _ensure_ipc_dir(endpoint: str) -> None:
    if endpoint.startswith("ipc://"):
        directory = os.path.dirname(endpoint[len("ipc://"):])
        if directory:
            os.makedirs(directory, exist_ok=True)


class CtiServer:
    def __init__(self, ctx: zmq.Context, settings: CtiSettings, service: Service, *,
                 metrics=None, audit: AuditLog | None = None, epoch: str | None = None,
                 clock=time.time):
        self.ctx = ctx
        self.settings = settings
        self.service = service
        self.metrics = metrics
        self.audit = audit or AuditLog(settings.audit_file)
        self.epoch = epoch or new_epoch()
        self.clock = clock
        self.seq = 0
        self.retention = Retention(settings.retain)
        self.authorizer = Authorizer(service.call_devices, getattr(service, "agent_queues", None),
                                     getattr(service, "agent_phones", None))
        self.keys: KeyStore | None = None
        self.zap: ZapHandler | None = None
        self.curve = False
        self.started = clock()
        self.next_heartbeat = 0.0
        self.event_counts: dict[str, int] = {}
        self.published = 0
        self.rejected: dict[str, int] = {}
        self.refusals = 0
        self.connections = {"events": 0, "requests": 0}
        self._behind: dict[str, float] = {}
        self._replay_next: dict[str, int] = {}
        self.pub = self.router = None
        self._monitors: dict[zmq.Socket, str] = {}

    # ---- sockets --------------------------------------------------------------------------
    def open(self) -> "CtiServer":
        s = self.settings
        server_public = server_secret = None
        if s.server_key:
            server_public, server_secret = load_keypair(s.server_key)
            if not s.keys:
                raise ValueError("[cti] server_key is set but keys (the clients' keys file) is "
                                 "not: no client could connect")
            self.keys = KeyStore.load(s.keys)
            self.zap = ZapHandler(self.ctx, self.keys, self.audit,
                                  on_refused=lambda what: self._count_refused("connect")).start()
            self.curve = True
        else:
            log.warning("CTI SECURITY IS OFF: no [cti] server_key configured. Any local process "
                        "can subscribe; every client is an anonymous observer (read only).")
        self.pub = self.ctx.socket(zmq.PUB)
        self.router = self.ctx.socket(zmq.ROUTER)
        for sock in (self.pub, self.router):
            sock.setsockopt(zmq.LINGER, 0)
            if self.curve:
                sock.setsockopt(zmq.CURVE_SERVER, 1)
                sock.setsockopt(zmq.CURVE_SECRETKEY, server_secret)
                sock.setsockopt(zmq.CURVE_PUBLICKEY, server_public)
                sock.setsockopt(zmq.ZAP_DOMAIN, b"hotline-cti")
        self.pub.setsockopt(zmq.SNDHWM, s.sndhwm)
        self.router.setsockopt(zmq.MAXMSGSIZE, 1 << 20)
        self.router.setsockopt(zmq.ROUTER_MANDATORY, 0)
        self.router.setsockopt(zmq.SNDHWM, 1000)
        for sock, name in ((self.pub, "events"), (self.router, "requests")):
            mon = sock.get_monitor_socket(zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED)
            self._monitors[mon] = name
        _ensure_ipc_dir(s.events)
        _ensure_ipc_dir(s.requests)
        self.pub.bind(s.events)
        self.router.bind(s.requests)
        self.next_heartbeat = self.clock() + s.heartbeat_s
        return self

    @property
    def sockets(self) -> list[zmq.Socket]:
        """Sockets to poll for input; call process() when any is readable."""
        return [self.router, *self._monitors]

    def reload_keys(self) -> None:
        if self.settings.keys and self.zap is not None:
            self.keys = KeyStore.load(self.settings.keys)
            self.zap.reload(self.keys)
            log.info("CTI keys reloaded: %d clients", len(self.keys))

    def close(self) -> None:
        # Stop monitoring while the monitor sockets are still open: libzmq sends them a
        # MONITOR_STOPPED event, and with its peer already closed that send can block forever.
        for sock in (self.pub, self.router):
            if sock is not None:
                try:
                    sock.disable_monitor()
                except zmq.ZMQError:
                    pass
        for mon in self._monitors:
            mon.close(linger=0)
        self._monitors.clear()
        for sock in (self.pub, self.router):
            if sock is not None:
                sock.close(linger=0)
        if self.zap is not None:
            self.zap.stop()
        self.audit.close()

    # ---- events ---------------------------------------------------------------------------
    def publish(self, events: list[cti_pb2.Event], now: float | None = None) -> None:
        """Give each event its seq and the epoch, retain it, send it (batched)."""
        if not events:
            return
        now = self.clock() if now is None else now
        counts = self.event_counts
        epoch = self.epoch
        limit = self.settings.batch_max_events
        for start in range(0, len(events), limit):
            chunk = events[start:start + limit]
            pieces = []
            first = self.seq + 1
            seq = self.seq
            for e in chunk:
                seq += 1
                e.seq = seq
                e.epoch = epoch
                if not e.time:
                    e.time = now
                pieces.append(piece(e.SerializeToString()))
                counts[e.name] = counts.get(e.name, 0) + 1
            self.seq = seq
            self.retention.extend(first, pieces)
            self.pub.send_multipart([EVENTS_TOPIC, join_pieces(BATCH_TAG, pieces)], copy=False)
        self.published += len(events)

    def heartbeat(self, now: float) -> None:
        hb = cti_pb2.Event(seq=self.seq, epoch=self.epoch, time=now, name="Heartbeat")
        self.pub.send_multipart([HEARTBEAT_TOPIC, hb.SerializeToString()])

    def process(self, now: float | None = None, limit: int = 256) -> int:
        """Non-blocking: answer waiting requests, track connections, send a due heartbeat."""
        now = self.clock() if now is None else now
        for mon, name in self._monitors.items():
            while True:
                try:
                    msg = parse_monitor_message(mon.recv_multipart(zmq.NOBLOCK))
                except zmq.Again:
                    break
                if msg["event"] == zmq.EVENT_ACCEPTED:
                    self.connections[name] += 1
                elif msg["event"] == zmq.EVENT_DISCONNECTED:
                    self.connections[name] = max(0, self.connections[name] - 1)
        handled = self.handle_requests(now, limit)
        if now >= self.next_heartbeat:
            self.heartbeat(now)
            self.next_heartbeat = now + self.settings.heartbeat_s
            self._flush_metrics(now)
        return handled

    def _flush_metrics(self, now: float) -> None:
        if self.metrics is None:
            return
        m = self.metrics
        m.flush_events(self.event_counts)
        m.last_seq.set(self.seq)
        for name, n in self.connections.items():
            m.cti_clients.labels(name).set(n)
        m.clients_behind.set(self.clients_behind(now))

    def clients_behind(self, now: float) -> int:
        self._behind = {c: t for c, t in self._behind.items() if now - t < BEHIND_WINDOW_S}
        self._replay_next = {c: n for c, n in self._replay_next.items() if c in self._behind}
        return len(self._behind)

    # ---- requests -------------------------------------------------------------------------
    def handle_requests(self, now: float, limit: int = 256) -> int:
        n = 0
        for _ in range(limit):
            try:
                frames = self.router.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            n += 1
            self._one(frames, now)
        return n

    def _reject(self, route: list[bytes], reason: str, error: str, req_id: int = 0) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1
        if self.metrics is not None:
            self.metrics.rejected.labels(reason).inc()
        self._send(route, cti_pb2.Reply(id=req_id, ok=False, error=error))

    def _send(self, route: list[bytes], reply: cti_pb2.Reply, tail: bytes = b"") -> None:
        try:
            self.router.send_multipart(route + [reply.SerializeToString() + tail], zmq.NOBLOCK)
        except zmq.ZMQError:
            pass        # the client went away or stopped reading; nothing to tell it

    def _client(self, frame: zmq.Frame) -> Client | None:
        if not self.curve:
            return ANONYMOUS
        try:
            user = frame.get("User-Id")
        except zmq.ZMQError:
            return None
        return self.keys.by_name.get(user) if self.keys is not None else None

    def _one(self, frames: list[zmq.Frame], now: float) -> None:
        started = time.perf_counter()
        # DEALER: [identity, payload]; REQ: [identity, b"", payload]
        if len(frames) == 2:
            route, payload = [frames[0].bytes], frames[1]
        elif len(frames) == 3 and len(frames[1].bytes) == 0:
            route, payload = [frames[0].bytes, b""], frames[2]
        else:
            self._reject([frames[0].bytes], "framing",
                         f"expected one payload frame, got {len(frames) - 1}")
            return
        client = self._client(payload)
        if client is None:
            self._reject(route, "unauthenticated", "client key no longer listed")
            return
        data = payload.bytes
        if len(data) > self.settings.max_request_bytes:
            self._reject(route, "oversized", f"request of {len(data)} bytes exceeds "
                                             f"{self.settings.max_request_bytes}")
            return
        req = cti_pb2.Request()
        try:
            req.ParseFromString(data)
        except (DecodeError, ValueError) as e:
            self._reject(route, "malformed", f"malformed request: {e}")
            return
        kind = req.WhichOneof("kind")
        if kind is None:
            self._reject(route, "empty", "unknown or empty request", req.id)
            return
        result, reply, tail = "ok", None, b""
        try:
            self.authorizer.check(client, req)
            if kind == "snapshot":
                reply = self._snapshot(client)
            elif kind == "system_status":
                reply = self._system_status(client, now)
            elif kind == "replay":
                reply, tail = self._replay(client, route, req.replay, now)
            else:
                reply = self._service(client, req, kind, now)
        except Refused as e:
            result = "refused"
            self._count_refused("request")
            self.audit.record(client.name, client.role, kind, False, str(e), when=now)
            reply = cti_pb2.Reply(ok=False, error=f"refused: {e}")
        except RequestError as e:
            result = "error"
            reply = cti_pb2.Reply(ok=False, error=str(e))
        except Exception as e:      # a fault in the model must not take ctid down
            result = "fault"
            log.exception("CTI request %s from %s failed", kind, client.name)
            reply = cti_pb2.Reply(ok=False, error=f"internal error handling {kind}: "
                                                   f"{type(e).__name__}")
        reply.id = req.id
        if not reply.epoch:
            reply.epoch = self.epoch
        if not reply.seq:
            reply.seq = self.seq
        self._send(route, reply, tail)
        if self.metrics is not None:
            self.metrics.requests.labels(kind, result).inc()
            self.metrics.request_seconds.labels(kind).observe(time.perf_counter() - started)

    def _count_refused(self, what: str) -> None:
        self.refusals += 1
        if self.metrics is not None:
            self.metrics.refused.labels(what).inc()

    def _service(self, client: Client, req: cti_pb2.Request, kind: str, now: float) -> cti_pb2.Reply:
        changes = self.authorizer.changes(req)
        try:
            reply, events = self.service.handle(req, now)
        except RequestError as e:
            if changes:
                self.audit.record(client.name, client.role, kind, True, f"failed: {e}", when=now)
            raise
        self.publish(events, now)
        if changes:
            self.audit.record(client.name, client.role, kind, True, "", when=now)
        return reply

    def _snapshot(self, client: Client) -> cti_pb2.Reply:
        devices, calls = self.service.snapshot()
        devices, calls = self.authorizer.filter_snapshot(client, devices, calls)
        return cti_pb2.Reply(ok=True, seq=self.seq, epoch=self.epoch, devices=devices, calls=calls)

    def _system_status(self, client: Client, now: float) -> cti_pb2.Reply:
        status = {"epoch": self.epoch, "seq": str(self.seq),
                  "first_retained": str(self.retention.first_seq),
                  "retained": str(len(self.retention)),
                  "uptime_s": f"{now - self.started:.0f}",
                  "events_published": str(self.published),
                  "subscribers": str(self.connections["events"]),
                  "request_connections": str(self.connections["requests"]),
                  "clients_behind": str(self.clients_behind(now)),
                  "rejected_messages": str(sum(self.rejected.values())),
                  "refused": str(self.refusals),
                  "security": "curve" if self.curve else "off",
                  "client": client.name, "role": client.role}
        status.update(self.service.status())
        return cti_pb2.Reply(ok=True, status=status)

    def _replay(self, client: Client, route: list[bytes], r: cti_pb2.Replay,
                now: float) -> tuple[cti_pb2.Reply, bytes]:
        limit = min(r.max_events or self.settings.replay_max_events, self.settings.replay_max_events)
        res = self.retention.replay(r.from_seq, limit, r.all_or_nothing)
        who = f"{client.name}/{route[0].hex()}"
        if res.lost:
            self._behind[who] = now
            if self._replay_next.get(who) != r.from_seq and self.metrics is not None:
                self.metrics.messages_lost.inc(res.lost)     # a new recovery, not a continuation
            if self.metrics is not None:
                self.metrics.replays.labels("complete" if res.complete else "incomplete").inc()
        self._replay_next[who] = res.first_seq + len(res.pieces) if res.pieces else 0
        reply = cti_pb2.Reply(ok=True, seq=res.last_seq, epoch=self.epoch,
                              first_retained=res.first_retained, lost=res.lost,
                              complete=res.complete, more=res.more)
        return reply, join_pieces(REPLY_EVENTS_TAG, res.pieces)


def serve(server: CtiServer, stop, poll_ms: int = 20, tasks=None) -> None:
    """Run a server on its own until stop (a threading.Event) is set: tests and tools.
    `tasks` (a queue.Queue of callables taking the server) run in this loop, since a
    ZeroMQ socket belongs to one thread."""
    import queue
    poller = zmq.Poller()
    for sock in server.sockets:
        poller.register(sock, zmq.POLLIN)
    while not stop.is_set():
        poller.poll(poll_ms)
        while tasks is not None:
            try:
                task = tasks.get_nowait()
            except queue.Empty:
                break
            task(server)
        server.process()
