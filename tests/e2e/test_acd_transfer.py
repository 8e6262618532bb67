"""An agent puts a caller through to another queue, end to end: ctisim (the far side), cardd
and ctid as processes, CURVE CTI clients in the test. A CO caller reaches the hotline and
agent 1001 on an FXS phone; 1001's desktop sends SingleStepTransfer to queue:billing; the
caller hears billing's music while 1001 wraps up; billing's agent 1003 rings, answers, and
caller and 1003 hear each other. The watcher sees every event in order, and the queue log
in SQLite shows the transfer and the entry into billing.
"""
import time

import pytest

from tests.e2e.acd_stack import (ADMIN, AGENT1, EXT_ROUTE, WATCHER, AcdStack, agents_toml, cdrs,
                                 heard, moh_file, queue_log, route, running, speak, story,
                                 trunk_group, until)
from tests.e2e.stack import CTID_SECURE_HEAD, wait

CTID_TOML = (CTID_SECURE_HEAD + trunk_group("co", "node1/5-6", "12345") + EXT_ROUTE
             + route("12345", "queue:hotline", "trunk") + """
[acd]
figures_every_s = 60
reconcile_every_s = 2

[[queue]]
name = "hotline"
members = ["1001"]
wrapup_s = 1.5
announce = false

[[queue]]
name = "billing"
members = ["1003"]
wrapup_s = 1
announce = false
""" + agents_toml("1001", "1003", login=("1001",)))

CLIENTS = {"agent1": AGENT1, "admin": ADMIN, "watcher": WATCHER}
CALLER = "13800138000"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = AcdStack(str(tmp_path_factory.mktemp("acd-transfer-e2e")), CTID_TOML, CLIENTS)
    with running(s, answering=(1, 4)):              # agents answer 0.5 s into the first ring
        yield s


def caller_and_1003_hear_each_other(stack):
    ears = speak(stack, 5, 1000.0, (5, 4))          # the caller speaks: 1003 hears it
    assert ears[4] > -25.0, ears
    ears = speak(stack, 4, 1400.0, (5, 4))          # 1003 speaks: the caller hears it
    assert ears[5] > -25.0, ears


def test_an_agent_transfers_a_caller_to_the_billing_queue(stack):
    from hotline_proto import cti_pb2
    wait(lambda: stack.agent("admin", "1001", "status").status["agent_state"] == "ready",
         "1001 logged in at start", stack)
    stack.agent("admin", "1003", "login", device="ext:8004", reason="not_ready")
    mark = stack.mark()
    stack.do(5, "ring", caller_id=CALLER)
    est = until(stack, mark, "Established", device="ext:8001")
    call = est.call_id
    assert est.calling == CALLER and est.data["queue"] == "hotline"
    wait(lambda: stack.get(5, "state") == "connected", "the CO line answered", stack)

    # a queue that does not exist is refused and the caller stays with 1001
    r = stack.request("agent1", single_step_transfer=cti_pb2.SingleStepTransfer(
        call_id=call, device="ext:8001", to="queue:sales"))
    assert not r.ok and r.error == "cannot transfer to queue:sales: no such queue"
    assert stack.agent("admin", "1001", "status").status["call_id"] == call

    m2 = stack.mark()
    stack.sim("record", channels=[5])
    r = stack.request("agent1", single_step_transfer=cti_pb2.SingleStepTransfer(
        call_id=call, device="ext:8001", to="queue:billing"))
    assert r.ok, r.error
    stack.do(1, "on_hook")                          # 1001 puts the handset down
    queued = until(stack, m2, "Queued", device="queue:billing")
    assert queued.call_id == call and queued.calling == CALLER and queued.data["queue"] == "billing"
    transferred = stack.watch.find(m2, "Transferred")
    assert transferred.device == "ext:8001" and transferred.reason == "to queue:billing"

    # the caller hears billing's music on hold: some 0.4 s stretch of its first 3 s, code
    # for code (a late tick of the realtime clock on a loaded machine garbles a block or two)
    music = moh_file(stack)

    def hears_music():
        return any(heard(stack, 5, music, skip_s=k * 0.4, head_s=0.4) for k in range(8))
    wait(hears_music, "the caller hearing the music", stack, limit=10, step=0.5)
    until(stack, m2, "AgentReady", agent="1001", what="1001 ready after the wrap-up")

    stack.agent("admin", "1003", "ready")
    delivered = until(stack, m2, "Delivered", device="ext:8004")
    assert delivered.call_id == call and delivered.agent == "1003"
    assert delivered.data["ani"] == CALLER and delivered.data["queue"] == "billing"
    until(stack, m2, "Established", device="ext:8004")
    until(stack, m2, "AgentBusy", agent="1003", agent_state="busy")
    time.sleep(0.3)                                 # the bridge is made on the next tick
    caller_and_1003_hear_each_other(stack)

    assert story(stack, m2, call, ["1001", "1003"]) == [
        ("Transferred", "ext:8001"),
        ("AgentWorkingAfterCall", "1001:after_call_work"),  # 1001's talk is over
        ("Queued", "queue:billing"),
        ("AgentReady", "1001:ready"),                       # 1001's wrap-up ends
        ("AgentReady", "1003:ready"), ("AgentBusy", "1003:reserved"),
        ("Delivered", "ext:8004"), ("AgentBusy", "1003:ringing"),
        ("Established", "ext:8004"), ("AgentBusy", "1003:busy")]

    stack.do(5, "hang_up")                          # the caller is done
    cleared = until(stack, m2, "CallCleared", call_id=call)
    until(stack, cleared.seq, "AgentWorkingAfterCall", agent="1003")
    stack.do(4, "on_hook")

    def rows():
        got = [r for r in queue_log(stack) if r["call"] == call
               and r["event"] in ("ENTERQUEUE", "CONNECT", "TRANSFER", "COMPLETE")]
        return len(got) >= 5 and got
    got = wait(rows, "the queue log in SQLite", stack, limit=10)
    assert [(r["event"], r["queue"]) for r in got] == [
        ("ENTERQUEUE", "hotline"), ("CONNECT", "hotline"), ("TRANSFER", "hotline"),
        ("ENTERQUEUE", "billing"), ("CONNECT", "billing")] + [("COMPLETE", "billing")] * (len(got) - 5)
    cdr = wait(lambda: next((c for c in cdrs(stack) if c["call_id"] == call), None),
               "the CDR", stack, limit=10)
    assert cdr["transfers"] == ["ext:8001->queue:billing"] and cdr["outcome"] == "answered"


