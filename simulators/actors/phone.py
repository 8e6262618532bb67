"""A phone on an FXS port: cardd feeds it, rings it and sends it caller ID.

What it does: off_hook() / on_hook() / flash() post RINGOFFHOOK / ONHOOK / WINKFLASH (an
off-hook while ringing trips the ring, as a line card does); dial(digits) sends DTMF.
What it notices:
- ringing: the host's RING/RINGOFF hook operations (port.ringing), as rings with their
  start and end ticks; a new ring sequence starts after 6 s without ringing;
- caller ID: FSK decoded between rings (the receiver listens while a ring sequence is
  on), or a DTMF spill (A<number>C) heard before the first ring;
- what it hears while off-hook: a plan tone ("dial", "busy", "ringback", "congestion"...)
  from the tone detector, held while the tone's cadence goes on; otherwise "voice" when
  the line carries sound, "silence" when it does not;
- DTMF digits the host sends, and the audio itself if recording.
Options: answer_after_rings (go off-hook half a second into that ring), hang_up_after
(a Duration or seconds: go on-hook that long after answering).
"""
from __future__ import annotations

import math

import numpy as np

from drivers.backends.base import HwEvent
from drivers.media.dtmf import dtmf_tone
from drivers.media.fsk import parse_dtmf_callerid

from . import Actor, ActorError

RING_SEQUENCE_GAP_S = 6.0      # longer than any ring cadence's pause: a new call
VOICE_DBM0 = -45.0             # non-tone sound above this is "voice"
VOICE_HOLD_S = 0.5             # "voice" persists over pauses this short
ANSWER_INTO_RING_S = 0.5
# Just off-hook (not answering a ring, nothing dialled yet) a phone listens for dial and
# busy tone only: that tells dial tone in ~0.45 s, where with every 450 Hz tone enabled a
# steady tone must outlast ringback's 1 s burst first. After the first tone (or a digit)
# it listens for all of them. The price: a seizure answered with congestion is first
# taken for dial tone, for one 0.7 s burst.
SEIZURE_TONES = ("dial", "busy")


