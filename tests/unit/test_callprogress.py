"""Call progress analysis of outbound calls on the China plan."""
import shutil
import subprocess

import numpy as np
import pytest

from drivers.media.callprogress import TRANSITIONS, CallProgress, ProgressEvent
from drivers.media.levels import dbm0_to_rms
from drivers.media.tones import ToneGenerator, TonePlan

RATE = 8000
BLOCK = 160
CN = TonePlan.load("cn")


def play(name, seconds, level_dbm0=None):
    gen = ToneGenerator(1, CN)
    gen.start(0, name)
    x = np.concatenate([gen.generate()[0] for _ in range(int(round(seconds * 50)))])
    if level_dbm0 is not None:
        x = x * 10 ** ((level_dbm0 - CN[name].level_dbm0[0]) / 20)
    return x.astype(np.float64)


def silence(seconds):
    return np.zeros(int(round(seconds * RATE)))


def line(*parts):
    x = np.concatenate([np.asarray(p, dtype=np.float64) for p in parts])
    return np.concatenate([x, np.zeros((-len(x)) % BLOCK)])


@pytest.fixture(scope="module")
def hello():
    """A Mandarin greeting from espeak-ng, at 8 kHz."""
    if not (shutil.which("espeak-ng") and shutil.which("sox")):
        pytest.fail("espeak-ng and sox are needed (Debian packages espeak-ng, sox)")
    wav = subprocess.run(["espeak-ng", "-v", "cmn", "--stdout", "喂，你好，哪位？"],
                         check=True, capture_output=True).stdout
    raw = subprocess.run(["sox", "-t", "wav", "-", "-r", "8000", "-t", "raw", "-e", "signed",
                          "-b", "16", "-c", "1", "-"], input=wav, check=True,
                         capture_output=True).stdout
    x = np.frombuffer(raw, dtype=np.int16).astype(np.float64)
    return x[np.argmax(np.abs(x) > 300):]             # from the first sound


def run(x, rows=1, row=0, **options):
    cp = CallProgress(rows, CN, **options)
    cp.start(row)
    events = []
    for i in range(0, len(x), BLOCK):
        block = np.zeros((rows, BLOCK))
        block[row] = x[i:i + BLOCK]
        events += cp.process(block)
    return events


def results(events):
    return [e.result for e in events]


def test_busy():
    ev = run(line(silence(0.8), play("busy", 5)))
    assert results(ev) == ["busy"]
    assert ev[0].sample / RATE - 0.8 <= 1.4


def test_congestion():
    assert results(run(line(silence(0.5), play("congestion", 5)))) == ["congestion"]


def test_ringback_then_voice_answer(hello):
    ev = run(line(silence(0.5), play("ringback", 11), hello, silence(1)))
    assert results(ev) == ["ringback", "answered_voice"]
    assert 4.0 <= ev[0].sample / RATE - 0.5 <= 4.6
    answered_at = 0.5 + 11
    assert 0.1 <= ev[1].sample / RATE - answered_at <= 0.8


def test_voice_answer_after_silence(hello):
    ev = run(line(silence(2), hello))
    assert results(ev) == ["answered_voice"]
    assert ev[0].sample / RATE - 2 <= 0.8


def test_quiet_voice_over_a_noisy_line(hello):
    rng = np.random.default_rng(4)
    x = line(silence(1), play("ringback", 6, -25), hello * 10 ** (-10 / 20), silence(1))
    x = x + rng.normal(0, dbm0_to_rms(-50), len(x))
    assert results(run(x)) == ["ringback", "answered_voice"]


def test_fax_answer_after_ringback():
    n = np.arange(3 * RATE)
    ced = dbm0_to_rms(-13) * np.sqrt(2) * np.sin(2 * np.pi * 2100 * n / RATE)
    ev = run(line(silence(0.5), play("ringback", 6), ced))
    assert results(ev) == ["ringback", "answered_fax"]
    assert ev[1].sample / RATE - 6.5 <= 0.7


def test_no_answer_after_the_configured_rings():
    ev = run(line(silence(0.5), play("ringback", 40)), rings=4)
    assert results(ev) == ["ringback", "no_answer"]
    # the fifth burst starts 4 cycles (20 s) after the first
    assert 20.0 <= ev[1].sample / RATE - 0.5 <= 20.2


def test_no_answer_on_timeout():
    ev = run(line(silence(9)), timeout=8 * RATE)
    assert results(ev) == ["no_answer"]
    assert ev[0].sample == 8 * RATE


def test_ringback_then_busy():
    assert results(run(line(silence(0.5), play("ringback", 6), play("busy", 3)))) == ["ringback", "busy"]


def test_line_noise_and_ringback_are_not_voice():
    rng = np.random.default_rng(1)
    x = line(silence(0.5), play("ringback", 16))
    x = x + rng.normal(0, dbm0_to_rms(-45), len(x))
    assert results(run(x, timeout=15 * RATE)) == ["ringback", "no_answer"]


def test_rows_progress_independently(hello):
    rows = 4
    cp = CallProgress(rows, CN)
    signals = [line(silence(0.5), play("busy", 8)),
               line(silence(0.5), play("ringback", 6), hello, silence(1.5)),
               line(silence(0.5), play("congestion", 8)),
               line(silence(8))]
    n = max(len(s) for s in signals)
    pcm = np.zeros((rows, n))
    for r, s in enumerate(signals):
        pcm[r, :len(s)] = s
    for r in range(3):                       # row 3 is not analysed
        cp.start(r)
    events = []
    for i in range(0, n - BLOCK + 1, BLOCK):
        events += cp.process(pcm[:, i:i + BLOCK])
    got = sorted((e.row, e.result) for e in events)
    assert got == [(0, "busy"), (1, "answered_voice"), (1, "ringback"), (2, "congestion")]
    assert cp.result_state(0) == "done" and cp.result_state(3) == "idle"


def test_every_result_is_reachable_in_the_table():
    from drivers.media.callprogress import RESULTS
    assert {r for r, _ in TRANSITIONS.values()} == set(RESULTS)


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="rings"):
        CallProgress(2, CN, rings=0)
    plan = TonePlan.from_dict({"name": "thin", "tones": {"dial": {"freqs": [400], "level_dbm0": -10}}})
    with pytest.raises(ValueError, match="lacks"):
        CallProgress(2, plan)
    assert ProgressEvent(0, "busy", 0).result == "busy"
