"""MFC/R2 two-of-six signals: the frequency table, detection of every signal in both
directions with both edges, receiver limits as cited for Q.442, a compelled exchange
between two registers, and the generator."""
from __future__ import annotations

import numpy as np
import pytest

from drivers.media import g711
from drivers.media.levels import dbm0_to_peak
from drivers.media.r2mf import (BACKWARD_HZ, FORWARD_HZ, PAIRS, R2MfDetector, R2MfGenerator,
                                R2Signal, signal_frequencies)

RATE = 8000
BLOCK = 160


def pair(direction: str, signal: int, ms: float, levels=(-8.0, -8.0), dev_hz=(0.0, 0.0)):
    f1, f2 = signal_frequencies(direction, signal)
    t = np.arange(int(round(ms * 8))) / RATE
    return (dbm0_to_peak(levels[0]) * np.sin(2 * np.pi * (f1 + dev_hz[0]) * t)
            + dbm0_to_peak(levels[1]) * np.sin(2 * np.pi * (f2 + dev_hz[1]) * t))


def run(x: np.ndarray, direction: str):
    """[(signal, sample, end of the block that reported it)] for one row, via A-law."""
    x = np.concatenate([x, np.zeros(1600)])
    x = np.pad(x, (0, -x.size % BLOCK))
    x = g711.alaw_decode(g711.alaw_encode(np.clip(np.round(x), -32768, 32767)))
    det = R2MfDetector(1, direction)
    out = []
    for t in range(0, x.size, BLOCK):
        out += [(e.signal, e.sample, t + BLOCK) for e in det.process(x[t:t + BLOCK].reshape(1, -1))]
    return out


def test_the_q441_frequency_table():
    assert FORWARD_HZ == (1380.0, 1500.0, 1620.0, 1740.0, 1860.0, 1980.0)
    assert BACKWARD_HZ == (1140.0, 1020.0, 900.0, 780.0, 660.0, 540.0)
    # Signals 1..10: the five lower frequencies two at a time, in R1 code order; 11..15:
    # each of those five with the sixth.
    assert PAIRS[:10] == ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3), (0, 4), (1, 4),
                          (2, 4), (3, 4))
    assert PAIRS[10:] == ((0, 5), (1, 5), (2, 5), (3, 5), (4, 5))
    assert signal_frequencies("forward", 15) == (1860.0, 1980.0)
    assert signal_frequencies("backward", 1) == (1140.0, 1020.0)


@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_all_15_signals_start_and_end_on_time(direction):
    for signal in range(1, 16):
        lead = 400 + 23 * signal                                        # various alignments
        x = np.concatenate([np.zeros(lead), pair(direction, signal, 150)])
        events = run(x, direction)
        assert [e[0] for e in events] == [signal, 0], signal
        (_, on_at, on_seen), (_, off_at, off_seen) = events
        assert abs(on_at - lead) <= 40 and abs(off_at - (lead + 1200)) <= 40    # 5 ms
        assert on_seen - lead <= 45 * 8 and off_seen - (lead + 1200) <= 45 * 8


@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_all_signals_on_many_rows_at_once(direction):
    gen = R2MfGenerator(15, direction)
    det = R2MfDetector(15, direction)
    events = []
    for tick in range(30):
        if tick == 2:
            for row in range(15):
                gen.set(row, row + 1)
        if tick == 12:
            for row in range(15):
                gen.set(row, None)
        events += det.process(np.round(gen.generate()).astype(np.int16))
    for row in range(15):
        assert [e.signal for e in events if e.row == row] == [row + 1, 0]


@pytest.mark.parametrize("level", [-5.0, -20.0, -35.0])
def test_levels_from_minus_5_to_minus_35_dbm0_operate(level):
    assert [e[0] for e in run(pair("backward", 7, 150, (level, level)), "backward")] == [7, 0]


def test_signals_far_below_the_range_do_not_operate():
    assert run(pair("backward", 7, 150, (-45.0, -45.0)), "backward") == []


@pytest.mark.parametrize("dev", [(10.0, 10.0), (-10.0, -10.0), (10.0, -10.0)])
def test_frequency_errors_of_10_hz_operate(dev):
    assert [e[0] for e in run(pair("forward", 5, 150, dev_hz=dev), "forward")] == [5, 0]


@pytest.mark.parametrize("signal,diff", [(1, 5.0), (10, 5.0), (7, 7.0), (11, 7.0)])
def test_level_difference_up_to_5_db_adjacent_7_db_apart_operates(signal, diff):
    assert [e[0] for e in run(pair("forward", signal, 150, (-5.0, -5.0 - diff)), "forward")] \
        == [signal, 0]


def test_a_20_db_level_difference_does_not_operate():
    assert run(pair("forward", 7, 150, (-5.0, -25.0)), "forward") == []
    assert run(pair("forward", 7, 150, (-25.0, -5.0)), "forward") == []


@pytest.mark.parametrize("ms", [5, 7])
def test_signals_shorter_than_7_ms_do_not_operate(ms):
    assert run(pair("forward", 9, ms, (-5.0, -5.0)), "forward") == []


@pytest.mark.parametrize("gap_ms", [3, 5, 7])
def test_interruptions_up_to_7_ms_do_not_release(gap_ms):
    for at in (400, 617, 803):
        x = pair("forward", 4, 250)
        x[at:at + gap_ms * 8] = 0.0
        assert [e[0] for e in run(x, "forward")] == [4, 0], at


