"""External IVR: a flow hands the call to an outside program over a real ZeroMQ socket;
the program plays, collects and returns the call; a program that is down or silent
sends the caller down the fallback path."""
import time

import pytest
import zmq

from ivr.external import ExternalApp, ExternalBridge
from ivr.flow import FlowSet, load_flow
from ivr.interpreter import (CallInfo, End, ExternalSend, ExternalStart, Hangup,
                             IvrSession, Play, Prompt, SetVar)

FLOW = """\
flow: ext
start: hello
vars: {score: ""}
nodes:
  hello: {type: play, prompt: {say: 您好}, next: survey}
  survey: {type: external, app: survey, timeout: 5, next: thanks, fallback: sorry}
  thanks: {type: hangup, prompt: {say: "谢谢，您的评分是${score}"}}
  sorry: {type: hangup, prompt: {say: 系统繁忙}}
"""


@pytest.fixture
def flows(tmp_path):
    p = tmp_path / "ext.yaml"
    p.write_text(FLOW, encoding="utf-8")
    return FlowSet([load_flow(p)])


@pytest.fixture
def app():
    a = ExternalApp("tcp://127.0.0.1:*")
    yield a
    a.close()


def relay(bridge, session, actions, t):
    """Send the session's external actions; return its other actions."""
    rest = []
    for a in actions:
        if isinstance(a, (ExternalStart, ExternalSend)):
            assert bridge.send(a)
        else:
            rest.append(a)
    for _ in range(200):                   # a fresh connection may still be on its way
        if not bridge.flush() and not bridge.backlog():
            break
        time.sleep(0.01)
    assert bridge.backlog() == 0
    return rest


def commands(bridge, session, t):
    out = []
    for sid, cmd in bridge.poll(timeout_ms=2000):
        assert sid == session.id
        out += session.on_external(cmd, t)
    return out


def test_round_trip_play_collect_return(flows, app):
    bridge = ExternalBridge({"survey": app.endpoint})
    s = IvrSession(flows, "ext", CallInfo("C7", "13800138000", "12345"))
    t = 100.0
    assert s.start(t) == [Play((Prompt("您好"),), False)]
    assert relay(bridge, s, s.on_prompt_done(False, "", t + 1), t) == []

    m = app.recv(2000)
    assert m.WhichOneof("kind") == "start" and m.session == "C7" and m.seq == 1
    assert (m.start.ani, m.start.flow, m.start.node, m.start.lang) == ("13800138000", "ext", "survey", "zh")
    assert m.start.trail == "hello>survey"

    app.play("C7", ["请为本次服务打分"], barge_in=True)
    assert commands(bridge, s, t + 2) == [Play((Prompt("请为本次服务打分"),), True)]
    # the caller barges in with 4: the app hears the prompt end, then the key
    relay(bridge, s, s.on_prompt_done(True, "4", t + 3), t)
    relay(bridge, s, s.on_digit("4", t + 3), t)
    m = app.recv(2000)
    assert m.WhichOneof("kind") == "prompt_done" and m.prompt_done.interrupted and m.prompt_done.digit == "4"
    m = app.recv(2000)
    assert m.WhichOneof("kind") == "digit" and m.digit.digit == "4"

    app.collect("C7", [{"text": "请输入评分，以井号键结束"}], min=1, max=2, terminator="#", timeout_s=4)
    assert commands(bridge, s, t + 4) == [Play((Prompt("请输入评分，以井号键结束"),), True)]
    relay(bridge, s, s.on_prompt_done(False, "", t + 6), t)
    relay(bridge, s, s.on_digit("5", t + 7) + s.on_digit("#", t + 7.5), t)
    m = app.recv(2000)
    assert m.WhichOneof("kind") == "collected" and (m.collected.digits, m.collected.reason) == ("5", "terminator")
    assert m.seq == 4

    app.set("C7", level="gold")
    actions = commands(bridge, s, t + 8)
    assert actions == [SetVar("level", "gold"), ExternalSend("survey", "C7", {"kind": "ok"})]
    relay(bridge, s, actions, t + 8)
    assert app.recv(2000).WhichOneof("kind") == "ack"

    app.ret("C7", score="5")
    assert commands(bridge, s, t + 9) == [SetVar("score", "5"), Play((Prompt("谢谢，您的评分是5"),), False)]
    assert s.on_prompt_done(False, "", t + 11) == [
        Hangup(16), End("hangup", "hello>survey[45#]>thanks")]
    bridge.close()


