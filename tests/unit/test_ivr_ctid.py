"""The IVR inside ctid's call model: a trunk call routed to "ivr:FLOW" is answered, talks
to the flow through cardd commands and events, and leaves it transferred (the agent's
Delivered carries the IVR trail), hung up, or abandoned."""
import datetime as dt
import textwrap
import time
from pathlib import Path

import pytest

from ctid.model.callmodel import CallModel
from ctid.model.calls import ChannelRef, Device, DeviceType
from ctid.model.routing import DialPlan, Route
from hotline_proto import cardd_pb2
from ivr.ctid_service import IvrRouting
from ivr.lookup import LookupService, run_script
from ivr.prompts import PromptResolver
from ivr.service import IvrService
from ivr.tts import Tts
from ivr.validate import load_checked

ETC = Path(__file__).resolve().parents[2] / "etc" / "ivr"
T0 = dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.timezone.utc).timestamp()

MENU = """\
flow: front
start: menu
nodes:
  menu:
    type: menu
    prompt: {say: 转人工请按1，结束请按9}
    options: {"1": agent, "9": bye}
    on_fail: bye
  agent: {type: transfer, to: "8001", prompt: {say: 正在转接}, data: {service: front}}
  bye: {type: hangup, prompt: {say: 再见}}
"""


@pytest.fixture(scope="module")
def flows(tmp_path_factory):
    d = tmp_path_factory.mktemp("flows")
    (d / "front.yaml").write_text(MENU, encoding="utf-8")
    return load_checked([d, ETC / "bill170.yaml"])


@pytest.fixture(scope="module")
def tts(tmp_path_factory, flows):
    t = Tts(tmp_path_factory.mktemp("tts"))
    resolver = PromptResolver(t)
    resolver.prewarm(flows)
    for text in ("转人工请按1，结束请按9", "正在转接", "再见"):
        t.render(text)
    return t


@pytest.fixture
def model(flows, tts, tmp_path):
    db = f"sqlite:///{tmp_path / 'demo.db'}"
    run_script(db, str(ETC / "demo.sql"))
    devices = [Device("ext:8001", DeviceType.EXTENSION, number="8001", channel=ChannelRef("node1", 1))]
    devices += [Device(f"trunk:node1/{ch}", DeviceType.TRUNK, number="12345", group="co",
                       channel=ChannelRef("node1", ch)) for ch in (5, 6)]
    plan = DialPlan([Route("8XXX", "ext:"), Route("100", "ivr:front"), Route("170", "ivr:bill170"),
                     Route("999", "ivr:nope")], {})
    svc = IvrService(flows, PromptResolver(tts), lookups=LookupService(overrides={"billing": db}))
    ivr = IvrRouting(svc, max_ports=4)
    m = CallModel(devices, plan, tz=dt.timezone.utc, services={"ivr": ivr})
    yield m, ivr
    svc.close()


def ev(channel, **kind):
    e = cardd_pb2.ChannelEvent(channel=channel)
    (field, msg), = kind.items()
    getattr(e, field).CopyFrom(msg)
    return e


def incoming(m, dnis, channel=5, ani="13800138000", now=T0):
    return m.channel_event("node1", ev(channel, incoming=cardd_pb2.Incoming(ani=ani, dnis=dnis)), now)


def done(m, channel=5, now=T0):
    return m.channel_event("node1", ev(channel, prompt_done=cardd_pb2.PromptDone()), now)


def key(m, d, channel=5, now=T0):
    return m.channel_event("node1", ev(channel, digit=cardd_pb2.Digit(digit=d)), now)


def cmds(out):
    return [(c.channel, c.WhichOneof("kind")) for _, c in out.commands]


def names(out):
    return [(e.name, e.device) for e in out.events]


