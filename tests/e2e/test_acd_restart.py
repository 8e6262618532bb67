"""The live ACD keeps its state across a ctid restart: ctisim, cardd and ctid as processes,
CTI clients in the test. Agent 1001 hot-desks at 8002 and goes to lunch, 1002 is ready at
8001 (another queue), a caller on a CO line overflows to a callback and is released; ctid
is stopped cleanly (SIGTERM), then killed (SIGKILL), and each time the new ctid shows the
same agents at the same phones in the same states and the callback still pending. Then
1001 goes ready and the callback rings 1001's phone with the customer's number."""
import json
import os
import signal

import pytest

from hotline_proto import cti_pb2
from tests.e2e.stack import CTID_SECURE_HEAD, Stack, ready, wait

CARDD_TOML = """
[node]
name = "node1"
run_dir = "run"

[backend]
type = "sim"
endpoint = "ipc://run/ctisim-cards.sock"

[bus]
events = "ipc://run/cardd-events.sock"
commands = "ipc://run/cardd-commands.sock"

[media]
law = "alaw"
tone_plan = "cn"

[[span]]
span = 1
name = "analog-card-1"
kind = "analog"

[[channels]]
channels = "1-4"
span = 1
port = "fxs"
callerid = "fsk"

[[channels]]
channels = "5-6"
span = 1
port = "fxo"
callerid = "fsk"
busy_detect = true
"""

CTID_TOML = CTID_SECURE_HEAD + """
[[trunk_group]]
name = "co"
channels = "node1/5-6"
number = "12345"

[[route]]
match = "8XXX"
to = "ext:"

[[route]]
match = "12345"
to = "queue:support"
source = "trunk"

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

[[agent]]
id = "1001"
name = "Li Na"
extension = "8001"

[[agent]]
id = "1002"
name = "Wang Wei"
extension = "8002"
"""

CLIENTS = {"admin": 'role = "admin"\n'}
CUSTOMER = "13911112222"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("acd-restart"))
    with open(f"{d}/cardd-source.toml", "w") as f:
        f.write(CARDD_TOML)
    s = Stack(d, f"{d}/cardd-source.toml", CTID_TOML, CLIENTS)
    s.start()
    try:
        ready(s, s.client("admin"), limit=40)
        yield s
    finally:
        s.stop()


def agent(stack, agent_id, action, device="", reason=""):
    r = stack.client("admin").request(cti_pb2.Request(agent=cti_pb2.AgentRequest(
        agent=agent_id, action=action, device=device, reason=reason)), timeout_s=10)
    assert r.ok, f"{action} {agent_id}: {r.error}"
    return r.status


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
    assert what_ctid_says(stack) == BEFORE

    child = stack.procs.children["ctid"]                         # SIGKILL: no goodbye
    child.popen.send_signal(signal.SIGKILL)
    child.popen.wait(15)
    stack.start_ctid()
    ready(stack, stack.client("admin"))
    assert what_ctid_says(stack) == BEFORE
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
