"""A team leader scoped by queue, end to end: ctisim, cardd and ctid as processes, CURVE
CTI clients in the test. The leader's key names `queues = ["hotline"]` and no agents: they
may force hotline's members (1001) and are refused, with the reason and an audit record,
for an agent of another queue only (1003, backup)."""
import json

import pytest

from tests.e2e.acd_stack import ADMIN, AcdStack, running
from tests.e2e.stack import wait
from tests.e2e.test_acd_calls import CARDD_TOML, CTID_TOML

CLIENTS = {
    "hotline-lead": 'role = "supervisor"\ndevices = ["ext:8003"]\nqueues = ["hotline"]\n',
    "admin": ADMIN,
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = AcdStack(str(tmp_path_factory.mktemp("acd-scope-e2e")), CTID_TOML, CLIENTS, CARDD_TOML)
    with running(s, watcher=None):
        yield s


def agent(stack, client, agent_id, action, device="", reason=""):
    """The reply, success or not (the test asserts which)."""
    return stack.agent(client, agent_id, action, device, reason, ok=False)


def test_a_hotline_lead_forces_hotline_agents_and_not_the_backup_queues(stack):
    for agent_id, ext in (("1001", "ext:8001"), ("1003", "ext:8004")):
        r = agent(stack, "admin", agent_id, "login", device=ext)
        assert r.ok and r.status["agent_state"] == "ready", r.error

    r = agent(stack, "hotline-lead", "1001", "force_state", device="ext:8003",
              reason="not_ready:coaching")
    assert r.ok, r.error
    assert r.status["agent_state"] == "not_ready" and r.status["reason"] == "coaching"

    r = agent(stack, "hotline-lead", "1003", "force_state", device="ext:8003", reason="not_ready")
    assert not r.ok and r.error == (
        "refused: agent: agent '1003' is not hotline-lead's to control (not in its agents, "
        "and a member of backup, not of hotline)")
    r = agent(stack, "admin", "1003", "status")
    assert r.ok and r.status["agent_state"] == "ready"          # nothing changed for 1003

    audit = f"{stack.d}/run/cti-audit.log"

    def refusal_logged():
        rows = [json.loads(x) for x in open(audit)]
        return [x for x in rows if x["client"] == "hotline-lead" and not x["allowed"]]
    (row,) = wait(refusal_logged, "the refusal in the audit log", stack)
    assert "member of backup, not of hotline" in row["reason"] and row["request"] == "agent"
