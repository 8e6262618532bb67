"""Call recording for IVR voicemail and fault reports: what the far end says, to a WAV file.

`Recordings` is one node's bank of per-channel recorders. cardd taps a recording row into
the media engine (it is the tap consumer: `put_batch` gets each tick's received blocks of
its rows), plays the beep first (`beep_pcm`, then `beep_done(row)` when the engine's
PlayDone comes), and once per tick asks `step()` for the recordings whose file is closed.

A recorder is an explicit state machine (`TRANSITIONS`): BEEPING -> RECORDING -> CLOSING.
It ends on max length, on silence (every block below `SPEECH_DBM0` for `silence_s`: after
speech; with nothing said it ends `silence_s` after the beep), on hang-up or on StopRecord.
Silence after the last word is never written, however the recording ends; a pause
between words (shorter than `silence_s`) is. Only recordings with speech are kept (ok);
the file of a silent one is removed. The audio loop never touches the disk: blocks go to one writer
thread through an unbounded queue (a put never waits), which writes law-coded WAV (format
6 A-law or 7 mu-law, 8 kHz mono, the codes exactly as they came off the line), patches
the sizes at close and reports back.
"""
from __future__ import annotations

import collections
import dataclasses
import enum
import logging
import os
import queue
import struct
import threading
from typing import Callable

import numpy as np

from drivers.media import g711
from drivers.media.levels import dbm0_to_peak, rms_to_dbm0

log = logging.getLogger(__name__)

RATE = 8000
SPEECH_DBM0 = -45.0           # a block at or above this is speech
MAX_S = 3600.0
MAX_SILENCE_S = 300.0
BEEP_HZ, BEEP_MS, BEEP_DBM0 = 1000.0, 400, -10.0
_WAV_FORMAT = {"alaw": 6, "ulaw": 7}


class RecordError(ValueError):
    """A Record request refused before anything started; the message says why."""


class State(enum.Enum):
    BEEPING = "beeping"       # the beep plays; what comes in is not recorded
    RECORDING = "recording"
    CLOSING = "closing"       # ended; the writer closes the file


# (state, input) -> next state. Inputs not listed leave the state as it is.
TRANSITIONS = {
    (State.BEEPING, "beep_done"): State.RECORDING,
    (State.BEEPING, "end"): State.CLOSING,
    (State.RECORDING, "end"): State.CLOSING,
}


@dataclasses.dataclass(frozen=True)
class RecordSpec:
    path: str                 # resolved file path
    max_s: float
    silence_s: float = 0.0    # 0: no silence end
    beep: bool = True


@dataclasses.dataclass(frozen=True)
class RecordDone:
    row: int
    owner: str                # what the caller gave start() (cardd: the call id)
    path: str
    duration_s: float
    ok: bool
    reason: str               # silence, max_length, hangup, stopped, error: ...


def beep_pcm(rate: int = RATE) -> np.ndarray:
    """The 'speak now' beep: 1 kHz, 400 ms, -10 dBm0, with 5 ms ramps (no clicks)."""
    n = rate * BEEP_MS // 1000
    t = np.arange(n) / rate
    tone = dbm0_to_peak(BEEP_DBM0) * np.sin(2 * np.pi * BEEP_HZ * t)
    ramp = np.minimum(1.0, np.minimum(np.arange(n), np.arange(n)[::-1]) / (rate * 0.005))
    return np.round(tone * ramp).astype(np.int16)


def resolve_path(run_dir: str, path: str) -> str:
    """The file a Record command names: relative paths under `run_dir`; '..' refused; an
    absolute path's directory must exist (a relative one's is made by the writer)."""
    if not path:
        raise RecordError("record needs a file path")
    if not path.lower().endswith(".wav"):
        raise RecordError(f"record path {path!r} must end in .wav")
    if ".." in path.replace("\\", "/").split("/"):
        raise RecordError(f"record path {path!r} must not contain '..'")
    if os.path.isabs(path):
        if not os.path.isdir(os.path.dirname(path)):
            raise RecordError(f"record path {path!r}: directory {os.path.dirname(path)!r} "
                              f"does not exist")
        return path
    return os.path.join(run_dir, path)


