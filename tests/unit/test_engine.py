"""MediaEngine end to end: detection, playback, caller ID loop-back, barge-in, refusals."""
import numpy as np
import pytest

from drivers.media import g711
from drivers.media.dtmf import dtmf_tone
from drivers.media.engine import (CallerIdEvent, DigitEvent, MediaEngine, MediaError, PlayDone,
                                  R2Event, ToneEvent)

BLOCK = 160
SIL = g711.ALAW_SILENCE


def quiet(x) -> bool:
    """A-law silence decodes to +-8."""
    return bool((np.abs(x) <= 8).all())


def silence(rows):
    return np.full((rows, BLOCK), SIL, dtype=np.uint8)


def feed(eng, row_audio: dict, ticks: int, rows: int):
    """Tick with int16 audio on some rows (silence elsewhere); returns (tx pcm, events)."""
    txs, events = [], []
    for t in range(ticks):
        rx = silence(rows)
        for row, audio in row_audio.items():
            seg = audio[t * BLOCK:(t + 1) * BLOCK]
            if seg.size:
                rx[row, :seg.size] = g711.encode("alaw", seg)
        tx, ev = eng.tick(rx)
        txs.append(g711.decode("alaw", tx).astype(np.float64))
        events += ev
    return np.concatenate(txs, axis=1), events


def test_dtmf_audio_on_a_row_gives_digit_events_with_sample_times():
    eng = MediaEngine(6, BLOCK)
    audio = np.concatenate([np.zeros(800, np.int16), dtmf_tone("159#", on_ms=80, off_ms=70)])
    _, events = feed(eng, {4: audio}, 60, 6)
    digits = [e for e in events if isinstance(e, DigitEvent)]
    assert [d.digit for d in digits] == list("159#")
    assert {d.row for d in digits} == {4}
    starts = [d.start for d in digits]
    for i, s in enumerate(starts):                 # each key starts every 150 ms
        assert abs(s - (800 + i * 1200)) <= 40
    assert all(abs(d.duration - 640) <= 80 for d in digits)


