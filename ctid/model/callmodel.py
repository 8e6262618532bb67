"""The call model: cardd channel events and CTI requests in; CSTA events, channel commands
and CDRs out. Time is passed in (seconds); nothing here touches a socket or a clock.

Media paths are cardd bridges: when two parties are connected, their channels are bridged;
hold unbridges and plays the hold tone to the other party; a three-party conference is a
cardd conference named after the call.

Routing services: targets the model does not serve itself ("queue:NAME", "ivr:NAME") go to
the service registered for their kind (`CallModel(..., services={"queue": acd})` or
`add_service`). A service is any object with

    route(model, out, call, origin, name, number, now, caller_id) -> None

(take the call: answer it, connect a virtual device such as "queue:sales", ring a device
later with `ring`), and optionally:

    channel_event(model, out, device, event, now) -> bool   # first look at a cardd event
                                                            # on a device; True: consumed
    observe(model, out, events, now) -> None   # events just produced (by the model, or by
                                               # services reacting), each shown once
    tick(model, out, now) -> None              # with the model's timers
    requests: tuple[str, ...]                  # CTI request kinds it serves, with
    request(model, out, kind, body, now) -> cti_pb2.Reply | None

Virtual devices (no channel) added with `add_device` hold a connection in a call (queued)
without being a media party: commands for them are skipped and they are left out of
bridging. A call keeps going while two connections remain, a virtual one included (a
queued caller whose agent did not answer is still a call); the service holding it ends it
when its caller leaves. Services drive the model through its public helpers (`ring`,
`connect`, `clear_connection`, `clear_call`, `event`, `command`, `bridge`, `new_call`).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import itertools

from hotline_proto import cardd_pb2, cti_pb2

from .calls import Call, ChannelRef, ConnState, Connection, Device, DeviceType, Leg
from .routing import DialPlan

# Q.850 cause -> CSTA event cause (ECMA-269 12.2.x names).
CSTA_CAUSE = {16: "normalClearing", 17: "busy", 18: "noAnswer", 19: "noAnswer",
              21: "callRejected", 1: "invalidNumber", 28: "invalidNumber",
              34: "trunksBusy", 38: "networkOutOfOrder", 41: "networkCongestion",
              42: "networkCongestion", 102: "timeout"}

_STATE_PB = {ConnState.NULL: cti_pb2.CS_NULL, ConnState.INITIATED: cti_pb2.CS_INITIATED,
             ConnState.ALERTING: cti_pb2.CS_ALERTING, ConnState.CONNECTED: cti_pb2.CS_CONNECTED,
             ConnState.HELD: cti_pb2.CS_HELD, ConnState.QUEUED: cti_pb2.CS_QUEUED,
             ConnState.FAILED: cti_pb2.CS_FAILED}
_DEVTYPE_PB = {DeviceType.EXTENSION: cti_pb2.DEV_EXTENSION, DeviceType.TRUNK: cti_pb2.DEV_TRUNK,
               DeviceType.ACD_GROUP: cti_pb2.DEV_ACD_GROUP, DeviceType.IVR_PORT: cti_pb2.DEV_IVR_PORT,
               DeviceType.AGENT: cti_pb2.DEV_AGENT}


class RequestError(Exception):
    """A CTI request that cannot be carried out; the text goes back to the client."""


@dataclasses.dataclass
class Out:
    events: list[cti_pb2.Event] = dataclasses.field(default_factory=list)
    commands: list[tuple[str, cardd_pb2.Command]] = dataclasses.field(default_factory=list)
    cdrs: list[dict] = dataclasses.field(default_factory=list)

    def extend(self, other: "Out") -> "Out":
        self.events += other.events
        self.commands += other.commands
        self.cdrs += other.cdrs
        return self


@dataclasses.dataclass
class Party:
    """What a device's channel is doing for the call model."""
    device: Device
    call_id: str = ""                # ctid call id the channel serves now
    held_call_id: str = ""           # a call this device holds (consultation)
    digits: str = ""                 # digits dialled so far (extension origination)
    digit_deadline: float | None = None
    ring_deadline: float | None = None
    off_hook: bool = False
    service_media: bool = False      # a service played a tone or prompt to this channel


