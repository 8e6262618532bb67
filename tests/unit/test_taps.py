"""Taps: exact audio both directions, one batched hand-over per tick, never a stall."""
import numpy as np
import pytest

from drivers.media import g711
from drivers.media.engine import MediaEngine, MediaError
from drivers.media.taps import TapBlock, TapQueue, pack_batch, unpack_batch

BLOCK = 160


def random_rx(rng, rows):
    return rng.integers(0, 256, size=(rows, BLOCK), dtype=np.uint8)


def test_taps_receive_exact_audio_both_directions():
    eng = MediaEngine(4, BLOCK)
    eng.bridge(0, 1)
    eng.play(2, (np.arange(BLOCK * 3) % 50 * 300).astype(np.int16))
    q = TapQueue(maxlen=100)
    for row in (0, 1, 2):
        eng.tap(row, q)
    rng = np.random.default_rng(7)
    sent, got = [], []
    for _ in range(3):
        rx = random_rx(rng, 4)
        tx, _ = eng.tick(rx)
        sent.append((rx.copy(), tx.copy()))
    blocks = q.drain()
    assert len(blocks) == 9
    for b in blocks:
        rx, tx = sent[b.tick]
        assert np.array_equal(b.rx, rx[b.row])
        assert np.array_equal(b.tx, tx[b.row])
    assert np.array_equal(blocks[0].tx, blocks[1].rx)     # tick 0: row 0 hears row 1
    assert sorted({b.row for b in blocks}) == [0, 1, 2]


class BatchRecorder:
    def __init__(self):
        self.calls = []

    def put_batch(self, tick, rows, rx, tx):
        self.calls.append((tick, rows.tolist(), rx.shape, tx.shape))


class PerRow:
    def __init__(self):
        self.items = []

    def put(self, row, tick, rx, tx):
        self.items.append((row, tick))


def test_one_batched_call_per_consumer_per_tick_and_per_row_fallback():
    eng = MediaEngine(8, BLOCK)
    batch, per_row = BatchRecorder(), PerRow()
    for row in (1, 3, 6):
        eng.tap(row, batch)
    eng.tap(5, per_row)
    eng.tap(2, per_row)
    rx = np.full((8, BLOCK), g711.ALAW_SILENCE, dtype=np.uint8)
    for _ in range(2):
        eng.tick(rx)
    assert batch.calls == [(0, [1, 3, 6], (3, BLOCK), (3, BLOCK)),
                           (1, [1, 3, 6], (3, BLOCK), (3, BLOCK))]
    assert sorted(per_row.items) == [(2, 0), (2, 1), (5, 0), (5, 1)]
    eng.untap(3)
    eng.tick(rx)
    assert batch.calls[-1][1] == [1, 6]


def test_unread_queue_drops_oldest_and_counts_while_the_loop_runs_on():
    eng = MediaEngine(3, BLOCK)
    q = TapQueue(maxlen=10)
    eng.tap(0, q)
    eng.tap(2, q)
    rng = np.random.default_rng(1)
    last = None
    for _ in range(200):                    # nobody reads: the engine never waits
        rx = random_rx(rng, 3)
        eng.tick(rx)
        last = rx
    assert len(q) == 10
    assert q.received == 400 and q.dropped == 390
    blocks = q.drain()
    assert [b.tick for b in blocks] == [195, 195, 196, 196, 197, 197, 198, 198, 199, 199]
    assert np.array_equal(blocks[-1].rx, last[2])


def test_failing_consumer_is_detached_and_the_engine_keeps_going():
    class Broken:
        def put_batch(self, *a):
            raise RuntimeError("disk full")

    eng = MediaEngine(2, BLOCK)
    good = TapQueue(10)
    eng.tap(0, Broken())
    eng.tap(1, good)
    rx = np.full((2, BLOCK), g711.ALAW_SILENCE, dtype=np.uint8)
    for _ in range(3):
        eng.tick(rx)
    assert eng.taps.errors == 1
    assert eng.taps.consumer(0) is None
    assert len(good) == 3
    with pytest.raises(MediaError, match="neither put"):
        eng.tap(0, object())


def test_queue_get_order_and_limits():
    q = TapQueue(4)
    rx = np.arange(5 * BLOCK, dtype=np.uint8).reshape(5, BLOCK)
    q.put_batch(7, np.array([0, 1, 2]), rx[:3], rx[:3])
    q.put(4, 8, rx[3], rx[4])
    q.put(9, 9, rx[4], rx[4])
    assert q.dropped == 1
    got = [q.get() for _ in range(5)]
    assert [(b.row, b.tick) for b in got[:4]] == [(1, 7), (2, 7), (4, 8), (9, 9)]
    assert got[4] is None
    assert isinstance(got[0], TapBlock) and np.array_equal(got[0].rx, rx[1])
    with pytest.raises(ValueError, match="maxlen"):
        TapQueue(0)


def test_wire_form_round_trip_and_refusals():
    rows = np.array([3, 17])
    rx = np.arange(2 * BLOCK, dtype=np.uint8).reshape(2, BLOCK)
    tx = rx[::-1].copy()
    frames = pack_batch(42, rows, rx, tx)
    tick, r2, rx2, tx2 = unpack_batch(frames)
    assert tick == 42 and r2.tolist() == [3, 17]
    assert np.array_equal(rx2, rx) and np.array_equal(tx2, tx)
    with pytest.raises(ValueError, match="4 frames"):
        unpack_batch(frames[:3])
    with pytest.raises(ValueError, match="do not match"):
        unpack_batch([frames[0], frames[1], frames[2][:-1], frames[3]])
