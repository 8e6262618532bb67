"""A central-office line on an FXO port: the exchange and the party at the far end.

Incoming calls: ring(caller_id, name) rings with the plan's cadence (China: 1 s on, 4 s
off): RINGBEGIN and RINGERON at the first ring's start, RINGERON at every later one,
RINGEROFF at each end. Caller ID goes between the first and second ring, `callerid_gap`
(default 0.6 s) after the first ring ends: FSK Bell 202 (MDMF by default, SDMF on
request), or as DTMF (A<number>C) before the first ring. When the host goes off-hook the
exchange connects the call and stops ringing. The far party can talk (speech-like audio
or a test tone), press digits and hang up; after its hang-up the exchange plays busy
tone (China sends no disconnect signal) and, only if configured, reverses the polarity
(polarity_on_hangup) or breaks the loop (open_loop_on_hangup, posting ONHOOK).

Outbound calls: the host going off-hook on an idle line gets dial tone; its DTMF digits
are collected until `interdigit` (default 3 s) passes without one or a plan's number is
complete; then the plan for that number (or "default") decides: ringback then answer
after `after` (optionally with a polarity reversal), ringback for ever (answer: false)
or busy tone (busy: true).

Faults: remove_battery() posts ALARM on the channel and drops any call; restore_battery()
posts NOALARM. The host going on-hook ends whatever was going on (the line idles, normal
polarity restored).
"""
from __future__ import annotations

import datetime
import enum

from drivers.backends.base import HookOp, HwEvent
from drivers.media.fsk import callerid_dtmf, callerid_fsk

from . import Actor, ActorError, speech_like, test_tone

DEFAULT_CALLERID_GAP_S = 0.6
DEFAULT_INTERDIGIT_S = 3.0
DEFAULT_PLAN = {"answer": True, "after": 3.0, "busy": False, "polarity": False}
DTMF_CID_LEAD_S = 0.3          # pause between a DTMF caller ID spill and the first ring
TALK_SECONDS = 6.0             # length of one talk clip; it repeats while talking


class CoState(enum.Enum):
    IDLE = "idle"
    RINGING = "ringing"              # incoming call: ring cadence on the line
    CONNECTED = "connected"          # a call is up (either direction)
    FAR_CLEARED = "far_cleared"      # the far party hung up: busy tone until the host releases
    DIALTONE = "dialtone"            # outbound: the host seized the line
    COLLECTING = "collecting"        # outbound: digits arriving
    ROUTING = "routing"              # outbound: ringback (or busy) before the far end answers
    BUSY = "busy"                    # outbound: the number is busy
    NO_BATTERY = "no_battery"


S = CoState
HOST_OFFHOOK_STATES = (S.CONNECTED, S.FAR_CLEARED, S.DIALTONE, S.COLLECTING, S.ROUTING, S.BUSY)


def _table() -> dict:
    t = {
        (S.IDLE, "ring"): "_t_ring",
        (S.IDLE, "host_offhook"): "_t_seized",
        (S.RINGING, "host_offhook"): "_t_answered",
        (S.RINGING, "hang_up"): "_t_abandon",
        (S.RINGING, "ring_limit"): "_t_abandon",
        (S.CONNECTED, "hang_up"): "_t_far_hangup",
        (S.DIALTONE, "digit"): "_t_first_digit",
        (S.COLLECTING, "digit"): "_t_digit",
        (S.COLLECTING, "number_complete"): "_t_route",
        (S.ROUTING, "answer_due"): "_t_far_answers",
        (S.ROUTING, "hang_up"): "_t_abandon_outbound",
        (S.NO_BATTERY, "battery_on"): "_t_battery_on",
    }
    for s in HOST_OFFHOOK_STATES:
        t[(s, "host_onhook")] = "_t_released"
    for s in S:
        if s != S.NO_BATTERY:
            t[(s, "battery_off")] = "_t_battery_off"
    return t