class CallModel:
    def __init__(self, devices: list[Device], dialplan: DialPlan, *, interdigit_s: float = 4.0,
                 ring_timeout_s: float = 30.0, tz: dt.tzinfo | None = None,
                 hold_tone: str = "call_waiting", services: dict | None = None):
        self.devices = {d.id: d for d in devices}
        self.by_channel: dict[ChannelRef, Device] = {d.channel: d for d in devices if d.channel}
        self.parties = {d.id: Party(d) for d in devices}
        self.dialplan = dialplan
        self.interdigit_s = interdigit_s
        self.ring_timeout_s = ring_timeout_s
        self.tz = tz
        self.hold_tone = hold_tone
        self.calls: dict[str, Call] = {}
        self._ids = itertools.count(1)
        self._cmd_ids = itertools.count(1)
        self.services: dict[str, object] = {}
        self._request_services: dict[str, object] = {}
        for kind, service in (services or {}).items():
            self.add_service(kind, service)

    # ---- routing services -----------------------------------------------------------------
    def add_service(self, kind: str, service) -> None:
        """Serve routing targets "KIND:NAME" with `service` (see the module docstring)."""
        if kind in ("ext", "trunk"):
            raise ValueError(f"{kind!r} targets are served by the call model itself")
        if kind in self.services:
            raise ValueError(f"{kind!r} targets already have a service")
        if not callable(getattr(service, "route", None)):
            raise ValueError(f"a service for {kind!r} targets needs a route() method")
        for req in getattr(service, "requests", ()):
            if hasattr(self, f"_req_{req}") or req in self._request_services:
                raise ValueError(f"CTI request {req!r} already has a handler")
            self._request_services[req] = service
        self.services[kind] = service

    def _unique_services(self) -> list:
        seen: dict[int, object] = {}
        for s in self.services.values():
            seen.setdefault(id(s), s)
        return list(seen.values())

    def _observe(self, out: "Out", now: float) -> None:
        """Show services the events the model produced, and those their reactions produced."""
        start = 0
        watchers = [s for s in self._unique_services() if hasattr(s, "observe")]
        while watchers and start < len(out.events):
            end = len(out.events)
            batch = out.events[start:end]
            for s in watchers:
                s.observe(self, out, batch, now)
            start = end

    def add_device(self, device: Device) -> Device:
        """A device the configuration did not list: a virtual one (an ACD group, an IVR
        port without a channel) that services connect into calls."""
        if device.id in self.devices:
            raise ValueError(f"device {device.id!r} already exists")
        if device.channel is not None and device.channel in self.by_channel:
            raise ValueError(f"channel {device.channel} already belongs to "
                             f"{self.by_channel[device.channel].id}")
        self.devices[device.id] = device
        if device.channel is not None:
            self.by_channel[device.channel] = device
        self.parties[device.id] = Party(device)
        return device

    # ---- helpers ------------------------------------------------------------------------
    def _new_call(self, now: float, calling: str, called: str = "") -> Call:
        call = Call(id=f"C{next(self._ids)}", started=now, calling=calling, called=called)
        self.calls[call.id] = call
        return call

    def _event(self, out: Out, name: str, call: Call | None, now: float, device: str = "",
               **fields) -> cti_pb2.Event:
        e = cti_pb2.Event(name=name, time=now, device=device)
        if call is not None:
            e.call_id = call.id
            e.calling = call.calling
            e.called = call.called
            for c in call.connections.values():
                e.connections.add(call_id=c.call_id, device=c.device, state=_STATE_PB[c.state])
            e.data.update(call.data)
        for k, v in fields.items():
            if isinstance(v, dict):
                getattr(e, k).update(v)
            else:
                setattr(e, k, v)
        out.events.append(e)
        return e

    def _cmd(self, out: Out, device: Device, **kind) -> None:
        if device.channel is None:          # a virtual device has no channel to command
            return
        (field, msg), = kind.items()
        cmd = cardd_pb2.Command(id=next(self._cmd_ids), channel=device.channel.channel)
        getattr(cmd, field).CopyFrom(msg)
        out.commands.append((device.channel.node, cmd))

    def _connect(self, call: Call, device: str, state: ConnState, now: float, role: str) -> None:
        conn = call.connections.get(device)
        if conn is None:
            call.connections[device] = Connection(call.id, device, state)
            call.legs.append(Leg(device=device, role=role, started=now))
        else:
            conn.state = state
        if state == ConnState.CONNECTED:
            leg = call.leg(device)
            if leg and leg.answered is None:
                leg.answered = now
        self.parties[device].call_id = call.id

    def _bridge(self, out: Out, a: Device, b: Device) -> None:
        self._cmd(out, a, bridge=cardd_pb2.Bridge(other_channel=b.channel.channel))

    def _when(self, now: float) -> dt.datetime:
        return dt.datetime.fromtimestamp(now, self.tz)

    def device_for(self, ref: ChannelRef) -> Device | None:
        return self.by_channel.get(ref)

    def idle(self, device: Device) -> bool:
        p = self.parties[device.id]
        return device.in_service and not p.call_id and not p.held_call_id and not p.off_hook

    def _others(self, call: Call, device: str) -> list[Device]:
        """The other media parties: devices with a channel and a live connection."""
        return [self.devices[d] for d, c in call.connections.items()
                if d != device and c.state != ConnState.NULL and self.devices[d].channel is not None]

    # ---- the services' API ----------------------------------------------------------------
    def new_call(self, now: float, calling: str = "", called: str = "") -> Call:
        return self._new_call(now, calling, called)

    def ring(self, out: Out, call: Call, dest: Device, now: float, caller_id: str | None = None,
             origin: Device | None = None) -> cti_pb2.Event | None:
        """Ring an idle device with `call` (Delivered); None, with nothing done, if the
        device is busy or out of service. An extension origin hears ringback."""
        if dest.channel is None or not self.idle(dest):
            return None
        self._cmd(out, dest, ring=cardd_pb2.Ring(caller_id=caller_id or call.calling))
        self._connect(call, dest.id, ConnState.ALERTING, now, "called")
        self.parties[dest.id].ring_deadline = now + self.ring_timeout_s
        if origin is not None and origin.type == DeviceType.EXTENSION:
            self._cmd(out, origin, play_tone=cardd_pb2.PlayTone(tone="ringback"))
        return self._event(out, "Delivered", call, now, device=dest.id)

    def connect(self, call: Call, device: str, state: ConnState, now: float, role: str) -> None:
        """Give `device` a connection in `call` in `state` (a new leg the first time)."""
        self._connect(call, device, state, now, role)

    def clear_connection(self, out: Out, call: Call, device: Device, cause: int, now: float,
                         reason: str = "") -> None:
        """Take `device` out of `call` (hung up if it has a channel); a call left with fewer
        than two connections is cleared."""
        self._clear_party_in(out, call, device, now, cause, reason=reason, local=False)

    def clear_call(self, out: Out, call: Call, cause: int, now: float) -> None:
        self._clear_call(out, call, now, cause)

    def event(self, out: Out, name: str, call: Call | None, now: float, device: str = "",
              **fields) -> cti_pb2.Event:
        return self._event(out, name, call, now, device=device, **fields)

    def command(self, out: Out, device: Device, **kind) -> None:
        """One cardd command for `device`'s channel, e.g. command(out, d, answer=Answer()).
        A tone or prompt a service plays to a trunk is stopped when the call is answered."""
        field = next(iter(kind))
        if field in ("play_tone", "play_prompt"):
            self.parties[device.id].service_media = True
        elif field in ("stop_media", "hangup"):
            self.parties[device.id].service_media = False
        if field == "stop_media" and device.channel is not None:
            # Already stopped in this output (the model does it when the call is answered)?
            for node, cmd in reversed(out.commands):
                if node == device.channel.node and cmd.channel == device.channel.channel:
                    if cmd.WhichOneof("kind") == "stop_media":
                        return
                    break
        self._cmd(out, device, **kind)

    def deliver(self, out: Out, call: Call, origin: Device, target: str, number: str,
                now: float, caller_id: str | None = None) -> None:
        """Offer `call` from `origin` to a routing target ("ext:8001", "trunk:co",
        "queue:NAME", "ivr:FLOW"), as the dial plan's routes do."""
        self._deliver(out, call, origin, target, number, now, caller_id=caller_id)

    def bridge(self, out: Out, a: Device, b: Device) -> None:
        self._bridge(out, a, b)

    # ---- cardd events -----------------------------------------------------------------
    def channel_event(self, node: str, event: cardd_pb2.ChannelEvent, now: float) -> Out:
        out = Out()
        device = self.by_channel.get(ChannelRef(node, event.channel))
        if device is None:
            return out
        kind = event.WhichOneof("kind")
        for service in self._unique_services():
            hook = getattr(service, "channel_event", None)
            if hook is not None and hook(self, out, device, event, now):
                self._observe(out, now)
                return out
        handler = getattr(self, f"_on_{kind}", None)
        if handler is not None:
            handler(out, device, event, now)
        self._observe(out, now)
        return out

    def _on_service(self, out, device, event, now):
        device.in_service = event.service.in_service
        party = self.parties[device.id]
        if not device.in_service and party.call_id:
            self._clear_party(out, device, now, 38, local=True)
        self._event(out, "BackInService" if device.in_service else "OutOfService", None, now,
                    device=device.id, reason=event.service.reason)

    def _on_off_hook(self, out, device, event, now):
        party = self.parties[device.id]
        party.off_hook = True
        if party.call_id:
            return                      # answering a ringing phone comes as Answered
        call = self._new_call(now, calling=device.number)
        self._connect(call, device.id, ConnState.INITIATED, now, "caller")
        party.digits = ""
        party.digit_deadline = now + self.interdigit_s * 2.5
        self._event(out, "ServiceInitiated", call, now, device=device.id)

    def _on_digit(self, out, device, event, now):
        party = self.parties[device.id]
        call = self.calls.get(party.call_id)
        if call is None:
            return
        conn = call.connection(device.id)
        if conn is None or conn.state != ConnState.INITIATED or call.called:
            return                      # digits in a connected call are the far end's business
        digit = event.digit.digit
        if not party.digits and device.channel is not None:
            # ctid now owns digit collection (its dial plan knows when a number is complete):
            # a media command tells the line to stop its own inter-digit timer.
            self._cmd(out, device, stop_media=cardd_pb2.StopMedia())
        if digit == "#" and party.digits:
            self._route_digits(out, device, call, now, complete=True)   # '#' ends dialling
            return
        party.digits += digit
        self._route_digits(out, device, call, now, complete=False)

    def _route_digits(self, out, device, call, now, complete):
        party = self.parties[device.id]
        d = self.dialplan.decide(party.digits, self._when(now), source="extension", complete=complete)
        if d.kind == "wait":
            party.digit_deadline = now + self.interdigit_s
            return
        party.digit_deadline = None
        call.called = d.number if d.kind == "route" else party.digits
        if d.kind == "invalid":
            self._fail(out, call, device, now, "invalidNumber", tone="congestion")
            return
        self._event(out, "Originated", call, now, device=device.id)
        self._deliver(out, call, device, d.target, d.number, now)

    def _deliver(self, out, call: Call, origin: Device, target: str, number: str, now: float,
                 caller_id: str | None = None) -> None:
        """Offer the call from `origin` to a routing target."""
        kind, _, name = target.partition(":")
        if kind == "ext":
            dest = self.devices.get(f"ext:{name}")
            if dest is None:
                self._fail(out, call, origin, now, "invalidNumber", tone="congestion")
                return
            if self.ring(out, call, dest, now, caller_id=caller_id, origin=origin) is None:
                self._fail(out, call, origin, now, "busy", tone="busy")
                return
        elif kind == "trunk":
            trunk = next((d for d in self.devices.values()
                          if d.type == DeviceType.TRUNK and d.group == name and self.idle(d)), None)
            if trunk is None:
                self._fail(out, call, origin, now, "trunksBusy", tone="congestion")
                return
            self._cmd(out, trunk, dial=cardd_pb2.Dial(number=number, ani=call.calling))
            self._connect(call, trunk.id, ConnState.INITIATED, now, "called")
            call.data.setdefault("trunk", trunk.id)
        elif kind in self.services:
            self.services[kind].route(self, out, call, origin, name, number, now, caller_id)
        else:
            # Without a service for the kind (no ACD or IVR configured) the call is failed
            # with a clear cause rather than left ringing.
            self._fail(out, call, origin, now, "notAvailable", tone="congestion",
                       reason=f"{kind} targets are not served by this ctid")

    def _fail(self, out, call, device, now, cause, tone="busy", reason=""):
        conn = call.connection(device.id)
        if conn is not None:
            conn.state = ConnState.FAILED
        call.outcome = cause
        if device.type == DeviceType.EXTENSION and self.parties[device.id].off_hook:
            self._cmd(out, device, play_tone=cardd_pb2.PlayTone(tone=tone))
        self._event(out, "Failed", call, now, device=device.id, cause=cause, reason=reason)
        if device.type == DeviceType.TRUNK:
            self._clear_call(out, call, now, 17 if cause == "busy" else 16)

    def _on_incoming(self, out, device, event, now):
        inc = event.incoming
        call = self._new_call(now, calling=inc.ani, called=inc.dnis or device.number)
        call.data.update({"ani": inc.ani, "dnis": call.called, "trunk": device.id})
        if inc.caller_name:
            call.data["caller_name"] = inc.caller_name
        self._connect(call, device.id, ConnState.CONNECTED, now, "caller")
        d = self.dialplan.decide(call.called, self._when(now), source="trunk", complete=True)
        if d.kind != "route":
            self._fail(out, call, device, now, "invalidNumber")
            return
        self._deliver(out, call, device, d.target, d.number, now, caller_id=inc.ani)

    def _on_answered(self, out, device, event, now):
        party = self.parties[device.id]
        call = self.calls.get(party.call_id)
        if call is None:
            return
        party.ring_deadline = None
        if device.type == DeviceType.EXTENSION:
            party.off_hook = True                # answered by lifting the handset
        mine = call.connection(device.id)
        if mine is not None and mine.state == ConnState.CONNECTED:
            return      # cardd confirming the answer we asked for (an inbound trunk): no news
        others = self._others(call, device.id)
        self._connect(call, device.id, ConnState.CONNECTED, now, "called")
        for other in others:
            conn = call.connection(other.id)
            if other.type == DeviceType.TRUNK and conn.state != ConnState.CONNECTED:
                continue
            if other.type == DeviceType.TRUNK and not call.data.get("answered_trunk"):
                if call.legs and call.legs[0].device == other.id:   # inbound: answer the line
                    self._cmd(out, other, answer=cardd_pb2.Answer())
                    call.data["answered_trunk"] = other.id
            if other.type == DeviceType.EXTENSION:
                self._cmd(out, other, stop_media=cardd_pb2.StopMedia())
            if conn.state in (ConnState.INITIATED, ConnState.CONNECTED):
                conn.state = ConnState.CONNECTED
                self._bridge(out, device, other)
            if other.type == DeviceType.TRUNK and self.parties[other.id].service_media:
                # what the IVR or a queue played to the caller (ringback, music) ends
                self._cmd(out, other, stop_media=cardd_pb2.StopMedia())
                self.parties[other.id].service_media = False
        self._event(out, "Established", call, now, device=device.id)

    def _on_dial_complete(self, out, device, event, now):
        # An analog trunk gives no answer signal unless the exchange reverses polarity: once
        # the digits are out, the caller is put through to hear the exchange's tones.
        party = self.parties[device.id]
        call = self.calls.get(party.call_id)
        if call is None:
            return
        for other in self._others(call, device.id):
            if other.type == DeviceType.EXTENSION:
                self._cmd(out, other, stop_media=cardd_pb2.StopMedia())
                self._bridge(out, device, other)
        self._event(out, "Delivered", call, now, device=device.id)

    def _on_alerting(self, out, device, event, now):
        call = self.calls.get(self.parties[device.id].call_id)
        if call is not None:
            call.connections[device.id].state = ConnState.ALERTING
            self._event(out, "Delivered", call, now, device=device.id)

    def _on_on_hook(self, out, device, event, now):
        party = self.parties[device.id]
        party.off_hook = False
        if party.held_call_id:
            held = self.calls.get(party.held_call_id)
            party.held_call_id = ""
            if held is not None:
                self._clear_party_in(out, held, device, now, 16)
        if party.call_id:
            self._clear_party(out, device, now, 16, local=True)

    def _on_cleared(self, out, device, event, now):
        party = self.parties[device.id]
        if party.call_id:
            self._clear_party(out, device, now, event.cleared.cause or 16, local=True,
                              reason=event.cleared.reason)

    def _clear_party(self, out, device, now, cause, local, reason=""):
        call = self.calls.get(self.parties[device.id].call_id)
        if call is not None:
            self._clear_party_in(out, call, device, now, cause, reason=reason, local=local)

    def _clear_party_in(self, out, call, device, now, cause, reason="", local=True):
        """One party leaves; a call left with fewer than two parties is cleared."""
        conn = call.connections.get(device.id)
        party = self.parties[device.id]
        if party.call_id == call.id:
            party.call_id = ""
            party.digit_deadline = party.ring_deadline = None
            party.service_media = False
        if conn is None or conn.state == ConnState.NULL:
            return
        was_conference = sum(c.state != ConnState.NULL and self.devices[d].channel is not None
                             for d, c in call.connections.items()) > 2
        if not local:
            self._cmd(out, device, hangup=cardd_pb2.Hangup(cause=cause))
        elif device.type == DeviceType.EXTENSION or was_conference:
            self._cmd(out, device, unbridge=cardd_pb2.Unbridge()) if not was_conference else \
                self._cmd(out, device, conference_leave=cardd_pb2.ConferenceLeave())
        conn.state = ConnState.NULL
        leg = call.leg(device.id)
        if leg:
            leg.ended, leg.cause = now, cause
        self._event(out, "ConnectionCleared", call, now, device=device.id,
                    cause=CSTA_CAUSE.get(cause, "normalClearing"), q850=cause, reason=reason)
        remaining = [d for d, c in call.connections.items() if c.state != ConnState.NULL]
        holders = [p for p in self.parties.values() if p.held_call_id == call.id]
        if len(remaining) < 2 and not holders:
            self._clear_call(out, call, now, cause)

    def _clear_call(self, out, call, now, cause):
        for dev_id, conn in list(call.connections.items()):
            if conn.state != ConnState.NULL:
                self._clear_party_in(out, call, self.devices[dev_id], now, cause, local=False)
        if call.id not in self.calls:
            return
        for p in self.parties.values():
            if p.held_call_id == call.id:
                p.held_call_id = ""
        call.ended = now
        call.outcome = call.outcome or ("answered" if any(l.answered for l in call.legs[1:])
                                        else CSTA_CAUSE.get(cause, "normalClearing"))
        self._event(out, "CallCleared", call, now, cause=CSTA_CAUSE.get(cause, "normalClearing"),
                    q850=cause)
        out.cdrs.append(self.cdr(call))
        del self.calls[call.id]

    def cdr(self, call: Call) -> dict:
        return {"call_id": call.id, "started": call.started, "ended": call.ended,
                "calling": call.calling, "called": call.called, "outcome": call.outcome,
                "data": dict(call.data), "transfers": list(call.transfers),
                "legs": [dataclasses.asdict(l) for l in call.legs]}

    # ---- timers -----------------------------------------------------------------------
    def tick(self, now: float) -> Out:
        out = Out()
        for party in self.parties.values():
            if party.digit_deadline is not None and now >= party.digit_deadline:
                party.digit_deadline = None
                call = self.calls.get(party.call_id)
                if call is None:
                    continue
                if party.digits:
                    self._route_digits(out, party.device, call, now, complete=True)
                else:
                    self._fail(out, call, party.device, now, "timeout", tone="congestion")
            if party.ring_deadline is not None and now >= party.ring_deadline:
                party.ring_deadline = None
                call = self.calls.get(party.call_id)
                if call is not None:
                    self._clear_party_in(out, call, party.device, now, 19, local=False)
        for service in self._unique_services():
            hook = getattr(service, "tick", None)
            if hook is not None:
                hook(self, out, now)
        self._observe(out, now)
        return out

    # ---- CTI requests -----------------------------------------------------------------
    def request(self, req: cti_pb2.Request, now: float) -> tuple[cti_pb2.Reply, Out]:
        kind = req.WhichOneof("kind")
        out = Out()
        handler = getattr(self, f"_req_{kind}", None)
        service = self._request_services.get(kind)
        if handler is not None:
            reply = handler(out, getattr(req, kind), now)
        elif service is not None:
            reply = service.request(self, out, kind, getattr(req, kind), now)
        else:
            raise RequestError(f"request {kind!r} is not handled by the call model")
        reply = reply or cti_pb2.Reply()
        reply.ok = True
        self._observe(out, now)
        return reply, out

    def _device(self, dev_id: str) -> Device:
        d = self.devices.get(dev_id)
        if d is None:
            raise RequestError(f"unknown device {dev_id!r}")
        return d

    def _call(self, call_id: str) -> Call:
        c = self.calls.get(call_id)
        if c is None:
            raise RequestError(f"no call {call_id!r}")
        return c

    def _conn(self, call: Call, dev_id: str, *states: ConnState) -> Connection:
        conn = call.connection(dev_id)
        if conn is None or conn.state == ConnState.NULL:
            raise RequestError(f"device {dev_id} has no connection in call {call.id}")
        if states and conn.state not in states:
            raise RequestError(f"device {dev_id} is {conn.state.value} in call {call.id}; "
                               f"the request needs {' or '.join(s.value for s in states)}")
        return conn

    def _req_make_call(self, out, r, now):
        calling = self._device(r.calling)
        if calling.type != DeviceType.EXTENSION:
            raise RequestError("MakeCall starts from an extension")
        if not self.idle(calling):
            raise RequestError(f"{calling.id} is busy")
        d = self.dialplan.decide(r.called, self._when(now), source="extension", complete=True)
        if d.kind != "route":
            raise RequestError(f"no route for {r.called!r}")
        call = self._new_call(now, calling=calling.number, called=d.number)
        call.data.update(r.data)
        call.data["make_call_target"] = d.target
        # Ring the calling extension first; when it answers the call goes on to the target.
        self._cmd(out, calling, ring=cardd_pb2.Ring(caller_id=d.number))
        self._connect(call, calling.id, ConnState.INITIATED, now, "caller")
        self.parties[calling.id].ring_deadline = now + self.ring_timeout_s
        self._event(out, "Originated", call, now, device=calling.id)
        return cti_pb2.Reply(call_id=call.id)

    def _req_answer_call(self, out, r, now):
        call = self._call(r.call_id)
        dev = self._device(r.device)
        self._conn(call, dev.id, ConnState.ALERTING)
        if dev.type == DeviceType.EXTENSION:
            raise RequestError("an analog extension is answered by lifting its handset")
        self._cmd(out, dev, answer=cardd_pb2.Answer())

    def _req_clear_connection(self, out, r, now):
        call = self._call(r.call_id)
        dev = self._device(r.device)
        self._conn(call, dev.id)
        self._clear_party_in(out, call, dev, now, 16, local=False)

    def _req_clear_call(self, out, r, now):
        self._clear_call(out, self._call(r.call_id), now, 16)

    def _req_hold_call(self, out, r, now):
        call = self._call(r.call_id)
        dev = self._device(r.device)
        conn = self._conn(call, dev.id, ConnState.CONNECTED)
        self._cmd(out, dev, unbridge=cardd_pb2.Unbridge())
        for other in self._others(call, dev.id):
            self._cmd(out, other, play_tone=cardd_pb2.PlayTone(tone=self.hold_tone))
        conn.state = ConnState.HELD
        party = self.parties[dev.id]
        party.held_call_id, party.call_id = call.id, ""
        self._event(out, "Held", call, now, device=dev.id)

    def _req_retrieve_call(self, out, r, now):
        call = self._call(r.call_id)
        dev = self._device(r.device)
        conn = self._conn(call, dev.id, ConnState.HELD)
        party = self.parties[dev.id]
        if party.call_id:
            raise RequestError(f"{dev.id} is in another call; clear or transfer it first")
        for other in self._others(call, dev.id):
            self._cmd(out, other, stop_media=cardd_pb2.StopMedia())
            self._bridge(out, dev, other)
        conn.state = ConnState.CONNECTED
        party.call_id, party.held_call_id = call.id, ""
        self._event(out, "Retrieved", call, now, device=dev.id)

    def _req_consultation_call(self, out, r, now):
        held = self._call(r.call_id)
        dev = self._device(r.device)
        # Refused before the hold: the call stays as it was.
        if r.called.startswith("queue:"):
            target, number = r.called, ""
        else:
            d = self.dialplan.decide(r.called, self._when(now), source="extension", complete=True)
            if d.kind != "route":
                raise RequestError(f"no route for {r.called!r}")
            target, number = d.target, d.number
        if target.startswith("queue:"):
            # The consultation leg waits in the queue as a caller does (music), is offered
            # to its agents, and TransferCall hands the held party its place (see
            # _transfer_into_queue_leg).
            self._check_queue(target, r.called, "consult")
        self._conn(held, dev.id, ConnState.CONNECTED)
        self._req_hold_call(out, cti_pb2.CallRef(call_id=held.id, device=dev.id), now)
        call = self._new_call(now, calling=dev.number, called=number)
        call.data.update(held.data)
        call.data["consultation_of"] = held.id
        self._connect(call, dev.id, ConnState.CONNECTED, now, "caller")
        self._event(out, "Originated", call, now, device=dev.id)
        self._deliver(out, call, dev, target, number, now, caller_id=dev.number)
        return cti_pb2.Reply(call_id=call.id)

    def _merge(self, out, r, now, name):
        held = self._call(r.held_call_id)
        active = self._call(r.active_call_id)
        dev = self._device(r.device)
        self._conn(held, dev.id, ConnState.HELD)
        self._conn(active, dev.id)
        return held, active, dev

    def _queue_leg(self, call: Call) -> bool:
        """A consultation that went to a queue (waiting there, offered, or answered)."""
        return "consultation_of" in call.data and any(
            self.devices[leg.device].type == DeviceType.ACD_GROUP for leg in call.legs)

    def _req_transfer_call(self, out, r, now):
        held, active, dev = self._merge(out, r, now, "Transferred")
        if self._queue_leg(active) and active.data.get("consultation_of") == held.id:
            self._transfer_into_queue_leg(out, held, active, dev, now)
            return
        parties = [d for d in self._others(held, dev.id)] + [d for d in self._others(active, dev.id)]
        # The transferring device leaves both calls; its parties join the held call.
        self._cmd(out, dev, unbridge=cardd_pb2.Unbridge())
        for d_id, conn in active.connections.items():
            if d_id != dev.id and conn.state != ConnState.NULL:
                held.connections[d_id] = Connection(held.id, d_id, conn.state)
                leg = active.leg(d_id)
                held.legs.append(Leg(device=d_id, role="transfer_target", started=leg.started if leg else now,
                                     answered=leg.answered if leg else None))
                self.parties[d_id].call_id = held.id
        for d in parties:
            if d.type == DeviceType.EXTENSION:
                self._cmd(out, d, stop_media=cardd_pb2.StopMedia())
        if len(parties) == 2:
            self._bridge(out, parties[0], parties[1])
            for d in parties:
                if d.type == DeviceType.TRUNK:
                    self._cmd(out, d, stop_media=cardd_pb2.StopMedia())
        held.connections[dev.id].state = ConnState.NULL
        leg = held.leg(dev.id)
        if leg:
            leg.ended = now
        self.parties[dev.id].held_call_id = ""
        self.parties[dev.id].call_id = ""
        held.transfers.append(f"{dev.id}->{','.join(d.id for d in parties)}")
        active.connections.clear()
        del self.calls[active.id]
        self._event(out, "Transferred", held, now, device=dev.id, secondary_call_id=active.id)
        if dev.type == DeviceType.EXTENSION and self.parties[dev.id].off_hook:
            self._cmd(out, dev, hangup=cardd_pb2.Hangup(cause=16))

    def _transfer_into_queue_leg(self, out, held: Call, active: Call, dev: Device, now) -> None:
        """TransferCall of a consultation that went to a queue: the held parties take the
        consultation's place, and its call goes on (it is the queue's entry: waiting, it
        keeps its position; answered, the agent stays on it). The transferring device
        leaves both; the caller's number and data come along; the held call ends without
        a CDR of its own (Transferred names it as secondary_call_id)."""
        self._cmd(out, dev, unbridge=cardd_pb2.Unbridge())
        self._cmd(out, dev, stop_media=cardd_pb2.StopMedia())   # the queue's music
        for d_id, conn in held.connections.items():
            if d_id == dev.id or conn.state == ConnState.NULL:
                continue
            active.connections[d_id] = Connection(active.id, d_id, conn.state)
            leg = held.leg(d_id)
            active.legs.append(Leg(device=d_id, role="transferred",
                                   started=leg.started if leg else now,
                                   answered=leg.answered if leg else None))
            self.parties[d_id].call_id = active.id
        active.connections[dev.id].state = ConnState.NULL
        leg = active.leg(dev.id)
        if leg:
            leg.ended = now
        party = self.parties[dev.id]
        party.held_call_id = party.call_id = ""
        queue = active.data.get("queue")
        active.data.update(held.data)               # the caller's data, and its queue
        if queue is not None:
            active.data["queue"] = queue
        active.data["transferred_from"] = held.id
        active.calling = held.calling
        parties = self._others(active, dev.id)
        for d in parties:                            # the hold tone ends
            self._cmd(out, d, stop_media=cardd_pb2.StopMedia())
        live = [d for d in parties if active.connections[d.id].state == ConnState.CONNECTED]
        if len(live) == 2:
            self._bridge(out, live[0], live[1])
        active.transfers = held.transfers + active.transfers + [
            f"{dev.id}->{active.id}"]
        held.connections.clear()
        del self.calls[held.id]
        self._event(out, "Transferred", active, now, device=dev.id, secondary_call_id=held.id,
                    cause="transfer")
        if dev.type == DeviceType.EXTENSION and party.off_hook:
            self._cmd(out, dev, hangup=cardd_pb2.Hangup(cause=16))

    def _req_conference_call(self, out, r, now):
        held, active, dev = self._merge(out, r, now, "Conferenced")
        waiting = [d for d, c in active.connections.items() if c.state == ConnState.QUEUED]
        if waiting:
            raise RequestError(f"call {active.id} is waiting in {waiting[0]}: a queue cannot "
                               "be conferenced (transfer the call to it, or clear the "
                               "consultation)")
        conf = f"conf-{held.id}"
        for d_id, conn in active.connections.items():
            if d_id != dev.id and conn.state != ConnState.NULL:
                held.connections[d_id] = Connection(held.id, d_id, conn.state)
                held.legs.append(Leg(device=d_id, role="conferenced", started=now, answered=now))
                self.parties[d_id].call_id = held.id
        held.connections[dev.id].state = ConnState.CONNECTED
        self.parties[dev.id].call_id, self.parties[dev.id].held_call_id = held.id, ""
        for d_id, conn in held.connections.items():
            if conn.state == ConnState.CONNECTED:
                d = self.devices[d_id]
                self._cmd(out, d, unbridge=cardd_pb2.Unbridge())
                self._cmd(out, d, stop_media=cardd_pb2.StopMedia())
                self._cmd(out, d, conference_join=cardd_pb2.ConferenceJoin(conference=conf, mode="talk"))
        del self.calls[active.id]
        self._event(out, "Conferenced", held, now, device=dev.id, secondary_call_id=active.id)

    def _transfer_target(self, to: str, now: float) -> tuple[str, str]:
        """Where a blind transfer goes: an extension, or a queue ("queue:NAME", or a number
        whose route is a queue). Checked before anything changes: a refusal leaves the call
        as it was."""
        if to.startswith("queue:"):
            target, number = to, ""
        else:
            d = self.dialplan.decide(to, self._when(now), source="extension", complete=True)
            if d.kind != "route" or d.target.split(":", 1)[0] not in ("ext", "queue"):
                raise RequestError(f"no extension or queue route for {to!r}")
            target, number = d.target, d.number
        if target.startswith("queue:"):
            self._check_queue(target, to, "transfer to")
        return target, number

    def _check_queue(self, target: str, to: str, verb: str) -> None:
        via = "" if to == target else f" (the route for {to!r})"
        if "queue" not in self.services:
            raise RequestError(f"cannot {verb} {target}{via}: this ctid has no ACD")
        dev = self.devices.get(target)
        if dev is None or dev.type != DeviceType.ACD_GROUP:
            raise RequestError(f"cannot {verb} {target}{via}: no such queue")

    def _req_single_step_transfer(self, out, r, now):
        call = self._call(r.call_id)
        dev = self._device(r.device)
        self._conn(call, dev.id, ConnState.CONNECTED)
        target, number = self._transfer_target(r.to, now)
        to_queue = target.startswith("queue:")
        others = self._others(call, dev.id)
        self._cmd(out, dev, unbridge=cardd_pb2.Unbridge())
        call.connections[dev.id].state = ConnState.NULL
        leg = call.leg(dev.id)
        if leg:
            leg.ended = now
        self.parties[dev.id].call_id = ""
        call.transfers.append(f"{dev.id}->{target}")
        self._event(out, "Transferred", call, now, device=dev.id, cause="transfer",
                    reason=f"to {target}")
        if dev.type == DeviceType.EXTENSION and self.parties[dev.id].off_hook:
            self._cmd(out, dev, hangup=cardd_pb2.Hangup(cause=16))
        origin = others[0] if others else dev
        for o in others:
            if o.type == DeviceType.EXTENSION and not to_queue:   # a queue plays its music
                self._cmd(out, o, play_tone=cardd_pb2.PlayTone(tone="ringback"))
        self._deliver(out, call, origin, target, number, now, caller_id=call.calling)

    def _req_deflect_call(self, out, r, now):
        call = self._call(r.call_id)
        dev = self._device(r.device)
        self._conn(call, dev.id, ConnState.ALERTING)
        d = self.dialplan.decide(r.to, self._when(now), source="extension", complete=True)
        if d.kind != "route":
            raise RequestError(f"no route for {r.to!r}")
        self._cmd(out, dev, hangup=cardd_pb2.Hangup(cause=16))
        call.connections[dev.id].state = ConnState.NULL
        self.parties[dev.id].call_id = ""
        self.parties[dev.id].ring_deadline = None
        origin = next(iter(self._others(call, dev.id)), dev)
        self._event(out, "Diverted", call, now, device=dev.id)
        self._deliver(out, call, origin, d.target, d.number, now, caller_id=call.calling)

    def _req_generate_digits(self, out, r, now):
        call = self._call(r.call_id)
        self._conn(call, r.device, ConnState.CONNECTED)
        if not r.digits or any(c not in "0123456789*#ABCD" for c in r.digits):
            raise RequestError(f"digits must be 0-9 * # A-D, got {r.digits!r}")
        for other in self._others(call, r.device):
            self._cmd(out, other, send_digits=cardd_pb2.SendDigits(digits=r.digits))

    def _req_set_user_data(self, out, r, now):
        call = self._call(r.call_id)
        call.data.update(r.data)

    def _req_snapshot_device(self, out, r, now):
        return cti_pb2.Reply(devices=[self.device_pb(self._device(r.device))])

    def _req_snapshot_call(self, out, r, now):
        return cti_pb2.Reply(calls=[self.call_pb(self._call(r.call_id))])

    # ---- snapshots ----------------------------------------------------------------------
    def device_pb(self, d: Device) -> cti_pb2.Device:
        pb = cti_pb2.Device(id=d.id, type=_DEVTYPE_PB[d.type], name=d.name, in_service=d.in_service)
        for call in self.calls.values():
            c = call.connection(d.id)
            if c is not None and c.state != ConnState.NULL:
                pb.connections.add(call_id=call.id, device=d.id, state=_STATE_PB[c.state])
        return pb

    def call_pb(self, call: Call) -> cti_pb2.Call:
        pb = cti_pb2.Call(call_id=call.id, started=call.started)
        for c in call.connections.values():
            if c.state != ConnState.NULL:
                pb.connections.add(call_id=call.id, device=c.device, state=_STATE_PB[c.state])
        pb.data.update(call.data)
        return pb

    def snapshot(self) -> tuple[list[cti_pb2.Device], list[cti_pb2.Call]]:
        return ([self.device_pb(d) for d in self.devices.values()],
                [self.call_pb(c) for c in self.calls.values()])
