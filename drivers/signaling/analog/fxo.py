"""FXO line: our port is on a central-office (CO) line.

Incoming: ring voltage is reported as RINGBEGIN, RINGERON or RINGOFFHOOK depending on the
card module (all three mean "ring on" while on-hook; reports closer than ring_debounce_ms
without a ring-off between are the same ring) and RINGEROFF (or ONHOOK: no loop current)
as "ring off". The call is offered (NewCall, Incoming) when caller ID is known: an FSK
spill decoded between the first and second ring, a DTMF spill heard just before the first
ring, or, lacking both, at the start of the second ring (at the first with callerid
"none"). No ring edge for ring_timeout_ms: the caller gave up, Cleared(16 "caller
abandoned") (16 because the caller cleared normally; nothing failed).

Outbound: dial seizes the line (OFFHOOK), waits for dial tone (or dialtone_wait_ms),
sends the digits as DTMF, then reports DialComplete and Proceeding. Call progress tones
decide what follows: ringback -> Alerting; busy -> Cleared(17 user busy); congestion ->
Cleared(42 switching equipment congestion: the China congestion tone means the network
could not route the call). An analog line signals answer only by polarity reversal
(answer_on_polarity); otherwise the application decides: it may treat DialComplete as
connected, or send "answer" in PROCEEDING/ALERTING to declare the call answered (from
then on busy tone means the far end hung up).

Disconnect supervision on a connected call: busy or congestion tone (busy_detect),
polarity reversal (polarity_disconnect), loss of loop current (loop_disconnect): the line
goes on-hook and the call is cleared with cause 16 and the reason.

ALARM (no battery on the line) clears any call with cause 38 and takes the line out of
service until NOALARM; only status is accepted meanwhile.

"hangup" on an offered (unanswered) call cannot reject it on an analog line: the call is
cleared for the application (Cleared(cause, "declined"), EndCall) and the line ignores
the remaining rings (DECLINED) until they stop.

Media calls beyond docs/internals.md's basic forms: send_dtmf(row, digits, tag) with tag
"dial" (its PlayDone ends dialling), detect_tones(row, True, ("dial",)) while waiting for
dial tone (alone it is reported after 300 ms; with the 1 s ringback also enabled only
after ~1.2 s).

Actions come in a fixed order: NewCall, hook operations, media operations, the call's
events, EndCall, then channel events (ServiceChange).
"""
from __future__ import annotations

import enum

from drivers.backends.base import HookOp, HwEvent
from drivers.media.fsk import parse_dtmf_callerid
from drivers.signaling import events as ev
from drivers.signaling.analog.timers import DIAL_TAG, MEDIA_COMMANDS, LineMachine


class FxoState(enum.Enum):
    IDLE = "idle"
    RING_DETECTED = "ring_detected"    # ringing, waiting for caller ID before offering
    OFFERED = "offered"                # Incoming emitted, waiting for answer
    DECLINED = "declined"              # the application hung up an offered call; rings go on
    WAIT_DIALTONE = "wait_dialtone"    # outbound: off-hook, listening for dial tone
    DIALING = "dialing"                # outbound: DTMF digits going out
    PROCEEDING = "proceeding"          # outbound: digits sent, listening for call progress
    ALERTING = "alerting"              # outbound: ringback heard
    CONNECTED = "connected"
    OUT_OF_SERVICE = "out_of_service"  # no battery on the line


S = FxoState
RING_ON = (HwEvent.RINGBEGIN, HwEvent.RINGERON, HwEvent.RINGOFFHOOK)
RING_OFF = (HwEvent.RINGEROFF, HwEvent.ONHOOK)
RINGING = (S.RING_DETECTED, S.OFFERED, S.DECLINED)
OFFHOOK = (S.WAIT_DIALTONE, S.DIALING, S.PROCEEDING, S.ALERTING, S.CONNECTED)
OUTBOUND_WAITING = (S.PROCEEDING, S.ALERTING)
ALL_TONES: tuple[str, ...] = ()          # _detect_tones: every tone of the plan


