"""The ACD's state file: agents and callback entries survive a ctid restart (a new Acd built
from the same configuration reads what the old one wrote), written atomically, and a bad
file never stops the start."""
import datetime as dt
import json
import logging
import os

import pytest

from ctid.acd import Acd, CallbackDue, CallbackRegistered, QueueConfig
from ctid.acd_service.persist import StateFile, snapshot
from ctid.acd_service.service import AcdService
from ctid.acd_service.settings import AcdSettings, AgentSettings
from ctid.model.callmodel import CallModel, RequestError
from ctid.model.calls import ChannelRef, Device, DeviceType
from ctid.model.routing import DialPlan, Route
from hotline_proto import cti_pb2

T0 = 1_790_000_000.0


def make():
    acd = Acd([QueueConfig("hotline", members=("1001", "1002")),
               QueueConfig("vip", members=("1001",))])
    for aid in ("1001", "1002", "1003"):
        acd.add_agent(aid)
    return acd


def before_the_crash(acd):
    """1001 hot-desks at 8002 and goes to lunch, 1002 is busy at 8001 and asked for a
    break after the call, three callers keep their places as callbacks in 'hotline'."""
    acd.agent_login("1001", "ext:8002", T0)
    acd.set_not_ready("1001", T0 + 1, "lunch")
    acd.agent_login("1002", "ext:8001", T0 + 1, ready=False)
    for i, caller in enumerate(("13800000001", "13800000002", "13800000003")):
        acd.call_arrived(f"c{i}", "hotline", caller, None, {"tier": "gold"}, T0 + 2 + i)
    acd.request_callback("c1", None, T0 + 10)
    acd.request_callback("c0", "01088886666", T0 + 11)
    acd.request_callback("c2", None, T0 + 12)
    acd.call_arrived("live", "vip", "13900000000", None, None, T0 + 13)   # on the line: not kept
    acd.set_ready("1002", T0 + 14)                    # c0, first in line, rings 1002
    assert acd.calls["c0"].state == "offered"


def test_round_trip_agents_and_callbacks_come_back_in_their_places(tmp_path):
    path = str(tmp_path / "acd" / "state.json")
    old = make()
    before_the_crash(old)
    old.agent_answered("1002", "c0", T0 + 15)         # a callback being dialled: cardd's now
    old.set_not_ready("1002", T0 + 16, "meeting")     # applies after the call
    old.call_arrived("c3", "hotline", "13800000004", None, None, T0 + 17)
    old.request_callback("c3", None, T0 + 18)
    sf = StateFile(path)
    assert sf.save(old, T0 + 20) is True
    assert sf.save(old, T0 + 20.1) is False            # unchanged: not written again
    doc = json.load(open(path))
    assert doc["format"] == 2 and doc["saved_at"] == T0 + 20
    assert [(a["id"], a["extension"], a["state"], a["reason"]) for a in doc["agents"]] == [
        ("1001", "ext:8002", "not_ready", "lunch"), ("1002", "ext:8001", "not_ready", "meeting")]
    assert [c["call"] for c in doc["callbacks"]] == ["c1", "c2", "c3"]

    new = make()
    new_sf = StateFile(path)
    acts = new_sf.restore(new, T0 + 100)
    a1, a2 = new.agents["1001"], new.agents["1002"]
    assert (a1.state, a1.reason, a1.extension) == ("not_ready", "lunch", "ext:8002")
    assert (a2.state, a2.reason, a2.extension) == ("not_ready", "meeting", "ext:8001")
    assert new.by_extension == {"ext:8002": "1001", "ext:8001": "1002"}
    assert [new.position(c) for c in ("c1", "c2", "c3")] == [1, 2, 3]
    c1 = new.calls["c1"]
    assert (c1.callback, c1.caller, c1.entered, c1.data) == (
        "13800000002", "13800000002", T0 + 3, {"tier": "gold"})
    assert "live" not in new.calls and "c0" not in new.calls
    assert [a.call for a in acts if isinstance(a, CallbackRegistered)] == ["c1", "c2", "c3"]
    assert new.queue_figures("hotline", T0 + 100).callbacks_waiting == 3
    # the login time (as first saved: the service saves at each tick) is kept, not reset
    assert new_sf.login_at == {"1001": T0 + 20, "1002": T0 + 20}
    assert json.load(open(path))["agents"][0]["login_at"] == T0 + 20


