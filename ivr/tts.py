"""Text-to-speech prompts: espeak-ng renders text once to an 8 kHz 16-bit mono WAV,
cached on disk under the hash of what determines the audio (text, voice, speed, pitch,
rate, cache version). A second render of the same text, by this process or any other
using the same directory, opens the cached file and never starts espeak-ng.

Mandarin uses espeak-ng's `cmn` voice. If espeak-ng or a voice is missing, `render`
raises TtsError saying what to install; nothing is silently played instead.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import tempfile
import threading
import wave
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

CACHE_VERSION = 1          # bump when the rendering changes: old files are not reused
RATE = 8000
VOICES = {"zh": "cmn", "en": "en", "yue": "yue"}     # IVR language -> espeak-ng voice


class TtsError(RuntimeError):
    """Text that cannot be rendered (no espeak-ng, no such voice, empty text, failure)."""


def _lowpass(rate_in: int, cutoff_hz: float, taps: int = 161) -> np.ndarray:
    n = np.arange(taps) - (taps - 1) / 2
    fc = cutoff_hz / rate_in
    h = 2 * fc * np.sinc(2 * fc * n) * np.kaiser(taps, 8.0)
    return h / h.sum()


def to_rate(pcm: np.ndarray, rate_in: int, rate_out: int = RATE) -> np.ndarray:
    """Resample speech: a windowed-sinc low-pass below the new Nyquist, then linear
    interpolation (espeak-ng's 22.05 kHz output is about 2.75 times oversampled after the
    filter, so the interpolation error stays well under the telephone channel's noise)."""
    x = np.asarray(pcm, dtype=np.float64)
    if rate_in == rate_out or x.size == 0:
        return x
    if rate_out < rate_in:
        x = np.convolve(x, _lowpass(rate_in, 0.45 * rate_out), mode="same")
    t_out = np.arange(int(x.size * rate_out / rate_in)) * (rate_in / rate_out)
    return np.interp(t_out, np.arange(x.size), x)


class Tts:
    """Renders and caches prompts. Thread-safe; `renders` counts espeak-ng runs."""

    def __init__(self, cache_dir: str | os.PathLike, *, espeak: str = "espeak-ng",
                 voices: dict[str, str] | None = None, speed: int = 150, pitch: int = 50,
                 rate: int = RATE, timeout_s: float = 30.0):
        self.cache_dir = Path(cache_dir)
        self.espeak = espeak
        self.voices = dict(VOICES if voices is None else voices)
        self.speed, self.pitch, self.rate, self.timeout_s = speed, pitch, rate, timeout_s
        self.renders = 0
        self._checked: set[str] = set()
        self._lock = threading.Lock()

    # ---- naming -------------------------------------------------------------------------
    def voice_for(self, lang: str) -> str:
        return self.voices.get(lang, lang)

    def key(self, text: str, lang: str = "zh") -> str:
        spec = {"v": CACHE_VERSION, "text": text, "voice": self.voice_for(lang),
                "speed": self.speed, "pitch": self.pitch, "rate": self.rate}
        return hashlib.sha256(json.dumps(spec, ensure_ascii=False, sort_keys=True)
                              .encode()).hexdigest()

    def path_for(self, text: str, lang: str = "zh") -> Path:
        """Where the rendering of `text` lives (whether or not it exists yet)."""
        k = self.key(text, lang)
        return self.cache_dir / k[:2] / f"{k}.wav"

    # ---- rendering ----------------------------------------------------------------------
    def render(self, text: str, lang: str = "zh") -> Path:
        if not isinstance(text, str) or not text.strip():
            raise TtsError(f"nothing to say: text {text!r} is empty")
        path = self.path_for(text, lang)
        if path.is_file():
            return path
        voice = self.voice_for(lang)
        self._check_voice(voice)
        pcm, rate = self._run_espeak(text, voice)
        self._write(path, to_rate(pcm, rate, self.rate))
        return path

    def render_many(self, items) -> list[Path]:
        """[(text, lang)] -> paths (prompt pre-warming at flow load)."""
        return [self.render(text, lang) for text, lang in items]

    def _check_voice(self, voice: str) -> None:
        if voice in self._checked:
            return
        exe = shutil.which(self.espeak)
        if exe is None:
            raise TtsError(f"text-to-speech needs {self.espeak!r}, which is not installed "
                           f"(Debian package espeak-ng)")
        try:
            out = subprocess.run([exe, f"--voices={voice}"], capture_output=True, text=True,
                                 timeout=self.timeout_s).stdout
        except (OSError, subprocess.SubprocessError) as e:
            raise TtsError(f"cannot list espeak-ng voices: {e}") from None
        names = set()
        for line in out.splitlines()[1:]:
            cols = line.split()
            if len(cols) >= 5:
                names.update({cols[1], cols[4].rsplit("/", 1)[-1]})
        if voice not in names:
            raise TtsError(f"espeak-ng has no voice {voice!r} (Mandarin needs 'cmn' from "
                           f"espeak-ng-data); prompts in this language cannot be rendered")
        self._checked.add(voice)

    def _run_espeak(self, text: str, voice: str) -> tuple[np.ndarray, int]:
        with tempfile.TemporaryDirectory(prefix="hotline-tts-") as tmp:
            out = os.path.join(tmp, "out.wav")
            cmd = [shutil.which(self.espeak) or self.espeak, "-v", voice, "-s", str(self.speed),
                   "-p", str(self.pitch), "-w", out, "--", text]
            try:
                r = subprocess.run(cmd, capture_output=True, text=True, timeout=self.timeout_s)
            except (OSError, subprocess.SubprocessError) as e:
                raise TtsError(f"espeak-ng failed on {text[:40]!r}: {e}") from None
            if r.returncode != 0 or not os.path.isfile(out):
                raise TtsError(f"espeak-ng failed on {text[:40]!r}: "
                               f"{r.stderr.strip() or f'exit {r.returncode}'}")
            with self._lock:
                self.renders += 1
            with wave.open(out, "rb") as w:
                if w.getsampwidth() != 2:
                    raise TtsError(f"espeak-ng wrote {8 * w.getsampwidth()}-bit audio")
                rate = w.getframerate()
                pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
                if w.getnchannels() > 1:
                    pcm = pcm.reshape(-1, w.getnchannels()).mean(axis=1)
        if pcm.size == 0:
            raise TtsError(f"espeak-ng produced no audio for {text[:40]!r}")
        return pcm, rate

    def _write(self, path: Path, pcm: np.ndarray) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = np.clip(np.rint(pcm), -32768, 32767).astype("<i2").tobytes()
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f, wave.open(f, "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(self.rate)
                w.writeframes(data)
            os.replace(tmp, path)          # readers see the whole file or none of it
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
