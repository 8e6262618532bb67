"""One ISDN PRI span: its D-channel (libpri through drivers.native.libpri) and its
B-channels, each an explicit state machine with a transition table.

Functional core: no sockets, no clock. Time is the tick number cardd passes in (libpri
runs on tick * tick_ms). Frames come in through `PriSpan.on_dframe` and go out as
`SendFrame` actions, so the same code runs on DAHDI (the backend's D-channel) and on the
simulator.

Two kinds of objects talk to cardd:
- `PriSpan` (span level): `on_dframe(frame, tick)`, `on_alarm(bits, tick)`,
  `on_tick(tick)`, `on_counters(totals, tick)`; each returns `(channel, action)` pairs,
  channel 0 for span-level actions (SendFrame, Emit of a span event).
- `PriChannel` (one per B-channel, `PriSpan.lines[channel]`): the per-channel line
  interface cardd drives as it drives analog lines: `on_command(name, tick, **args)`,
  `on_media(event, tick)`, `on_hw(event, tick)`, `on_tick(tick)`, each returning actions
  for that channel (SendFrame among them).

Q.931 rules the span applies that libpri leaves to its user:
- B-channel selection: an incoming SETUP's channel is taken if free; if busy, an
  exclusive request is refused with cause 44 and a preferred one (or "any") gets another
  free channel (hunting from the top on the CPE side, the bottom on the network side);
  none free: cause 34. Outgoing calls ask for the commanded channel as preferred (CPE
  default) or exclusive (network default); if the far end assigns another channel in its
  answer, the call moves there (TakeCall) or, if that channel is busy here, is cleared
  with cause 6.
- Glare (both sides seize the same channel at once): the network side has priority. On
  the CPE side our not yet answered SETUP gives way: it is cleared with cause 44 and the
  network's call is offered on the channel. On the network side the CPE's SETUP is
  refused (exclusive, cause 44) or moved to a free channel (preferred).
- Maintenance: SERVICE messages on ni2/dms100/lucent5e/att4ess switches; elsewhere
  (EuroISDN) a channel is blocked locally and RESTART brings it back in step.
- Span health (drivers.signaling.span_health): an alarm clears every call with cause 38
  and takes the channels out of service; the D-channel going down takes idle channels out
  (calls are kept until libpri clears them, Q.931 T309); recovery waits the backoff delay,
  restarts the channels a few at a time and brings each back as its RESTART is
  acknowledged. A channel stuck in clearing or in an unacknowledged RESTART is reset.
"""
from __future__ import annotations

import collections
import enum
import logging
import math

from drivers.native import libpri as L
from drivers.signaling import events as ev
from drivers.signaling import span_health as health
from drivers.signaling.analog.config import SignalingError
from drivers.signaling.analog.timers import Timers, media_input, prompt_done, prompt_tag

from . import causes
from .commands import check_command
from .config import PriConfig

log = logging.getLogger("cardd.pri")

RESTART_WINDOW = 4          # RESTARTs outstanding at once while a span recovers


class PriState(enum.Enum):
    IDLE = "idle"
    COLLECTING = "collecting"            # incoming SETUP without the whole number
    OFFERED = "offered"                  # Incoming reported; waiting for answer
    DIALING = "dialing"                  # our SETUP sent, nothing back yet
    OVERLAP_SENDING = "overlap_sending"  # SETUP ACKNOWLEDGE: more digits with send_digits
    PROCEEDING = "proceeding"            # CALL PROCEEDING received
    ALERTING = "alerting"                # ALERTING received
    CONNECTED = "connected"
    CLEARING = "clearing"                # release under way
    RESTARTING = "restarting"            # our RESTART sent, not acknowledged yet
    OUT_OF_SERVICE = "out_of_service"    # span down, or blocked for maintenance


S = PriState
CALL_STATES = (S.COLLECTING, S.OFFERED, S.DIALING, S.OVERLAP_SENDING, S.PROCEEDING,
               S.ALERTING, S.CONNECTED)
OUTGOING = (S.DIALING, S.OVERLAP_SENDING, S.PROCEEDING, S.ALERTING)
MEDIA_COMMANDS = ("play_tone", "stop_media", "play_prompt")
# Answers to our SETUP that name the B-channel the far end gives the call.
_CHANNEL_ANSWERS = ("setup_ack", "proceeding", "ringing", "answer")

# libpri event class -> input key of the channel tables.
_EVENT_KEYS = {
    L.Info: "info", L.SetupAck: "setup_ack", L.Proceeding: "proceeding",
    L.Progress: "progress", L.Ringing: "ringing", L.Answer: "answer",
    L.ConnectAck: "connect_ack", L.HangupReq: "hangup_req", L.Hangup: "hangup",
    L.HangupAck: "hangup_ack", L.KeypadDigit: "keypad",
}