def test_a_callback_ringing_an_agent_at_the_crash_comes_back_first_and_a_ready_agent_gets_it(tmp_path):
    path = str(tmp_path / "state.json")
    old = make()
    before_the_crash(old)                             # c0 rings 1002: busy -> saved ready
    StateFile(path).save(old, T0 + 20)
    new = make()
    acts = StateFile(path).restore(new, T0 + 60)
    # 1002 comes back ready ("restored") and takes the head of the queue at once: c0
    due = [a for a in acts if isinstance(a, CallbackDue)]
    assert [(d.call, d.agent, d.extension, d.number) for d in due] == [
        ("c0", "1002", "ext:8001", "01088886666")]
    assert new.agents["1002"].state == "reserved"
    assert [new.position(c) for c in ("c1", "c2")] == [1, 2]
    logins = [r for r in new.log.drain() if r.event == "AGENTLOGIN"]
    assert all(r.data["restored"] for r in logins) and len(logins) == 2


def test_the_file_is_replaced_whole_or_not_at_all(tmp_path, caplog):
    path = tmp_path / "state.json"
    acd = make()
    acd.agent_login("1001", "ext:8001", T0)
    sf = StateFile(str(path))
    assert sf.save(acd, T0)
    before = path.read_text()
    assert not os.path.exists(f"{path}.tmp")
    os.mkdir(f"{path}.tmp")                           # the temp file cannot be written
    acd.set_not_ready("1001", T0 + 1, "lunch")
    with caplog.at_level(logging.ERROR, logger="ctid.acd"):
        assert sf.save(acd, T0 + 1) is False
    assert path.read_text() == before                 # the old state, intact
    assert f"ACD state file {path} not written" in caplog.text
    os.rmdir(f"{path}.tmp")
    assert sf.save(acd, T0 + 2) is True               # retried at the next tick
    assert json.loads(path.read_text())["agents"][0]["reason"] == "lunch"


def test_a_corrupt_file_is_put_aside_and_the_acd_starts_fresh(tmp_path, caplog):
    for text, what in (('{"format": 1, "agents": [', "Expecting value"),
                       ('{"format": 7, "agents": []}', "format 7 is not one this ctid reads"),
                       ('{"format": 1, "agents": [{"id": "1001", "extension": "ext:8001", '
                        '"state": "dancing"}]}', "agents[0].state must be ready or not_ready")):
        d = tmp_path / what.split()[0]
        d.mkdir()
        path = d / "state.json"
        path.write_text(text)
        acd = make()
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="ctid.acd"):
            assert StateFile(str(path)).restore(acd, T0) == []
        assert f"ACD state file {path}" in caplog.text and what in caplog.text
        assert not path.exists()
        (aside,) = [p for p in os.listdir(d) if p.startswith("state.json.bad-")]
        assert (d / aside).read_text() == text        # kept for a post-mortem
        assert all(a.state == "logged_off" for a in acd.agents.values())
    missing = StateFile(str(tmp_path / "none" / "state.json"))
    assert missing.restore(make(), T0) == []          # no file: a fresh start, no noise


def test_an_agent_or_queue_no_longer_configured_is_skipped_with_a_warning(tmp_path, caplog):
    path = str(tmp_path / "state.json")
    old = make()
    old.add_queue(QueueConfig("closed", members=("1003",)))
    old.agent_login("1003", "ext:8003", T0, ready=False)
    old.agent_login("1001", "ext:8001", T0)
    old.call_arrived("gone", "closed", "13700000000", None, None, T0 + 1)
    old.request_callback("gone", None, T0 + 2)
    StateFile(path).save(old, T0 + 3)
    new = Acd([QueueConfig("hotline", members=("1001",))])
    new.add_agent("1001")
    with caplog.at_level(logging.WARNING, logger="ctid.acd"):
        StateFile(path).restore(new, T0 + 10)
    assert "agent 1003 skipped: no longer configured" in caplog.text
    assert "callback gone to 13700000000 skipped: queue 'closed' is no longer configured" in caplog.text
    assert new.agents["1001"].state == "ready" and not new.calls


