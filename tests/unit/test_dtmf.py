"""DTMF reception as administrations apply ITU-T Q.24 (see CHINA-TELEPHONY.md), talk-off,
batching, and the generator.

Accept/reject bands: tone >= 40 ms detected, < 23 ms not; pause >= 50 ms separates
digits, a 10 ms break is bridged; frequency within +-1.5 % detected, beyond +-3.5 % not;
twist up to 4 dB (high group above low) and 8 dB (low above high) detected; per-tone
levels from -3 dBm0 (the pair at 0 dBm0 together) down to -36 dBm0 (26 dB below
-10 dBm0) detected; S/N 15 dB (noise against the weaker tone) detected.
"""
from __future__ import annotations

import subprocess

import numpy as np
import pytest

from tests.conftest import need_tool

from drivers.bench import dtmf as bench
from drivers.media import g711
from drivers.media.dtmf import (KEYS, DtmfDetector, DtmfDigit, DtmfParams, detect_digits,
                                dtmf_tone, key_frequencies)
from drivers.media.levels import dbm0_to_peak, dbm0_to_rms

RATE = 8000
OFFSETS = (0, 13, 27, 40, 61, 97, 133)          # samples: where a tone falls in the blocks


def tone(key: str, ms: float, low_db: float = -9.0, high_db: float = -11.0,
         low_dev: float = 0.0, high_dev: float = 0.0, phase: float = 0.0) -> np.ndarray:
    f_lo, f_hi = key_frequencies(key)
    n = int(round(ms * RATE / 1000))
    t = np.arange(n) / RATE
    return (dbm0_to_peak(low_db) * np.sin(2 * np.pi * f_lo * (1 + low_dev) * t + phase)
            + dbm0_to_peak(high_db) * np.sin(2 * np.pi * f_hi * (1 + high_dev) * t + 2 * phase))


def gap(ms: float) -> np.ndarray:
    return np.zeros(int(round(ms * RATE / 1000)))


def line(*parts: np.ndarray, lead: int = 0, noise_dbm0: float | None = None,
         seed: int = 0) -> np.ndarray:
    """Parts in sequence after `lead` samples of silence, 100 ms after, through A-law."""
    x = np.concatenate([np.zeros(lead), *parts, gap(100)])
    if noise_dbm0 is not None:
        x = x + np.random.default_rng(seed).normal(0, dbm0_to_rms(noise_dbm0), x.size)
    return g711.alaw_decode(g711.alaw_encode(np.clip(np.round(x), -32768, 32767)))


def digits(x: np.ndarray) -> str:
    return "".join(d.digit for d in detect_digits(x))


# ---- Q.24 bands -----------------------------------------------------------------------------
@pytest.mark.parametrize("ms", [40, 45, 50, 70, 100, 500])
def test_tones_of_40_ms_and_longer_are_detected_wherever_they_fall(ms):
    for key, off in zip("159D#*0", OFFSETS):
        assert digits(line(tone(key, ms), lead=200 + off)) == key, (key, off)


@pytest.mark.parametrize("ms", [10, 15, 20, 23])
def test_tones_shorter_than_23_ms_are_rejected(ms):
    for key, off in zip("2580ABC", OFFSETS):
        assert digits(line(tone(key, ms), lead=200 + off)) == "", (key, off)


@pytest.mark.parametrize("pause_ms", [50, 60, 100])
def test_a_pause_of_50_ms_separates_two_identical_digits(pause_ms):
    for off in OFFSETS:
        x = line(tone("5", 60), gap(pause_ms), tone("5", 60), lead=160 + off)
        assert digits(x) == "55", off


@pytest.mark.parametrize("break_ms", [5, 10])
def test_a_break_of_10_ms_inside_a_tone_is_bridged(break_ms):
    for off in OFFSETS:
        x = line(tone("7", 60), gap(break_ms), tone("7", 60), lead=160 + off)
        assert digits(x) == "7", off


@pytest.mark.parametrize("low_dev,high_dev", [(0.015, 0.015), (-0.015, -0.015),
                                              (0.015, -0.015), (-0.015, 0.015)])