def check_spec(max_s: float, silence_s: float) -> None:
    if not 0 < max_s <= MAX_S:
        raise RecordError(f"record max_s must be above 0 and at most {MAX_S:g} s, got {max_s:g}")
    if not 0 <= silence_s <= MAX_SILENCE_S:
        raise RecordError(f"record silence_s must be 0 (off) to {MAX_SILENCE_S:g} s, "
                          f"got {silence_s:g}")


# ---- the file ---------------------------------------------------------------------------
def wav_header(law: str, data_bytes: int) -> bytes:
    """RIFF/WAVE header of a law-coded 8 kHz mono file: fmt (18 bytes, as non-PCM formats
    want), fact (sample count), data."""
    fmt = struct.pack("<HHIIHHH", _WAV_FORMAT[law], 1, RATE, RATE, 1, 8, 0)
    fact = struct.pack("<I", data_bytes)
    body = (b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
            + b"fact" + struct.pack("<I", len(fact)) + fact
            + b"data" + struct.pack("<I", data_bytes))
    pad = data_bytes & 1
    return b"RIFF" + struct.pack("<I", len(body) + data_bytes + pad) + body


class Writer:
    """One thread writing every recording's file. `submit` never waits. Finished files are
    reported as (key, error or None) in `finished` (a deque the owner pops)."""

    def __init__(self, law: str, opener: Callable = open):
        if law not in _WAV_FORMAT:
            raise ValueError(f"unknown law {law!r}; expected one of {sorted(_WAV_FORMAT)}")
        self.law = law
        self.opener = opener
        self.finished: collections.deque[tuple[int, str | None]] = collections.deque()
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._files: dict[int, tuple[object, str, int]] = {}
        self._errors: dict[int, str] = {}
        self._thread = threading.Thread(target=self._run, name="record-writer", daemon=True)
        self._thread.start()

    def submit(self, key: int, op: str, arg=None) -> None:
        self._q.put((key, op, arg))

    def close(self, timeout_s: float = 5.0) -> None:
        self._q.put((0, "quit", None))
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            key, op, arg = self._q.get()
            if op == "quit":
                return
            try:
                getattr(self, "_" + op)(key, arg)
            except Exception as e:        # a full disk, a removed directory: that file only
                self._errors.setdefault(key, f"{type(e).__name__}: {e}")
                if op == "close":
                    self._files.pop(key, None)
                    self.finished.append((key, self._errors.pop(key)))

    def _open(self, key: int, path: str) -> None:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        f = self.opener(path, "wb")
        self._files[key] = (f, path, 0)
        f.write(wav_header(self.law, 0))

    def _write(self, key: int, data: bytes) -> None:
        entry = self._files.get(key)
        if entry is None:
            return                          # open failed; the error is kept for close
        f, path, n = entry
        f.write(data)
        self._files[key] = (f, path, n + len(data))

    def _close(self, key: int, keep: bool) -> None:
        error = self._errors.pop(key, None)
        entry = self._files.pop(key, None)
        if entry is not None:
            f, path, n = entry
            if n & 1:
                f.write(b"\0")
            f.seek(0)
            f.write(wav_header(self.law, n))
            f.close()
            if not keep or error:
                os.remove(path)
        self.finished.append((key, error))


# ---- the recorders ----------------------------------------------------------------------
@dataclasses.dataclass
class Recorder:
    key: int
    row: int
    owner: str
    spec: RecordSpec
    max_blocks: int
    silence_blocks: int              # 0: no silence end
    state: State = State.RECORDING
    blocks: int = 0                  # blocks since recording began (after the beep)
    written: int = 0                 # blocks sent to the file
    silent_run: int = 0
    spoke: bool = False
    reason: str = ""
    held: list = dataclasses.field(default_factory=list)   # silence not yet written

    def go(self, event: str) -> bool:
        nxt = TRANSITIONS.get((self.state, event))
        if nxt is None:
            return False
        self.state = nxt
        return True


