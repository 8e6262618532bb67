"""Blind transfers into an ACD queue, live: the real call model with the AcdService on it,
cardd events and CTI requests in at given times, CSTA/agent events and cardd commands out."""
import pytest

from ctid.acd import QueueConfig
from ctid.model.callmodel import RequestError
from ctid.model.calls import ConnState
from hotline_proto import cardd_pb2, cti_pb2

from test_acd_service import Bench, agent_events, cmd, cmds, names

QUEUES = [QueueConfig("hotline", members=("1001", "1002"), wrapup_s=5, announce_first_s=None),
          QueueConfig("billing", members=("1003",), wrapup_s=0, announce_first_s=None)]


def bench(tmp_path, queues=QUEUES):
    b = Bench(tmp_path, queues=queues)
    b.rows = []
    b.svc.acd.log.sink = lambda rec, keep=b.svc.acd.log.sink: (b.rows.append(rec), keep(rec))
    return b


def transfer(b, t, call, device, to):
    return b.request(t, single_step_transfer=cti_pb2.SingleStepTransfer(
        call_id=call, device=device, to=to)) and b.last


def live(call):
    return {d: c.state for d, c in call.connections.items() if c.state != ConnState.NULL}


def test_an_agent_transfers_an_acd_call_to_another_queue(tmp_path):
    b = bench(tmp_path)
    b.agent(1, "1002", "not_ready")
    b.agent(1, "1003", "login", reason="not_ready")        # billing: nobody ready yet
    call = b.incoming(2, "13800138000")
    b.request(2.5, set_user_data=cti_pb2.SetUserData(call_id=call, data={"account": "A-77"}))
    b.answer(3, 1)                                         # 1001 takes it in hotline
    b.ev(3.02, 5, prompt_done=cardd_pb2.PromptDone(interrupted=True))   # the music, stopped
    assert b.svc.acd.agents["1001"].state == "busy"

    out = transfer(b, 30, call, "ext:8001", "queue:billing")
    transferred, queued = [e for e in out.events if not e.agent_state]
    assert (transferred.name, transferred.device, transferred.cause) == ("Transferred", "ext:8001", "transfer")
    assert transferred.reason == "to queue:billing"
    assert (queued.name, queued.device, queued.data["queue"]) == ("Queued", "queue:billing", "billing")
    assert queued.data["account"] == "A-77" and queued.calling == "13800138000"
    assert {c.device: c.state for c in queued.connections if c.state != cti_pb2.CS_NULL} == {
        "trunk:node1/5": cti_pb2.CS_CONNECTED, "queue:billing": cti_pb2.CS_QUEUED}
    assert agent_events(out.events, "1001") == [("AgentWorkingAfterCall", "after_call_work", "hotline")]
    # 1001's phone leaves the call and is hung up; the caller hears billing's music
    assert cmds(out) == [(1, "unbridge"), (1, "hangup"), (5, "play_prompt")]
    assert cmd(out, 5, "play_prompt").play_prompt.files == [b.audio.music_file]
    assert b.model.parties["ext:8001"].call_id == ""
    rows = [r for r in b.rows if r.call == call and r.event != "AGENT_STATE"]
    assert [(r.event, r.queue, r.agent) for r in rows[-2:]] == [
        ("TRANSFER", "hotline", "1001"), ("ENTERQUEUE", "billing", "")]
    assert rows[-2].data["to_queue"] == "billing"
    assert rows[-1].data["transfer_from"] == "hotline" and rows[-1].data["caller"] == "13800138000"
    assert names(b.ev(40, 5, prompt_done=cardd_pb2.PromptDone())) == []
    assert cmds(b.last) == [(5, "play_prompt")]            # the music loops while waiting

    out = b.tick(35.5)                                     # hotline's 5 s wrap-up
    assert agent_events(out.events, "1001") == [("AgentReady", "ready", "")]
    assert not b.model.calls[call].connection("ext:8002")  # hotline's agents are not offered it

    out = b.agent(45, "1003", "ready") and b.last
    assert names(out) == ["AgentReady", "AgentBusy", "Delivered", "AgentBusy"]
    delivered = out.events[2]
    assert (delivered.device, delivered.agent) == ("ext:8004", "1003")
    assert delivered.data["account"] == "A-77" and delivered.data["queue"] == "billing"
    assert cmd(out, 4, "ring").ring.caller_id == "13800138000"
    out = b.answer(48, 4)
    assert names(out) == ["Established", "AgentBusy"]
    assert cmds(out) == [(4, "bridge"), (5, "stop_media")]
    assert live(b.model.calls[call]) == {"trunk:node1/5": ConnState.CONNECTED,
                                         "ext:8004": ConnState.CONNECTED}
    out = b.hang_up(60, 5)
    assert out.cdrs[0]["transfers"] == ["ext:8001->queue:billing"]
    assert out.cdrs[0]["outcome"] == "answered"
    assert [r.event for r in b.rows if r.call == call and r.event != "AGENT_STATE"] == [
        "ENTERQUEUE", "OFFER", "CONNECT", "TRANSFER", "ENTERQUEUE", "OFFER", "CONNECT", "COMPLETE"]


