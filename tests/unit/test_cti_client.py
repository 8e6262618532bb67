"""Gap detection and recovery: the client's Stream exactly, then the library against a real
server socket (PUB with a small high-water mark, so a client that does not read loses events)."""
import queue
import threading
import time

import pytest
import zmq

from ctid.cti.client import CtiClient, SnapshotTaken, State, Stream
from ctid.cti.server import CtiServer, CtiSettings, serve
from hotline_proto import cti_pb2


def batch(first, n, epoch="e1"):
    return [cti_pb2.Event(seq=s, epoch=epoch, name="Delivered", call_id=f"C{s}")
            for s in range(first, first + n)]


def replay_reply(first, last, seq, *, complete=True, more=False, epoch="e1"):
    return cti_pb2.Reply(ok=True, seq=seq, epoch=epoch, complete=complete, more=more,
                         lost=seq - first + 1, events=batch(first, last - first + 1, epoch))


def seqs(items):
    return [i.seq for i in items if isinstance(i, cti_pb2.Event) and i.name == "Delivered"]


def reports(items):
    return [(i.reason, i.lost) for i in items if isinstance(i, cti_pb2.Event) and i.name == "SystemStatus"]


# ---- the Stream, exactly -------------------------------------------------------------------
def test_in_order_events_pass_and_duplicates_are_dropped():
    s, out = Stream(), []
    assert s.on_batch(batch(1, 3), 0, out) == []
    assert s.on_batch(batch(2, 3), 0, out) == []       # 2, 3 again, then 4
    assert s.on_batch(batch(1, 2), 0, out) == []
    assert seqs(out) == [1, 2, 3, 4] and s.stats.gaps_detected == 0


def test_gap_is_reported_replayed_and_what_arrived_meanwhile_follows_in_order():
    s, out = Stream(), []
    s.on_batch(batch(1, 3), 0, out)
    assert s.on_batch(batch(7, 2), 0, out) == [("replay", 4)]
    assert reports(out) == [("messagesLost", 3)] and s.state == State.REPLAYING
    s.on_batch(batch(9, 1), 0, out)                    # buffered while the replay is out
    assert seqs(out) == [1, 2, 3]
    assert s.on_reply(replay_reply(4, 9, 9), 0, out) == []
    assert seqs(out) == list(range(1, 10))
    s.on_batch(batch(10, 1), 0, out)
    assert seqs(out) == list(range(1, 11))
    st = s.stats
    assert (st.gaps_detected, st.gaps_recovered, st.gaps_replayed, st.messages_lost) == (1, 1, 1, 3)


def test_replay_in_rounds_when_cut_at_max_events():
    s, out = Stream(replay_batch=3), []
    s.on_batch(batch(1, 1), 0, out)
    s.on_batch(batch(9, 1), 0, out)
    assert s.on_reply(replay_reply(2, 4, 9, more=True), 0, out) == [("replay", 5)]
    assert s.on_reply(replay_reply(5, 7, 9, more=True), 0, out) == [("replay", 8)]
    assert s.on_reply(replay_reply(8, 8, 9), 0, out) == []
    assert seqs(out) == list(range(1, 10)) and s.stats.gaps_replayed == 1


def test_events_no_longer_retained_are_replaced_by_a_snapshot():
    s, out = Stream(), []
    s.on_batch(batch(1, 2), 0, out)
    s.on_batch(batch(50, 2), 0, out)
    assert s.on_reply(replay_reply(3, 2, 51, complete=False), 0, out) == [("snapshot",)]
    assert s.state == State.SNAPSHOTTING
    s.on_batch(batch(52, 3), 0, out)
    snap = cti_pb2.Reply(ok=True, seq=52, epoch="e1", calls=[cti_pb2.Call(call_id="C52")])
    assert s.on_reply(snap, 0, out) == []
    taken = [i for i in out if isinstance(i, SnapshotTaken)]
    assert len(taken) == 1 and taken[0].seq == 52 and taken[0].calls[0].call_id == "C52"
    assert taken[0].reason == "gap"
    assert seqs(out) == [1, 2, 53, 54]                 # after the snapshot: seq 53 on
    assert out.index(taken[0]) == 3                    # 1, 2, SystemStatus, snapshot, 53, 54
    st = s.stats
    assert (st.gaps_recovered, st.gaps_snapshot, st.messages_skipped) == (1, 1, 50)


