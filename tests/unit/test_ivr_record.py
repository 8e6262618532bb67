"""IVR voicemail through cardd: a voicemail node sends cardd a Record command for the
caller's channel, '#' stops it, and cardd's RecordDone (or its refusal) moves the flow on."""
import datetime as dt

import pytest

from ctid.cardd_link import failure_event
from ctid.model.callmodel import CallModel
from ctid.model.calls import ChannelRef, Device, DeviceType
from ctid.model.routing import DialPlan, Route
from hotline_proto import cardd_pb2
from ivr.ctid_service import IvrRouting, voicemail_path
from ivr.prompts import PromptResolver
from ivr.service import IvrService
from ivr.tts import Tts
from ivr.validate import load_checked

T0 = dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.timezone.utc).timestamp()
FLOW = """\
flow: vm
start: rec
nodes:
  rec:
    type: voicemail
    mailbox: "8001"
    prompt: {say: 请在嘀声后留言}
    beep: true
    max_length: 30
    silence: 3
    var: msg
    next: bye
  bye: {type: hangup, prompt: {say: 再见}}
"""


@pytest.fixture
def model(tmp_path):
    (tmp_path / "vm.yaml").write_text(FLOW, encoding="utf-8")
    flows = load_checked([tmp_path / "vm.yaml"])
    tts = Tts(tmp_path / "tts")
    for text in ("请在嘀声后留言", "再见"):
        tts.render(text)
    svc = IvrService(flows, PromptResolver(tts))
    ivr = IvrRouting(svc, max_ports=2)
    devices = [Device("trunk:node1/5", DeviceType.TRUNK, number="12345", group="co",
                      channel=ChannelRef("node1", 5))]
    m = CallModel(devices, DialPlan([Route("100", "ivr:vm")], {}), tz=dt.timezone.utc,
                  services={"ivr": ivr})
    yield m, tts
    svc.close()


def ev(**kind):
    e = cardd_pb2.ChannelEvent(channel=5)
    (field, msg), = kind.items()
    getattr(e, field).CopyFrom(msg)
    return e


def to_record(m):
    m.channel_event("node1", ev(incoming=cardd_pb2.Incoming(ani="13800138000", dnis="100")), T0)
    out = m.channel_event("node1", ev(prompt_done=cardd_pb2.PromptDone()), T0 + 3)
    kinds = [c.WhichOneof("kind") for _, c in out.commands]
    assert kinds[-1] == "record", kinds
    return out.commands[-1][1]


def test_voicemail_records_on_cardd_and_the_flow_goes_on_when_it_is_done(model):
    m, tts = model
    cmd = to_record(m)
    call_id = next(iter(m.calls))
    assert cmd.channel == 5 and cmd.record.beep and cmd.record.max_s == 30
    assert cmd.record.silence_s == 3
    assert cmd.record.path == voicemail_path("8001", call_id, T0 + 3)
    assert cmd.record.path.startswith("voicemail/8001/") and cmd.record.path.endswith(".wav")
    out = m.channel_event("node1", ev(digit=cardd_pb2.Digit(digit="5")), T0 + 5)
    assert out.commands == []                          # other keys are part of the message
    out = m.channel_event("node1", ev(digit=cardd_pb2.Digit(digit="#")), T0 + 6)
    assert [(c.channel, c.WhichOneof("kind")) for _, c in out.commands] == [(5, "stop_record")]
    out = m.channel_event("node1", ev(record_done=cardd_pb2.RecordDone(
        path="/srv/run/" + cmd.record.path, duration_s=2.5, ok=True, reason="stopped")), T0 + 6)
    (_, play), = out.commands
    assert play.play_prompt.files == [str(tts.path_for("再见"))]


def test_a_record_cardd_refuses_ends_the_node_failed_instead_of_waiting(model):
    m, tts = model
    cmd = to_record(m)
    refusal = failure_event(cmd, "record path must not contain '..'")
    assert refusal.record_done.reason.startswith("error: cardd refused record")
    out = m.channel_event("node1", refusal, T0 + 4)
    assert [c.WhichOneof("kind") for _, c in out.commands] == ["play_prompt"]


def test_voicemail_paths_cannot_leave_the_folder():
    p = voicemail_path("../../etc", "c/1", T0)
    assert ".." not in p and p.count("/") == 2 and p.startswith("voicemail/")