def _table() -> dict:
    t = {
        (S.IDLE, "cmd.dial"): "_h_dial",
        (S.IDLE, "digit"): "_h_callerid_digit",
        (S.IDLE, HwEvent.ALARM): "_h_alarm_on_hook",

        (S.RING_DETECTED, "callerid"): "_h_callerid",
        (S.RING_DETECTED, "timer.ring_timeout"): "_h_ring_gone",
        (S.RING_DETECTED, HwEvent.ALARM): "_h_alarm_on_hook",
        (S.OFFERED, "timer.ring_timeout"): "_h_abandoned",
        (S.OFFERED, "cmd.answer"): "_h_answer",
        (S.OFFERED, "cmd.hangup"): "_h_decline",
        (S.OFFERED, HwEvent.ALARM): "_h_alarm_offered",
        (S.DECLINED, "timer.ring_timeout"): "_h_rings_over",
        (S.DECLINED, HwEvent.ALARM): "_h_alarm_on_hook",

        (S.WAIT_DIALTONE, "tone.dial"): "_h_send_number",
        (S.WAIT_DIALTONE, "timer.dialtone"): "_h_send_number",
        (S.DIALING, "play_done"): "_h_dialled",
        (S.DIALING, "timer.dialled"): "_h_dialled",
        (S.PROCEEDING, "tone.ringback"): "_h_ringback",
        (S.ALERTING, "tone.ringback"): "_h_ignore",     # reported again every cadence cycle

        (S.CONNECTED, "tone.busy"): "_h_far_hung_up_tone",
        (S.CONNECTED, "tone.congestion"): "_h_far_hung_up_tone",
        (S.CONNECTED, HwEvent.POLARITY): "_h_polarity_connected",

        (S.OUT_OF_SERVICE, HwEvent.NOALARM): "_h_restored",
    }
    for ring_on in RING_ON:
        t[(S.IDLE, ring_on)] = "_h_first_ring"
        t[(S.RING_DETECTED, ring_on)] = "_h_ring_detected_ring"
        t[(S.OFFERED, ring_on)] = "_h_ring_edge_on"
        t[(S.DECLINED, ring_on)] = "_h_ring_edge_on"
    for s in RINGING:
        for ring_off in RING_OFF:
            t[(s, ring_off)] = "_h_ring_edge_off"
    for s in OFFHOOK:
        t[(s, "cmd.hangup")] = "_h_hangup"
        t[(s, HwEvent.ONHOOK)] = "_h_loop_lost"
        t[(s, HwEvent.ALARM)] = "_h_alarm_off_hook"
    for s in OUTBOUND_WAITING:
        t[(s, "tone.busy")] = "_h_far_busy"
        t[(s, "tone.congestion")] = "_h_far_congestion"
        t[(s, HwEvent.POLARITY)] = "_h_polarity_outbound"
        t[(s, "cmd.answer")] = "_h_declared_answered"
    for s in OUTBOUND_WAITING + (S.CONNECTED,):
        t[(s, "digit")] = "_h_emit_digit"
        t[(s, "tone.*")] = "_h_emit_tone"
        t[(s, "play_done")] = "_h_prompt_done"
        for c in MEDIA_COMMANDS:
            t[(s, f"cmd.{c}")] = "_h_media"
    return t


