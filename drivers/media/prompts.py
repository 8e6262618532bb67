"""Prompts: audio files converted once to 8 kHz law-coded audio, and batched playback.

`PromptCache(law)` loads any file libsndfile reads (WAV of any rate and sample width,
FLAC, OGG/Vorbis, AIFF, MP3, ...) plus headerless telephony files by extension
(``.alaw``/``.al``, ``.ulaw``/``.ul``/``.mu``, ``.sln``/``.raw`` = 16-bit 8 kHz), mixes
stereo to mono, resamples to 8 kHz with a Kaiser-windowed-sinc polyphase filter of our
own (about 87 dB stop band, pass band flat to well past 3.4 kHz), and encodes it. The
result is kept in memory (keyed by path, size and modification time) and, with
`cache_dir`, on disk so that another process or a restart skips the conversion.

`Player` plays clips (int16 arrays: prompts, one-shot PCM such as caller ID or DTMF)
on every row at once: rows playing the same clip are one numpy gather per tick, so the
per-tick Python work grows with the number of distinct clips playing, not with rows.
"""
from __future__ import annotations

import collections
import dataclasses
import hashlib
import logging
import math
import os
import stat
import tempfile
import threading
from concurrent.futures import Future
from typing import Any, Iterable

import numpy as np

from drivers.media import g711

log = logging.getLogger(__name__)

RATE = 8000
CACHE_VERSION = 1          # bump when the conversion changes: old disk entries are ignored
_RAW_EXTENSIONS = {".alaw": "alaw", ".al": "alaw", ".ulaw": "ulaw", ".ul": "ulaw",
                   ".mu": "ulaw", ".sln": "sln", ".raw": "sln"}


class PromptError(ValueError):
    """A prompt file that cannot be played; the message names the file and the problem."""


# ---- resampling ------------------------------------------------------------------------
_ZERO_CROSSINGS = 32       # filter half-length, in periods of the lower rate
_KAISER_BETA = 8.6         # ~87 dB stop-band attenuation
_ROLLOFF = 0.925           # cutoff as a fraction of the lower Nyquist: 3.7 kHz at 8 kHz out
_filters: dict[tuple[int, int], tuple[np.ndarray, int]] = {}