def test_snapshot_keeps_priority_order_across_levels(tmp_path):
    acd = Acd([QueueConfig("q", priority_step_s=None)])
    acd.call_arrived("low", "q", "1", None, None, T0)
    acd.call_arrived("high", "q", "2", 5, None, T0 + 30)
    for c in ("low", "high"):
        acd.request_callback(c, None, T0 + 40)
    assert [c["call"] for c in snapshot(acd, {})["callbacks"]] == ["high", "low"]
    path = str(tmp_path / "s.json")
    StateFile(path).save(acd, T0 + 41)
    new = Acd([QueueConfig("q", priority_step_s=None)])
    StateFile(path).restore(new, T0 + 50)
    assert (new.position("high"), new.position("low")) == (1, 2)
    assert new.calls["high"].level == 5


# ---- the live service: a restart in-process ------------------------------------------------
def service(tmp_path):
    devices = [Device(f"ext:{n}", DeviceType.EXTENSION, number=str(n),
                      channel=ChannelRef("node1", ch))
               for n, ch in ((8001, 1), (8002, 2), (8003, 3))]
    model = CallModel(devices, DialPlan([Route("8XXX", "ext:")], {}), tz=dt.timezone.utc)
    agents = [AgentSettings("1001", extension="8001"), AgentSettings("1002", extension="8002"),
              AgentSettings("1003", extension="8003", login=True)]
    svc = AcdService([QueueConfig("hotline", members=("1001", "1002", "1003"))], agents,
                     AcdSettings(figures_every_s=1e6)).attach(model)
    svc.state_file = StateFile(str(tmp_path / "acd" / "state.json"))
    return model, svc


def agent_req(model, agent, action, device="", reason="", now=T0):
    reply, out = model.request(cti_pb2.Request(agent=cti_pb2.AgentRequest(
        agent=agent, action=action, device=device, reason=reason)), now)
    assert reply.ok, reply.error
    return out


def test_the_service_saves_at_its_tick_and_a_new_ctid_restores_with_agent_events(tmp_path):
    model, svc = service(tmp_path)
    model.tick(T0)                                    # 1003 logs in (login = true)
    agent_req(model, "1003", "not_ready", reason="training", now=T0 + 1)
    agent_req(model, "1001", "login", "8002", now=T0 + 1)            # hot desk
    agent_req(model, "1001", "not_ready", reason="lunch", now=T0 + 2)
    agent_req(model, "1002", "login", "8001", now=T0 + 2)
    model.tick(T0 + 2.1)
    assert svc.state_file.writes == 2                 # at the first tick, then one for all that
    model2, svc2 = service(tmp_path)                  # ctid again, same run directory
    out = model2.tick(T0 + 30)
    states = {e.agent: (e.name, e.agent_state, e.reason, e.device)
              for e in out.events if e.agent_state}
    assert states == {"1001": ("AgentNotReady", "not_ready", "lunch", "ext:8002"),
                      "1002": ("AgentReady", "ready", "restored", "ext:8001"),
                      "1003": ("AgentNotReady", "not_ready", "training", "ext:8003")}
    reply, _ = model2.request(cti_pb2.Request(agent=cti_pb2.AgentRequest(
        agent="1001", action="status")), T0 + 31)
    assert reply.status["agent_state"] == "not_ready" and reply.status["reason"] == "lunch"
    assert reply.status["device"] == "ext:8002"


# ---- a restart with cardd behind: the gate, waiting callers, the period's figures ------------
from ctid.cardd_link import reconcile                         # noqa: E402
from ctid.model.calls import ConnState                        # noqa: E402
from hotline_proto import cardd_pb2                           # noqa: E402
from tests.unit.test_acd_service import Bench, agent_events, cmds, names   # noqa: E402

CUSTOMER = "13911112222"