def test_frequency_offsets_within_1_5_percent_are_detected(low_dev, high_dev):
    keys = "1234567890*#ABCD"
    x = line(*[np.concatenate([tone(k, 60, low_dev=low_dev, high_dev=high_dev), gap(60)])
               for k in keys], lead=77)
    assert digits(x) == keys


@pytest.mark.parametrize("low_dev,high_dev", [(0.035, 0.0), (-0.035, 0.0), (0.0, 0.035),
                                              (0.0, -0.035), (0.05, 0.05)])
def test_frequency_offsets_beyond_3_5_percent_are_rejected(low_dev, high_dev):
    keys = "1234567890*#ABCD"
    x = line(*[np.concatenate([tone(k, 80, low_dev=low_dev, high_dev=high_dev), gap(60)])
               for k in keys], lead=77)
    assert digits(x) == ""


@pytest.mark.parametrize("low_db,high_db", [(-12, -8), (-24, -20), (-10, -18), (-20, -28),
                                            (-30, -26), (-28, -36)])
def test_twist_up_to_4_db_reverse_and_8_db_standard_is_detected(low_db, high_db):
    keys = "147*2580369#ABCD"
    x = line(*[np.concatenate([tone(k, 50, low_db, high_db), gap(60)]) for k in keys],
             lead=33)
    assert digits(x) == keys


@pytest.mark.parametrize("low_db,high_db", [(-20, -10), (-10, -25)])
def test_twist_far_beyond_the_limits_is_rejected(low_db, high_db):
    keys = "147*2580369#ABCD"
    x = line(*[np.concatenate([tone(k, 60, low_db, high_db), gap(60)]) for k in keys])
    assert digits(x) == ""


@pytest.mark.parametrize("level", [-3, -10, -20, -30, -36])
def test_levels_from_0_dbm0_for_the_pair_down_to_minus_36_dbm0_per_tone(level):
    keys = "1234567890*#ABCD"
    x = line(*[np.concatenate([tone(k, 50, level, level), gap(60)]) for k in keys], lead=51)
    assert digits(x) == keys


def test_tones_far_below_the_level_floor_are_ignored():
    x = line(tone("5", 100, -50, -50), gap(60), tone("8", 100, -48, -48))
    assert digits(x) == ""


def test_40_ms_keys_at_the_corners_of_frequency_twist_and_level_all_together():
    """Every band at once: 40 ms tones, both tones +-1.5 % off in all four directions,
    twist at its limits, weak and strong, with and without 15 dB S/N (weaker tone)."""
    rng = np.random.default_rng(40)
    signals, expected = [], []
    for (low_db, high_db) in [(-12, -20), (-24, -20), (-28, -36), (-8, -4), (-3, -3)]:
        for low_dev, high_dev in [(0.015, 0.015), (-0.015, -0.015), (0.015, -0.015),
                                  (-0.015, 0.015)]:
            for snr in (None, 15.0):
                keys = "".join(rng.choice(list(KEYS), 4))
                parts = [np.concatenate([tone(k, 40, low_db, high_db, low_dev, high_dev,
                                              rng.uniform(0, 6)), gap(rng.uniform(50, 80))])
                         for k in keys]
                noise = None if snr is None else min(low_db, high_db) - snr
                signals.append(line(*parts, lead=int(rng.integers(0, 300)), noise_dbm0=noise,
                                    seed=len(signals)))
                expected.append(keys)
    found = _batched(signals)
    got = ["".join(d.digit for d in found if d.row == i) for i in range(len(signals))]
    assert got == expected


@pytest.mark.parametrize("seed", range(4))
def test_15_db_signal_to_noise_against_the_weaker_tone_is_detected(seed):
    keys = "1234567890*#ABCD"
    low, high = -20.0, -24.0
    x = line(*[np.concatenate([tone(k, 45, low, high), gap(55)]) for k in keys],
             noise_dbm0=high - 15.0, seed=seed, lead=seed * 17)
    assert digits(x) == keys


