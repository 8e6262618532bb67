"""An agent consults a queue (attended transfer into a queue), live: the real call model
with the AcdService on it, an injected clock. The three endings: the queue's agent answers
and TransferCall joins the caller to them; the consultation is cancelled (withdrawn, not
abandoned) and the caller retrieved; TransferCall while the consultation still waits (the
caller takes its place in the queue)."""
import pytest

from ctid.acd import QueueConfig
from ctid.model.callmodel import RequestError
from ctid.model.calls import ConnState
from hotline_proto import cardd_pb2, cti_pb2

from test_acd_service import agent_events, cmd, cmds, names
from test_acd_transfer import QUEUES, bench, live

BACKUP = QUEUES[:1] + [QueueConfig("backup", members=("1003",), wrapup_s=0,
                                   announce_first_s=None)]


def consult(b, t, call, called, device="ext:8001"):
    return b.request(t, consultation_call=cti_pb2.ConsultationCall(
        call_id=call, device=device, called=called)).call_id


def complete(b, t, held, active, device="ext:8001"):
    b.request(t, transfer_call=cti_pb2.TransferCall(held_call_id=held, active_call_id=active,
                                                    device=device))
    return b.last


def acd_rows(b, call):
    return [(r.event, r.queue, r.agent) for r in b.rows
            if r.call == call and r.event != "AGENT_STATE"]


def calls_events(out):
    return [(e.name, e.call_id, e.device) for e in out.events if not e.agent_state]


def on_a_call(b):
    """1001 (ext:8001) talks with 13800138000 (trunk 5) in hotline; 1003 is in billing."""
    b.agent(1, "1002", "not_ready")
    b.agent(1, "1003", "login")
    call = b.incoming(2, "13800138000")
    b.request(2.5, set_user_data=cti_pb2.SetUserData(call_id=call, data={"account": "A-77"}))
    b.answer(3, 1)
    return call


def test_the_queues_agent_answers_the_consultation_and_takes_the_caller(tmp_path):
    b = bench(tmp_path)
    c1 = on_a_call(b)
    c2 = consult(b, 10, c1, "queue:billing")
    out = b.last
    assert calls_events(out) == [("Held", c1, "ext:8001"), ("Originated", c2, "ext:8001"),
                                 ("Queued", c2, "queue:billing"), ("Delivered", c2, "ext:8004")]
    delivered = out.events[[e.name for e in out.events].index("Delivered")]
    assert delivered.agent == "1003" and delivered.calling == "8001"
    assert delivered.data["consultation_of"] == c1 and delivered.data["account"] == "A-77"
    # A hears the queue's music like a caller; the held caller the hold tone; B's phone rings
    assert cmds(out) == [(1, "unbridge"), (5, "play_tone"), (1, "play_prompt"), (4, "ring")]
    assert cmd(out, 1, "play_prompt").play_prompt.files == [b.audio.music_file]
    assert cmd(out, 4, "ring").ring.caller_id == "8001"
    assert b.svc.acd.agents["1001"].state == "on_hold"

    out = b.answer(15, 4)                                  # B answers: A and B talk
    assert names(out) == ["Established", "AgentBusy"]
    assert cmds(out) == [(1, "stop_media"), (4, "bridge")]
    assert cmd(out, 4, "bridge").bridge.other_channel == 1

    out = complete(b, 20, c1, c2)
    (transferred,) = [e for e in out.events if not e.agent_state]
    assert (transferred.name, transferred.call_id, transferred.secondary_call_id,
            transferred.device) == ("Transferred", c2, c1, "ext:8001")
    assert transferred.calling == "13800138000" and transferred.data["account"] == "A-77"
    assert transferred.data["queue"] == "billing" and transferred.data["transferred_from"] == c1
    assert agent_events(out.events) == [("AgentWorkingAfterCall", "after_call_work", "hotline")]
    assert cmds(out) == [(1, "unbridge"), (1, "stop_media"), (4, "stop_media"), (5, "stop_media"),
                         (4, "bridge"), (1, "hangup")]
    assert cmd(out, 4, "bridge").bridge.other_channel == 5        # caller and B talk
    assert c1 not in b.model.calls and b.model.parties["ext:8001"].call_id == ""
    assert live(b.model.calls[c2]) == {"ext:8004": ConnState.CONNECTED,
                                       "trunk:node1/5": ConnState.CONNECTED}
    assert {a: b.svc.acd.agents[a].state for a in ("1001", "1003")} == {
        "1001": "after_call_work", "1003": "busy"}
    assert b.svc.calls[c2].caller == "trunk:node1/5" and b.svc.calls[c2].agent == "1003"
    assert b.svc.acd.calls[c2].caller == "13800138000"
    # the queue log: the caller's hotline call ends in a TRANSFER, the billing entry that
    # goes on names where its caller came from
    assert acd_rows(b, c1) == [("ENTERQUEUE", "hotline", ""), ("OFFER", "hotline", "1001"),
                               ("CONNECT", "hotline", "1001"), ("TRANSFER", "hotline", "1001")]
    joined = [r for r in b.rows if r.event == "TRANSFER_IN"][0]
    assert (joined.call, joined.queue, joined.agent) == (c2, "billing", "1003")
    assert joined.data == {"from_call": c1, "from_queue": "hotline", "from_agent": "1001",
                           "consultation_by": "ext:8001", "caller": "13800138000"}

    out = b.hang_up(40, 5)                                 # the caller hangs up
    assert out.cdrs[0]["call_id"] == c2 and out.cdrs[0]["calling"] == "13800138000"
    assert out.cdrs[0]["transfers"] == [f"ext:8001->{c2}"]
    assert acd_rows(b, c2) == [("ENTERQUEUE", "billing", ""), ("OFFER", "billing", "1003"),
                               ("CONNECT", "billing", "1003"), ("TRANSFER_IN", "billing", "1003"),
                               ("COMPLETE", "billing", "1003")]
    assert b.svc.acd.agents["1003"].state == "ready"       # billing's wrap-up is 0
    b.tick(26)                                             # hotline's 5 s wrap-up
    assert b.svc.acd.agents["1001"].state == "ready"


