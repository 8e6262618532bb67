"""ctid and cardd out of step: the node's event sequence, and reconcile() making the call
model agree with cardd's Status after either of them restarted."""
import datetime as dt

from ctid.cardd_link import NodeSequence, failure_event, reconcile
from ctid.model.callmodel import CallModel
from ctid.model.calls import ChannelRef, Device, DeviceType
from ctid.model.routing import DialPlan, Route
from hotline_proto import cardd_pb2

T0 = dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.timezone.utc).timestamp()
S = cardd_pb2


def model():
    devices = [Device(f"ext:{n}", DeviceType.EXTENSION, number=str(n),
                      channel=ChannelRef("node1", ch)) for n, ch in ((8001, 1), (8002, 2), (8003, 3))]
    devices += [Device(f"trunk:node1/{ch}", DeviceType.TRUNK, number="12345", group="co",
                       channel=ChannelRef("node1", ch)) for ch in (5, 6)]
    plan = DialPlan([Route("8XXX", "ext:"), Route("12345", "ext:8001")], {})
    return CallModel(devices, plan, tz=dt.timezone.utc)


def ev(seq, channel=1, **kind):
    e = S.ChannelEvent(seq=seq, channel=channel, node="node1")
    if not kind:
        kind = {"digit": S.Digit(digit="1")}
    (field, msg), = kind.items()
    getattr(e, field).CopyFrom(msg)
    return e


def status(seq, **channels):
    """channels: ch<N>=(state, extra fields)."""
    r = S.Reply(ok=True, seq=seq)
    for n in (1, 2, 3, 5, 6):
        state, extra = channels.get(f"ch{n}", (S.IDLE, {}))
        r.channels.add(channel=n, span=1, state=state, in_service=state != S.OUT_OF_SERVICE, **extra)
    return r


def names(out):
    return [e.name for e in out.events]


def cmds(out):
    return [(c.channel, c.WhichOneof("kind")) for _, c in out.commands]


# ---- sequencing ------------------------------------------------------------------------------
def test_events_wait_for_the_status_then_only_newer_ones_apply():
    s = NodeSequence("node1")
    assert s.syncing and s.on_event(ev(4)) == [] and s.on_event(ev(5)) == [] and s.on_event(ev(6)) == []
    items = s.on_status(S.Reply(ok=True, seq=5))
    assert [(k, e.seq) for k, e in items] == [("event", 6)]
    assert s.on_event(ev(7)) == [("event", ev(7))]
    assert s.on_event(ev(7)) == [("need_status", "restart")]   # seq never repeats in one run


def test_a_gap_or_a_restart_asks_for_status_again():
    s = NodeSequence("node1")
    s.on_status(S.Reply(ok=True, seq=10))
    assert s.on_event(ev(13)) == [("need_status", "gap")]
    assert s.syncing and s.on_event(ev(14)) == []
    # cardd restarts while the Status is out: NodeStarted means ask again
    assert s.on_event(ev(1, 0, node_started=S.NodeStarted(channels=5))) == [("need_status", "restart")]
    s.on_event(ev(2))
    items = s.on_status(S.Reply(ok=True, seq=1))
    assert [(k, e.seq) for k, e in items] == [("event", 2)]
    assert s.on_event(ev(1, 0, node_started=S.NodeStarted())) == [("need_status", "restart")]


def test_a_buffer_overflow_while_syncing_means_another_status():
    s = NodeSequence("node1", buffer_max=3)
    for n in range(1, 10):
        s.on_event(ev(n))
    items = s.on_status(S.Reply(ok=True, seq=1))
    assert [i[0] for i in items] == ["event", "event", "need_status"]


# ---- reconcile ---------------------------------------------------------------------------------
def test_ctid_restart_rebuilds_a_connected_call_from_the_bridge_and_follows_it_to_the_end():
    m = model()
    st = status(40, ch5=(S.CONNECTED, dict(bridged_with=1, ani="13812345678", dnis="12345",
                                           call_id="node1-7")),
                ch1=(S.CONNECTED, dict(bridged_with=5, call_id="node1-8")))
    out = reconcile(m, "node1", st, T0)
    assert names(out) == ["Established"] and cmds(out) == []           # the audio never stopped
    (call,) = m.calls.values()
    assert {d: c.state.value for d, c in call.connections.items()} == {
        "trunk:node1/5": "connected", "ext:8001": "connected"}
    assert call.calling == "13812345678" and call.data["ani"] == "13812345678"
    assert call.data["cardd_call_ids"] == "node1-7,node1-8" and out.events[0].reason == "resync"
    # the caller hangs up: the extension is hung up, the call ends with a CDR
    out = m.channel_event("node1", ev(41, 5, cleared=S.Cleared(cause=16)), T0 + 30)
    assert names(out) == ["ConnectionCleared", "ConnectionCleared", "CallCleared"]
    assert cmds(out) == [(1, "hangup")] and out.cdrs[0]["outcome"] == "answered"
    assert not m.calls