def test_a_lost_tail_is_noticed_from_the_heartbeat():
    s, out = Stream(), []
    s.on_batch(batch(1, 3), 0, out)
    assert s.on_heartbeat(cti_pb2.Event(name="Heartbeat", seq=3, epoch="e1"), 0, out) == []
    assert s.on_heartbeat(cti_pb2.Event(name="Heartbeat", seq=5, epoch="e1"), 0, out) == [("replay", 4)]
    assert reports(out) == [("messagesLost", 2)]
    s.on_reply(replay_reply(4, 5, 5), 0, out)
    assert seqs(out) == [1, 2, 3, 4, 5] and s.stats.gaps_recovered == 1


def test_a_new_epoch_means_ctid_restarted_and_a_snapshot_is_taken():
    s, out = Stream(), []
    s.on_batch(batch(1, 5), 0, out)
    assert s.on_batch(batch(1, 2, epoch="e2"), 0, out) == [("snapshot",)]
    assert reports(out) == [("epochChanged", 0)]
    s.on_reply(cti_pb2.Reply(ok=True, seq=1, epoch="e2"), 0, out)
    s.on_batch(batch(3, 1, epoch="e2"), 0, out)
    assert seqs(out) == [1, 2, 3, 4, 5, 2, 3]
    assert s.stats.epoch_changes == 1 and s.epoch == "e2" and s.stats.gaps_detected == 0


def test_start_from_a_snapshot_buffers_events_until_it_arrives():
    s, out = Stream(start="snapshot"), []
    assert s.begin(0) == [("snapshot",)]
    s.on_batch(batch(4, 3), 0, out)                    # 4..6 arrive before the snapshot (at 4)
    s.on_reply(cti_pb2.Reply(ok=True, seq=4, epoch="e1"), 0, out)
    assert isinstance(out[0], SnapshotTaken) and out[0].reason == "start"
    assert seqs(out) == [5, 6] and s.stats.gaps_detected == 0


def test_no_answer_is_retried_then_the_gap_is_left_unrecovered_and_said_so():
    s, out = Stream(request_timeout_s=1.0, retries=2), []
    s.on_batch(batch(1, 1), 0, out)
    assert s.on_batch(batch(5, 1), 10.0, out) == [("replay", 2)]
    assert s.on_time(10.5, out) == []
    assert s.on_time(11.1, out) == [("replay", 2)]
    assert s.on_time(12.2, out) == [("replay", 2)]
    assert s.on_time(13.3, out) == []                  # given up
    assert reports(out) == [("messagesLost", 3), ("recoveryFailed", 3)]
    assert seqs(out) == [1, 5] and s.stats.gaps_unrecovered == 1 and s.state == State.LIVE
    s.on_batch(batch(6, 1), 14, out)
    assert seqs(out) == [1, 5, 6]


# ---- against a real server ----------------------------------------------------------------
class Idle:
    def handle(self, req, now):
        from ctid.model.callmodel import RequestError
        raise RequestError("nothing to do")

    def snapshot(self):
        return [], [cti_pb2.Call(call_id="C-snap", connections=[cti_pb2.Connection(call_id="C-snap", device="ext:8001")])]

    def call_devices(self, call_id):
        return None

    def status(self):
        return {}


@pytest.fixture
def running(tmp_path):
    """Start a server thread on ipc endpoints; yields (start, endpoints)."""
    ctx = zmq.Context()
    threads = []

    def start(**settings):
        kw = dict(events=f"ipc://{tmp_path}/ev.sock", requests=f"ipc://{tmp_path}/rq.sock",
                  sndhwm=5, heartbeat_s=0.2, retain=100_000)
        kw.update(settings)
        server = CtiServer(ctx, CtiSettings(**kw), Idle()).open()
        stop, tasks = threading.Event(), queue.Queue()
        t = threading.Thread(target=serve, args=(server, stop), kwargs={"tasks": tasks}, daemon=True)
        t.start()
        threads.append((stop, t, server))

        def run(fn):
            done = queue.Queue()
            tasks.put(lambda srv: done.put(fn(srv)))
            return done.get(timeout=30)

        def halt():
            stop.set()
            t.join(5)
            server.close()
        return run, halt

    yield start, (f"ipc://{tmp_path}/ev.sock", f"ipc://{tmp_path}/rq.sock"), ctx
    for stop, t, server in threads:
        if t.is_alive():
            stop.set()
            t.join(5)
            server.close()
    ctx.term()


