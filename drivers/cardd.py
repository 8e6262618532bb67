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
from drivers.signaling import events as ev
from hotline_proto import cardd_pb2

log = logging.getLogger("cardd")

# Signaling call events -> the ChannelEvent oneof field that carries them.
_EVENT_FIELD = {
    ev.OffHook: "off_hook", ev.OnHook: "on_hook", ev.Flash: "flash", ev.Digit: "digit",
    ev.Incoming: "incoming", ev.Proceeding: "proceeding", ev.Alerting: "alerting",
    ev.Answered: "answered", ev.Cleared: "cleared", ev.ServiceChange: "service",
    ev.ToneDetected: "tone", ev.PromptDone: "prompt_done", ev.CallerIdSent: "caller_id_sent",
    ev.DialComplete: "dial_complete",
}

# Commands the signaling module handles, with how to read their arguments.
_LINE_COMMANDS = {
    "answer": lambda c: {},
    "hangup": lambda c: {"cause": c.hangup.cause or ev.CAUSE_NORMAL_CLEARING},
    "dial": lambda c: {"number": c.dial.number},
    "play_tone": lambda c: {"tone": c.play_tone.tone},
    "stop_media": lambda c: {},
    "ring": lambda c: {"caller_id": c.ring.caller_id, "caller_name": c.ring.caller_name},
    "play_prompt": lambda c: {"files": list(c.play_prompt.files), "barge_in": c.play_prompt.barge_in},
    "send_digits": lambda c: {"digits": c.send_digits.digits},
}


class CommandError(Exception):
    pass


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
        for ch in cfg.channels:
            if ch.port == "e1":
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
                        line=make_line(ch, cfg.block))
            self.slots[ch.channel] = slot
            self.by_row[row] = slot
        from drivers.media.engine import MediaEngine
        self.engine = MediaEngine(len(inv.ports), block=cfg.block, law=cfg.law, plan=cfg.tone_plan)
        self.inventory = inv
        self.tx = np.full((len(inv.ports), cfg.block), g711.silence_byte(cfg.law), dtype=np.uint8)
        self.span_alarms = {s.span: s.alarms for s in inv.spans}
        self.publisher = EventPublisher(self.ctx, cfg.events_endpoint, cfg.node)
        self.commands = CommandServer(self.ctx, cfg.commands_endpoint)
        self._publish(0, 0, "", "node_started",
                      cardd_pb2.NodeStarted(spans=len(inv.spans), channels=len(self.slots)))
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
                self._drive(slot, "on_hw", HwEvent(hw.event), self.tick)
        self.tx, media_events = self.engine.tick(tin.rx)
        for me in media_events:
            slot = self.by_row.get(me.row)
            if slot is not None:
                self._drive(slot, "on_media", me, self.tick)
        for slot in self.slots.values():
            self._drive(slot, "on_tick", self.tick)
        for route, cmd in self.commands.poll():
            self.commands.reply(route, self.handle_command(cmd))
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
        from drivers.backends.base import SpanAlarm
        names = [a.name.lower() for a in SpanAlarm if a and alarms & a]
        self._publish(0, hw.span, "", "span_alarm", cardd_pb2.SpanAlarm(alarms=alarms, names=names))

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
        slot = self._slot(cmd.channel)
        if kind in _LINE_COMMANDS:
            args = _LINE_COMMANDS[kind](cmd)
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
            self.engine.conf_join(j.conference, slot.row, mode, j.gain_db)
        elif kind == "conference_leave":
            self.engine.conf_leave(slot.row)
        else:
            raise CommandError(f"command {kind!r} is not supported by cardd")
        return cardd_pb2.Reply(ok=True, call_id=slot.call_id)

    def status(self) -> cardd_pb2.Reply:
        reply = cardd_pb2.Reply(ok=True)
        from drivers.backends.base import SpanAlarm
        for s in self.inventory.spans:
            alarms = self.span_alarms.get(s.span, 0)
            reply.spans.add(span=s.span, name=s.name, kind=s.kind, alarms=alarms,
                            alarm_names=[a.name.lower() for a in SpanAlarm if a and alarms & a],
                            channels=sum(1 for x in self.slots.values() if x.span == s.span))
        for slot in self.slots.values():
            reply.channels.add(channel=slot.channel, span=slot.span,
                               signaling=cardd_pb2.SIG_FXS if slot.port == "fxs" else cardd_pb2.SIG_FXO,
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
