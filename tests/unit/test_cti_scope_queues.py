"""Supervisors scoped by queue: a key with `queues = ["hotline"]` controls the agents who
are members of hotline (by the queue's member list or by skills, as the ACD has them now),
and nobody else; refusals name what is outside the scope and are audited. Through a real
CURVE CtiServer with the call model and the ACD behind it."""
import datetime as dt
import json

import pytest

from ctid.acd import QueueConfig
from ctid.acd_service.audio import QueueAudio
from ctid.acd_service.service import AcdService
from ctid.acd_service.settings import AcdSettings, AgentSettings
from ctid.cti.auth import Authorizer, Client, Refused, Scope
from ctid.daemon import ModelService
from ctid.model.callmodel import CallModel
from ctid.model.calls import ChannelRef, Device, DeviceType
from ctid.model.routing import DialPlan, Route
from hotline_proto import cti_pb2

from acd_helpers import agent_req, curve_cti_server

KEYS = {
    "lead": 'role = "supervisor"\ndevices = ["ext:8003"]\nqueues = ["hotline"]\n',
    "sales-lead": 'role = "supervisor"\nqueues = ["sales"]\n',
    "mixed-lead": 'role = "supervisor"\nagents = ["1003"]\nqueues = ["hotline"]\n',
    "agent1": 'role = "agent"\ndevices = ["ext:8001"]\nagents = ["1001"]\nqueues = ["hotline"]\n',
    "wallboard": 'role = "integration"\nqueues = ["hotline"]\n',
}


def devices():
    return [Device(f"ext:{n}", DeviceType.EXTENSION, number=str(n), channel=ChannelRef("node1", ch))
            for n, ch in ((8001, 1), (8002, 2), (8003, 3), (8004, 4))]


@pytest.fixture
def stack(tmp_path):
    d = str(tmp_path)
    m = CallModel(devices(), DialPlan([Route("8XXX", "ext:")], {}), tz=dt.timezone.utc)
    agents = [AgentSettings("1001", extension="8001"), AgentSettings("1002", extension="8002"),
              AgentSettings("1003", extension="8004", skills={"mandarin": 3}),
              AgentSettings("9001", extension="8003", supervisor=True)]
    queues = [QueueConfig("hotline", members=("1001", "1002")),
              QueueConfig("backup", members=("1003",)),
              QueueConfig("sales", skills={"cantonese": 1})]          # members by skill
    acd = AcdService(queues, agents, AcdSettings(announce="tones", figures_every_s=1e6),
                     audio=QueueAudio(f"{d}/acd", announce="tones")).attach(m)
    with curve_cti_server(tmp_path, m, KEYS) as (client, in_server):
        yield client, acd, in_server, d


def audit_rows(d):
    return [json.loads(x) for x in open(f"{d}/audit.log")]


def test_a_queue_scoped_supervisor_controls_the_queues_members_only(stack):
    client, acd, _, d = stack
    lead = client("lead")
    for agent in ("1001", "1002"):                      # members of hotline: logged in by the lead
        r = lead.request(agent_req(agent, "login"))
        assert r.ok and r.status["agent_state"] == "ready", r.error
    r = lead.request(agent_req("1001", "force_state", reason="not_ready:coaching"))
    assert r.ok and r.status["agent_state"] == "not_ready", r.error
    assert acd.acd.agents["1001"].state == "not_ready"
    r = lead.request(agent_req("1002", "status"))
    assert r.ok and r.status["agent_state"] == "ready"
    # supervise passes the scope (its phone ext:8003 is the lead's) and reaches the ACD
    r = lead.request(agent_req("1002", "supervise", "ext:8003", "listen"))
    assert not r.ok and r.error == "supervise: agent '1002' is ready, not on a queue call"

    # 1003 is a member of backup only: every action on them is refused, naming why
    for action, reason in (("force_state", "not_ready"), ("status", ""), ("login", "")):
        r = lead.request(agent_req("1003", action, reason=reason))
        assert not r.ok and r.error == (
            "refused: agent: agent '1003' is not lead's to control (not in its agents, and a "
            "member of backup, not of hotline)"), action
    r = lead.request(agent_req("7777", "status"))
    assert not r.ok and "a member of no queue, not of hotline" in r.error
    assert acd.acd.agents["1003"].state == "logged_off"

    rows = audit_rows(d)
    refused = [x for x in rows if not x["allowed"]]
    assert len(refused) == 4 and all(x["client"] == "lead" for x in refused)
    assert "member of backup, not of hotline" in refused[0]["reason"]
    assert [x["allowed"] for x in rows if x["client"] == "lead"][:3] == [True, True, True]