def test_app_can_transfer_and_bad_commands_are_answered(flows, app):
    bridge = ExternalBridge({"survey": app.endpoint})
    s = IvrSession(flows, "ext", CallInfo("C8", "1"))
    s.start(0)
    relay(bridge, s, s.on_prompt_done(False, "", 1), 1)
    app.recv(2000)
    app.collect("C8", min=3, max=1)                     # min > max: refused
    relay(bridge, s, commands(bridge, s, 2), 2)
    m = app.recv(2000)
    assert m.WhichOneof("kind") == "error" and "min" in m.error.error
    app.transfer("C8", "8001")
    actions = commands(bridge, s, 3)
    assert [type(a).__name__ for a in actions] == ["Transfer", "End"]
    assert actions[0].number == "8001" and actions[0].data["ivr_trail"] == "hello>survey"
    bridge.close()


def test_app_down_takes_the_fallback_after_the_connect_grace(flows):
    ctx = zmq.Context.instance()
    probe = ctx.socket(zmq.ROUTER)
    port = probe.bind_to_random_port("tcp://127.0.0.1")
    probe.close(0)                                     # nobody listens there now
    clock = [0.0]
    bridge = ExternalBridge({"survey": f"tcp://127.0.0.1:{port}"}, connect_grace_s=0.5,
                            clock=lambda: clock[0])
    s = IvrSession(flows, "ext", CallInfo("C9", "1"))
    s.start(0)
    (start,) = s.on_prompt_done(False, "", 1)
    assert bridge.send(start) is True                  # waiting for a connection
    assert bridge.poll(timeout_ms=50) == []
    clock[0] = 0.5
    assert bridge.poll() == [("C9", {"kind": "unreachable"})]
    assert s.on_external({"kind": "unreachable"}, 1.5) == [Play((Prompt("系统繁忙"),), False)]
    assert s.vars["external_error"] == "unreachable"
    assert bridge.stats["unreachable"] == 1
    assert ExternalBridge({}).send(start) is False     # no endpoint configured for the app
    bridge.close()


def test_silent_app_times_out_to_the_fallback(flows, app):
    bridge = ExternalBridge({"survey": app.endpoint})
    s = IvrSession(flows, "ext", CallInfo("C10", "1"))
    s.start(0)
    relay(bridge, s, s.on_prompt_done(False, "", 1), 1)
    assert app.recv(2000).WhichOneof("kind") == "start"
    actions = s.on_timer(6)
    assert actions[-1] == Play((Prompt("系统繁忙"),), False)
    relay(bridge, s, actions, 6)
    m = app.recv(2000)
    assert m.WhichOneof("kind") == "ended" and m.ended.reason == "timeout"
    # a command that comes after the session left the app is ignored
    app.play("C10", ["晚了"])
    assert commands(bridge, s, 7) == []
    bridge.close()


def test_malformed_messages_are_dropped_and_counted(flows, app):
    bridge = ExternalBridge({"survey": app.endpoint})
    s = IvrSession(flows, "ext", CallInfo("C11", "1"))
    s.start(0)
    relay(bridge, s, s.on_prompt_done(False, "", 1), 1)
    app.recv(2000)
    peer = app._peers["C11"]
    app.sock.send_multipart([peer, b"\xff\xff\xff garbage"])
    app.sock.send_multipart([peer, b""])                # parses, but has no session
    app.play("C11", ["好"])
    out = []
    for _ in range(20):
        out += bridge.poll(timeout_ms=100)
        if out:
            break
    assert [cmd["kind"] for _, cmd in out] == ["play"]
    assert bridge.stats["malformed"] == 2
    bridge.close()
