"""What a queued caller hears: music on hold, and their position and expected wait.

Music: a file from [acd] music, or a short pentatonic melody generated once into the run
directory at start (no audio is shipped in the repository). It plays in a loop: the
service starts it again each time cardd reports the prompt done.

Announcements ("tts"): Mandarin (or English/Cantonese) speech through ivr.tts (espeak-ng,
cached on disk), spoken with ivr.speech's number reading, assembled from fragments: the
fixed phrases and each number are rendered once, on a worker thread, never on the call
path. Until a fragment exists, and when espeak-ng or its voice is missing (said once in
the log), the caller hears a tone pattern instead ("tones"): one short 1 kHz beep per
place in the queue (up to 9), a pause, then one long beep per expected minute (up to 9).
"""
from __future__ import annotations

import concurrent.futures
import logging
import math
import os
import threading
import wave

import numpy as np

log = logging.getLogger("ctid.acd.audio")

RATE = 8000
MUSIC_SECONDS = 16.0
MUSIC_DBM0 = -20.0
BEEP_DBM0 = -16.0
# Words around the numbers, per language: (you are number, in the queue; wait about,
# minutes; wait under a minute; goodbye).
PHRASES = {
    "zh": ("您现在排在第", "位，", "预计等待约", "分钟。", "预计等待不到一分钟。",
           "很抱歉，现在坐席全忙，请您稍后再拨。再见。"),
    "yue": ("你而家排第", "位，", "预计等候大约", "分钟。", "预计等候唔使一分钟。",
            "对唔住，而家坐席全部繁忙，请稍后再打嚟。拜拜。"),
    "en": ("You are number", "in the queue.", "The expected wait is about", "minutes.",
           "The expected wait is under a minute.",
           "Sorry, all our agents are busy. Please call again later. Goodbye."),
}
MAX_SPOKEN = 99          # positions and minutes above this are said as 99
DBM0_PEAK = 22756.0      # peak of a 0 dBm0 sine (G.711); ctid does not import the drivers


def dbm0_to_peak(dbm0: float) -> float:
    return DBM0_PEAK * 10 ** (dbm0 / 20)


