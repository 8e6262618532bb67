"""The IVR as a routing service of ctid's call model: targets "ivr:FLOW".

`IvrRouting` implements the call model's service interface (ctid/model/callmodel.py):
- route(): a call routed to "ivr:FLOW" is answered (inbound trunk), connected to an IVR
  port device ("ivr:port<N>", a virtual device of type IVR_PORT; Established is published
  for it) and handed to an IvrSession through IvrService;
- channel_event(): digits and prompt ends on the caller's channel go to the session (and
  are consumed); a hang-up goes to the session and on to the model, which clears the call;
- tick(): session timers, look-up answers, rendered prompts, external IVR commands;
- observe(): when a call the IVR transferred is answered, the caller's channel stops any
  tone the IVR started (ringback), so the bridge is clean.

The session's leaving actions become call model operations: Queue and Transfer put the
IVR's attached data (the trail) on the call and route it on (the agent's Delivered event
carries it), then the IVR port leaves the call; Hangup clears the call. RecordVoicemail
becomes a Record command to the caller's cardd (file `voicemail/<mailbox>/<call>-<time>.wav`
under cardd's run_dir; '#' keyed while recording sends StopRecord) and cardd's RecordDone
event goes back to the session; a `recorder` callable given replaces that. FaxBack goes to
the `fax` callable given (ctid's fax service).
"""
from __future__ import annotations

import datetime as dt
import logging
import re
from typing import Callable

from ctid.model.calls import ConnState, Device, DeviceType
from hotline_proto import cardd_pb2

from . import interpreter as ia
from .service import CallAction, ChannelCommand, IvrError, IvrService

log = logging.getLogger(__name__)

CAUSE_UNALLOCATED = 1
CAUSE_NO_CIRCUIT = 34


