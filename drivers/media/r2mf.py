"""MFC/R2 multifrequency signals (ITU-T Q.441): two-of-six tones, detection and generation.

Each signal 1..15 is a pair of the six frequencies of its direction: forward (the calling
side's register sends) 1380..1980 Hz, backward (the called side's) 1140..540 Hz, both
spaced 120 Hz. The pair table below is Q.441's: signals 1..10 combine the first five
frequencies in the same order as the R1 code (1 = f0+f1, 2 = f0+f2, 3 = f1+f2, 4 = f0+f3,
..., 10 = f3+f4) and 11..15 pair each of them with the sixth (11 = f0+f5 ... 15 = f4+f5).

Detection reuses the DTMF detector's sliding DFT (``drivers.media.dtmf.WindowedDft``):
5 ms hops over 25 ms windows. At 25 ms (200 samples) the six frequencies of a direction
fall on each other's nulls, so a true pair leaves almost nothing in the other four bins.
Receiver figures as commonly cited for Q.442 (and by SpanDSP's R2 tests): operate from
-5 to -35 dBm0 per frequency, +-10 Hz, level difference up to 5 dB (adjacent) / 7 dB (not
adjacent) accepted and 20 dB rejected, no operation on signals shorter than 7 ms, no
release on interruptions up to 7 ms, operate + release within 80 ms.

Compelled signaling turns tones on and off in answer to each other, so the detector
reports both edges: ``R2Signal(row, signal, sample)`` with signal 1..15 when a pair has
been steady for ``operate_hops`` windows (sample = its estimated start) and 0 when it has
been gone for ``release_hops`` windows (sample = its estimated end).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from drivers.media.dtmf import RATE, SUB, WindowedDft, _check_rate
from drivers.media.levels import dbm0_to_peak

FORWARD_HZ = (1380.0, 1500.0, 1620.0, 1740.0, 1860.0, 1980.0)
BACKWARD_HZ = (1140.0, 1020.0, 900.0, 780.0, 660.0, 540.0)
DIRECTIONS = {"forward": FORWARD_HZ, "backward": BACKWARD_HZ}
# Signal n uses frequencies PAIRS[n - 1] (indices into the direction's six).
PAIRS = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3), (0, 4), (1, 4), (2, 4), (3, 4),
         (0, 5), (1, 5), (2, 5), (3, 5), (4, 5))
SPAN = 5                              # 25 ms windows: the six bins are orthogonal
_SIGNAL_OF_PAIR = np.zeros((6, 6), dtype=np.int8)          # frequency indices -> signal
for _signal, (_a, _b) in enumerate(PAIRS, start=1):
    _SIGNAL_OF_PAIR[_a, _b] = _SIGNAL_OF_PAIR[_b, _a] = _signal
del _signal, _a, _b


def _frequencies(direction: str) -> tuple[float, ...]:
    try:
        return DIRECTIONS[direction]
    except KeyError:
        raise ValueError(f"R2 MF direction must be 'forward' or 'backward', "
                         f"not {direction!r}") from None


def signal_frequencies(direction: str, signal: int) -> tuple[float, float]:
    """The two frequencies (Hz) of R2 MF `signal` (1..15) in `direction`."""
    freqs = _frequencies(direction)
    if isinstance(signal, bool) or not isinstance(signal, (int, np.integer)) \
            or not 1 <= signal <= 15:
        raise ValueError(f"R2 MF signal must be an integer 1..15, not {signal!r}")
    a, b = PAIRS[int(signal) - 1]
    return freqs[a], freqs[b]


@dataclasses.dataclass(frozen=True)
class R2Signal:
    row: int
    signal: int         # 1..15 when a pair starts, 0 when it ends
    sample: int         # absolute sample index of that edge (estimated)


@dataclasses.dataclass(frozen=True)
class R2Params:
    min_level_dbm0: float = -38.0     # per frequency (must operate down to -35)
    max_twist_db: float = 12.0        # between the two (accept 7, reject 20)
    third_db: float = 12.0            # the other four each this far below the weaker one
    min_energy_ratio: float = 0.6     # the pair's share of the window's energy
    operate_hops: int = 3             # consecutive windows with the same pair: ~30 ms
    release_hops: int = 3             # consecutive windows without it

    def __post_init__(self):
        if self.operate_hops < 1 or self.release_hops < 1:
            raise ValueError("operate_hops and release_hops must be >= 1")


class R2MfDetector:
    """R2 MF receiver for one direction's signals on `rows` channels.

    Only enabled rows are analysed. Until ``enable()`` or ``disable()`` is first called,
    every row is; after that, only the rows enabled (as the media engine uses it).
    """

    def __init__(self, rows: int, direction: str, rate: int = RATE, block: int = 160,
                 params: R2Params | None = None):
        _check_rate(rate)
        self.direction = direction
        self.rows, self.block = rows, block
        self.params = p = params or R2Params()
        self._dft = WindowedDft(rows, _frequencies(direction), rate, block, SUB, SPAN)
        self._n = self._dft.n
        self._hops = self._dft.hops
        self.enabled = np.ones(rows, dtype=bool)
        self._explicit = False
        self.sample = 0                                   # next block's first sample
        self._amin2 = np.float32((dbm0_to_peak(p.min_level_dbm0) * self._n / 2) ** 2)
        self._twist = np.float32(10 ** (p.max_twist_db / 10))
        self._third = np.float32(10 ** (-p.third_db / 10))
        self._ratio = np.float32(p.min_energy_ratio * self._n / 2)
        self._scale = np.float32(2.0 / self._n)
        self._cur = np.zeros(rows, dtype=np.int8)         # signal on, 0 none
        self._miss = np.zeros(rows, dtype=np.int32)       # windows without it
        self._cand = np.zeros(rows, dtype=np.int8)        # candidate signal, 0 none
        self._count = np.zeros(rows, dtype=np.int32)      # its consecutive windows
        self._amax = np.ones(rows, dtype=np.float32)     # peak amplitude of the signal on
        self._cmax = np.ones(rows, dtype=np.float32)     # ... of the candidate
        self._s_first = np.zeros(rows, dtype=np.int64)
        self._a_first = np.zeros(rows, dtype=np.float32)
        self._s_last = np.zeros(rows, dtype=np.int64)
        self._a_last = np.zeros(rows, dtype=np.float32)

    def enable(self, row: int) -> None:
        self._check_row(row)
        if not self._explicit:
            self._explicit = True
            self.enabled[:] = False
        if not self.enabled[row]:
            self.reset(row)
            self.enabled[row] = True

    def disable(self, row: int) -> None:
        self._check_row(row)
        if not self._explicit:
            self._explicit = True
            self.enabled[:] = True
        self.enabled[row] = False

    def reset(self, row: int) -> None:
        """Forget `row`'s history (no edge is reported for a signal that was on)."""
        self._check_row(row)
        self._dft.reset(row)
        self._cur[row] = self._cand[row] = 0
        self._miss[row] = self._count[row] = 0

    def _check_row(self, row: int) -> None:
        if not 0 <= row < self.rows:
            raise IndexError(f"row {row} out of range 0..{self.rows - 1}")

    def process(self, pcm: np.ndarray, sample: int | None = None) -> list[R2Signal]:
        """Feed one block of every row; returns the signal edges seen in it."""
        pcm = np.asarray(pcm)
        if pcm.shape != (self.rows, self.block):
            raise ValueError(f"R2 MF detector expects audio of shape ({self.rows}, "
                             f"{self.block}), got {pcm.shape}")
        if sample is not None:
            self.sample = int(sample)
        t0 = self.sample
        self.sample += self.block
        sel = None if not self._explicit else np.flatnonzero(self.enabled)
        if sel is not None and sel.size == 0:
            return []
        if sel is not None and sel.size == self.rows:
            sel = None
        self._dft.push(pcm, sel)
        rows = np.arange(self.rows) if sel is None else sel
        y, ew = self._dft.windows(sel)
        sig, amp = self._classify(y[1:], ew)
        events: list[R2Signal] = []
        self._track(rows, sig, amp, t0, events)
        return events

    def _classify(self, y: np.ndarray, ew: np.ndarray):
        """Per window: the signal (0 none) and the pair's amplitude."""
        sq = y.view(np.float32) ** 2
        pw = sq[..., 0::2] + sq[..., 1::2]                       # (hops, n, 6)
        order = np.argsort(pw, axis=-1)
        top = np.take_along_axis(pw, order[..., 3:], axis=-1)    # 3rd, 2nd, 1st largest
        third, weak, strong = top[..., 0], top[..., 1], top[..., 2]
        ok = weak >= self._amin2
        ok &= strong <= self._twist * weak
        ok &= third <= self._third * weak
        ok &= (weak + strong) >= self._ratio * ew
        sig = np.where(ok, _SIGNAL_OF_PAIR[order[..., 5], order[..., 4]], 0).astype(np.int8)
        amp = np.sqrt(weak + strong) * self._scale
        return sig, amp

    def _track(self, rows, sig, amp, t0, events) -> None:
        """Per row: IDLE -> CANDIDATE (same pair in consecutive windows) -> ON (reported)
        -> released after release_hops windows without it (reported as signal 0)."""
        p = self.params
        n = self._n
        cur, miss = self._cur[rows], self._miss[rows]
        cand, count = self._cand[rows], self._count[rows]
        amax, cmax = self._amax[rows], self._cmax[rows]
        s_first, a_first = self._s_first[rows], self._a_first[rows]
        s_last, a_last = self._s_last[rows], self._a_last[rows]
        for h in range(self._hops):
            g, a = sig[h], amp[h]
            s = t0 + SUB * (h - SPAN + 1)                        # window start sample
            on = cur > 0
            same = on & (g == cur)
            miss = np.where(same, 0, miss + 1)
            if same.any():
                np.maximum(amax, np.where(same, a, 0), out=amax)
                s_last = np.where(same, s, s_last)
                a_last = np.where(same, a, a_last)
            release = on & (miss >= p.release_hops)
            for i in np.flatnonzero(release):
                end = s_last[i] + n * min(1.0, a_last[i] / amax[i])
                events.append(R2Signal(int(rows[i]), 0, int(round(end))))
            cur = np.where(release, 0, cur)
            # Candidates: a pair other than the one on, in consecutive windows.
            fresh = (g > 0) & ~same
            grow = fresh & (g == cand)
            count = np.where(grow, count + 1, np.where(fresh, 1, 0))
            new = fresh & ~grow
            cand = np.where(fresh, g, 0).astype(np.int8)
            s_first = np.where(new, s, s_first)
            a_first = np.where(new, a, a_first)
            cmax = np.where(new, a, np.where(grow, np.maximum(cmax, a), cmax))
            operate = (cand > 0) & (cur == 0) & (count >= p.operate_hops)
            for i in np.flatnonzero(operate):
                start = s_first[i] + n * (1.0 - min(1.0, a_first[i] / cmax[i]))
                events.append(R2Signal(int(rows[i]), int(cand[i]), int(round(start))))
            if operate.any():
                cur = np.where(operate, cand, cur).astype(np.int8)
                amax = np.where(operate, cmax, amax)
                miss = np.where(operate, 0, miss)
                s_last = np.where(operate, s, s_last)
                a_last = np.where(operate, a, a_last)
                cand = np.where(operate, 0, cand).astype(np.int8)
                count = np.where(operate, 0, count)
        self._cur[rows], self._miss[rows] = cur, miss
        self._cand[rows], self._count[rows] = cand, count
        self._amax[rows], self._cmax[rows] = amax, cmax
        self._s_first[rows], self._a_first[rows] = s_first, a_first
        self._s_last[rows], self._a_last[rows] = s_last, a_last