def publish_singly(n, first_call=0):
    def fn(srv):
        for i in range(n):
            srv.publish([cti_pb2.Event(name="Delivered", call_id=f"C{first_call + i}")])
        return srv.seq
    return fn


def connect(client, until=10.0):
    """Poll until the subscription is live (a heartbeat came through)."""
    end = time.monotonic() + until
    items = []
    while not client.last_heartbeat and time.monotonic() < end:
        items += client.poll(50)
    assert client.last_heartbeat, "no heartbeat: the subscription did not connect"
    return items


def collect(client, last_seq, until=20.0):
    end = time.monotonic() + until
    items = []
    while time.monotonic() < end:
        items += client.poll(50)
        at = [i.seq for i in items if isinstance(i, SnapshotTaken) or
              (isinstance(i, cti_pb2.Event) and i.name == "Delivered")]
        if at and at[-1] >= last_seq:
            break
    return items


def test_a_client_that_stopped_reading_loses_events_and_gets_every_one_back(running):
    start, (ev, rq), ctx = running
    run, _ = start()
    client = CtiClient(ev, rq, ctx=ctx, rcvhwm=5)
    try:
        connect(client)
        last = run(publish_singly(20_000))          # far beyond both high-water marks
        items = collect(client, last)
        assert seqs(items) == list(range(1, last + 1))   # every event once, in order
        st = client.stats
        assert st.gaps_detected >= 1 and st.gaps_recovered == st.gaps_detected
        assert st.gaps_replayed == st.gaps_detected and st.messages_replayed > 0
        lost = reports(items)
        assert lost and all(reason == "messagesLost" and n > 0 for reason, n in lost)
        # ctid counted this client as behind, and says so in SystemStatus
        status = client.request(cti_pb2.Request(system_status=cti_pb2.SystemStatus()))
        assert status.ok and int(status.status["clients_behind"]) == 1
        assert int(status.status["seq"]) == last
    finally:
        client.close()


def test_when_the_gap_is_older_than_the_retained_events_a_snapshot_recovers(running):
    start, (ev, rq), ctx = running
    run, _ = start(retain=1000)
    client = CtiClient(ev, rq, ctx=ctx, rcvhwm=5)
    try:
        connect(client)
        last = run(publish_singly(20_000))
        items = collect(client, last)
        taken = [i for i in items if isinstance(i, SnapshotTaken)]
        assert taken and taken[0].reason == "gap" and taken[0].calls[0].call_id == "C-snap"
        after = seqs(items[items.index(taken[-1]) + 1:])
        assert after == list(range(taken[-1].seq + 1, last + 1))
        before = seqs(items[:items.index(taken[0])])
        assert before == list(range(1, len(before) + 1))
        assert client.stats.gaps_snapshot >= 1 and client.stats.gaps_unrecovered == 0
    finally:
        client.close()


def test_a_restarted_server_is_noticed_by_its_new_epoch(running):
    start, (ev, rq), ctx = running
    run, halt = start()
    client = CtiClient(ev, rq, ctx=ctx)
    try:
        connect(client)
        run(publish_singly(3))
        items = collect(client, 3)
        assert seqs(items) == [1, 2, 3]
        first_epoch = client.stream.epoch
        halt()
        run2, _ = start()                           # same endpoints, a new run
        items = []
        end = time.monotonic() + 10
        while not any(isinstance(i, SnapshotTaken) for i in items) and time.monotonic() < end:
            items += client.poll(50)
        assert ("epochChanged", 0) in reports(items)
        taken = [i for i in items if isinstance(i, SnapshotTaken)][0]
        assert taken.reason == "epoch" and taken.epoch != first_epoch
        run2(publish_singly(2))
        items = collect(client, 2)
        assert seqs(items)[-2:] == [1, 2] and client.stream.epoch == taken.epoch
    finally:
        client.close()
