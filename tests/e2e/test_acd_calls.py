"""The live ACD end to end: ctisim (the far side), cardd and ctid as processes, CTI clients
in the test. Callers arrive on an E1 PRI span and on analog CO lines, queue, hear music and
their position in Mandarin, and are delivered to agents on FXS phones who answer; the
clients see Queued, Delivered, Established and the agents' state events in order. Then
ring no answer, wrap-up across a transfer, a sticky agent, overflow to another queue, a
supervisor's whisper heard by the agent and not by the caller, bad requests refused with
clear errors, and the figures (QueueStatistics, /metrics, the queue log in SQLite).

The far side runs in a process of its own (tests/e2e/stack.py as a script): the virtual
cards (4 FXS phones, 2 CO lines, one PRI span whose exchange is libpri's network side) on
the realtime clock; it records what chosen ports hear and takes orders on a control socket.
"""
import os
import time

import pytest

from tests.e2e.acd_stack import (ADMIN, AGENT1, EXT_ROUTE, WATCHER, AcdStack, agents_toml, cardd_toml,
                                 cdrs, heard, metrics, moh_file, queue_log, route, running, speak,
                                 story, trunk_group, tts_file, until)
from tests.e2e.stack import CTID_SECURE_HEAD, wait

CARDD_TOML = cardd_toml(pri=True)

CTID_TOML = (CTID_SECURE_HEAD + trunk_group("co", "node1/5-6", "12345")
             + trunk_group("pri", ["node1/32-46", "node1/48-62"]) + EXT_ROUTE
             + route("12345", "queue:hotline", "trunk") + route("12346", "queue:triage", "trunk") + """
[acd]
announce = "tts"
figures_every_s = 2
reconcile_every_s = 2

[[queue]]
name = "hotline"
members = ["1001", "1002"]
wrapup_s = 1.5
rona_s = 3
announce_first_s = 1.2
announce_every_s = 30
sticky_wait_s = 8

[[queue]]
name = "triage"
members = ["1001", "1002"]
wrapup_s = 1.5
announce = false
overflow = [{{when = "wait", threshold = 2, target = "queue:backup"}}]

[[queue]]
name = "backup"
members = ["1003"]
wrapup_s = 1
announce = false
""" + agents_toml("1001", "1002", "1003", "9001"))

