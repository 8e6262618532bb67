"""cardd's client side, as an application sees it: events from its PUB, commands to its ROUTER.

Non-blocking throughout, so it can be polled from the simulator's clock loop: poll_events()
and poll_replies() drain what has arrived, send() queues a command. Messages that do not
parse are counted in `malformed` and dropped.

A subscriber misses what is published before its subscription reaches the publisher
(ZeroMQ's slow joiner). subscribed() turns true once the subscription's connection has
completed its handshake (seen on a socket monitor), after which only the publisher's own
processing of the subscription remains: callers wait a few ticks more.
"""
from __future__ import annotations

import zmq
from zmq.utils.monitor import recv_monitor_message

from ctid.cardd_link import decode_event, decode_reply
from hotline_proto import cardd_pb2


class CarddClient:
    def __init__(self, events_endpoint: str, commands_endpoint: str,
                 context: zmq.Context | None = None):
        self.events_endpoint = events_endpoint
        self.commands_endpoint = commands_endpoint
        self._ctx = context or zmq.Context.instance()
        self._sub = self._ctx.socket(zmq.SUB)
        self._sub.setsockopt(zmq.LINGER, 0)
        self._sub.setsockopt(zmq.RCVHWM, 100_000)
        self._sub.setsockopt(zmq.SUBSCRIBE, b"")
        self._sub.setsockopt(zmq.RECONNECT_IVL, 20)      # cardd binds moments after starting
        self._monitor = self._sub.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
        self._subscribed = False
        self._sub.connect(events_endpoint)
        self._dealer = self._ctx.socket(zmq.DEALER)
        self._dealer.setsockopt(zmq.LINGER, 0)
        self._dealer.setsockopt(zmq.RECONNECT_IVL, 20)
        self._dealer.connect(commands_endpoint)
        self.malformed = 0
        self.unsent = 0

    def subscribed(self) -> bool:
        while not self._subscribed and self._monitor.poll(0):
            if recv_monitor_message(self._monitor)["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self._subscribed = True
        return self._subscribed

    def poll_events(self, limit: int = 10_000) -> list[cardd_pb2.ChannelEvent]:
        out = []
        for _ in range(limit):
            try:
                frames = self._sub.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            ev = decode_event(frames)
            if ev is None:
                self.malformed += 1
                continue
            out.append(ev)
        return out

    def poll_replies(self, limit: int = 10_000) -> list[cardd_pb2.Reply]:
        out = []
        for _ in range(limit):
            try:
                payload = self._dealer.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            reply = decode_reply(payload)
            if reply is None:
                self.malformed += 1
                continue
            out.append(reply)
        return out

    def send(self, cmd: cardd_pb2.Command) -> None:
        try:
            self._dealer.send(cmd.SerializeToString(), zmq.NOBLOCK)
        except zmq.Again:
            self.unsent += 1          # cardd not reachable: the command's reply never comes

    def close(self) -> None:
        self._sub.disable_monitor()
        self._monitor.close(linger=0)
        self._sub.close(linger=0)
        self._dealer.close(linger=0)