class Restarted(Bench):
    """A new ctid on the old run directory: the state file and the cardd gate are in place
    before its first tick (Bench's own first tick is held back)."""

    def __init__(self, tmp_path, in_step, **kw):
        self.holding = True
        super().__init__(tmp_path, callbacks={"hotline": ("", "co")}, **kw)
        self.holding = False
        self.svc.state_file = StateFile(str(tmp_path / "acd" / "state.json"))
        self.svc.in_step = in_step
        self.svc.acd.log.keep = True

    def tick(self, t):
        if self.holding:
            return None
        return super().tick(t)

    def resync(self, t, connected=()):
        """cardd's Status as ctid's link applies it: channels 1-6 idle but `connected`
        (channel -> caller number: a line cardd still carries, unbridged)."""
        chans = [cardd_pb2.Channel(channel=ch, in_service=True, state=cardd_pb2.IDLE)
                 for ch in range(1, 7) if ch not in dict(connected)]
        chans += [cardd_pb2.Channel(channel=ch, in_service=True, state=cardd_pb2.CONNECTED,
                                    ani=ani, dnis="12345", call_id=f"cd-{ch}")
                  for ch, ani in connected]
        return self._take(reconcile(self.model, "node1", cardd_pb2.Reply(
            ok=True, seq=100, channels=chans), self.at(t)))


def test_a_restored_ready_agent_gets_the_callback_only_once_cardd_is_in_step(tmp_path):
    old = Acd([QueueConfig("hotline", members=("1001", "1002"))])
    for aid in ("1001", "1002"):
        old.add_agent(aid)
    old.agent_login("1001", "ext:8001", T0, ready=False)
    old.call_arrived("c0", "hotline", CUSTOMER, None, None, T0 + 1)
    old.request_callback("c0", None, T0 + 2)
    old.set_ready("1001", T0 + 3)                  # the callback rings 1001: then the crash
    assert old.calls["c0"].state == "offered"
    StateFile(str(tmp_path / "acd" / "state.json")).save(old, T0 + 4)

    in_step = [False]
    b = Restarted(tmp_path, lambda node: in_step[0])
    for t in (10, 11, 12):                         # cardd not resynchronised yet
        out = b.tick(t)
        assert out.commands == [] and out.events == []
    assert b.svc.state_file.writes == 0            # the saved state is not overwritten
    in_step[0] = True
    out = b.tick(13)
    ring = [c for _, c in out.commands if c.WhichOneof("kind") == "ring"]
    assert [(c.channel, c.ring.caller_id) for c in ring] == [(1, CUSTOMER)]
    assert ("AgentBusy", "ringing", "hotline") in agent_events(out.events, "1001")
    assert not [e for e in agent_events(b.log, "1001") if e[1] == "not_ready" and e[2] == "rona"]
    assert b.svc.acd.agents["1001"].state == "ringing"


def test_a_node_never_in_step_holds_the_acd_for_a_while_only(tmp_path, caplog):
    b = Restarted(tmp_path, lambda node: False)
    assert agent_events(b.tick(1).events) == []
    with caplog.at_level(logging.WARNING, logger="ctid.acd"):
        out = b.tick(40)
    assert "ACD starts with cardd node1 not in step" in caplog.text
    assert ("AgentReady", "ready", "") in agent_events(out.events)     # auto login, at last