def test_membership_by_skills_follows_the_acd_as_it_changes(stack):
    client, acd, in_server, _ = stack
    lead = client("sales-lead")
    r = lead.request(agent_req("1003", "status"))
    assert not r.ok and "a member of backup, not of sales" in r.error
    in_server(lambda: acd.acd.set_skills("1003", {"mandarin": 3, "cantonese": 2},
                                         max(acd.acd.now, 0.0) + 1.0))
    assert acd.agent_queues("1003") == ("backup", "sales")
    r = lead.request(agent_req("1003", "login"))
    assert r.ok and r.status["agent_state"] == "ready", r.error
    r = lead.request(agent_req("1003", "force_state", reason="logged_off"))
    assert r.ok and r.status["agent_state"] == "logged_off", r.error


def test_agents_and_queues_add_up_and_an_agent_key_gains_nothing_from_queues(stack):
    client, _, _, _ = stack
    mixed = client("mixed-lead")
    for agent in ("1001", "1003"):                      # by queue, and by name
        r = mixed.request(agent_req(agent, "login"))
        assert r.ok, r.error
    agent1 = client("agent1")
    r = agent1.request(agent_req("1002", "not_ready"))
    assert not r.ok and r.error == "refused: agent: agent '1002' is not agent1's to control"
    wallboard = client("wallboard")                     # integration: reads its queue's members
    assert wallboard.request(agent_req("1001", "status")).ok
    r = wallboard.request(agent_req("1003", "status"))
    assert not r.ok and "member of backup, not of hotline" in r.error


def test_without_an_acd_a_queue_scope_covers_no_agent():
    lead = Client("lead", "supervisor", Scope(queues=("hotline",)))
    m = CallModel(devices(), DialPlan([Route("8XXX", "ext:")], {}), tz=dt.timezone.utc)
    service = ModelService(m)
    assert service.agent_queues("1001") == ()
    with pytest.raises(Refused, match="a member of no queue, not of hotline"):
        Authorizer(service.call_devices, service.agent_queues).check(
            lead, agent_req("1001", "force_state", reason="ready"))


def snapshot(c):
    r = c.request(cti_pb2.Request(snapshot=cti_pb2.Snapshot()))
    assert r.ok, r.error
    return sorted(d.id for d in r.devices), sorted(
        tuple(sorted(x.device for x in call.connections)) for call in r.calls)


def test_a_queue_scoped_snapshot_shows_its_devices_its_agents_phones_and_queues(stack):
    client, acd, in_server, _ = stack
    m = acd.model

    def calls():
        from ctid.model.calls import ConnState
        for devs in (("ext:8002", "ext:8004"), ("ext:8004",), ("queue:hotline",),
                     ("queue:backup",)):
            call = m.new_call(0.0, calling="13800138000")
            for dev in devs:
                m.connect(call, dev, ConnState.CONNECTED if dev.startswith("ext:")
                          else ConnState.QUEUED, 0.0, "caller")
    in_server(calls)
    # its own phone, the phones of hotline's members (configured: 8001, 8002), hotline's
    # queue device, and the calls on any of them; not backup's 1003 at 8004, nor backup
    assert snapshot(client("lead")) == (
        ["ext:8001", "ext:8002", "ext:8003", "queue:hotline"],
        [("ext:8002", "ext:8004"), ("queue:hotline",)])
    assert snapshot(client("wallboard")) == (
        ["ext:8001", "ext:8002", "queue:hotline"],
        [("ext:8002", "ext:8004"), ("queue:hotline",)])
    # agents named and queues add up; an agent key sees its own devices and agent only
    assert snapshot(client("mixed-lead"))[0] == ["ext:8001", "ext:8002", "ext:8004",
                                                 "queue:hotline"]
    assert snapshot(client("agent1")) == (["ext:8001"], [])
    # hot desking: 1001 logged in at 8004 brings that phone into the lead's view
    in_server(lambda: acd.acd.agent_login("1001", "ext:8004", max(acd.acd.now, 0.0) + 1.0))
    devices, shown = snapshot(client("lead"))
    assert "ext:8004" in devices and ("ext:8004",) in shown and ("queue:backup",) not in shown