def _polyphase_filter(up: int, down: int) -> tuple[np.ndarray, int]:
    """Windowed-sinc low-pass at the upsampled rate, split into `up` phases (rows)."""
    key = (up, down)
    if key not in _filters:
        half = _ZERO_CROSSINGS * max(up, down)
        n = np.arange(-half, half + 1, dtype=np.float64)
        cutoff = _ROLLOFF * 0.5 / max(up, down)            # cycles per upsampled sample
        h = 2 * cutoff * np.sinc(2 * cutoff * n) * np.kaiser(2 * half + 1, _KAISER_BETA)
        h *= up / h.sum()                   # unity DC gain after zero-stuffing
        taps = -(-h.size // up)
        padded = np.zeros(taps * up)
        padded[:h.size] = h
        # phases[p, q] = h[p + q*up], reversed along q so each output is one dot product
        phases = padded.reshape(taps, up).T[:, ::-1].copy()
        _filters[key] = (phases, half)
    return _filters[key]


def resample(x: np.ndarray, rate_in: int, rate_out: int = RATE) -> np.ndarray:
    """Resample 1-D float audio by the rational factor rate_out/rate_in (anti-aliased)."""
    x = np.asarray(x, dtype=np.float64)
    if rate_in == rate_out or x.size == 0:
        return x.copy()
    g = math.gcd(int(rate_in), int(rate_out))
    up, down = rate_out // g, rate_in // g
    phases, half = _polyphase_filter(up, down)
    taps = phases.shape[1]
    n_out = -(-x.size * up // down)
    right = taps + half // up + 2
    xp = np.concatenate([np.zeros(taps - 1), x, np.zeros(right)])
    windows = np.lib.stride_tricks.sliding_window_view(xp, taps)
    y = np.empty(n_out)
    # Outputs n, n+up, n+2up, ... share a filter phase and step `down` inputs apart: a
    # strided view of the input windows times one phase vector (BLAS).
    for n0 in range(min(up, n_out)):
        t = n0 * down + half
        p, base = t % up, t // up
        count = len(range(n0, n_out, up))
        y[n0::up] = windows[base:base + (count - 1) * down + 1:down] @ phases[p]
    return y


# ---- the cache -------------------------------------------------------------------------
@dataclasses.dataclass
class _Entry:
    codes: np.ndarray
    pcm: np.ndarray | None = None


class PromptCache:
    def __init__(self, law: str = "alaw", cache_dir: str | None = None,
                 max_seconds: float = 3600.0, memory_bytes: int = 256 << 20):
        g711.silence_byte(law)               # validates the law
        self.law = law
        self.cache_dir = cache_dir
        self.max_seconds = max_seconds
        self.memory_bytes = memory_bytes
        self._mem: collections.OrderedDict[tuple, _Entry] = collections.OrderedDict()
        self._mem_size = 0
        self._lock = threading.Lock()
        self.conversions = 0                 # files decoded and resampled by this cache
        self.disk_hits = 0

    # public ------------------------------------------------------------------------------
    def load(self, path: str | os.PathLike) -> np.ndarray:
        """The prompt as a read-only uint8 law-coded 8 kHz array (converted once)."""
        return self._entry(path).codes

    def load_pcm(self, path: str | os.PathLike) -> np.ndarray:
        """The prompt as read-only int16 (the law-coded audio decoded, as it will sound)."""
        entry = self._entry(path)
        if entry.pcm is None:
            pcm = g711.decode(self.law, entry.codes)
            pcm.flags.writeable = False
            entry.pcm = pcm
        return entry.pcm

    def cached(self, path: str | os.PathLike) -> bool:
        """True if `path` (as it is now on disk) is in memory: load() will not block."""
        try:
            key = self._key(path)
        except PromptError:
            return False
        with self._lock:
            return key in self._mem

    def check(self, path: str | os.PathLike) -> None:
        """Cheap checks (exists, is a file, readable) that raise PromptError."""
        self._key(path)

    # internals ---------------------------------------------------------------------------
    def _key(self, path) -> tuple:
        name = os.fspath(path)
        try:
            st = os.stat(name)
        except FileNotFoundError:
            raise PromptError(f"prompt {name}: file not found") from None
        except OSError as e:
            raise PromptError(f"prompt {name}: cannot access ({e.strerror})") from None
        if stat.S_ISDIR(st.st_mode):
            raise PromptError(f"prompt {name}: is a directory, not an audio file")
        if not os.access(name, os.R_OK):
            raise PromptError(f"prompt {name}: cannot read (permission denied)")
        return (os.path.abspath(name), st.st_mtime_ns, st.st_size)

    def _entry(self, path) -> _Entry:
        key = self._key(path)
        with self._lock:
            entry = self._mem.get(key)
            if entry is not None:
                self._mem.move_to_end(key)
                return entry
        codes = self._from_disk(key)
        if codes is None:
            codes = encode_file(os.fspath(path), self.law, self.max_seconds)
            with self._lock:
                self.conversions += 1
            self._to_disk(key, codes)
        else:
            with self._lock:
                self.disk_hits += 1
        codes.flags.writeable = False
        entry = _Entry(codes)
        with self._lock:
            self._mem[key] = entry
            self._mem_size += codes.nbytes * 3          # codes plus the int16 copy
            while self._mem_size > self.memory_bytes and len(self._mem) > 1:
                _, old = self._mem.popitem(last=False)
                self._mem_size -= old.codes.nbytes * 3
        return entry

    def _disk_name(self, key: tuple) -> str | None:
        if not self.cache_dir:
            return None
        text = "\0".join(map(str, key + (self.law, CACHE_VERSION)))
        digest = hashlib.sha256(text.encode()).hexdigest()[:40]
        return os.path.join(self.cache_dir, f"{digest}.{self.law}")

    def _from_disk(self, key: tuple) -> np.ndarray | None:
        name = self._disk_name(key)
        if name is None or not os.path.exists(name):
            return None
        try:
            return np.fromfile(name, dtype=np.uint8)
        except OSError as e:
            log.warning("prompt cache entry %s unreadable (%s); converting again", name, e)
            return None

    def _to_disk(self, key: tuple, codes: np.ndarray) -> None:
        name = self._disk_name(key)
        if name is None:
            return
        try:
            os.makedirs(self.cache_dir, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.cache_dir, suffix=".part")
            with os.fdopen(fd, "wb") as f:
                f.write(codes.tobytes())
            os.replace(tmp, name)            # atomic: another process never sees half a file
        except OSError as e:
            log.warning("prompt cache directory %s not writable (%s); memory cache only",
                        self.cache_dir, e)


def encode_file(path: str, law: str = "alaw", max_seconds: float = 3600.0) -> np.ndarray:
    """Read, mono-mix, resample and encode one file (no caching). Raises PromptError."""
    ext = os.path.splitext(path)[1].lower()
    if ext in _RAW_EXTENSIONS:
        return _encode_raw(path, _RAW_EXTENSIONS[ext], law, max_seconds)
    import soundfile  # noqa: PLC0415 (only prompt conversion needs libsndfile)
    try:
        info = soundfile.info(path)
    except (RuntimeError, soundfile.LibsndfileError) as e:
        raise PromptError(f"prompt {path}: not an audio file or unsupported format "
                          f"({_sndfile_reason(e)})") from None
    if info.samplerate <= 0 or info.channels <= 0:
        raise PromptError(f"prompt {path}: unsupported (sample rate {info.samplerate}, "
                          f"{info.channels} channels)")
    if info.frames <= 0:
        raise PromptError(f"prompt {path}: empty (no audio samples)")
    if info.frames / info.samplerate > max_seconds:
        raise PromptError(f"prompt {path}: too long ({info.frames / info.samplerate:.0f} s; "
                          f"limit {max_seconds:.0f} s)")
    try:
        data, rate = soundfile.read(path, dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError) as e:
        raise PromptError(f"prompt {path}: cannot decode ({_sndfile_reason(e)})") from None
    if data.shape[0] == 0:
        raise PromptError(f"prompt {path}: empty (no audio samples)")
    mono = data.mean(axis=1, dtype=np.float64) * 32768.0
    pcm = resample(mono, rate, RATE)
    return g711.encode(law, np.clip(np.rint(pcm), -32768, 32767).astype(np.int16))


def _encode_raw(path: str, kind: str, law: str, max_seconds: float) -> np.ndarray:
    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except OSError as e:
        raise PromptError(f"prompt {path}: cannot read ({e.strerror})") from None
    if raw.size == 0:
        raise PromptError(f"prompt {path}: empty (no audio samples)")
    if kind == "sln":
        if raw.size % 2:
            raise PromptError(f"prompt {path}: odd length {raw.size} bytes for 16-bit "
                              "signed linear audio")
        pcm = raw.view("<i2").astype(np.int16)
    elif kind == law:
        pcm = None
    else:
        pcm = g711.decode(kind, raw)
    samples = raw.size if pcm is None else pcm.size
    if samples / RATE > max_seconds:
        raise PromptError(f"prompt {path}: too long ({samples / RATE:.0f} s; "
                          f"limit {max_seconds:.0f} s)")
    return raw.copy() if pcm is None else g711.encode(law, pcm)


def _sndfile_reason(e: Exception) -> str:
    text = str(e)
    return text.split(": ", 1)[-1] if ": " in text else text


# ---- playback --------------------------------------------------------------------------
@dataclasses.dataclass
class Finished:
    """A playback that ended: completed, stopped, barged in or failed to load."""
    row: int
    tag: Any
    interrupted: bool
    error: str | None = None


@dataclasses.dataclass
class _Playback:
    tag: Any
    barge_in: bool
    queue: collections.deque            # int16 arrays, Futures of them, or callables
    clip: np.ndarray | None = None
    waiting: Future | None = None


class _Group:
    """Rows playing one clip."""
    __slots__ = ("clip", "rows", "_array")

    def __init__(self, clip: np.ndarray):
        self.clip = clip
        self.rows: set[int] = set()
        self._array: np.ndarray | None = None

    @property
    def array(self) -> np.ndarray:
        if self._array is None:
            self._array = np.fromiter(sorted(self.rows), dtype=np.intp, count=len(self.rows))
        return self._array

    def changed(self) -> None:
        self._array = None


class Player:
    """Clip playback for `rows` rows: one queue of clips per row, one tag per queue."""

    def __init__(self, rows: int, block: int = 160):
        self.rows = rows
        self.block = block
        self.pos = np.zeros(rows, dtype=np.intp)
        self.barge_in = np.zeros(rows, dtype=bool)   # rows whose playback stops on a digit
        self.busy = np.zeros(rows, dtype=bool)       # rows with a playback (queued or playing)
        self._play: dict[int, _Playback] = {}
        self._groups: dict[int, _Group] = {}         # id(clip) -> rows playing it
        self._pending: set[int] = set()              # rows with no clip started yet
        self._offsets = np.arange(block, dtype=np.intp)

    @property
    def active(self) -> bool:
        return bool(self._play)

    def playing(self, row: int) -> bool:
        return row in self._play

    def tag(self, row: int) -> Any:
        p = self._play.get(row)
        return None if p is None else p.tag

    def play(self, row: int, items: Iterable, tag: Any = None,
             barge_in: bool = False) -> Finished | None:
        """Queue `items` (int16 arrays, or Futures/callables giving them) on `row`,
        replacing what it played; returns the replaced playback's Finished, if any."""
        replaced = self.stop(row)
        self._play[row] = _Playback(tag, bool(barge_in), collections.deque(items))
        self._pending.add(row)
        self.barge_in[row] = bool(barge_in)
        self.busy[row] = True
        return replaced

    def stop(self, row: int, interrupted: bool = True) -> Finished | None:
        p = self._play.pop(row, None)
        if p is None:
            return None
        self._detach(row, p)
        self._pending.discard(row)
        self.barge_in[row] = self.busy[row] = False
        return Finished(row, p.tag, interrupted)

    def _detach(self, row: int, p: _Playback) -> None:
        if p.clip is not None:
            g = self._groups[id(p.clip)]
            g.rows.discard(row)
            g.changed()
            if not g.rows:
                del self._groups[id(p.clip)]
            p.clip = None

    def _advance(self, row: int, p: _Playback, done: list[Finished]) -> None:
        """Start the next playable item of `row`'s queue, or finish the playback."""
        self._detach(row, p)
        while p.queue:
            item = p.queue[0]
            if isinstance(item, Future):
                if not item.done():
                    p.waiting = item
                    self._pending.add(row)
                    return
                try:
                    item = item.result()
                except Exception as e:          # a prompt that failed to load
                    del self._play[row]
                    self._pending.discard(row)
                    self.barge_in[row] = self.busy[row] = False
                    done.append(Finished(row, p.tag, True, str(e)))
                    return
            elif callable(item):
                item = item()
            p.queue.popleft()
            p.waiting = None
            self._pending.discard(row)
            if item.size == 0:
                continue
            p.clip = item
            g = self._groups.get(id(item))
            if g is None:
                g = self._groups[id(item)] = _Group(item)
            g.rows.add(row)
            g.changed()
            self.pos[row] = 0
            return
        del self._play[row]
        self._pending.discard(row)
        self.barge_in[row] = self.busy[row] = False
        done.append(Finished(row, p.tag, False))

    def mix_into(self, out: np.ndarray) -> list[Finished]:
        """Add this tick's block of every playing row into `out` (float32 rows x block)."""
        done: list[Finished] = []
        for row in list(self._pending):               # new queues and finished loads
            p = self._play[row]
            if p.waiting is None or p.waiting.done():
                self._advance(row, p, done)
        ended: list[int] = []
        block = self.block
        for g in list(self._groups.values()):
            rows = g.array
            clip = g.clip
            n = clip.size
            start = self.pos[rows]
            idx = start[:, None] + self._offsets
            np.minimum(idx, n - 1, out=idx)
            seg = clip[idx]
            left = n - start
            short = np.flatnonzero(left <= block)
            for i in short.tolist():                  # the clip ends in this block
                seg[i, left[i]:] = 0
                ended.append(int(rows[i]))
            out[rows] += seg
            self.pos[rows] = start + block
        for row in ended:
            p = self._play.get(row)
            if p is not None:
                self._advance(row, p, done)
        return done