def test_an_agent_consults_the_billing_queue_then_transfers_the_caller(stack):
    """Attended transfer into a queue: 1001 holds the caller and consults queue:billing,
    1003 answers the consultation, TransferCall joins the caller with 1003."""
    from hotline_proto import cti_pb2
    for agent in ("1001", "1003"):                  # ready again after the previous test
        wait(lambda: stack.agent("admin", agent, "status").status["agent_state"] == "ready",
             f"{agent} ready", stack, limit=15)
    mark = stack.mark()
    stack.do(5, "ring", caller_id=CALLER)
    call = until(stack, mark, "Established", device="ext:8001").call_id
    wait(lambda: stack.get(5, "state") == "connected", "the CO line answered", stack)

    m2 = stack.mark()
    r = stack.request("agent1", consultation_call=cti_pb2.ConsultationCall(
        call_id=call, device="ext:8001", called="queue:billing"))
    assert r.ok, r.error
    consult = r.call_id
    delivered = until(stack, m2, "Delivered", device="ext:8004")
    assert delivered.call_id == consult and delivered.agent == "1003"
    assert delivered.calling == "8001" and delivered.data["consultation_of"] == call
    until(stack, m2, "Established", device="ext:8004")
    until(stack, m2, "AgentBusy", agent="1003", agent_state="busy")

    r = stack.request("agent1", transfer_call=cti_pb2.TransferCall(
        held_call_id=call, active_call_id=consult, device="ext:8001"))
    assert r.ok, r.error
    transferred = until(stack, m2, "Transferred")
    assert (transferred.call_id, transferred.secondary_call_id) == (consult, call)
    assert transferred.calling == CALLER and transferred.data["ani"] == CALLER
    stack.do(1, "on_hook")                          # 1001 puts the handset down
    until(stack, m2, "AgentReady", agent="1001", what="1001 ready after the wrap-up")
    time.sleep(0.3)                                 # the bridge is made on the next tick
    caller_and_1003_hear_each_other(stack)

    story = [(e.name, f"{e.agent}:{e.agent_state}" if e.agent_state else f"{e.call_id}:{e.device}")
             for e in stack.watch.since(m2)
             if e.call_id in (call, consult) or e.agent in ("1001", "1003")]
    assert story == [
        ("Held", f"{call}:ext:8001"),
        ("Originated", f"{consult}:ext:8001"),
        ("Queued", f"{consult}:queue:billing"),             # 1001 waits there, with music
        ("AgentBusy", "1003:reserved"), ("Delivered", f"{consult}:ext:8004"),
        ("AgentBusy", "1003:ringing"),
        ("AgentBusy", "1001:on_hold"),
        ("Established", f"{consult}:ext:8004"), ("AgentBusy", "1003:busy"),
        ("Transferred", f"{consult}:ext:8001"),             # the caller takes 1001's place
        ("AgentWorkingAfterCall", "1001:after_call_work"),
        ("AgentReady", "1001:ready")]

    stack.do(5, "hang_up")
    cleared = until(stack, m2, "CallCleared", call_id=consult)
    until(stack, cleared.seq, "AgentWorkingAfterCall", agent="1003")
    stack.do(4, "on_hook")

    def rows():
        got = [(r["call"], r["event"], r["queue"]) for r in queue_log(stack)
               if r["call"] in (call, consult) and r["event"] != "AGENT_STATE"]
        return ("COMPLETE" in [x[1] for x in got]) and got
    got = wait(rows, "the queue log in SQLite", stack, limit=10)
    assert [x for x in got if x[0] == call and x[1] != "OFFER"] == [
        (call, "ENTERQUEUE", "hotline"), (call, "CONNECT", "hotline"),
        (call, "TRANSFER", "hotline")]
    assert [x for x in got if x[0] == consult and x[1] != "OFFER"] == [
        (consult, "ENTERQUEUE", "billing"), (consult, "CONNECT", "billing"),
        (consult, "TRANSFER_IN", "billing"), (consult, "COMPLETE", "billing")]
