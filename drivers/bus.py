"""cardd's bus: channel events out on a PUB socket, channel commands in on a ROUTER socket.

Every event gets the next per-node sequence number, so a subscriber sees any gap. A
command that does not parse, is too large or names no known command gets an error reply
and is counted; the loop goes on.
"""
from __future__ import annotations

import os
import time

import zmq
from google.protobuf.message import DecodeError

from hotline_proto import cardd_pb2

MAX_COMMAND_BYTES = 64 * 1024


def ensure_ipc_dir(endpoint: str) -> None:
    if endpoint.startswith("ipc://"):
        directory = os.path.dirname(endpoint[len("ipc://"):])
        if directory:
            os.makedirs(directory, exist_ok=True)


class EventPublisher:
    def __init__(self, ctx: zmq.Context, endpoint: str, node: str):
        ensure_ipc_dir(endpoint)
        self.sock = ctx.socket(zmq.PUB)
        self.sock.setsockopt(zmq.SNDHWM, 100_000)
        self.sock.setsockopt(zmq.LINGER, 500)
        self.sock.bind(endpoint)
        self.node = node
        self.seq = 0

    def publish(self, event: cardd_pb2.ChannelEvent, topic: bytes) -> cardd_pb2.ChannelEvent:
        self.seq += 1
        event.seq = self.seq
        event.node = self.node
        if not event.time:
            event.time = time.time()
        self.sock.send_multipart([topic, event.SerializeToString()])
        return event

    def close(self) -> None:
        self.sock.close()


class CommandServer:
    """ROUTER for DEALER (or REQ) clients. poll() returns parsed (reply_to, Command) pairs."""

    def __init__(self, ctx: zmq.Context, endpoint: str):
        ensure_ipc_dir(endpoint)
        self.sock = ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 500)
        self.sock.setsockopt(zmq.ROUTER_MANDATORY, 0)
        self.sock.bind(endpoint)
        self.rejected: dict[str, int] = {}

    def _reject(self, route: list[bytes], reason: str, error: str, cmd_id: int = 0) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1
        self.reply(route, cardd_pb2.Reply(id=cmd_id, ok=False, error=error))

    def poll(self, limit: int = 256) -> list[tuple[list[bytes], cardd_pb2.Command]]:
        out = []
        for _ in range(limit):
            try:
                frames = self.sock.recv_multipart(zmq.NOBLOCK, copy=True)
            except zmq.Again:
                break
            # DEALER: [identity, payload]; REQ: [identity, b"", payload]
            if len(frames) == 2:
                route, payload = frames[:1], frames[1]
            elif len(frames) == 3 and frames[1] == b"":
                route, payload = frames[:2], frames[2]
            else:
                self._reject(frames[:1], "framing", f"expected one payload frame, got {len(frames) - 1}")
                continue
            if len(payload) > MAX_COMMAND_BYTES:
                self._reject(route, "oversized",
                             f"command of {len(payload)} bytes exceeds {MAX_COMMAND_BYTES}")
                continue
            cmd = cardd_pb2.Command()
            try:
                cmd.ParseFromString(payload)
            except (DecodeError, ValueError) as e:
                self._reject(route, "malformed", f"malformed command: {e}")
                continue
            if cmd.WhichOneof("kind") is None:
                self._reject(route, "unknown", "unknown or empty command", cmd.id)
                continue
            out.append((route, cmd))
        return out

    def reply(self, route: list[bytes], reply: cardd_pb2.Reply) -> None:
        try:
            self.sock.send_multipart(route + [reply.SerializeToString()], zmq.NOBLOCK)
        except zmq.ZMQError:
            pass   # the client went away; nothing to tell it

    def close(self) -> None:
        self.sock.close()
