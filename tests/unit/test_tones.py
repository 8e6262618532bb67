"""Tone plans, the tone generator and the cadence detector (China plan first)."""
import shutil
import subprocess

import numpy as np
import pytest

from drivers.media.dtmf import dtmf_tone
from drivers.media.levels import dbm0_to_rms, rms_to_dbm0
from drivers.media.tones import ToneDetector, ToneGenerator, TonePlan, TonePlanError

RATE = 8000
BLOCK = 160
CN = TonePlan.load("cn")


# ---- helpers ------------------------------------------------------------------------------
def play(name, seconds, plan=CN):
    """`seconds` of tone `name` from the generator, as one float array."""
    gen = ToneGenerator(1, plan)
    gen.start(0, name)
    return np.concatenate([gen.generate()[0] for _ in range(int(round(seconds * 50)))])


def line(*parts):
    """Concatenate signal parts, padded to whole blocks."""
    x = np.concatenate([np.asarray(p, dtype=np.float64) for p in parts])
    return np.concatenate([x, np.zeros((-len(x)) % BLOCK)])


def silence(seconds):
    return np.zeros(int(round(seconds * RATE)))


def at_level(x, level_dbm0, nominal_dbm0):
    return x * 10 ** ((level_dbm0 - nominal_dbm0) / 20)


def with_noise(x, noise_dbm0, seed=1):
    return x + np.random.default_rng(seed).normal(0, dbm0_to_rms(noise_dbm0), len(x))


def detect(x, names=None, plan=CN):
    det = ToneDetector(1, plan)
    det.enable(0, names)
    events = []
    for i in range(0, len(x), BLOCK):
        events += det.process(x[None, i:i + BLOCK])
    return events


def speech_espeak(text, voice):
    """Synthetic speech from espeak-ng, resampled to 8 kHz with sox."""
    if not (shutil.which("espeak-ng") and shutil.which("sox")):
        pytest.fail("espeak-ng and sox are needed (Debian packages espeak-ng, sox)")
    wav = subprocess.run(["espeak-ng", "-v", voice, "--stdout", text], check=True,
                         capture_output=True).stdout
    raw = subprocess.run(["sox", "-t", "wav", "-", "-r", "8000", "-t", "raw", "-e", "signed",
                          "-b", "16", "-c", "1", "-"], input=wav, check=True,
                         capture_output=True).stdout
    return np.frombuffer(raw, dtype=np.int16).astype(np.float64)