def write_wav(path: str, pcm: np.ndarray, rate: int = RATE) -> str:
    """16-bit mono WAV, written to a temporary name and renamed (readers never see half)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with wave.open(tmp, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.clip(np.rint(pcm), -32768, 32767).astype("<i2").tobytes())
    os.replace(tmp, path)
    return path


def music_pcm(seconds: float = MUSIC_SECONDS, level_dbm0: float = MUSIC_DBM0,
              rate: int = RATE) -> np.ndarray:
    """A gentle melody on the Chinese pentatonic scale (gong shang jue zhi yu on D), each
    note a plucked tone (quick attack, slow decay, a few soft harmonics) over a low drone
    of the tonic and fifth. Deterministic, so every run plays the same tune."""
    scale = [293.66, 329.63, 369.99, 440.00, 493.88, 587.33, 659.26, 739.99]
    tune = [0, 2, 3, 4, 3, 2, 1, 0, 1, 2, 4, 5, 4, 3, 2, 3,
            4, 5, 7, 6, 5, 4, 3, 2, 1, 2, 3, 1, 0, 1, 0, 0]
    beats = [1, 1, 1, 2, 1, 1, 1, 2, 1, 1, 1, 2, 1, 1, 1, 2,
             1, 1, 1, 2, 1, 1, 1, 2, 1, 1, 1, 2, 1, 1, 2, 2]
    n = int(seconds * rate)
    out = np.zeros(n)
    beat = seconds / sum(beats)
    at = 0.0
    for note, b in zip(tune, beats):
        start = int(at * rate)
        length = min(n - start, int((b * beat + 0.6) * rate))
        if length <= 0:
            break
        t = np.arange(length) / rate
        env = np.minimum(1.0, t / 0.012) * np.exp(-t / (0.35 + 0.2 * b))
        f = scale[note]
        tone = np.sin(2 * np.pi * f * t) + 0.3 * np.sin(4 * np.pi * f * t) \
            + 0.12 * np.sin(6 * np.pi * f * t)
        out[start:start + length] += env * tone
        at += b * beat
    t = np.arange(n) / rate
    drone = 0.12 * (np.sin(2 * np.pi * 146.83 * t) + 0.7 * np.sin(2 * np.pi * 220.0 * t))
    out += drone * (0.6 + 0.4 * np.sin(2 * np.pi * t / seconds) ** 2)
    fade = int(0.05 * rate)                          # no click where the loop restarts
    out[:fade] *= np.linspace(0, 1, fade)
    out[-fade:] *= np.linspace(1, 0, fade)
    return out * (dbm0_to_peak(level_dbm0) / np.max(np.abs(out)))


def beeps_pcm(short: int, long: int, rate: int = RATE, level_dbm0: float = BEEP_DBM0) -> np.ndarray:
    """`short` 150 ms beeps, 700 ms of silence, `long` 500 ms beeps (1 kHz)."""
    amp = dbm0_to_peak(level_dbm0)

    def beep(ms):
        t = np.arange(int(ms * rate / 1000)) / rate
        ramp = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.005)
        return amp * ramp * np.sin(2 * np.pi * 1000.0 * t)

    gap = np.zeros(int(0.15 * rate))
    parts = []
    for _ in range(short):
        parts += [beep(150), gap]
    parts.append(np.zeros(int(0.7 * rate)))
    for _ in range(long):
        parts += [beep(500), gap]
    return np.concatenate(parts)


def minutes(ewt_s: float) -> int:
    return int(math.ceil(ewt_s / 60.0)) if ewt_s >= 60 else 0


class QueueAudio:
    """Music and announcement files for the service (paths cardd's play_prompt takes)."""

    def __init__(self, directory: str, *, music: str = "", announce: str = "tts",
                 language: str = "zh", tts=None, workers: int = 1):
        self.directory = os.path.abspath(directory)
        self.announce = announce
        self.language = language if language in PHRASES else "zh"
        self.music_file = os.path.abspath(music) if music else ""
        self._tts = tts
        self._tts_failed = announce != "tts"
        self._pending: set[str] = set()
        self._lock = threading.Lock()
        self._pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="acd-tts") \
            if announce == "tts" else None

    # ---- start-up ---------------------------------------------------------------------
    def start(self, warm_numbers: int = 10) -> "QueueAudio":
        """Generate the music (unless a file is configured) and start rendering the
        announcement fragments for the first `warm_numbers` places and minutes."""
        if not self.music_file:
            self.music_file = write_wav(os.path.join(self.directory, "moh-default.wav"),
                                        music_pcm())
        if not self._tts_failed:
            texts = list(PHRASES[self.language]) + [self._number(i) for i in range(1, warm_numbers + 1)]
            for text in texts:
                self._render_later(text)
        return self

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    # ---- what to play -----------------------------------------------------------------
    def music(self, moh_class: str | None = "default") -> list[str]:
        return [self.music_file] if self.music_file else []

    def announcement(self, position: int, ewt_s: float) -> list[str]:
        """Files that say the caller's place and expected wait (speech, or beeps until the
        speech is rendered)."""
        position = max(1, min(int(position), MAX_SPOKEN))
        mins = min(minutes(ewt_s), MAX_SPOKEN)
        p = PHRASES[self.language]
        texts = [p[0], self._number(position), p[1]]
        texts += [p[2], self._number(mins), p[3]] if mins else [p[4]]
        files = self._speech(texts)
        if files is not None:
            return files
        return [self._beeps(min(position, 9), min(mins, 9))]

    def goodbye(self) -> list[str]:
        """The message before a caller the queue cannot keep is hung up ([] : say nothing,
        the service plays busy tone instead)."""
        return self._speech([PHRASES[self.language][5]]) or []

    @property
    def speaking(self) -> bool:
        return not self._tts_failed

    # ---- speech -----------------------------------------------------------------------
    def _number(self, n: int) -> str:
        if self.language == "en":
            return str(n)
        from ivr.speech import say_number
        return say_number(n).text

    def _speech(self, texts: list[str]) -> list[str] | None:
        if self._tts_failed:
            return None
        tts = self._engine()
        if tts is None:
            return None
        files, missing = [], False
        for text in texts:
            path = tts.path_for(text, self.language)
            if path.is_file():
                files.append(str(path))
            else:
                missing = True
                self._render_later(text)
        return None if missing else files

    def _engine(self):
        if self._tts is None:
            try:
                from ivr.tts import Tts
            except ImportError as e:           # the IVR's speech module is not installed
                self._give_up(f"ivr.tts is not available ({e})")
                return None
            self._tts = Tts(os.path.join(self.directory, "tts-cache"))
        return self._tts

    def _render_later(self, text: str) -> None:
        tts = self._engine()
        if tts is None or self._pool is None:
            return
        with self._lock:
            if text in self._pending:
                return
            self._pending.add(text)
        self._pool.submit(self._render, tts, text)

    def _render(self, tts, text: str) -> None:
        try:
            tts.render(text, self.language)
        except Exception as e:                 # TtsError: no espeak-ng, no voice...
            self._give_up(str(e))
        finally:
            with self._lock:
                self._pending.discard(text)

    def _give_up(self, why: str) -> None:
        if not self._tts_failed:
            self._tts_failed = True
            log.warning("queue announcements use a tone pattern, not speech: %s", why)

    # ---- tones ------------------------------------------------------------------------
    def _beeps(self, short: int, long: int) -> str:
        path = os.path.join(self.directory, f"position-beeps-{short}-{long}.wav")
        if not os.path.isfile(path):
            write_wav(path, beeps_pcm(short, long))
        return path