def test_a_cancelled_consultation_is_withdrawn_and_the_caller_retrieved(tmp_path):
    b = bench(tmp_path)
    b.agent(1, "1002", "not_ready")
    b.agent(1, "1003", "login", reason="not_ready")        # nobody to answer in billing
    c1 = b.incoming(2, "13800138000")
    b.answer(3, 1)
    c2 = consult(b, 10, c1, "queue:billing")
    assert calls_events(b.last) == [("Held", c1, "ext:8001"), ("Originated", c2, "ext:8001"),
                                    ("Queued", c2, "queue:billing")]
    b.ev(14, 1, prompt_done=cardd_pb2.PromptDone())
    assert cmds(b.last) == [(1, "play_prompt")]             # A's music loops while waiting

    b.request(20, clear_connection=cti_pb2.CallRef(call_id=c2, device="ext:8001"))
    assert calls_events(b.last) == [("ConnectionCleared", c2, "ext:8001"),
                                    ("ConnectionCleared", c2, "queue:billing"),
                                    ("CallCleared", c2, "")]
    assert c2 not in b.svc.acd.calls and c2 not in b.svc.calls
    (withdrawn,) = [r for r in b.rows if r.call == c2 and r.event not in ("ENTERQUEUE",)]
    assert (withdrawn.event, withdrawn.queue) == ("WITHDRAWN", "billing")
    assert withdrawn.data["reason"] == "consultation cleared by ext:8001"
    f = b.svc.acd.queue_figures("billing", b.now)
    assert f.abandoned == 0                                # not the caller's abandon
    assert b.svc.acd.agents["1001"].state == "on_hold"

    out = b.request(21, retrieve_call=cti_pb2.CallRef(call_id=c1, device="ext:8001")) and b.last
    assert names(out) == ["Retrieved", "AgentBusy"]
    assert cmds(out) == [(5, "stop_media"), (1, "bridge")]
    assert live(b.model.calls[c1]) == {"trunk:node1/5": ConnState.CONNECTED,
                                       "ext:8001": ConnState.CONNECTED}
    assert b.svc.acd.agents["1001"].state == "busy" and b.svc.calls[c1].agent == "1001"
    # billing's agent becoming ready is offered nothing: the withdrawn entry is gone
    b.agent(30, "1003", "ready")
    assert "Delivered" not in names(b.last)


