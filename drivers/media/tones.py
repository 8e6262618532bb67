"""Call-progress tones: tone plans, a batched generator and a batched cadence detector.

A tone plan (TOML, package data in ``drivers/media/plans/``; China ``cn`` first) lists, per
tone, its frequencies, cadence and level. ``ToneGenerator`` plays plan tones on many rows at
once, phase-continuous and with the cadence followed to the sample. ``ToneDetector`` tells
the plan's tones apart by frequency and cadence, on every enabled row in one pass per tick.

Detection, per tick (one block, 20 ms by default), for every enabled row:

1. Energy at each plan frequency by a matrix DFT over the block (one matrix product for all
   enabled rows). A *band* is the frequency set of one or more tones (China: 450 Hz holds
   dial, busy, ringback, congestion, call waiting and info; 950 Hz record; 1100 Hz CNG;
   2100 Hz CED). A band is *on* in a block when its components carry at least
   ``PURITY`` of the block's energy, every component is present and the level is at
   least the plan's ``min_level_dbm0``. Speech and DTMF spread their energy, so they
   rarely pass the purity test, and never for a whole cadence.
2. On/off segmentation with a ``DEBOUNCE``-block hysteresis (a one-block dropout is
   bridged); segment edges are dated to the first block of the change.
3. Cadence matching on the few (row, band) pairs where a segment ended or a duration
   threshold was crossed. A cadence element of nominal ``d`` ms matches an observed
   segment within ``max(tolerance_pct% of d, tolerance_ms)`` (plan ``[detect]``; 20% or
   60 ms: the 60 ms floor covers the +-20 ms block quantisation of each edge). A tone is
   reported when its last ``confirm`` cadence elements matched (default: a full cycle
   plus the next on-period; busy 350/350 is thus reported at the end of its second
   burst, ~1.1 s after it starts) and no other enabled tone of that band could still
   match. A continuous tone (dial, CED) is reported once it has lasted ``min_ms`` *and*
   longer than any enabled cadenced tone's on-period of the same band could last: dial
   alone is reported after 300 ms; with ringback also enabled, after ~1.2 s. A burst
   already under way when detection is enabled counts if what is left of it still fits.
4. Each detection is reported once per occurrence: the tone stays latched while its
   cadence goes on and is re-armed when it stops (a pause longer than the cadence allows)
   or changes.

Event sample numbers count samples given to ``process`` (plus ``sample0``): an event's
``sample`` is the end of the block in which the decision was made.
"""
from __future__ import annotations

import bisect
import dataclasses
import math
import os
import tomllib
from importlib import resources
from pathlib import Path
from typing import Iterable

import numpy as np

from drivers.media.levels import dbm0_to_peak, dbm0_to_rms

PLAN_PACKAGE = "drivers.media.plans"
DEFAULT_PLAN = "cn"

# ITU fax tones: the same in every country, added to any plan that does not define them.
# CNG (T.30): 1100 Hz, 0.5 s on, 3 s off, reported on its first validated burst.
# CED (V.25 answer tone): 2100 Hz steady, reported after 500 ms.
FAX_TONES = {
    "cng": {"freqs": [1100], "cadence_ms": [500, 3000], "level_dbm0": -13.0, "confirm": 1},
    "ced": {"freqs": [2100], "cadence_ms": [], "level_dbm0": -13.0, "min_ms": 500},
}

PURITY = 0.75          # share of block energy a band must hold to count as on
COMPONENT_SHARE = 0.2  # each component of a dual tone holds at least this share of the band
DEBOUNCE = 2           # blocks of the opposite decision before a band changes state
_NEVER = np.iinfo(np.int64).max


class TonePlanError(ValueError):
    """A tone plan that cannot be used; the message names the file and the key."""


@dataclasses.dataclass(frozen=True)
class ToneSpec:
    name: str
    freqs: tuple[float, ...]
    cadence_ms: tuple[int, ...]            # on, off, on, off...; () = continuous
    level_dbm0: tuple[float, ...]          # one per frequency
    confirm: int | None = None             # cadence elements to match before reporting
    min_ms: int | None = None              # continuous tones: duration before reporting

    @property
    def continuous(self) -> bool:
        return not self.cadence_ms

    @property
    def confirm_elements(self) -> int:
        if self.confirm is not None:
            return self.confirm
        return len(self.cadence_ms) + 1