class CoLine(Actor):
    kind = "co_line"
    TRANSITIONS = _table()

    def __init__(self, world, port, polarity_on_hangup: bool = False,
                 polarity_on_answer: bool = False, open_loop_on_hangup: bool = False,
                 callerid_gap=None, interdigit=None, outbound: dict | None = None):
        super().__init__(world, port)
        self.state = S.IDLE
        self.polarity_on_hangup = polarity_on_hangup
        self.polarity_on_answer = polarity_on_answer
        self.open_loop_on_hangup = open_loop_on_hangup
        self.callerid_gap = self.to_ticks(callerid_gap, DEFAULT_CALLERID_GAP_S)
        self.interdigit = self.to_ticks(interdigit, DEFAULT_INTERDIGIT_S)
        self.plans = {str(k): self._plan(v) for k, v in (outbound or {}).items()}
        on, off = world.media.plan.ring_cadence_ms[:2]
        self.ring_on_ticks = self.ticks(on / 1000)
        self.ring_period = self.ring_on_ticks + self.ticks(off / 1000)
        # counters the scenario's expectations read
        self.calls_offered = 0
        self.answered = 0
        self.seized = 0
        self.far_hangups = 0
        self.digits = ""                   # digits the host dialled on the current/last call
        self.all_digits = ""
        # the call in progress
        self._ring = None                  # dict: start, rings, limit, cid clip
        self._ring_voltage = False
        self._talk = None
        self._digit_deadline: int | None = None
        self._answer_due: int | None = None
        self._plan_now = dict(DEFAULT_PLAN)
        self._host_ops: list[HookOp] = []
        world.cards.hook_listeners.append(self._on_host_hook)

    # ---- the state machine ------------------------------------------------------------
    def _fire(self, event: str, strict: bool = False, **args) -> None:
        handler = self.TRANSITIONS.get((self.state, event))
        if handler is None:
            if strict:
                raise ActorError(f"co_line {self.channel} cannot {event.replace('_', ' ')} "
                                 f"while {self.state.value.replace('_', ' ')}")
            return
        getattr(self, handler)(**args)

    def _goto(self, state: CoState) -> None:
        if state != self.state:
            self.note(f"{self.state.value} -> {state.value}")
            self.state = state

    # ---- actions (scenario `do:`) -------------------------------------------------------
    def ring(self, caller_id: str | None = None, name: str | None = None, callerid: str = "fsk",
             format: str = "mdmf", rings: int | None = None) -> None:
        if callerid not in ("fsk", "dtmf", "none"):
            raise ActorError(f"co_line {self.channel}: callerid must be fsk, dtmf or none, not {callerid!r}")
        if format not in ("mdmf", "sdmf"):
            raise ActorError(f"co_line {self.channel}: caller ID format must be mdmf or sdmf, not {format!r}")
        if rings is not None and rings < 1:
            raise ActorError(f"co_line {self.channel}: rings must be 1 or more, not {rings}")
        self._fire("ring", strict=True, caller_id=caller_id, name=name, mode=callerid,
                   fmt=format, limit=rings)

    def hang_up(self) -> None:
        self._fire("hang_up", strict=True)

    def talk(self, sound: str = "speech", level_dbm0: float = -20.0) -> None:
        if self.state != S.CONNECTED:
            raise ActorError(f"co_line {self.channel} cannot talk while {self.state.value}")
        if sound not in ("speech", "tone"):
            raise ActorError(f"co_line {self.channel}: sound must be speech or tone, not {sound!r}")
        clip = (speech_like(TALK_SECONDS, level_dbm0, seed=self.channel) if sound == "speech"
                else test_tone(TALK_SECONDS, level_dbm0=level_dbm0))
        self._talk = clip
        self.engine.play(self.row, clip, tag="talk")
        self.note(f"far party talks ({sound})")

    def quiet(self) -> None:
        self._talk = None
        self.engine.stop(self.row)

    def press(self, digits: str, on_ms: int = 100, off_ms: int = 100) -> None:
        if self.state != S.CONNECTED:
            raise ActorError(f"co_line {self.channel}: the far party can press digits only "
                             f"on a connected call (line is {self.state.value})")
        if (on_ms, off_ms) != (100, 100):
            from drivers.media.dtmf import dtmf_tone
            self.engine.play(self.row, dtmf_tone(digits, on_ms=on_ms, off_ms=off_ms), tag="press")
        else:
            self.engine.send_dtmf(self.row, digits)
        self.note(f"far party presses {digits}")

    def remove_battery(self) -> None:
        self._fire("battery_off", strict=True)

    def restore_battery(self) -> None:
        self._fire("battery_on", strict=True)

    def reverse_polarity(self) -> None:
        if not self.port.battery:
            raise ActorError(f"co_line {self.channel} has no battery to reverse")
        self._reverse()

    # ---- host side ----------------------------------------------------------------------
    def _on_host_hook(self, port, op: HookOp) -> None:
        if port is self.port and op in (HookOp.OFFHOOK, HookOp.ONHOOK):
            self._host_ops.append(op)        # handled in step(), on the clock

    def on_digit(self, digit: str) -> None:
        self.all_digits += digit
        self._fire("digit", digit=digit)

    def on_play_done(self, tag, interrupted: bool) -> None:
        if tag == "talk" and not interrupted and self._talk is not None and self.state == S.CONNECTED:
            self.engine.play(self.row, self._talk, tag="talk")

    def step(self, tick: int) -> None:
        ops, self._host_ops = self._host_ops, []
        for op in ops:
            if self.port.battery:
                self._fire("host_offhook" if op == HookOp.OFFHOOK else "host_onhook")
        if self.state == S.RINGING:
            self._ring_cadence(tick)
        if self._digit_deadline is not None and tick >= self._digit_deadline:
            self._digit_deadline = None
            self._fire("number_complete")
        if self._answer_due is not None and tick >= self._answer_due:
            self._answer_due = None
            self._fire("answer_due")

    # ---- incoming ----------------------------------------------------------------------
    def _t_ring(self, caller_id, name, mode, fmt, limit) -> None:
        start = self.tick + 1
        clip = None
        if caller_id or name:
            if mode == "fsk":
                # The exchange stamps its date and time (SDMF requires it).
                clip = callerid_fsk(caller_id, name=name, when=datetime.datetime.now(), fmt=fmt)
            elif mode == "dtmf":
                if not caller_id:
                    raise ActorError(f"co_line {self.channel}: DTMF caller ID needs a number")
                spill = callerid_dtmf(caller_id)
                self.engine.play(self.row, spill, tag="callerid")
                start += self.ticks(len(spill) / 8000 + DTMF_CID_LEAD_S)
                clip = None
        self._ring = {"start": start, "limit": limit, "fsk": clip, "number": caller_id}
        self.calls_offered += 1
        self.digits = ""
        self._goto(S.RINGING)
        self.note(f"rings with caller ID {caller_id or '-'}")

    def _ring_cadence(self, tick: int) -> None:
        ring = self._ring
        since = tick - ring["start"]
        if since < 0:
            return
        index, phase = divmod(since, self.ring_period)
        if phase == 0:
            if ring["limit"] is not None and index >= ring["limit"]:
                self._fire("ring_limit")
                return
            if index == 0:
                self.post(HwEvent.RINGBEGIN)
            self.post(HwEvent.RINGERON)
            self._ring_voltage = True
        elif phase == self.ring_on_ticks:
            self.post(HwEvent.RINGEROFF)
            self._ring_voltage = False
        if index == 0 and phase == self.ring_on_ticks + self.callerid_gap and ring["fsk"] is not None:
            self.engine.play(self.row, ring["fsk"], tag="callerid")

    def _t_answered(self) -> None:
        self._stop_ringing()
        self.engine.stop(self.row)                 # a caller ID spill still going: cut
        self.answered += 1
        self._goto(S.CONNECTED)

    def _t_abandon(self) -> None:
        self._stop_ringing()
        self.engine.stop(self.row)
        self._goto(S.IDLE)

    def _stop_ringing(self) -> None:
        if self._ring_voltage:
            self.post(HwEvent.RINGEROFF)           # the ring is cut short, not left hanging
            self._ring_voltage = False
        self._ring = None

    # ---- connected --------------------------------------------------------------------
    def _t_far_hangup(self) -> None:
        self._talk = None
        self.far_hangups += 1
        self.engine.stop(self.row)
        self.engine.play_tone(self.row, "busy")
        if self.polarity_on_hangup:
            self._reverse()
        if self.open_loop_on_hangup:
            self.post(HwEvent.ONHOOK)
        self._goto(S.FAR_CLEARED)

    def _t_released(self) -> None:
        self._talk = None
        self._digit_deadline = self._answer_due = None
        self.engine.stop(self.row)
        if self.port.polarity:
            self._reverse()                        # the exchange idles the line: normal polarity
        self._goto(S.IDLE)

    # ---- outbound ---------------------------------------------------------------------
    def _t_seized(self) -> None:
        self.seized += 1
        self.digits = ""
        self.engine.play_tone(self.row, "dial")
        self._goto(S.DIALTONE)

    def _t_first_digit(self, digit: str) -> None:
        self.engine.stop(self.row)
        self._goto(S.COLLECTING)
        self._t_digit(digit)

    def _t_digit(self, digit: str) -> None:
        self.digits += digit
        self._digit_deadline = self.tick + self.interdigit
        if self.digits in self.plans and not any(
                k != self.digits and k.startswith(self.digits) for k in self.plans):
            self._digit_deadline = self.tick          # a known number is complete: route now

    def _t_route(self) -> None:
        plan = self.plans.get(self.digits) or self.plans.get("default") or self._plan({})
        self.note(f"number {self.digits} dialled: "
                  + ("busy" if plan["busy"] else "answer" if plan["answer"] else "no answer"))
        if plan["busy"]:
            self.engine.play_tone(self.row, "busy")
            self._goto(S.BUSY)
            return
        self.engine.play_tone(self.row, "ringback")
        self._goto(S.ROUTING)
        self._plan_now = plan
        if plan["answer"]:
            self._answer_due = self.tick + plan["after"]

    def _t_far_answers(self) -> None:
        self.engine.stop(self.row)
        if self._plan_now["polarity"] or self.polarity_on_answer:
            self._reverse()
        self.answered += 1
        self._goto(S.CONNECTED)

    def _t_abandon_outbound(self) -> None:
        self._answer_due = None
        self._t_far_hangup()

    # ---- battery and polarity -----------------------------------------------------------
    def _t_battery_off(self) -> None:
        if self.state == S.RINGING:
            self._stop_ringing()
        self._talk = None
        self._digit_deadline = self._answer_due = None
        self.engine.stop(self.row)
        self.port.battery = False
        self.post(HwEvent.ALARM)
        self._goto(S.NO_BATTERY)

    def _t_battery_on(self) -> None:
        self.port.battery = True
        self.port.polarity = 0
        self.post(HwEvent.NOALARM)
        self._goto(S.IDLE)

    def _reverse(self) -> None:
        self.port.polarity ^= 1
        self.post(HwEvent.POLARITY)
        self.note("polarity reversed" if self.port.polarity else "polarity normal")

    # ---- helpers ------------------------------------------------------------------------
    def _plan(self, raw: dict) -> dict:
        plan = dict(DEFAULT_PLAN)
        plan.update(raw)
        plan["after"] = self.to_ticks(plan["after"], DEFAULT_PLAN["after"])
        return plan

    @property
    def calling_number(self) -> str | None:
        """The caller ID of the incoming call ringing now, if any."""
        return self._ring["number"] if self.state == S.RINGING and self._ring else None

    # ---- checks (scenario `expect:`) and final observations ----------------------------
    def _check_answered(self) -> bool:
        return self.state in (S.CONNECTED, S.FAR_CLEARED) and self.answered > 0

    def _check_seized(self) -> bool:
        return self.state in HOST_OFFHOOK_STATES

    def _check_released(self) -> bool:
        return self.port.hook == HookOp.ONHOOK and self.state not in HOST_OFFHOOK_STATES

    def _check_idle(self) -> bool:
        return self.state == S.IDLE

    def _check_digits(self, digits: str) -> bool:
        return self.digits == digits

    def observed(self, what: str, value) -> tuple[bool, str]:
        if what == "digits":
            return self.digits == value or self.all_digits == value, f"digits {self.digits!r}"
        if what == "answered":
            return self.answered >= value, f"{self.answered} calls answered"
        raise KeyError(what)

    def describe(self) -> str:
        host = "off-hook" if self.port.hook == HookOp.OFFHOOK else "on-hook"
        battery = "" if self.port.battery else ", no battery"
        return (f"co_line {self.channel} {self.state.value}, host {host}{battery}; "
                f"recent: {self.recent()}")
