"""CTI AgentRequest rules: an agent key logs itself in and out and sets itself ready or not
ready, and nothing more; supervise and force_state are a supervisor's (within scope) or an
admin's; an observer asks for nothing; integration reads status only. Refusals are clear
and audited, through the real Authorizer and through a real CURVE CtiServer with the ACD."""
import datetime as dt
import json

import pytest

from ctid.acd import QueueConfig
from ctid.acd_service.audio import QueueAudio
from ctid.acd_service.service import AcdService
from ctid.acd_service.settings import AcdSettings, AgentSettings
from ctid.cti.auth import Authorizer, Client, Refused, Scope
from ctid.model.callmodel import CallModel
from ctid.model.calls import ChannelRef, Device, DeviceType
from ctid.model.routing import DialPlan, Route

from acd_helpers import agent_req, curve_cti_server

AGENT = Client("agent-1001", "agent", Scope(devices=("ext:8001",), agents=("1001",)))
SUPERVISOR = Client("team-lead", "supervisor",
                    Scope(devices=("ext:8003",), agents=("100*",), queues=("hotline",)))
ADMIN = Client("root", "admin", Scope())
OBSERVER = Client("wallboard", "observer", Scope.everything())
INTEGRATION = Client("crm", "integration", Scope.everything())


def refusal(client, **kw):
    """The reason the real Authorizer gives, or None when it lets the request through."""
    try:
        Authorizer(lambda call_id: None).check(client, agent_req(**kw))
    except Refused as e:
        return str(e)
    return None


# ---- the rules, against the real Authorizer ---------------------------------------------------
@pytest.mark.parametrize("action,device,reason", [
    ("login", "ext:8001", ""), ("login", "", ""), ("logout", "", "lunch"),
    ("ready", "", ""), ("not_ready", "", "break"), ("status", "", ""),
    (" Ready ", "", ""),                       # read as the ACD reads it
])
def test_an_agent_may_change_its_own_state(action, device, reason):
    assert refusal(AGENT, action=action, device=device, reason=reason) is None


@pytest.mark.parametrize("action,device,reason", [
    ("supervise", "ext:8001", "listen"), ("force_state", "", "logged_off"),
    ("SUPERVISE ", "ext:8001", "barge"), ("Force_State", "", "ready"),
])
def test_an_agent_may_not_supervise_or_force_state_even_itself(action, device, reason):
    why = refusal(AGENT, action=action, device=device, reason=reason)
    act = action.strip().lower()
    assert why == f"agent: {act} needs the supervisor or admin role; agent-1001 is agent"


def test_an_agent_acts_on_itself_only():
    assert refusal(AGENT, agent="1002", action="logout") == \
        "agent: agent '1002' is not agent-1001's to control"
    assert refusal(AGENT, action="login", device="ext:8002") == \
        "agent: device ext:8002 is not agent-1001's to control"
    assert refusal(AGENT, agent="", action="ready") == "agent: ready: name the agent"
    assert refusal(AGENT, agent="", action="status", device="queue:hotline") == \
        "agent: queue 'hotline' is not in agent-1001's scope"


def test_a_supervisor_supervises_and_forces_within_its_scope_only():
    assert refusal(SUPERVISOR, action="supervise", device="ext:8003", reason="listen") is None
    assert refusal(SUPERVISOR, agent="1002", action="force_state", reason="ready") is None
    assert refusal(SUPERVISOR, action="logout") is None
    assert refusal(SUPERVISOR, agent="", action="status", device="queue:hotline") is None
    assert refusal(SUPERVISOR, agent="2001", action="supervise", device="ext:8003",
                   reason="listen") == "agent: agent '2001' is not team-lead's to control"
    # listening from a phone that is not the supervisor's
    assert refusal(SUPERVISOR, action="supervise", device="ext:8002", reason="listen") == \
        "agent: device ext:8002 is not team-lead's to control"
    assert refusal(SUPERVISOR, agent="", action="status", device="queue:vip") == \
        "agent: queue 'vip' is not in team-lead's scope"