def test_trunk_call_through_the_ivr_to_an_agent_with_the_trail(model, tts):
    m, ivr = model
    out = incoming(m, "100")
    call_id = out.events[0].call_id
    assert cmds(out) == [(5, "answer"), (5, "play_prompt")]
    assert out.commands[1][1].play_prompt.files == [str(tts.path_for("转人工请按1，结束请按9"))]
    assert names(out) == [("Established", "ivr:port1")]
    assert m.calls[call_id].data["ivr"] == "front"

    assert cmds(done(m, now=T0 + 3)) == []
    out = key(m, "1", now=T0 + 4)              # consumed by the IVR, not the model
    assert cmds(out) == [(5, "play_prompt")] and out.events == []
    out = done(m, now=T0 + 5)
    assert cmds(out) == [(5, "play_tone"), (1, "ring")]
    assert out.commands[0][1].play_tone.tone == "ringback"
    delivered = [e for e in out.events if e.name == "Delivered"]
    assert [e.device for e in delivered] == ["ext:8001"]
    assert delivered[0].data["ivr_trail"] == "menu[1]>agent"
    assert delivered[0].data["service"] == "front" and delivered[0].data["ani"] == "13800138000"
    assert ("ConnectionCleared", "ivr:port1") in names(out)
    assert m.calls[call_id].connections["ivr:port1"].state.value == "null"

    out = m.channel_event("node1", ev(1, answered=cardd_pb2.Answered()), T0 + 8)
    assert cmds(out) == [(1, "bridge"), (5, "stop_media")]     # the ringback stops
    assert names(out) == [("Established", "ext:8001")]


def test_caller_hangs_up_in_the_ivr(model):
    m, ivr = model
    call_id = incoming(m, "100").events[0].call_id
    out = m.channel_event("node1", ev(5, cleared=cardd_pb2.Cleared(cause=16)), T0 + 2)
    assert cmds(out) == []                                   # no hang-up sent to a gone line
    assert [n for n, _ in names(out)] == ["ConnectionCleared", "ConnectionCleared", "CallCleared"]
    assert call_id not in m.calls and ivr.svc.ports == {} and ivr.port_of == {}
    assert ivr.svc.status()["outcome.abandoned"] == 1


def test_flow_hangs_up(model):
    m, ivr = model
    incoming(m, "100")
    done(m, now=T0 + 3)
    assert cmds(key(m, "9", now=T0 + 4)) == [(5, "play_prompt")]
    out = done(m, now=T0 + 5)
    assert cmds(out) == [(5, "hangup")]
    assert names(out)[-1][0] == "CallCleared" and m.calls == {}


def test_bill170_with_its_database_in_the_call_model(model):
    m, ivr = model
    incoming(m, "170", ani="13800138000")
    done(m); done(m)
    for d in "13800138000":
        key(m, d)
    done(m)
    for d in "123456":
        key(m, d)
    files, end = [], time.monotonic() + 20
    while not files and time.monotonic() < end:      # look-up and render run on threads
        out = m.tick(T0 + 0.1)
        files = [list(c.play_prompt.files) for _, c in out.commands if c.WhichOneof("kind") == "play_prompt"]
        time.sleep(0.005)
    assert files and Path(files[0][1]).is_file()       # 您的话费余额为 / 十二元三角 / ...


def test_two_calls_get_two_ports_and_unknown_flows_fail(model):
    m, ivr = model
    assert names(incoming(m, "100", channel=5)) == [("Established", "ivr:port1")]
    assert names(incoming(m, "100", channel=6)) == [("Established", "ivr:port2")]
    m.channel_event("node1", ev(6, cleared=cardd_pb2.Cleared(cause=16)), T0 + 1)
    out = incoming(m, "999", channel=6, now=T0 + 2)
    assert names(out)[0] == ("Failed", "trunk:node1/6")
    assert "no IVR flow named 'nope'" in out.events[0].reason
    assert cmds(out) == [(6, "hangup")] and names(out)[-1][0] == "CallCleared"


def test_built_from_ctid_settings(tmp_path, tts):
    from ivr.ctid_service import IvrSettingsError, from_settings
    from ivr.flow import FlowError
    routing = from_settings({"flows": [str(ETC)], "tts_cache": str(tts.cache_dir),
                             "sources": {"billing": "sqlite:///x.db"},
                             "pin": {"max_failures": 5, "lock_minutes": 0}, "max_ports": 8},
                            str(tmp_path))
    assert set(routing.svc.flows.flows) == {"gov12345", "bill170", "fault112"}
    assert routing.svc.guard.policy.max_failures == 5 and routing.max_ports == 8
    assert routing.svc.lookups.overrides == {"billing": "sqlite:///x.db"}
    routing.svc.close()
    with pytest.raises(IvrSettingsError, match="unknown key 'flow'"):
        from_settings({"flow": []}, str(tmp_path))
    bad = tmp_path / "bad.yaml"
    bad.write_text("flow: b\nstart: x\nnodes:\n  a: {type: hangup}\n", encoding="utf-8")
    with pytest.raises(FlowError, match="start names unknown node 'x'"):
        from_settings({"flows": [str(bad)], "prewarm": False}, str(tmp_path))
