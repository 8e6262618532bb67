"""`cardctl bench dtmf`: our batched DTMF detector against SpanDSP's dtmf_rx, same audio.

The corpus (deterministic seed) is what a receiver meets on real lines, passed through
A-law like everything on the wire. Each channel is a shuffled run of segments: dialing,
speech, music, speech, silence (an IVR-heavy line: about one digit every 2.5 s; with
`--dense` two of the five segments are dialing, about one digit a second):
- dialing: 450 Hz dial tone at -10 dBm0 that stays on under the whole first digit, then
  3..11 digits (tone 45..120 ms, pause 55..150 ms), each with its own level (low group
  -30..-4 dBm0), twist (high group -8..+4 dB against the low), and frequency offsets
  within +-1.5 % per tone;
- talk-off material with no digits: speech-like voices (harmonic-rich, gliding pitch and
  formants, fricatives) and music-like chords and melodies (harmonic-rich notes);
- white noise on every channel at 15..30 dB below its weakest digit.
A pool of distinct channels is built, then every bench channel takes one, rotated to start
at a different segment, so that channels change state at different ticks.

Both detectors see the same (rows, 160) int16 blocks tick by tick: ours in one call per
tick for all rows, SpanDSP's through cffi once per row per tick (its usual use). Each runs
`--passes` times from fresh state, the two alternating so that both meet the same load on
a shared machine; throughput is taken from the fastest pass, by the wall clock (`ratio`)
and by this process's CPU time (`ratio_cpu`: steadier when other programs compete for the
cores). Digit errors are missed + extra + wrong, counted by aligning each channel's
detected digits with the digits it carries.
Set OPENBLAS_NUM_THREADS=1 (one core, as cardd runs).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

from drivers.media import g711
from drivers.media.dtmf import KEYS, DtmfDetector, key_frequencies
from drivers.media.levels import dbm0_to_peak, dbm0_to_rms

RATE = 8000
BLOCK = 160
POOL = 64                       # distinct channel signals


# ---- talk-off material -----------------------------------------------------------------
def speech_like(n: int, rng: np.random.Generator, level_dbm0: float) -> np.ndarray:
    """A voice: a glottal source (harmonics falling 6 dB/octave, pitch 80..300 Hz for men,
    women and children, gliding, with jitter and shimmer) through three formant
    resonances that move from vowel to vowel, a syllable envelope, aspiration noise and
    fricatives."""
    t = np.arange(n) / RATE
    f0_base = rng.uniform(80, 300)
    glide = 1 + 0.15 * np.sin(2 * np.pi * rng.uniform(0.3, 1.5) * t + rng.uniform(0, 6))
    # Jitter: about 1 % on the period, changing every 10 ms.
    knots_x = np.arange(0, n + 80, 80)
    walk = np.interp(np.arange(n), knots_x, rng.normal(0, 0.01, knots_x.size))
    f0 = f0_base * glide * (1 + walk)
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    # Formant tracks: a new vowel target every ~150 ms, linear glides between.
    knots = max(2, int(n / (0.15 * RATE)) + 2)
    at = np.linspace(0, n, knots)
    tracks = [(np.interp(np.arange(n), at, rng.uniform(lo, hi, knots)), bw)
              for lo, hi, bw in ((250, 850, 80), (700, 2300, 110), (2000, 3200, 160))]
    x = np.zeros(n)
    for h in range(1, int(3900 / (0.85 * f0_base)) + 1):
        fh = h * f0
        gain = np.ones(n)
        for fc, bw in tracks:                                 # two-pole resonances
            gain *= fc ** 2 / np.abs(fc ** 2 - fh ** 2 + 1j * fh * bw)
        shimmer = 1 + 0.05 * rng.standard_normal()
        x += np.where(fh < 3900, gain, 0.0) * shimmer * np.sin(h * phase + rng.uniform(0, 6)) / h
    syll = np.clip(np.sin(2 * np.pi * rng.uniform(3, 6) * t + rng.uniform(0, 6)), 0, None) ** 0.6
    x *= syll
    rms = np.sqrt(np.mean(x ** 2)) or 1.0
    breath = np.diff(rng.normal(0, 1, n + 1))                 # high-tilted noise
    x += rms * (0.05 * syll + 0.3 * (syll < 0.05) * (rng.random() < 0.7)) * breath
    return _to_level(x, level_dbm0)


def music_like(n: int, rng: np.random.Generator, level_dbm0: float) -> np.ndarray:
    """Chords and a melody of harmonic-rich notes (equal temperament, slightly detuned)."""
    x = np.zeros(n)
    pos = 0
    while pos < n:
        dur = min(n - pos, int(rng.uniform(0.15, 0.6) * RATE))
        t = np.arange(dur) / RATE
        env = np.minimum(1.0, t / 0.01) * np.exp(-t * rng.uniform(0.5, 4.0))
        notes = rng.integers(-12, 22, size=rng.integers(2, 5))          # around A4
        rolloff = rng.uniform(0.8, 1.6)
        for note in notes:
            f = 440.0 * 2 ** (note / 12) * (1 + rng.uniform(-0.003, 0.003))
            for h in range(1, int(3800 / f) + 1):
                partial = np.sin(2 * np.pi * h * f * t + rng.uniform(0, 6))
                x[pos:pos + dur] += env * partial / h ** rolloff
        pos += dur
    return _to_level(x, level_dbm0)


def _to_level(x: np.ndarray, level_dbm0: float) -> np.ndarray:
    rms = np.sqrt(np.mean(x ** 2))
    return x * (dbm0_to_rms(level_dbm0) / rms) if rms > 0 else x


def _tone(f: float, level_dbm0: float, n: int) -> np.ndarray:
    return dbm0_to_peak(level_dbm0) * np.sin(2 * np.pi * f * np.arange(n) / RATE)


# ---- the corpus ---------------------------------------------------------------------------
MIXES = {"ivr": ("dial", "speech", "music", "speech", "silence"),
         "dense": ("dial", "speech", "music", "dial", "silence")}


def channel_signal(seconds: float, rng: np.random.Generator, mix: str = "ivr"):
    """One channel: (int16 A-law-passed audio, digits as [(start_sample, key)], segment
    start samples where the channel may be rotated to begin)."""
    n = int(seconds * RATE)
    x = np.zeros(n)
    digits: list[tuple[int, str]] = []
    cuts: list[int] = [0]
    weakest = 0.0
    pos = 0
    kinds = list(MIXES[mix])
    rng.shuffle(kinds)
    k = 0
    while pos < n:
        kind = kinds[k % len(kinds)]
        k += 1
        if kind == "dial":
            lead = int(rng.uniform(0.3, 1.0) * RATE)
            keys = rng.choice(list(KEYS), size=rng.integers(3, 12))
            plan = []
            at = pos + lead
            for key in keys:
                on = int(rng.uniform(45, 120) * 8)
                off = int(rng.uniform(55, 150) * 8)
                plan.append((at, on, key))
                at += on + off
            if at > n:
                break
            first_end = plan[0][0] + plan[0][1]
            x[pos:first_end] += _tone(450.0, -10.0, first_end - pos)
            for start, on, key in plan:
                lo_db = rng.uniform(-30, -4)
                hi_db = float(np.clip(lo_db + rng.uniform(-8, 4), -36, -3))
                f_lo, f_hi = key_frequencies(key)
                x[start:start + on] += (_tone(f_lo * (1 + rng.uniform(-0.015, 0.015)), lo_db, on)
                                        + _tone(f_hi * (1 + rng.uniform(-0.015, 0.015)), hi_db, on))
                digits.append((start, str(key)))
                weakest = min(weakest, 10 * np.log10(10 ** (lo_db / 10) + 10 ** (hi_db / 10)))
            pos = at
        else:
            length = min(n - pos, int(rng.uniform(1.0, 3.0) * RATE))
            if kind == "speech":
                x[pos:pos + length] += speech_like(length, rng, rng.uniform(-25, -8))
            elif kind == "music":
                x[pos:pos + length] += music_like(length, rng, rng.uniform(-25, -8))
            pos += length
        pos += int(0.2 * RATE)                       # a quiet gap between segments
        if pos < n:
            cuts.append(pos - int(0.1 * RATE))
    snr = rng.uniform(15, 30)
    x += rng.normal(0, dbm0_to_rms(min(weakest, -10.0) - snr), n)
    pcm = g711.alaw_decode(g711.alaw_encode(np.clip(np.round(x), -32768, 32767)))
    return pcm, digits, cuts


def build_corpus(channels: int, seconds: float, seed: int = 1, mix: str = "ivr"):
    """(audio (ticks, channels, BLOCK) int16, expected digit string per channel)."""
    rng = np.random.default_rng(seed)
    ticks = int(seconds * RATE) // BLOCK
    n = ticks * BLOCK
    pool = [channel_signal(seconds, rng, mix) for _ in range(min(POOL, channels))]
    audio = np.empty((ticks, channels, BLOCK), dtype=np.int16)
    expected = []
    for ch in range(channels):
        pcm, digits, cuts = pool[ch % len(pool)]
        shift = cuts[(ch // len(pool)) % len(cuts)]
        audio[:, ch, :] = np.roll(pcm[:n], -shift).reshape(ticks, BLOCK)
        later = [d for s, d in digits if s >= shift]
        earlier = [d for s, d in digits if s < shift]
        expected.append("".join(later + earlier))
    return audio, expected


# ---- scoring --------------------------------------------------------------------------------
def digit_errors(expected: str, got: str) -> tuple[int, int, int]:
    """(missed, extra, wrong) from an edit-distance alignment."""
    m, n = len(expected), len(got)
    d = np.zeros((m + 1, n + 1), dtype=np.int32)
    d[:, 0] = np.arange(m + 1)
    d[0, :] = np.arange(n + 1)
    for i in range(1, m + 1):
        for j in range(1, n + 1):
            d[i, j] = min(d[i - 1, j] + 1, d[i, j - 1] + 1,
                          d[i - 1, j - 1] + (expected[i - 1] != got[j - 1]))
    missed = extra = wrong = 0
    i, j = m, n
    while i or j:
        if i and j and d[i, j] == d[i - 1, j - 1] + (expected[i - 1] != got[j - 1]):
            wrong += expected[i - 1] != got[j - 1]
            i, j = i - 1, j - 1
        elif i and d[i, j] == d[i - 1, j] + 1:
            missed, i = missed + 1, i - 1
        else:
            extra, j = extra + 1, j - 1
    return missed, extra, wrong


def score(expected: list[str], got: list[str]) -> dict:
    totals = np.zeros(3, dtype=int)
    for e, g in zip(expected, got):
        if e != g:
            totals += digit_errors(e, g)
    missed, extra, wrong = (int(v) for v in totals)
    return {"missed": missed, "extra": extra, "wrong": wrong, "errors": missed + extra + wrong}


# ---- runs -------------------------------------------------------------------------------------
def run_ours(audio: np.ndarray) -> tuple[float, float, list[str]]:
    ticks, rows, _ = audio.shape
    det = DtmfDetector(rows)
    got = [[] for _ in range(rows)]
    found = []
    c0, t0 = time.process_time(), time.perf_counter()
    for t in range(ticks):
        found.extend(det.process(audio[t]))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    for d in found:
        got[d.row].append(d.digit)
    return wall, cpu, ["".join(g) for g in got]


def run_spandsp(audio: np.ndarray) -> tuple[float, float, list[str]]:
    from drivers.native.spandsp import DtmfRx
    ticks, rows, _ = audio.shape
    rxs = [DtmfRx() for _ in range(rows)]
    got = [""] * rows
    calls = [rx.rx for rx in rxs]
    c0, t0 = time.process_time(), time.perf_counter()
    for t in range(ticks):
        block = audio[t]
        for r, rx in enumerate(calls):
            s = rx(block[r])
            if s:
                got[r] += s
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    # Digits still held at the end are not "newly detected": both sides end in silence.
    for rx in rxs:
        rx.close()
    return wall, cpu, got


def bench(channels: int, seconds: float, passes: int, seed: int = 1,
          spandsp: bool = True, mix: str = "ivr") -> dict:
    audio, expected = build_corpus(channels, seconds, seed, mix)
    samples = audio.shape[0] * audio.shape[1] * audio.shape[2]
    out = {"channels": channels, "seconds": audio.shape[0] * BLOCK / RATE, "mix": mix,
           "samples": samples, "digits": sum(len(e) for e in expected), "passes": passes}
    # Passes alternate between the two detectors so that both meet the same load.
    try:
        from drivers.native import spandsp as _spandsp                     # noqa: F401
    except ImportError as e:
        if spandsp:
            out["spandsp_unavailable"] = str(e)
        spandsp = False
    ours_runs, their_runs = [], []
    for _ in range(passes):
        ours_runs.append(run_ours(audio))
        if spandsp:
            their_runs.append(run_spandsp(audio))
    wall, cpu = min(r[0] for r in ours_runs), min(r[1] for r in ours_runs)
    ours = score(expected, ours_runs[-1][2])
    out.update(ours_samples_per_s=samples / wall, ours_cpu_samples_per_s=samples / cpu,
               ours_errors=ours["errors"], ours_missed=ours["missed"],
               ours_extra=ours["extra"], ours_wrong=ours["wrong"])
    if spandsp:
        swall, scpu = min(r[0] for r in their_runs), min(r[1] for r in their_runs)
        theirs = score(expected, their_runs[-1][2])
        out.update(spandsp_samples_per_s=samples / swall,
                   spandsp_cpu_samples_per_s=samples / scpu,
                   spandsp_errors=theirs["errors"], spandsp_missed=theirs["missed"],
                   spandsp_extra=theirs["extra"], spandsp_wrong=theirs["wrong"],
                   ratio=swall / wall, ratio_cpu=scpu / cpu)
    return out


def format_report(r: dict) -> str:
    lines = [f"corpus ({r['mix']}): {r['channels']} channels x {r['seconds']:.1f} s, "
             f"{r['digits']} digits, best of {r['passes']} passes"]
    lines.append(f"ours     {r['ours_samples_per_s'] / 1e6:8.1f} M samples/s "
                 f"(cpu {r['ours_cpu_samples_per_s'] / 1e6:.1f})  errors {r['ours_errors']} "
                 f"(missed {r['ours_missed']}, extra {r['ours_extra']}, wrong {r['ours_wrong']})")
    if "spandsp_samples_per_s" in r:
        lines.append(f"spandsp  {r['spandsp_samples_per_s'] / 1e6:8.1f} M samples/s "
                     f"(cpu {r['spandsp_cpu_samples_per_s'] / 1e6:.1f})  errors "
                     f"{r['spandsp_errors']} (missed {r['spandsp_missed']}, extra "
                     f"{r['spandsp_extra']}, wrong {r['spandsp_wrong']})")
        lines.append(f"ratio    {r['ratio']:8.2f} x   (cpu {r['ratio_cpu']:.2f} x)")
    else:
        lines.append(f"spandsp  not measured: {r.get('spandsp_unavailable', 'disabled')}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="cardctl bench dtmf",
                                description="DTMF detector throughput and accuracy vs SpanDSP")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--seconds", type=float, default=6.0, help="audio per channel (default 6)")
    p.add_argument("--channels", type=int, default=960, help="rows per tick (default 960)")
    p.add_argument("--passes", type=int, default=3, help="timed passes per detector (best counts)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--dense", action="store_true",
                   help="digit-dense corpus: two dialing segments in five (about 1 digit/s)")
    p.add_argument("--no-spandsp", action="store_true", help="measure ours only")
    args = p.parse_args(argv)
    if args.seconds < 1 or args.channels < 1 or args.passes < 1:
        p.error("--seconds must be >= 1, --channels and --passes >= 1")
    if os.environ.get("OPENBLAS_NUM_THREADS") != "1":
        print("cardctl bench dtmf: note: OPENBLAS_NUM_THREADS is not 1; BLAS may use "
              "several cores", file=sys.stderr)
    r = bench(args.channels, args.seconds, args.passes, args.seed, not args.no_spandsp,
              "dense" if args.dense else "ivr")
    print(json.dumps(r) if args.json else format_report(r))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