def _table() -> dict:
    t = {
        (S.IDLE, "ring"): "_h_ring",
        (S.IDLE, "cmd.dial"): "_h_dial",
        (S.COLLECTING, "info"): "_h_more_digits",
        (S.COLLECTING, "timer.interdigit"): "_h_number_complete",
        (S.OFFERED, "cmd.answer"): "_h_answer",
        (S.OFFERED, "info"): "_h_ignore",
        (S.DIALING, "cmd.send_digits"): "_h_queue_digits",
        (S.DIALING, "setup_ack"): "_h_setup_ack",
        (S.OVERLAP_SENDING, "cmd.send_digits"): "_h_send_information",
        (S.CONNECTED, "cmd.send_digits"): "_h_inband_digits",
        (S.CONNECTED, "digit"): "_h_emit_digit",
        (S.CONNECTED, "connect_ack"): "_h_ignore",
        (S.CLEARING, "hangup"): "_h_released",
        (S.CLEARING, "hangup_ack"): "_h_released",
        (S.CLEARING, "hangup_req"): "_h_release_again",
        (S.CLEARING, "cmd.hangup"): "_h_ignore",
        (S.RESTARTING, "restart_ack"): "_h_restart_done",
        (S.RESTARTING, "restart"): "_h_restart_done",
    }
    for s in (S.DIALING, S.OVERLAP_SENDING, S.PROCEEDING):
        t[(s, "proceeding")] = "_h_proceeding"
        t[(s, "ringing")] = "_h_ringing"
    t[(S.ALERTING, "ringing")] = "_h_ignore"
    t[(S.ALERTING, "proceeding")] = "_h_ignore"
    for s in OUTGOING:
        t[(s, "answer")] = "_h_answered"
        t[(s, "progress")] = "_h_progress"
        for c in MEDIA_COMMANDS:
            t[(s, f"cmd.{c}")] = "_h_media"
        t[(s, "play_done")] = "_h_prompt_done"
    for c in MEDIA_COMMANDS:
        t[(S.OFFERED, f"cmd.{c}")] = "_h_early_media"
        t[(S.CONNECTED, f"cmd.{c}")] = "_h_media"
    for s in (S.OFFERED, S.CONNECTED):
        t[(s, "play_done")] = "_h_prompt_done"
    for s in CALL_STATES:
        t[(s, "cmd.hangup")] = "_h_hangup"
        t[(s, "hangup_req")] = "_h_far_disconnect"
        t[(s, "hangup")] = "_h_far_released"
        t[(s, "hangup_ack")] = "_h_far_released"
        t[(s, "restart")] = "_h_far_restart"
        t[(s, "cmd.reset_channel")] = "_h_reset"
    for s in (S.IDLE, S.OUT_OF_SERVICE, S.CLEARING):
        t[(s, "restart")] = "_h_far_restart"
        t[(s, "cmd.reset_channel")] = "_h_reset"
    for s in PriState:
        t[(s, "cmd.set_service")] = "_h_set_service"
        t.setdefault((s, "service"), "_h_far_service")
    return t


