"""Media taps: each tick's received and transmitted audio of chosen rows, handed over to
consumers (recorder streams, live listening, tests) without ever stalling the loop.

A consumer is any object with ``put(row, tick, rx_codes, tx_codes)``; if it also has
``put_batch(tick, rows, rx, tx)`` it gets all of its rows of a tick in one call (rows an
int array of k rows, rx and tx uint8 arrays (k, block) that the consumer may keep). Both
must return at once: queue, drop or send non-blocking. The tapped audio is law-coded:
rx exactly as received from the line (before echo cancelling), tx exactly as sent.

`TapBank` keeps which consumer taps which row and makes the per-tick hand-over one call
per consumer. `TapQueue` is a bounded in-process consumer that counts what it drops.
`pack_batch`/`unpack_batch` give a batch a wire form (a few frames for a ZeroMQ
multipart message) so that a streaming consumer only has to add a socket.
"""
from __future__ import annotations

import collections
import dataclasses
import logging
import struct
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class TapBlock:
    row: int
    tick: int
    rx: np.ndarray       # uint8 (block,) law-coded, as received
    tx: np.ndarray       # uint8 (block,) law-coded, as transmitted


class TapQueue:
    """Bounded FIFO of TapBlocks (at most `maxlen` row-blocks). When full, the oldest
    blocks are dropped and counted, so the producer never waits and a reader always finds
    the most recent audio. A batch is stored as it came (O(1) per tick); TapBlocks are
    made when read."""

    def __init__(self, maxlen: int = 3000):
        if maxlen < 1:
            raise ValueError(f"TapQueue maxlen must be at least 1, got {maxlen}")
        self.maxlen = maxlen
        self._batches: collections.deque[tuple[int, list[int], np.ndarray, np.ndarray]] = \
            collections.deque()
        self._head = 0              # blocks of the first batch already read or dropped
        self._count = 0
        self.dropped = 0
        self.received = 0

    def put(self, row: int, tick: int, rx: np.ndarray, tx: np.ndarray) -> None:
        self._push(int(tick), [int(row)], rx[None], tx[None])

    def put_batch(self, tick: int, rows: np.ndarray, rx: np.ndarray, tx: np.ndarray) -> None:
        self._push(int(tick), np.asarray(rows).tolist(), rx, tx)

    def _push(self, tick: int, rows: list[int], rx: np.ndarray, tx: np.ndarray) -> None:
        k = len(rows)
        if k == 0:
            return
        self._batches.append((tick, rows, rx, tx))
        self._count += k
        self.received += k
        excess = self._count - self.maxlen
        if excess > 0:
            self.dropped += excess
            self._skip(excess)

    def _skip(self, n: int) -> None:
        while n > 0:
            rows = self._batches[0][1]
            left = len(rows) - self._head
            if n < left:
                self._head += n
                self._count -= n
                return
            self._batches.popleft()
            self._head = 0
            self._count -= left
            n -= left

    def get(self) -> TapBlock | None:
        """The oldest block, or None if empty (never waits)."""
        if not self._count:
            return None
        tick, rows, rx, tx = self._batches[0]
        i = self._head
        self._skip(1)
        return TapBlock(rows[i], tick, rx[i], tx[i])

    def drain(self) -> list[TapBlock]:
        out = []
        head = self._head
        for tick, rows, rx, tx in self._batches:
            out.extend(TapBlock(rows[i], tick, rx[i], tx[i]) for i in range(head, len(rows)))
            head = 0
        self._batches.clear()
        self._head = self._count = 0
        return out

    def __len__(self) -> int:
        return self._count


class TapBank:
    """Which consumer taps which row; feeds them all once per tick."""

    def __init__(self, rows: int):
        self.rows = rows
        self._consumer_of: dict[int, Any] = {}
        self._groups: dict[int, tuple[Any, np.ndarray]] | None = {}
        self.errors = 0

    @property
    def active(self) -> bool:
        return bool(self._consumer_of)

    def tap(self, row: int, consumer: Any) -> None:
        if not (hasattr(consumer, "put") or hasattr(consumer, "put_batch")):
            raise TypeError(f"tap consumer {consumer!r} has neither put() nor put_batch()")
        self._consumer_of[row] = consumer
        self._groups = None

    def untap(self, row: int) -> None:
        if self._consumer_of.pop(row, None) is not None:
            self._groups = None

    def consumer(self, row: int) -> Any:
        return self._consumer_of.get(row)

    def _compile(self) -> dict[int, tuple[Any, np.ndarray]]:
        by_consumer: dict[int, tuple[Any, list[int]]] = {}
        for row, c in self._consumer_of.items():
            by_consumer.setdefault(id(c), (c, []))[1].append(row)
        return {k: (c, np.array(sorted(rows), dtype=np.intp))
                for k, (c, rows) in by_consumer.items()}

    def feed(self, tick: int, rx: np.ndarray, tx: np.ndarray) -> None:
        """Hand this tick's audio to every consumer. A consumer that raises is detached
        (logged, counted in `errors`) so that it cannot take the loop down with it."""
        if self._groups is None:
            self._groups = self._compile()
        for key, (consumer, rows) in list(self._groups.items()):
            try:
                batch = getattr(consumer, "put_batch", None)
                if batch is not None:
                    batch(tick, rows, rx[rows], tx[rows])
                else:
                    rxs, txs = rx[rows], tx[rows]
                    for i, row in enumerate(rows.tolist()):
                        consumer.put(row, tick, rxs[i], txs[i])
            except Exception:
                self.errors += 1
                log.exception("tap consumer %r failed; its taps (rows %s) are removed",
                              consumer, rows.tolist())
                for row in rows.tolist():
                    self._consumer_of.pop(row, None)
                self._groups = None


_HEADER = struct.Struct("<qII")     # tick, rows, block


def pack_batch(tick: int, rows: np.ndarray, rx: np.ndarray, tx: np.ndarray) -> list[bytes]:
    """A tap batch as frames: header (tick, k, block), rows as int32, rx, tx."""
    k, block = rx.shape
    return [_HEADER.pack(int(tick), k, block), np.asarray(rows, dtype="<i4").tobytes(),
            np.ascontiguousarray(rx, dtype=np.uint8).tobytes(),
            np.ascontiguousarray(tx, dtype=np.uint8).tobytes()]


def unpack_batch(frames: list[bytes]) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """Inverse of pack_batch; raises ValueError naming what is inconsistent."""
    if len(frames) != 4:
        raise ValueError(f"tap batch needs 4 frames, got {len(frames)}")
    if len(frames[0]) != _HEADER.size:
        raise ValueError(f"tap batch header is {len(frames[0])} bytes, expected {_HEADER.size}")
    tick, k, block = _HEADER.unpack(bytes(frames[0]))
    if len(frames[1]) != 4 * k or len(frames[2]) != k * block or len(frames[3]) != k * block:
        raise ValueError(f"tap batch sizes do not match header (rows {k}, block {block})")
    rows = np.frombuffer(frames[1], dtype="<i4").astype(np.intp)
    rx = np.frombuffer(frames[2], dtype=np.uint8).reshape(k, block)
    tx = np.frombuffer(frames[3], dtype=np.uint8).reshape(k, block)
    return tick, rows, rx, tx
