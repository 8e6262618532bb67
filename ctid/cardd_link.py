"""ctid's link to one cardd node: SUB to its events, DEALER to its commands, and resync.

cardd numbers its events per node, gap-free from 1. The link applies them in order; when it
cannot (at start, after a gap, or when cardd restarted: its NodeStarted event or a seq that
went backwards) it asks cardd for its Status, buffers events meanwhile, and hands the daemon
a resync: `reconcile()` makes the call model agree with the channels cardd reports, then
the buffered events newer than the Status (its `seq`) are applied. The same reconcile
serves a ctid restart (an empty model rebuilds the calls cardd still carries: their audio
never stopped, cardd's bridges stay) and a cardd restart (cardd's channels are idle: the
model's calls on that node are cleared).

Commands go out on the DEALER with the model's ids; every reply is matched. An error reply
to a command that starts or answers a call leg (ring, dial, answer) becomes a Cleared event
for that channel, so the model reports ConnectionCleared/Failed; other errors are logged.
"""
from __future__ import annotations

import collections
import dataclasses
import itertools
import logging

import zmq
from google.protobuf.message import DecodeError

from ctid.model.callmodel import CallModel, Out
from ctid.model.calls import ConnState, DeviceType
from hotline_proto import cardd_pb2

log = logging.getLogger("ctid.cardd")

# Commands whose failure means the party never joined (or cannot stay in) the call.
LEG_COMMANDS = {"ring", "dial", "answer"}
CAUSE_TEMPORARY_FAILURE = 41
STATUS_RETRY_S = 0.1
IN_CALL = {cardd_pb2.RINGING, cardd_pb2.DIALING, cardd_pb2.PROCEEDING, cardd_pb2.ALERTING,
           cardd_pb2.CONNECTED, cardd_pb2.DIALTONE, cardd_pb2.COLLECTING, cardd_pb2.CLEARING}
NOT_IN_SERVICE = {cardd_pb2.OUT_OF_SERVICE, cardd_pb2.BLOCKED}


# ---- sequencing (pure) ------------------------------------------------------------------
class NodeSequence:
    """Orders one node's events. Returns what to do: ("event", ev), ("need_status", reason)."""

    def __init__(self, node: str, buffer_max: int = 100_000):
        self.node = node
        self.expected = 0              # 0: no Status applied yet
        self.syncing = True            # a Status is wanted or out; events are buffered
        self.reason = "start"
        self.buffer: collections.deque[cardd_pb2.ChannelEvent] = collections.deque()
        self.buffer_max = buffer_max
        self.overflowed = False

    def on_event(self, ev: cardd_pb2.ChannelEvent) -> list[tuple]:
        started = ev.WhichOneof("kind") == "node_started"
        if self.syncing:
            if started:
                # A new cardd run: nothing buffered before it counts, and a Status already
                # asked for may describe the old run; ask again.
                return self._resync("restart", ev)
            if len(self.buffer) < self.buffer_max:
                self.buffer.append(ev)
            else:
                self.overflowed = True
            return []
        if ev.seq == self.expected and not started:
            self.expected += 1
            return [("event", ev)]
        # cardd's seq only grows within one run: going back means a restart
        return self._resync("restart" if started or ev.seq < self.expected else "gap", ev)

    def _resync(self, reason: str, ev: cardd_pb2.ChannelEvent | None = None) -> list[tuple]:
        self.syncing = True
        self.reason = reason
        self.buffer.clear()
        self.overflowed = False
        if ev is not None:
            self.buffer.append(ev)
        return [("need_status", reason)]

    def on_status(self, reply: cardd_pb2.Reply) -> list[tuple]:
        """Status applied by the caller first; then these buffered events, in order."""
        out: list[tuple] = []
        self.syncing = False
        self.expected = reply.seq + 1
        pending, self.buffer = self.buffer, collections.deque()
        overflowed, self.overflowed = self.overflowed, False
        for ev in pending:
            if ev.seq <= reply.seq:
                continue                   # already reflected in the Status
            out += self.on_event(ev)
            if self.syncing:
                return out
        if overflowed:
            out += self._resync("overflow")
        return out


# ---- reconcile (pure) ---------------------------------------------------------------------
def _event(channel: int, **kind) -> cardd_pb2.ChannelEvent:
    ev = cardd_pb2.ChannelEvent(channel=channel)
    (field, msg), = kind.items()
    getattr(ev, field).CopyFrom(msg)
    return ev


