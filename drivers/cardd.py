"""cardd: the card driver daemon.

One loop, paced by the audio clock (the backend's exchange() returns when the next block
of every port is ready): hardware events to the signaling modules, one media-engine tick
for all channels, timers, commands from the ROUTER socket, actions carried out, events
published. Nothing here blocks on disk, a database or a slow peer.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import sys
import time

import numpy as np
import zmq

from drivers import config as config_mod
from drivers.backends import BackendError, open_backend
from drivers.backends.base import HwEvent, PortInfo, PortKind
from drivers.bus import CommandServer, EventPublisher
from drivers.media import g711
from drivers.metrics import CarddMetrics
from drivers.recording import RecordError, Recordings, RecordSpec, resolve_path
from drivers.signaling import events as ev
from drivers.signaling.r2.line import SetCas
from hotline_proto import cardd_pb2

log = logging.getLogger("cardd")

# Signaling call events -> the ChannelEvent oneof field that carries them.
_EVENT_FIELD = {
    ev.OffHook: "off_hook", ev.OnHook: "on_hook", ev.Flash: "flash", ev.Digit: "digit",
    ev.Incoming: "incoming", ev.Proceeding: "proceeding", ev.Alerting: "alerting",
    ev.Answered: "answered", ev.Cleared: "cleared", ev.ServiceChange: "service",
    ev.ToneDetected: "tone", ev.PromptDone: "prompt_done", ev.CallerIdSent: "caller_id_sent",
    ev.DialComplete: "dial_complete",
    ev.Progress: "progress", ev.ChannelReset: "channel_reset", ev.DChannel: "dchannel",
}

# Commands the signaling module handles, with how to read their arguments.
_LINE_COMMANDS = {
    "answer": lambda c: {},
    "hangup": lambda c: {"cause": c.hangup.cause or ev.CAUSE_NORMAL_CLEARING},
    "dial": lambda c: _dial_args(c.dial),
    "play_tone": lambda c: {"tone": c.play_tone.tone},
    "stop_media": lambda c: {},
    "ring": lambda c: {"caller_id": c.ring.caller_id, "caller_name": c.ring.caller_name},
    "play_prompt": lambda c: {"files": list(c.play_prompt.files), "barge_in": c.play_prompt.barge_in,
                              "id": c.play_prompt.id},
    "send_digits": lambda c: {"digits": c.send_digits.digits},
    "reset_channel": lambda c: {},
    "set_service": lambda c: {"in_service": c.set_service.in_service},
}


def _dial_args(d) -> dict:
    """The number, plus the ISDN details the command sets (for span signaling lines)."""
    args = {"number": d.number}
    for name in ("ani", "caller_name", "called_ton", "called_plan", "calling_ton",
                 "calling_plan", "presentation", "redirecting", "redirecting_reason",
                 "channel_mode"):
        if getattr(d, name):
            args[name] = getattr(d, name)
    if d.overlap:
        args["overlap"] = True
    return args


class CommandError(Exception):
    pass


_BEEP_TAG = ("record", "beep")       # the recording beep's PlayDone is not the line's business


@dataclasses.dataclass
class Slot:
    """One configured channel: its row in every audio block and its signaling."""
    channel: int
    span: int
    row: int
    port: str
    line: object
    call_id: str = ""
    ani: str = ""
    dnis: str = ""
    in_service: bool = True
    faulted: bool = False


def make_line(ch: config_mod.ChannelConfig, block: int):
    """The signaling state machine for one channel (analog now; E1 through span signaling)."""
    from drivers.signaling.analog import config as analog_config
    from drivers.signaling.analog.fxo import FxoLine
    from drivers.signaling.analog.fxs import FxsLine

    fields = {f.name for f in dataclasses.fields(analog_config.AnalogConfig)}
    opts = {k: v for k, v in ch.options.items() if k in fields}
    if "tick_ms" in fields:
        opts["tick_ms"] = block * 1000 // 8000
    cfg = analog_config.AnalogConfig(**opts)
    cls = FxsLine if ch.port == "fxs" else FxoLine
    return cls(ch.channel, cfg)


class Cardd:
    def __init__(self, cfg: config_mod.CarddConfig, ctx: zmq.Context | None = None):
        self.cfg = cfg
        self.ctx = ctx or zmq.Context.instance()
        self.metrics = CarddMetrics()
        self.running = False
        self.tick = 0
        self.call_counter = 0
        self.started = time.time()
        self.backend = None
        self.engine = None
        self.slots: dict[int, Slot] = {}
        self.by_row: dict[int, Slot] = {}

    # ---- start-up ---------------------------------------------------------------------
    def open(self) -> None:
        cfg = self.cfg
        self.spansig = SpanSignaling(self)
        for ch in cfg.channels:
            if ch.port == "e1" and ch.span not in self.spansig.spans:
                raise BackendError(f"{cfg.path}: span {ch.span}: E1 signaling "
                                   f"({ch.signaling}) is not available in this version of cardd")
        options = dict(cfg.backend_options)
        if cfg.backend == "dahdi":
            options.setdefault("channels", [PortInfo(channel=c.channel, span=c.span,
                                                     kind=PortKind(c.port)) for c in cfg.channels])
            options.setdefault("spans", cfg.spans)
            options.setdefault("block", cfg.block)
            options.setdefault("law", cfg.law)
        self.backend = open_backend(cfg.backend, **options)
        inv = self.backend.open()
        if inv.law != cfg.law or inv.block != cfg.block:
            raise BackendError(f"backend runs {inv.law}/{inv.block} samples, config wants "
                               f"{cfg.law}/{cfg.block}")
        rows = {p.channel: (i, p) for i, p in enumerate(inv.ports)}
        for ch in cfg.channels:
            if ch.channel not in rows:
                raise BackendError(f"{cfg.path}: channel {ch.channel} is configured but the "
                                   f"{cfg.backend} backend has no such port")
            row, port = rows[ch.channel]
            if PortKind(port.kind).value != ch.port:
                raise BackendError(f"{cfg.path}: channel {ch.channel} is configured as {ch.port} "
                                   f"but the hardware port is {PortKind(port.kind).value}")
            slot = Slot(channel=ch.channel, span=ch.span, row=row, port=ch.port,
                        line=self.spansig.line(ch) or make_line(ch, cfg.block))
            self.slots[ch.channel] = slot
            self.by_row[row] = slot
        from drivers.media.engine import MediaEngine
        self.engine = MediaEngine(len(inv.ports), block=cfg.block, law=cfg.law, plan=cfg.tone_plan)
        self.recordings = Recordings(cfg.law, cfg.block)
        self.inventory = inv
        self.tx = np.full((len(inv.ports), cfg.block), g711.silence_byte(cfg.law), dtype=np.uint8)
        self.span_alarms = {s.span: s.alarms for s in inv.spans}
        self.publisher = EventPublisher(self.ctx, cfg.events_endpoint, cfg.node)
        self.commands = CommandServer(self.ctx, cfg.commands_endpoint)
        self._publish(0, 0, "", "node_started",
                      cardd_pb2.NodeStarted(spans=len(inv.spans), channels=len(self.slots)))
        self.spansig.start(inv)
        self._update_channel_gauges()

    # ---- the loop ---------------------------------------------------------------------
    def run(self, max_ticks: int | None = None) -> None:
        self.running = True
        block_s = self.cfg.block / 8000
        while self.running and (max_ticks is None or self.tick < max_ticks):
            self.waiting = True            # a stop signal may interrupt the wait for audio
            try:
                tin = self.backend.exchange(self.tx)
            finally:
                self.waiting = False
            started = time.perf_counter()
            self.tick = tin.tick if tin.tick else self.tick + 1
            self.step(tin)
            took = time.perf_counter() - started
            self.metrics.tick_seconds.observe(took)
            if took > block_s:
                self.metrics.late_ticks.inc()

    def step(self, tin) -> None:
        for hw in tin.events:
            if hw.channel == 0:
                self._span_event(hw)
                continue
            slot = self.slots.get(hw.channel)
            if slot is not None:
                # CAS lines need the bits that came with BITSCHANGED, not just the code.
                event = hw if hw.event == HwEvent.BITSCHANGED else HwEvent(hw.event)
                self._drive(slot, "on_hw", event, self.tick)
        self.spansig.step(tin)
        self.tx, media_events = self.engine.tick(tin.rx)
        for me in media_events:
            if getattr(me, "tag", None) == _BEEP_TAG:
                self.recordings.beep_done(me.row)
                continue
            slot = self.by_row.get(me.row)
            if slot is not None:
                self._drive(slot, "on_media", me, self.tick)
        for slot in self.slots.values():
            self._drive(slot, "on_tick", self.tick)
        for route, cmd in self.commands.poll():
            self.commands.reply(route, self.handle_command(cmd))
        if self.recordings.busy:
            self._recordings_step()
        for reason, count in self.commands.rejected.items():
            if count:
                self.metrics.rejected.labels(reason).inc(count)
                self.commands.rejected[reason] = 0
        if self.tick % 50 == 0:
            self._update_channel_gauges()

    # ---- signaling --------------------------------------------------------------------
    def _drive(self, slot: Slot, method: str, *args, **kwargs):
        """Run one signaling input for one channel; a fault there stays in that channel."""
        if slot.faulted:
            return
        try:
            actions = getattr(slot.line, method)(*args, **kwargs)
            self._carry_out(slot, actions)
        except Exception:
            log.exception("channel %d: fault in %s; channel taken out of service", slot.channel, method)
            self.metrics.channel_faults.labels(str(slot.channel)).inc()
            slot.faulted = True
            slot.in_service = False
            self._publish(slot.channel, slot.span, slot.call_id, "service",
                          cardd_pb2.ServiceChange(in_service=False, reason="internal fault"))

    def _carry_out(self, slot: Slot, actions) -> None:
        for action in actions or ():
            if isinstance(action, ev.Hook):
                self.backend.hook(slot.channel, action.op)
            elif isinstance(action, ev.Media):
                getattr(self.engine, action.method)(slot.row, *action.args)
            elif isinstance(action, ev.NewCall):
                self.call_counter += 1
                slot.call_id = f"{self.cfg.node}-{self.call_counter}"
                slot.ani = slot.dnis = ""
            elif isinstance(action, ev.EndCall):
                slot.call_id = ""
            elif isinstance(action, ev.Emit):
                self._emit(slot, action.event)
            elif isinstance(action, ev.SendFrame):
                self.spansig.send_frame(slot.span, action.frame)
            elif isinstance(action, ev.TakeCall):
                self.spansig.take_call(slot, action.from_channel)
            elif isinstance(action, SetCas):
                try:
                    self.backend.set_cas(slot.channel, action.bits)
                except BackendError as e:
                    log.warning("channel %d: CAS bits not sent: %s", slot.channel, e)

    def _emit(self, slot: Slot, event: ev.CallEvent) -> None:
        name = _EVENT_FIELD[type(event)]
        msg_cls = getattr(cardd_pb2, type(event).__name__)   # same names on both sides
        fields = dataclasses.asdict(event)
        if isinstance(event, ev.Digit):
            fields = {"digit": event.digit, "duration_ms": event.duration_ms,
                      "start_time": self.started + event.start_sample / 8000}
        if isinstance(event, ev.Incoming):
            slot.ani, slot.dnis = event.ani, event.dnis
        if isinstance(event, ev.ServiceChange):
            slot.in_service = event.in_service
        self._publish(slot.channel, slot.span, slot.call_id, name, msg_cls(**fields))

    def _publish(self, channel: int, span: int, call_id: str, field: str, message) -> None:
        out = cardd_pb2.ChannelEvent(channel=channel, span=span, call_id=call_id, tick=self.tick)
        getattr(out, field).CopyFrom(message)
        topic = f"ch.{channel}".encode() if channel else (f"span.{span}".encode() if span else b"node")
        self.publisher.publish(out, topic)
        self.metrics.events.labels(field).inc()

    def _span_event(self, hw) -> None:
        alarms = hw.value if hw.event == HwEvent.ALARM else 0
        self.span_alarms[hw.span] = alarms
        self.metrics.span_alarms.labels(str(hw.span)).set(alarms)
        names = _alarm_names(alarms)
        self._publish(0, hw.span, "", "span_alarm", cardd_pb2.SpanAlarm(alarms=alarms, names=names))
        self.spansig.alarm(hw.span, alarms)

    # ---- commands ---------------------------------------------------------------------
    def handle_command(self, cmd: cardd_pb2.Command) -> cardd_pb2.Reply:
        kind = cmd.WhichOneof("kind")
        try:
            reply = self._command(kind, cmd)
            self.metrics.commands.labels(kind, "ok").inc()
        except CommandError as e:
            self.metrics.commands.labels(kind, "error").inc()
            reply = cardd_pb2.Reply(ok=False, error=str(e))
        except Exception as e:  # a signaling refusal (SignalingError) or a fault
            self.metrics.commands.labels(kind, "error").inc()
            if type(e).__name__ != "SignalingError":
                log.exception("command %s on channel %d failed", kind, cmd.channel)
            reply = cardd_pb2.Reply(ok=False, error=str(e) or type(e).__name__)
        reply.id = cmd.id
        reply.seq = self.publisher.seq
        return reply

    def _slot(self, channel: int) -> Slot:
        slot = self.slots.get(channel)
        if slot is None:
            raise CommandError(f"no channel {channel} on this node")
        if slot.faulted:
            raise CommandError(f"channel {channel} is out of service after an internal fault")
        return slot

    def _command(self, kind: str, cmd: cardd_pb2.Command) -> cardd_pb2.Reply:
        if kind == "status":
            return self.status()
        if kind == "capture":
            return self.spansig.capture(cmd.capture)
        slot = self._slot(cmd.channel)
        if kind in _LINE_COMMANDS:
            args = _LINE_COMMANDS[kind](cmd)
            if kind == "dial" and slot.span not in self.spansig.spans:
                args = {"number": args["number"]}     # an analog line dials digits only
            # Check media arguments before the line changes state, so a refusal changes nothing.
            if kind == "play_tone" and args["tone"] not in self.engine.plan:
                raise CommandError(f"tone plan {self.engine.plan.name!r} has no tone "
                                   f"{args['tone']!r}; it has {', '.join(self.engine.plan.names())}")
            if kind == "play_prompt":
                if not args["files"]:
                    raise CommandError("play_prompt needs at least one file")
                for f in args["files"]:
                    if not os.path.isfile(f):
                        raise CommandError(f"prompt file {f!r} does not exist")
            actions = slot.line.on_command(kind, self.tick, **args)
            self._carry_out(slot, actions)
            return cardd_pb2.Reply(ok=True, call_id=slot.call_id)
        if kind == "bridge":
            other = self._slot(cmd.bridge.other_channel)
            if other is slot:
                raise CommandError("cannot bridge a channel to itself")
            self.engine.bridge(slot.row, other.row)
        elif kind == "unbridge":
            self.engine.unbridge(slot.row)
        elif kind == "conference_join":
            j = cmd.conference_join
            if not j.conference:
                raise CommandError("conference_join needs a conference name")
            mode = j.mode or "talk"
            if mode not in ("talk", "listen", "whisper"):
                raise CommandError(f"unknown conference mode {mode!r} (talk, listen, whisper)")
            whisper_row = None
            if mode == "whisper":
                if not j.whisper_to:
                    raise CommandError("a whisper member needs whisper_to (the channel that hears it)")
                whisper_row = self._slot(j.whisper_to).row
            elif j.whisper_to:
                raise CommandError(f"whisper_to is only for mode 'whisper', not {mode!r}")
            from drivers.media.engine import MediaError
            try:
                self.engine.conf_join(j.conference, slot.row, mode, j.gain_db, whisper_row)
            except MediaError as e:            # e.g. whisper_to not in the conference yet
                raise CommandError(str(e)) from None
        elif kind == "conference_leave":
            self.engine.conf_leave(slot.row)
        elif kind == "record":
            self._record(slot, cmd.record)
        elif kind == "stop_record":
            if not self.recordings.stop(slot.row, "stopped"):
                raise CommandError(f"channel {slot.channel} is not recording")
        else:
            raise CommandError(f"command {kind!r} is not supported by cardd")
        return cardd_pb2.Reply(ok=True, call_id=slot.call_id)

    # ---- recording ----------------------------------------------------------------------
    def _record(self, slot: Slot, r) -> None:
        if not slot.call_id:
            raise CommandError(f"channel {slot.channel} has no call to record")
        try:
            spec = RecordSpec(resolve_path(self.cfg.run_dir, r.path), r.max_s, r.silence_s, r.beep)
            beep = self.recordings.start(slot.row, spec, owner=slot.call_id)
        except RecordError as e:
            raise CommandError(str(e)) from None
        self.engine.tap(slot.row, self.recordings)
        if beep is not None:
            self.engine.play(slot.row, beep, tag=_BEEP_TAG)

    def _recordings_step(self) -> None:
        """A recording ends when its call does; ended ones are untapped, and each closed
        file is announced with a RecordDone event."""
        for row, rec in list(self.recordings.active.items()):
            if self.by_row[row].call_id != rec.owner:
                self.recordings.stop(row, "hangup")
        for row in self.recordings.released():
            if not self.recordings.recording(row):
                self.engine.untap(row)
        for done in self.recordings.step():
            slot = self.by_row[done.row]
            self._publish(slot.channel, slot.span, done.owner, "record_done", cardd_pb2.RecordDone(
                path=done.path, duration_s=done.duration_s, ok=done.ok, reason=done.reason))

    def status(self) -> cardd_pb2.Reply:
        reply = cardd_pb2.Reply(ok=True)
        for s in self.inventory.spans:
            alarms = self.span_alarms.get(s.span, 0)
            reply.spans.add(span=s.span, name=s.name, kind=s.kind, alarms=alarms,
                            alarm_names=_alarm_names(alarms),
                            channels=sum(1 for x in self.slots.values() if x.span == s.span),
                            **self.spansig.status(s.span))
        for slot in self.slots.values():
            reply.channels.add(channel=slot.channel, span=slot.span,
                               signaling=self.spansig.signaling(slot.span)
                               or _SIGNALING.get(slot.port, cardd_pb2.SIG_FXO),
                               state=self.channel_state(slot), call_id=slot.call_id,
                               ani=slot.ani, dnis=slot.dnis, in_service=slot.in_service,
                               **self._media_links(slot))
        return reply

    def _media_links(self, slot: Slot) -> dict:
        """The bridge or conference a channel is in, so a restarted ctid can rebuild calls."""
        partner = self.engine.mixer.partner(slot.row)
        member = self.engine.mixer.membership(slot.row)
        other = self.by_row.get(partner) if partner is not None else None
        return {"bridged_with": other.channel if other else 0,
                "conference": str(member.conf) if member else ""}

    def channel_state(self, slot: Slot) -> int:
        if slot.faulted or not slot.in_service:
            return cardd_pb2.OUT_OF_SERVICE
        wire = getattr(slot.line, "wire_state", None)      # the line's own word for it
        if wire and wire in cardd_pb2.ChannelState.keys():
            return cardd_pb2.ChannelState.Value(wire)
        name = getattr(getattr(slot.line, "state", None), "name", "IDLE").upper()
        return _STATE_MAP.get(name, cardd_pb2.CONNECTED if slot.call_id else cardd_pb2.IDLE)

    def _update_channel_gauges(self) -> None:
        counts: dict[str, int] = {}
        for slot in self.slots.values():
            name = cardd_pb2.ChannelState.Name(self.channel_state(slot)).lower()
            counts[name] = counts.get(name, 0) + 1
        for state in cardd_pb2.ChannelState.keys()[1:]:
            self.metrics.channels.labels(state.lower()).set(counts.get(state.lower(), 0))

    def close(self) -> None:
        if getattr(self, "recordings", None) is not None:
            self.recordings.close()
        if getattr(self, "spansig", None) is not None:
            self.spansig.close()
        for part in ("publisher", "commands"):
            obj = getattr(self, part, None)
            if obj is not None:
                obj.close()
        if self.backend is not None:
            self.backend.close()


# Signaling modules name their states in their own words; status maps them.
_STATE_MAP = {
    "IDLE": cardd_pb2.IDLE, "DIALTONE": cardd_pb2.DIALTONE, "COLLECTING": cardd_pb2.COLLECTING,
    "RINGING": cardd_pb2.RINGING, "RING_DETECTED": cardd_pb2.RINGING, "OFFERED": cardd_pb2.RINGING,
    "DIALING": cardd_pb2.DIALING, "WAIT_DIALTONE": cardd_pb2.DIALING,
    "PROCEEDING": cardd_pb2.PROCEEDING, "ALERTING": cardd_pb2.ALERTING,
    "CONNECTED": cardd_pb2.CONNECTED, "CLEARING": cardd_pb2.CLEARING, "LOCKOUT": cardd_pb2.CLEARING,
    "OUT_OF_SERVICE": cardd_pb2.OUT_OF_SERVICE, "BLOCKED": cardd_pb2.BLOCKED,
}


_SIGNALING = {"fxs": cardd_pb2.SIG_FXS, "fxo": cardd_pb2.SIG_FXO}


# ---- span signaling (E1 spans: PRI) ---------------------------------------------------------
class SpanSignaling:
    """The span-level signaling cardd runs: one object per E1 span whose signaling has a
    factory in SPAN_FACTORIES (PRI: drivers.signaling.pri.PriSpan). Each gives the lines
    of its channels (`lines`) and takes the span's D-channel frames, alarms, error
    counters and ticks, answering with (channel, action) pairs (channel 0: the span).
    It also writes D-channel captures (configured `pcap`, or the Capture command)."""

    COUNTER_POLL_TICKS = 50

    def __init__(self, daemon: "Cardd"):
        from drivers.signaling.pri.pcap import Captures
        self.d = daemon
        self.spans: dict[int, object] = {}
        self.captures = Captures()
        self.metrics = None
        cfg = daemon.cfg
        for span in cfg.spans:
            factory = SPAN_FACTORIES.get(span.signaling)
            if factory is None or span.kind != "e1":
                continue
            if self.metrics is None:
                from drivers.signaling.span_health import SpanMetrics
                self.metrics = SpanMetrics(daemon.metrics.registry)
            self.spans[span.span] = factory(span, cfg.channels, block=cfg.block, law=cfg.law,
                                            metrics=self.metrics)

    def line(self, ch):
        sig = self.spans.get(ch.span)
        return sig.lines.get(ch.channel) if sig is not None else None

    def signaling(self, span: int) -> int:
        """The Status signaling kind of a span's channels (0: not a signaling span)."""
        sig = self.spans.get(span)
        if sig is None:
            return 0
        return cardd_pb2.SIG_R2 if getattr(sig, "kind", "") == "r2" else cardd_pb2.SIG_PRI

    def start(self, inventory) -> None:
        for span in self.d.cfg.spans:
            path = span.options.get("pcap") if span.span in self.spans else None
            if path:
                self.captures.start(span.span, path, self._network(span.span), None)
        for s in inventory.spans:
            if s.span in self.spans and s.alarms:
                self.alarm(s.span, s.alarms)

    def _network(self, span: int) -> bool:
        return getattr(getattr(self.spans[span], "cfg", None), "node", "") == "network"

    def _when(self) -> float:
        return self.d.started + self.d.tick * self.d.cfg.block / 8000

    def step(self, tin) -> None:
        tick = self.d.tick
        for span, frame in tin.dframes:
            sig = self.spans.get(span)
            if sig is None:
                continue
            self.captures.write(span, frame, False, self._when())
            self._run(sig, "on_dframe", frame, tick)
        for sig in self.spans.values():
            self._run(sig, "on_tick", tick)
        self.captures.expire(tick)
        counters = getattr(self.d.backend, "span_counters", None)
        if counters is not None and tick % self.COUNTER_POLL_TICKS == 0:
            for span, sig in self.spans.items():
                totals = counters(span)
                if totals and self._run(sig, "on_counters", totals, tick, carry=False):
                    self._publish_counters(span, totals)

    def alarm(self, span: int, alarms: int) -> None:
        sig = self.spans.get(span)
        if sig is not None:
            self._run(sig, "on_alarm", alarms, self.d.tick)

    def _run(self, sig, method: str, *args, carry: bool = True):
        """One span-level input; a fault is logged and stays there."""
        try:
            out = getattr(sig, method)(*args)
        except Exception:
            log.exception("span %d: fault in %s", getattr(sig, "span", 0), method)
            self.d.metrics.channel_faults.labels(f"span{getattr(sig, 'span', 0)}").inc()
            return None
        if not carry:
            return out
        for channel, action in out:
            slot = self.d.slots.get(channel) if channel else None
            try:
                if slot is not None:
                    self.d._carry_out(slot, [action])
                elif isinstance(action, ev.SendFrame):
                    self.send_frame(sig.span, action.frame)
                elif isinstance(action, ev.Emit) and not channel:
                    e = action.event
                    self.d._publish(0, sig.span, "", _EVENT_FIELD[type(e)],
                                    getattr(cardd_pb2, type(e).__name__)(**dataclasses.asdict(e)))
            except Exception:
                log.exception("span %d channel %d: fault carrying out %s", sig.span, channel,
                              type(action).__name__)
        return out

    def send_frame(self, span: int, frame: bytes) -> None:
        self.captures.write(span, frame, True, self._when())
        try:
            self.d.backend.send_dframe(span, frame)
        except BackendError as e:
            log.warning("span %d: D-channel frame not sent: %s", span, e)

    def take_call(self, slot: "Slot", from_channel: int) -> None:
        old = self.d.slots.get(from_channel)
        if old is None:
            return
        slot.call_id, slot.ani, slot.dnis = old.call_id, old.ani, old.dnis
        old.call_id = old.ani = old.dnis = ""
        self.d.engine.stop(old.row)

    def _publish_counters(self, span: int, totals: dict) -> None:
        from drivers.signaling.span_health import COUNTERS
        alarms = self.d.span_alarms.get(span, 0)
        self.d._publish(0, span, "", "span_alarm", cardd_pb2.SpanAlarm(
            alarms=alarms, names=_alarm_names(alarms),
            **{k: int(totals.get(k, 0) or 0) for k in COUNTERS}))

    def capture(self, c) -> cardd_pb2.Reply:
        """The Capture command: write span c.span's D-channel to c.path for c.seconds
        (0: stop the span's capture)."""
        if c.span not in self.spans:
            raise CommandError(f"span {c.span} has no D-channel here (PRI spans: "
                               f"{', '.join(map(str, sorted(self.spans))) or 'none'})")
        if c.seconds <= 0:
            if not self.captures.stop(c.span):
                raise CommandError(f"no capture is running on span {c.span}")
            return cardd_pb2.Reply(ok=True)
        if not c.path:
            raise CommandError("capture needs a file path")
        if c.seconds > 86400:
            raise CommandError("capture: at most 86400 seconds")
        ticks = int(round(c.seconds * 8000 / self.d.cfg.block))
        try:
            self.captures.start(c.span, c.path, self._network(c.span), self.d.tick + ticks)
        except Exception as e:
            raise CommandError(str(e)) from None
        return cardd_pb2.Reply(ok=True)

    def status(self, span: int) -> dict:
        sig = self.spans.get(span)
        if sig is None:
            cfg = next((s for s in self.d.cfg.spans if s.span == span), None)
            return {"signaling": (cfg.signaling or cfg.kind) if cfg else "", "in_service": True}
        cfg = next(s for s in self.d.cfg.spans if s.span == span)
        return {"signaling": cfg.signaling, "link_up": bool(getattr(sig, "dchannel_up", False)),
                "in_service": bool(sig.health.in_service)}

    def close(self) -> None:
        self.captures.close()