def test_ctid_restart_reoffers_a_ringing_inbound_call_and_keeps_a_lone_connected_channel():
    m = model()
    st = status(9, ch6=(S.RINGING, dict(ani="13900000000", dnis="12345")),
                ch1=(S.RINGING, {}), ch2=(S.DIALTONE, {}), ch5=(S.CONNECTED, dict(ani="1")),
                ch3=(S.DIALING, {}))
    out = reconcile(m, "node1", st, T0)
    # ext 8001 rang for a call ctid cannot name: stopped, then the inbound call rings it again
    assert cmds(out) == [(1, "hangup"), (3, "hangup"), (1, "ring")]
    assert names(out) == ["ServiceInitiated", "Established", "Delivered"]
    delivered = out.events[2]
    assert delivered.calling == "13900000000" and delivered.device == "ext:8001"
    assert m.parties["ext:8002"].off_hook and len(m.calls) == 3
    lone = [c for c in m.calls.values() if list(c.connections) == ["trunk:node1/5"]]
    assert lone and lone[0].connections["trunk:node1/5"].state.value == "connected"


def test_cardd_restart_clears_the_calls_it_no_longer_carries():
    m = model()
    out = m.channel_event("node1", ev(1, 5, incoming=S.Incoming(ani="13812345678")), T0)
    m.channel_event("node1", ev(2, 1, answered=S.Answered()), T0 + 2)
    assert len(m.calls) == 1
    out = reconcile(m, "node1", status(1), T0 + 10)                     # every channel idle
    assert names(out) == ["ConnectionCleared", "ConnectionCleared", "CallCleared"]
    assert all(e.q850 == 41 for e in out.events)
    assert (5, "hangup") not in cmds(out) and out.cdrs and not m.calls
    assert not m.parties["ext:8001"].off_hook


def test_a_held_call_whose_holder_went_idle_is_cleared_too():
    m = model()
    out = m.channel_event("node1", ev(1, 5, incoming=S.Incoming(ani="1")), T0)
    call_id = out.events[0].call_id
    m.channel_event("node1", ev(2, 1, answered=S.Answered()), T0 + 1)
    from hotline_proto import cti_pb2
    m.request(cti_pb2.Request(hold_call=cti_pb2.CallRef(call_id=call_id, device="ext:8001")), T0 + 2)
    # cardd lost ext 8001 (idle) but still has the caller, on hold: the call cannot go on
    out = reconcile(m, "node1", status(5, ch5=(S.CONNECTED, {})), T0 + 3)
    assert names(out) == ["ConnectionCleared", "ConnectionCleared", "CallCleared"]
    assert cmds(out)[-1] == (5, "hangup") and (1, "hangup") not in cmds(out)
    assert not m.calls and not m.parties["ext:8001"].held_call_id


def test_service_follows_cardd():
    m = model()
    out = reconcile(m, "node1", status(3, ch2=(S.OUT_OF_SERVICE, {})), T0)
    assert names(out) == ["OutOfService"] and out.events[0].device == "ext:8002"
    assert not m.devices["ext:8002"].in_service
    out = reconcile(m, "node1", status(4), T0 + 1)
    assert names(out) == ["BackInService"] and m.devices["ext:8002"].in_service


def test_a_refused_ring_clears_that_party_and_a_refused_tone_is_only_logged():
    m = model()
    out = m.channel_event("node1", ev(1, 5, incoming=S.Incoming(ani="13812345678")), T0)
    (node, ring), = [(n, c) for n, c in out.commands if c.WhichOneof("kind") == "ring"]
    e = failure_event(ring, "channel 1 is out of service after an internal fault")
    assert e.channel == 1 and e.cleared.cause == 41 and "cardd refused ring" in e.cleared.reason
    out = m.channel_event("node1", e, T0 + 1)
    assert names(out) == ["ConnectionCleared", "ConnectionCleared", "CallCleared"]
    assert (5, "hangup") in cmds(out) and (1, "hangup") not in cmds(out)
    assert failure_event(S.Command(channel=1, play_tone=S.PlayTone(tone="x")), "no tone") is None


def test_a_command_for_a_cardd_that_is_not_there_fails_at_once(tmp_path):
    import zmq

    from ctid.cardd_link import CarddLink
    ctx = zmq.Context()
    link = CarddLink(ctx, "node1", f"ipc://{tmp_path}/ev.sock", f"ipc://{tmp_path}/cmd.sock")
    try:
        cmd = S.Command(id=7, channel=1, ring=S.Ring(caller_id="1"))
        (what, failed, error), = link.send(cmd, T0)
        assert what == "failed" and failed.id == 7 and error == "cardd node1 is not taking commands"
        assert failure_event(failed, error).cleared.cause == 41
        assert not link.pending                 # nothing queued to run late
    finally:
        link.close()
        ctx.term()