class IvrRouting:
    requests: tuple[str, ...] = ()

    def __init__(self, service: IvrService, *, max_ports: int = 480,
                 recorder: Callable | None = None, fax: Callable | None = None,
                 store=None, stats_every_s: float = 60.0):
        self.svc = service
        self.max_ports = max_ports
        self.recorder = recorder
        self.fax = fax
        self.store = store
        self.stats_every_s = stats_every_s
        self._next_stats: float | None = None
        self.port_of: dict[str, str] = {}          # call id -> IVR port device id
        self._origin: dict[str, str] = {}          # call id -> the caller's device id
        self._transferred: dict[str, str] = {}     # call id -> caller device to quieten
        self._caller_gone: set[str] = set()        # the model clears these calls itself
        self._recording: set[str] = set()          # calls whose caller cardd records now

    # ---- the call model's service interface ------------------------------------------------
    def route(self, model, out, call, origin: Device, name: str, number: str, now: float,
              caller_id: str | None) -> None:
        if origin.channel is None:
            self._refuse(model, out, call, origin, now, "the caller has no channel for the IVR")
            return
        if name not in self.svc.flows:
            self._refuse(model, out, call, origin, now, f"no IVR flow named {name!r}",
                         cause=CAUSE_UNALLOCATED)
            return
        port = self._free_port(model)
        if port is None:
            self._refuse(model, out, call, origin, now, f"all {self.max_ports} IVR ports busy")
            return
        if origin.type == DeviceType.TRUNK:
            model.command(out, origin, answer=cardd_pb2.Answer())
            call.data["answered_trunk"] = origin.id
        else:
            model.command(out, origin, stop_media=cardd_pb2.StopMedia())   # dial tone
        model.connect(call, port.id, ConnState.CONNECTED, now, "ivr")
        call.data["ivr"] = name
        self.port_of[call.id] = port.id
        self._origin[call.id] = origin.id
        model.event(out, "Established", call, now, device=port.id)
        try:
            effects = self.svc.start(call.id, name, origin.channel.node, origin.channel.channel,
                                     ani=call.data.get("ani", call.calling),
                                     dnis=call.data.get("dnis", call.called or number),
                                     data=dict(call.data), now=now)
        except IvrError as e:
            self._leave(model, out, call, now, str(e))
            self._refuse(model, out, call, origin, now, str(e))
            return
        self._carry_out(model, out, effects, now)

    def channel_event(self, model, out, device: Device, event, now: float) -> bool:
        if device.channel is None:
            return False
        call_id = self.svc.call_on(device.channel.node, device.channel.channel)
        if call_id is None:
            return False
        kind = event.WhichOneof("kind")
        if kind == "record_done":
            self._recording.discard(call_id)
            r = event.record_done
            self.record_done(model, out, call_id, r.ok, r.path, r.duration_s, now)
            return True
        if kind == "digit" and call_id in self._recording:
            if event.digit.digit == "#":              # "press # when you are done"
                model.command(out, device, stop_record=cardd_pb2.StopRecord())
            return True
        if kind in ("digit", "prompt_done"):
            self._carry_out(model, out, self.svc.on_channel_event(device.channel.node, event, now), now)
            return True
        if kind in ("cleared", "on_hook"):
            self._caller_gone.add(call_id)
            self._carry_out(model, out, self.svc.hangup(call_id, now), now)
        return False                    # the model clears the party (and the call)

    def tick(self, model, out, now: float) -> None:
        self._carry_out(model, out, self.svc.tick(now), now)
        if self.store is not None:
            if self._next_stats is None:
                self._next_stats = now + self.stats_every_s
            elif now >= self._next_stats:
                self._next_stats = now + self.stats_every_s
                for row in self.svc.stats.drain(now):
                    try:
                        self.store.submit("ivr_node_stats", row)
                    except Exception as e:      # no such table yet: say so once a period
                        log.warning("IVR statistics not stored: %s", e)
                        break

    def observe(self, model, out, events, now: float) -> None:
        # The ringback played to a transferred caller is stopped by the model when the
        # target answers (it stops what services played to trunks); only older models
        # without that need it done here.
        if hasattr(model, "deliver"):
            return
        for e in events:
            if e.name == "Established" and e.call_id in self._transferred:
                caller = model.devices.get(self._transferred.pop(e.call_id))
                if caller is not None:
                    model.command(out, caller, stop_media=cardd_pb2.StopMedia())
            elif e.name == "CallCleared":
                self._transferred.pop(e.call_id, None)

    # ---- recording and fax results from ctid's services ------------------------------------
    def record_done(self, model, out, call_id: str, ok: bool, path: str, duration_s: float,
                    now: float) -> None:
        self._carry_out(model, out, self.svc.record_done(call_id, ok, path, duration_s, now), now)

    # ---- effects ---------------------------------------------------------------------------
    def _carry_out(self, model, out, effects, now: float) -> None:
        for eff in effects:
            if isinstance(eff, ChannelCommand):
                out.commands.append((eff.node, eff.command))
            elif isinstance(eff, CallAction):
                self._call_action(model, out, eff.call_id, eff.action, now)

    def _call_action(self, model, out, call_id: str, a: ia.Action, now: float) -> None:
        call = model.calls.get(call_id)
        origin = model.devices.get(self._origin.get(call_id, ""))
        if isinstance(a, ia.End):
            if call is not None and call_id not in self._caller_gone:
                self._leave(model, out, call, now, a.outcome)
            self.port_of.pop(call_id, None)
            self._origin.pop(call_id, None)
            self._caller_gone.discard(call_id)
            self._recording.discard(call_id)
            return
        if call is None or origin is None:
            return                                   # the caller is gone already
        if isinstance(a, ia.Hangup):
            model.clear_call(out, call, a.cause, now)
        elif isinstance(a, ia.Queue):
            call.data.update(a.data)
            call.data["queue_priority"] = str(a.priority)
            self._route_on(model, out, call, origin, f"queue:{a.queue}", a.queue, now)
        elif isinstance(a, ia.Transfer):
            call.data.update(a.data)
            when = dt.datetime.fromtimestamp(now, model.tz)
            d = model.dialplan.decide(a.number, when, source="extension", complete=True)
            if d.kind != "route":
                model.event(out, "Failed", call, now, device=self.port_of.get(call_id, ""),
                            cause="invalidNumber", reason=f"IVR transfer to {a.number!r}: no route")
                model.clear_call(out, call, CAUSE_UNALLOCATED, now)
                return
            if origin.type == DeviceType.TRUNK and d.target.startswith(("ext:", "trunk:")):
                model.command(out, origin, play_tone=cardd_pb2.PlayTone(tone="ringback"))
                self._transferred[call.id] = origin.id
            self._route_on(model, out, call, origin, d.target, d.number, now)
        elif isinstance(a, ia.RecordVoicemail):
            if self.recorder is not None:
                self.recorder(call, origin, a)
            elif origin.channel is None:
                log.warning("IVR %s: the caller has no channel; voicemail for %s not recorded",
                            call_id, a.mailbox)
                self._carry_out(model, out, self.svc.record_done(call_id, False, "", 0.0, now), now)
            else:
                model.command(out, origin, record=cardd_pb2.Record(
                    path=voicemail_path(a.mailbox, call_id, now), max_s=a.max_s,
                    silence_s=a.silence_s, beep=a.beep))
                self._recording.add(call_id)
        elif isinstance(a, ia.FaxBack):
            if self.fax is None:
                log.warning("IVR %s: no fax service; %s not sent to %s", call_id, a.document, a.number)
            else:
                self.fax(call, a)

    def _route_on(self, model, out, call, origin, target: str, number: str, now: float) -> None:
        model.deliver(out, call, origin, target, number, now, caller_id=call.calling)

    def _leave(self, model, out, call, now: float, reason: str) -> None:
        """The IVR port leaves the call (the call goes on if two parties remain)."""
        port_id = self.port_of.get(call.id)
        conn = call.connections.get(port_id) if port_id else None
        if conn is not None and conn.state != ConnState.NULL and call.id in model.calls:
            model.clear_connection(out, call, model.devices[port_id], 16, now, reason=f"ivr {reason}")

    def _refuse(self, model, out, call, origin, now, reason: str,
                cause: int = CAUSE_NO_CIRCUIT) -> None:
        log.warning("IVR refused call %s: %s", call.id, reason)
        model.event(out, "Failed", call, now, device=origin.id, cause="notAvailable", reason=reason)
        if call.id in model.calls:
            model.clear_call(out, call, cause, now)

    def _free_port(self, model) -> Device | None:
        busy = set(self.port_of.values())
        for n in range(1, self.max_ports + 1):
            dev_id = f"ivr:port{n}"
            dev = model.devices.get(dev_id)
            if dev is None:
                return model.add_device(Device(dev_id, DeviceType.IVR_PORT, name=f"IVR port {n}"))
            if dev_id not in busy and not model.parties[dev_id].call_id:
                return dev
        return None


