"""DTMF: batched detection on every channel, tone generation, whole-file detection.

How the detector works (all rows at once; Python loops only over a block's 4 hops in the
rare rows that change key within a block):

* Each block is cut into 5 ms sub-blocks (40 samples). One batched matrix multiply gives
  every sub-block's DFT at the eight DTMF frequencies and at 450 Hz (China's dial tone),
  phase-referenced to the start of the block (``WindowedDft``). Three consecutive
  sub-blocks make a 15 ms analysis window every 5 ms: the fine hop is what lets a 20 ms
  block tell a 23 ms tone (reject) from a 40 ms one (accept).
* A gate on each block's last window (one small GEMM for all rows, then a few tests on the
  candidates) picks the rows worth a closer look; rows tracking a key are looked at too.
* Where a 450 Hz dial tone is on, what it leaks into the DTMF bins is computed from its
  own bin and removed, so a key 20 dB below the dial tone is still seen.
* A window is a *hit* for a key when each group has one clear peak, each tone's frequency
  (from the phase turn between consecutive windows: far finer than the DFT bin) is within
  tolerance, the levels and twist are in range, and the two tones (plus any dial tone)
  hold most of the window's energy; a *strong* hit when they hold nearly all of it.
* Per row, a small state machine turns hits into digits. A key's edges are measured on
  the windows next to its first and last hits (a window covering a share c of the tone
  measures c times its amplitude); it counts once it has ``min_hits`` hits, a strong one,
  and an estimated ``min_tone_ms``; a gap shorter than ``end_gap_hops`` windows is bridged.
* Talk-off guards, once per key when it is accepted: neither tone may carry a second
  harmonic (voices and instruments do, DTMF senders do not), and the high tone may not sit
  an octave above the low one. At key-up the length is checked again on the final edges;
  the digit is reported with its start sample and duration.

Reception figures (Q.24 as administrations apply them; see CHINA-TELEPHONY.md): tones
>= 40 ms are detected and < 23 ms rejected, pauses >= 50 ms separate digits and a 10 ms
break is bridged, frequency offsets within +-1.5 % detect and beyond +-3.5 % reject,
twist up to 4 dB (high group above low) and 8 dB (low above high), levels from -3 dBm0
per tone (the pair at 0 dBm0) down to -36 dBm0 per tone, S/N >= 15 dB against the
weaker tone, with China's dial tone or a prompt's echo under the first digit.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from drivers.media.levels import dbm0_to_peak

RATE = 8000
ROW_HZ = (697.0, 770.0, 852.0, 941.0)
COL_HZ = (1209.0, 1336.0, 1477.0, 1633.0)
DIAL_HZ = 450.0                       # China's dial tone, often still on under the first digit
KEYS = "123A456B789C*0#D"             # KEYS[4 * row + col]
SUB = 40                              # sub-block = hop: 5 ms
SPAN = 3                              # sub-blocks per analysis window: 15 ms


@dataclasses.dataclass(frozen=True)
class DtmfDigit:
    row: int
    digit: str
    start: int          # absolute sample index of the tone's (estimated) start
    duration: int       # samples


@dataclasses.dataclass(frozen=True)
class DtmfParams:
    """Acceptance thresholds; defaults sit between Q.24's must-accept and must-reject bands."""
    min_level_dbm0: float = -42.0     # per tone
    max_twist_high_db: float = 6.5    # high group above low (must accept 4 dB)
    max_twist_low_db: float = 10.5    # low group above high (must accept 8 dB)
    max_freq_dev: float = 0.025       # relative (accept 1.5 %, reject 3.5 %)
    min_energy_ratio: float = 0.80    # tones (+ dial tone) / all energy in the window
    strong_energy_ratio: float = 0.90  # ... in at least one window of a key
    relative_peak_db: float = 8.0     # peak over the rest of its group together
    min_tone_ms: float = 30.5         # estimated tone length (accept 40 ms, reject 23 ms)
    min_hits: int = 3                 # windows that recognised the key
    end_gap_hops: int = 7             # 35 ms without the key ends it (10 ms breaks bridge)
    gate_ratio: float = 0.45          # gate: tones' share of the last window, uncorrected
    gate_peak: float = 0.3            # gate: the rest of a group against its peak
    max_harmonic_db: float = 15.0     # second harmonics this far below each tone at least

    def __post_init__(self):
        if self.min_hits < 2:
            raise ValueError(f"min_hits must be >= 2, not {self.min_hits}")
        if self.min_tone_ms <= 0:
            raise ValueError(f"min_tone_ms must be > 0, not {self.min_tone_ms}")
        if self.end_gap_hops < 1:
            raise ValueError(f"end_gap_hops must be >= 1, not {self.end_gap_hops}")
        if not 0.0 < self.max_freq_dev < 0.05:
            raise ValueError(f"max_freq_dev must be in (0, 0.05), not {self.max_freq_dev}")


