"""cardctl bench media: the real MediaEngine on N simulated channels, as fast as it goes.

Load (N channels, rows in this order):
- every row: DTMF detection (always on in the engine);
- first half: bridged in pairs, fed speech-like audio and noise, some rows with DTMF digits;
- next quarter: prompt playback (a 44.1 kHz stereo WAV made here and converted through
  PromptCache), barge-in allowed, restarted when done; fed noise and some digits;
- one 10-party conference (taken from the last quarter), speech-like talkers;
- rest of the last quarter: call-progress tones played and tone detection enabled;
- the first quarter is also tapped into TapQueues (one queue per 60 rows), drained
  every second as a consumer would;
- with --echo N, the first N rows also run SpanDSP echo cancelling.

The rx audio of every tick is prepared before the clock starts for that tick; only
`MediaEngine.tick` is timed, in wall time (tick_ms_*, late_ticks) and in this thread's
CPU time (cpu_ms_*: what the tick costs when other processes share the core).
realtime_factor = audio seconds / summed tick wall seconds.
Set OPENBLAS_NUM_THREADS=1 (one core, as cardd runs).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

from drivers.media import g711
from drivers.media.dtmf import dtmf_tone
from drivers.media.engine import DigitEvent, MediaEngine, PlayDone
from drivers.media.levels import dbm0_to_rms
from drivers.media.prompts import PromptCache
from drivers.media.taps import TapQueue

RATE = 8000
BLOCK = 160
LATE_MS = 20.0
CONF_SIZE = 10


def speech_like(seconds: float, rng: np.random.Generator, level_dbm0: float = -20.0) -> np.ndarray:
    """Voiced buzz through moving formant resonances, syllable-rate envelope, pauses."""
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    f0 = 110 + 30 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6))   # pitch contour
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    x = np.zeros(n)
    for h in range(1, 25):                                             # harmonics, 1/h roll-off
        fh = h * f0
        formant = (np.exp(-((fh - 600) / 250) ** 2) + 0.6 * np.exp(-((fh - 1500) / 400) ** 2)
                   + 0.3 * np.exp(-((fh - 2600) / 500) ** 2))
        x += formant * np.sin(h * phase) / h
    syll = np.clip(np.sin(2 * np.pi * 4.0 * t + rng.uniform(0, 6)), 0, None) ** 0.7
    pauses = (np.sin(2 * np.pi * 0.25 * t + rng.uniform(0, 6)) > -0.4).astype(float)
    x *= syll * pauses
    x += rng.normal(0, 0.02, n)
    x *= dbm0_to_rms(level_dbm0) / max(np.sqrt(np.mean(x ** 2)), 1e-9)
    return x


def noise(seconds: float, rng: np.random.Generator, level_dbm0: float = -55.0) -> np.ndarray:
    return rng.normal(0, dbm0_to_rms(level_dbm0), int(seconds * RATE))


def with_digits(x: np.ndarray, digits: str, every_s: float, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """Add DTMF digits (one key press every `every_s` seconds); returns (audio, presses)."""
    x = x.copy()
    step = int(every_s * RATE)
    count = 0
    at = int(rng.uniform(0.2, 1.0) * RATE)
    while at + 800 < x.size:
        d = digits[count % len(digits)]
        tone = dtmf_tone(d, on_ms=80, off_ms=0).astype(float)
        x[at:at + tone.size] = x[at:at + tone.size] * 0.1 + tone
        count += 1
        at += step
    return x, count


def make_prompt(directory: str, rng: np.random.Generator) -> str:
    import soundfile
    rate = 44100
    seconds = 3.0
    mono = speech_like(seconds, rng, level_dbm0=-16.0) / 32768.0
    # resample crudely to 44.1 kHz for the file: the cache does the proper conversion back
    t_out = np.arange(int(seconds * rate)) / rate
    wave = np.interp(t_out, np.arange(mono.size) / RATE, mono)
    stereo = np.stack([wave, 0.8 * wave], axis=1)
    path = os.path.join(directory, "welcome.wav")
    soundfile.write(path, stereo, rate, subtype="PCM_16")
    return path


def build_feed(n: int, seconds_of_audio: float, rng: np.random.Generator):
    """A bank of law-coded source signals and each row's (source, offset)."""
    loop_s = 8.0
    sources, presses = [], []
    for i in range(6):                                   # speech talkers
        sources.append(speech_like(loop_s, rng)); presses.append(0)
    for i in range(3):                                   # speech with digits
        x, c = with_digits(speech_like(loop_s, rng), "0123456789*#", 1.3, rng)
        sources.append(x); presses.append(c)
    for i in range(3):                                   # quiet line with digits
        x, c = with_digits(noise(loop_s, rng), "9876543210#*", 1.1, rng)
        sources.append(x); presses.append(c)
    for i in range(2):                                   # quiet line
        sources.append(noise(loop_s, rng)); presses.append(0)
    bank = np.stack([g711.encode("alaw", np.clip(np.rint(s), -32768, 32767).astype(np.int16))
                     for s in sources])
    return bank, presses


