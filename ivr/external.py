"""The external IVR interface over ZeroMQ (messages in proto/hotline/ivr.proto).

A flow's `external` node hands the call to an outside program (an "application"): the
session emits ExternalStart, then forwards keys and prompt ends; the application answers
with commands (play, collect, set, transfer, queue, hangup, return). `ExternalBridge`
is ctid's side: one DEALER per application endpoint (connected at start), never
blocking. A message that finds no connected application waits in a backlog for a short
grace (a connection being made); after it the session is told the application is
unreachable and takes its fallback at once. A connected application that stays silent
is caught by the node's timeout.
`ExternalApp` is a small helper for writing applications: a ROUTER bound to an endpoint.
"""
from __future__ import annotations

import collections
import logging
import time
from typing import Iterable

import zmq

from hotline_proto import ivr_pb2

from .interpreter import ExternalSend, ExternalStart

log = logging.getLogger(__name__)
MAX_MESSAGE = 64 * 1024


class ExternalError(ValueError):
    pass


# ---- conversions ------------------------------------------------------------------------
def _prompts_to_dicts(prompts) -> list[dict]:
    return [{"text": p.text, "file": p.file, "lang": p.lang} for p in prompts]


def command_from_pb(msg: ivr_pb2.FromApp) -> dict:
    """An application's command as the dict IvrSession.on_external takes."""
    kind = msg.WhichOneof("kind")
    if kind == "play":
        return {"kind": "play", "prompts": _prompts_to_dicts(msg.play.prompts),
                "barge_in": msg.play.barge_in}
    if kind == "collect":
        c = msg.collect
        return {"kind": "collect", "prompts": _prompts_to_dicts(c.prompts),
                "min": c.min, "max": c.max or 20, "terminator": c.terminator,
                "timeout": c.timeout_s or 5.0, "inter_digit_timeout": c.inter_digit_s or 3.0,
                "barge_in": c.barge_in}
    if kind == "set":
        return {"kind": "set", "vars": dict(msg.set.vars)}
    if kind == "transfer":
        return {"kind": "transfer", "to": msg.transfer.to}
    if kind == "queue":
        return {"kind": "queue", "queue": msg.queue.queue, "priority": msg.queue.priority}
    if kind == "hangup":
        return {"kind": "hangup", "cause": msg.hangup.cause or 16}
    if kind == "ret":
        return {"kind": "return", "vars": dict(msg.ret.vars)}
    return {"kind": repr(kind)}


def event_to_pb(session: str, seq: int, app: str, event: dict) -> ivr_pb2.ToApp:
    """A session's ExternalSend event (or ExternalStart info) as a ToApp message."""
    m = ivr_pb2.ToApp(session=session, seq=seq, app=app)
    kind = event.get("kind")
    if kind == "start":
        info = event["info"]
        m.start.CopyFrom(ivr_pb2.Start(
            call_id=info.get("call_id", ""), ani=info.get("ani", ""), dnis=info.get("dnis", ""),
            flow=info.get("flow", ""), node=info.get("node", ""), lang=info.get("lang", ""),
            trail=info.get("trail", ""), vars={str(k): str(v) for k, v in info.get("vars", {}).items()}))
    elif kind == "digit":
        m.digit.digit = event["digit"]
    elif kind == "prompt_done":
        m.prompt_done.CopyFrom(ivr_pb2.PromptFinished(interrupted=bool(event.get("interrupted")),
                                                      digit=event.get("digit", "")))
    elif kind == "collected":
        m.collected.CopyFrom(ivr_pb2.Collected(digits=event["digits"], reason=event["reason"]))
    elif kind == "hangup":
        m.ended.reason = event.get("reason", "hangup")
    elif kind == "ok":
        m.ack.SetInParent()
    elif kind == "error":
        m.error.error = event["error"]
    else:
        raise ExternalError(f"no message for event kind {kind!r}")
    return m


