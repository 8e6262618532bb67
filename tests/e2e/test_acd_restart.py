"""The live ACD keeps its state across a ctid restart: ctisim, cardd and ctid as processes,
CTI clients in the test. Agent 1001 hot-desks at 8002 and goes to lunch, 1002 is ready at
8001 (another queue), a caller on a CO line overflows to a callback and is released; ctid
is stopped cleanly (SIGTERM), then killed (SIGKILL), and each time the new ctid shows the
same agents at the same phones in the same states and the callback still pending. Then
1001 goes ready and the callback rings 1001's phone with the customer's number; ctid is
killed while it rings and the new ctid, once cardd is in step, rings it again (no ring no
answer). A caller on a CO line waiting in 'sales' with nobody ready survives a kill: the
music comes back, and when 1002 goes ready the caller is delivered and both hear each other."""
import json
import os
import time

import pytest

from hotline_proto import cti_pb2
from tests.e2e.acd_stack import (ADMIN, EXT_ROUTE, AcdStack, agents_toml, heard, moh_file, route,
                                 running, speak, trunk_group)
from tests.e2e.stack import CTID_SECURE_HEAD, ready, wait

CTID_TOML = (CTID_SECURE_HEAD + trunk_group("co", "node1/5", "12345")
             + trunk_group("co2", "node1/6", "12346") + EXT_ROUTE
             + route("12345", "queue:support", "trunk") + route("12346", "queue:sales", "trunk") + """
[acd]
announce = "tones"
figures_every_s = 2
reconcile_every_s = 2

[[queue]]
name = "support"
members = ["1001"]
announce = false
rona_s = 30
callback_trunk = "co"
overflow = [{{when = "wait", threshold = 1, target = "callback"}}]

[[queue]]
name = "sales"
members = ["1002"]
announce = false
rona_s = 30
""" + agents_toml("1001", "1002"))

CLIENTS = {"admin": ADMIN}
CUSTOMER = "13911112222"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running(AcdStack(str(tmp_path_factory.mktemp("acd-restart")), CTID_TOML, CLIENTS),
                 watcher=None) as s:
        yield s


def agent(stack, agent_id, action, device="", reason=""):
    return stack.agent("admin", agent_id, action, device, reason).status


def saved(stack):
    try:
        with open(f"{stack.d}/run/acd/state.json") as f:
            return json.load(f)
    except (FileNotFoundError, ValueError):
        return None


def what_ctid_says(stack):
    """(agent 1001, agent 1002, the support queue's callbacks waiting), as a client sees them."""
    a1, a2 = agent(stack, "1001", "status"), agent(stack, "1002", "status")
    support = agent(stack, "", "status", device="queue:support")
    return ((a1["agent_state"], a1["reason"], a1["device"]),
            (a2["agent_state"], a2["device"]), support["callbacks_waiting"])


BEFORE = (("not_ready", "lunch", "ext:8002"), ("ready", "ext:8001"), "1")