def test_a_transfer_to_a_number_routed_to_a_queue_reaches_its_ready_agent(tmp_path):
    # The bench's dial plan routes 12346 to queue:backup.
    queues = QUEUES[:1] + [QueueConfig("backup", members=("1003",), wrapup_s=0,
                                       announce_first_s=None)]
    b = bench(tmp_path, queues=queues)
    b.agent(1, "1003", "login")
    call = b.incoming(2, "13800138000")
    b.answer(3, 1)
    out = transfer(b, 20, call, "ext:8001", "12346")
    calls = [e for e in out.events if not e.agent_state]
    assert [(e.name, e.device) for e in calls] == [
        ("Transferred", "ext:8001"), ("Queued", "queue:backup"), ("Delivered", "ext:8004")]
    assert calls[0].reason == "to queue:backup" and calls[2].agent == "1003"
    assert ("AgentWorkingAfterCall", "after_call_work", "hotline") in agent_events(out.events, "1001")
    enter = [r for r in b.rows if r.call == call and r.event == "ENTERQUEUE"][-1]
    assert enter.queue == "backup" and enter.data["transfer_from"] == "hotline"
    out = b.answer(22, 4)
    assert cmds(out) == [(4, "bridge"), (5, "stop_media")]
    assert b.svc.calls[call].agent == "1003"
    assert b.model.calls[call].transfers == ["ext:8001->queue:backup"]


def test_a_direct_call_transferred_into_a_queue_simply_arrives_there(tmp_path):
    b = bench(tmp_path)
    b.agent(1, "1002", "logout")                           # 8002 is an ordinary phone here
    out = b.ev(2, 5, incoming=cardd_pb2.Incoming(ani="13800138000", dnis="8002"))
    call = out.events[0].call_id
    assert names(out) == ["Delivered"] and out.events[0].device == "ext:8002"
    b.answer(4, 2)
    assert call not in b.svc.calls
    out = transfer(b, 20, call, "ext:8002", "queue:hotline")
    calls = [e for e in out.events if not e.agent_state]
    assert [(e.name, e.device) for e in calls] == [
        ("Transferred", "ext:8002"), ("Queued", "queue:hotline"), ("Delivered", "ext:8001")]
    assert agent_events(out.events, "1002") == []          # nobody's wrap-up
    enter = next(r for r in b.rows if r.call == call and r.event != "AGENT_STATE")
    assert enter.event == "ENTERQUEUE" and "transfer_from" not in enter.data
    assert (5, "answer") not in cmds(out)                  # the line was answered by 8002
    b.answer(25, 1)
    assert [e[1] for e in agent_events(b.last.events, "1001")] == ["busy"]
    assert live(b.model.calls[call]) == {"trunk:node1/5": ConnState.CONNECTED,
                                         "ext:8001": ConnState.CONNECTED}


@pytest.mark.parametrize("to, error", [
    ("queue:nosuch", "cannot transfer to queue:nosuch: no such queue"),
    ("12346", "cannot transfer to queue:backup (the route for '12346'): no such queue"),
    ("7777", "no extension or queue route for '7777'")])
def test_a_transfer_to_a_queue_that_does_not_exist_is_refused_and_nothing_changes(tmp_path, to, error):
    b = bench(tmp_path)                                    # no queue "backup" here
    call = b.incoming(2, "13800138000")
    b.answer(3, 1)
    before = live(b.model.calls[call])
    n = len(b.log)
    with pytest.raises(RequestError) as e:
        transfer(b, 20, call, "ext:8001", to)
    assert str(e.value) == error
    assert len(b.log) == n and live(b.model.calls[call]) == before
    assert before == {"trunk:node1/5": ConnState.CONNECTED, "ext:8001": ConnState.CONNECTED}
    assert b.svc.acd.agents["1001"].state == "busy" and b.svc.calls[call].agent == "1001"
    assert b.model.parties["ext:8001"].call_id == call and not b.model.calls[call].transfers


def test_only_a_party_on_the_call_can_transfer_it_or_consult_a_queue(tmp_path):
    b = bench(tmp_path)
    call = b.incoming(2, "13800138000")
    b.answer(3, 1)
    with pytest.raises(RequestError, match="device ext:8002 has no connection in call"):
        transfer(b, 10, call, "ext:8002", "queue:billing")
    with pytest.raises(RequestError, match="device ext:8002 has no connection in call"):
        b.request(11, consultation_call=cti_pb2.ConsultationCall(
            call_id=call, device="ext:8002", called="queue:billing"))
    assert live(b.model.calls[call]) == {"trunk:node1/5": ConnState.CONNECTED,
                                         "ext:8001": ConnState.CONNECTED}   # not held
    assert b.svc.acd.agents["1001"].state == "busy"
