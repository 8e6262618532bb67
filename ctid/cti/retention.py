"""The retained event buffer: the last N published events, by sequence number, for Replay.

Events are kept as *pieces*: the varint length followed by the event's serialized bytes.
A protobuf repeated message field is the tag byte followed by such a piece, once per
element, so a batch or a replay reply is built by joining pieces with the tag byte as
separator - in C, without parsing or re-serializing a single event:

    EventBatch (events = 1)  ->  b"\\x0a" + b"\\x0a".join(pieces)
    Reply.events (= 9)       ->  b"\\x4a" + b"\\x4a".join(pieces)

The buffer is a ring indexed by seq modulo capacity; seq numbers are consecutive.
"""
from __future__ import annotations

import dataclasses

BATCH_TAG = b"\x0a"        # EventBatch.events: field 1, length-delimited
REPLY_EVENTS_TAG = b"\x4a"  # Reply.events: field 9, length-delimited

_SMALL_VARINTS = [bytes([n]) if n < 0x80 else bytes([(n & 0x7F) | 0x80, n >> 7])
                  for n in range(1 << 14)]


def varint(n: int) -> bytes:
    if n < (1 << 14):
        return _SMALL_VARINTS[n]
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def piece(event_bytes: bytes) -> bytes:
    """One serialized event as a repeated-field element without its tag."""
    return varint(len(event_bytes)) + event_bytes


def join_pieces(tag: bytes, pieces: list[bytes]) -> bytes:
    return tag + tag.join(pieces) if pieces else b""


@dataclasses.dataclass
class ReplayResult:
    pieces: list[bytes]
    first_retained: int        # oldest seq still held (0 when nothing is held)
    last_seq: int              # the newest seq published
    lost: int                  # events from from_seq to last_seq
    complete: bool             # all of them are still held
    more: bool                 # cut at max_events; the client asks again
    first_seq: int = 0         # seq of the first piece returned (0 when none)


class RetentionError(ValueError):
    pass


class Retention:
    def __init__(self, capacity: int):
        if capacity < 1:
            raise RetentionError(f"retention capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self._ring: list[bytes | None] = [None] * capacity
        self.last_seq = 0

    @property
    def first_seq(self) -> int:
        """Oldest seq held, 0 when empty."""
        if self.last_seq == 0:
            return 0
        return max(1, self.last_seq - self.capacity + 1)

    def __len__(self) -> int:
        return 0 if self.last_seq == 0 else self.last_seq - self.first_seq + 1

    def append(self, seq: int, p: bytes) -> None:
        if seq != self.last_seq + 1:
            raise RetentionError(f"retained events must be consecutive: got seq {seq} "
                                 f"after {self.last_seq}")
        self._ring[seq % self.capacity] = p
        self.last_seq = seq

    def extend(self, first_seq: int, pieces: list[bytes]) -> None:
        """Append consecutive pieces starting at first_seq (one slice assignment or two)."""
        if not pieces:
            return
        if first_seq != self.last_seq + 1:
            raise RetentionError(f"retained events must be consecutive: got seq {first_seq} "
                                 f"after {self.last_seq}")
        if len(pieces) > self.capacity:
            drop = len(pieces) - self.capacity
            pieces, first_seq = pieces[drop:], first_seq + drop
        start = first_seq % self.capacity
        head = min(len(pieces), self.capacity - start)
        self._ring[start:start + head] = pieces[:head]
        if head < len(pieces):
            self._ring[:len(pieces) - head] = pieces[head:]
        self.last_seq = first_seq + len(pieces) - 1

    def pieces(self, first: int, last: int) -> list[bytes]:
        """Pieces for seq first..last inclusive; both must be held."""
        if first > last:
            return []
        if first < self.first_seq or last > self.last_seq:
            raise RetentionError(f"seq {first}..{last} is not held "
                                 f"(held: {self.first_seq}..{self.last_seq})")
        a, b = first % self.capacity, last % self.capacity
        if a <= b:
            return self._ring[a:b + 1]
        return self._ring[a:] + self._ring[:b + 1]

    def replay(self, from_seq: int, max_events: int, all_or_nothing: bool = False) -> ReplayResult:
        """What a client that has seen everything before from_seq is missing."""
        last = self.last_seq
        from_seq = max(1, from_seq)
        lost = max(0, last - from_seq + 1)
        first_held = self.first_seq
        complete = lost == 0 or from_seq >= first_held
        result = ReplayResult(pieces=[], first_retained=first_held, last_seq=last, lost=lost,
                              complete=complete, more=False)
        if lost == 0 or (all_or_nothing and not complete) or first_held == 0:
            return result
        start = max(from_seq, first_held)
        end = min(last, start + max(1, max_events) - 1)
        result.pieces = self.pieces(start, end)
        result.more = end < last
        result.first_seq = start
        return result