@pytest.mark.parametrize("level", [-6, -15, -26])
def test_china_dial_tone_under_the_first_digit(level):
    """450 Hz at -10 dBm0 runs from before the first digit to its end."""
    keys = "8613905"
    lead = 2400
    body = [np.concatenate([tone(k, 70, level, level - 2), gap(80)]) for k in keys]
    x = np.concatenate([gap(lead / 8), *body, gap(100)])
    dial_end = lead + 560
    t = np.arange(dial_end) / RATE
    x[:dial_end] += dbm0_to_peak(-10) * np.sin(2 * np.pi * 450 * t)
    x = g711.alaw_decode(g711.alaw_encode(np.clip(np.round(x), -32768, 32767)))
    assert digits(x) == keys


def test_a_prompts_echo_under_the_first_digit():
    rng = np.random.default_rng(5)
    keys = "4008"
    body = np.concatenate([np.concatenate([tone(k, 70, -15, -17), gap(80)]) for k in keys])
    x = np.concatenate([gap(300), body, gap(100)])
    echo = bench.speech_like(x.size, rng, -30.0)
    x[:2400 + 560] += echo[:2400 + 560]
    assert digits(line(x)) == keys


def test_dial_tone_alone_gives_no_digit():
    t = np.arange(3 * RATE) / RATE
    assert digits(line(dbm0_to_peak(-10) * np.sin(2 * np.pi * 450 * t))) == ""


