"""Bridges and conferences for every row at once.

A row belongs to at most one mixing group: a two-party bridge (each row hears the other)
or a conference. Conference members have a mode:

- ``talk``: heard by every member, hears all talkers but itself (and whispers aimed at it);
- ``listen``: hears all talkers, heard by nobody (silent monitoring);
- ``whisper``: heard only by the member named in ``whisper_to`` (supervisor coaching an
  agent), hears all talkers.

``gain_db`` scales the member's own voice as the others hear it (turn down a loud caller,
set a supervisor's whisper level); it has no effect on what the member hears.

The topology changes rarely and is compiled into index arrays; ``mix`` then runs a fixed
number of numpy operations over all members of all conferences together: gather the
talkers, one ``np.add.reduceat`` for every conference's sum, a gather of each member's
conference sum, a subtraction of each talker's own contribution, and ``np.add.at`` for
whispers. Sums are float32 on the 16-bit scale; a conference sum may exceed full scale and
the engine applies its soft limiter once to the whole transmit block (no wrap-around).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Hashable

import numpy as np

MODES = ("talk", "listen", "whisper")
MAX_PARTIES = 60
GAIN_DB_RANGE = (-60.0, 24.0)


class MixerError(ValueError):
    """A bridge or conference request that cannot be carried out (says why)."""


@dataclasses.dataclass
class Member:
    conf: Hashable
    row: int
    mode: str
    gain: float          # linear, from gain_db
    gain_db: float
    whisper_to: int | None


class Mixer:
    def __init__(self, rows: int, block: int = 160):
        self.rows = rows
        self.block = block
        self._partner: dict[int, int] = {}               # bridged row -> other row
        self._members: dict[int, Member] = {}            # row -> conference membership
        self._confs: dict[Hashable, dict[int, Member]] = {}
        self._dirty = True
        self._plan: _Plan | None = None

    # ---- control ------------------------------------------------------------------------
    def _check_row(self, row, what="row") -> int:
        if isinstance(row, bool) or not isinstance(row, (int, np.integer)):
            raise MixerError(f"{what} must be an integer, got {row!r}")
        row = int(row)
        if not 0 <= row < self.rows:
            raise MixerError(f"{what} {row} is out of range (0..{self.rows - 1})")
        return row

    def bridge(self, a: int, b: int) -> None:
        """Connect rows a and b both ways; each leaves any bridge or conference it was in."""
        a, b = self._check_row(a), self._check_row(b)
        if a == b:
            raise MixerError(f"cannot bridge row {a} to itself")
        self.release(a)
        self.release(b)
        self._partner[a] = b
        self._partner[b] = a
        self._dirty = True

    def unbridge(self, row: int) -> None:
        """Break the bridge of `row` (both sides go silent); no-op if not bridged."""
        row = self._check_row(row)
        other = self._partner.pop(row, None)
        if other is not None:
            self._partner.pop(other, None)
            self._dirty = True

    def join(self, conf: Hashable, row: int, mode: str = "talk", gain_db: float = 0.0,
             whisper_to: int | None = None) -> None:
        """Put `row` into conference `conf` (created on first join); a row already in the
        same conference just changes mode/gain; any bridge or other conference is left."""
        row = self._check_row(row)
        if mode not in MODES:
            raise MixerError(f"unknown conference mode {mode!r}; expected one of {MODES}")
        try:
            gain_db = float(gain_db)
        except (TypeError, ValueError):
            raise MixerError(f"gain_db must be a number, got {gain_db!r}") from None
        lo, hi = GAIN_DB_RANGE
        if not (math.isfinite(gain_db) and lo <= gain_db <= hi):
            raise MixerError(f"gain_db {gain_db} is outside {lo}..{hi} dB")
        try:
            hash(conf)
        except TypeError:
            raise MixerError(f"conference name must be hashable, got {conf!r}") from None
        members = self._confs.get(conf, {})
        if mode == "whisper":
            if whisper_to is None:
                raise MixerError("a whisper member needs whisper_to (the row that hears it)")
            whisper_to = self._check_row(whisper_to, "whisper_to")
            if whisper_to == row:
                raise MixerError(f"row {row} cannot whisper to itself")
            if whisper_to not in members:
                raise MixerError(f"whisper_to row {whisper_to} is not a member of "
                                 f"conference {conf!r}")
        elif whisper_to is not None:
            raise MixerError(f"whisper_to is only for mode 'whisper', not {mode!r}")
        if row not in members and len(members) >= MAX_PARTIES:
            raise MixerError(f"conference {conf!r} is full ({MAX_PARTIES} parties)")
        current = self._members.get(row)
        if current is None or current.conf != conf:
            self.release(row)
        m = Member(conf, row, mode, 10.0 ** (gain_db / 20.0), gain_db, whisper_to)
        self._members[row] = m
        self._confs.setdefault(conf, {})[row] = m
        self._dirty = True

    def leave(self, row: int) -> None:
        """Take `row` out of its conference (the conference ends with its last member)."""
        row = self._check_row(row)
        m = self._members.pop(row, None)
        if m is None:
            return
        members = self._confs[m.conf]
        del members[row]
        if not members:
            del self._confs[m.conf]
        self._dirty = True

    def release(self, row: int) -> None:
        """Take `row` out of whatever bridge or conference it is in."""
        self.unbridge(row)
        self.leave(row)

    # ---- inspection ---------------------------------------------------------------------
    def partner(self, row: int) -> int | None:
        return self._partner.get(row)

    def membership(self, row: int) -> Member | None:
        return self._members.get(row)

    def members(self, conf: Hashable) -> list[Member]:
        return list(self._confs.get(conf, {}).values())

    def conferences(self) -> list[Hashable]:
        return list(self._confs)

    @property
    def active(self) -> bool:
        return bool(self._partner or self._members)

    def _compiled(self) -> "_Plan":
        if self._dirty:
            self._plan = _Plan.compile(self._partner, self._confs, self.block)
            self._dirty = False
        return self._plan

    @property
    def bridged_rows(self) -> np.ndarray:
        """Rows that hear a bridge partner (one source: passed through unchanged)."""
        return self._compiled().b_dst

    @property
    def conference_rows(self) -> np.ndarray:
        """Rows that hear a conference (a sum: the engine limits these)."""
        return self._compiled().l_rows

    # ---- the per-tick work ----------------------------------------------------------------
    def mix(self, pcm: np.ndarray, out: np.ndarray) -> None:
        """Write what each bridged/conferenced row hears into `out` (float32, rows x block).

        `pcm` is the received audio (int16 or float32, rows x block). Rows in no group are
        left untouched."""
        p = self._compiled()
        if p.b_dst.size:
            out[p.b_dst] = pcm[p.b_src]
        if p.l_rows.size:
            contrib = pcm[p.t_rows].astype(np.float32)
            if p.t_scaled:
                contrib *= p.t_gain
            sums = np.zeros((p.n_sums + 1, self.block), dtype=np.float32)  # last row: no talkers
            if contrib.shape[0]:
                sums[:p.n_sums] = np.add.reduceat(contrib, p.t_starts, axis=0)
            heard = sums[p.l_sum]
            # Listeners are ordered talkers first, in talker order: drop each one's own voice.
            heard[:contrib.shape[0]] -= contrib
            if p.w_rows.size:
                whisper = pcm[p.w_rows].astype(np.float32) * p.w_gain
                np.add.at(heard, p.w_target, whisper)
            out[p.l_rows] = heard


@dataclasses.dataclass
class _Plan:
    b_dst: np.ndarray
    b_src: np.ndarray
    t_rows: np.ndarray      # talkers, grouped by conference
    t_gain: np.ndarray      # (talkers, 1) float32
    t_scaled: bool
    t_starts: np.ndarray    # reduceat offsets, one per conference that has talkers
    n_sums: int
    l_rows: np.ndarray      # every member that hears the conference: talkers first
    l_sum: np.ndarray       # index of its conference's sum (n_sums when it has no talkers)
    w_rows: np.ndarray
    w_gain: np.ndarray
    w_target: np.ndarray    # index into l_rows of the member that hears the whisper

    @classmethod
    def compile(cls, partner: dict[int, int], confs: dict, block: int) -> "_Plan":
        b_dst = np.fromiter(partner.keys(), dtype=np.intp, count=len(partner))
        b_src = np.fromiter(partner.values(), dtype=np.intp, count=len(partner))
        t_rows, t_gain, t_starts, t_sum = [], [], [], []
        others, others_sum = [], []
        w_rows, w_gain, w_target_row = [], [], []
        n_sums = 0
        for members in confs.values():
            talkers = [m for m in members.values() if m.mode == "talk"]
            sum_index = n_sums if talkers else -1
            if talkers:
                t_starts.append(len(t_rows))
                n_sums += 1
            for m in talkers:
                t_rows.append(m.row)
                t_gain.append(m.gain)
                t_sum.append(sum_index)
            for m in members.values():
                if m.mode != "talk":
                    others.append(m.row)
                    others_sum.append(sum_index)
                if m.mode == "whisper" and m.whisper_to in members:
                    w_rows.append(m.row)
                    w_gain.append(m.gain)
                    w_target_row.append(m.whisper_to)
        l_rows = t_rows + others
        l_sum = [n_sums if s < 0 else s for s in t_sum + others_sum]
        position = {row: i for i, row in enumerate(l_rows)}
        gains = np.array(t_gain, dtype=np.float32).reshape(-1, 1)
        return cls(
            b_dst=b_dst, b_src=b_src,
            t_rows=np.array(t_rows, dtype=np.intp), t_gain=gains,
            t_scaled=bool(np.any(gains != 1.0)),
            t_starts=np.array(t_starts, dtype=np.intp), n_sums=n_sums,
            l_rows=np.array(l_rows, dtype=np.intp), l_sum=np.array(l_sum, dtype=np.intp),
            w_rows=np.array(w_rows, dtype=np.intp),
            w_gain=np.array(w_gain, dtype=np.float32).reshape(-1, 1),
            w_target=np.array([position[r] for r in w_target_row], dtype=np.intp),
        )


def soft_limit(x: np.ndarray, knee: float = 28000.0, full: float = 32767.0) -> np.ndarray:
    """Limit float32 audio (in place, also returned) to +-`full` without wrap-around or
    hard clipping.

    Identity below `knee` (small and normal signals stay bit-exact); above it the excess is
    squeezed by tanh into the remaining headroom, which keeps the curve continuous with
    slope 1 at the knee. Memoryless, so no pumping and no look-ahead delay; only peaks of
    sums louder than about -1.4 dBFS are touched. Only the samples over the knee cost work.
    """
    over = np.flatnonzero(np.abs(x.ravel()) > knee)
    if over.size:
        flat = x.reshape(-1)
        v = flat[over]
        room = full - knee
        flat[over] = np.sign(v) * (knee + room * np.tanh((np.abs(v) - knee) / room))
    return x


class Limiter:
    """Block-wise peak limiter with per-row gain state, for rows that hear a sum.

    Per block and row: the gain needed to keep the block's peak under `ceiling`; if lower
    than the current gain it takes over at once (ramped over `attack` samples to avoid a
    click), otherwise the gain recovers towards it by `release` of the gap per block
    (0.1 per 20 ms: about 200 ms). A gain ramp can let a few samples through above the
    ceiling: `soft_limit` (knee = ceiling) rounds those off. Gain 1 is exact identity.
    """

    def __init__(self, rows: int, block: int = 160, ceiling: float = 28000.0,
                 attack: int = 8, release: float = 0.1):
        self.ceiling = float(ceiling)
        self.release = float(release)
        self.gain = np.ones(rows, dtype=np.float32)
        self._attack = np.minimum(1.0, np.arange(1, block + 1) / attack).astype(np.float32)
        self._linear = (np.arange(1, block + 1) / block).astype(np.float32)

    def process(self, x: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Limit x = out[rows] (float32, k x block); returns it (changed in place)."""
        old = self.gain[rows]
        self.gain.fill(1.0)                # rows no longer summed start afresh next time
        self.gain[rows] = old
        if x.shape[0] == 0:
            return x
        peak = np.abs(x).max(axis=1)
        need = np.minimum(1.0, self.ceiling / np.maximum(peak, 1.0)).astype(np.float32)
        if need.min() >= 1.0 and old.min() >= 1.0:
            return x                                      # the usual case: nothing to do
        down = need < old
        new = np.where(down, need, np.minimum(need, old + self.release * (1.0 - old)))
        new = new.astype(np.float32)
        ramp = np.where(down[:, None], self._attack, self._linear)
        x *= old[:, None] + (new - old)[:, None] * ramp
        self.gain[rows] = np.where(new > 0.999, np.float32(1.0), new)
        return soft_limit(x, knee=self.ceiling)