class PriChannel:
    """One B-channel: the line object cardd drives for that channel."""

    TRANSITIONS = _table()
    WIRE_STATE = {
        S.IDLE: "IDLE", S.COLLECTING: "COLLECTING", S.OFFERED: "RINGING",
        S.DIALING: "DIALING", S.OVERLAP_SENDING: "DIALING", S.PROCEEDING: "PROCEEDING",
        S.ALERTING: "ALERTING", S.CONNECTED: "CONNECTED", S.CLEARING: "CLEARING",
        S.RESTARTING: "CLEARING", S.OUT_OF_SERVICE: "OUT_OF_SERVICE",
    }
    STATE_TEXT = {
        S.IDLE: "idle", S.COLLECTING: "collecting the called number",
        S.OFFERED: "offering an incoming call", S.DIALING: "dialling",
        S.OVERLAP_SENDING: "sending the number", S.PROCEEDING: "proceeding",
        S.ALERTING: "alerting", S.CONNECTED: "connected", S.CLEARING: "clearing",
        S.RESTARTING: "being restarted", S.OUT_OF_SERVICE: "out of service",
    }
    REFUSALS = {
        (None, "ring"): "an E1 PRI channel is a trunk: it cannot ring a phone; use dial",
        (S.IDLE, "answer"): "there is no incoming call to answer",
        (S.IDLE, "hangup"): "there is no call to hang up",
        (S.COLLECTING, "answer"): "the called number is still being received",
        (S.CONNECTED, "answer"): "the call is already connected",
        **{(s, "dial"): "a call is already on this channel" for s in CALL_STATES},
        (S.CLEARING, "dial"): "the last call on this channel is still being released",
        (S.RESTARTING, "dial"): "the channel is being restarted",
    }

    def __init__(self, span: "PriSpan", channel: int, timeslot: int):
        self.span = span
        self.cfg = span.cfg
        self.channel = channel
        self.timeslot = timeslot
        self.state = S.IDLE
        self.timers = Timers()
        self.call: L.PriCall | None = None
        self.outgoing = False
        self.exclusive = False
        self.dnis = ""
        self.ani = ""
        self.ring: L.Ring | None = None
        self.pending_digits = ""
        self.progress_sent = False
        self.echo = False
        self.blocked = False                 # taken out of service by a command
        self.far_blocked = False             # SERVICE from the far end
        self.announced = True                # cardd's view: in service (its default)
        self.recovery_restart = False        # RESTART before coming back into service
        self.unreachable = False             # RESTARTs went unanswered: out until recovery
        self.restart_tries = 0
        self.resets = 0

    # ---- what cardd reads -------------------------------------------------------------
    @property
    def wire_state(self) -> str:
        if self.state in (S.IDLE, S.OUT_OF_SERVICE) and (self.blocked or self.far_blocked):
            return "BLOCKED"
        return self.WIRE_STATE[self.state]

    @property
    def free(self) -> bool:
        """Idle and in service: may take a new call."""
        return self.state == S.IDLE and self.in_service

    @property
    def in_service(self) -> bool:
        return (self.span.health.in_service and not self.blocked and not self.far_blocked
                and not self.recovery_restart and not self.unreachable
                and self.state != S.OUT_OF_SERVICE)

    # ---- the line interface -----------------------------------------------------------
    def on_hw(self, event, tick: int) -> list:
        return []        # E1 alarms arrive at span level; bearers have no hook events

    def on_media(self, event, tick: int) -> list:
        key = media_input(event)
        if key is None:
            return []
        return self._dispatch(key, tick, event)

    def on_command(self, name: str, tick: int, **args) -> list:
        args = check_command(name, args)
        if name == "status":
            return []
        key = f"cmd.{name}"
        handler = self.TRANSITIONS.get((self.state, key))
        if handler is None:
            reason = (self.REFUSALS.get((self.state, name)) or self.REFUSALS.get((None, name))
                      or f"not possible while the channel is "
                         f"{self.STATE_TEXT.get(self.state, self.state.value)}")
            if self.state == S.OUT_OF_SERVICE and name != "ring":
                reason = self._out_of_service_reason()
            raise SignalingError(f"PRI channel {self.channel}: {name} refused: {reason}")
        if name == "dial" and not self.in_service:
            raise SignalingError(f"PRI channel {self.channel}: dial refused: "
                                 f"{self._out_of_service_reason()}")
        args["command"] = name
        out = getattr(self, handler)(tick, args)
        return out + self.span.take_frames()

    def on_tick(self, tick: int) -> list:
        if self.timers.next_due is None or self.timers.next_due > tick:
            return []
        out = []
        while (expired := self.timers.pop_expired(tick)) is not None:
            name, due = expired
            out += self._dispatch(f"timer.{name}", due, None)
        return out + self.span.take_frames()

    # ---- dispatch ---------------------------------------------------------------------
    def _dispatch(self, key: str, tick: int, data) -> list:
        handler = self.TRANSITIONS.get((self.state, key))
        if handler is None:
            return []
        return getattr(self, handler)(tick, data)

    def _goto(self, state: PriState, tick: int | None = None) -> None:
        self.state = state
        if state != S.COLLECTING:
            self.timers.cancel("interdigit")
        stuck = self.span.stuck
        if state == S.CLEARING and tick is not None:
            stuck.watch(self.channel, tick, self.span.ticks(self.cfg.stuck_clearing_ms),
                        "clearing")
        elif state == S.RESTARTING and tick is not None:
            stuck.watch(self.channel, tick, self.span.ticks(self.cfg.restart_ack_ms),
                        "restarting")
        elif state not in (S.CLEARING, S.RESTARTING):
            stuck.clear(self.channel)

    def _out_of_service_reason(self) -> str:
        if self.blocked:
            return "the channel is blocked for maintenance"
        if self.far_blocked:
            return "the far end took the channel out of service"
        if self.unreachable:
            return "the far end does not acknowledge RESTART for the channel"
        if not self.span.health.in_service:
            return f"the span is out of service ({self.span.health_reason()})"
        return "the channel is being restarted"

    def _service_actions(self) -> list:
        """A ServiceChange when the channel's availability differs from what cardd knows.
        Out of service is told only once the channel has no call: to the application it
        means the call is gone, and a call can outlive a D-channel outage (Q.931 T309) or
        a maintenance block."""
        now = self.in_service
        if now == self.announced or (not now and self.state in CALL_STATES):
            return []
        self.announced = now
        reason = "in service" if now else self._out_of_service_reason()
        return [ev.Emit(ev.ServiceChange(in_service=now, reason=reason))]

    def _idle(self, tick: int | None = None) -> list:
        """The call is gone: idle (or out of service) and media back to rest."""
        self.span.forget(self)
        self.call = None
        self.ring = None
        self.outgoing = False
        self.pending_digits = ""
        self.progress_sent = False
        out = [ev.Media("stop")]
        if self.echo:
            self.echo = False
            out.append(ev.Media("echo_cancel", (False,)))
        usable = self.in_service_ok()
        self._goto(S.IDLE if usable else S.OUT_OF_SERVICE, tick)
        return out + self._service_actions()

    def _connected(self) -> list:
        self._goto(S.CONNECTED)
        out = [ev.Emit(ev.Answered())]
        if self.cfg.echo_cancel and not self.echo:
            self.echo = True
            out.insert(0, ev.Media("echo_cancel", (True,)))
        return out

    def _end_call(self, cause: int, reason: str) -> list:
        return [ev.Media("stop"), ev.Emit(ev.Cleared(cause=cause, reason=reason)), ev.EndCall()]

    # ---- incoming ---------------------------------------------------------------------
    def _h_ring(self, tick, ring: L.Ring):
        self.call = ring.call
        self.ring = ring
        self.outgoing = False
        self.dnis = ring.called_number
        self.ani = ring.calling_number
        self.span.adopt(self)
        self.span.count_call("in")
        out = [ev.NewCall()]
        if self._number_complete(ring.complete):
            return out + self._offer(tick)
        self.span.link.need_more_info(self.call, self.timeslot)
        self._goto(S.COLLECTING)
        self.timers.start("interdigit", tick, self.span.ticks(self.cfg.interdigit_ms))
        return out

    def _number_complete(self, complete: bool) -> bool:
        cfg = self.cfg
        return (complete or not cfg.overlap_receiving
                or (cfg.dnis_digits and len(self.dnis) >= cfg.dnis_digits))

    def _h_more_digits(self, tick, info: L.Info):
        self.dnis += info.digits
        if self._number_complete(info.complete):
            return self._offer(tick)
        self.timers.start("interdigit", tick, self.span.ticks(self.cfg.interdigit_ms))
        return []

    def _h_number_complete(self, tick, _):
        return self._offer(tick)

    def _offer(self, tick) -> list:
        link = self.span.link
        link.proceeding(self.call, self.timeslot)
        if self.cfg.alert_on_offer:
            link.alerting(self.call, self.timeslot, inband=False)
        self._goto(S.OFFERED)
        r = self.ring
        return [ev.Emit(ev.Incoming(
            ani=r.calling_number, dnis=self.dnis, caller_name=r.calling_name,
            calling_ton=r.calling_ton, calling_plan=r.calling_plan,
            presentation=r.calling_presentation, screening=r.calling_screening,
            called_ton=r.called_ton, called_plan=r.called_plan,
            redirecting=r.redirecting_number,
            redirecting_reason=r.redirecting_reason if r.redirecting_number else ""))]

    def _h_answer(self, tick, args):
        self.span.link.answer(self.call, self.timeslot)
        return self._connected()

    def _h_early_media(self, tick, args):
        """Tones or prompts before answer: tell the caller in-band information is there."""
        if not self.progress_sent and args["command"] != "stop_media":
            self.progress_sent = True
            self.span.link.progress(self.call, self.timeslot, inband=True)
        return self._h_media(tick, args)

    # ---- outgoing ---------------------------------------------------------------------
    def _h_dial(self, tick, args):
        cfg = self.cfg
        link = self.span.link
        overlap = args["overlap"]
        if overlap and not cfg.overlap_sending:
            raise SignalingError(f"PRI channel {self.channel}: dial refused: overlap sending "
                                 f"is off for span {self.span.span}")
        mode = args["channel_mode"]
        self.exclusive = (mode == "exclusive") if mode else cfg.exclusive_default
        call = link.new_call()
        try:
            link.setup(call, self.timeslot, self.exclusive, called=args["number"],
                       calling=args["ani"], calling_name=args["caller_name"],
                       called_ton=args["called_ton"] or "unknown",
                       called_plan=args["called_plan"] or "isdn",
                       calling_ton=args["calling_ton"] or "unknown",
                       calling_plan=args["calling_plan"] or "isdn",
                       calling_presentation=args["presentation"] or "allowed",
                       redirecting=args["redirecting"] or None,
                       redirecting_reason=args["redirecting_reason"] or "unknown",
                       overlap=overlap, layer1=cfg.law)
        except L.PriError as e:
            link.hangup(call, causes.NORMAL_CLEARING)
            raise SignalingError(f"PRI channel {self.channel}: dial refused: {e}") from None
        self.call = call
        self.outgoing = True
        self.dnis, self.ani = args["number"], args["ani"]
        self.span.adopt(self)
        self.span.count_call("out")
        self._goto(S.DIALING)
        return [ev.NewCall()]

    def _h_queue_digits(self, tick, args):
        self.pending_digits += args["digits"]
        return []

    def _h_setup_ack(self, tick, e: L.SetupAck):
        self._goto(S.OVERLAP_SENDING)
        if self.pending_digits:
            digits, self.pending_digits = self.pending_digits, ""
            self.span.link.information(self.call, digits)
        return []

    def _h_send_information(self, tick, args):
        self.span.link.information(self.call, args["digits"])
        return []

    def _h_proceeding(self, tick, e: L.Proceeding):
        self._goto(S.PROCEEDING)
        inband = bool(e.progress_mask & 8)
        return [ev.Emit(ev.Proceeding(inband=inband))]

    def _h_ringing(self, tick, e: L.Ringing):
        self._goto(S.ALERTING)
        return [ev.Emit(ev.Alerting(inband=e.inband))]

    def _h_progress(self, tick, e: L.Progress):
        return [ev.Emit(ev.Progress(inband=e.inband, cause=max(0, e.cause)))]

    def _h_answered(self, tick, e: L.Answer):
        return self._connected()

    def _h_inband_digits(self, tick, args):
        return [ev.Media("send_dtmf", (args["digits"],))]

    # ---- media ------------------------------------------------------------------------
    def _h_media(self, tick, args):
        name = args["command"]
        if name == "play_tone":
            return [ev.Media("play_tone", (args["tone"],))]
        if name == "stop_media":
            return [ev.Media("stop")]
        return [ev.Media("play_prompts", (args["files"], prompt_tag(args["id"]), args["barge_in"]))]

    def _h_emit_digit(self, tick, event):
        duration = int(getattr(event, "duration", 0) or 0)
        return [ev.Emit(ev.Digit(digit=str(event.digit),
                                 duration_ms=round(duration * 1000 / self.cfg.sample_rate),
                                 start_sample=int(getattr(event, "start", 0) or 0)))]

    def _h_prompt_done(self, tick, event):
        return prompt_done(event)

    def _h_ignore(self, tick, data):
        return []

    # ---- clearing ---------------------------------------------------------------------
    def _h_hangup(self, tick, args):
        cause = args["cause"]
        out = self._end_call(cause, "hangup")
        if self.call is None or not self.span.link.hangup(self.call, cause):
            return out + self._idle(tick)
        self._goto(S.CLEARING, tick)
        return out

    def _h_far_disconnect(self, tick, e: L.HangupReq):
        cause = e.cause if e.cause > 0 else causes.NORMAL_CLEARING
        out = self._end_call(cause, f"far end: {causes.text(cause)}")
        if self.span.link.hangup(self.call, cause):
            self._goto(S.CLEARING, tick)
            return out
        return out + self._idle(tick)

    def _h_far_released(self, tick, e):
        cause = e.cause if e.cause > 0 else causes.NORMAL_CLEARING
        return self._end_call(cause, f"far end: {causes.text(cause)}") + self._idle(tick)

    def _h_release_again(self, tick, e: L.HangupReq):
        # Both ends sent DISCONNECT: answer theirs with RELEASE.
        self.span.link.hangup(self.call, e.cause if e.cause > 0 else causes.NORMAL_CLEARING)
        return []

    def _h_released(self, tick, e):
        return self._idle(tick)

    def clear_for_span(self, cause: int, reason: str, tick: int) -> list:
        """The span failed under the call: end it now (cause 38), release it in libpri."""
        if self.state not in CALL_STATES and self.state != S.CLEARING:
            return []
        out = self._end_call(cause, reason) if self.state in CALL_STATES else []
        if self.call is not None:
            self.span.link.hangup(self.call, cause)
        return out + self._idle(tick)

    def yield_to_glare(self, tick: int) -> list:
        """Our unanswered SETUP lost the channel to the network's call (network priority)."""
        out = self._end_call(causes.REQUESTED_CHANNEL_UNAVAILABLE,
                             "glare: the network took the channel for an incoming call")
        if self.call is not None:
            self.span.link.hangup(self.call, causes.REQUESTED_CHANNEL_UNAVAILABLE)
        self.span.forget(self)
        self.call = None
        self._goto(S.IDLE)
        return out

    # ---- restart and maintenance ------------------------------------------------------
    def _h_far_restart(self, tick, _):
        out = []
        if self.state in CALL_STATES:
            out += self._end_call(causes.TEMPORARY_FAILURE, "channel restarted by the far end")
        if self.call is not None:
            # libpri keeps the record of a restarted call: release it.
            self.span.link.hangup(self.call, causes.TEMPORARY_FAILURE)
        out.append(ev.Emit(ev.ChannelReset(reason="restarted by the far end", by_far_end=True)))
        if self.state in CALL_STATES or self.state == S.CLEARING:
            out += self._idle(tick)
        return out

    def _h_reset(self, tick, args):
        return self.reset("reset by command", tick)

    def reset(self, reason: str, tick: int, recovery: bool = False) -> list:
        """Clear whatever is on the channel and send RESTART for it."""
        self.unreachable = False
        out = []
        if self.state in CALL_STATES:
            out += self._end_call(causes.TEMPORARY_FAILURE, reason)
        if self.call is not None:
            self.span.link.hangup(self.call, causes.TEMPORARY_FAILURE)
            self.span.forget(self)
            self.call = None
        out.append(ev.Media("stop"))
        if self.echo:
            self.echo = False
            out.append(ev.Media("echo_cancel", (False,)))
        self.recovery_restart = recovery
        self.restart_tries = 1
        if not recovery:
            self.resets += 1
            self.span.count_reset(reason)
            out.append(ev.Emit(ev.ChannelReset(reason=reason)))
        self.span.link.restart(self.timeslot)
        self._goto(S.RESTARTING, tick)
        return out + self._service_actions()

    def _h_restart_done(self, tick, _):
        self.recovery_restart = False
        self.restart_tries = 0
        return self._idle(tick)

    def restart_overdue(self, tick: int) -> list:
        """No RESTART ACKNOWLEDGE in time: send it again, or give the channel up."""
        if self.restart_tries < self.cfg.restart_attempts:
            self.restart_tries += 1
            self.span.link.restart(self.timeslot)
            self._goto(S.RESTARTING, tick)
            return []
        log.warning("span %d channel %d: no RESTART ACKNOWLEDGE after %d tries; out of "
                    "service until the span recovers or a reset", self.span.span,
                    self.channel, self.restart_tries)
        self.recovery_restart = False
        self.restart_tries = 0
        self.unreachable = True
        self._goto(S.OUT_OF_SERVICE)
        return self._service_actions()

    def _h_set_service(self, tick, args):
        want = args["in_service"]
        out = []
        if self.cfg.service_messages:
            self.span.link.maintenance_service(self.span.span, self.timeslot,
                                               "in_service" if want else "out_of_service")
        if not want:
            self.blocked = True
            if self.state == S.IDLE:
                self._goto(S.OUT_OF_SERVICE)
            return out + self._service_actions()
        self.blocked = False
        if self.state == S.OUT_OF_SERVICE and not self.cfg.service_messages \
                and self.span.health.in_service:
            # EuroISDN has no SERVICE message: RESTART puts both ends back in step.
            self.recovery_restart = True
            self.restart_tries = 1
            self.span.link.restart(self.timeslot)
            self._goto(S.RESTARTING, tick)
        elif self.state == S.OUT_OF_SERVICE and self.span.health.in_service:
            self._goto(S.IDLE)
        return out + self._service_actions()

    def _h_far_service(self, tick, e: L.ServiceChange):
        self.far_blocked = e.state != "in_service"
        if self.far_blocked and self.state == S.IDLE:
            self._goto(S.OUT_OF_SERVICE)
        elif not self.far_blocked and self.state == S.OUT_OF_SERVICE and self.in_service_ok():
            self._goto(S.IDLE)
        return self._service_actions()

    def in_service_ok(self) -> bool:
        return (self.span.health.in_service and not self.blocked and not self.far_blocked
                and not self.unreachable)

    # ---- span transitions -------------------------------------------------------------
    def span_down(self, alarm: bool, reason: str, tick: int) -> list:
        out = []
        if alarm:
            out += self.clear_for_span(causes.NETWORK_OUT_OF_ORDER, reason, tick)
        if self.state == S.RESTARTING:
            # Restarted again when the span recovers; no RESTART is answered meanwhile.
            self.recovery_restart = False
            self._goto(S.OUT_OF_SERVICE)
        if self.state == S.IDLE:
            self._goto(S.OUT_OF_SERVICE)
        return out + self._service_actions()

    def span_up(self, tick: int, restart: bool) -> bool:
        """The span is back: True when this channel wants a RESTART before service."""
        self.unreachable = False
        if self.state != S.OUT_OF_SERVICE or self.blocked or self.far_blocked:
            return False
        if restart:
            self.recovery_restart = True
            return True
        self._goto(S.IDLE)
        return False