def reconcile(model: CallModel, node: str, status: cardd_pb2.Reply, now: float) -> Out:
    """Make the model agree with cardd's view of `node` (its Status reply).

    1. Service: a device whose channel is missing, out of service or blocked goes out of
       service (its calls are cleared), and comes back when cardd says so.
    2. The model's connections on this node whose channel cardd reports idle are cleared
       (cause 41, temporary failure): cardd restarted or missed the call's end.
    3. Channels cardd has in a call the model does not know (ctid restarted): a bridged pair
       or a conference becomes a connected call; an inbound trunk call still offered is
       routed again (any extension still ringing for an unknown call is stopped first); an
       extension off-hook with dial tone starts a call as if just lifted; a connected
       channel without a bridge becomes a one-party call (kept, visible, clearable);
       anything else half-way (dialling out, proceeding) is hung up.
    """
    out = Out()
    chans = {c.channel: c for c in status.channels}
    devices = {d.channel.channel: d for d in model.devices.values()
               if d.channel is not None and d.channel.node == node}

    # 1. service
    for ch_no, dev in devices.items():
        ch = chans.get(ch_no)
        up = ch is not None and ch.in_service and ch.state not in NOT_IN_SERVICE
        if up != dev.in_service:
            out.extend(model.channel_event(node, _event(ch_no, service=cardd_pb2.ServiceChange(
                in_service=up, reason="cardd resync" if ch is not None else
                "channel not reported by cardd")), now))

    # 2. the model's connections that cardd no longer carries
    in_model = {d.id for d in devices.values()
                if model.parties[d.id].call_id or model.parties[d.id].held_call_id}
    for call in list(model.calls.values()):
        for dev_id, conn in list(call.connections.items()):
            dev = model.devices[dev_id]
            if conn.state == ConnState.NULL or dev.channel is None or dev.channel.node != node:
                continue
            ch = chans.get(dev.channel.channel)
            if ch is not None and ch.state in IN_CALL:
                continue
            if call.id not in model.calls:
                break
            party = model.parties[dev_id]
            if party.held_call_id == call.id:
                party.held_call_id = ""
            # local: the channel is already idle in cardd, so no hangup is sent
            model._clear_party_in(out, call, dev, now, CAUSE_TEMPORARY_FAILURE,
                                  reason="cardd resync: channel idle", local=True)
    for ch_no, dev in devices.items():
        party = model.parties[dev.id]
        ch = chans.get(ch_no)
        if dev.type == DeviceType.EXTENSION and not party.call_id and not party.held_call_id:
            party.off_hook = ch is not None and ch.state in (
                cardd_pb2.DIALTONE, cardd_pb2.COLLECTING, cardd_pb2.CONNECTED, cardd_pb2.CLEARING)

    # 3. cardd's calls the model does not know
    def known(dev) -> bool:
        # in a call of the model, or in one just cleared above (its hangup is on its way)
        p = model.parties[dev.id]
        return bool(p.call_id or p.held_call_id) or dev.id in in_model

    unknown = {n: chans[n] for n, d in devices.items()
               if n in chans and chans[n].state in IN_CALL and not known(d)}
    done: set[int] = set()
    conferences: dict[str, list[int]] = {}
    for n, ch in unknown.items():
        if ch.conference and ch.state == cardd_pb2.CONNECTED:
            conferences.setdefault(ch.conference, []).append(n)
    for name, members in conferences.items():
        if len(members) >= 2:
            _rebuild(model, out, [devices[m] for m in sorted(members)], chans, now,
                     extra={"conference": name})
            done.update(members)
    for n, ch in unknown.items():
        other = ch.bridged_with
        if n in done or ch.state != cardd_pb2.CONNECTED or not other or other in done:
            continue
        if other in unknown and unknown[other].state == cardd_pb2.CONNECTED and \
                unknown[other].bridged_with == n:
            _rebuild(model, out, [devices[n], devices[other]], chans, now)
            done.update((n, other))
    ringing_ext = [n for n, ch in unknown.items() if n not in done and ch.state == cardd_pb2.RINGING
                   and devices[n].type == DeviceType.EXTENSION]
    for n in ringing_ext:
        model.command(out, devices[n], hangup=cardd_pb2.Hangup(cause=CAUSE_TEMPORARY_FAILURE))
        done.add(n)
    for n, ch in unknown.items():
        if n in done:
            continue
        dev = devices[n]
        if dev.type == DeviceType.TRUNK and ch.state == cardd_pb2.RINGING:
            out.extend(model.channel_event(node, _event(n, incoming=cardd_pb2.Incoming(
                ani=ch.ani, dnis=ch.dnis)), now))
        elif dev.type == DeviceType.EXTENSION and ch.state in (cardd_pb2.DIALTONE,
                                                               cardd_pb2.COLLECTING):
            model.parties[dev.id].off_hook = False
            out.extend(model.channel_event(node, _event(n, off_hook=cardd_pb2.OffHook()), now))
        elif ch.state == cardd_pb2.CONNECTED:
            _rebuild(model, out, [dev], chans, now)
        elif ch.state == cardd_pb2.CLEARING:
            continue                       # on its way to idle by itself
        else:
            log.warning("%s/%d: %s for a call ctid does not know; hanging up", node, n,
                        cardd_pb2.ChannelState.Name(ch.state).lower())
            model.command(out, dev, hangup=cardd_pb2.Hangup(cause=CAUSE_TEMPORARY_FAILURE))
    return out


