"""FXS line: our port feeds a phone (an extension).

The phone originates calls by going off-hook (dial tone, then its DTMF digits reach the
application as Digit events) and receives calls by being rung (ring cadence driven from
here, caller ID by FSK after the first ring or DTMF before it).

Choices the application should know:
- Off-hook with no digit within first_digit_timeout_ms, or a pause over
  interdigit_timeout_ms while the line itself is still collecting: congestion tone and
  Cleared(28 "invalid number format (address incomplete)"); the phone keeps hearing
  congestion until it hangs up (LOCKOUT).
- Any media command (play_tone, stop_media, play_prompt, send_digits) on a call the phone
  originated means the application has taken it over: the line stops its digit timers and
  enters PROCEEDING; digits keep flowing as events.
- "answer" on a call the phone originated means the far end (an agent, the IVR, a trunk)
  answered: playback stops, the echo canceller starts, Answered is emitted.
- "hangup" while the phone is off-hook clears the call and plays clear_tone (busy) until
  the phone hangs up (LOCKOUT); while ringing it stops the ring.
- Caller ID: CallerIdSent is emitted when the engine reports the whole spill sent
  (PlayDone with tag "callerid"); a spill cut short by an answer or a hangup is not
  reported. The date/time field is left to the engine (the line has no clock).
- ALARM (port fault) clears any call with cause 38 and takes the port out of service
  until NOALARM.

Actions come in a fixed order: NewCall, hook operations, media operations, the call's
events, EndCall, then channel events (ServiceChange, an OnHook after the call ended).
"""
from __future__ import annotations

import enum

from drivers.backends.base import HookOp, HwEvent
from drivers.signaling import events as ev
from drivers.signaling.analog.timers import CALLERID_TAG, MEDIA_COMMANDS, LineMachine


class FxsState(enum.Enum):
    IDLE = "idle"                      # phone on-hook, no call
    DIALTONE = "dialtone"              # phone off-hook, dial tone, no digit yet
    COLLECTING = "collecting"          # digits arriving; the line still times them
    PROCEEDING = "proceeding"          # the application has taken the originated call
    RINGING = "ringing"                # we ring the phone
    CONNECTED = "connected"
    LOCKOUT = "lockout"                # call over, phone still off-hook: busy/congestion tone
    OUT_OF_SERVICE = "out_of_service"  # port alarm


S = FxsState
OFFHOOK_CALL = (S.DIALTONE, S.COLLECTING, S.PROCEEDING, S.CONNECTED)   # phone off-hook, in a call


def _table() -> dict:
    t = {
        (S.IDLE, HwEvent.RINGOFFHOOK): "_h_originate",
        (S.IDLE, "cmd.ring"): "_h_ring",
        (S.IDLE, HwEvent.ALARM): "_h_alarm_idle",

        (S.DIALTONE, "digit"): "_h_first_digit",
        (S.DIALTONE, "timer.first_digit"): "_h_no_digits",
        (S.COLLECTING, "digit"): "_h_more_digits",
        (S.COLLECTING, "timer.interdigit"): "_h_interdigit_timeout",
        (S.PROCEEDING, "digit"): "_h_emit_digit",
        (S.CONNECTED, "digit"): "_h_emit_digit",

        (S.RINGING, HwEvent.RINGOFFHOOK): "_h_ring_answered",
        (S.RINGING, "timer.cadence"): "_h_cadence",
        (S.RINGING, "timer.callerid"): "_h_send_fsk",
        (S.RINGING, "play_done"): "_h_callerid_done",
        (S.RINGING, "timer.max_ring"): "_h_ring_no_answer",
        (S.RINGING, "cmd.hangup"): "_h_hangup_ringing",
        (S.RINGING, HwEvent.ALARM): "_h_alarm_ringing",

        (S.LOCKOUT, HwEvent.ONHOOK): "_h_lockout_onhook",
        (S.LOCKOUT, HwEvent.ALARM): "_h_alarm_lockout",

        (S.OUT_OF_SERVICE, HwEvent.NOALARM): "_h_restored",
    }
    for s in OFFHOOK_CALL:
        t[(s, HwEvent.ONHOOK)] = "_h_phone_hung_up"
        t[(s, HwEvent.WINKFLASH)] = "_h_flash"
        t[(s, HwEvent.ALARM)] = "_h_alarm_call"
        t[(s, "cmd.hangup")] = "_h_hangup_offhook"
        t[(s, "tone.*")] = "_h_emit_tone"
        t[(s, "play_done")] = "_h_prompt_done"
        for c in MEDIA_COMMANDS:
            t[(s, f"cmd.{c}")] = {S.DIALTONE: "_h_takeover_dialtone",
                                  S.COLLECTING: "_h_takeover"}.get(s, "_h_media")
        if s != S.CONNECTED:
            t[(s, "cmd.answer")] = "_h_far_answered"
    return t


