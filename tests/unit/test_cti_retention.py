"""The retained event buffer: a ring by seq, batches and replay replies built from pieces."""
import pytest

from ctid.cti.retention import (BATCH_TAG, REPLY_EVENTS_TAG, Retention, RetentionError,
                                join_pieces, piece, varint)
from hotline_proto import cti_pb2


def ev_piece(seq, name="Delivered", pad=0):
    return piece(cti_pb2.Event(seq=seq, name=name, epoch="e1", reason="x" * pad).SerializeToString())


def seqs_of(pieces, tag=BATCH_TAG):
    batch = cti_pb2.EventBatch()
    batch.ParseFromString(join_pieces(BATCH_TAG, pieces))
    return [e.seq for e in batch.events]


def test_varint_matches_protobuf_for_lengths_around_the_boundaries():
    for n in (1, 127, 128, 300, 16383, 16384, 70000, 2_000_000):   # 0: an empty field is not sent
        e = cti_pb2.Event(reason="r" * n)
        data = e.SerializeToString()
        # Event.reason is field 16 (two-byte tag 0x82 0x01), then the length varint
        assert data[2:2 + len(varint(n))] == varint(n)


def test_batch_and_replay_encodings_parse_as_protobuf():
    pieces = [ev_piece(s, pad=s * 50) for s in range(1, 6)]     # lengths across 128
    batch = cti_pb2.EventBatch()
    batch.ParseFromString(join_pieces(BATCH_TAG, pieces))
    assert [e.seq for e in batch.events] == [1, 2, 3, 4, 5]
    reply = cti_pb2.Reply()
    reply.ParseFromString(cti_pb2.Reply(ok=True, seq=5, lost=2).SerializeToString()
                          + join_pieces(REPLY_EVENTS_TAG, pieces[3:]))
    assert reply.ok and reply.seq == 5 and reply.lost == 2
    assert [e.seq for e in reply.events] == [4, 5] and reply.events[0].reason == "x" * 200


def test_ring_keeps_the_newest_capacity_events_across_wrap_around():
    r = Retention(10)
    assert (r.first_seq, r.last_seq, len(r)) == (0, 0, 0)
    r.extend(1, [ev_piece(s) for s in range(1, 8)])
    for s in range(8, 13):
        r.append(s, ev_piece(s))
    r.extend(13, [ev_piece(s) for s in range(13, 16)])
    assert (r.first_seq, r.last_seq, len(r)) == (6, 15, 10)
    assert seqs_of(r.pieces(6, 15)) == list(range(6, 16))
    assert seqs_of(r.pieces(9, 11)) == [9, 10, 11]           # across the ring's end
    with pytest.raises(RetentionError, match="not held"):
        r.pieces(5, 7)
    # a batch larger than the ring keeps only its newest part
    r.extend(16, [ev_piece(s) for s in range(16, 41)])
    assert (r.first_seq, r.last_seq) == (31, 40)
    assert seqs_of(r.pieces(31, 40)) == list(range(31, 41))


def test_events_must_be_consecutive():
    r = Retention(4)
    r.append(1, ev_piece(1))
    with pytest.raises(RetentionError, match="consecutive"):
        r.append(3, ev_piece(3))
    with pytest.raises(RetentionError, match="consecutive"):
        r.extend(5, [ev_piece(5)])
    with pytest.raises(RetentionError, match="at least 1"):
        Retention(0)


def test_replay_complete_cut_and_incomplete():
    r = Retention(100)
    r.extend(1, [ev_piece(s) for s in range(1, 251)])        # holds 151..250
    res = r.replay(200, max_events=1000)
    assert res.complete and not res.more and res.lost == 51 and res.first_retained == 151
    assert seqs_of(res.pieces) == list(range(200, 251)) and res.first_seq == 200
    res = r.replay(160, max_events=30)
    assert res.complete and res.more and seqs_of(res.pieces) == list(range(160, 190))
    # the client missed 100..250 but 100..150 are gone
    res = r.replay(100, max_events=1000)
    assert not res.complete and res.lost == 151 and res.first_retained == 151
    assert seqs_of(res.pieces) == list(range(151, 251))       # what is left, if it wants it
    res = r.replay(100, max_events=1000, all_or_nothing=True)
    assert not res.complete and res.pieces == [] and res.lost == 151
    # nothing missed
    res = r.replay(251, max_events=10)
    assert res.complete and res.lost == 0 and res.pieces == []