@dataclasses.dataclass(frozen=True)
class TonePlan:
    name: str
    description: str
    tones: dict[str, ToneSpec]
    ring_cadence_ms: tuple[int, ...]
    tolerance_pct: float = 20.0
    tolerance_ms: float = 60.0
    min_level_dbm0: float = -42.0
    source: str = "<dict>"

    def __getitem__(self, name: str) -> ToneSpec:
        try:
            return self.tones[name]
        except KeyError:
            raise KeyError(f"tone plan {self.name!r} has no tone {name!r}; "
                           f"it has {sorted(self.tones)}") from None

    def __contains__(self, name: object) -> bool:
        return name in self.tones

    def names(self) -> list[str]:
        return list(self.tones)

    @staticmethod
    def available() -> list[str]:
        """Names of the plans shipped as package data."""
        return sorted(p.name[:-5] for p in _plan_dir().iterdir() if p.name.endswith(".toml"))

    @classmethod
    def load(cls, name_or_path: str | os.PathLike) -> "TonePlan":
        """A shipped plan by name (``"cn"``, ``"us"``, ``"etsi"``) or a TOML file by path."""
        text = str(name_or_path)
        if isinstance(name_or_path, os.PathLike) or os.sep in text or text.endswith(".toml"):
            path = Path(text)
        else:
            path = _plan_dir() / f"{text}.toml"
            if not path.is_file():
                raise TonePlanError(f"unknown tone plan {text!r}; shipped plans are "
                                    f"{cls.available()} (or give a path to a .toml file)")
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except OSError as e:
            raise TonePlanError(f"{path}: cannot read tone plan: {e.strerror or e}") from None
        except tomllib.TOMLDecodeError as e:
            raise TonePlanError(f"{path}: not valid TOML: {e}") from None
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: dict, source: str = "<dict>") -> "TonePlan":
        return _parse_plan(data, source)


def _plan_dir():
    try:
        return resources.files(PLAN_PACKAGE)
    except ModuleNotFoundError:        # running from a tree where plans/ is not a package
        return Path(__file__).with_name("plans")


# ---- plan parsing: every complaint names the file and the key ------------------------------
def _fail(source: str, key: str, what: str):
    raise TonePlanError(f"{source}: {key}: {what}")