# ---- ctid's side ----------------------------------------------------------------------------
class ExternalBridge:
    """Sends sessions' events to applications and collects their commands.

    endpoints: application name -> endpoint (e.g. "tcp://127.0.0.1:5600")."""

    def __init__(self, endpoints: dict[str, str], context: zmq.Context | None = None,
                 hwm: int = 1000, connect_grace_s: float = 1.0,
                 clock=time.monotonic):
        self.endpoints = dict(endpoints)
        self._ctx = context or zmq.Context.instance()
        self._hwm = hwm
        self._grace = connect_grace_s
        self._clock = clock
        self._sockets: dict[str, zmq.Socket] = {}
        self._poller = zmq.Poller()
        self._seq: dict[str, int] = collections.Counter()
        self._backlog: collections.deque = collections.deque()   # (deadline, app, session, bytes)
        self.stats = collections.Counter()
        for app in self.endpoints:
            self._socket(app)                    # start connecting before the first call

    def _socket(self, app: str) -> zmq.Socket:
        s = self._sockets.get(app)
        if s is None:
            endpoint = self.endpoints.get(app)
            if endpoint is None:
                raise ExternalError(f"no endpoint configured for external IVR application {app!r}")
            s = self._ctx.socket(zmq.DEALER)
            s.setsockopt(zmq.LINGER, 0)
            s.setsockopt(zmq.SNDHWM, self._hwm)
            s.setsockopt(zmq.IMMEDIATE, 1)       # no peer: send fails now, not after a timeout
            s.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE)
            s.connect(endpoint)
            self._sockets[app] = s
            self._poller.register(s, zmq.POLLIN)
        return s

    def send(self, action: ExternalStart | ExternalSend) -> bool:
        """Pass one session action on. False when the application has no endpoint; an
        application not connected yet is retried until the grace runs out (then `poll`
        reports the session as unreachable)."""
        if isinstance(action, ExternalStart):
            event = {"kind": "start", "info": action.info}
        else:
            event = action.event
        try:
            sock = self._socket(action.app)
        except ExternalError as e:
            self.stats["unreachable"] += 1
            log.warning("external IVR %s: %s", action.session, e)
            return False
        self._seq[action.session] += 1
        msg = event_to_pb(action.session, self._seq[action.session], action.app, event)
        if event.get("kind") == "hangup":
            self._seq.pop(action.session, None)
        data = msg.SerializeToString()
        if any(b[1] == action.app for b in self._backlog):
            self._backlog.append((self._clock() + self._grace, action.app, action.session, data))
            return True                          # keep the order behind what waits
        try:
            sock.send(data, zmq.NOBLOCK)
        except zmq.Again:
            self._backlog.append((self._clock() + self._grace, action.app, action.session, data))
            return True
        self.stats["sent"] += 1
        return True

    def backlog(self) -> int:
        """Messages waiting for a connection."""
        return len(self._backlog)

    def flush(self) -> list[tuple[str, dict]]:
        """Retry waiting messages; [(session, {"kind": "unreachable"})] for those whose
        grace ran out (`poll` does this too)."""
        return self._retry_backlog() if self._backlog else []

    def _retry_backlog(self) -> list[tuple[str, dict]]:
        out, keep, blocked = [], collections.deque(), set()
        now = self._clock()
        for deadline, app, session, data in self._backlog:
            if app not in blocked:
                try:
                    self._sockets[app].send(data, zmq.NOBLOCK)
                    self.stats["sent"] += 1
                    continue
                except zmq.Again:
                    pass
            if now >= deadline:
                self.stats["unreachable"] += 1
                log.warning("external IVR %s: application %s unreachable", session, app)
                if all(o[0] != session for o in out):
                    out.append((session, {"kind": "unreachable"}))
                continue
            blocked.add(app)
            keep.append((deadline, app, session, data))
        self._backlog = keep
        return out

    def poll(self, timeout_ms: int = 0) -> list[tuple[str, dict]]:
        """Commands that arrived: [(session, command dict)]. Malformed ones are dropped and
        counted (an application cannot crash ctid)."""
        out = self.flush()
        if not self._sockets:
            return out
        ready = dict(self._poller.poll(timeout_ms))
        for app, s in self._sockets.items():
            if s not in ready:
                continue
            while True:
                try:
                    data = s.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                msg = ivr_pb2.FromApp()
                try:
                    msg.ParseFromString(data)
                except Exception:
                    self.stats["malformed"] += 1
                    log.warning("external IVR app %s sent a malformed message", app)
                    continue
                if not msg.session or msg.WhichOneof("kind") is None:
                    self.stats["malformed"] += 1
                    continue
                self.stats["received"] += 1
                out.append((msg.session, command_from_pb(msg)))
        return out

    def close(self) -> None:
        for s in self._sockets.values():
            s.close(0)
        self._sockets.clear()