def test_a_transfer_while_the_consultation_waits_gives_the_caller_its_place(tmp_path):
    b = bench(tmp_path, queues=BACKUP)                     # 12346 routes to backup
    b.agent(1, "1002", "not_ready")
    b.agent(1, "1003", "login", reason="not_ready")
    first = b.ev(1.5, 6, incoming=cardd_pb2.Incoming(ani="13900000000", dnis="12346"))
    first = first.events[0].call_id                        # waits in backup
    c1 = b.incoming(2, "13800138000")
    b.answer(3, 1)
    b.ev(3.02, 5, prompt_done=cardd_pb2.PromptDone(interrupted=True))   # the music, stopped
    c2 = consult(b, 10, c1, "12346")                       # a number routed to the queue
    b.ev(11, 3, off_hook=cardd_pb2.OffHook())              # a later caller, from 8003
    for i, digit in enumerate("12346"):
        b.ev(11.1 + i / 10, 3, digit=cardd_pb2.Digit(digit=digit))
    later = b.last.events[-1].call_id
    assert [b.svc.acd.position(c) for c in (first, c2, later)] == [1, 2, 3]

    out = complete(b, 20, c1, c2)
    (transferred,) = [e for e in out.events if not e.agent_state]
    assert (transferred.call_id, transferred.secondary_call_id) == (c2, c1)
    assert {c.device: c.state for c in transferred.connections if c.state != cti_pb2.CS_NULL} \
        == {"queue:backup": cti_pb2.CS_QUEUED, "trunk:node1/5": cti_pb2.CS_CONNECTED}
    # A leaves (hung up); the caller's hold tone gives way to the queue's music
    assert cmds(out) == [(1, "unbridge"), (1, "stop_media"), (5, "stop_media"), (1, "hangup"),
                         (5, "play_prompt")]
    assert [b.svc.acd.position(c) for c in (first, c2, later)] == [1, 2, 3]
    assert b.svc.acd.agents["1001"].state == "after_call_work"
    assert b.model.parties["trunk:node1/5"].call_id == c2
    assert cmds(b.ev(25, 5, prompt_done=cardd_pb2.PromptDone())) == [(5, "play_prompt")]
    assert cmds(b.ev(26, 1, prompt_done=cardd_pb2.PromptDone())) == []   # A's late one

    b.agent(30, "1003", "ready")                           # the first caller goes first
    b.answer(31, 4)
    out = b.hang_up(40, 4)                   # the agent hangs up: wrap-up 0, the next call
    delivered = [e for e in out.events if e.name == "Delivered"]
    assert [(e.call_id, e.device, e.calling) for e in delivered] == [
        (c2, "ext:8004", "13800138000")]
    out = b.answer(45, 4)
    assert cmd(out, 4, "bridge").bridge.other_channel == 5
    assert acd_rows(b, c2)[-2:] == [("OFFER", "backup", "1003"), ("CONNECT", "backup", "1003")]
    assert ("TRANSFER_IN", "backup", "") in acd_rows(b, c2)


@pytest.mark.parametrize("called, error", [
    ("queue:nosuch", "cannot consult queue:nosuch: no such queue"),
    ("12346", "cannot consult queue:backup (the route for '12346'): no such queue"),
    ("7777", "no route for '7777'")])
def test_a_consultation_of_a_queue_that_does_not_exist_is_refused_before_the_hold(tmp_path, called,
                                                                                 error):
    b = bench(tmp_path)
    c1 = on_a_call(b)
    n = len(b.log)
    with pytest.raises(RequestError) as e:
        consult(b, 10, c1, called)
    assert str(e.value) == error
    assert len(b.log) == n and b.svc.acd.agents["1001"].state == "busy"
    assert live(b.model.calls[c1]) == {"trunk:node1/5": ConnState.CONNECTED,
                                       "ext:8001": ConnState.CONNECTED}


def test_a_waiting_consultation_cannot_be_conferenced(tmp_path):
    b = bench(tmp_path)
    b.agent(1, "1002", "not_ready")
    b.agent(1, "1003", "login", reason="not_ready")
    c1 = b.incoming(2, "13800138000")
    b.answer(3, 1)
    c2 = consult(b, 10, c1, "queue:billing")
    with pytest.raises(RequestError, match=f"call {c2} is waiting in queue:billing: a queue "
                                           "cannot be conferenced"):
        b.request(12, conference_call=cti_pb2.TransferCall(held_call_id=c1, active_call_id=c2,
                                                           device="ext:8001"))
    assert b.svc.acd.position(c2) == 1 and c1 in b.model.calls