def envelope_on(x: np.ndarray, threshold: float = 1000.0) -> np.ndarray:
    """Per 10 ms: is a tone there?"""
    frames = x[: x.size // 80 * 80].reshape(-1, 80)
    return np.abs(frames).max(axis=1) > threshold


def test_busy_tone_playback_has_the_china_cadence_and_frequency():
    eng = MediaEngine(3, BLOCK)
    eng.play_tone(2, "busy")
    tx, _ = feed(eng, {}, 150, 3)                  # 3 s
    assert quiet(tx[:2])
    x = tx[2]
    on = envelope_on(x)
    edges = np.flatnonzero(np.diff(on.astype(int))) + 1
    runs = np.diff(np.concatenate([[0], edges, [on.size]]))
    assert on[0]
    assert all(abs(r - 35) <= 1 for r in runs[:-1])        # 350 ms on, 350 ms off
    burst = x[: 2800]
    spec = np.abs(np.fft.rfft(burst * np.hanning(burst.size)))
    assert abs(np.argmax(spec) * 8000 / burst.size - 450) < 5
    eng.stop(2)
    tx, _ = feed(eng, {}, 5, 3)
    assert quiet(tx)


def test_tone_detection_only_where_enabled():
    eng = MediaEngine(4, BLOCK)
    gen = MediaEngine(1, BLOCK)
    gen.play_tone(0, "busy")
    ring, _ = feed(gen, {}, 150, 1)
    busy = ring[0].astype(np.int16)
    eng.detect_tones(1)
    _, events = feed(eng, {1: busy, 2: busy}, 150, 4)
    tones = [e for e in events if isinstance(e, ToneEvent)]
    assert [(e.row, e.tone) for e in tones] == [(1, "busy")]


def test_fsk_caller_id_sent_on_one_row_is_received_on_another_looped_back():
    eng = MediaEngine(4, BLOCK)
    eng.receive_callerid(3)
    eng.send_callerid(0, "13800138000", name="ZHANG SAN", when="11231530")
    rx = silence(4)
    events = []
    for _ in range(120):
        tx, ev = eng.tick(rx)
        events += ev
        rx = silence(4)
        rx[3] = tx[0]                              # the line loops row 0 to row 3
    cids = [e for e in events if isinstance(e, CallerIdEvent)]
    assert cids == [CallerIdEvent(3, "13800138000", "ZHANG SAN", "11231530", None)]
    done = [e for e in events if isinstance(e, PlayDone)]
    assert done == [PlayDone(0, "callerid", False)]


def test_send_dtmf_is_detected_on_a_looped_back_row():
    eng = MediaEngine(2, BLOCK)
    eng.send_dtmf(0, "0123456789*#")
    rx = silence(2)
    events = []
    for _ in range(140):
        tx, ev = eng.tick(rx)
        events += ev
        rx = silence(2)
        rx[1] = tx[0]
    assert "".join(e.digit for e in events if isinstance(e, DigitEvent)) == "0123456789*#"
    assert [e for e in events if isinstance(e, PlayDone)] == [PlayDone(0, "dtmf", False)]


def test_barge_in_stops_the_prompt_at_key_down_and_names_the_digit():
    eng = MediaEngine(3, BLOCK)
    prompt = (8000 * np.sin(2 * np.pi * 440 * np.arange(8000 * 3) / 8000)).astype(np.int16)
    eng.play(0, prompt, tag="menu", barge_in=True)
    eng.play(1, prompt, tag="notice", barge_in=False)
    key = np.concatenate([np.zeros(4000, np.int16), dtmf_tone("7", on_ms=120, off_ms=0)])
    tx, events = feed(eng, {0: key, 1: key}, 60, 3)
    on0 = envelope_on(tx[0])
    stop_at = np.flatnonzero(~on0)[0] * 80
    assert 4000 < stop_at < 4000 + 960             # silent before the key is released
    assert not on0[stop_at // 80:].any()
    assert envelope_on(tx[1]).all()                # no barge-in: keeps playing
    plays = [e for e in events if isinstance(e, PlayDone)]
    assert plays == [PlayDone(0, "menu", True, "7")]
    digits = [(e.row, e.digit) for e in events if isinstance(e, DigitEvent)]
    assert digits == [(0, "7"), (1, "7")]
    i_done = events.index(plays[0])
    assert events[i_done + 1] == next(e for e in events if isinstance(e, DigitEvent) and e.row == 0)


def test_new_prompt_replaces_the_old_one_and_stop_reports_interruption():
    eng = MediaEngine(2, BLOCK)
    long = np.full(8000, 5000, np.int16)
    eng.play(1, long, tag="a")
    _, ev1 = feed(eng, {}, 3, 2)
    eng.play(1, long, tag="b")
    _, ev2 = feed(eng, {}, 2, 2)
    eng.stop(1)
    tx, ev3 = feed(eng, {}, 2, 2)
    assert ev1 == [] and ev2 == [PlayDone(1, "a", True)] and ev3 == [PlayDone(1, "b", True)]
    assert quiet(tx)


def test_prompt_tone_and_bridge_on_one_row_are_summed():
    eng = MediaEngine(3, BLOCK)
    eng.bridge(0, 1)
    eng.play(0, np.full(BLOCK, 1000, np.int16))
    talk = np.full(BLOCK, 2000, np.int16)
    tx, _ = feed(eng, {1: talk}, 1, 3)
    want = g711.decode("alaw", g711.encode("alaw", np.array([1000 + g711.decode(
        "alaw", g711.encode("alaw", np.array([2000], np.int16)))[0]], np.int16)))[0]
    assert np.all(tx[0] == want)


def test_bad_requests_are_refused_and_change_nothing():
    eng = MediaEngine(2, BLOCK)
    with pytest.raises(MediaError, match="row 2 is out of range"):
        eng.play_tone(2, "busy")
    with pytest.raises(MediaError, match="no tone 'beep'"):
        eng.play_tone(0, "beep")
    with pytest.raises(MediaError, match="DTMF"):
        eng.send_dtmf(0, "12x")
    with pytest.raises(MediaError, match="caller ID"):
        eng.send_callerid(0, "12-34")
    with pytest.raises(MediaError, match="1-D"):
        eng.play(0, np.zeros((2, 10), np.int16))
    with pytest.raises(MediaError, match="law-coded"):
        eng.play(0, np.zeros(10, np.uint8))
    with pytest.raises(MediaError, match="shape"):
        eng.tick(np.zeros((2, 80), np.uint8))
    with pytest.raises(MediaError, match="uint8"):
        eng.tick(np.zeros((2, BLOCK), np.int16))
    with pytest.raises(MediaError, match="row must be an integer"):
        eng.stop("0")
    tx, events = eng.tick(silence(2))
    assert events == [] and (tx == SIL).all()


def echo_call(cancel: bool, seconds: int = 5):
    """Row 0 is an analog line bridged to row 1. What row 0 sends comes back as echo
    (one block late plus 20 samples, through a short hybrid response, -10 dB); from 3 s
    on the local talker on row 0 speaks too (double talk). Returns what row 1 hears and
    the local talker's audio, aligned."""
    rng = np.random.default_rng(5)
    t = np.arange(8000 * seconds) / 8000
    far = rng.normal(0, 1500, t.size) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    near = np.where(t >= 3, 1200 * np.sin(2 * np.pi * 330 * t) * np.sin(2 * np.pi * 2.5 * t), 0)
    near = np.concatenate([near, np.zeros(BLOCK)])
    eng = MediaEngine(2, BLOCK)
    eng.play(0, far.astype(np.int16))
    eng.bridge(0, 1)
    if cancel:
        eng.echo_cancel(0)
    h = np.zeros(28)
    h[20:] = 0.3 * np.array([0.2, 1.0, 0.5, -0.3, 0.1, 0.05, -0.02, 0.01])
    sent = np.zeros(3 * BLOCK)
    rx = silence(2)
    heard = []
    for k in range(seconds * 50):
        tx, _ = eng.tick(rx)
        heard.append(g711.decode("alaw", tx[1]).astype(np.float64))
        sent = np.concatenate([sent[BLOCK:], g711.decode("alaw", tx[0])])
        line = np.convolve(sent, h)[2 * BLOCK:3 * BLOCK] + near[(k + 1) * BLOCK:(k + 2) * BLOCK]
        rx = silence(2)
        rx[0] = g711.encode("alaw", np.clip(np.rint(line), -32768, 32767).astype(np.int16))
    heard = np.concatenate(heard)
    return heard[BLOCK:], near[BLOCK:heard.size]     # rx of tick k is heard in tick k


def test_echo_cancelling_removes_our_echo_and_keeps_the_local_talker():
    plain, near = echo_call(False)
    clean, _ = echo_call(True)
    echo_only = slice(2 * 8000, 3 * 8000 - BLOCK)     # after 2 s of learning
    before = np.sqrt(np.mean(plain[echo_only] ** 2))
    after = np.sqrt(np.mean(clean[echo_only] ** 2))
    assert 20 * np.log10(before / after) > 25
    talk = slice(3 * 8000 + BLOCK, None)
    assert np.corrcoef(clean[talk], near[talk])[0, 1] > 0.99
    residual = clean[talk] - near[talk]
    assert np.sqrt(np.mean(residual ** 2)) < 0.1 * np.sqrt(np.mean(near[talk] ** 2))


def test_r2_compelled_signalling_between_two_looped_rows():
    """Row 0 is the outgoing register (sends forward, hears backward), row 1 the incoming
    one; each row's tx is the other's rx. One compelled cycle: forward 5 on, backward A-1
    on, forward off, backward off."""
    eng = MediaEngine(3, BLOCK)
    eng.r2_detect(0, "backward")
    eng.r2_detect(1, "forward")
    eng.r2_send(0, 5)
    rx = silence(3)
    seen = []
    for _ in range(40):
        tx, events = eng.tick(rx)
        for e in events:
            if isinstance(e, R2Event):
                seen.append((e.row, e.signal))
                if (e.row, e.signal) == (1, 5):
                    eng.r2_send(1, 1)          # send next digit
                elif (e.row, e.signal) == (0, 1):
                    eng.r2_send(0, None)
                elif (e.row, e.signal) == (1, 0):
                    eng.r2_send(1, None)
        rx = silence(3)
        rx[0], rx[1] = tx[1], tx[0]
    assert seen == [(1, 5), (0, 1), (1, 0), (0, 0)]
    with pytest.raises(MediaError, match="r2_detect"):
        eng.r2_send(2, 3)
    with pytest.raises(MediaError, match="1..15"):
        eng.r2_send(0, 16)
    with pytest.raises(MediaError, match="direction"):
        eng.r2_detect(0, "sideways")