# ---- the application's side ------------------------------------------------------------------
class ExternalApp:
    """A ROUTER for an external IVR program: `recv()` the next message from any ctid,
    answer with `play/collect/set/transfer/queue/hangup/ret`."""

    def __init__(self, endpoint: str, context: zmq.Context | None = None):
        self._ctx = context or zmq.Context.instance()
        self.sock = self._ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind(endpoint)
        self.endpoint = self.sock.getsockopt(zmq.LAST_ENDPOINT).decode()
        self._peers: dict[str, bytes] = {}
        self._seq: dict[str, int] = collections.Counter()

    def recv(self, timeout_ms: int = 1000) -> ivr_pb2.ToApp | None:
        if not self.sock.poll(timeout_ms):
            return None
        peer, data = self.sock.recv_multipart()
        msg = ivr_pb2.ToApp()
        msg.ParseFromString(data)
        self._peers[msg.session] = peer
        return msg

    def _send(self, session: str, **kind) -> None:
        if session not in self._peers:
            raise ExternalError(f"unknown session {session!r}")
        self._seq[session] += 1
        msg = ivr_pb2.FromApp(session=session, seq=self._seq[session], **kind)
        self.sock.send_multipart([self._peers[session], msg.SerializeToString()])

    @staticmethod
    def _prompts(prompts: Iterable) -> list[ivr_pb2.Prompt]:
        out = []
        for p in prompts:
            out.append(ivr_pb2.Prompt(text=p) if isinstance(p, str) else ivr_pb2.Prompt(**p))
        return out

    def play(self, session: str, prompts, barge_in: bool = False) -> None:
        self._send(session, play=ivr_pb2.Play(prompts=self._prompts(prompts), barge_in=barge_in))

    def collect(self, session: str, prompts=(), min: int = 1, max: int = 20,
                terminator: str = "#", timeout_s: float = 5.0, inter_digit_s: float = 3.0,
                barge_in: bool = True) -> None:
        self._send(session, collect=ivr_pb2.Collect(
            prompts=self._prompts(prompts), min=min, max=max, terminator=terminator,
            timeout_s=timeout_s, inter_digit_s=inter_digit_s, barge_in=barge_in))

    def set(self, session: str, **vars) -> None:
        self._send(session, set=ivr_pb2.SetVars(vars={k: str(v) for k, v in vars.items()}))

    def transfer(self, session: str, to: str) -> None:
        self._send(session, transfer=ivr_pb2.TransferTo(to=to))

    def queue(self, session: str, queue: str, priority: int = 0) -> None:
        self._send(session, queue=ivr_pb2.QueueTo(queue=queue, priority=priority))

    def hangup(self, session: str, cause: int = 16) -> None:
        self._send(session, hangup=ivr_pb2.HangupCall(cause=cause))

    def ret(self, session: str, **vars) -> None:
        self._send(session, ret=ivr_pb2.Return(vars={k: str(v) for k, v in vars.items()}))

    def close(self) -> None:
        self.sock.close(0)