def _pri_span(span, channels, **kw):
    from drivers.signaling.pri import span_for
    return span_for(span, channels, **kw)


def _r2_span(span, channels, **kw):
    from drivers.signaling.r2 import VariantError
    from drivers.signaling.r2.span import span_for
    try:
        return span_for(span, channels, **kw)
    except VariantError as e:            # a bad variant file: refuse to start, say where
        raise BackendError(f"span {span.span}: R2 variant: {e}") from None


def _alarm_names(alarms: int) -> list[str]:
    from drivers.signaling.span_health import alarm_names
    return alarm_names(alarms)


# signaling (drivers.config SpanConfig.signaling) -> factory(span, channels, block, law,
# metrics) of its span-level object.
SPAN_FACTORIES = {"pri_cpe": _pri_span, "pri_net": _pri_span, "r2": _r2_span}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="cardd", description="Hotline card driver daemon")
    p.add_argument("--config", default="etc/cardd.toml", help="cardd.toml (default: %(default)s)")
    p.add_argument("--check", action="store_true", help="check the configuration and exit")
    p.add_argument("--no-metrics", action="store_true", help="do not serve /metrics")
    p.add_argument("--log-level", default=os.environ.get("CARDD_LOG", "INFO"))
    args = p.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s cardd %(levelname)s %(name)s: %(message)s")
    try:
        cfg = config_mod.load_cardd_config(args.config)
    except config_mod.ConfigError as e:
        print(f"cardd: configuration refused: {e}", file=sys.stderr)
        return 2
    if args.check:
        print(f"{args.config}: ok ({len(cfg.spans)} spans, {len(cfg.channels)} channels)")
        return 0
    os.makedirs(cfg.run_dir, exist_ok=True)
    daemon = Cardd(cfg)
    try:
        daemon.open()
    except (BackendError, OSError) as e:
        print(f"cardd: cannot start: {e}", file=sys.stderr)
        daemon.close()
        return 1
    if not args.no_metrics:
        try:
            daemon.metrics.serve(cfg.metrics_listen)
        except OSError as e:
            log.warning("metrics not served on %s: %s", cfg.metrics_listen, e)

    class Stopped(Exception):
        pass

    def stop(signum, frame):
        daemon.running = False
        if getattr(daemon, "waiting", False):
            raise Stopped()          # blocked waiting for the clock that stopped: leave now
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("running: %d channels on %s backend, events %s, commands %s", len(daemon.slots),
             cfg.backend, cfg.events_endpoint, cfg.commands_endpoint)
    try:
        daemon.run()
    except Stopped:
        pass
    except BackendError as e:
        log.error("backend failed: %s", e)
        return 1
    finally:
        daemon.close()
    log.info("stopped after %d ticks", daemon.tick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