def run(channels: int, seconds: float, seed: int = 1, echo: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    n = channels
    if n < 4 + CONF_SIZE:
        raise ValueError(f"need at least {4 + CONF_SIZE} channels, got {n}")
    half, quarter = n // 2 // 2 * 2, n // 4
    prompt_rows = np.arange(half, half + quarter)
    last = np.arange(half + quarter, n)
    conf_rows = last[:CONF_SIZE]
    tone_rows = last[CONF_SIZE:]
    tapped = np.arange(0, quarter)

    bank, presses = build_feed(n, seconds, rng)
    n_src, loop = bank.shape
    # Which source feeds each row: speech for talkers, digits for a share of every group.
    src = np.empty(n, dtype=np.intp)
    src[:half] = rng.choice([0, 1, 2, 3, 4, 5, 6, 7, 8, 12, 13], size=half)
    src[prompt_rows] = rng.choice([9, 10, 11, 12, 13], size=prompt_rows.size)
    src[conf_rows] = rng.choice([0, 1, 2, 3, 4, 5], size=conf_rows.size)
    src[tone_rows] = rng.choice([12, 13], size=tone_rows.size)
    offset = rng.integers(0, loop // BLOCK, size=n) * BLOCK

    with tempfile.TemporaryDirectory() as tmp:
        cache = PromptCache("alaw", cache_dir=os.path.join(tmp, "cache"))
        path = make_prompt(tmp, rng)
        t0 = time.perf_counter()
        cache.load(path)
        convert_ms = (time.perf_counter() - t0) * 1e3
        eng = MediaEngine(n, BLOCK, "alaw", "cn", prompts=cache)
        for a in range(0, half, 2):
            eng.bridge(a, a + 1)
        for r in prompt_rows.tolist():
            eng.play_prompts(r, [path], tag="welcome", barge_in=True)
        for r in conf_rows.tolist():
            eng.conf_join("bench", r)
        names = ["ringback", "busy", "dial", "congestion"]
        for i, r in enumerate(tone_rows.tolist()):
            eng.play_tone(r, names[i % len(names)])
            eng.detect_tones(r)
        for r in range(min(echo, n)):                   # analog ports: SpanDSP per row
            eng.echo_cancel(r)
        queues = [TapQueue(maxlen=60 * 50 * 2) for _ in range(0, tapped.size, 60)]
        for i, r in enumerate(tapped.tolist()):
            eng.tap(r, queues[i // 60])

        ticks = int(round(seconds * RATE / BLOCK))
        cols = np.arange(BLOCK)
        times = np.empty(ticks)
        cpu = np.empty(ticks)
        digits = barges = prompts_done = 0
        tapped_blocks = 0
        for t in range(ticks):
            pos = (offset + t * BLOCK) % loop
            rx = bank[src[:, None], pos[:, None] + cols]
            started, cpu0 = time.perf_counter(), time.thread_time()
            _, events = eng.tick(rx)
            times[t] = time.perf_counter() - started
            cpu[t] = time.thread_time() - cpu0
            restart = []
            for e in events:
                if isinstance(e, DigitEvent):
                    digits += 1
                elif isinstance(e, PlayDone):
                    if e.interrupted:
                        barges += 1
                    else:
                        prompts_done += 1
                    restart.append(e.row)
            for r in restart:                          # the IVR plays its prompt again
                if not eng.prompt_player.playing(r):
                    eng.play_prompts(r, [path], tag="welcome", barge_in=True)
            if t % 50 == 49:
                for q in queues:
                    tapped_blocks += len(q.drain())
        eng.close()
    for q in queues:
        tapped_blocks += len(q.drain())
    ms = times * 1e3
    audio_s = ticks * BLOCK / RATE
    expected = sum(presses[s] for s in src.tolist()) * (audio_s / (loop / RATE))
    return {
        "channels": n,
        "seconds": audio_s,
        "ticks": ticks,
        "realtime_factor": round(audio_s / times.sum(), 2),
        "tick_ms_mean": round(float(ms.mean()), 3),
        "tick_ms_p50": round(float(np.percentile(ms, 50)), 3),
        "tick_ms_p99": round(float(np.percentile(ms, 99)), 3),
        "tick_ms_max": round(float(ms.max()), 3),
        "late_ticks": int((ms > LATE_MS).sum()),
        "cpu_ms_p50": round(float(np.percentile(cpu * 1e3, 50)), 3),
        "cpu_ms_p99": round(float(np.percentile(cpu * 1e3, 99)), 3),
        "digits_detected": digits,
        "digits_sent_approx": int(expected),
        "barge_ins": barges,
        "prompts_completed": prompts_done,
        "tap_blocks": tapped_blocks,
        "tap_drops": sum(q.dropped for q in queues),
        "load": {"bridged": half, "prompt_rows": int(prompt_rows.size),
                 "conference": CONF_SIZE, "tone_rows": int(tone_rows.size),
                 "tapped": int(tapped.size), "echo_cancelled": min(echo, n)},
        "prompt_convert_ms": round(convert_ms, 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="cardctl bench media",
                                description="Benchmark the media engine on simulated channels.")
    p.add_argument("--channels", type=int, default=960)
    p.add_argument("--seconds", type=float, default=10.0, help="seconds of audio to process")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--echo", type=int, default=0, metavar="N",
                   help="also cancel echo on the first N rows (analog ports)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    if args.seconds <= 0:
        p.error("--seconds must be positive")
    try:
        r = run(args.channels, args.seconds, args.seed, args.echo)
    except ValueError as e:
        print(f"cardctl bench media: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(r))
        return 0
    if os.environ.get("OPENBLAS_NUM_THREADS") != "1":
        print("note: OPENBLAS_NUM_THREADS is not 1; numpy may use more than one core")
    ld = r["load"]
    print(f"media engine: {r['channels']} channels, {r['seconds']:.1f} s of audio "
          f"({r['ticks']} ticks of {BLOCK} samples)")
    print(f"  load: {ld['bridged']} bridged in pairs, {ld['prompt_rows']} playing prompts "
          f"(barge-in), {ld['conference']}-party conference, {ld['tone_rows']} tones played "
          f"and detected, {ld['tapped']} tapped, {ld['echo_cancelled']} echo-cancelled; "
          "DTMF detection on all")
    print(f"  tick: mean {r['tick_ms_mean']:.2f} ms, p50 {r['tick_ms_p50']:.2f} ms, "
          f"p99 {r['tick_ms_p99']:.2f} ms, max {r['tick_ms_max']:.2f} ms; "
          f"late (> {LATE_MS:.0f} ms): {r['late_ticks']}")
    print(f"  tick CPU time (this thread only): p50 {r['cpu_ms_p50']:.2f} ms, "
          f"p99 {r['cpu_ms_p99']:.2f} ms (wall minus time lost to other processes)")
    print(f"  realtime factor: {r['realtime_factor']:.1f}x (audio seconds per second spent in ticks)")
    print(f"  digits detected: {r['digits_detected']} (about {r['digits_sent_approx']} sent), "
          f"barge-ins {r['barge_ins']}, prompts completed {r['prompts_completed']}")
    print(f"  taps: {r['tap_blocks']} blocks delivered, {r['tap_drops']} dropped; "
          f"prompt conversion {r['prompt_convert_ms']:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