def test_waiting_callers_keep_their_place_music_and_figures_across_a_restart(tmp_path):
    old = Bench(tmp_path)
    old.svc.state_file = StateFile(str(tmp_path / "acd" / "state.json"))
    old.agent(1, "1001", "not_ready", reason="lunch")
    old.agent(1, "1002", "not_ready", reason="meeting")
    old.incoming(2, "13800138000")                  # waits on channel 5
    old.incoming(3, "13900139000", channel=6)
    old.hang_up(4, 6)                               # an abandon in this period
    old.incoming(5, "13700137000", channel=6)       # waits on 6: the line will be gone
    old.tick(6)
    doc = json.load(open(tmp_path / "acd" / "state.json"))
    assert [(w["line"], w["caller"], w["entered"]) for w in doc["waiting"]] == [
        ("trunk:node1/5", "13800138000", T0 + 2), ("trunk:node1/6", "13700137000", T0 + 5)]
    assert doc["stats"]["hotline"]["abandoned"] == 1

    b = Restarted(tmp_path, lambda node: True)     # ctid killed; cardd kept line 5 up
    b.resync(30, connected=[(5, "13800138000")])
    out = b.tick(30)
    queued = [e for e in out.events if e.name == "Queued"]
    assert [(e.device, e.calling) for e in queued] == [("queue:hotline", "13800138000")]
    call = queued[0].call_id
    assert b.model.calls[call].connections["queue:hotline"].state == ConnState.QUEUED
    assert (5, "play_prompt") in cmds(out)         # the music again
    log_ = b.svc.acd.log.records
    assert [(r.event, r.data.get("restored"), r.data.get("entered")) for r in log_
            if r.event == "ENTERQUEUE"] == [("ENTERQUEUE", True, T0 + 2)]
    assert [(r.event, r.data["reason"]) for r in log_ if r.event == "ABANDON"] == [
        ("ABANDON", "lost_in_restart")]
    f = b.svc.acd.queue_figures("hotline", b.now)
    assert (f.waiting, f.abandoned, f.longest_wait_s) == (1, 2, 28.0)
    # the music cardd played before the restart, cut by ours: no new play for it
    assert cmds(b.ev(30.5, 5, prompt_done=cardd_pb2.PromptDone(interrupted=True))) == []
    assert cmds(b.ev(48, 5, prompt_done=cardd_pb2.PromptDone())) == [(5, "play_prompt")]

    b.agent(50, "1002", "ready")                   # 1002 logs in at start (login = true)
    out = b.last
    assert "Delivered" in names(out)
    assert [(c.channel, c.ring.caller_id) for _, c in out.commands
            if c.WhichOneof("kind") == "ring"] == [(2, "13800138000")]
    out = b.answer(52, 2)
    assert names(out)[:1] == ["Established"] and (2, "bridge") in cmds(out)
    assert b.svc.acd.queue_figures("hotline", b.now).answered == 1


def test_a_format_1_file_is_read_and_its_callbacks_count_as_requested(tmp_path):
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"format": 1, "agents": [], "callbacks": [
        {"call": "c9", "queue": "hotline", "number": CUSTOMER, "entered": T0}]}))
    acd = make()
    StateFile(str(path)).restore(acd, T0 + 5)
    f = acd.queue_figures("hotline", T0 + 5)
    assert (f.callbacks_requested, f.callbacks_pending) == (1, 1)


def _failed_once(path):
    """c0's customer did not answer (attempt 1 of 3): it waits out callback_retry_s (300 s)
    until T0 + 310, out of the list; c1 waits behind it; 1001 went to lunch meanwhile."""
    old = Acd([QueueConfig("hotline", members=("1001",), callback_retries=2,
                           callback_retry_s=300.0)])
    old.add_agent("1001")
    old.agent_login("1001", "ext:8001", T0, ready=False)
    old.call_arrived("c0", "hotline", CUSTOMER, None, None, T0 + 1)
    old.request_callback("c0", None, T0 + 2)
    old.call_arrived("c1", "hotline", "13800000001", None, None, T0 + 3)
    old.request_callback("c1", None, T0 + 4)
    old.set_ready("1001", T0 + 5)                     # c0 rings 1001
    old.agent_answered("1001", "c0", T0 + 6)          # the customer is dialled...
    old.callback_failed("c0", T0 + 10, "no_answer")   # ...and does not answer
    old.set_not_ready("1001", T0 + 11, "lunch")
    assert old.calls["c0"].state == "callback_retry"
    StateFile(path).save(old, T0 + 12)
    return old