class R2MfGenerator:
    """Continuous R2 MF signals for `rows` channels: ``set(row, signal)`` then one
    ``generate()`` per tick. Phase runs on across blocks; a new signal starts at phase 0."""

    def __init__(self, rows: int, direction: str, rate: int = RATE, block: int = 160,
                 level_dbm0: float = -8.0):
        self.direction = direction
        self._freqs = np.array(_frequencies(direction))
        self.rows, self.block, self.rate = rows, block, rate
        self.level_dbm0 = level_dbm0
        self._amp = np.float32(dbm0_to_peak(level_dbm0))
        self.signal = np.zeros(rows, dtype=np.int8)      # 0: silent
        self._w = np.zeros((rows, 2), dtype=np.float64)  # radians per sample
        self._phase = np.zeros((rows, 2), dtype=np.float64)
        self._t = np.arange(block, dtype=np.float64)

    def set(self, row: int, signal: int | None) -> None:
        if not 0 <= row < self.rows:
            raise IndexError(f"row {row} out of range 0..{self.rows - 1}")
        if signal is None or signal == 0:
            self.signal[row] = 0
            return
        f = signal_frequencies(self.direction, signal)
        self.signal[row] = signal
        self._w[row] = 2 * np.pi * np.array(f) / self.rate
        self._phase[row] = 0.0

    def generate(self) -> np.ndarray:
        out = np.zeros((self.rows, self.block), dtype=np.float32)
        act = np.flatnonzero(self.signal)
        if act.size:
            w, ph = self._w[act], self._phase[act]
            arg = ph[:, :, None] + w[:, :, None] * self._t            # (n, 2, block)
            out[act] = self._amp * np.sin(arg).sum(axis=1)
            self._phase[act] = np.mod(ph + w * self.block, 2 * np.pi)
        return out