CLIENTS = {
    "agent1": AGENT1,
    "sup": 'role = "supervisor"\ndevices = ["ext:8003"]\nagents = ["*"]\nqueues = ["*"]\n',
    "admin": ADMIN,
    "watcher": WATCHER,
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = AcdStack(str(tmp_path_factory.mktemp("acd-e2e")), CTID_TOML, CLIENTS, CARDD_TOML)
    with running(s, answering=(1, 2, 3, 4), pri=True):   # agents answer 0.5 s into the first ring
        yield s


def test_agents_log_in_and_bad_requests_get_clear_errors(stack):
    mark = stack.mark()
    r = stack.agent("agent1", "1001", "login", device="ext:8001")
    assert r.status["agent_state"] == "ready"
    # an agent controls only themselves (the CTI scope), and says so
    r = stack.agent("agent1", "1002", "login", device="ext:8002", ok=False)
    assert r.error == "refused: agent: agent '1002' is not agent1's to control"
    stack.agent("admin", "1002", "login", device="ext:8002")
    stack.agent("admin", "1003", "login", device="8004")
    stack.agent("sup", "9001", "login", device="ext:8003", reason="not_ready")
    bad = [("admin", "1009", "ready", "", "", "unknown agent '1009'"),
           ("admin", "1003", "login", "ext:8004", "", "'login' is not allowed in state 'ready'"),
           ("admin", "1003", "logout", "", "", None),
           ("admin", "1003", "ready", "", "", "'ready' is not allowed in state 'logged_off'"),
           ("admin", "1003", "login", "trunk:node1/5", "", "trunk:node1/5 is not an extension"),
           ("admin", "1003", "login", "ext:8001", "", "already has agent '1001' logged in"),
           ("admin", "", "status", "queue:nope", "", "unknown queue 'nope'"),
           ("sup", "1001", "supervise", "ext:8003", "listen", "not on a queue call"),
           ("admin", "1001", "sing", "", "", "unknown agent action 'sing'"),
           ("admin", "1003", "login", "ext:8004", "", None)]
    for client, agent, action, device, reason, error in bad:
        r = stack.agent(client, agent, action, device, reason, ok=error is None)
        if error is not None:
            assert not r.ok and error in r.error, (action, r.error)
    until(stack, mark, "AgentLoggedOn", agent="9001")
    until(stack, mark, "AgentReady", agent="1003")
    states = [(e.name, e.agent, e.agent_state, e.device) for e in stack.watch.since(mark) if e.agent]
    assert states[:6] == [
        ("AgentLoggedOn", "1001", "not_ready", "ext:8001"), ("AgentReady", "1001", "ready", "ext:8001"),
        ("AgentLoggedOn", "1002", "not_ready", "ext:8002"), ("AgentReady", "1002", "ready", "ext:8002"),
        ("AgentLoggedOn", "1003", "not_ready", "ext:8004"), ("AgentReady", "1003", "ready", "ext:8004")]
    assert ("AgentLoggedOn", "9001", "not_ready", "ext:8003") in states


def test_a_pri_caller_queues_hears_music_and_the_position_then_an_agent_answers(stack):
    from ctid.acd_service.audio import PHRASES
    from ivr.speech import say_number
    music = moh_file(stack)
    words = [PHRASES["zh"][0], say_number(1).text, PHRASES["zh"][1], PHRASES["zh"][2],
             say_number(3).text, PHRASES["zh"][3]]
    # ctid renders the announcement's fragments at start, off the call path
    wait(lambda: all(os.path.isfile(tts_file(stack, w)) for w in words), "the TTS fragments",
         stack, limit=60, step=0.2)
    stack.agent("agent1", "1001", "not_ready", reason="break")
    stack.agent("admin", "1002", "not_ready", reason="meeting")
    mark = stack.mark()
    stack.sim("record", channels=[33])
    stack.pri_call(33, "12345", "13800138000")
    queued = until(stack, mark, "Queued", device="queue:hotline")
    call = queued.call_id
    assert queued.calling == "13800138000" and queued.data["dnis"] == "12345"
    assert queued.data["queue_position"] == "1" and queued.data["expected_wait_s"] == "180"

    wait(lambda: heard(stack, 33, music, head_s=0.9), "the caller hearing the music", stack,
         limit=10, step=0.5)
    # "您现在排在第" "一" ... : the caller's place, spoken (the expected wait follows)
    wait(lambda: heard(stack, 33, tts_file(stack, words[0]))
         and heard(stack, 33, tts_file(stack, words[1])),
         "the caller hearing '您现在排在第一位'", stack, limit=15, step=0.5)

    stack.agent("agent1", "1001", "ready")
    until(stack, mark, "Established", device="ext:8001")
    delivered = stack.watch.find(mark, "Delivered", device="ext:8001")
    assert delivered.call_id == call and delivered.agent == "1001"
    assert delivered.data["ani"] == "13800138000" and delivered.data["queue"] == "hotline"
    until(stack, mark, "AgentBusy", agent="1001", agent_state="busy")
    assert story(stack, mark, call, ["1001"]) == [
        ("Queued", "queue:hotline"),
        ("AgentReady", "1001:ready"), ("AgentBusy", "1001:reserved"),
        ("Delivered", "ext:8001"), ("AgentBusy", "1001:ringing"),
        ("Established", "ext:8001"), ("AgentBusy", "1001:busy")]
    stack.do(1, "on_hook")                          # the agent ends the call
    cleared = until(stack, mark, "CallCleared", call_id=call)
    until(stack, cleared.seq, "AgentReady", agent="1001", what="1001 ready after the wrap-up")
    assert story(stack, mark, call, ["1001"])[-5:] == [
        ("ConnectionCleared", "ext:8001"), ("ConnectionCleared", "trunk:node1/33"),
        ("CallCleared", ""), ("AgentWorkingAfterCall", "1001:after_call_work"),
        ("AgentReady", "1001:ready")]


def test_ring_no_answer_moves_an_analog_caller_to_the_next_agent(stack):
    stack.sim("set", channel=1, attr="answer_after_rings", value=None)
    try:
        # The phone takes rings less than 6 s apart for one call (and listens for caller
        # ID only at a call's first ring); 8001 will ring about 2 s after the CO line does.
        wait(lambda: stack.get(1, "tick") - stack.get(1, "_last_ring_edge") >= 4.2 / 0.02,
             "8001 quiet long enough for a new call", stack)
        mark = stack.mark()
        stack.do(5, "ring", caller_id="13911112222")
        delivered = until(stack, mark, "Delivered", device="ext:8001", limit=20)
        call = delivered.call_id
        stack.agent("admin", "1002", "ready")            # 1002 is free from now on
        wait(lambda: stack.get(1, "caller_id") == "13911112222",
             lambda: f"8001 showing the caller: {stack.do(1, 'describe')}", stack)
        until(stack, mark, "AgentNotReady", agent="1001", what="ring no answer after 3 s")
        until(stack, mark, "Established", device="ext:8002")
        wait(lambda: not stack.get(1, "ringing"), "8001 no longer ringing", stack, limit=6)
        assert stack.watch.find(mark, "AgentNotReady", agent="1001").reason == "rona"
        assert story(stack, mark, call, ["1001"]) == [
            ("Queued", "queue:hotline"), ("AgentBusy", "1001:reserved"), ("Delivered", "ext:8001"),
            ("AgentBusy", "1001:ringing"), ("AgentNotReady", "1001:not_ready"),
            ("ConnectionCleared", "ext:8001"), ("Queued", "queue:hotline"),
            ("Delivered", "ext:8002"), ("Established", "ext:8002")]
        stack.do(2, "on_hook")
        until(stack, mark, "CallCleared", call_id=call)
    finally:
        stack.sim("set", channel=1, attr="answer_after_rings", value=1)
    stack.agent("agent1", "1001", "ready")


def test_a_transfer_from_an_agent_keeps_the_wrap_up_rules(stack):
    from hotline_proto import cti_pb2
    until(stack, 0, "AgentReady", agent="1002")
    wait(lambda: stack.agent("admin", "1002", "status").status["agent_state"] == "ready",
         "1002 out of wrap-up", stack)
    stack.agent("admin", "1002", "not_ready")
    mark = stack.mark()
    stack.pri_call(34, "12345", "13700137000")
    est = until(stack, mark, "Established", device="ext:8001")
    call = est.call_id
    stack.agent("admin", "1002", "ready")
    m2 = stack.mark()
    r = stack.client("agent1").request(cti_pb2.Request(single_step_transfer=cti_pb2.SingleStepTransfer(
        call_id=call, device="ext:8001", to="8002")), timeout_s=10)
    assert r.ok, r.error
    stack.do(1, "on_hook")
    until(stack, m2, "Established", device="ext:8002")
    until(stack, m2, "AgentReady", agent="1001", what="1001 ready after the wrap-up")
    assert stack.agent("admin", "1002", "status").status["agent_state"] == "busy"
    assert story(stack, m2, call, ["1001", "1002"]) == [
        ("Transferred", "ext:8001"), ("Delivered", "ext:8002"),
        ("AgentBusy", "1002:busy"),                          # 1002 takes the call
        ("AgentWorkingAfterCall", "1001:after_call_work"),   # 1001's talk is over
        ("Established", "ext:8002"),
        ("AgentReady", "1001:ready")]                        # 1001's wrap-up ends
    stack.do(2, "on_hook")
    cleared = until(stack, m2, "CallCleared", call_id=call)
    until(stack, cleared.seq, "AgentReady", agent="1002", what="1002 ready after the wrap-up")
    assert story(stack, m2, call, ["1002"])[-5:] == [
        ("ConnectionCleared", "ext:8002"), ("ConnectionCleared", "trunk:node1/34"),
        ("CallCleared", ""), ("AgentWorkingAfterCall", "1002:after_call_work"),
        ("AgentReady", "1002:ready")]


def test_a_returning_caller_gets_the_agent_who_served_them(stack):
    # 13911112222 was answered by 1002 (after ring no answer); 1001 has been idle longer
    mark = stack.mark()
    stack.pri_call(35, "12345", "13911112222")
    first = until(stack, mark, "Established", device="ext:8002")
    stack.pri_call(36, "12345", "13622223333")
    second = until(stack, mark, "Established", device="ext:8001")
    assert first.calling == "13911112222" and second.calling == "13622223333"
    stack.do(1, "on_hook")
    stack.do(2, "on_hook")
    until(stack, mark, "CallCleared", call_id=first.call_id)
    until(stack, mark, "CallCleared", call_id=second.call_id)


def test_overflow_to_another_queue(stack):
    stack.agent("agent1", "1001", "not_ready", reason="training")
    wait(lambda: stack.agent("admin", "1002", "status").status["agent_state"] == "ready",
         "1002 out of wrap-up", stack)
    stack.agent("admin", "1002", "not_ready", reason="training")
    mark = stack.mark()
    stack.pri_call(37, "12346", "13500135000")
    queued = until(stack, mark, "Queued", device="queue:triage")
    call = queued.call_id
    until(stack, mark, "Established", device="ext:8004", limit=15)
    diverted = stack.watch.find(mark, "Diverted", call_id=call)
    assert diverted.device == "queue:triage" and diverted.reason == "overflow (wait) to queue:backup"
    assert story(stack, mark, call, ["1003"])[:7] == [
        ("Queued", "queue:triage"), ("Diverted", "queue:triage"),
        ("AgentBusy", "1003:reserved"), ("Delivered", "ext:8004"), ("AgentBusy", "1003:ringing"),
        ("Established", "ext:8004"), ("AgentBusy", "1003:busy")]
    waited = diverted.time - queued.time
    assert 1.95 <= waited <= 3.0, waited
    stack.do(4, "on_hook")
    until(stack, mark, "CallCleared", call_id=call)
    stack.agent("agent1", "1001", "ready")
    stack.agent("admin", "1002", "ready")


def test_a_supervisor_whisper_is_heard_by_the_agent_and_not_by_the_caller(stack):
    mark = stack.mark()
    stack.pri_call(38, "12345", "13300133000")
    est = until(stack, mark, "Established", device="ext:8001")
    call = est.call_id
    # an agent may not listen in on anyone: supervising needs the supervisor role
    r = stack.agent("agent1", "1002", "supervise", device="ext:8001", reason="listen", ok=False)
    assert r.error == "refused: agent: supervise needs the supervisor or admin role; agent1 is agent"
    r = stack.agent("agent1", "1001", "supervise", device="ext:8001", reason="listen", ok=False)
    assert r.error == "refused: agent: supervise needs the supervisor or admin role; agent1 is agent"
    r = stack.agent("sup", "1001", "supervise", device="ext:8003", reason="whisper")
    assert r.call_id == call
    sup = until(stack, mark, "Established", device="ext:8003")
    assert sup.call_id != call and sup.data["supervise"] == call and sup.data["mode"] == "whisper"
    time.sleep(0.3)                                 # the conference is set up on the next tick
    ears = (38, 1, 3)                               # the caller, the agent, the supervisor
    heard = speak(stack, 3, 1400.0, ears)                        # the supervisor whispers
    assert heard[1] > -20.0, heard                  # the agent hears it
    assert heard[38] < -50.0, heard                 # the caller does not
    stack.agent("sup", "1001", "supervise", device="ext:8003", reason="barge")
    time.sleep(0.2)
    heard = speak(stack, 3, 1400.0, ears)
    assert heard[1] > -20.0 and heard[38] > -20.0, heard     # barge: both hear the supervisor
    heard = speak(stack, 1, 1000.0, ears)                        # the agent talks: the supervisor hears it
    assert heard[38] > -20.0 and heard[3] > -20.0, heard
    stack.do(3, "on_hook")                          # the supervisor leaves
    until(stack, mark, "CallCleared", call_id=sup.call_id)
    time.sleep(0.2)
    heard = speak(stack, 1, 1000.0, ears)                        # caller and agent are bridged again
    assert heard[38] > -20.0, heard
    stack.do(1, "on_hook")
    until(stack, mark, "CallCleared", call_id=call)


def test_figures_reach_cti_clients_metrics_and_the_queue_log(stack):
    from hotline_proto import cti_pb2

    def stats():
        stack.watch.pump()
        got = [i for i in stack.watch.items if isinstance(i, cti_pb2.Event)
               and i.name == "QueueStatistics" and i.device == "queue:hotline"]
        return got and int(got[-1].data["answered"]) >= 6 and got[-1]
    last = wait(stats, "QueueStatistics for the hotline", stack, limit=10)
    assert last.data["abandoned"] == "0" and last.data["service_level"] != ""
    assert int(last.data["agents.ready"]) + int(last.data["agents.after_call_work"]) >= 1
    text = metrics(stack)
    assert 'hotline_ctid_acd_queue_events_total{event="rona",queue="hotline"} 1.0' in text
    assert 'hotline_ctid_acd_queue_events_total{event="overflowed",queue="triage"} 1.0' in text
    assert 'hotline_ctid_acd_queue_events_total{event="transferred",queue="hotline"} 1.0' in text
    assert 'hotline_ctid_acd_waiting{queue="hotline"} 0.0' in text

    def rows():
        got = {r["event"] for r in queue_log(stack)}
        return {"ENTERQUEUE", "CONNECT", "RINGNOANSWER", "TRANSFER", "OVERFLOW", "SUPERVISE",
                "COMPLETE", "AGENTLOGIN"} <= got and got
    wait(rows, "the queue log in SQLite", stack, limit=10)
    records = cdrs(stack)
    assert {c["outcome"] for c in records} >= {"answered"}
    assert any(leg["device"] == "queue:hotline" for c in records for leg in c["legs"])
