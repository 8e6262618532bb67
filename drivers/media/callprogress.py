"""Call progress analysis for outbound calls: busy, ringback, congestion, answer, no answer.

After dialing on a trunk that gives no answer signal (an analog CO line, a PBX port),
``CallProgress`` listens to what comes back and reports, per row, the events of the call's
progress. It runs the plan's ``ToneDetector`` (busy, ringback, congestion, CED) and a voice
detector on the same blocks, and drives one small state machine per row:

    state     input              -> result emitted, next state
    waiting   busy               -> "busy",            done
    waiting   congestion         -> "congestion",      done
    waiting   ringback           -> "ringback",        ringing
    waiting   ced                -> "answered_fax",    done
    waiting   voice              -> "answered_voice",  done
    waiting   timeout            -> "no_answer",       done
    ringing   ringback burst > N -> "no_answer",       done
    ringing   busy / congestion  -> "busy" / "congestion", done
    ringing   ced                -> "answered_fax",    done
    ringing   voice              -> "answered_voice",  done
    ringing   timeout            -> "no_answer",       done

Voice: a block is voice-like when its level is at least ``voice_dbm0`` and no plan tone
band holds it (speech spreads its energy; tones do not). A leaky count of voice-like
blocks (+1 each, -0.5 for other blocks) reaching ``voice_ms`` means someone answered:
a "hello" of ~250 ms, with its syllable gaps, is enough; ringback, busy and line noise
never count. Everything is counted in samples; no wall clock.
"""
from __future__ import annotations

import dataclasses
import enum

import numpy as np

from drivers.media.levels import dbm0_to_rms
from drivers.media.tones import DEFAULT_PLAN, ToneDetector, TonePlan, _as_plan

RESULTS = ("busy", "ringback", "congestion", "answered_voice", "answered_fax", "no_answer")
DETECTED = ("busy", "ringback", "congestion", "ced")


@dataclasses.dataclass(frozen=True)
class ProgressEvent:
    row: int
    result: str            # one of RESULTS
    sample: int            # end of the block in which it was decided


class _State(enum.IntEnum):
    IDLE = 0
    WAITING = 1            # dialed; nothing recognised yet
    RINGING = 2            # ringback recognised
    DONE = 3               # a final result was given


# (state, input) -> (result or None, next state); inputs are tone names, "voice", "rings",
# "timeout". Anything missing leaves the state alone.
TRANSITIONS: dict[tuple[_State, str], tuple[str | None, _State]] = {
    (_State.WAITING, "busy"): ("busy", _State.DONE),
    (_State.WAITING, "congestion"): ("congestion", _State.DONE),
    (_State.WAITING, "ringback"): ("ringback", _State.RINGING),
    (_State.WAITING, "ced"): ("answered_fax", _State.DONE),
    (_State.WAITING, "voice"): ("answered_voice", _State.DONE),
    (_State.WAITING, "timeout"): ("no_answer", _State.DONE),
    (_State.RINGING, "rings"): ("no_answer", _State.DONE),
    (_State.RINGING, "busy"): ("busy", _State.DONE),
    (_State.RINGING, "congestion"): ("congestion", _State.DONE),
    (_State.RINGING, "ced"): ("answered_fax", _State.DONE),
    (_State.RINGING, "voice"): ("answered_voice", _State.DONE),
    (_State.RINGING, "timeout"): ("no_answer", _State.DONE),
}


class CallProgress:
    """Outbound call progress on many rows: ``start(row)``, then ``process(pcm)`` per tick.

    ``rings``: ringback cycles heard before "no_answer" (the result is given as the next
    burst starts); ``timeout``: samples from ``start`` before "no_answer" whatever was heard
    (default 60 s); ``voice_dbm0``/``voice_ms``: the voice detector's level and duration.
    """

    def __init__(self, rows: int, plan: TonePlan | str = DEFAULT_PLAN, block: int = 160,
                 rate: int = 8000, rings: int = 6, timeout: int | None = None,
                 voice_dbm0: float = -36.0, voice_ms: int = 250, sample0: int = 0):
        if rings < 1:
            raise ValueError(f"rings must be at least 1, got {rings}")
        self.rows, self.block, self.rate = rows, block, rate
        self.plan = _as_plan(plan)
        missing = [n for n in DETECTED if n not in self.plan]
        if missing:
            raise ValueError(f"tone plan {self.plan.name!r} lacks {missing} needed for call progress")
        self.rings = rings
        self.timeout = 60 * rate if timeout is None else int(timeout)
        self.detector = ToneDetector(rows, self.plan, block, rate, sample0)
        self._voice_energy = dbm0_to_rms(voice_dbm0) ** 2 * block
        self._voice_need = voice_ms * rate / 1000 / block          # in blocks
        self.state = np.full(rows, _State.IDLE, dtype=np.int8)
        self._deadline = np.zeros(rows, dtype=np.int64)
        self._voice = np.zeros(rows)
        self._bursts = np.zeros(rows, dtype=np.int64)
        self._was_on = np.zeros(rows, dtype=bool)

    @property
    def sample(self) -> int:
        return self.detector.sample

    def start(self, row: int) -> None:
        """Begin analysing `row` (call it when dialing is complete)."""
        self.detector.enable(row, DETECTED)
        self.state[row] = _State.WAITING
        self._deadline[row] = self.detector.sample + self.timeout
        self._voice[row] = 0.0
        self._bursts[row] = 0
        self._was_on[row] = False

    def stop(self, row: int) -> None:
        self.detector.disable(row)
        self.state[row] = _State.IDLE

    def result_state(self, row: int) -> str:
        return _State(self.state[row]).name.lower()

    def process(self, pcm: np.ndarray) -> list[ProgressEvent]:
        tone_events = self.detector.process(pcm)
        now = self.detector.sample
        live = (self.state == _State.WAITING) | (self.state == _State.RINGING)
        idx = np.flatnonzero(live)
        if idx.size == 0:
            return []
        inputs: list[tuple[int, str]] = [(e.row, e.tone) for e in tone_events if live[e.row]]
        # voice: loud blocks that no tone band explains
        x = np.asarray(pcm)[idx].astype(np.float64)
        energy = np.einsum("kn,kn->k", x, x)
        voiced = (energy >= self._voice_energy) & ~self.detector.tonal[idx]
        self._voice[idx] = np.maximum(self._voice[idx] + np.where(voiced, 1.0, -0.5), 0.0)
        inputs += [(int(r), "voice") for r in idx[self._voice[idx] >= self._voice_need]]
        # ringback bursts, counted once ringback is recognised
        on = self.detector.tone_on("ringback")
        ringing = idx[self.state[idx] == _State.RINGING]
        new_burst = ringing[on[ringing] & ~self._was_on[ringing]]
        self._bursts[new_burst] += 1
        self._was_on[idx] = on[idx]
        inputs += [(int(r), "rings") for r in new_burst if self._bursts[r] > self.rings]
        inputs += [(int(r), "timeout") for r in idx[now >= self._deadline[idx]]]
        events = []
        for row, what in inputs:
            result = self._step(row, what)
            if result is not None:
                events.append(ProgressEvent(row, result, now))
        return events

    def _step(self, row: int, what: str) -> str | None:
        move = TRANSITIONS.get((_State(self.state[row]), what))
        if move is None:
            return None
        result, nxt = move
        self.state[row] = nxt
        if nxt == _State.RINGING:
            # the burst that made ringback recognisable is the first ring
            self._bursts[row] = 1
            self._was_on[row] = bool(self.detector.tone_on("ringback")[row])
        if nxt == _State.DONE:
            self.detector.disable(row)
        return result