def test_a_callback_waiting_for_its_retry_keeps_its_pause_across_a_restart(tmp_path):
    path = str(tmp_path / "state.json")
    _failed_once(path)
    saved = {c["call"]: c for c in json.load(open(path))["callbacks"]}
    assert (saved["c0"]["retry_due"], saved["c0"]["attempts"]) == (T0 + 310, 1)
    assert "retry_due" not in saved["c1"]

    new = Acd([QueueConfig("hotline", members=("1001",), callback_retries=2,
                           callback_retry_s=300.0)])
    new.add_agent("1001")
    new.log.keep = True
    StateFile(path).restore(new, T0 + 100)            # ctid back 90 s into the pause
    c0 = new.calls["c0"]
    assert (c0.state, c0.cb_attempts) == ("callback_retry", 1)
    restored = [r for r in new.log.records if r.event == "CALLBACK_RESTORED"]
    assert [(r.call, r.data.get("retry_due")) for r in restored] == [
        ("c0", T0 + 310), ("c1", None)]
    assert new.position("c1") == 1                    # c0 is out of the list meanwhile
    acts = new.set_ready("1001", T0 + 101)            # an agent free now gets c1, not c0
    assert [a.call for a in acts if isinstance(a, CallbackDue)] == ["c1"]
    new.agent_answered("1001", "c1", T0 + 102)
    new.callback_connected("c1", T0 + 105)
    new.call_ended("c1", T0 + 200)
    acts = new.tick(T0 + 309.9)                       # 1001 ready again after wrap-up...
    assert new.agents["1001"].state == "ready"
    assert not [a for a in acts if isinstance(a, CallbackDue)]    # ...but c0 still pauses
    assert c0.state == "callback_retry"
    acts = new.tick(T0 + 310)                         # the pause over: c0 rings 1001
    assert [(a.call, a.agent) for a in acts if isinstance(a, CallbackDue)] == [("c0", "1001")]
    assert new.queue_figures("hotline", T0 + 310).callbacks_pending == 1


def test_a_callback_whose_retry_fell_due_during_the_restart_is_filed_at_once(tmp_path):
    path = str(tmp_path / "state.json")
    _failed_once(path)
    new = Acd([QueueConfig("hotline", members=("1001",), callback_retries=2,
                           callback_retry_s=300.0)])
    new.add_agent("1001")
    StateFile(path).restore(new, T0 + 400)            # ctid was down past T0 + 310
    assert new.calls["c0"].state == "callback"
    assert (new.position("c0"), new.position("c1")) == (1, 2)     # its own place: first
    acts = new.set_ready("1001", T0 + 401)
    assert [a.call for a in acts if isinstance(a, CallbackDue)] == ["c0"]


def test_a_bad_retry_due_in_the_state_file_is_named(tmp_path, caplog):
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"format": 2, "agents": [], "callbacks": [
        {"call": "c9", "queue": "hotline", "number": CUSTOMER, "entered": T0,
         "attempts": 1, "retry_due": "soon"}]}))
    with caplog.at_level(logging.ERROR, logger="ctid.acd"):
        assert StateFile(str(path)).restore(make(), T0 + 5) == []
    assert "callbacks[0].retry_due must be a number, got 'soon'" in caplog.text


def test_an_agent_request_before_the_restore_is_refused_then_applied_after_it(tmp_path):
    old = Acd([QueueConfig("hotline", members=("1001", "1002"))])
    for aid in ("1001", "1002"):
        old.add_agent(aid)
    old.agent_login("1001", "ext:8002", T0, ready=False)
    old.set_not_ready("1001", T0 + 1, "lunch")
    StateFile(str(tmp_path / "acd" / "state.json")).save(old, T0 + 2)

    in_step = [False]
    b = Restarted(tmp_path, lambda node: in_step[0])
    b.tick(10)                                     # cardd not resynchronised yet
    # 1001 tries to log in at 8001 while the ACD still holds them at 8002 (on a break):
    # acted on, it would be undone or contradicted by the restore; refused, and said why
    for action, device in (("login", "8001"), ("ready", ""), ("logout", "")):
        with pytest.raises(RequestError, match="^ACD is restoring its state; try again in a moment$"):
            b.agent(11, "1001", action, device)
    assert b.agent(11, "1001", "status").ok        # a look changes nothing: answered
    assert b.svc.acd.agents["1001"].state == "logged_off" and b.svc.state_file.writes == 0
    in_step[0] = True                              # cardd in step: the next request restores
    reply = b.agent(12, "1002", "login", "8001")   # first, then is acted on
    assert reply.ok, reply.error
    a1, a2 = b.svc.acd.agents["1001"], b.svc.acd.agents["1002"]
    assert (a1.state, a1.reason, a1.extension) == ("not_ready", "lunch", "ext:8002")
    assert (a2.state, a2.extension) == ("ready", "ext:8001")
    with pytest.raises(RequestError, match="1001"):     # checked against the restored state
        b.agent(13, "1001", "login", "8003")
    assert b.svc.acd.agents["1001"].extension == "ext:8002"