def test_an_admin_may_do_anything_an_observer_nothing():
    for action in ("supervise", "force_state", "login", "status"):
        assert refusal(ADMIN, agent="7777", action=action, device="ext:9") is None
        assert refusal(OBSERVER, action=action) == "agent: an observer may not change anything"


def test_integration_reads_agent_and_queue_status_only():
    assert refusal(INTEGRATION, action="status") is None
    assert refusal(INTEGRATION, agent="", action="status", device="queue:hotline") is None
    for action in ("login", "logout", "ready", "not_ready"):
        assert refusal(INTEGRATION, action=action) == \
            f"agent: {action} needs the agent, supervisor or admin role; crm is integration"
    assert refusal(INTEGRATION, action="supervise", device="ext:8003", reason="listen") == \
        "agent: supervise needs the supervisor or admin role; crm is integration"


def test_an_unknown_action_is_refused_for_everyone_but_admin():
    for client in (AGENT, SUPERVISOR, INTEGRATION):
        assert refusal(client, action="transfer_all") == (
            "agent: unknown action 'transfer_all' (one of login, logout, ready, not_ready, "
            "status, force_state, supervise)")
    assert refusal(ADMIN, action="transfer_all") is None     # the ACD answers it with an error


# ---- through a real CURVE server with the ACD behind it ----------------------------------------
@pytest.fixture
def acd_server(tmp_path):
    d = str(tmp_path)
    devices = [Device(f"ext:{n}", DeviceType.EXTENSION, number=str(n),
                      channel=ChannelRef("node1", ch)) for n, ch in ((8001, 1), (8002, 2), (8003, 3))]
    m = CallModel(devices, DialPlan([Route("8XXX", "ext:"), Route("12345", "queue:hotline")], {}),
                  tz=dt.timezone.utc)
    agents = [AgentSettings("1001", extension="8001"), AgentSettings("1002", extension="8002"),
              AgentSettings("9001", extension="8003", supervisor=True)]
    AcdService([QueueConfig("hotline", members=("1001", "1002"))], agents,
               AcdSettings(announce="tones", figures_every_s=1e6),
               audio=QueueAudio(f"{d}/acd", announce="tones")).attach(m)
    keys = {"agent1": 'role = "agent"\ndevices = ["ext:8001"]\nagents = ["1001"]\n',
            "lead": 'role = "supervisor"\ndevices = ["ext:8003"]\nagents = ["100*"]\n'}
    with curve_cti_server(tmp_path, m, keys) as (client, _):
        yield client, m, d


def test_over_the_socket_an_agent_cannot_supervise_and_the_refusal_is_audited(acd_server):
    client, model, d = acd_server
    agent, lead = client("agent1"), client("lead")
    r = agent.request(agent_req("1001", "login"))
    assert r.ok and r.status["agent_state"] == "ready" and r.status["device"] == "ext:8001"
    r = agent.request(agent_req("1002", "supervise", "ext:8001", "listen"))
    assert not r.ok and r.error == \
        "refused: agent: supervise needs the supervisor or admin role; agent1 is agent"
    r = agent.request(agent_req("1001", "force_state", "", "logged_off"))
    assert not r.ok and r.error.startswith("refused: agent: force_state needs the supervisor")
    r = lead.request(agent_req("1001", "force_state", "", "not_ready:coaching"))
    assert r.ok, r.error
    assert r.status["agent_state"] == "not_ready"
    # the supervisor's supervise passes the rules and reaches the ACD, which answers it
    r = lead.request(agent_req("1001", "supervise", "ext:8003", "listen"))
    assert not r.ok and r.error == "supervise: agent '1001' is not_ready, not on a queue call"

    rows = [json.loads(x) for x in open(f"{d}/audit.log")]
    seen = [(x["client"], x["role"], x["request"], x["allowed"]) for x in rows]
    assert seen == [("agent1", "agent", "agent", True), ("agent1", "agent", "agent", False),
                    ("agent1", "agent", "agent", False), ("lead", "supervisor", "agent", True),
                    ("lead", "supervisor", "agent", True)]
    assert "supervise needs the supervisor or admin role" in rows[1]["reason"]
    assert rows[4]["reason"].startswith("failed: supervise:")