class Phone(Actor):
    kind = "phone"

    def __init__(self, world, port, answer_after_rings: int | None = None,
                 hang_up_after=None):
        super().__init__(world, port)
        self.offhook = False
        self.rings: list[list] = []                 # [start tick, end tick or None]
        self.ring_count = 0                         # rings of the current/last sequence
        self.caller_ids: list[tuple[str | None, str | None]] = []
        self.digits_heard = ""
        self.tones_heard: list[tuple[int, str]] = []
        self.heard: set[str] = set()               # everything `hearing` was while off-hook
        self.recording: list[np.ndarray] | None = None
        self.answer_after_rings = answer_after_rings
        self.hang_up_after = self.to_ticks(hang_up_after)
        self.answered_at: int | None = None
        self._ring_on = False
        self._last_ring_edge = -10**9
        self._cid_listening = False
        self._onhook_digits = ""
        self._tone: str | None = None
        self._tone_names: tuple[str, ...] | None = None
        self._last_tonal = -10**9
        self._last_voice = -10**9
        self._gap = _tone_gaps(world)

    # ---- actions (scenario `do:`) ---------------------------------------------------------
    def off_hook(self) -> None:
        if self.offhook:
            raise ActorError(f"phone {self.channel} is already off-hook")
        self.offhook = True
        self.port.far_offhook = True
        if self.port.ringing:
            self.port.ringing = False          # ring trip: the line card stops ringing
        self.answered_at = self.tick
        answering = self._ring_on or self.ring_count > 0 and \
            self.tick - self._last_ring_edge <= self.ticks(RING_SEQUENCE_GAP_S)
        self.post(HwEvent.RINGOFFHOOK)
        self._listen_callerid(False)
        self._listen_tones(None if answering else SEIZURE_TONES)
        self._tone = None
        self.note("off-hook")

    def on_hook(self) -> None:
        if not self.offhook:
            raise ActorError(f"phone {self.channel} is already on-hook")
        self.offhook = False
        self.port.far_offhook = False
        self.answered_at = None
        self.post(HwEvent.ONHOOK)
        self.engine.stop(self.row)
        self.engine.detect_tones(self.row, False)
        self._tone = None
        self._tone_names = None
        self.note("on-hook")

    def flash(self) -> None:
        if not self.offhook:
            raise ActorError(f"phone {self.channel} is on-hook: a hook flash needs it off-hook")
        self.post(HwEvent.WINKFLASH)
        self.note("flash")

    def dial(self, digits: str, on_ms: int = 100, off_ms: int = 100) -> None:
        if not self.offhook:
            raise ActorError(f"phone {self.channel} is on-hook: it cannot dial {digits!r}")
        if self._tone_names is not None:
            self._listen_tones(None)              # from now on any progress tone may come
        if (on_ms, off_ms) == (100, 100):
            self.engine.send_dtmf(self.row, digits)
        else:
            self.engine.play(self.row, dtmf_tone(digits, on_ms=on_ms, off_ms=off_ms), tag="dtmf")
        self.note(f"dials {digits}")

    def record(self, on: bool = True) -> None:
        """Keep what the host sends (int16) in `recording`; on=False stops (keeps it)."""
        if on:
            self.recording = []
        elif self.recording is not None:
            self.recording = list(self.recording)

    @property
    def recorded(self) -> np.ndarray:
        return np.concatenate(self.recording) if self.recording else np.zeros(0, np.int16)

    # ---- what it notices ------------------------------------------------------------------
    @property
    def ringing(self) -> bool:
        return self._ring_on

    @property
    def caller_id(self) -> str | None:
        return self.caller_ids[-1][0] if self.caller_ids else None

    @property
    def hearing(self) -> str:
        """What the phone hears now: a plan tone's name, "voice" or "silence"."""
        if not self.offhook:
            return "silence"
        tick = self.tick
        if self._tone and tick - self._last_tonal <= self._gap.get(self._tone, 5):
            return self._tone
        if tick - self._last_voice <= self.ticks(VOICE_HOLD_S):
            return "voice"
        return "silence"

    def step(self, tick: int) -> None:
        ringing = self.port.ringing and not self.offhook
        if ringing and not self._ring_on:
            if tick - self._last_ring_edge > self.ticks(RING_SEQUENCE_GAP_S):
                self.ring_count = 0
                cid = parse_dtmf_callerid(self._onhook_digits)
                if cid:
                    self.caller_ids.append((cid, None))
                    self.note(f"DTMF caller ID {cid}")
                self._listen_callerid(True)
            self._onhook_digits = ""
            self.rings.append([tick, None])
            self.ring_count += 1
            self._ring_on = True
            self._last_ring_edge = tick
            self.note(f"ring {self.ring_count} starts")
        elif not ringing and self._ring_on:
            self._ring_on = False
            self._last_ring_edge = tick
            self.rings[-1][1] = tick
            self.note(f"ring {self.ring_count} ends")
        elif (self._cid_listening and not self._ring_on
              and tick - self._last_ring_edge > self.ticks(RING_SEQUENCE_GAP_S)):
            self._listen_callerid(False)
        if (self.answer_after_rings and self._ring_on and self.ring_count >= self.answer_after_rings
                and tick - self.rings[-1][0] >= self.ticks(ANSWER_INTO_RING_S)):
            self.off_hook()
        if (self.offhook and self.hang_up_after is not None and self.answered_at is not None
                and tick - self.answered_at >= self.hang_up_after):
            self.on_hook()

    def after_media(self, tick: int) -> None:
        if not self.offhook:
            return
        if self.engine.tone_detector.tonal[self.row] or self._last_tonal == tick:
            self._last_tonal = tick       # (a detection this tick re-enabled, so reset, the detector)
        elif self.world.media.level_dbm0[self.row] > VOICE_DBM0:
            self._last_voice = tick
        self.heard.add(self.hearing)
        if self.recording is not None:
            self.recording.append(self.world.media.heard_pcm(self.row).copy())

    def on_tone(self, tone: str) -> None:
        if self._tone_names is not None:
            self._listen_tones(None)
        self._tone = tone
        self._last_tonal = self.tick
        self.tones_heard.append((self.tick, tone))
        self.heard.add(tone)
        self.note(f"hears {tone}")

    def on_digit(self, digit: str) -> None:
        if self.offhook:
            self.digits_heard += digit
        else:
            self._onhook_digits = (self._onhook_digits + digit)[-40:]

    def on_callerid(self, number, name) -> None:
        self.caller_ids.append((number, name))
        self.note(f"caller ID {number}" + (f" ({name})" if name else ""))

    def _listen_tones(self, names: tuple[str, ...] | None) -> None:
        plan = self.world.media.plan
        self._tone_names = None if names is None else tuple(n for n in names if n in plan)
        self.engine.detect_tones(self.row, True, self._tone_names)

    def _listen_callerid(self, on: bool) -> None:
        if on != self._cid_listening:
            self.engine.receive_callerid(self.row, on)
            self._cid_listening = on

    # ---- checks (scenario `expect:`) and final observations ------------------------------
    def _check_tone(self, tone: str) -> bool:
        return self.hearing == tone

    def _check_ringing(self, rings: int = 1) -> bool:
        return self.ring_count >= rings

    def _check_not_ringing(self) -> bool:
        return not self._ring_on

    def _check_caller_id(self, number: str, name: str | None = None) -> bool:
        return any(n == number and (name is None or nm == name) for n, nm in self.caller_ids)

    def _check_digits(self, digits: str) -> bool:
        return self.digits_heard.endswith(digits)

    def observed(self, what: str, value) -> tuple[bool, str]:
        if what == "heard":
            return value in self.heard, f"heard {sorted(self.heard) or 'nothing'}"
        if what == "caller_id":
            got = [n for n, _ in self.caller_ids]
            return value in got, f"caller IDs {got or 'none'}"
        if what == "digits":
            return self.digits_heard == value, f"digits {self.digits_heard!r}"
        if what == "rings":
            return len(self.rings) >= value, f"{len(self.rings)} rings"
        raise KeyError(what)

    def describe(self) -> str:
        hook = "off-hook" if self.offhook else "on-hook"
        ring = f", ringing (ring {self.ring_count})" if self._ring_on else ""
        cid = f", caller IDs {[n for n, _ in self.caller_ids]}" if self.caller_ids else ""
        return (f"phone {self.channel} {hook}{ring}, hears {self.hearing}{cid}; "
                f"recent: {self.recent()}")


def _tone_gaps(world) -> dict[str, int]:
    """Per plan tone: the longest silence its cadence has, in ticks (with tolerance)."""
    plan = world.media.plan
    out = {}
    for name in plan.names():
        spec = plan[name]
        offs = spec.cadence_ms[1::2]
        longest = max(offs) if offs else 0
        ms = longest * (1 + plan.tolerance_pct / 100) + plan.tolerance_ms + 60
        out[name] = int(math.ceil(ms / (world.tick_s * 1000)))
    return out