class Recordings:
    """A node's recorders, at most one per row. The tap consumer for recording rows."""

    def __init__(self, law: str = "alaw", block: int = 160, *, speech_dbm0: float = SPEECH_DBM0,
                 opener: Callable = open):
        self.law, self.block = law, block
        self.speech_rms = float(dbm0_to_peak(speech_dbm0) / np.sqrt(2))
        self.writer = Writer(law, opener)
        self.active: dict[int, Recorder] = {}          # row -> its running recorder
        self._closing: dict[int, Recorder] = {}        # key -> ended, file being closed
        self._next_key = 1
        self._released: list[int] = []

    def start(self, row: int, spec: RecordSpec, owner: str = "") -> np.ndarray | None:
        """Begin recording `row`; returns the beep to play first (None: no beep)."""
        if row in self.active:
            raise RecordError(f"row {row} is already recording {self.active[row].spec.path!r}")
        check_spec(spec.max_s, spec.silence_s)
        per_s = RATE / self.block
        rec = Recorder(self._next_key, row, owner, spec, max(1, round(spec.max_s * per_s)),
                       round(spec.silence_s * per_s),
                       state=State.BEEPING if spec.beep else State.RECORDING)
        self._next_key += 1
        self.active[row] = rec
        self.writer.submit(rec.key, "open", spec.path)
        return beep_pcm() if spec.beep else None

    def beep_done(self, row: int) -> None:
        rec = self.active.get(row)
        if rec is not None:
            rec.go("beep_done")

    def stop(self, row: int, reason: str = "stopped") -> bool:
        """End `row`'s recording now (StopRecord, hang-up); False if none runs."""
        rec = self.active.get(row)
        if rec is None:
            return False
        self._end(rec, reason)
        return True

    def recording(self, row: int) -> bool:
        return row in self.active

    @property
    def busy(self) -> bool:
        """Recordings running or files still being closed (step() has work)."""
        return bool(self.active or self._closing)

    # ---- the tap consumer ------------------------------------------------------------------
    def put_batch(self, tick: int, rows: np.ndarray, rx: np.ndarray, tx: np.ndarray) -> None:
        for i, row in enumerate(rows.tolist()):
            rec = self.active.get(row)
            if rec is not None and rec.state == State.RECORDING:
                self._feed(rec, rx[i])

    def put(self, row: int, tick: int, rx: np.ndarray, tx: np.ndarray) -> None:
        self.put_batch(tick, np.array([row]), rx[None], tx[None])

    def _feed(self, rec: Recorder, codes: np.ndarray) -> None:
        pcm = g711.decode(self.law, codes).astype(np.float64)
        loud = np.sqrt(np.mean(pcm * pcm)) >= self.speech_rms
        rec.blocks += 1
        if loud:
            rec.spoke = True
            rec.silent_run = 0
            for held in rec.held:
                self._write(rec, held)
            rec.held.clear()
            self._write(rec, codes)
        else:
            rec.silent_run += 1
            rec.held.append(codes.copy())
            if rec.silence_blocks and rec.silent_run >= rec.silence_blocks:
                rec.held.clear()            # the trailing silence is not kept
                self._end(rec, "silence")
                return
        if rec.blocks >= rec.max_blocks:
            self._end(rec, "max_length")

    def _write(self, rec: Recorder, codes: np.ndarray) -> None:
        self.writer.submit(rec.key, "write", codes.tobytes())
        rec.written += 1

    def _end(self, rec: Recorder, reason: str) -> None:
        if not rec.go("end"):
            return
        rec.held.clear()                    # silence after the last word is never kept
        rec.reason = reason
        del self.active[rec.row]
        self._closing[rec.key] = rec
        self._released.append(rec.row)
        self.writer.submit(rec.key, "close", rec.spoke)

    # ---- once per tick ---------------------------------------------------------------------
    def released(self) -> list[int]:
        """Rows whose recording ended since the last call (the owner untaps them)."""
        out, self._released = self._released, []
        return out

    def step(self) -> list[RecordDone]:
        """Recordings whose file the writer has closed (or failed on)."""
        done = []
        while self.writer.finished:
            key, error = self.writer.finished.popleft()
            rec = self._closing.pop(key, None)
            if rec is None:
                continue
            ok = rec.spoke and error is None
            if error:
                log.warning("recording %s failed: %s", rec.spec.path, error)
            done.append(RecordDone(rec.row, rec.owner, rec.spec.path,
                                   rec.written * self.block / RATE if ok else 0.0, ok,
                                   f"error: {error}" if error else rec.reason))
        return done

    def close(self) -> None:
        for rec in list(self.active.values()):
            self._end(rec, "stopped")
        self.writer.close()