def _number(source, key, value, lo=None, hi=None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        _fail(source, key, f"expected a number, got {value!r}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        _fail(source, key, f"{value!r} is outside {lo}..{hi}")
    return float(value)


def _parse_tone(source: str, name: str, t, rate: int) -> ToneSpec:
    key = f"tones.{name}"
    if not isinstance(t, dict):
        _fail(source, key, "expected a table")
    unknown = set(t) - {"freqs", "cadence_ms", "level_dbm0", "confirm", "min_ms"}
    if unknown:
        _fail(source, f"{key}.{sorted(unknown)[0]}", "unknown key (expected freqs, "
              "cadence_ms, level_dbm0, confirm, min_ms)")
    if "freqs" not in t:
        _fail(source, f"{key}.freqs", "missing")
    freqs = t["freqs"]
    if not isinstance(freqs, list) or not 1 <= len(freqs) <= 4:
        _fail(source, f"{key}.freqs", f"expected a list of 1 to 4 frequencies, got {freqs!r}")
    freqs = tuple(_number(source, f"{key}.freqs", f, 20, rate / 2 - 100) for f in freqs)
    cadence = t.get("cadence_ms", [])
    if not isinstance(cadence, list) or len(cadence) % 2:
        _fail(source, f"{key}.cadence_ms",
              f"expected an even-length list (on, off, ...) or [] for continuous, got {cadence!r}")
    for c in cadence:
        if isinstance(c, bool) or not isinstance(c, int) or c <= 0:
            _fail(source, f"{key}.cadence_ms", f"durations must be positive integers (ms), got {c!r}")
    if "level_dbm0" not in t:
        _fail(source, f"{key}.level_dbm0", "missing")
    level = t["level_dbm0"]
    levels = level if isinstance(level, list) else [level] * len(freqs)
    if len(levels) != len(freqs):
        _fail(source, f"{key}.level_dbm0", f"expected one level or {len(freqs)}, got {level!r}")
    levels = tuple(_number(source, f"{key}.level_dbm0", v, -60, 3) for v in levels)
    confirm = t.get("confirm")
    if confirm is not None:
        if isinstance(confirm, bool) or not isinstance(confirm, int) or confirm < 1:
            _fail(source, f"{key}.confirm", f"expected a positive integer, got {confirm!r}")
        if not cadence:
            _fail(source, f"{key}.confirm", "only for tones with a cadence (use min_ms)")
    min_ms = t.get("min_ms")
    if min_ms is not None:
        if isinstance(min_ms, bool) or not isinstance(min_ms, int) or min_ms < 40:
            _fail(source, f"{key}.min_ms", f"expected an integer >= 40, got {min_ms!r}")
        if cadence:
            _fail(source, f"{key}.min_ms", "only for continuous tones (use confirm)")
    return ToneSpec(name, freqs, tuple(cadence), levels, confirm, min_ms)


def _parse_plan(data, source: str, rate: int = 8000) -> TonePlan:
    if not isinstance(data, dict):
        _fail(source, "<top>", "expected a table")
    name = data.get("name")
    if not isinstance(name, str) or not name:
        _fail(source, "name", f"expected a non-empty string, got {name!r}")
    ring = data.get("ring_cadence_ms", [1000, 4000])
    if (not isinstance(ring, list) or not ring or len(ring) % 2
            or any(isinstance(r, bool) or not isinstance(r, int) or r <= 0 for r in ring)):
        _fail(source, "ring_cadence_ms", f"expected an even-length list of positive ms, got {ring!r}")
    det = data.get("detect", {})
    if not isinstance(det, dict):
        _fail(source, "detect", "expected a table")
    unknown = set(det) - {"tolerance_pct", "tolerance_ms", "min_level_dbm0"}
    if unknown:
        _fail(source, f"detect.{sorted(unknown)[0]}", "unknown key")
    tol_pct = _number(source, "detect.tolerance_pct", det.get("tolerance_pct", 20.0), 0, 50)
    tol_ms = _number(source, "detect.tolerance_ms", det.get("tolerance_ms", 60.0), 0, 500)
    min_level = _number(source, "detect.min_level_dbm0", det.get("min_level_dbm0", -42.0), -70, 0)
    raw = data.get("tones")
    if not isinstance(raw, dict) or not raw:
        _fail(source, "tones", "expected a table of tones ([tones.<name>])")
    unknown = set(data) - {"name", "description", "ring_cadence_ms", "detect", "tones"}
    if unknown:
        _fail(source, sorted(unknown)[0], "unknown key")
    tones = {n: _parse_tone(source, n, t, rate) for n, t in raw.items()}
    for n, t in FAX_TONES.items():
        tones.setdefault(n, _parse_tone("<built-in>", n, t, rate))
    return TonePlan(name, str(data.get("description", "")), tones, tuple(ring),
                    tol_pct, tol_ms, min_level, source)


def _as_plan(plan: TonePlan | str | os.PathLike) -> TonePlan:
    return plan if isinstance(plan, TonePlan) else TonePlan.load(plan)


# ---- generator ------------------------------------------------------------------------------
def _run_left(gate: np.ndarray) -> np.ndarray:
    """For each position of a cadence gate: samples until its value changes."""
    if len(gate) == 1:
        return np.array([np.iinfo(np.int64).max // 2], dtype=np.int64)
    edges = np.flatnonzero(np.diff(gate.astype(np.int8))) + 1
    ends = np.concatenate([edges, [len(gate)]])
    run_end = np.repeat(ends, np.diff(np.concatenate([[0], ends])))
    return run_end - np.arange(len(gate))


class ToneGenerator:
    """Plays plan tones on rows: ``start(row, name)``, ``stop(row)``, ``generate()`` per tick.

    Each row runs its tone's oscillators from phase 0 at ``start`` and keeps them running
    through the cadence's off-periods, so the output is phase-continuous across ticks and the
    cadence edges fall on exact sample counts (1000/4000 ms = 8,000/32,000 samples at 8 kHz).
    """

    def __init__(self, rows: int, plan: TonePlan | str = DEFAULT_PLAN, block: int = 160,
                 rate: int = 8000):
        self.rows, self.block, self.rate = rows, block, rate
        self.plan = _as_plan(plan)
        names = self.plan.names()
        self._index = {n: i for i, n in enumerate(names)}
        nf = max(len(self.plan[n].freqs) for n in names)
        self._dphi = np.zeros((len(names), nf))
        self._amp = np.zeros((len(names), nf))
        self._cycle = np.ones(len(names), dtype=np.int64)
        self._gate_at = np.zeros(len(names), dtype=np.int64)
        gates = []
        at = 0
        for i, n in enumerate(names):
            spec = self.plan[n]
            for k, (f, lvl) in enumerate(zip(spec.freqs, spec.level_dbm0)):
                self._dphi[i, k] = 2 * math.pi * f / rate
                self._amp[i, k] = dbm0_to_peak(lvl)
            if spec.cadence_ms:
                lengths = [round(ms * rate / 1000) for ms in spec.cadence_ms]
                gate = np.concatenate([np.full(m, k % 2 == 0) for k, m in enumerate(lengths)])
            else:
                gate = np.ones(1, dtype=bool)
            self._cycle[i] = len(gate)
            self._gate_at[i] = at
            at += len(gate)
            gates.append(gate)
        self._gate = np.concatenate(gates)
        # samples left before the gate changes, from each position (a block that ends
        # before the next edge is gated as a whole)
        self._left = np.concatenate([_run_left(g) for g in gates])
        n = np.arange(block)
        self._cos_n = np.cos(self._dphi[:, :, None] * n)      # (tones, nf, block)
        self._sin_n = np.sin(self._dphi[:, :, None] * n)
        self.active = np.zeros(rows, dtype=bool)
        self.tone = np.zeros(rows, dtype=np.int64)
        self._phase = np.zeros((rows, nf))
        self._pos = np.zeros(rows, dtype=np.int64)
        self._n = np.arange(block)

    def start(self, row: int, name: str) -> None:
        if name not in self._index:
            raise KeyError(f"tone plan {self.plan.name!r} has no tone {name!r}; "
                           f"it has {self.plan.names()}")
        self._check_row(row)
        self.tone[row] = self._index[name]
        self._phase[row] = 0.0
        self._pos[row] = 0
        self.active[row] = True

    def stop(self, row: int) -> None:
        self._check_row(row)
        self.active[row] = False

    def playing(self, row: int) -> str | None:
        return self.plan.names()[self.tone[row]] if self.active[row] else None

    def generate(self) -> np.ndarray:
        out = np.zeros((self.rows, self.block), dtype=np.float32)
        idx = np.flatnonzero(self.active)
        if idx.size == 0:
            return out
        tones = self.tone[idx]
        for t in np.unique(tones):                    # a few distinct tones, many rows each
            r = idx[tones == t]
            ph = self._phase[r]                                   # (k, nf) at block start
            amp = self._amp[t]
            # sin(ph + w n) = sin(ph) cos(w n) + cos(ph) sin(w n): two small matrix products
            wave = (np.sin(ph) * amp) @ self._cos_n[t] + (np.cos(ph) * amp) @ self._sin_n[t]
            cycle = self._cycle[t]
            if cycle > 1:
                pos = self._pos[r]
                at = self._gate_at[t] + pos
                whole = self._left[at] >= self.block
                wave[whole & ~self._gate[at]] = 0.0              # inside a pause
                edge = np.flatnonzero(~whole)                     # a cadence edge inside
                if edge.size:
                    p = (pos[edge][:, None] + self._n) % cycle
                    wave[edge] *= self._gate[self._gate_at[t] + p]
                self._pos[r] = (pos + self.block) % cycle
            out[r] = wave
            self._phase[r] = np.mod(ph + self._dphi[t] * self.block, 2 * math.pi)
        return out

    def _check_row(self, row: int) -> None:
        if not 0 <= row < self.rows:
            raise IndexError(f"row {row} out of range 0..{self.rows - 1}")


# ---- detector -------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ToneEvent:
    row: int
    tone: str
    sample: int


@dataclasses.dataclass(frozen=True)
class _Element:
    lo: int            # samples
    hi: int


class _Band:
    """The tones sharing one frequency set, with their cadences in samples."""

    def __init__(self, freqs: tuple[float, ...], freq_idx: list[int]):
        self.freqs = freqs
        self.freq_idx = freq_idx
        self.tones: list[int] = []                 # indices into ToneDetector._specs


class ToneDetector:
    """Batched call-progress tone detector (see the module docstring for the method)."""

    def __init__(self, rows: int, plan: TonePlan | str = DEFAULT_PLAN, block: int = 160,
                 rate: int = 8000, sample0: int = 0):
        self.rows, self.block, self.rate = rows, block, rate
        self.plan = _as_plan(plan)
        self.sample = sample0
        self._specs = [self.plan[n] for n in self.plan.names()]
        self._tone_index = {s.name: i for i, s in enumerate(self._specs)}
        freqs = sorted({f for s in self._specs for f in s.freqs})
        fidx = {f: i for i, f in enumerate(freqs)}
        n = np.arange(block)
        w = 2 * np.pi * np.outer(n, freqs) / rate
        self._dft = np.concatenate([np.cos(w), np.sin(w)], axis=1)          # (block, 2F)
        self._nfreq = len(freqs)
        bands: dict[tuple[float, ...], _Band] = {}
        self._band_of = []
        for i, s in enumerate(self._specs):
            key = tuple(sorted(s.freqs))
            if key not in bands:
                bands[key] = _Band(key, [fidx[f] for f in key])
            bands[key].tones.append(i)
            self._band_of.append(list(bands).index(key))
        self._bands = list(bands.values())
        nb = len(self._bands)
        # band membership matrix: freq power (F) -> band power (B)
        self._member = np.zeros((self._nfreq, nb))
        for b, band in enumerate(self._bands):
            self._member[band.freq_idx, b] = 1.0
        self._ncomp = self._member.sum(axis=0)
        # cadences in samples with tolerance
        ms = rate / 1000
        self._elements: list[list[_Element]] = []
        self._min_samples: list[int] = []
        for s in self._specs:
            els = []
            for d in s.cadence_ms:
                tol = max(d * self.plan.tolerance_pct / 100, self.plan.tolerance_ms)
                els.append(_Element(int((d - tol) * ms), int(math.ceil((d + tol) * ms))))
            self._elements.append(els)
            self._min_samples.append(int((s.min_ms or 0) * ms))
        # detection thresholds on the block's normalised power
        self._min_power = (dbm0_to_rms(self.plan.min_level_dbm0) ** 2) * block
        # per-row state
        self.enabled = np.zeros(rows, dtype=bool)
        self._mask = np.zeros((rows, len(self._specs)), dtype=bool)     # enabled tones
        self._band_used = np.zeros((rows, nb), dtype=bool)
        self.on = np.zeros((rows, nb), dtype=bool)          # debounced band state
        self.tonal = np.zeros(rows, dtype=bool)             # last block held a plan tone
        self._pend = np.zeros((rows, nb), dtype=np.int64)
        self._seg_start = np.zeros((rows, nb), dtype=np.int64)
        self._enabled_at = np.zeros(rows, dtype=np.int64)
        self._next_check = np.full((rows, nb), _NEVER, dtype=np.int64)
        self._row_tones: list[list[tuple[int, ...]]] = [[()] * nb for _ in range(rows)]
        self._bounds_cache: dict[tuple[tuple[int, ...], bool], list[int]] = {}
        self._latched = np.full((rows, nb), -1, dtype=np.int64)
        self._hist: dict[tuple[int, int], list[tuple[bool, int, bool]]] = {}
        self._confirm = [s.confirm_elements for s in self._specs]
        self._keep = max((s.confirm_elements for s in self._specs if s.cadence_ms), default=1) + 1

    # -- control
    def enable(self, row: int, names: Iterable[str] | None = None) -> None:
        """Start detecting on `row`: all plan tones, or only `names`."""
        if not 0 <= row < self.rows:
            raise IndexError(f"row {row} out of range 0..{self.rows - 1}")
        wanted = self.plan.names() if names is None else list(names)
        unknown = [n for n in wanted if n not in self._tone_index]
        if unknown:
            raise KeyError(f"tone plan {self.plan.name!r} has no tone {unknown[0]!r}; "
                           f"it has {self.plan.names()}")
        self._mask[row] = False
        for n in wanted:
            self._mask[row, self._tone_index[n]] = True
        self._band_used[row] = False
        for i in np.flatnonzero(self._mask[row]):
            self._band_used[row, self._band_of[i]] = True
        self._row_tones[row] = [tuple(t for t in bd.tones if self._mask[row, t])
                                for bd in self._bands]
        self._reset_row(row)
        self.enabled[row] = True

    def disable(self, row: int) -> None:
        if not 0 <= row < self.rows:
            raise IndexError(f"row {row} out of range 0..{self.rows - 1}")
        self.enabled[row] = False
        self._reset_row(row)

    def tone_on(self, name: str) -> np.ndarray:
        """Bool per row: the band of tone `name` is on now (debounced; any cadence)."""
        return self.on[:, self._band_of[self._tone_index[name]]] & self.enabled

    def _reset_row(self, row: int) -> None:
        self.on[row] = False
        self.tonal[row] = False
        self._pend[row] = 0
        self._seg_start[row] = self.sample
        self._enabled_at[row] = self.sample
        self._next_check[row] = _NEVER
        self._latched[row] = -1
        for b in range(len(self._bands)):
            self._hist.pop((row, b), None)

    # -- per tick
    def band_power(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For blocks `x` (k, block): band powers (k, B), component ok (k, B), block energy (k,)."""
        y = x @ self._dft
        p = y[:, :self._nfreq] ** 2 + y[:, self._nfreq:] ** 2        # |X(f)|^2
        p *= 2.0 / self.block                  # a sine of peak A gives A^2 N / 2 = its energy
        band = p @ self._member
        energy = np.einsum("kn,kn->k", x, x)
        # every component of a multi-frequency band holds its share of the band
        comp_ok = np.ones(band.shape, dtype=bool)
        for b, bd in enumerate(self._bands):
            if len(bd.freq_idx) > 1:
                comp_ok[:, b] = (p[:, bd.freq_idx] >= COMPONENT_SHARE * band[:, b:b + 1]).all(axis=1)
        return band, comp_ok, energy

    def process(self, pcm: np.ndarray) -> list[ToneEvent]:
        pcm = np.asarray(pcm)
        if pcm.shape != (self.rows, self.block):
            raise ValueError(f"tone detector expects pcm of shape {(self.rows, self.block)}, "
                             f"got {pcm.shape}")
        start = self.sample
        self.sample += self.block
        idx = np.flatnonzero(self.enabled)
        if idx.size == 0:
            return []
        x = pcm[idx].astype(np.float64)
        band, comp_ok, energy = self.band_power(x)
        raw = (band >= PURITY * energy[:, None]) & (band >= self._min_power) & comp_ok
        self.tonal[idx] = raw.any(axis=1)          # any plan tone, enabled or not
        raw &= self._band_used[idx]
        on = self.on[idx]
        pend = np.where(raw != on, self._pend[idx] + 1, 0)
        flip = pend >= DEBOUNCE
        self._pend[idx] = np.where(flip, 0, pend)
        now = self.sample
        check = flip | (now >= self._next_check[idx])
        events: list[ToneEvent] = []
        if not check.any():
            return events
        edge = start - (DEBOUNCE - 1) * self.block          # first block of the change
        for k, b in zip(*np.nonzero(check)):
            row = int(idx[k])
            if flip[k, b]:
                self._segment_ended(row, b, edge)
            tone = self._evaluate(row, b, now)
            if tone is not None:
                events.append(ToneEvent(row, self._specs[tone].name, now))
        return events

    # -- segmentation and cadence matching (only on the few (row, band) pairs that changed)
    def _segment_ended(self, row: int, b: int, edge: int) -> None:
        was_on = bool(self.on[row, b])
        start = int(self._seg_start[row, b])
        hist = self._hist.setdefault((row, b), [])
        truncated = start == self._enabled_at[row]
        if was_on or hist:                     # history starts with an on-segment
            hist.append((was_on, edge - start, bool(truncated)))
            if len(hist) > self._keep:
                del hist[0]
        self.on[row, b] = not was_on
        self._seg_start[row, b] = edge

    def _status(self, tone: int, hist, on: bool, elapsed: int, trunc: bool) -> tuple[bool, bool, float]:
        """(consistent, confirmed, misfit) of one tone against a band's recent segments."""
        els = self._elements[tone]
        if not els:                              # continuous
            return on, on and elapsed >= self._min_samples[tone], 0.0
        m = len(els)
        need = self._confirm[tone]
        window = hist[-need:]
        if window and not window[0][0]:          # evidence always starts with a burst
            window = hist[-need - 1:]
        first_on = window[0][0] if window else on
        best = None
        for j in range(0 if first_on else 1, m, 2):
            count, misfit, ok = 0, 0.0, True
            for i, (seg_on, dur, seg_trunc) in enumerate(window):
                el = els[(j + i) % m]
                if dur > el.hi or (dur < el.lo and not seg_trunc):
                    ok = False
                    break
                if dur >= el.lo:              # (a cut-off first segment may be short)
                    count += 1
                    nominal = (el.lo + el.hi) / 2
                    misfit += abs(dur - nominal) / nominal
            if not ok:
                continue
            el = els[(j + len(window)) % m]
            if elapsed > el.hi:
                continue
            if not on and elapsed >= el.lo and not trunc:
                count += 1                    # a pause already long enough counts
            if best is None or count > best[0] or (count == best[0] and misfit < best[1]):
                best = (count, misfit)
        if best is None:
            return False, False, 0.0
        return True, best[0] >= need, best[1]

    def _evaluate(self, row: int, b: int, now: int) -> int | None:
        hist = self._hist.get((row, b), [])
        on = bool(self.on[row, b])
        start = int(self._seg_start[row, b])
        elapsed = now - start
        trunc = start == self._enabled_at[row]
        tones = self._row_tones[row][b]
        latched = int(self._latched[row, b])
        found = None
        if latched >= 0 and self._status(latched, hist, on, elapsed, trunc)[0]:
            pass                                   # the latched tone goes on
        else:
            if latched >= 0:
                self._latched[row, b] = latched = -1   # it stopped or changed: re-arm
                self._hist[(row, b)] = hist = []       # what plays now starts afresh
            consistent, confirmed = 0, []
            for t in tones:
                c, ok, misfit = self._status(t, hist, on, elapsed, trunc)
                if c:
                    consistent += 1
                    if ok:
                        confirmed.append((misfit, t))
            if confirmed and consistent == len(confirmed):
                found = latched = min(confirmed)[1]
                self._latched[row, b] = found
        # next time the ongoing segment crosses a bound that can change a decision
        bounds = self._bounds((latched,) if latched >= 0 else tones, on)
        k = bisect.bisect_right(bounds, elapsed)
        self._next_check[row, b] = start + bounds[k] if k < len(bounds) else _NEVER
        return found

    def _bounds(self, tones: tuple[int, ...], on: bool) -> list[int]:
        """Durations of an ongoing segment at which some tone's verdict may change: an
        on-period becomes too long (or long enough for a continuous tone); a pause becomes
        long enough to count, or too long."""
        key = (tones, on)
        cached = self._bounds_cache.get(key)
        if cached is None:
            bounds = set()
            for t in tones:
                if self._specs[t].continuous:
                    if on:
                        bounds.add(self._min_samples[t])
                    continue
                for k, el in enumerate(self._elements[t]):
                    if k % 2 == 0 and on:
                        bounds.add(el.hi + 1)
                    elif k % 2 == 1 and not on:
                        bounds.update((el.lo, el.hi + 1))
            cached = self._bounds_cache[key] = sorted(bounds)
        return cached


def _bench(argv=None) -> None:
    import argparse
    import time
    ap = argparse.ArgumentParser(prog="python -m drivers.media.tones",
                                 description="Benchmark the batched tone generator and detector.")
    ap.add_argument("--rows", type=int, default=960)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--plan", default=DEFAULT_PLAN)
    a = ap.parse_args(argv)
    gen = ToneGenerator(a.rows, a.plan)
    det = ToneDetector(a.rows, a.plan)
    names = ["busy", "ringback", "congestion", "dial"]
    for r in range(a.rows):
        gen.start(r, names[r % len(names)])
        det.enable(r)
    ticks = int(a.seconds * 50)
    tg = td = 0.0
    events = 0
    for _ in range(ticks):
        t0 = time.perf_counter()
        pcm = gen.generate()
        t1 = time.perf_counter()
        events += len(det.process(pcm))
        t2 = time.perf_counter()
        tg += t1 - t0
        td += t2 - t1
    print(f"{a.rows} rows, {ticks} ticks of {gen.block} samples: "
          f"generate {tg / ticks * 1e3:.3f} ms/tick, detect {td / ticks * 1e3:.3f} ms/tick "
          f"({events} tone events)")


if __name__ == "__main__":
    _bench()