class WindowedDft:
    """Sub-block DFTs at a few frequencies for many rows, and windows built from them.

    ``push(x)`` takes one (rows, block) array. Then ``windows(sel)`` returns, for the rows
    `sel` (all when None), ``(y, energy)``: ``y`` is complex64 (before + hops, n, K) where
    ``y[before + h]`` is the window of `span` sub-blocks ending with sub-block ``h`` of
    this block and ``y[:before]`` the windows just before, all phase-referenced to this
    block's start (so the phase turn between consecutive windows is the tone's offset from
    the bin frequency); ``energy`` (hops, n) is each of this block's windows' sum of
    squares. Window ``h`` starts ``sub * (h - span + 1)`` samples after the block's start.
    ``windows_ending(ends)`` gives chosen windows of every row (the gate's).
    """

    def __init__(self, rows: int, freqs, rate: int = RATE, block: int = 160,
                 sub: int = SUB, span: int = SPAN, before: int = 1):
        if rows < 1:
            raise ValueError(f"rows must be >= 1, not {rows}")
        if block % sub or block <= 0:
            raise ValueError(f"block ({block}) must be a positive multiple of {sub} samples")
        self.rows, self.block, self.sub, self.span = rows, block, sub, span
        self.before = before
        self.hops = hops = block // sub
        self.n = sub * span
        self.freqs = np.asarray(freqs, dtype=np.float64)
        k = self.k = len(self.freqs)
        w = 2 * np.pi * self.freqs / rate
        t = sub * np.arange(hops)[:, None] + np.arange(sub)[None, :]        # (hops, sub)
        ph = t[:, :, None] * w[None, None, :]
        basis = np.empty((hops, sub, 2 * k), dtype=np.float32)
        basis[..., 0::2] = np.cos(ph)          # interleaved so the product views as complex
        basis[..., 1::2] = -np.sin(ph)
        self._basis = basis
        self._keep = keep = span + before - 1          # sub-blocks kept from earlier blocks
        # Previous block's sub-blocks -> this block's phase reference (full size: numpy
        # is much faster without a short broadcast inner loop).
        rot = np.exp(1j * w * block).astype(np.complex64)
        self._rot = np.ascontiguousarray(np.broadcast_to(rot, (keep, rows, k)))
        self._x = np.empty((rows, block), dtype=np.float32)
        self._sq = np.empty((rows, block), dtype=np.float32)
        self._ones = np.ones(sub, dtype=np.float32)
        self._esub = np.empty((rows, hops), dtype=np.float32)
        # Kept sub-blocks, then this block's: DFTs (as interleaved re/im) and energies.
        self._h = np.zeros((keep + hops, rows, 2 * k), dtype=np.float32)
        self._e = np.zeros((keep + hops, rows), dtype=np.float32)

    def push(self, pcm: np.ndarray, sel: np.ndarray | None = None) -> None:
        """Take the next block: all rows, or only rows `sel` (pcm is then still the whole
        (rows, block) array; the other rows' history goes stale until they are reset)."""
        if sel is not None:
            self._push_rows(pcm, sel)
            return
        hops, s, rows, sub = self.hops, self._keep, self.rows, self.sub
        h, e = self._h, self._e
        hc = h.view(np.complex64)
        np.multiply(hc[hops:], self._rot, out=hc[:s])
        e[:s] = e[hops:]
        x = self._x
        np.copyto(x, pcm, casting="unsafe")
        # One GEMM per sub-block position, reading the rows in place (strided, no copy).
        np.matmul(x.reshape(rows, hops, sub).transpose(1, 0, 2), self._basis, out=h[s:])
        np.multiply(x, x, out=self._sq)
        np.matmul(self._sq.reshape(rows * hops, sub), self._ones, out=self._esub.reshape(-1))
        e[s:] = self._esub.T

    def push_float(self, x: np.ndarray) -> None:
        """push() for a C-contiguous float32 (rows, block) array, used as it is."""
        hops, s, rows, sub = self.hops, self._keep, self.rows, self.sub
        h, e = self._h, self._e
        hc = h.view(np.complex64)
        np.multiply(hc[hops:], self._rot, out=hc[:s])
        e[:s] = e[hops:]
        np.matmul(x.reshape(rows, hops, sub).transpose(1, 0, 2), self._basis, out=h[s:])
        np.multiply(x, x, out=self._sq)
        np.matmul(self._sq.reshape(rows * hops, sub), self._ones, out=self._esub.reshape(-1))
        e[s:] = self._esub.T

    def _push_rows(self, pcm: np.ndarray, sel: np.ndarray) -> None:
        hops, s, sub, n = self.hops, self._keep, self.sub, sel.size
        hc = self._h.view(np.complex64)
        hc[:s, sel] = np.take(hc[hops:], sel, axis=1) * self._rot[:, :n]
        self._e[:s, sel] = np.take(self._e[hops:], sel, axis=1)
        x = np.take(pcm, sel, axis=0).astype(np.float32)
        self._h[s:, sel] = np.matmul(x.reshape(n, hops, sub).transpose(1, 0, 2), self._basis)
        self._e[s:, sel] = np.einsum("rpn,rpn->pr", *(x.reshape(n, hops, sub),) * 2)

    def windows_ending(self, ends) -> tuple[np.ndarray, np.ndarray]:
        """DFTs (len(ends), rows, K) and energies (len(ends), rows) of the windows ending
        with sub-blocks `ends` of this block, all rows."""
        hc = self._h.view(np.complex64)
        at = self._keep + np.asarray(ends)                 # last sub-block of each window
        y = hc[at] + hc[at - 1]
        ew = self._e[at] + self._e[at - 1]
        for j in range(2, self.span):
            y += hc[at - j]
            ew += self._e[at - j]
        return y, ew

    def windows(self, sel: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        hops, s, nw = self.hops, self.span, self.hops + self.before
        hc = self._h.view(np.complex64)
        e = self._e
        if sel is not None:
            hc, e = np.take(hc, sel, axis=1), np.take(e, sel, axis=1)
        y = hc[0:nw] + hc[1:nw + 1]
        first = self.before                              # energies: this block's windows
        ew = e[first:nw] + e[first + 1:nw + 1]
        for j in range(2, s):
            y += hc[j:nw + j]
            ew += e[first + j:nw + j]
        return y, ew

    def reset(self, row: int) -> None:
        self._h[:, row] = 0.0
        self._e[:, row] = 0.0


def _check_rate(rate: int) -> None:
    if rate != RATE:
        raise ValueError(f"DTMF detection runs at {RATE} Hz only, not {rate} Hz "
                         f"(resample the audio first)")


def _index_of(grp: np.ndarray, peak: np.ndarray) -> np.ndarray:
    """Which of the four (axis 1 of `grp`) holds `peak`, as uint8 (ties: the last one)."""
    u8 = np.uint8
    idx = (grp[:, 1] == peak).view(u8) + (grp[:, 2] == peak).view(u8) * u8(2)
    idx = np.maximum(idx, (grp[:, 3] == peak).view(u8) * u8(3))
    return np.minimum(idx, u8(3), out=idx)


def _dirichlet_mean(theta: np.ndarray, n: int) -> np.ndarray:
    """mean over k < n of exp(j theta k): what a tone theta rad/sample away from a bin
    leaves in that bin of an n-sample DFT, relative to a tone on it."""
    half = theta / 2
    small = np.abs(np.sin(half)) < 1e-9
    ratio = np.sin(n * half) / np.where(small, 1.0, n * np.sin(half))
    return np.exp(1j * half * (n - 1)) * np.where(small, 1.0, ratio)


def _sinc_gain(delta_hz, n: int, rate: int):
    """|DFT gain| of an n-sample window for a tone delta_hz off the bin (sinc series;
    within 1 % up to the first null's half-way point)."""
    x2 = (np.float32(np.pi * n / rate) * delta_hz) ** 2
    g = 1.0 - x2 / 6.0 * (1.0 - x2 / 20.0 * (1.0 - x2 / 42.0))
    return np.maximum(g, np.float32(0.1))


class DtmfDetector:
    """DTMF receiver for `rows` channels, fed one (rows, block) array per tick."""

    def __init__(self, rows: int, rate: int = RATE, block: int = 160,
                 params: DtmfParams | None = None, analyse_every: int = 2):
        """`analyse_every` blocks are analysed together, in one pass: the per-call costs
        of numpy are paid once for them; digits and keydown come that much later (a block,
        20 ms, by default; each digit still carries its exact start and duration)."""
        _check_rate(rate)
        if block % SUB or block <= 0:
            raise ValueError(f"block ({block}) must be a positive multiple of {SUB} samples")
        if analyse_every < 1:
            raise ValueError(f"analyse_every must be >= 1, not {analyse_every}")
        self.rows, self.block = rows, block
        self.params = p = params or DtmfParams()
        self._every = analyse_every
        span = block * analyse_every                     # samples analysed in one pass
        self._buf = np.zeros((rows, span), dtype=np.float32)
        self._filled = 0                                 # blocks waiting in _buf
        self._buf_start = 0                              # sample index of _buf[:, 0]
        self._dft = WindowedDft(rows, ROW_HZ + COL_HZ + (DIAL_HZ,), rate, span)
        self._hops = self._dft.hops
        n = self._n = self._dft.n
        self._rate = rate
        self._fhz = np.array(ROW_HZ + COL_HZ, dtype=np.float32)
        self._amp_scale = np.float32(2.0 / n)       # |Y| of a full-window tone = A * n / 2
        offsets = (np.arange(801) - 400) / 4.0                     # Hz, see _classify
        self._amp_gain = (self._amp_scale / _sinc_gain(offsets, n, rate)).astype(np.float32)
        amin = dbm0_to_peak(p.min_level_dbm0)
        self._amin = np.float32(amin)
        self._twist_hi = np.float32(10 ** (p.max_twist_high_db / 20))
        self._twist_lo = np.float32(10 ** (-p.max_twist_low_db / 20))
        # The other three frequencies of a group together stay relative_peak_db down.
        self._peak_sum = np.float32(1 + 10 ** (-p.relative_peak_db / 10))
        self._ratio = np.float32(p.min_energy_ratio)
        self._strong = np.float32(p.strong_energy_ratio)
        self._phase_to_hz = np.float32(rate / (2 * np.pi * SUB))
        self._min_len = np.float32(p.min_tone_ms * rate / 1000)
        # While a key is on, its last edge is not final: the running length check (see
        # _long_enough) allows half a hop; the check at key-up (_emit) is exact.
        self._min_span = self._min_len + n - SUB / 2
        # Gate, on each block's last window: a key up to 2 % off frequency still passes.
        loss = float(_sinc_gain(np.float32(0.02 * COL_HZ[-1]), n, rate))
        self._gate_level = np.float32((amin * n / 2 * loss) ** 2)
        self._gate_ratio = np.float32(p.gate_ratio * n / 2)
        self._gate_peak = np.float32(1.0 + p.gate_peak)
        self._dial_min = np.float32((dbm0_to_peak(-35.0) * n / 2) ** 2)   # 450 Hz worth removing
        self._group_sums = np.zeros((18, 3), dtype=np.float32)    # re^2 + im^2 summed
        self._group_sums[0:8, 0] = self._group_sums[8:16, 1] = self._group_sums[16:18, 2] = 1
        self._sums = np.empty((rows * analyse_every, 3), dtype=np.float32)
        per = block // SUB                               # sub-blocks per block
        self._block_ends = np.arange(1, analyse_every + 1) * per - 1
        # 450 Hz leakage into each DTMF bin for each window of a block (see _remove_dial_tone).
        wk = 2 * np.pi * np.array(ROW_HZ + COL_HZ) / rate
        w0 = 2 * np.pi * DIAL_HZ / rate
        start = SUB * (np.arange(self._hops + 1) - SPAN)[:, None]            # window starts
        leak1 = np.exp(1j * (w0 - wk) * start) * _dirichlet_mean(w0 - wk, n)
        leak2 = np.exp(-1j * (w0 + wk) * start) * _dirichlet_mean(-w0 - wk, n)
        self._leak1 = leak1[:, None, :].astype(np.complex64)
        self._leak2 = leak2[:, None, :].astype(np.complex64)
        self._sample = 0
        # Per-row key state (see the state machine below).
        self._idle = np.array([-1, 0, 0, 1, 0, 0, 0, 0, 0, 0, -1, 0, -1e18], dtype=np.float64)
        self._state = np.repeat(self._idle[:, None], rows, axis=1)
        self.keydown = np.zeros(rows, dtype=bool)        # a valid key is held (barge-in)
        self._group_base = np.array([0, 4], dtype=np.intp).reshape(2, 1, 1)
        self._tol_hz = np.float32(p.max_freq_dev) * self._fhz
        self._flat_cache: dict[int, np.ndarray] = {}
        self._ended: list[tuple[np.ndarray, np.ndarray]] = []    # keys up, to report
        self._tail = np.zeros((rows, 2 * SUB), dtype=np.float32)   # last block's end
        # Windows from SPAN - 1 on lie inside the block: preferred for the harmonics test.
        self._inside = np.where(np.arange(self._hops) >= SPAN - 1, 1e9, 0).astype(
            np.float32)[:, None]
        self._harmonic_tables(rate)

    # ---- per tick --------------------------------------------------------------------
    def process(self, pcm: np.ndarray, sample: int | None = None) -> list[DtmfDigit]:
        """Feed one block of every row; returns the digits whose key went up (seen in the
        pass that ends with this block, so up to analyse_every - 1 blocks late).

        `sample` is the absolute index of the block's first sample (default: counted
        from 0 by this detector).
        """
        pcm = np.asarray(pcm)
        if pcm.shape != (self.rows, self.block):
            raise ValueError(f"DTMF detector expects audio of shape ({self.rows}, "
                             f"{self.block}), got {pcm.shape}")
        if sample is not None and self._filled == 0:
            self._sample = int(sample)
        if self._filled == 0:
            self._buf_start = self._sample
        at = self._filled * self.block
        np.copyto(self._buf[:, at:at + self.block], pcm, casting="unsafe")
        self._sample += self.block
        self._filled += 1
        if self._filled < self._every:
            return []
        self._filled = 0
        return self._analyse(self._buf, self._buf_start)

    def _analyse(self, pcm: np.ndarray, t0: int) -> list[DtmfDigit]:
        """One pass over the buffered blocks (pcm: float32 (rows, blocks * block))."""
        self._dft.push_float(pcm)
        events: list[DtmfDigit] = []
        gate, dial = self._gate()
        tracking = self._state[self.CUR] >= 0
        # A key without a hit in the last three windows of the block before (its tone has
        # stopped, or broke and would show again in this block's last window) and whose
        # row shows no key now cannot hit in this block except for a blip too short to
        # matter: it only counts its gap.
        fading = tracking & ~gate & (self._state[self.GAP] >= 3)
        if fading.any():
            self._fade(np.flatnonzero(fading))
        rows = np.flatnonzero(gate | (tracking & ~fading))
        if rows.size:
            y, ew = self._dft.windows(rows)
            under = np.flatnonzero(dial[rows])
            if under.size:
                self._remove_dial_tone(y, under)
            hit, key, amp, dev, strong = self._classify(y, ew)
            was_down = self.keydown[rows]
            self._track(rows, hit, key, amp, strong, t0)
            pos = np.flatnonzero(self.keydown[rows] & ~was_down)
            if pos.size:                               # keys accepted in this block
                # Test the block's best covered window of the key: its strongest hit,
                # preferably one inside this block if that is about as strong.
                a = hit[:, pos] * amp[:, pos]
                full = a >= np.float32(0.9) * a.max(axis=0)
                h = (full * (a + self._inside)).argmax(axis=0)
                self._check_harmonics(rows[pos], pcm, t0, h, dev[:, h, pos].T)
            # The harmonics test may look back into this block from the next one (only
            # rows analysed now can be accepted there on a window reaching back).
            self._tail[rows] = pcm[rows, -2 * SUB:]
        if self._ended:
            self._emit(events)
        return events

    def _fade(self, rows: np.ndarray) -> None:
        """Rows in a key's gap with nothing in this block: the gap grows by a block; at
        end_gap_hops the key ends (reported if it was down)."""
        gap = self._state[self.GAP, rows] + self._hops
        self._state[self.GAP, rows] = gap
        over = gap >= self.params.end_gap_hops
        if over.any():
            ended = rows[over]
            done = ended[self.keydown[ended]]
            if done.size:
                self._ended.append((done, self._state[:, done]))
            self._state[self.CUR, ended] = -1
            self.keydown[ended] = False

    def _gate(self) -> tuple[np.ndarray, np.ndarray]:
        """Rows worth a closer look: the last window of a block of the pass holds two
        tones above the level floor with a fair share of its energy and one clear peak per
        group (loose versions of the window tests: a key's first hits come in a block
        whose last window is covered by the key, or in the block after). Also returns the
        rows with a dial tone strong enough to need removing."""
        ends = self._block_ends
        yw, ew = self._dft.windows_ending(ends)                    # one per block of the pass
        yw, ew = yw.reshape(-1, yw.shape[-1]), ew.reshape(-1)
        sq = yw.view(np.float32) ** 2                              # (blocks * rows, 18)
        # Stage 1, every row (one small GEMM): each group's power, and the 450 Hz bin's.
        sums = np.matmul(sq, self._group_sums, out=self._sums)      # (blocks * rows, 3)
        low, high, p450 = sums[:, 0], sums[:, 1], sums[:, 2]
        weaker = np.minimum(low, high)
        gate = np.zeros(yw.shape[0], dtype=bool)
        # Rows whose 450 Hz tone leaks enough into the DTMF bins to matter.
        dial = (p450 >= self._dial_min) & (p450 >= np.float32(0.2) * weaker)
        cand = np.flatnonzero((weaker >= self._gate_level)
                              & (low + high + p450 >= self._gate_ratio * ew))
        if cand.size == 0:
            return self._any_block(gate), self._any_block(dial)
        # Stage 2, the candidates: a dial tone leaks into the DTMF bins (up to -23 dB), so
        # it is removed first; then each group's peak, their share, one peak per group.
        yc = yw[cand]
        under = np.flatnonzero(dial[cand])
        if under.size:
            y0 = yc[under, 8:9]
            w = ends[cand[under] // self.rows] + 1              # window index in _leak1
            yc[under, :8] -= y0 * self._leak1[w, 0] + np.conj(y0) * self._leak2[w, 0]
        q = yc.view(np.float32) ** 2
        pw = np.ascontiguousarray((q[:, 0::2] + q[:, 1::2]).T)         # (9, m)
        grp = pw[:8].reshape(2, 4, -1)
        peak = grp.max(axis=1)                                          # (2, m)
        ok = peak.min(axis=0) >= self._gate_level
        ok &= peak.sum(axis=0) + pw[8] >= self._gate_ratio * ew[cand]
        ok &= (grp.sum(axis=1) <= self._gate_peak * peak).all(axis=0)
        gate[cand[ok]] = True
        return self._any_block(gate), self._any_block(dial)

    def _any_block(self, flags: np.ndarray) -> np.ndarray:
        return flags.reshape(-1, self.rows).any(axis=0) if self._every > 1 else flags

    def _remove_dial_tone(self, y: np.ndarray, sel: np.ndarray) -> None:
        """Subtract a 450 Hz tone's leakage from the DTMF bins of rows `sel` of `y`.

        A tone A cos(w0 t + phi) gives the 450 Hz bin Y0 ~ (A n / 2) e^{j phi} (its own
        image is below -30 dB) and bin k Y0 c1[w, k] + conj(Y0) c2[w, k] (the tone and its
        image), where the coefficients depend on where window w starts in the block.
        """
        y0 = y[:, sel, 8:9]
        y[:, sel, :8] -= y0 * self._leak1 + np.conj(y0) * self._leak2

    def _classify(self, y: np.ndarray, ew: np.ndarray):
        """Per window of the selected rows: hit?, key (4 * row + col), amplitude of the
        pair, each tone's offset from its nominal frequency (Hz, (2, hops, n)), strong?

        Powers are laid out bin-major, so both groups go through the same contiguous
        arrays (first axis: low, high)."""
        hops, n, k = self._hops, y.shape[1], y.shape[2]
        yy = y[1:].transpose(2, 0, 1)
        pw = np.square(yy.real, order="C")
        pw += np.square(yy.imag, order="C")                       # |Y|^2 (9, hops, n)
        grp = pw[:8].reshape(2, 4, hops, n)
        peak = grp.max(axis=1)                                    # (2, hops, n)
        idx = _index_of(grp, peak)
        okg = grp.sum(axis=1) <= self._peak_sum * peak            # one clear peak per group
        # Tone frequency from the phase turn since the previous window (5 ms earlier).
        bins = idx + self._group_base                             # 0..3 low, 4..7 high
        at = self._flat_index(hops, n, k) + bins
        yf = y.reshape(-1)
        turn = yf[at + n * k] * np.conj(yf[at])
        dev = np.arctan2(turn.imag, turn.real)
        dev *= self._phase_to_hz
        okg &= np.abs(dev) <= self._tol_hz[bins]
        # Amplitudes corrected for the bin loss at the measured offset (a table over the
        # +-100 Hz the phase turn can show, in 0.25 Hz steps).
        amp = np.sqrt(peak)
        amp *= np.take(self._amp_gain, (dev * np.float32(4) + np.float32(400.5)).astype(np.intp))
        okg &= amp >= self._amin
        ar, ac = amp[0], amp[1]
        ok = okg[0] & okg[1]
        ok &= (ac <= self._twist_hi * ar) & (ac >= self._twist_lo * ar)
        a2 = ar * ar + ac * ac
        share = a2 * np.float32(self._n / 2) + pw[8] * self._amp_scale
        ok &= share >= self._ratio * ew
        key = (4 * idx[0] + idx[1]).astype(np.int8)
        # A strong hit: the tones hold nearly all of the window (a key's full windows do,
        # voices and instruments hardly ever); a key needs one.
        strong = ok & (share >= self._strong * ew)
        return ok, key, np.sqrt(a2), dev, strong

    def _flat_index(self, hops: int, n: int, k: int) -> np.ndarray:
        """Flat index into y of window (h, r) of y[0:hops], shaped (hops, n)."""
        cached = self._flat_cache.get(n)
        if cached is None:
            cached = self._flat_cache[n] = (np.arange(hops * n) * k).reshape(hops, n)
        return cached

    # ---- talk-off guard: second harmonics, once per key ----------------------------------
    _GRID_HZ = 4.0                     # tone frequency grid for the harmonics test
    _GRID_STEPS = 11                   # +-44 Hz: beyond max_freq_dev of 1633 Hz
    _OCTAVE_HZ = 8.0                   # a high tone this close to twice the low one

    def _harmonic_tables(self, rate: int) -> None:
        """For one window: DFT rows of each tone on a 4 Hz grid around its nominal
        frequency and of its second harmonic; 450 Hz; and what each column tone and the
        dial tone leak into each row tone's harmonic bin (1336 Hz lies 58 Hz from
        2 x 697 Hz, for instance; every other leak is far below the test's limit)."""
        n = self._n
        self._hlimit = np.float32(10 ** (-self.params.max_harmonic_db / 20))
        t = self._t = np.arange(n)
        steps = np.arange(-self._GRID_STEPS, self._GRID_STEPS + 1) * self._GRID_HZ
        f = np.array(ROW_HZ + COL_HZ)[:, None] + steps                 # (8, grid)
        w = 2 * np.pi * f / rate
        both = np.stack([w, 2 * w], axis=2)                              # (8, grid, 2)
        ph = both[..., None] * t                                          # (8, grid, 2, n)
        tab = np.stack([np.cos(ph), -np.sin(ph)], axis=3)                 # (8, grid, 2, re/im, n)
        self._htab = tab.reshape(8 * f.shape[1], 4, n).astype(np.float32)
        w0 = 2 * np.pi * DIAL_HZ / rate
        self._dial_tab = np.stack([np.cos(w0 * t), -np.sin(w0 * t)], axis=1).astype(np.float32)
        hr = 2 * w[:4]                                                    # row harmonics
        self._leak_col = _dirichlet_mean(w[4:][None, None, :, :] - hr[:, :, None, None],
                                         n).astype(np.complex64).reshape(-1)   # (4, grid, 4, grid)
        self._key_tones = np.array([(k // 4, 4 + k % 4) for k in range(16)], dtype=np.intp)
        # A dial tone (often 20 dB and more above the key) leaks into every bin.
        self._leak_dial = _dirichlet_mean(w0 - both, n).astype(np.complex64).reshape(-1, 2)
        self._leak_dial_img = _dirichlet_mean(-w0 - both, n).astype(np.complex64).reshape(-1, 2)

    def _check_harmonics(self, rows: np.ndarray, pcm: np.ndarray, t0: int, hop: np.ndarray,
                         dev: np.ndarray) -> None:
        """Rows whose key was just accepted: neither tone may carry a second harmonic
        (a voice or an instrument does, a DTMF sender does not), measured at twice each
        tone's measured frequency, in window `hop` of this block (the key's strongest hit
        here: the leak corrections assume a window the tones fill)."""
        m, n, steps = rows.size, self._n, 2 * self._GRID_STEPS + 1
        buf = np.concatenate([self._tail[rows], pcm[rows]], axis=1,
                             dtype=np.float32)                    # (m, 80 + block)
        first = SUB * hop                                # window start in buf
        win = np.take(buf, (first + np.arange(m) * buf.shape[1])[:, None] + self._t)
        keys = self._state[self.CUR, rows].astype(np.intp)
        # Hit windows are within max_freq_dev, so the grid index stays in range.
        tg = self._key_tones[keys] * steps + (np.rint(dev * (1 / self._GRID_HZ)).astype(np.intp)
                                              + self._GRID_STEPS)       # (m, 2): tone, grid
        y = np.matmul(self._htab[tg].reshape(m, 8, n), win[:, :, None])
        y = y.reshape(m, 8).view(np.complex64).reshape(m, 2, 2)          # (m, tone, fund/harm)
        yd = (win @ self._dial_tab).view(np.complex64)[:, :, None]       # (m, 1, 1)
        y -= yd * self._leak_dial[tg] + np.conj(yd) * self._leak_dial_img[tg]
        y[:, 0, 1] -= y[:, 1, 0] * self._leak_col[tg[:, 0] * (4 * steps) + tg[:, 1] - 4 * steps]
        y = np.abs(y)
        ok = (y[:, 0, 1] <= self._hlimit * y[:, 0, 0]) & (y[:, 1, 1] <= self._hlimit * y[:, 1, 0])
        # Two notes an octave apart: the upper one is the lower one's second harmonic, so
        # the test above cannot see it. No key within 1.5 % comes within 17 Hz of that
        # (10 Hz as measured, the low tone's jitter doubled).
        f = self._fhz[self._key_tones[keys]] + dev                        # (m, 2) Hz
        ok &= np.abs(f[:, 1] - 2 * f[:, 0]) >= self._OCTAVE_HZ
        bad = rows[~ok]
        self.keydown[bad] = False
        self._state[self.BAD, bad] = 1

    # ---- the key state machine ------------------------------------------------------
    # Per row: IDLE (cur = -1) -> KEY (cur = k; hits counted, gap = windows since the last
    # hit) -> DOWN (at least min_hits hits over an estimated tone of min_tone_ms or more,
    # and no second harmonics) -> key-up reported when another key's hit arrives or the
    # gap reaches end_gap_hops. A KEY that fails the harmonics test stays BAD until it ends.
    # The per-row state is one float64 matrix, a row per field (below), a column per
    # channel row: one gather and one scatter per block.
    (CUR, GAP, NHIT, AMAX, S_FIRST, A_FIRST, S_LAST, A_LAST, BAD, STRONG,
     PREV_KEY, PREV_AMP, PREV_AT) = range(13)

    def _track(self, rows, hit, key, amp, strong, t0) -> None:
        """Advance `rows` through this block's windows, a whole block at a time.

        Rows whose hits in this block are all one key (nearly all of them) take the
        vectorised block step; the rare rows with two keys in one block take hop steps.
        """
        hops = self._hops
        f = hit.argmax(axis=0)                           # first hit (0 if none)
        col = np.arange(rows.size)
        kf = key[f, col]
        mixed = (hit & (key != kf)).any(axis=0)
        # (Between two hits of a pass a gap cannot run out while hops <= end_gap_hops + 1.)
        if mixed.any() or hops > self.params.end_gap_hops + 1:
            if hops > self.params.end_gap_hops + 1:
                mixed[:] = True
            sel = np.flatnonzero(mixed)
            self._track_hops(rows[sel], hit[:, sel], key[:, sel], amp[:, sel], strong[:, sel],
                             t0)
            keep = ~mixed
            if not keep.any():
                return
            rows, hit, key, amp = rows[keep], hit[:, keep], key[:, keep], amp[:, keep]
            strong = strong[:, keep]
            f, kf = f[keep], kf[keep]
            col = np.arange(rows.size)
        st = self._state[:, rows]
        cur, gap, bad = st[self.CUR], st[self.GAP], st[self.BAD]
        down = self.keydown[rows]
        nh = hit.sum(axis=0)
        none = nh == 0
        any_hit = ~none
        # A key's edges are measured on the windows next to its first and last hits when
        # they show the same key (too little of the tone for a hit, enough to measure):
        # here the window after a last hit that ended the block before.
        was_on = (gap == 0) & (cur >= 0) & ~hit[0]
        if was_on.any():
            soft = was_on & (key[0] == cur)
            np.copyto(st[self.S_LAST], t0 + SUB * (1 - SPAN), where=soft)
            np.copyto(st[self.A_LAST], amp[0], where=soft)
        # 1. The tracked key ends: its gap runs out before this block's first hit (or at
        #    all, without hits), or another key hits.
        until = f + 1 + (hops - 1) * none                 # windows up to the first hit
        ended = (cur >= 0) & ((gap + until >= self.params.end_gap_hops)
                              | (any_hit & (kf != cur)))
        if ended.any():
            done = np.flatnonzero(ended & down)
            if done.size:
                self._ended.append((rows[done], st[:, done]))
            cur[ended] = -1
            down &= ~ended
        gap += hops
        if any_hit.any():
            # 2. A new key starts at its first hit; 3. the tracked key goes on.
            new = any_hit & (cur < 0)
            old = ~new
            back = hit[::-1].argmax(axis=0)                # windows after the last hit
            last = hops - 1 - back
            st[self.NHIT] *= old
            st[self.NHIT] += nh
            st[self.STRONG] *= old
            st[self.STRONG] += strong.any(axis=0)
            st[self.AMAX] *= old
            np.maximum(st[self.AMAX], (hit * amp).max(axis=0), out=st[self.AMAX])
            # First: the window before the first hit if it shows the key, else the hit.
            # (The last window of the block before is known if the row was analysed then.)
            prev_key = np.where(st[self.PREV_AT] == t0 - self._dft.block, st[self.PREV_KEY], -1)
            pre_key = np.where(f > 0, key[f - 1, col], prev_key)
            pre_amp = np.where(f > 0, amp[f - 1, col], st[self.PREV_AMP])
            pre = new & (pre_key == kf)
            np.copyto(st[self.S_FIRST], t0 + SUB * (f - SPAN + 1 - pre), where=new)
            np.copyto(st[self.A_FIRST], np.where(pre, pre_amp, amp[f, col]), where=new)
            # Last: the window after the last hit likewise (in the next block if need be).
            nxt = np.minimum(last + 1, hops - 1)
            post = (back > 0) & (key[nxt, col] == kf)
            np.copyto(st[self.S_LAST], t0 + SUB * (last - SPAN + 1 + post), where=any_hit)
            np.copyto(st[self.A_LAST], np.where(post, amp[nxt, col], amp[last, col]),
                      where=any_hit)
            np.copyto(cur, kf, where=new)
            np.copyto(bad, 0.0, where=new)
            np.copyto(gap, back, where=any_hit)
            down |= any_hit & (bad == 0) & self._long_enough(st)
        st[self.PREV_KEY] = key[hops - 1]
        st[self.PREV_AMP] = amp[hops - 1]
        st[self.PREV_AT] = t0
        self._state[:, rows] = st
        self.keydown[rows] = down

    def _long_enough(self, st: np.ndarray) -> np.ndarray:
        """Enough hits, a strong one, and the tone estimated from its edge windows long
        enough (span = estimated length + n; an edge window measures the share of it the
        tone covers, at most 1)."""
        n = self._n
        span = st[self.S_LAST] - st[self.S_FIRST]
        span += (np.minimum(st[self.A_FIRST], st[self.AMAX])
                 + np.minimum(st[self.A_LAST], st[self.AMAX])) * (n / st[self.AMAX])
        return ((st[self.NHIT] >= self.params.min_hits) & (span >= self._min_span)
                & (st[self.STRONG] > 0))

    def _track_hops(self, rows, hit, key, amp, strong, t0) -> None:
        """The same state machine, one window at a time (rows with two keys in a block)."""
        p = self.params
        st = self._state[:, rows]
        cur, gap, bad = st[self.CUR], st[self.GAP], st[self.BAD]
        down = self.keydown[rows]
        for h in range(self._hops):
            v, k, a = hit[h], key[h], amp[h]
            s = t0 + SUB * (h - SPAN + 1)                     # this window's start sample
            match = v & (k == cur)
            other = v & ~match
            gap += 1
            gap[match] = 0
            ended = (cur >= 0) & (other | (gap >= p.end_gap_hops))
            if ended.any():
                done = np.flatnonzero(ended & down)
                if done.size:
                    self._ended.append((rows[done], st[:, done]))
                cur[ended] = -1
                down[ended] = False
            if other.any():                                   # a new key starts
                cur[other] = k[other]
                gap[other] = 0
                bad[other] = 0
                st[self.NHIT, other] = 0
                st[self.STRONG, other] = 0
                st[self.AMAX, other] = a[other]
                st[self.S_FIRST, other] = s
                st[self.A_FIRST, other] = a[other]
            hitnow = match | other
            st[self.NHIT, hitnow] += 1
            st[self.STRONG, hitnow & strong[h]] = 1
            st[self.AMAX] = np.maximum(st[self.AMAX], np.where(hitnow, a, 0))
            st[self.S_LAST, hitnow] = s
            st[self.A_LAST, hitnow] = a[hitnow]
            down |= hitnow & (bad == 0) & self._long_enough(st)
        self._state[:, rows] = st
        self.keydown[rows] = down

    def _emit(self, events: list) -> None:
        """Report the keys that went up in this block (collected in self._ended)."""
        if len(self._ended) == 1:
            rows, st = self._ended[0]
        else:
            rows = np.concatenate([r for r, _ in self._ended])
            st = np.concatenate([c for _, c in self._ended], axis=1)
        self._ended.clear()
        # An edge window covering a share c of the tone measures c times its amplitude.
        # The length is checked once more on the final edges: a voice that looked long
        # enough while its level rose can fall short at the end (a steady key does not).
        n, amax = self._n, st[self.AMAX]
        start = np.rint(st[self.S_FIRST] + n * (1.0 - np.minimum(st[self.A_FIRST] / amax, 1.0)))
        end = np.rint(st[self.S_LAST] + n * np.minimum(st[self.A_LAST] / amax, 1.0))
        length = end - start
        for r, k, s0, du, ok in zip(rows.tolist(), st[self.CUR].astype(int).tolist(),
                                    start.astype(np.int64).tolist(),
                                    length.astype(np.int64).tolist(),
                                    (length >= self._min_len).tolist()):
            if ok:
                events.append(DtmfDigit(r, KEYS[k], s0, du))

    def reset(self, row: int) -> None:
        """Forget everything about `row` (a new call on the channel)."""
        if not 0 <= row < self.rows:
            raise IndexError(f"row {row} out of range 0..{self.rows - 1}")
        self._dft.reset(row)
        self._buf[row] = 0.0
        self._tail[row] = 0.0
        self._state[:, row] = self._idle
        self.keydown[row] = False


def detect_digits(pcm: np.ndarray, rate: int = RATE, params: DtmfParams | None = None
                  ) -> list[DtmfDigit]:
    """All digits in a mono recording (row 0; start counted from the first sample)."""
    _check_rate(rate)
    pcm = np.asarray(pcm)
    if pcm.ndim != 1:
        raise ValueError(f"detect_digits expects mono audio (1-D), got shape {pcm.shape}")
    det = DtmfDetector(1, rate, params=params)
    block = det.block
    # Enough trailing silence for the last key to go up, in whole analysis passes.
    tail = SUB * (det.params.end_gap_hops + SPAN + 1) + block * det._every
    total = -(-(pcm.size + tail) // block) * block
    padded = np.zeros(total, dtype=np.float32)
    padded[:pcm.size] = pcm
    out: list[DtmfDigit] = []
    for i in range(0, total, block):
        out.extend(det.process(padded[i:i + block].reshape(1, block)))
    return out


def key_frequencies(digit: str) -> tuple[float, float]:
    """(low, high) group frequencies of a key: 0-9 * # A-D."""
    d = digit.upper()
    if len(d) != 1 or d not in KEYS:
        raise ValueError(f"not a DTMF key: {digit!r} (keys are 0-9 * # A-D)")
    i = KEYS.index(d)
    return ROW_HZ[i // 4], COL_HZ[i % 4]


def dtmf_tone(digits: str, on_ms: float = 100, off_ms: float = 100,
              level_dbm0: float | tuple[float, float] = (-9.0, -11.0),
              rate: int = RATE) -> np.ndarray:
    """int16 audio of `digits`, each `on_ms` of tone followed by `off_ms` of silence.

    `level_dbm0` is the (low group, high group) level per tone, or one level for both;
    the defaults are DAHDI's "cn" zone.
    """
    if isinstance(level_dbm0, (int, float)):
        low_db = high_db = float(level_dbm0)
    else:
        low_db, high_db = (float(v) for v in level_dbm0)
    if on_ms < 0 or off_ms < 0:
        raise ValueError(f"on_ms and off_ms must be >= 0, got {on_ms} and {off_ms}")
    pairs = [key_frequencies(d) for d in digits]
    n_on, n_off = int(round(on_ms * rate / 1000)), int(round(off_ms * rate / 1000))
    t = np.arange(n_on) / rate
    out = np.zeros(len(pairs) * (n_on + n_off), dtype=np.float64)
    a_lo, a_hi = dbm0_to_peak(low_db), dbm0_to_peak(high_db)
    for i, (f_lo, f_hi) in enumerate(pairs):
        at = i * (n_on + n_off)
        out[at:at + n_on] = (a_lo * np.sin(2 * np.pi * f_lo * t)
                             + a_hi * np.sin(2 * np.pi * f_hi * t))
    return np.clip(np.round(out), -32768, 32767).astype(np.int16)
