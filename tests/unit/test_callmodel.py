"""The call model, exactly: cardd events and CTI requests in, CSTA events and commands out."""
import datetime as dt

import pytest

from ctid.model.callmodel import CallModel, RequestError
from ctid.model.calls import ChannelRef, Device, DeviceType
from ctid.model.routing import Calendar, DialPlan, Route
from hotline_proto import cardd_pb2, cti_pb2

T0 = dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.timezone.utc).timestamp()


def model():
    devices = [Device(f"ext:{n}", DeviceType.EXTENSION, number=str(n),
                      channel=ChannelRef("node1", ch)) for n, ch in ((8001, 1), (8002, 2), (8003, 3))]
    devices += [Device(f"trunk:node1/{ch}", DeviceType.TRUNK, number="12345", group="co",
                       channel=ChannelRef("node1", ch)) for ch in (5, 6)]
    plan = DialPlan([Route("8XXX", "ext:"), Route("9.", "trunk:co", strip=1),
                     Route("12345", "ext:8001", calendar="office", closed_to="ext:8003")],
                    {"office": Calendar.parse("office", ["mon-fri 08:30-17:30"])})
    return CallModel(devices, plan, tz=dt.timezone.utc)


def chev(channel, **kind):
    e = cardd_pb2.ChannelEvent(channel=channel)
    (field, msg), = kind.items()
    getattr(e, field).CopyFrom(msg)
    return e


def names(out):
    return [e.name for e in out.events]


def cmds(out):
    return [(c.channel, c.WhichOneof("kind")) for _, c in out.commands]


def test_trunk_to_extension_hold_retrieve_transfer_clear():
    m = model()
    out = m.channel_event("node1", chev(5, incoming=cardd_pb2.Incoming(ani="13812345678")), T0)
    assert names(out) == ["Delivered"]
    call_id = out.events[0].call_id
    assert out.events[0].calling == "13812345678" and out.events[0].called == "12345"
    assert cmds(out) == [(1, "ring")] and out.commands[0][1].ring.caller_id == "13812345678"

    out = m.channel_event("node1", chev(1, answered=cardd_pb2.Answered()), T0 + 3)
    assert names(out) == ["Established"]
    assert cmds(out) == [(5, "answer"), (1, "bridge")]

    reply, out = m.request(cti_pb2.Request(hold_call=cti_pb2.CallRef(call_id=call_id, device="ext:8001")), T0 + 10)
    assert names(out) == ["Held"] and cmds(out) == [(1, "unbridge"), (5, "play_tone")]
    reply, out = m.request(cti_pb2.Request(retrieve_call=cti_pb2.CallRef(call_id=call_id, device="ext:8001")), T0 + 15)
    assert names(out) == ["Retrieved"] and cmds(out) == [(5, "stop_media"), (1, "bridge")]

    reply, out = m.request(cti_pb2.Request(consultation_call=cti_pb2.ConsultationCall(
        call_id=call_id, device="ext:8001", called="8002")), T0 + 20)
    consult = reply.call_id
    assert names(out) == ["Held", "Originated", "Delivered"]
    out = m.channel_event("node1", chev(2, answered=cardd_pb2.Answered()), T0 + 22)
    assert names(out) == ["Established"]
    reply, out = m.request(cti_pb2.Request(transfer_call=cti_pb2.TransferCall(
        held_call_id=call_id, active_call_id=consult, device="ext:8001")), T0 + 25)
    assert names(out) == ["Transferred"]
    assert (5, "bridge") in cmds(out) or (2, "bridge") in cmds(out)
    ev = out.events[0]
    assert {c.device for c in ev.connections if c.state == cti_pb2.CS_CONNECTED} == {"trunk:node1/5", "ext:8002"}

    out = m.channel_event("node1", chev(5, cleared=cardd_pb2.Cleared(cause=16)), T0 + 60)
    assert names(out) == ["ConnectionCleared", "ConnectionCleared", "CallCleared"]
    assert cmds(out) == [(2, "hangup")]
    cdr = out.cdrs[0]
    assert cdr["calling"] == "13812345678" and cdr["transfers"] and cdr["outcome"] == "answered"
    assert not m.calls


