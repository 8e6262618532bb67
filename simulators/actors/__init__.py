"""Actors: the far side of each analog port (a phone on an FXS port, a CO line on an FXO port).

An actor belongs to a `simulators.world.World`. It acts through its port (hardware events
posted to the host, the port's hook/battery/polarity state) and through the world's media
(tones, DTMF, caller ID, speech on its row); it learns what the host did from the port
(ringing), the host's hook operations (a listener on the cards) and the world's detectors
(on_digit, on_tone, on_callerid, on_play_done). Every scenario action is a method; every
scenario check is `check(name, **params)`; `observed(what, value)` answers the final
expectations; `describe()` says what the actor sees, for failure reports.
"""
from __future__ import annotations

import functools

import numpy as np

from drivers.backends.base import HwEvent
from drivers.media.levels import dbm0_to_rms


class ActorError(Exception):
    """An action the actor cannot take in its present state (a phone on-hook cannot dial)."""


class Actor:
    kind = "actor"

    def __init__(self, world, port):
        self.world = world
        self.port = port
        self.channel = port.channel
        self.row = port.row
        self.engine = world.media.engine
        self.log: list[tuple[int, str]] = []       # (tick, what happened), for reports

    @property
    def tick(self) -> int:
        return self.world.tick

    def post(self, event: HwEvent) -> None:
        self.world.cards.post_event(self.channel, event)

    def note(self, text: str) -> None:
        self.log.append((self.tick, text))
        del self.log[:-50]

    def ticks(self, seconds: float) -> int:
        return self.world.ticks(seconds)

    def to_ticks(self, value, default_s: float | None = None) -> int | None:
        """An option given as a scenario Duration or as seconds, in ticks (None: default)."""
        if value is None:
            return None if default_s is None else self.ticks(default_s)
        if hasattr(value, "to_ticks"):
            return value.to_ticks(self.world.tick_s)
        return self.ticks(float(value))

    # The world calls these; actors override what they use.
    def step(self, tick: int) -> None: ...
    def after_media(self, tick: int) -> None: ...
    def on_digit(self, digit: str) -> None: ...
    def on_tone(self, tone: str) -> None: ...
    def on_callerid(self, number: str | None, name: str | None) -> None: ...
    def on_play_done(self, tag, interrupted: bool) -> None: ...

    def check(self, what: str, /, **params) -> bool:
        return bool(getattr(self, f"_check_{what}")(**params))

    def recent(self, n: int = 6) -> str:
        return "; ".join(f"tick {t}: {text}" for t, text in self.log[-n:]) or "nothing yet"


# ---- speech-like audio ---------------------------------------------------------------------
# Vowel formants (Hz) for a neutral adult voice; syllables cycle through them.
_VOWELS = ((730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480),
           (570, 840, 2410), (440, 1020, 2240), (660, 1720, 2410))


@functools.lru_cache(maxsize=8)
def speech_like(seconds: float = 4.0, level_dbm0: float = -20.0, seed: int = 1,
                rate: int = 8000) -> np.ndarray:
    """Synthetic talk: voiced syllables (a wandering pitch, harmonics shaped by vowel
    formants) with pauses, at `level_dbm0` while voiced. Its energy spreads over many
    frequencies, so neither DTMF nor call-progress detectors take it for a signal."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    t = np.arange(n) / rate
    # pitch: 90..200 Hz, drifting slowly
    f0 = 140 + 40 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6)) + 15 * np.sin(2 * np.pi * 2.3 * t)
    phase = np.cumsum(2 * np.pi * f0 / rate)
    # syllables: 120..300 ms voiced, 40..200 ms pauses (longer pauses now and then)
    gate = np.zeros(n)
    formants = np.zeros((n, 3))
    at = 0
    while at < n:
        on = int(rng.uniform(0.12, 0.30) * rate)
        off = int(rng.uniform(0.04, 0.20) * rate * (3 if rng.random() < 0.15 else 1))
        end = min(n, at + on)
        ramp = np.minimum(1.0, np.minimum(np.arange(end - at), np.arange(end - at)[::-1]) / (0.02 * rate))
        gate[at:end] = ramp
        formants[at:at + off + on] = _VOWELS[rng.integers(len(_VOWELS))]
        at = end + off
    out = np.zeros(n)
    for k in range(1, 30):
        fk = k * f0
        weight = sum(1.0 / (1.0 + ((fk - formants[:, j]) / (80 + 40 * j)) ** 2) for j in range(3))
        weight *= (fk < rate / 2 - 200) / k ** 0.5
        out += weight * np.sin(k * phase)
    out *= gate
    out += rng.normal(0, 0.02, n) * gate            # a little breath
    voiced = out[gate > 0.5]
    rms = np.sqrt(np.mean(voiced ** 2)) if voiced.size else 1.0
    out *= dbm0_to_rms(level_dbm0) / rms
    return np.clip(np.round(out), -32768, 32767).astype(np.int16)


def test_tone(seconds: float = 4.0, hz: float = 1004.0, level_dbm0: float = -13.0,
              rate: int = 8000) -> np.ndarray:
    """A steady test tone (1004 Hz, the usual milliwatt-style test frequency)."""
    t = np.arange(int(seconds * rate)) / rate
    return np.round(dbm0_to_rms(level_dbm0) * np.sqrt(2) * np.sin(2 * np.pi * hz * t)).astype(np.int16)


test_tone.__test__ = False          # not a pytest test, despite its name

from .co_line import CoLine, CoState  # noqa: E402  (they build on Actor above)
from .phone import Phone  # noqa: E402

__all__ = ["Actor", "ActorError", "CoLine", "CoState", "Phone", "speech_like", "test_tone"]