def _rebuild(model: CallModel, out: Out, devs: list, chans: dict, now: float,
             extra: dict | None = None) -> None:
    """A connected call cardd carries, as the model would hold it had it seen it start."""
    devs = sorted(devs, key=lambda d: (d.type != DeviceType.TRUNK, d.channel.channel))
    first = chans[devs[0].channel.channel]
    trunk = devs[0] if devs[0].type == DeviceType.TRUNK else None
    calling = first.ani if trunk is not None and first.ani else devs[0].number
    called = (first.dnis if trunk is not None and first.dnis else
              devs[1].number if len(devs) > 1 else "")
    call = model.new_call(now, calling=calling, called=called)
    call.data["resynced"] = "cardd"
    call.data["cardd_call_ids"] = ",".join(chans[d.channel.channel].call_id for d in devs
                                           if chans[d.channel.channel].call_id)
    if trunk is not None:
        call.data.update({"trunk": trunk.id, "answered_trunk": trunk.id})
        if first.ani:
            call.data["ani"] = first.ani
        if first.dnis:
            call.data["dnis"] = first.dnis
    call.data.update(extra or {})
    for i, d in enumerate(devs):
        model.connect(call, d.id, ConnState.CONNECTED, now, "caller" if i == 0 else "called")
        leg = call.leg(d.id)
        if leg is not None:
            leg.answered = now
        if d.type == DeviceType.EXTENSION:
            model.parties[d.id].off_hook = True
    model.event(out, "Established", call, now, device=devs[-1].id, reason="resync")


# ---- the sockets ------------------------------------------------------------------------
def decode_event(frames: list[bytes]) -> cardd_pb2.ChannelEvent | None:
    """A message from cardd's event PUB (topic, ChannelEvent); None if it is not one."""
    ev = cardd_pb2.ChannelEvent()
    try:
        if len(frames) != 2:
            raise DecodeError(f"{len(frames)} frames")
        ev.ParseFromString(frames[1])
    except (DecodeError, ValueError):
        return None
    return ev


def decode_reply(data: bytes) -> cardd_pb2.Reply | None:
    """A reply from cardd's command ROUTER; None if it does not parse."""
    reply = cardd_pb2.Reply()
    try:
        reply.ParseFromString(data)
    except (DecodeError, ValueError):
        return None
    return reply


@dataclasses.dataclass
class Pending:
    cmd: cardd_pb2.Command
    sent: float
    kind: str