def voicemail_path(mailbox: str, call_id: str, now: float) -> str:
    """Where cardd writes a message (relative: under cardd's run_dir); names are reduced to
    safe characters so a mailbox or call id can never leave the voicemail folder."""
    def safe(text: str) -> str:
        return re.sub(r"[^A-Za-z0-9_-]", "_", text) or "_"
    stamp = dt.datetime.fromtimestamp(now).strftime("%Y%m%d-%H%M%S")
    return f"voicemail/{safe(mailbox)}/{safe(call_id)}-{stamp}.wav"


SETTINGS = {"flows", "tts_cache", "prewarm", "sources", "apps", "pin", "max_ports",
            "stats_every_s", "lookup_workers", "render_workers"}


class IvrSettingsError(ValueError):
    pass


def from_settings(settings: dict, run_dir: str, store=None, *, recorder=None,
                  fax=None) -> IvrRouting:
    """Build the IVR service from ctid.toml's [ivr] table:

        [ivr]
        flows = ["etc/ivr"]                 # files or folders, validated (FlowError if not)
        tts_cache = "run/tts-cache"         # default: RUN_DIR/tts-cache (cardd must read it)
        prewarm = true                      # render every static prompt at start
        max_ports = 480
        [ivr.sources]                       # deployment URLs for the flows' sources
        billing = "postgresql+psycopg2://ivr@db/billing"
        [ivr.apps]                          # external IVR applications
        survey = "tcp://10.0.0.5:5600"
        [ivr.pin]                           # PIN lockout policy
        max_failures = 3
        lock_minutes = 30                   # 0: until unlocked by hand
        lock_on = ["account", "caller"]
    """
    import os

    from .external import ExternalBridge
    from .lookup import LookupService
    from .prompts import PromptResolver
    from .security import PinGuard, guard_from_config, storage_audit_row
    from .tts import Tts
    from .validate import load_checked

    unknown = set(settings) - SETTINGS
    if unknown:
        raise IvrSettingsError(f"[ivr]: unknown key {sorted(unknown)[0]!r} "
                               f"(expected {', '.join(sorted(SETTINGS))})")
    for key in ("sources", "apps", "pin"):
        if not isinstance(settings.get(key, {}), dict):
            raise IvrSettingsError(f"[ivr] {key}: must be a table")
    flows = load_checked(settings.get("flows") or ["etc/ivr"])
    tts = Tts(settings.get("tts_cache") or os.path.join(run_dir, "tts-cache"))
    resolver = PromptResolver(tts)
    if settings.get("prewarm", True):
        resolver.prewarm(flows)
    audit = None
    if store is not None:
        audit = lambda row: store.submit_audit(storage_audit_row(row))   # noqa: E731
    guard = PinGuard(guard_from_config(settings.get("pin")), audit=audit)
    apps = settings.get("apps") or {}
    service = IvrService(flows, resolver,
                         lookups=LookupService(int(settings.get("lookup_workers", 4)),
                                               overrides=settings.get("sources") or {}),
                         guard=guard, external=ExternalBridge(apps) if apps else None,
                         render_workers=int(settings.get("render_workers", 2)))
    return IvrRouting(service, max_ports=int(settings.get("max_ports", 480)), recorder=recorder,
                      fax=fax, store=store, stats_every_s=float(settings.get("stats_every_s", 60.0)))