# ---- talk-off ------------------------------------------------------------------------------
def _batched(signals: list[np.ndarray]) -> list[DtmfDigit]:
    n = max(s.size for s in signals)
    n = -(-n // 160) * 160 + 1600
    pcm = np.zeros((len(signals), n), dtype=np.int16)
    for i, s in enumerate(signals):
        pcm[i, :s.size] = s
    det = DtmfDetector(len(signals))
    found = []
    for t in range(0, n, 160):
        found.extend(det.process(np.ascontiguousarray(pcm[:, t:t + 160])))
    return found


def test_no_talk_off_from_speech_like_voices():
    rng = np.random.default_rng(2024)
    voices = [line(bench.speech_like(8 * RATE, rng, rng.uniform(-25, -6)), noise_dbm0=-60)
              for _ in range(12)]
    assert _batched(voices) == []


def test_no_talk_off_from_music_like_chords_and_melodies():
    rng = np.random.default_rng(7)
    music = [line(bench.music_like(8 * RATE, rng, rng.uniform(-25, -6)), noise_dbm0=-60)
             for _ in range(12)]
    assert _batched(music) == []


def test_no_talk_off_from_harmonic_rich_dyads_on_dtmf_frequencies():
    """Two notes sitting on a key's frequencies, but with instrument-like harmonics."""
    t = np.arange(RATE // 2) / RATE
    signals = []
    for key in KEYS:
        f_lo, f_hi = key_frequencies(key)
        x = sum(dbm0_to_peak(-12) * np.sin(2 * np.pi * h * f * t) / h ** 1.5
                for f in (f_lo, f_hi) for h in range(1, 5) if h * f < 3900)
        signals.append(line(x))
    assert _batched(signals) == []


def test_no_talk_off_from_synthesised_speech(tmp_path):
    need_tool("espeak-ng")
    text = ("Thank you for calling. Please hold while we connect you to the next "
            "available agent. Your call is important to us. For sales press one, for "
            "service press two, or stay on the line.")
    voices = []
    for voice in ("en", "en+f3", "zh", "en+m3"):
        raw = subprocess.run(["espeak-ng", "-v", voice, "-s", "160", "--stdout", text],
                             capture_output=True, check=True).stdout
        pcm = np.frombuffer(raw[44:], dtype="<i2").astype(np.float64)   # 22050 Hz
        t_out = np.arange(int(pcm.size * RATE / 22050)) / RATE
        x = np.interp(t_out, np.arange(pcm.size) / 22050, pcm)          # crude resample
        assert x.size > 5 * RATE and np.sqrt(np.mean(x ** 2)) > dbm0_to_rms(-40)
        voices.append(line(x * 0.5))
    assert _batched(voices) == []


# ---- batching, state, timing -------------------------------------------------------------------
def test_batched_rows_give_the_same_digits_as_rows_alone():
    rng = np.random.default_rng(3)

    def key_tone(k):
        low = -rng.uniform(5, 25)
        return np.concatenate([tone(k, rng.uniform(45, 110), low, low + rng.uniform(-8, 4)),
                               gap(rng.uniform(55, 120))])

    signals = [line(*[key_tone(k) for k in rng.choice(list(KEYS), 6)],
                    lead=int(rng.integers(0, 400)), noise_dbm0=-45, seed=i)
               for i in range(8)]
    together = _batched(signals)
    for i, s in enumerate(signals):
        alone = [DtmfDigit(i, d.digit, d.start, d.duration) for d in detect_digits(s)]
        assert [d for d in together if d.row == i] == alone
    assert len(together) == 48


def test_one_block_or_two_per_analysis_pass_give_the_same_digits():
    rng = np.random.default_rng(9)
    signals = [line(*[np.concatenate([tone(k, rng.uniform(40, 120), -12, -14),
                                      gap(rng.uniform(50, 100))])
                      for k in rng.choice(list(KEYS), 5)], lead=int(rng.integers(0, 500)),
                    noise_dbm0=-50, seed=i) for i in range(6)]
    n = max(s.size for s in signals) + 1600
    n += -n % 160
    pcm = np.zeros((6, n), dtype=np.int16)
    for i, s in enumerate(signals):
        pcm[i, :s.size] = s
    found = {}
    for every in (1, 2):
        det = DtmfDetector(6, analyse_every=every)
        found[every] = sorted((d for t in range(0, n, 160)
                               for d in det.process(np.ascontiguousarray(pcm[:, t:t + 160]))),
                              key=lambda d: (d.row, d.start))
    assert found[1] == found[2] and len(found[1]) == 30


def test_digit_start_and_duration_are_measured():
    for off in OFFSETS:
        for ms in (50, 100, 250):
            lead = 1000 + off
            found = detect_digits(line(tone("6", ms), lead=lead))
            assert len(found) == 1
            assert abs(found[0].start - lead) <= 24                  # 3 ms
            assert abs(found[0].duration - ms * 8) <= 40              # 5 ms


def test_keydown_while_held_then_digit_at_key_up():
    det = DtmfDetector(2)
    x = line(tone("9", 200), lead=320)
    seen_down, events = [], []
    for t in range(0, x.size - x.size % 160, 160):
        block = np.zeros((2, 160), dtype=np.int16)
        block[1] = x[t:t + 160]
        events.append(det.process(block))
        seen_down.append(bool(det.keydown[1]))
        assert not det.keydown[0]
    down_at = seen_down.index(True)
    up_at = next(i for i, e in enumerate(events) if e)
    assert 2 <= down_at <= 6                    # within 40 ms of the tone start (block 2)
    assert up_at > down_at and not seen_down[up_at]
    assert events[up_at] == [DtmfDigit(1, "9", events[up_at][0].start, events[up_at][0].duration)]


def test_reset_forgets_a_held_key():
    det = DtmfDetector(1)
    x = line(tone("3", 300))
    blocks = x[:x.size - x.size % 160].reshape(-1, 1, 160)
    for b in blocks[:10]:
        assert det.process(b) == []
    assert det.keydown[0]
    det.reset(0)
    assert not det.keydown[0]
    out = [d for b in blocks[10:] for d in det.process(b)]
    assert [d.digit for d in out] == ["3"]       # the rest of the tone counts as a new key
    assert out[0].start >= 10 * 160 - 24


def test_sample_numbering_follows_the_caller():
    det = DtmfDetector(1)
    x = line(tone("0", 80))
    found = []
    for i, t in enumerate(range(0, x.size - x.size % 160, 160)):
        found += det.process(x[t:t + 160].reshape(1, 160), sample=80_000 + t)
    assert len(found) == 1 and abs(found[0].start - 80_000) <= 24


def test_float32_and_int16_input_agree():
    x = line(tone("A", 90), gap(70), tone("B", 90))
    a = detect_digits(x)
    b = detect_digits(x.astype(np.float32))
    assert a == b and [d.digit for d in a] == ["A", "B"]


def test_bad_input_is_refused_with_a_clear_error():
    with pytest.raises(ValueError, match="8000 Hz only"):
        DtmfDetector(4, rate=16000)
    with pytest.raises(ValueError, match="8000 Hz only"):
        detect_digits(np.zeros(800), rate=11025)
    det = DtmfDetector(4)
    with pytest.raises(ValueError, match=r"shape \(4, 160\)"):
        det.process(np.zeros((3, 160), dtype=np.int16))
    with pytest.raises(ValueError, match="mono"):
        detect_digits(np.zeros((2, 800)))
    with pytest.raises(IndexError):
        det.reset(4)
    with pytest.raises(ValueError, match="multiple of 40"):
        DtmfDetector(4, block=100)
    with pytest.raises(ValueError, match="min_hits"):
        DtmfParams(min_hits=1)


# ---- generator ---------------------------------------------------------------------------------
def test_dtmf_tone_layout_and_levels():
    x = dtmf_tone("1#", on_ms=100, off_ms=50)
    assert x.dtype == np.int16 and x.size == 2 * (800 + 400)
    assert not x[800:1200].any() and not x[2000:].any()
    def amplitude(sig, f):
        t = np.arange(sig.size) / RATE
        return 2 * abs(np.sum(sig * np.exp(-2j * np.pi * f * t))) / sig.size

    assert amplitude(x[:800], 697) == pytest.approx(dbm0_to_peak(-9.0), rel=0.01)
    assert amplitude(x[:800], 1209) == pytest.approx(dbm0_to_peak(-11.0), rel=0.01)
    assert amplitude(x[1200:2000], 941) == pytest.approx(dbm0_to_peak(-9.0), rel=0.01)
    assert amplitude(x[1200:2000], 1477) == pytest.approx(dbm0_to_peak(-11.0), rel=0.01)
    y = dtmf_tone("5", 60, 0, level_dbm0=-20.0)
    assert amplitude(y, 770) == pytest.approx(dbm0_to_peak(-20.0), rel=0.02)
    assert amplitude(y, 1336) == pytest.approx(dbm0_to_peak(-20.0), rel=0.02)


def test_dtmf_tone_round_trip_and_bad_key():
    keys = "0123456789*#ABCDabcd"
    assert digits(line(dtmf_tone(keys, 50, 50))) == keys.upper()
    with pytest.raises(ValueError, match="'X'"):
        dtmf_tone("12X")


# ---- the bench's scoring ---------------------------------------------------------------------
def test_bench_counts_missed_extra_and_wrong_digits():
    assert bench.digit_errors("12345", "12345") == (0, 0, 0)
    assert bench.digit_errors("12345", "1245") == (1, 0, 0)
    assert bench.digit_errors("12345", "123345") == (0, 1, 0)
    assert bench.digit_errors("12345", "12945") == (0, 0, 1)
    assert bench.score(["123", "45"], ["13", "456"]) == {
        "missed": 1, "extra": 1, "wrong": 0, "errors": 2}


def test_bench_corpus_digits_are_all_found_by_our_detector():
    audio, expected = bench.build_corpus(channels=8, seconds=4, seed=11)
    _, _, got = bench.run_ours(audio)
    assert sum(map(len, expected)) > 10
    assert got == expected


def test_bench_command_prints_the_figures_as_json(capsys):
    import json
    assert bench.main(["--json", "--channels", "6", "--seconds", "2", "--passes", "1"]) == 0
    r = json.loads(capsys.readouterr().out)
    for k in ("ours_samples_per_s", "spandsp_samples_per_s", "ratio", "ours_errors",
              "spandsp_errors"):
        assert k in r
    assert r["ours_errors"] == 0 and r["samples"] == 6 * 2 * 8000