class CarddLink:
    """One node. poll(now) returns, in order: ("event", ChannelEvent), ("resync", Reply,
    reason), ("failed", Command, error)."""

    def __init__(self, ctx: zmq.Context, node: str, events: str, commands: str, *,
                 status_timeout_s: float = 2.0, command_timeout_s: float = 5.0):
        self.node = node
        self.events_endpoint = events
        self.commands_endpoint = commands
        self.status_timeout_s = status_timeout_s
        self.command_timeout_s = command_timeout_s
        self.seq = NodeSequence(node)
        self.sub = ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.LINGER, 0)
        self.sub.setsockopt(zmq.RCVHWM, 100_000)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"")
        self.sub.connect(events)
        self.dealer = ctx.socket(zmq.DEALER)
        self.dealer.setsockopt(zmq.LINGER, 0)
        self.dealer.setsockopt(zmq.SNDHWM, 10_000)
        # Queue commands only on a live connection: a command for a cardd that is down
        # fails now, instead of running stale when cardd comes back.
        self.dealer.setsockopt(zmq.IMMEDIATE, 1)
        self.dealer.connect(commands)
        self.pending: dict[int, Pending] = {}
        self._status_ids = itertools.count(1 << 62)   # apart from the model's command ids
        self.status_id = 0
        self.status_sent = 0.0
        self.up = False
        self.malformed = 0
        self.events_received = 0
        self.resyncs = collections.Counter()

    @property
    def sockets(self) -> list[zmq.Socket]:
        return [self.sub, self.dealer]

    def start(self, now: float) -> None:
        self._ask_status(now)

    def _ask_status(self, now: float) -> None:
        self.status_id = next(self._status_ids)
        self.status_sent = now
        if not self._send(cardd_pb2.Command(id=self.status_id, status=cardd_pb2.Status())):
            # not connected (yet): try again shortly rather than after the full timeout
            self.status_sent = now - self.status_timeout_s + STATUS_RETRY_S

    def _send(self, cmd: cardd_pb2.Command) -> bool:
        try:
            self.dealer.send(cmd.SerializeToString(), zmq.NOBLOCK)
            return True
        except zmq.Again:
            return False

    def send(self, cmd: cardd_pb2.Command, now: float) -> list[tuple]:
        kind = cmd.WhichOneof("kind")
        if not self._send(cmd):
            return [("failed", cmd, f"cardd {self.node} is not taking commands")]
        self.pending[cmd.id] = Pending(cmd, now, kind)
        return []

    def poll(self, now: float, limit: int = 10_000) -> list[tuple]:
        out: list[tuple] = []
        for _ in range(limit):
            try:
                frames = self.sub.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            ev = decode_event(frames)
            if ev is None:
                self.malformed += 1
                continue
            self.events_received += 1
            out += self._sequenced(self.seq.on_event(ev), now)
        for _ in range(limit):
            try:
                data = self.dealer.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            reply = decode_reply(data)
            if reply is None:
                self.malformed += 1
                continue
            self.up = True
            if reply.id == self.status_id and self.seq.syncing:
                self.status_id = 0
                if not reply.ok:
                    log.warning("cardd %s refused Status: %s", self.node, reply.error)
                    continue
                self.resyncs[self.seq.reason] += 1
                out.append(("resync", reply, self.seq.reason))
                out += self._sequenced(self.seq.on_status(reply), now)
                continue
            p = self.pending.pop(reply.id, None)
            if p is not None and not reply.ok:
                out.append(("failed", p.cmd, reply.error))
        out += self.check_timeouts(now)
        return out

    def _sequenced(self, items: list[tuple], now: float) -> list[tuple]:
        out = []
        for item in items:
            if item[0] == "need_status":
                log.info("cardd %s: resynchronising (%s)", self.node, item[1])
                self._ask_status(now)
            else:
                out.append(item)
        return out

    def check_timeouts(self, now: float) -> list[tuple]:
        out = []
        if self.seq.syncing and (not self.status_id or now - self.status_sent > self.status_timeout_s):
            if self.status_id and self.up:
                log.warning("cardd %s: no answer to Status in %.1f s", self.node,
                            self.status_timeout_s)
                self.up = False
            self._ask_status(now)
        for cmd_id, p in list(self.pending.items()):
            if now - p.sent > self.command_timeout_s:
                del self.pending[cmd_id]
                self.up = False
                out.append(("failed", p.cmd, f"no reply from cardd {self.node} within "
                                             f"{self.command_timeout_s:g} s"))
        return out

    def close(self) -> None:
        self.sub.close(linger=0)
        self.dealer.close(linger=0)


def failure_event(cmd: cardd_pb2.Command, error: str) -> cardd_pb2.ChannelEvent | None:
    """What a failed command means to the call model (None: only worth a warning)."""
    if cmd.WhichOneof("kind") == "play_prompt":
        # A prompt cardd refused (a missing file, a channel gone) has ended, interrupted:
        # whoever waits for its end (the IVR) goes on instead of waiting forever.
        # It echoes the prompt's id, as cardd's own PromptDone does.
        return _event(cmd.channel, prompt_done=cardd_pb2.PromptDone(interrupted=True,
                                                                    id=cmd.play_prompt.id))
    if cmd.WhichOneof("kind") == "record":
        # A recording cardd refused (a bad path, no call) is over, failed: the IVR goes on.
        return _event(cmd.channel, record_done=cardd_pb2.RecordDone(
            path=cmd.record.path, ok=False, reason=f"error: cardd refused record: {error}"))
    if cmd.WhichOneof("kind") not in LEG_COMMANDS:
        return None
    return _event(cmd.channel, cleared=cardd_pb2.Cleared(cause=CAUSE_TEMPORARY_FAILURE,
                                                         reason=f"cardd refused "
                                                                f"{cmd.WhichOneof('kind')}: {error}"))