def test_agents_and_a_promised_callback_survive_a_clean_stop_and_a_kill(stack):
    agent(stack, "1001", "login", device="ext:8002")            # hot desk: not their 8001
    agent(stack, "1001", "not_ready", reason="lunch")
    agent(stack, "1002", "login", device="8001")
    stack.do(5, "ring", caller_id=CUSTOMER)                      # nobody ready in support
    wait(lambda: agent(stack, "", "status", device="queue:support")["callbacks_waiting"] == "1",
         "the caller's overflow to a callback", stack, limit=30)
    assert what_ctid_says(stack) == BEFORE
    # written by the service's tick, not at exit: what a kill leaves behind
    wait(lambda: (s := saved(stack)) and len(s["callbacks"]) == 1 and len(s["agents"]) == 2,
         "the state file", stack)
    assert saved(stack)["callbacks"][0]["number"] == CUSTOMER

    stack.restart_ctid()                                         # SIGTERM
    ready(stack, stack.client("admin"))
    # the ACD starts once cardd is in step (a moment after ctid answers)
    wait(lambda: what_ctid_says(stack) == BEFORE, lambda: f"{what_ctid_says(stack)}", stack)

    stack.kill_ctid()                                            # SIGKILL: no goodbye
    stack.start_ctid()
    ready(stack, stack.client("admin"))
    # the ACD starts once cardd is in step (a moment after ctid answers)
    wait(lambda: what_ctid_says(stack) == BEFORE, lambda: f"{what_ctid_says(stack)}", stack)
    status = stack.client("admin").request(
        cti_pb2.Request(system_status=cti_pb2.SystemStatus()), timeout_s=5).status
    assert status["acd.agents_logged_in"] == "2"
    assert not [p for p in os.listdir(f"{stack.d}/run/acd") if ".bad-" in p]

    # back from lunch: the callback kept for the customer rings 1001's phone, 8002
    agent(stack, "1001", "ready")
    wait(lambda: stack.get(2, "ringing"), "8002 ringing for the callback", stack, limit=15)
    wait(lambda: stack.get(2, "caller_id") == CUSTOMER,
         lambda: f"8002 showing the customer: {stack.do(2, 'describe')}", stack)
    assert agent(stack, "1001", "status")["agent_state"] in ("reserved", "ringing")
    assert not stack.get(1, "ringing")

    # killed while it rings: the new ctid rings 8002 again once cardd is in step, 1001
    # stays reserved for it (a ring sent before the resync would fail: ring no answer)
    wait(lambda: (s := saved(stack)) and s["agents"][0]["state"] == "ready"
         and s["callbacks"][0]["front"], "the ringing callback saved at the head", stack)
    stack.kill_ctid()
    stack.start_ctid()
    ready(stack, stack.client("admin"))
    wait(lambda: agent(stack, "1001", "status")["agent_state"] in ("reserved", "ringing"),
         "1001 reserved for the callback again", stack, limit=15)
    wait(lambda: stack.get(2, "ringing") and stack.get(2, "caller_id") == CUSTOMER,
         lambda: f"8002 ringing for the callback: {stack.do(2, 'describe')}", stack, limit=15)
    time.sleep(1.0)
    assert agent(stack, "1001", "status")["agent_state"] in ("reserved", "ringing")
    agent(stack, "1001", "not_ready", reason="lunch")           # off the callback for the next test


CALLER = "13800001111"


def test_a_caller_waiting_in_a_queue_survives_a_kill_and_is_answered(stack):
    agent(stack, "1002", "not_ready", reason="meeting")         # logged in at 8001 above
    music = moh_file(stack)
    stack.do(6, "ring", caller_id=CALLER)                        # CO line to 12346: sales
    wait(lambda: agent(stack, "", "status", device="queue:sales")["waiting"] == "1",
         "the caller waiting in sales", stack, limit=30)
    wait(lambda: (s := saved(stack)) and [w["line"] for w in s.get("waiting", [])]
         == ["trunk:node1/6"], "the waiting caller in the state file", stack)

    stack.kill_ctid()
    stack.sim("record", channels=[6])                            # from the kill on
    stack.start_ctid()
    ready(stack, stack.client("admin"))
    wait(lambda: agent(stack, "", "status", device="queue:sales")["waiting"] == "1",
         "the caller back in sales", stack, limit=15)
    wait(lambda: heard(stack, 6, music, head_s=0.9), "the caller hearing the music again", stack,
         limit=15, step=0.5)

    stack.sim("set", channel=1, attr="answer_after_rings", value=1)
    agent(stack, "1002", "ready")
    wait(lambda: agent(stack, "1002", "status")["agent_state"] == "busy",
         lambda: f"1002 on the restored call: {agent(stack, '1002', 'status')}", stack, limit=20)
    time.sleep(0.3)
    assert speak(stack, 6, 1000.0, (6, 1))[1] > -25.0            # the agent hears the caller
    assert speak(stack, 1, 1400.0, (6, 1))[6] > -25.0            # and the caller the agent
    support = agent(stack, "", "status", device="queue:sales")
    assert support["waiting"] == "0" and support["answered"] == "1"
    stack.do(1, "on_hook")