class FxoLine(LineMachine):
    State = FxoState
    INITIAL = S.IDLE
    KIND = "FXO"
    TRANSITIONS = _table()
    STATE_TIMERS = {
        S.RING_DETECTED: frozenset({"ring_timeout"}),
        S.OFFERED: frozenset({"ring_timeout"}),
        S.DECLINED: frozenset({"ring_timeout"}),
        S.WAIT_DIALTONE: frozenset({"dialtone"}),
        S.DIALING: frozenset({"dialled"}),
    }
    WIRE_STATE = {
        S.IDLE: "IDLE", S.RING_DETECTED: "RINGING", S.OFFERED: "RINGING", S.DECLINED: "CLEARING",
        S.WAIT_DIALTONE: "DIALING", S.DIALING: "DIALING", S.PROCEEDING: "PROCEEDING",
        S.ALERTING: "ALERTING", S.CONNECTED: "CONNECTED", S.OUT_OF_SERVICE: "OUT_OF_SERVICE",
    }
    STATE_TEXT = {
        S.IDLE: "idle (no call)",
        S.RING_DETECTED: "ringing (caller ID not yet received; no call offered yet)",
        S.OFFERED: "ringing with an offered call",
        S.DECLINED: "ringing with a call the application declined",
        S.WAIT_DIALTONE: "waiting for dial tone",
        S.DIALING: "dialling",
        S.PROCEEDING: "waiting for call progress",
        S.ALERTING: "alerting (far end ringing)",
        S.CONNECTED: "connected",
        S.OUT_OF_SERVICE: "out of service (no battery on the line)",
    }
    REFUSALS = {
        (None, "ring"): "an FXO port is a line to the exchange and cannot ring a phone; use dial",
        (S.IDLE, "answer"): "there is no incoming call to answer",
        (S.RING_DETECTED, "answer"): "no call has been offered yet (waiting for caller ID)",
        (S.CONNECTED, "answer"): "the call is already connected",
        (S.IDLE, "hangup"): "there is no call to hang up",
        (S.RING_DETECTED, "hangup"): "no call has been offered yet",
        (S.DECLINED, "hangup"): "the call was already cleared",
        **{(s, "dial"): "the line is ringing with an incoming call" for s in RINGING},
        **{(s, "dial"): "a call is already in progress" for s in OFFHOOK},
        **{(s, c): "the line is on-hook (call not answered)"
           for s in RINGING for c in MEDIA_COMMANDS},
        **{(s, c): "the number is being dialled" for s in (S.WAIT_DIALTONE, S.DIALING)
           for c in MEDIA_COMMANDS},
        **{(S.IDLE, c): "there is no call" for c in MEDIA_COMMANDS},
    }

    def __init__(self, channel, cfg=None):
        super().__init__(channel, cfg)
        self.ring_on = False            # ring voltage present now
        self.rings = 0                  # rings of the current incoming call
        self._last_ring_on = 0
        self._cid_digits: list[tuple[int, str]] = []   # DTMF caller ID heard while idle
        self._number = ""               # outbound: what to dial
        self._cid_rx = self._echo = False
        self._tones: tuple[str, ...] | None = None     # tones the engine listens for on this row

    # ---- media switches: each returns the action only when it changes something ----------
    def _switch(self, attr: str, method: str, on: bool) -> list:
        if getattr(self, attr) == on:
            return []
        setattr(self, attr, on)
        return [ev.Media(method, (on,))]

    def _callerid_rx(self, on):
        return self._switch("_cid_rx", "receive_callerid", on)

    def _detect_tones(self, names: tuple[str, ...] | None) -> list:
        """Listen for `names` (() = every tone of the plan; None = stop listening).

        Dial tone is listened for alone: the detector reports a continuous tone only once
        it has outlasted every cadenced tone of the same frequency that it also listens
        for (China's 1 s ringback burst), which would be later than dialtone_wait_ms.
        """
        if names == self._tones:
            return []
        self._tones = names
        if names is None:
            return [ev.Media("detect_tones", (False,))]
        return [ev.Media("detect_tones", (True, names) if names else (True,))]

    def _echo_cancel(self, on):
        return self._switch("_echo", "echo_cancel", on and self.cfg.echo_cancel)

    # ---- incoming ------------------------------------------------------------------------
    def _ring_edge(self, tick, on: bool) -> bool:
        """Note a ring edge and restart the abandon timer; True when it starts a new ring."""
        self.timers.start("ring_timeout", tick, self._ticks(self.cfg.ring_timeout_ms))
        if not on:
            self.ring_on = False
            return False
        debounce = self._ticks(self.cfg.ring_debounce_ms)
        new = not self.ring_on or tick - self._last_ring_on >= debounce
        self.ring_on = True
        if new:
            self._last_ring_on = tick
            self.rings += 1
        return new

    def _offer(self, number: str, name: str) -> list:
        self._goto(S.OFFERED)
        return [ev.NewCall(), ev.Emit(ev.Incoming(ani=number, caller_name=name))]

    def _dtmf_callerid(self, tick) -> str | None:
        """The number of a DTMF caller ID spill heard just before this ring: "" when the
        spill says the number is withheld, None when no spill was heard."""
        window = self._ticks(self.cfg.callerid_dtmf_window_ms)
        spill = "".join(d for t, d in self._cid_digits if tick - t <= window)
        self._cid_digits = []
        if not spill:
            return None
        return parse_dtmf_callerid(spill) or ""

    def _h_callerid_digit(self, tick, event):
        if self.cfg.callerid == "dtmf":
            self._cid_digits.append((tick, str(event.digit)))
            self._cid_digits = self._cid_digits[-40:]
        return []

    def _h_first_ring(self, tick, _):
        self.rings = 0
        self.ring_on = False
        self._ring_edge(tick, True)
        mode = self.cfg.callerid
        number = self._dtmf_callerid(tick) if mode == "dtmf" else None
        if mode == "none" or number is not None:
            return self._offer(number or "", "")
        self._goto(S.RING_DETECTED)
        return self._callerid_rx(True) if mode == "fsk" else []

    def _h_ring_detected_ring(self, tick, _):
        if self._ring_edge(tick, True) and self.rings >= 2:
            return self._offer("", "")      # no caller ID came between the rings
        return []

    def _h_ring_edge_on(self, tick, _):
        self._ring_edge(tick, True)
        return []

    def _h_ring_edge_off(self, tick, _):
        self._ring_edge(tick, False)
        return []

    def _h_callerid(self, tick, event):
        return self._offer(str(getattr(event, "number", "") or ""),
                           str(getattr(event, "name", "") or ""))

    def _h_ring_gone(self, tick, _):
        self._goto(S.IDLE)
        return self._callerid_rx(False)

    def _h_abandoned(self, tick, _):
        self._goto(S.IDLE)
        return self._callerid_rx(False) + [
            ev.Emit(ev.Cleared(cause=ev.CAUSE_NORMAL_CLEARING, reason="caller abandoned")),
            ev.EndCall()]

    def _h_answer(self, tick, _):
        self._goto(S.CONNECTED)
        return ([ev.Hook(HookOp.OFFHOOK)] + self._callerid_rx(False)
                + self._detect_tones(ALL_TONES if self.cfg.busy_detect else None)
                + self._echo_cancel(True)
                + [ev.Emit(ev.Answered())])

    def _h_decline(self, tick, args):
        self._goto(S.DECLINED)
        return self._callerid_rx(False) + [
            ev.Emit(ev.Cleared(cause=args["cause"], reason="declined")), ev.EndCall()]

    def _h_rings_over(self, tick, _):
        self._goto(S.IDLE)
        return []

    # ---- outbound ------------------------------------------------------------------------
    def _h_dial(self, tick, args):
        self._number = args["number"]
        self._goto(S.WAIT_DIALTONE)
        self.timers.start("dialtone", tick, self._ticks(self.cfg.dialtone_wait_ms))
        return [ev.NewCall(), ev.Hook(HookOp.OFFHOOK), *self._detect_tones(("dial",))]

    def _h_send_number(self, tick, _):
        cfg = self.cfg
        self._goto(S.DIALING)
        self.timers.start("dialled", tick,
                          self._ticks(len(self._number) * (cfg.dtmf_on_ms + cfg.dtmf_off_ms)))
        return [ev.Media("send_dtmf", (self._number, DIAL_TAG))]

    def _h_dialled(self, tick, event):
        if event is not None and getattr(event, "tag", None) != DIAL_TAG:
            return []
        self._goto(S.PROCEEDING)
        return self._detect_tones(ALL_TONES) + [ev.Emit(ev.DialComplete()),
                                                ev.Emit(ev.Proceeding())]

    def _h_ringback(self, tick, _):
        self._goto(S.ALERTING)
        return [ev.Emit(ev.Alerting())]

    def _h_far_busy(self, tick, _):
        return self._release(ev.CAUSE_USER_BUSY, "busy tone")

    def _h_far_congestion(self, tick, _):
        return self._release(ev.CAUSE_SWITCH_CONGESTION, "congestion tone")

    def _connect(self) -> list:
        self._goto(S.CONNECTED)
        return (self._detect_tones(ALL_TONES if self.cfg.busy_detect else None)
                + self._echo_cancel(True) + [ev.Emit(ev.Answered())])

    def _h_polarity_outbound(self, tick, _):
        return self._connect() if self.cfg.answer_on_polarity else []

    def _h_declared_answered(self, tick, _):
        return self._connect()

    # ---- connected -----------------------------------------------------------------------
    def _release(self, cause: int, reason: str) -> list:
        """Go on-hook and end the call."""
        self._goto(S.IDLE)
        return ([ev.Hook(HookOp.ONHOOK), ev.Media("stop")] + self._detect_tones(None)
                + self._echo_cancel(False)
                + [ev.Emit(ev.Cleared(cause=cause, reason=reason)), ev.EndCall()])

    def _h_far_hung_up_tone(self, tick, event):
        if not self.cfg.busy_detect:
            return self._h_emit_tone(tick, event)
        return self._release(ev.CAUSE_NORMAL_CLEARING, f"{event.tone} tone")

    def _h_polarity_connected(self, tick, _):
        if not self.cfg.polarity_disconnect:
            return []
        return self._release(ev.CAUSE_NORMAL_CLEARING, "polarity reversal")

    def _h_loop_lost(self, tick, _):
        if not self.cfg.loop_disconnect:
            return []
        return self._release(ev.CAUSE_NORMAL_CLEARING, "loop current lost")

    def _h_hangup(self, tick, args):
        return self._release(args["cause"], "hangup")

    def _h_media(self, tick, args):
        return [self._media_for(args)]

    # ---- battery -------------------------------------------------------------------------
    _OUT = ev.Emit(ev.ServiceChange(in_service=False, reason="no battery"))
    _FAULT = ev.Emit(ev.Cleared(cause=ev.CAUSE_NETWORK_OUT_OF_ORDER, reason="no battery"))

    def _h_alarm_on_hook(self, tick, _):
        self._goto(S.OUT_OF_SERVICE)
        return self._callerid_rx(False) + [self._OUT]

    def _h_alarm_offered(self, tick, _):
        self._goto(S.OUT_OF_SERVICE)
        return self._callerid_rx(False) + [self._FAULT, ev.EndCall(), self._OUT]

    def _h_alarm_off_hook(self, tick, _):
        self._goto(S.OUT_OF_SERVICE)
        return ([ev.Hook(HookOp.ONHOOK), ev.Media("stop")] + self._detect_tones(None)
                + self._echo_cancel(False) + [self._FAULT, ev.EndCall(), self._OUT])

    def _h_restored(self, tick, _):
        self._goto(S.IDLE)
        self.ring_on = False
        return [ev.Emit(ev.ServiceChange(in_service=True, reason="battery restored"))]