def vowel_babble(seconds, seed=2):
    """Speech-like: glottal pulses with a wandering pitch, two formants, syllable envelope."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    f0 = 160 + 60 * np.sin(2 * np.pi * 0.7 * np.arange(n) / RATE) + rng.normal(0, 5, n)
    phase = np.cumsum(f0 / RATE)
    pulses = np.diff(np.floor(phase), prepend=0.0)
    out = np.zeros(n)
    for fc, bw in ((500.0, 80.0), (1500.0, 120.0)):      # two-pole resonators
        r = np.exp(-np.pi * bw / RATE)
        a1, a2 = 2 * r * np.cos(2 * np.pi * fc / RATE), -r * r
        y1 = y2 = 0.0
        for i in range(n):
            y = pulses[i] + a1 * y1 + a2 * y2
            out[i] += y
            y1, y2 = y, y1
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4.0 * np.arange(n) / RATE)
    out *= envelope
    return out * dbm0_to_rms(-18) / np.sqrt(np.mean(out ** 2))


# ---- plans --------------------------------------------------------------------------------
def test_china_plan_is_the_450hz_plan():
    assert CN.name == "cn"
    assert CN["dial"].freqs == (450.0,) and CN["dial"].continuous
    assert CN["busy"].cadence_ms == (350, 350)
    assert CN["ringback"].cadence_ms == (1000, 4000)
    assert CN["congestion"].cadence_ms == (700, 700)
    assert CN["call_waiting"].cadence_ms == (400, 4000)
    assert CN["record"].freqs == (950.0,) and CN["record"].cadence_ms == (400, 10000)
    assert CN["info"].cadence_ms == (100, 100, 100, 100, 100, 100, 400, 400)
    assert CN.ring_cadence_ms == (1000, 4000)
    # the ITU fax tones come with every plan
    assert CN["cng"].freqs == (1100.0,) and CN["ced"].freqs == (2100.0,)


def test_other_countries_are_configuration():
    assert {"cn", "us", "etsi"} <= set(TonePlan.available())
    us = TonePlan.load("us")
    assert us["dial"].freqs == (350.0, 440.0)
    assert us.ring_cadence_ms == (2000, 4000)
    assert TonePlan.load("etsi")["busy"].freqs == (425.0,)


def test_plan_from_a_file(tmp_path):
    path = tmp_path / "lab.toml"
    path.write_text('name = "lab"\nring_cadence_ms = [400, 200, 400, 2000]\n'
                    '[tones.dial]\nfreqs = [400]\ncadence_ms = []\nlevel_dbm0 = -12\n')
    plan = TonePlan.load(path)
    assert plan.name == "lab" and plan["dial"].level_dbm0 == (-12.0,)
    assert TonePlan.load(str(path)).ring_cadence_ms == (400, 200, 400, 2000)


@pytest.mark.parametrize("body, key", [
    ('name = "x"\n[tones.busy]\nfreqs = [450]\ncadence_ms = [350]\nlevel_dbm0 = -10\n',
     "tones.busy.cadence_ms"),
    ('name = "x"\n[tones.busy]\ncadence_ms = [350, 350]\nlevel_dbm0 = -10\n', "tones.busy.freqs"),
    ('name = "x"\n[tones.busy]\nfreqs = [450]\ncadence_ms = [350, 350]\nlevel_dbm0 = "loud"\n',
     "tones.busy.level_dbm0"),
    ('name = "x"\n[tones.busy]\nfreqs = [9000]\ncadence_ms = []\nlevel_dbm0 = -10\n',
     "tones.busy.freqs"),
    ('name = "x"\n[tones.busy]\nfreqs = [450]\ncadence_ms = [350, -1]\nlevel_dbm0 = -10\n',
     "tones.busy.cadence_ms"),
    ('name = "x"\n[tones.busy]\nfreqs = [450]\ncadnce_ms = [350, 350]\nlevel_dbm0 = -10\n',
     "tones.busy.cadnce_ms"),
    ('name = "x"\nring_cadence_ms = [1000]\n[tones.dial]\nfreqs = [450]\nlevel_dbm0 = -10\n',
     "ring_cadence_ms"),
    ('[tones.dial]\nfreqs = [450]\nlevel_dbm0 = -10\n', "name"),
    ('name = "x"\n', "tones"),
])
def test_malformed_plan_names_file_and_key(tmp_path, body, key):
    path = tmp_path / "bad.toml"
    path.write_text(body)
    with pytest.raises(TonePlanError) as e:
        TonePlan.load(path)
    assert str(path) in str(e.value) and f": {key}:" in str(e.value)


def test_unknown_plan_and_broken_toml(tmp_path):
    with pytest.raises(TonePlanError, match="unknown tone plan 'xx'.*cn"):
        TonePlan.load("xx")
    path = tmp_path / "broken.toml"
    path.write_text("name = \n")
    with pytest.raises(TonePlanError, match="broken.toml: not valid TOML"):
        TonePlan.load(path)
    with pytest.raises(TonePlanError, match="cannot read"):
        TonePlan.load(tmp_path / "missing.toml")


# ---- generator ----------------------------------------------------------------------------
@pytest.mark.parametrize("name, runs", [
    ("busy", [2800, 2800] * 4),
    ("ringback", [8000, 32000] * 2),
    ("congestion", [5600, 5600] * 3),
    ("info", [800, 800, 800, 800, 800, 800, 3200, 3200] * 2),
])
def test_generated_cadence_is_sample_exact(name, runs):
    """Exactly the 450 Hz sine (phase running through the pauses) gated at exact samples."""
    x = play(name, sum(runs) / RATE)
    gate = np.concatenate([np.full(r, k % 2 == 0) for k, r in enumerate(runs)])
    n = np.arange(len(gate))
    expected = dbm0_to_rms(-10.0) * np.sqrt(2) * np.sin(2 * np.pi * 450 * n / RATE) * gate
    assert len(x) == len(gate)
    assert np.max(np.abs(x - expected)) < 0.05
    assert not x[~gate].any()                       # silent pauses are exactly silent


def test_generated_tone_is_phase_continuous_at_the_plan_level():
    gen = ToneGenerator(3, CN)
    gen.start(1, "dial")
    ticks = [gen.generate() for _ in range(10)]
    x = np.concatenate([t[1] for t in ticks])
    n = np.arange(len(x))
    expected = dbm0_to_rms(-10.0) * np.sqrt(2) * np.sin(2 * np.pi * 450 * n / RATE)
    assert np.max(np.abs(x - expected)) < 0.05           # one sine across all the ticks
    assert abs(rms_to_dbm0(np.sqrt(np.mean(x ** 2))) - (-10.0)) < 0.05
    assert not any(t[0].any() or t[2].any() for t in ticks)   # idle rows stay silent
    assert ticks[0].dtype == np.float32 and ticks[0].shape == (3, BLOCK)


def test_dual_tone_has_both_components():
    x = play("dial", 1.0, TonePlan.load("us"))
    spectrum = np.abs(np.fft.rfft(x)) / len(x) * 2
    freqs = np.fft.rfftfreq(len(x), 1 / RATE)
    peaks = sorted(freqs[np.argsort(spectrum)[-2:]])
    assert peaks == [350.0, 440.0]


def test_start_restarts_the_cadence_and_stop_silences():
    gen = ToneGenerator(2, CN)
    gen.start(0, "busy")
    gen.start(1, "busy")
    for _ in range(7):
        gen.generate()
    gen.start(1, "busy")                 # row 1 restarts: on for 350 ms from now
    gen.stop(0)
    out = np.concatenate([gen.generate() for _ in range(20)], axis=1)
    assert not out[0].any()
    n = np.arange(3200)
    gate = n < 2800                                  # a fresh 350 ms burst from phase 0
    expected = dbm0_to_rms(-10.0) * np.sqrt(2) * np.sin(2 * np.pi * 450 * n / RATE) * gate
    assert np.max(np.abs(out[1] - expected)) < 0.05
    assert gen.active.tolist() == [False, True]


def test_generator_rejects_unknown_tone_and_row():
    gen = ToneGenerator(2, CN)
    with pytest.raises(KeyError, match="no tone 'hum'"):
        gen.start(0, "hum")
    with pytest.raises(IndexError):
        gen.start(5, "dial")


# ---- detector -----------------------------------------------------------------------------
# Where each China tone must be reported, in seconds after it starts (default: all tones on).
WINDOWS = {
    "dial": (1.0, 1.4),          # must outlast ringback's first burst when ringback is enabled
    "busy": (1.05, 1.4),         # two bursts and the pause between them
    "congestion": (2.1, 2.5),
    "ringback": (4.0, 4.6),      # a burst and most of the pause
    "call_waiting": (3.4, 4.0),
    "record": (8.1, 8.8),
    "info": (1.4, 1.9),
    "cng": (0.5, 0.7),
    "ced": (0.5, 0.7),
}


@pytest.mark.parametrize("name", list(WINDOWS))
def test_each_china_tone_is_detected_once(name):
    lead = 0.5
    x = line(silence(lead), play(name, 12))
    events = detect(x)
    assert [e.tone for e in events] == [name]
    lo, hi = WINDOWS[name]
    assert lo <= events[0].sample / RATE - lead <= hi


@pytest.mark.parametrize("name", ["dial", "busy", "ringback", "congestion", "call_waiting", "cng", "ced"])
def test_detected_at_minus_30_dbm0_with_noise(name):
    level = -30.0
    tone = at_level(play(name, 12), level, CN[name].level_dbm0[0])
    x = with_noise(line(silence(0.37), tone), level - 20)       # S/N 20 dB
    events = detect(x)
    assert [e.tone for e in events] == [name]


def test_off_frequency_tone_still_detected():
    n = np.arange(int(6 * RATE))
    x = dbm0_to_rms(-10) * np.sqrt(2) * np.sin(2 * np.pi * 459 * n / RATE)   # +2 %
    gate = (n % 5600) < 2800
    assert [e.tone for e in detect(line(silence(0.2), x * gate))] == ["busy"]


def test_busy_after_hangup_is_reported_in_time_to_clear_within_2s():
    rng = np.random.default_rng(7)
    for _ in range(8):
        start = 1.0 + rng.uniform(0, 0.02)            # any alignment with the blocks
        x = line(vowel_babble(1.0), silence(start - 1.0), play("busy", 4))
        events = detect(x)
        assert [e.tone for e in events] == ["busy"]
        assert events[0].sample / RATE - start <= 1.4


def test_dial_tone_alone_is_reported_after_300ms():
    events = detect(line(silence(0.2), play("dial", 2)), names=["dial"])
    assert [e.tone for e in events] == ["dial"]
    assert 0.3 <= events[0].sample / RATE - 0.2 <= 0.4


def test_reported_once_per_occurrence_and_rearmed():
    x = line(silence(0.3), play("busy", 5), silence(2), play("busy", 3), silence(1), play("dial", 3))
    assert [e.tone for e in detect(x)] == ["busy", "busy", "dial"]


def test_tone_already_playing_when_enabled():
    x = play("busy", 4)[1000:]                       # enabled in the middle of a burst
    assert [e.tone for e in detect(line(x))] == ["busy"]


def test_cadence_tells_busy_from_congestion_from_ringback():
    x = line(silence(0.2), play("congestion", 4), silence(1), play("busy", 3))
    assert [e.tone for e in detect(x, ["busy", "congestion", "ringback"])] == ["congestion", "busy"]


def test_no_tone_on_dtmf():
    digits = "0123456789*#ABCD" * 2
    for on_ms, off_ms in ((100, 100), (350, 350), (500, 3000)):
        x = line(silence(0.2), dtmf_tone(digits[:10], on_ms=on_ms, off_ms=off_ms))
        assert detect(x) == []
    # a held key for 2 s (941 Hz is near the 950 Hz record tone)
    assert detect(line(silence(0.2), dtmf_tone("0", on_ms=2000, off_ms=100))) == []


def test_no_tone_on_speech():
    speech = line(speech_espeak("喂，你好，请问找哪位？我是张经理，请稍等。", "cmn"),
                  speech_espeak("Hello, this is the help desk. How can I help you today?", "en"),
                  vowel_babble(6.0))
    assert detect(np.tile(speech, 3)) == []
    assert detect(with_noise(np.tile(speech, 2), -45)) == []


def test_rows_are_independent():
    names = ["busy", "congestion", "ringback", "dial", "cng", "ced"]
    rows = len(names) + 2
    det = ToneDetector(rows, CN)
    gen = ToneGenerator(rows, CN)
    for r, n in enumerate(names):
        gen.start(r, n)
        det.enable(r)
    det.enable(rows - 2)                    # enabled, silent
    gen.start(rows - 1, "busy")             # playing, not enabled
    events = []
    for _ in range(6 * 50):
        events += det.process(gen.generate())
    assert sorted((e.row, e.tone) for e in events) == sorted(enumerate(names))


def test_us_plan_detection():
    us = TonePlan.load("us")
    for name in ("busy", "dial", "congestion"):
        x = line(silence(0.3), play(name, 6, us))
        assert [e.tone for e in detect(x, plan=us)] == [name]


def test_detector_rejects_bad_input():
    det = ToneDetector(2, CN)
    with pytest.raises(ValueError, match=r"shape \(2, 160\)"):
        det.process(np.zeros((3, 160)))
    with pytest.raises(KeyError, match="no tone 'hum'"):
        det.enable(0, ["busy", "hum"])


def sine(freq, seconds, level_dbm0=-13.0, phase=0.0):
    n = np.arange(int(round(seconds * RATE)))
    return dbm0_to_rms(level_dbm0) * np.sqrt(2) * np.sin(2 * np.pi * freq * n / RATE + phase)


def test_ced_with_phase_reversals_is_detected():
    # V.25 answer tone with a phase reversal every 450 ms
    x = np.concatenate([sine(2100, 0.45, phase=np.pi * (k % 2)) for k in range(7)])
    events = detect(line(silence(0.3), x))
    assert [e.tone for e in events] == ["ced"]
    assert events[0].sample / RATE - 0.3 <= 0.7


def test_cng_needs_its_half_second_burst():
    assert detect(line(silence(0.3), sine(1100, 0.2), silence(3.0), sine(1100, 0.2))) == []
    assert detect(line(silence(0.3), sine(1100, 3.0))) == []        # too long for CNG
    cng = line(silence(0.3), sine(1100, 0.5), silence(3.0), sine(1100, 0.5), silence(1))
    assert [e.tone for e in detect(cng)] == ["cng"]