def test_three_frequencies_or_one_do_not_operate():
    t = np.arange(1200) / RATE
    three = sum(dbm0_to_peak(-8) * np.sin(2 * np.pi * f * t) for f in FORWARD_HZ[:3])
    one = dbm0_to_peak(-8) * np.sin(2 * np.pi * FORWARD_HZ[2] * t)
    assert run(three, "forward") == []
    assert run(one, "forward") == []


def test_the_other_directions_signals_are_not_seen():
    assert run(pair("backward", 6, 200), "forward") == []
    assert run(pair("forward", 6, 200), "backward") == []


def test_a_change_of_signal_without_a_pause_ends_one_and_starts_the_other():
    x = np.concatenate([pair("forward", 3, 150), pair("forward", 12, 150)])
    assert [e[0] for e in run(x, "forward")] == [3, 0, 12, 0]


def test_a_compelled_exchange_between_two_registers():
    """The outgoing register sends each digit until the incoming one answers A-1; each
    stops when it sees the other stop. Both sides hear their own tones as -20 dB echo."""
    digits = [8, 6, 1, 3, 10, 5, 5, 2]
    fwd_gen, bwd_gen = R2MfGenerator(1, "forward"), R2MfGenerator(1, "backward")
    fwd_det, bwd_det = R2MfDetector(1, "forward"), R2MfDetector(1, "backward")
    echo = 10 ** (-20 / 20)
    received, cycle_ticks = [], []
    state_out, state_in = "send", "wait"
    todo = list(digits)
    fwd_gen.set(0, todo[0])
    start = 0
    for tick in range(400):
        f, b = fwd_gen.generate(), bwd_gen.generate()
        at_in = np.round(f + echo * b).astype(np.int16)                 # incoming side hears
        at_out = np.round(b + echo * f).astype(np.int16)
        for e in fwd_det.process(at_in):
            if e.signal and state_in == "wait":
                received.append(e.signal)
                bwd_gen.set(0, 1)                                       # send next
                state_in = "answering"
            elif not e.signal and state_in == "answering":
                bwd_gen.set(0, None)
                state_in = "wait"
        for e in bwd_det.process(at_out):
            if e.signal == 1 and state_out == "send":
                fwd_gen.set(0, None)
                state_out = "stopped"
            elif not e.signal and state_out == "stopped":
                todo.pop(0)
                cycle_ticks.append(tick - start)
                start = tick
                if not todo:
                    break
                fwd_gen.set(0, todo[0])
                state_out = "send"
    assert received == digits
    assert len(cycle_ticks) == len(digits)
    assert max(cycle_ticks) * 20 <= 240        # four edges, each seen within 60 ms


def test_enable_limits_detection_to_enabled_rows_and_sample_is_kept():
    gen = R2MfGenerator(4, "forward")
    det = R2MfDetector(4, "forward")
    det.sample = 16_000
    det.enable(2)
    for row in range(4):
        gen.set(row, 9)
    events = []
    for _ in range(10):
        events += det.process(np.round(gen.generate()).astype(np.int16))
    assert [(e.row, e.signal) for e in events] == [(2, 9)]
    assert 16_000 <= events[0].sample < 16_000 + 80
    assert det.sample == 16_000 + 10 * BLOCK
    det.disable(2)
    for _ in range(5):
        assert det.process(np.zeros((4, BLOCK), dtype=np.int16)) == []


def test_generator_levels_phase_and_silence():
    gen = R2MfGenerator(3, "backward")
    gen.set(1, 15)                                       # 660 + 540 Hz
    blocks = np.concatenate([gen.generate() for _ in range(10)], axis=1)
    assert blocks.dtype == np.float32 and blocks.shape == (3, 1600)
    assert not blocks[0].any() and not blocks[2].any()
    t = np.arange(1600) / RATE
    for f in (660.0, 540.0):
        amp = 2 * abs(np.sum(blocks[1] * np.exp(-2j * np.pi * f * t))) / 1600
        assert amp == pytest.approx(dbm0_to_peak(-8.0), rel=0.01)   # continuous phase
    gen.set(1, None)
    assert not gen.generate().any()
    loud = R2MfGenerator(1, "forward", level_dbm0=-5.0)
    loud.set(0, 1)
    x = np.concatenate([loud.generate()[0] for _ in range(5)])
    t = np.arange(x.size) / RATE
    assert 2 * abs(np.sum(x * np.exp(-2j * np.pi * 1380 * t))) / x.size == \
        pytest.approx(dbm0_to_peak(-5.0), rel=0.01)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="'sideways'"):
        R2MfDetector(2, "sideways")
    with pytest.raises(ValueError, match="'up'"):
        R2MfGenerator(2, "up")
    gen = R2MfGenerator(2, "forward")
    for bad in (16, -1, 2.5, True):
        with pytest.raises(ValueError, match="1..15"):
            gen.set(0, bad)
    with pytest.raises(IndexError):
        gen.set(2, 1)
    det = R2MfDetector(2, "forward")
    with pytest.raises(ValueError, match=r"shape \(2, 160\)"):
        det.process(np.zeros((2, 80), dtype=np.int16))
    with pytest.raises(IndexError):
        det.enable(5)
    with pytest.raises(ValueError, match="8000 Hz"):
        R2MfDetector(2, "forward", rate=16000)
    assert R2Signal(0, 1, 2) == R2Signal(0, 1, 2)