class PriSpan:
    """One PRI span: the D-channel, the B-channels' lines, health and restarts."""

    def __init__(self, span: int, channels: list[tuple[int, int]], cfg: PriConfig | None = None,
                 *, metrics: health.SpanMetrics | None = None, name: str | None = None):
        """channels: (cardd channel number, E1 timeslot) of each bearer channel."""
        self.span = span
        self.cfg = cfg or PriConfig()
        self.metrics = metrics
        self._frames: list[bytes] = []
        timeslots = [ts for _, ts in channels]
        if len(set(timeslots)) != len(timeslots):
            raise ValueError(f"span {span}: a timeslot is given twice: {timeslots}")
        self.link = L.PriLink(self.cfg.node, self.cfg.switchtype, self._frames.append,
                              name=name or f"span{span}", bchannels=timeslots,
                              overlap_dial=self.cfg.overlap_sending,
                              service_messages=self.cfg.service_messages)
        self.health = health.SpanHealth(
            span, tick_ms=self.cfg.tick_ms, needs_link=True,
            grace_ms=self.cfg.dchannel_grace_ms, base_ms=self.cfg.recovery_base_ms,
            cap_ms=self.cfg.recovery_cap_ms, stable_ms=self.cfg.recovery_stable_ms,
            jitter=self.cfg.recovery_jitter)
        self.stuck = health.StuckChannels()
        self.lines: dict[int, PriChannel] = {}
        self.by_timeslot: dict[int, PriChannel] = {}
        for channel, ts in channels:
            line = PriChannel(self, channel, ts)
            self.lines[channel] = line
            self.by_timeslot[ts] = line
        # hunting order for "any channel"
        order = sorted(self.by_timeslot)
        self._hunt = order[::-1] if self.cfg.hunt_descending else order
        self._by_call: dict[int, PriChannel] = {}
        self._restart_queue: collections.deque[int] = collections.deque()
        self.tick = 0
        self.dchannel_up = False
        self.ever_up = False
        self.frames_in = 0
        self.frames_out = 0
        self.rejected = 0
        self._set_metric("in_service", 0)

    # ---- helpers for the channels ------------------------------------------------------
    def ticks(self, ms: int) -> int:
        return math.ceil(ms / self.cfg.tick_ms) if ms > 0 else 0

    def now(self, tick: int) -> float:
        return tick * self.cfg.tick_ms / 1000.0

    def take_frames(self) -> list:
        if not self._frames:
            return []
        out, self._frames[:] = [ev.SendFrame(f) for f in self._frames], []
        self.frames_out += len(out)
        self._count_frames("out", len(out))
        return out

    def adopt(self, line: PriChannel) -> None:
        self._by_call[id(line.call)] = line

    def forget(self, line: PriChannel) -> None:
        if line.call is not None and self._by_call.get(id(line.call)) is line:
            del self._by_call[id(line.call)]

    def line_for_call(self, call) -> PriChannel | None:
        line = self._by_call.get(id(call))
        return line if line is not None and line.call is call else None

    def count_call(self, direction: str) -> None:
        if self.metrics is not None:
            self.metrics.calls.labels(str(self.span), direction).inc()

    def count_reset(self, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.channel_resets.labels(str(self.span), reason).inc()

    def _count_frames(self, direction: str, n: int) -> None:
        if self.metrics is not None and n:
            self.metrics.frames.labels(str(self.span), direction).inc(n)

    def _set_metric(self, name: str, value) -> None:
        if self.metrics is not None:
            getattr(self.metrics, name).labels(str(self.span)).set(value)

    def health_reason(self) -> str:
        return self.health._reason() if self.health.state != health.Health.STARTING \
            else "D-channel not established yet"

    # ---- cardd's span-level inputs -----------------------------------------------------
    def on_dframe(self, frame: bytes, tick: int) -> list[tuple[int, ev.Action]]:
        self.tick = max(self.tick, tick)
        self.frames_in += 1
        self._count_frames("in", 1)
        out: list[tuple[int, ev.Action]] = []
        events = self._timers(tick)
        try:
            events += self.link.receive_frame(frame)
        except L.PriError as e:
            log.warning("span %d: D-channel frame refused: %s", self.span, e)
        for e in events:
            out += self._event(e, tick)
        return out + self._span_frames()

    def on_tick(self, tick: int) -> list[tuple[int, ev.Action]]:
        self.tick = max(self.tick, tick)
        out: list[tuple[int, ev.Action]] = []
        for e in self._timers(tick):
            out += self._event(e, tick)
        for change in self.health.tick(tick):
            out += self._health(change, tick)
        for channel, what in self.stuck.due(tick):
            out += self._stuck(self.lines[channel], what, tick)
        out += self._restart_more(tick)
        return out + self._span_frames()

    def on_alarm(self, bits: int, tick: int) -> list[tuple[int, ev.Action]]:
        out: list[tuple[int, ev.Action]] = []
        for change in self.health.alarm(bits, tick):
            out += self._health(change, tick)
        return out + self._span_frames()

    def on_counters(self, totals: dict, tick: int) -> list:
        """Card error counters (running totals): health.Counted when they went up."""
        changes = self.health.counts(totals, tick)
        if self.metrics is not None:
            for c in changes:
                for name, n in c.increases.items():
                    self.metrics.errors.labels(str(self.span), name).inc(n)
        return changes

    def _timers(self, tick: int) -> list:
        # The link's clock must be the tick's time before anything calls into libpri:
        # the timers it starts (T313 after CONNECT, T200 after a frame...) count from it.
        now = self.now(tick)
        if now <= self.link.now:
            return []
        return self.link.run_timers(now)

    def _span_frames(self) -> list[tuple[int, ev.Action]]:
        return [(0, f) for f in self.take_frames()]

    # ---- libpri events ----------------------------------------------------------------
    def _event(self, e: L.PriEvent, tick: int) -> list[tuple[int, ev.Action]]:
        if isinstance(e, L.Ring):
            return self._ring(e, tick)
        if isinstance(e, L.DchanUp):
            return self._dchannel(True, tick)
        if isinstance(e, L.DchanDown):
            return self._dchannel(False, tick)
        if isinstance(e, L.Restart):
            lines = list(self.lines.values()) if e.channel is None else \
                [self.by_timeslot[e.channel]] if e.channel in self.by_timeslot else []
            out = []
            for line in lines:
                out += self._on(line, line._dispatch("restart", tick, e))
            return out
        if isinstance(e, L.RestartAck):
            line = self.by_timeslot.get(e.channel)
            return self._on(line, line._dispatch("restart_ack", tick, e)) if line else []
        if isinstance(e, L.ServiceChange):
            line = self.by_timeslot.get(e.channel)
            return self._on(line, line._dispatch("service", tick, e)) if line else []
        key = _EVENT_KEYS.get(type(e))
        call = getattr(e, "call", None)
        if key is None or call is None:
            return []
        line = self.line_for_call(call)
        if line is None:
            # A call we no longer track (cleared here already): make sure libpri lets go.
            if key == "hangup_req":
                self.link.hangup(call, e.cause if e.cause > 0 else causes.NORMAL_CLEARING)
            return []
        if key in _CHANNEL_ANSWERS and line.outgoing and line.state in OUTGOING and \
                e.channel is not None and e.channel != line.timeslot:
            return self.move_call(line, e.channel, key, e, tick)
        return self._on(line, line._dispatch(key, tick, e))

    def _on(self, line: PriChannel, actions: list) -> list[tuple[int, ev.Action]]:
        return [(line.channel, a) for a in actions]

    def _ring(self, ring: L.Ring, tick: int) -> list[tuple[int, ev.Action]]:
        """Place an incoming SETUP on a B-channel (Q.931 channel selection and glare)."""
        out: list[tuple[int, ev.Action]] = []
        want = ring.channel
        line = self.by_timeslot.get(want) if want is not None else None
        if want is not None and line is None:
            return self._reject(ring, causes.CHANNEL_UNACCEPTABLE if ring.exclusive else None,
                                tick)
        if line is not None and not line.free:
            glare = line.state == S.DIALING and line.outgoing
            if glare and not self.cfg.network and ring.exclusive and line.in_service_ok():
                # CPE: the network has priority; our SETUP gives way: a preferred one
                # waits on another free channel for the network to assign it one, an
                # exclusive one is cleared (the network refuses it with 44 anyway).
                spare = None if line.exclusive else self._free_line()
                if spare is not None:
                    out += self.relocate(line, spare, tick)
                else:
                    out += self._on(line, line.yield_to_glare(tick))
            elif ring.exclusive:
                return out + self._reject(ring, causes.REQUESTED_CHANNEL_UNAVAILABLE, tick)
            else:
                line = None
        if line is None:
            line = self._free_line()
            if line is None:
                return out + self._reject(ring, causes.NO_CIRCUIT_AVAILABLE, tick)
        return out + self._on(line, line._h_ring(tick, ring))

    def _free_line(self) -> PriChannel | None:
        return next((self.by_timeslot[ts] for ts in self._hunt if self.by_timeslot[ts].free),
                    None)

    def _reject(self, ring: L.Ring, cause: int | None, tick: int) -> list:
        cause = cause or causes.NO_CIRCUIT_AVAILABLE
        if not self.health.in_service:
            cause = causes.NO_CIRCUIT_AVAILABLE
        self.rejected += 1
        log.info("span %d: incoming call for channel %s refused: %s", self.span,
                 ring.channel, causes.text(cause))
        self.link.hangup(ring.call, cause)
        return []

    def move_call(self, line: PriChannel, timeslot: int, key: str, event,
                  tick: int) -> list[tuple[int, ev.Action]]:
        """The far end put our outgoing call on another B-channel: follow it there, or
        clear it (cause 6) if we asked for our channel exclusively or the other is busy."""
        target = self.by_timeslot.get(timeslot)
        if line.exclusive or target is None or not target.free:
            why = ("we asked for channel %d exclusively" % line.timeslot if line.exclusive
                   else "it does not exist" if target is None else "it is busy here")
            cause = causes.CHANNEL_UNACCEPTABLE
            out = line._end_call(cause, f"far end assigned channel {timeslot}: {why}")
            self.link.hangup(line.call, cause)
            line._goto(S.CLEARING, tick)
            return self._on(line, out)
        moved = self.relocate(line, target, tick)
        return moved + self._on(target, target._dispatch(key, tick, event))

    def relocate(self, line: PriChannel, target: PriChannel,
                 tick: int) -> list[tuple[int, ev.Action]]:
        """Our outgoing call continues on `target`; `line` is free again."""
        for attr in ("call", "outgoing", "exclusive", "dnis", "ani", "pending_digits"):
            setattr(target, attr, getattr(line, attr))
        target.state = line.state
        self.forget(line)
        line.call = None
        line.outgoing = False
        line._goto(S.IDLE)
        self.adopt(target)
        return self._on(target, [ev.TakeCall(from_channel=line.channel)])

    # ---- health -----------------------------------------------------------------------
    def _dchannel(self, up: bool, tick: int) -> list[tuple[int, ev.Action]]:
        if up == self.dchannel_up:
            return []
        self.dchannel_up = up
        self._set_metric("link_up", 1 if up else 0)
        out: list[tuple[int, ev.Action]] = [(0, ev.Emit(ev.DChannel(
            up=up, reason="established" if up else "lost")))]
        first = up and not self.ever_up
        self.ever_up = self.ever_up or up
        for change in self.health.link(up, tick):
            out += self._health(change, tick, first_up=first)
        return out

    def _health(self, change, tick: int, first_up: bool = False) -> list:
        out: list[tuple[int, ev.Action]] = []
        if isinstance(change, health.Down):
            self._set_metric("in_service", 0)
            if self.metrics is not None and self.ever_up:
                self.metrics.outages.labels(str(self.span)).inc()
            self._restart_queue.clear()
            for line in self.lines.values():
                out += self._on(line, line.span_down(change.alarm, change.reason, tick))
        elif isinstance(change, health.Up):
            self._set_metric("in_service", 1)
            restart = self.cfg.restart_on_recovery and not first_up
            for line in self.lines.values():
                if line.span_up(tick, restart):
                    self._restart_queue.append(line.channel)
                out += self._on(line, line._service_actions())
            out += self._restart_more(tick)
        return out

    def _restart_more(self, tick: int) -> list:
        """Keep up to RESTART_WINDOW recovery restarts outstanding (no restart storm)."""
        if not self._restart_queue:
            return []
        busy = sum(1 for line in self.lines.values() if line.state == S.RESTARTING)
        out = []
        while self._restart_queue and busy < RESTART_WINDOW:
            line = self.lines[self._restart_queue.popleft()]
            if line.state != S.OUT_OF_SERVICE or not line.recovery_restart:
                continue
            out += self._on(line, line.reset("span recovery", tick, recovery=True))
            busy += 1
        return out

    def _stuck(self, line: PriChannel, what: str, tick: int) -> list:
        if what == "clearing" and line.state == S.CLEARING:
            log.warning("span %d channel %d: release not completed in %d ms: restarting it",
                        self.span, line.channel, self.cfg.stuck_clearing_ms)
            return self._on(line, line.reset("stuck in clearing", tick))
        if what == "restarting" and line.state == S.RESTARTING:
            return self._on(line, line.restart_overdue(tick))
        return []

    # ---- status -----------------------------------------------------------------------
    def describe(self) -> dict:
        return {"span": self.span, "node": self.cfg.node, "switchtype": self.cfg.switchtype,
                "dchannel_up": self.dchannel_up, "health": self.health.state.value,
                "frames_in": self.frames_in, "frames_out": self.frames_out,
                "calls": sum(1 for x in self.lines.values() if x.state in CALL_STATES)}