def test_extension_to_extension_busy_and_invalid():
    m = model()
    out = m.channel_event("node1", chev(1, off_hook=cardd_pb2.OffHook()), T0)
    assert names(out) == ["ServiceInitiated"]
    for d in "800":
        out = m.channel_event("node1", chev(1, digit=cardd_pb2.Digit(digit=d)), T0 + 1)
        assert names(out) == []
    out = m.channel_event("node1", chev(1, digit=cardd_pb2.Digit(digit="2")), T0 + 2)
    assert names(out) == ["Originated", "Delivered"] and cmds(out) == [(2, "ring"), (1, "play_tone")]
    # 8003 calls 8002, which is busy
    m.channel_event("node1", chev(3, off_hook=cardd_pb2.OffHook()), T0 + 3)
    for d in "8002":
        out = m.channel_event("node1", chev(3, digit=cardd_pb2.Digit(digit=d)), T0 + 4)
    assert names(out) == ["Originated", "Failed"] and out.events[-1].cause == "busy"
    assert out.commands[-1][1].play_tone.tone == "busy"
    # an unknown number
    out = m.channel_event("node1", chev(3, on_hook=cardd_pb2.OnHook()), T0 + 5)
    m.channel_event("node1", chev(3, off_hook=cardd_pb2.OffHook()), T0 + 6)
    out = m.channel_event("node1", chev(3, digit=cardd_pb2.Digit(digit="7")), T0 + 7)
    assert names(out) == ["Failed"] and out.events[0].cause == "invalidNumber"


def test_outside_line_after_interdigit_timeout_and_after_hours_route():
    m = model()
    m.channel_event("node1", chev(1, off_hook=cardd_pb2.OffHook()), T0)
    for d in "9138":
        out = m.channel_event("node1", chev(1, digit=cardd_pb2.Digit(digit=d)), T0 + 1)
    assert names(out) == []
    assert names(m.tick(T0 + 3)) == []
    out = m.tick(T0 + 5.1)
    assert names(out) == ["Originated"]
    assert cmds(out) == [(5, "dial")] and out.commands[0][1].dial.number == "138"
    # after hours the hotline number goes to 8003
    night = dt.datetime(2026, 11, 23, 22, 0, tzinfo=dt.timezone.utc).timestamp()
    out = m.channel_event("node1", chev(6, incoming=cardd_pb2.Incoming(ani="1")), night)
    assert cmds(out) == [(3, "ring")]


def test_bad_requests_are_refused_clearly():
    m = model()
    with pytest.raises(RequestError, match="no call"):
        m.request(cti_pb2.Request(hold_call=cti_pb2.CallRef(call_id="C99", device="ext:8001")), T0)
    with pytest.raises(RequestError, match="unknown device"):
        m.request(cti_pb2.Request(snapshot_device=cti_pb2.DeviceRef(device="ext:1")), T0)
    out = m.channel_event("node1", chev(5, incoming=cardd_pb2.Incoming(ani="1")), T0)
    cid = out.events[0].call_id
    with pytest.raises(RequestError, match="alerting in call"):
        m.request(cti_pb2.Request(hold_call=cti_pb2.CallRef(call_id=cid, device="ext:8001")), T0)


def test_hash_ends_an_open_ended_number_and_ctid_owns_digit_collection():
    m = model()
    m.channel_event("node1", chev(1, off_hook=cardd_pb2.OffHook()), T0)
    out = m.channel_event("node1", chev(1, digit=cardd_pb2.Digit(digit="9")), T0 + 1)
    assert cmds(out) == [(1, "stop_media")]      # the line leaves collection to ctid
    for d in "138":
        out = m.channel_event("node1", chev(1, digit=cardd_pb2.Digit(digit=d)), T0 + 2)
        assert cmds(out) == [] and names(out) == []
    out = m.channel_event("node1", chev(1, digit=cardd_pb2.Digit(digit="#")), T0 + 3)
    assert names(out) == ["Originated"] and out.commands[0][1].dial.number == "138"
