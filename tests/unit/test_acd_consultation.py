"""Agents' phones on calls the ACD did not route: a consultation from a colleague on an
ACD call, then its transfer or its cancel, and a direct extension call. The real call
model and ACD service, on an injected clock, with the reconciler running throughout."""
from hotline_proto import cardd_pb2, cti_pb2

from test_acd_service import Bench, agent_events, cmds, names

GRACE_S, EVERY_S = 5.0, 2.0


def bench(tmp_path):
    b = Bench(tmp_path, reconcile_every_s=EVERY_S, reconcile_grace_s=GRACE_S)
    b.rows = []
    b.svc.acd.log.sink = lambda rec, keep=b.svc.acd.log.sink: (b.rows.append(rec), keep(rec))
    return b


def run(b, t0, t1):
    """Tick once a second (the reconciler runs every EVERY_S); the events in between."""
    events = []
    for t in range(int(t0), int(t1) + 1):
        events += b.tick(t).events
    return events


def corrections(b):
    return [r for r in b.rows if r.event == "CORRECTION"]


def state(b, agent):
    return b.svc.acd.agents[agent].state


def acd_call_with_1001(b):
    """A caller reaches hotline and 1001 (longest idle) answers; 1002 stays ready."""
    call = b.incoming(2, "13800138000")
    b.answer(3, 1)
    assert state(b, "1001") == "busy" and state(b, "1002") == "ready"
    return call


def consult(b, t, call, to="8002"):
    reply = b.request(t, consultation_call=cti_pb2.ConsultationCall(
        call_id=call, device="ext:8001", called=to))
    return reply.call_id


def test_consult_a_ready_agent_then_transfer_the_acd_call_to_them(tmp_path):
    b = bench(tmp_path)
    call = acd_call_with_1001(b)
    consultation = consult(b, 10, call)
    out = b.last
    assert (2, "ring") in cmds(out)                     # 1002's phone rings for the consultation
    assert agent_events(out.events, "1001") == [("AgentBusy", "on_hold", "")]
    assert agent_events(out.events, "1002") == [("AgentBusy", "busy", "phone in use")]
    b.answer(12, 2)
    # A consultation far longer than grace + period: the reconciler sees nothing wrong.
    events = run(b, 13, 13 + 4 * (GRACE_S + EVERY_S))
    assert "AgentStateCorrected" not in names(events) and not agent_events(events)
    assert corrections(b) == [] and state(b, "1002") == "busy"

    out = b.request(50, transfer_call=cti_pb2.TransferCall(
        held_call_id=call, active_call_id=consultation, device="ext:8001")) and b.last
    assert names(out)[0] == "Transferred"
    assert agent_events(out.events, "1001") == [("AgentWorkingAfterCall", "after_call_work", "hotline")]
    assert agent_events(out.events, "1002") == [("AgentBusy", "busy", "transfer")]
    busy = next(e for e in out.events if e.agent == "1002")
    assert busy.call_id == call                         # 1002 is now on the ACD call
    assert b.svc.calls[call].agent == "1002" and b.svc.acd.agents["1002"].call == call
    b.hang_up(51, 1)                                    # 1001 puts the handset down

    events = run(b, 51, 79)
    assert agent_events(events, "1002") == [] and corrections(b) == []
    out = b.hang_up(80, 5)                              # the caller ends the call with 1002
    assert agent_events(out.events, "1002") == [("AgentWorkingAfterCall", "after_call_work", "hotline")]
    assert b.svc.acd.agents["1002"].acw_talk == 30.0    # talk counted from the transfer
    assert agent_events(b.tick(85.5).events, "1002") == [("AgentReady", "ready", "")]   # 5 s wrap-up
    complete = [r for r in b.rows if r.event == "COMPLETE"]
    assert [r.agent for r in complete] == ["1002"] and complete[0].call == call


def test_consult_then_cancel_leaves_the_consulted_agent_ready(tmp_path):
    b = bench(tmp_path)
    call = acd_call_with_1001(b)
    consultation = consult(b, 10, call)
    b.answer(11, 2)
    run(b, 12, 30)
    out = b.hang_up(31, 2)                              # 1002 is done talking and hangs up
    assert agent_events(out.events, "1002") == [("AgentReady", "ready", "")]
    assert consultation not in b.model.calls
    out = b.request(32, retrieve_call=cti_pb2.CallRef(call_id=call, device="ext:8001")) and b.last
    assert agent_events(out.events, "1001") == [("AgentBusy", "busy", "")]
    # 1001 consults again and cancels before 1002 answers.
    consultation = consult(b, 40, call)
    assert state(b, "1002") == "busy"
    out = b.request(45, clear_connection=cti_pb2.CallRef(call_id=consultation,
                                                         device="ext:8001")) and b.last
    assert (2, "hangup") in cmds(out)                   # 1002's phone stops ringing
    assert agent_events(out.events, "1002") == [("AgentReady", "ready", "")]
    run(b, 46, 60)
    assert corrections(b) == [] and state(b, "1002") == "ready"
    # The ACD call goes on with 1001 and ends with their wrap-up; 1002 had none.
    b.request(61, retrieve_call=cti_pb2.CallRef(call_id=call, device="ext:8001"))
    out = b.hang_up(70, 5)
    assert agent_events(out.events, "1001") == [("AgentWorkingAfterCall", "after_call_work", "hotline")]
    assert [r.agent for r in b.rows if r.event == "COMPLETE"] == ["1001"]


def test_a_direct_extension_call_makes_both_agents_busy_then_ready_without_drift(tmp_path):
    b = bench(tmp_path)
    out = b.ev(1, 1, off_hook=cardd_pb2.OffHook())      # 1001 lifts the handset
    assert agent_events(out.events, "1001") == [("AgentBusy", "busy", "phone in use")]
    for i, d in enumerate("8002"):
        out = b.ev(2 + i * 0.2, 1, digit=cardd_pb2.Digit(digit=d))
    assert "Delivered" in names(out) and (2, "ring") in cmds(out)
    assert agent_events(out.events, "1002") == [("AgentBusy", "busy", "phone in use")]
    b.answer(4, 2)
    # A caller arriving meanwhile waits: neither phone can take an offer.
    b.incoming(10, "13800138000")
    assert names(b.last)[-1] == "Queued" and (1, "ring") not in cmds(b.last)
    events = run(b, 11, 40)
    assert "AgentStateCorrected" not in names(events) and not agent_events(events)
    out = b.hang_up(41, 2)                              # 1002 hangs up: the call is over
    assert agent_events(out.events, "1002")[0] == ("AgentReady", "ready", "")
    assert (2, "ring") in cmds(out)                     # the waiting caller reaches 1002 at once
    assert agent_events(out.events, "1001") == []       # 1001's handset is still up
    b.hang_up(43, 1)                                    # (no CSTA event: the next tick sees it)
    assert agent_events(b.tick(43.1).events, "1001") == [("AgentReady", "ready", "")]
    assert corrections(b) == []
    assert [r.event for r in b.rows if r.event in ("ACW", "COMPLETE")] == []


def test_not_ready_asked_during_a_consultation_applies_when_it_ends(tmp_path):
    b = bench(tmp_path)
    call = acd_call_with_1001(b)
    consult(b, 10, call)
    b.answer(11, 2)
    b.agent(12, "1002", "not_ready", reason="lunch")
    assert state(b, "1002") == "busy"
    out = b.hang_up(20, 2)
    assert agent_events(out.events, "1002") == [("AgentNotReady", "not_ready", "lunch")]