class FxsLine(LineMachine):
    State = FxsState
    INITIAL = S.IDLE
    KIND = "FXS"
    TRANSITIONS = _table()
    STATE_TIMERS = {
        S.DIALTONE: frozenset({"first_digit"}),
        S.COLLECTING: frozenset({"interdigit"}),
        S.RINGING: frozenset({"cadence", "callerid", "max_ring"}),
    }
    WIRE_STATE = {
        S.IDLE: "IDLE", S.DIALTONE: "DIALTONE", S.COLLECTING: "COLLECTING",
        S.PROCEEDING: "PROCEEDING", S.RINGING: "RINGING", S.CONNECTED: "CONNECTED",
        S.LOCKOUT: "CLEARING", S.OUT_OF_SERVICE: "OUT_OF_SERVICE",
    }
    STATE_TEXT = {
        S.IDLE: "idle (phone on-hook, no call)",
        S.DIALTONE: "off-hook with dial tone",
        S.COLLECTING: "collecting digits",
        S.PROCEEDING: "in an outgoing call not yet answered",
        S.RINGING: "ringing the phone",
        S.CONNECTED: "connected",
        S.LOCKOUT: "waiting for the phone to hang up after its call was cleared",
        S.OUT_OF_SERVICE: "out of service (port alarm)",
    }
    REFUSALS = {
        (None, "dial"): "an FXS port feeds a phone and cannot dial out; use ring",
        (S.RINGING, "answer"): "only the phone can answer a ringing extension",
        (S.CONNECTED, "answer"): "the call is already connected",
        (S.IDLE, "answer"): "there is no call to answer",
        (S.IDLE, "hangup"): "there is no call to hang up",
        (S.LOCKOUT, "ring"): "the phone is off-hook",
        **{(s, "ring"): "the extension is busy with a call" for s in OFFHOOK_CALL + (S.RINGING,)},
        **{(S.RINGING, c): "the phone is on-hook (ringing); media starts once it answers"
           for c in MEDIA_COMMANDS},
        **{(S.IDLE, c): "there is no call" for c in MEDIA_COMMANDS},
    }

    def __init__(self, channel, cfg=None):
        super().__init__(channel, cfg)
        self.ringing_now = False         # ring voltage applied (between RING and RINGOFF)
        self._segments = [self._ticks(ms) for ms in self.cfg.ring_cadence_ms]
        self._segment = -1               # cadence segment in progress; -1 before the first ring
        self._caller = ("", "")
        self._cid_playing = False
        self._echo = False

    # ---- small action builders --------------------------------------------------------
    def _echo_on(self) -> list:
        if not self.cfg.echo_cancel or self._echo:
            return []
        self._echo = True
        return [ev.Media("echo_cancel", (True,))]

    def _echo_off(self) -> list:
        if not self._echo:
            return []
        self._echo = False
        return [ev.Media("echo_cancel", (False,))]

    def _stop_ringing(self) -> list:
        out = []
        if self.ringing_now:
            self.ringing_now = False
            out.append(ev.Hook(HookOp.RINGOFF))
        if self._cid_playing:          # the caller ID spill is still on the wire
            out.append(ev.Media("stop"))
        self._cid_playing = False
        return out

    def _clear_offhook(self, cause: int, reason: str, tone: str) -> list:
        """End the call while the phone stays off-hook: it hears `tone` until it hangs up."""
        self._goto(S.LOCKOUT)
        return [ev.Media("stop"), *self._echo_off(), ev.Media("play_tone", (tone,)),
                ev.Emit(ev.Cleared(cause=cause, reason=reason)), ev.EndCall()]

    # ---- the phone originates ----------------------------------------------------------
    def _h_originate(self, tick, _):
        self._goto(S.DIALTONE)
        self.timers.start("first_digit", tick, self._ticks(self.cfg.first_digit_timeout_ms))
        return [ev.NewCall(), ev.Media("play_tone", ("dial",)), ev.Emit(ev.OffHook())]

    def _h_first_digit(self, tick, event):
        self._goto(S.COLLECTING)
        self.timers.start("interdigit", tick, self._ticks(self.cfg.interdigit_timeout_ms))
        return [ev.Media("stop"), ev.Emit(self._digit(event))]

    def _h_more_digits(self, tick, event):
        self.timers.start("interdigit", tick, self._ticks(self.cfg.interdigit_timeout_ms))
        return [ev.Emit(self._digit(event))]

    def _h_no_digits(self, tick, _):
        return self._clear_offhook(ev.CAUSE_INVALID_NUMBER, "no digits dialled",
                                   self.cfg.timeout_tone)

    def _h_interdigit_timeout(self, tick, _):
        return self._clear_offhook(ev.CAUSE_INVALID_NUMBER, "interdigit timeout",
                                   self.cfg.timeout_tone)

    def _h_takeover(self, tick, args):
        self._goto(S.PROCEEDING)
        return [self._media_for(args)]

    def _h_takeover_dialtone(self, tick, args):
        # The engine sums playback sources: the dial tone must not run under a prompt.
        self._goto(S.PROCEEDING)
        if args["command"] == "stop_media":
            return [ev.Media("stop")]
        return [ev.Media("stop"), self._media_for(args)]

    def _h_media(self, tick, args):
        return [self._media_for(args)]

    def _h_far_answered(self, tick, _):
        self._goto(S.CONNECTED)
        return [ev.Media("stop"), *self._echo_on(), ev.Emit(ev.Answered())]

    # ---- in a call with the phone off-hook ---------------------------------------------
    def _h_phone_hung_up(self, tick, _):
        self._goto(S.IDLE)
        return [ev.Media("stop"), *self._echo_off(), ev.Emit(ev.OnHook()),
                ev.Emit(ev.Cleared(cause=ev.CAUSE_NORMAL_CLEARING, reason="phone hung up")),
                ev.EndCall()]

    def _h_flash(self, tick, _):
        return [ev.Emit(ev.Flash())]

    def _h_hangup_offhook(self, tick, args):
        return self._clear_offhook(args["cause"], "hangup", self.cfg.clear_tone)

    def _h_lockout_onhook(self, tick, _):
        self._goto(S.IDLE)
        return [ev.Media("stop"), ev.Emit(ev.OnHook())]

    # ---- we ring the phone -------------------------------------------------------------
    def _h_ring(self, tick, args):
        cfg = self.cfg
        number, name = args["caller_id"], args["caller_name"]
        self._caller = (number, name)
        self._cid_playing = False
        self._goto(S.RINGING)
        self.timers.start("max_ring", tick, self._ticks(cfg.max_ring_ms))
        out: list = [ev.NewCall()]
        if cfg.callerid == "dtmf" and number:
            # DTMF caller ID goes before the first ring; the ring follows the last digit.
            spill = f"{cfg.callerid_dtmf_start}{number}{cfg.callerid_dtmf_end}"
            self._segment = -1
            self._cid_playing = True
            spill_ticks = self._ticks(len(spill) * (cfg.dtmf_on_ms + cfg.dtmf_off_ms))
            self.timers.start("cadence", tick, spill_ticks + self._ticks(cfg.callerid_dtmf_gap_ms))
            return out + [ev.Media("send_dtmf", (spill, CALLERID_TAG))]
        self._segment = 0
        self.ringing_now = True
        self.timers.start("cadence", tick, self._segments[0])
        if cfg.callerid == "fsk" and (number or name):
            # After the first ring: the first cadence cycle without its final silence.
            first_ring = sum(self._segments[:-1])
            self.timers.start("callerid", tick, first_ring + self._ticks(cfg.callerid_delay_ms))
        return out + [ev.Hook(HookOp.RING)]

    def _h_cadence(self, tick, _):
        self._segment = (self._segment + 1) % len(self._segments)
        self.timers.start("cadence", tick, self._segments[self._segment])
        self.ringing_now = self._segment % 2 == 0
        return [ev.Hook(HookOp.RING if self.ringing_now else HookOp.RINGOFF)]

    def _h_send_fsk(self, tick, _):
        number, name = self._caller
        self._cid_playing = True
        return [ev.Media("send_callerid", (number or None, name or None, None, CALLERID_TAG))]

    def _h_callerid_done(self, tick, event):
        # Reported once the whole spill has gone out; a spill cut short is not "sent".
        if getattr(event, "tag", None) != CALLERID_TAG or not self._cid_playing:
            return []
        self._cid_playing = False
        if getattr(event, "interrupted", False):
            return []
        return [ev.Emit(ev.CallerIdSent(number=self._caller[0]))]

    def _h_ring_answered(self, tick, _):
        out = self._stop_ringing()
        self._goto(S.CONNECTED)
        return out + self._echo_on() + [ev.Emit(ev.Answered())]

    def _h_ring_no_answer(self, tick, _):
        out = self._stop_ringing()
        self._goto(S.IDLE)
        return out + [ev.Emit(ev.Cleared(cause=ev.CAUSE_NO_ANSWER, reason="no answer")),
                      ev.EndCall()]

    def _h_hangup_ringing(self, tick, args):
        out = self._stop_ringing()
        self._goto(S.IDLE)
        return out + [ev.Emit(ev.Cleared(cause=args["cause"], reason="hangup")), ev.EndCall()]

    # ---- port alarm ----------------------------------------------------------------------
    _OUT = ev.Emit(ev.ServiceChange(in_service=False, reason="port alarm"))
    _FAULT = ev.Emit(ev.Cleared(cause=ev.CAUSE_NETWORK_OUT_OF_ORDER, reason="port alarm"))

    def _h_alarm_idle(self, tick, _):
        self._goto(S.OUT_OF_SERVICE)
        return [self._OUT]

    def _h_alarm_ringing(self, tick, _):
        out = self._stop_ringing()
        self._goto(S.OUT_OF_SERVICE)
        return out + [self._FAULT, ev.EndCall(), self._OUT]

    def _h_alarm_call(self, tick, _):
        self._goto(S.OUT_OF_SERVICE)
        return [ev.Media("stop"), *self._echo_off(), self._FAULT, ev.EndCall(), self._OUT]

    def _h_alarm_lockout(self, tick, _):
        self._goto(S.OUT_OF_SERVICE)
        return [ev.Media("stop"), self._OUT]

    def _h_restored(self, tick, _):
        self._goto(S.IDLE)
        return [ev.Emit(ev.ServiceChange(in_service=True, reason="alarm cleared"))]
