"""The ACD service glue, exactly: the real call model and ACD core, cardd events and CTI
requests in at given times (an injected clock), CSTA/agent events and cardd commands out."""
import datetime as dt
import math

import pytest

from ctid.acd import OverflowRule, QueueConfig
from ctid.acd_service.audio import QueueAudio
from ctid.acd_service.service import AcdService
from ctid.acd_service.settings import AcdSettings, AgentSettings
from ctid.model.callmodel import CallModel, RequestError
from ctid.model.calls import ChannelRef, ConnState, Device, DeviceType
from ctid.model.routing import DialPlan, Route
from hotline_proto import cardd_pb2, cti_pb2

T0 = 1_790_000_000.0
AGENTS = [AgentSettings("1001", name="Li Na", extension="8001", login=True),
          AgentSettings("1002", name="Wang Wei", extension="8002", login=True),
          AgentSettings("1003", name="Zhao Lei", extension="8004"),
          AgentSettings("9001", name="Chen Jing", extension="8003", supervisor=True)]


def chev(channel, **kind):
    e = cardd_pb2.ChannelEvent(channel=channel)
    (field, msg), = kind.items()
    getattr(e, field).CopyFrom(msg)
    return e


class Bench:
    """A call model with 4 extensions (channels 1-4) and 2 trunks (5, 6), the service on it."""

    def __init__(self, tmp_path, queues=None, agents=AGENTS, announce="tones", **settings):
        devices = [Device(f"ext:{n}", DeviceType.EXTENSION, number=str(n),
                          channel=ChannelRef("node1", ch))
                   for n, ch in ((8001, 1), (8002, 2), (8003, 3), (8004, 4))]
        devices += [Device(f"trunk:node1/{ch}", DeviceType.TRUNK, number="12345", group="co",
                           channel=ChannelRef("node1", ch)) for ch in (5, 6)]
        plan = DialPlan([Route("8XXX", "ext:"), Route("12345", "queue:hotline"),
                         Route("12346", "queue:backup")], {})
        self.model = CallModel(devices, plan, tz=dt.timezone.utc)
        queues = queues or [QueueConfig("hotline", members=("1001", "1002"), wrapup_s=5,
                                        rona_s=10, announce_first_s=None)]
        settings.setdefault("figures_every_s", 1e6)     # QueueStatistics only where tested
        self.audio = QueueAudio(str(tmp_path / "acd"), announce=announce)
        self.svc = AcdService(queues, agents, AcdSettings(announce=announce, **settings),
                              audio=self.audio).attach(self.model)
        self.now = T0
        self.log = []                     # every event, in order
        self.tick(0)                      # agents with login = true log in

    def _take(self, out):
        self.log += out.events
        self.last = out
        return out

    def at(self, dt_s):
        self.now = T0 + dt_s
        return self.now

    def tick(self, t):
        return self._take(self.model.tick(self.at(t)))

    def ev(self, t, channel, **kind):
        return self._take(self.model.channel_event("node1", chev(channel, **kind), self.at(t)))

    def agent(self, t, agent, action, device="", reason=""):
        reply, out = self.model.request(cti_pb2.Request(agent=cti_pb2.AgentRequest(
            agent=agent, action=action, device=device, reason=reason)), self.at(t))
        self._take(out)
        return reply

    def request(self, t, **kind):
        reply, out = self.model.request(cti_pb2.Request(**kind), self.at(t))
        self._take(out)
        return reply

    def incoming(self, t, ani, channel=5):
        out = self.ev(t, channel, incoming=cardd_pb2.Incoming(ani=ani))
        return out.events[0].call_id

    def answer(self, t, channel):
        return self.ev(t, channel, answered=cardd_pb2.Answered())

    def hang_up(self, t, channel):
        if channel >= 5:
            return self.ev(t, channel, cleared=cardd_pb2.Cleared(cause=16))
        return self.ev(t, channel, on_hook=cardd_pb2.OnHook())


def names(out_or_events):
    events = out_or_events.events if hasattr(out_or_events, "events") else out_or_events
    return [e.name for e in events]


def agent_events(events, agent=None):
    return [(e.name, e.agent_state, e.reason) for e in events
            if e.agent_state and (agent is None or e.agent == agent)]


def cmds(out):
    return [(c.channel, c.WhichOneof("kind")) for _, c in out.commands]


def cmd(out, channel, kind):
    return next(c for _, c in out.commands if c.channel == channel and c.WhichOneof("kind") == kind)


def test_a_caller_queues_with_music_then_an_agent_answers_and_wraps_up(tmp_path):
    b = Bench(tmp_path)
    assert agent_events(b.log) == [("AgentLoggedOn", "not_ready", "login"), ("AgentReady", "ready", ""),
                                   ("AgentLoggedOn", "not_ready", "login"), ("AgentReady", "ready", "")]
    b.agent(1, "1001", "not_ready", reason="lunch")
    b.agent(1, "1002", "not_ready", reason="meeting")
    out = b.ev(2, 5, incoming=cardd_pb2.Incoming(ani="13800138000"))
    (queued,) = out.events
    assert queued.name == "Queued" and queued.device == "queue:hotline"
    assert queued.calling == "13800138000" and queued.data["queue_position"] == "1"
    assert [(c.device, c.state) for c in queued.connections] == [
        ("trunk:node1/5", cti_pb2.CS_CONNECTED), ("queue:hotline", cti_pb2.CS_QUEUED)]
    # the line is answered, then music plays on it (a file generated at start)
    assert cmds(out) == [(5, "answer"), (5, "play_prompt")]
    assert cmd(out, 5, "play_prompt").play_prompt.files == [b.audio.music_file]
    call = queued.call_id
    assert names(b.answer(2.2, 5)) == []            # the caller's line answering is no news
    assert names(b.ev(18, 5, prompt_done=cardd_pb2.PromptDone())) == []
    assert cmds(b.last) == [(5, "play_prompt")]     # the music loops

    out = b.agent(20, "1002", "ready") and b.last
    assert names(out) == ["AgentReady", "AgentBusy", "Delivered", "AgentBusy"]
    delivered = out.events[2]
    assert delivered.device == "ext:8002" and delivered.agent == "1002"
    assert delivered.data["ani"] == "13800138000" and delivered.data["queue"] == "hotline"
    assert cmd(out, 2, "ring").ring.caller_id == "13800138000"
    assert [e.agent_state for e in out.events if e.agent_state] == ["ready", "reserved", "ringing"]

    out = b.answer(24, 2)
    assert names(out) == ["Established", "AgentBusy"]
    assert cmds(out) == [(2, "bridge"), (5, "stop_media")]
    assert out.events[1].agent_state == "busy" and out.events[1].call_id == call
    m = b.model.calls[call]
    assert m.connections["queue:hotline"].state == ConnState.NULL    # no longer queued

    out = b.hang_up(84, 2)
    assert names(out) == ["ConnectionCleared", "ConnectionCleared", "CallCleared",
                          "AgentWorkingAfterCall"]
    cdr = out.cdrs[0]
    assert cdr["outcome"] == "answered"
    assert [leg["device"] for leg in cdr["legs"]] == ["trunk:node1/5", "queue:hotline", "ext:8002"]
    assert names(b.tick(88)) == []
    out = b.tick(89)                                  # wrap-up of 5 s is over
    assert agent_events(out.events) == [("AgentReady", "ready", "")]
    f = b.svc.acd.queue_figures("hotline", b.now)
    assert f.answered == 1 and f.asa_s == pytest.approx(22.0) and f.aht_s == pytest.approx(65.0)


def test_ring_no_answer_stops_the_ringing_and_the_call_goes_to_the_next_agent(tmp_path):
    b = Bench(tmp_path)
    b.agent(1, "1002", "not_ready")
    call = b.incoming(2, "13800138000")
    assert cmds(b.last)[-1] == (1, "ring")          # 1001 is ringing
    assert names(b.tick(11.9)) == []
    out = b.tick(12.1)                              # rona_s = 10
    assert cmds(out)[0] == (1, "hangup")            # the ringing stops
    assert names(out)[:3] == ["AgentNotReady", "ConnectionCleared", "Queued"]
    assert out.events[0].reason == "rona" and out.events[2].data["queue_position"] == "1"
    # the caller keeps the music; 1002 becomes ready and gets the call at once
    out = b.agent(13, "1002", "ready") and b.last
    assert "Delivered" in names(out) and cmd(out, 2, "ring")
    b.answer(15, 2)
    st = b.svc.calls[call]
    assert st.agent == "1002" and b.svc.acd.agents["1001"].state == "not_ready"
    assert b.svc.metrics.queue_events.labels("hotline", "rona")._value.get() == 1


def test_an_agent_whose_phone_is_in_use_is_busy_and_not_offered(tmp_path):
    b = Bench(tmp_path)
    b.agent(1, "1002", "not_ready")
    b.ev(1.5, 1, off_hook=cardd_pb2.OffHook())      # 1001 lifts the handset to dial out
    assert agent_events(b.last.events, "1001") == [("AgentBusy", "busy", "phone in use")]
    b.incoming(2, "13800138000")
    assert agent_events(b.last.events, "1001") == []
    assert names(b.last)[-1] == "Queued" and (1, "ring") not in cmds(b.last)
    out = b.ev(3, 1, on_hook=cardd_pb2.OnHook())    # hangs up: ready, and the caller rings
    assert agent_events(out.events, "1001")[:2] == [("AgentReady", "ready", ""),
                                                    ("AgentBusy", "reserved", "hotline")]
    assert (1, "ring") in cmds(out)


def test_caller_abandons_while_waiting_and_while_an_agent_rings(tmp_path):
    b = Bench(tmp_path)
    b.agent(1, "1001", "not_ready")
    b.agent(1, "1002", "not_ready")
    b.incoming(2, "13800138000")
    out = b.hang_up(9, 5)
    assert names(out) == ["ConnectionCleared", "ConnectionCleared", "CallCleared"]
    assert out.cdrs[0]["outcome"] == "abandoned"
    assert not b.svc.calls and not b.svc.acd.calls
    # now 1001 is ready and ringing when the caller gives up
    b.agent(10, "1001", "ready")
    b.incoming(11, "13900139000", channel=6)
    assert (1, "ring") in cmds(b.last)
    out = b.hang_up(13, 6)
    assert (1, "hangup") in cmds(out)               # the agent's phone stops ringing
    assert names(out)[-1] == "CallCleared" and out.cdrs[0]["outcome"] == "abandoned"
    assert ("AgentReady", "ready", "caller_left") in agent_events(out.events, "1001")
    f = b.svc.acd.queue_figures("hotline", b.now)
    assert f.abandoned == 2 and f.abandon_rate == 1.0
    metric = b.svc.metrics.queue_events.labels("hotline", "abandoned")._value.get()
    assert metric == 2


def test_announcements_interrupt_the_music_which_resumes(tmp_path):
    q = QueueConfig("hotline", members=("1001", "1002"), announce_first_s=10, announce_every_s=30)
    b = Bench(tmp_path, queues=[q])
    b.agent(1, "1001", "not_ready")
    b.agent(1, "1002", "not_ready")
    b.incoming(2, "13800138000")
    b.incoming(3, "13900139000", channel=6)
    out = b.tick(12.05)                             # 10 s after the first caller queued
    (play,) = [c for _, c in out.commands]
    assert play.channel == 5 and "position-beeps-1-" in play.play_prompt.files[0]
    out = b.tick(13.05)
    assert "position-beeps-2-" in out.commands[0][1].play_prompt.files[0]
    # the music's prompt is reported interrupted, then the announcement done: music again
    assert cmds(b.ev(12.1, 5, prompt_done=cardd_pb2.PromptDone(interrupted=True))) == []
    out = b.ev(15, 5, prompt_done=cardd_pb2.PromptDone())
    assert cmd(out, 5, "play_prompt").play_prompt.files == [b.audio.music_file]


def test_a_transfer_from_an_agent_keeps_the_wrap_up_rules(tmp_path):
    b = Bench(tmp_path)
    call = b.incoming(2, "13800138000")
    b.answer(3, 1)                                  # 1001 (longest idle) takes it
    b.agent(4, "1002", "not_ready")
    b.agent(5, "1002", "ready")
    out = b.request(30, single_step_transfer=cti_pb2.SingleStepTransfer(
        call_id=call, device="ext:8001", to="8002")) and b.last
    assert names(out)[0] == "Transferred"
    assert ("AgentWorkingAfterCall", "after_call_work", "hotline") in agent_events(out.events, "1001")
    assert ("AgentBusy", "busy", "transfer") in agent_events(out.events, "1002")
    assert cmd(out, 2, "ring")
    b.answer(32, 2)
    assert b.svc.calls[call].agent == "1002"
    out = b.tick(35.5)                              # 1001's 5 s wrap-up from the transfer
    assert agent_events(out.events, "1001") == [("AgentReady", "ready", "")]
    out = b.hang_up(60, 5)                          # the caller ends the call with 1002
    assert agent_events(out.events, "1002") == [("AgentWorkingAfterCall", "after_call_work", "hotline")]
    assert agent_events(b.tick(65.5).events, "1002") == [("AgentReady", "ready", "")]


def test_a_returning_caller_gets_their_last_agent(tmp_path):
    q = QueueConfig("hotline", members=("1001", "1002"), wrapup_s=0, sticky_wait_s=20,
                    announce_first_s=None)
    b = Bench(tmp_path, queues=[q])
    b.incoming(2, "13800138000")
    b.answer(3, 1)
    b.hang_up(30, 1)                                # 1001 served them; both agents idle now
    b.incoming(40, "13800138000")
    assert cmds(b.last)[-1] == (1, "ring")          # to 1001 again, though 1002 idled longer
    b.incoming(50, "13911112222", channel=6)
    assert cmds(b.last)[-1] == (2, "ring")          # someone else: longest idle


def test_overflow_to_another_queue_and_out_of_the_acd(tmp_path):
    queues = [QueueConfig("hotline", members=("1001",), announce_first_s=None,
                          overflow=(OverflowRule("wait", 30, "queue:backup"),)),
              QueueConfig("backup", members=("1003",), announce_first_s=None, max_wait_s=20,
                          max_wait_target="hangup")]
    b = Bench(tmp_path, queues=queues)
    b.agent(1, "1001", "not_ready")
    call = b.incoming(2, "13800138000")
    out = b.tick(32.05)
    assert names(out) == ["Diverted", "Queued"]
    assert out.events[0].device == "queue:hotline" and "overflow (wait)" in out.events[0].reason
    assert out.events[1].device == "queue:backup"
    conns = {c.device: c.state for c in out.events[1].connections if c.state != cti_pb2.CS_NULL}
    assert conns == {"trunk:node1/5": cti_pb2.CS_CONNECTED, "queue:backup": cti_pb2.CS_QUEUED}
    # nobody in backup either: after its 20 s the caller hears busy tone and is cleared
    out = b.tick(52.1)
    assert names(out) == ["Diverted"] and cmd(out, 5, "play_tone").play_tone.tone == "busy"
    out = b.tick(56.2)
    assert (5, "hangup") in cmds(out) and out.cdrs[0]["outcome"] == "timed_out"
    assert not b.svc.calls and call not in b.model.calls


def test_supervisor_whispers_to_the_agent_then_barges_then_hangs_up(tmp_path):
    b = Bench(tmp_path)
    call = b.incoming(2, "13800138000")
    b.answer(3, 1)
    b.agent(4, "9001", "login", device="ext:8003", reason="not_ready")
    reply = b.agent(10, "1001", "supervise", device="ext:8003", reason="whisper")
    assert reply.ok and reply.call_id == call
    assert cmd(b.last, 3, "ring")                   # the supervisor's phone rings
    out = b.answer(12, 3)
    joins = [(c.channel, c.conference_join.mode, c.conference_join.whisper_to)
             for _, c in out.commands if c.WhichOneof("kind") == "conference_join"]
    assert joins == [(5, "talk", 0), (1, "talk", 0), (3, "whisper", 1)]
    out = b.agent(20, "1001", "supervise", device="ext:8003", reason="barge") and b.last
    assert [(c.channel, c.conference_join.mode) for _, c in out.commands] == [(3, "talk")]
    out = b.hang_up(30, 3)                          # the supervisor leaves: the bridge is back
    assert cmds(out)[-2:] == [(3, "conference_leave"), (1, "bridge")]
    assert cmd(out, 1, "bridge").bridge.other_channel == 5
    assert not b.svc.sessions
    # again, in listen mode; this time the agent's call ends first
    b.agent(40, "1001", "supervise", device="ext:8003", reason="listen")
    b.answer(41, 3)
    out = b.hang_up(50, 5)
    assert {(3, "conference_leave"), (3, "hangup"), (1, "hangup")} <= set(cmds(out))
    assert not b.svc.sessions


def test_bad_agent_requests_get_clear_errors(tmp_path):
    b = Bench(tmp_path)
    cases = [
        (("1009", "ready"), "unknown agent '1009'"),
        (("1001", "dance"), "unknown agent action 'dance'"),
        (("1003", "ready"), "'ready' is not allowed in state 'logged_off'"),
        (("1003", "login", "trunk:node1/5"), "trunk:node1/5 is not an extension"),
        (("1003", "login", "ext:8001"), "already has agent '1001' logged in"),
        (("1001", "supervise", "ext:8003", "listen"), "not on a queue call"),
        (("1001", "supervise", "ext:8003", "shout"), "reason must be the mode"),
        (("1001", "force_state", "ext:8003", "sleeping"), "a supervisor may force only"),
        (("", "status", "queue:nope"), "unknown queue 'nope'"),
        (("", "ready"), "name the agent"),
    ]
    for args, error in cases:
        with pytest.raises(RequestError, match=error.replace("(", r"\(").replace(")", r"\)")):
            b.agent(1, *args)
    # a supervise from a phone where a plain agent is logged in
    b.incoming(2, "13800138000")
    b.answer(3, 1)
    with pytest.raises(RequestError, match="agent '1002' at ext:8002 is not a supervisor"):
        b.agent(4, "1001", "supervise", device="ext:8002", reason="listen")
    with pytest.raises(RequestError, match="own phone"):
        b.agent(4, "1001", "supervise", device="ext:8001", reason="listen")
    # nothing changed for anyone
    assert {a: x.state for a, x in b.svc.acd.agents.items()} == {
        "1001": "busy", "1002": "ready", "1003": "logged_off", "9001": "logged_off"}


def test_status_force_state_and_logout(tmp_path):
    b = Bench(tmp_path)
    reply = b.agent(1, "1001", "status")
    assert reply.status["agent_state"] == "ready" and reply.status["device"] == "ext:8001"
    reply = b.agent(2, "1001", "force_state", device="ext:8003", reason="not_ready:meeting")
    assert reply.status["agent_state"] == "not_ready"
    assert agent_events(b.last.events) == [("AgentNotReady", "not_ready", "meeting")]
    b.agent(3, "1001", "logout")
    assert agent_events(b.last.events) == [("AgentLoggedOff", "logged_off", "")]
    assert b.last.events[0].device == "ext:8001"
    reply = b.agent(4, "", "status", device="queue:hotline")
    assert reply.status["agents.ready"] == "1" and reply.status["service_level"] == ""


def test_reconciler_marks_an_agent_using_the_phone_outside_the_acd_busy(tmp_path):
    b = Bench(tmp_path, reconcile_every_s=2.0, reconcile_grace_s=5.0)
    b.ev(1, 2, off_hook=cardd_pb2.OffHook())       # 1002 picks up to dial
    b.svc.acd.agent_released("1002", b.now)         # as if the service had not seen it
    b.svc.seized.discard("1002")
    assert agent_events(b.tick(4).events) == []     # still within the grace
    out = b.tick(6)
    assert agent_events(out.events, "1002") == [("AgentBusy", "busy", "reconciled")]
    out = b.ev(7, 2, on_hook=cardd_pb2.OnHook())    # the service knows the phone again
    assert agent_events(out.events, "1002")[-1] == ("AgentReady", "ready", "")


def test_queue_statistics_events_and_gauges(tmp_path):
    b = Bench(tmp_path, figures_every_s=10.0)
    b.agent(1, "1001", "not_ready")
    b.agent(1, "1002", "not_ready")
    b.incoming(2, "13800138000")
    b.tick(5)
    out = b.tick(10.5)
    (stats,) = [e for e in out.events if e.name == "QueueStatistics"]
    assert stats.device == "queue:hotline"
    assert stats.data["waiting"] == "1" and stats.data["agents.not_ready"] == "2"
    assert float(stats.data["longest_wait_s"]) == pytest.approx(8.5)
    g = b.svc.metrics
    assert g.waiting.labels("hotline")._value.get() == 1
    assert g.agents.labels("hotline", "not_ready")._value.get() == 2
    assert math.isnan(g.service_level.labels("hotline")._value.get())
    assert g.queue_events.labels("hotline", "entered")._value.get() == 1


def test_queue_log_rows_reach_the_database(tmp_path):
    from ctid.storage import Store
    store = Store(f"sqlite:///{tmp_path}/hotline.db", spool_dir=str(tmp_path / "spool")).start()
    try:
        devices = [Device("ext:8001", DeviceType.EXTENSION, number="8001", channel=ChannelRef("n", 1)),
                   Device("trunk:n/5", DeviceType.TRUNK, number="1", group="co", channel=ChannelRef("n", 5))]
        model = CallModel(devices, DialPlan([Route("1", "queue:q")], {}))
        svc = AcdService([QueueConfig("q", announce_first_s=None)],
                         [AgentSettings("a1", extension="8001", login=True)],
                         store=store).attach(model)
        model.tick(T0)
        out = model.channel_event("n", chev(5, incoming=cardd_pb2.Incoming(ani="139")), T0 + 1)
        call = out.events[0].call_id
        model.channel_event("n", chev(1, answered=cardd_pb2.Answered()), T0 + 3)
        model.channel_event("n", chev(5, cleared=cardd_pb2.Cleared(cause=16)), T0 + 20)
        assert store.flush(10)
        rows = store.rows("queue_log")
        events = [r["event"] for r in rows if r["call"] == call]
        assert events[:3] == ["ENTERQUEUE", "AGENT_STATE", "OFFER"]
        assert {"CONNECT", "COMPLETE"} <= set(events)
        connect = next(r for r in rows if r["event"] == "CONNECT")
        assert connect["queue"] == "q" and connect["agent"] == "a1"
        assert connect["time"] == pytest.approx(T0 + 3) and connect["data"]["wait_s"] == pytest.approx(2)
        assert svc.writer.written == len(rows) and svc.writer.refused == 0
    finally:
        store.close()


def test_without_a_queue_service_a_queue_route_fails_and_other_kinds_reach_their_service(tmp_path):
    devices = [Device("trunk:n/5", DeviceType.TRUNK, number="1", group="co", channel=ChannelRef("n", 5))]
    model = CallModel(devices, DialPlan([Route("1", "queue:q"), Route("2", "ivr:menu")], {}))
    out = model.channel_event("n", chev(5, incoming=cardd_pb2.Incoming(ani="139", dnis="1")), T0)
    assert names(out) == ["Failed", "ConnectionCleared", "CallCleared"]
    assert "queue targets are not served" in out.events[0].reason

    class Ivr:
        routed = []

        def route(self, model, out, call, origin, name, number, now, caller_id=None):
            self.routed.append((call.id, origin.id, name, number))

    model.add_service("ivr", Ivr())
    model.channel_event("n", chev(5, incoming=cardd_pb2.Incoming(ani="139", dnis="2")), T0 + 1)
    assert Ivr.routed == [("C2", "trunk:n/5", "menu", "2")]
    with pytest.raises(ValueError, match="already have a service"):
        model.add_service("ivr", Ivr())


def test_a_priority_set_by_the_ivr_puts_the_caller_first(tmp_path):
    b = Bench(tmp_path)
    b.agent(1, "1001", "not_ready")
    b.agent(1, "1002", "not_ready")
    first = b.incoming(2, "13800138000")
    # a second caller, handed over by the IVR with a priority (the IVR answered the line)
    call = b.model.new_call(b.at(3), calling="13900139000", called="12345")
    trunk = b.model.devices["trunk:node1/6"]
    b.model.connect(call, trunk.id, ConnState.CONNECTED, b.now, "caller")
    call.data.update({"answered_trunk": trunk.id, "queue_priority": "5"})
    out = b.model.tick(b.at(3))             # (an output to carry the IVR's hand-over)
    b.model.deliver(out, call, trunk, "queue:hotline", "12345", b.now)
    assert (6, "answer") not in cmds(out)   # already answered by the IVR
    assert [e.data["queue_position"] for e in out.events if e.name == "Queued"] == ["1"]
    out = b.agent(4, "1001", "ready") and b.last
    assert cmd(out, 1, "ring").ring.caller_id == "13900139000"    # ahead of the first caller
    assert b.svc.acd.position(first) == 1


def test_no_supervising_an_agent_whose_caller_is_on_hold(tmp_path):
    b = Bench(tmp_path)
    call = b.incoming(2, "13800138000")
    b.answer(3, 1)
    b.request(5, hold_call=cti_pb2.CallRef(call_id=call, device="ext:8001"))
    assert b.svc.acd.agents["1001"].state == "on_hold"
    with pytest.raises(RequestError, match="agent '1001' is on_hold, not on a queue call"):
        b.agent(6, "1001", "supervise", device="ext:8003", reason="listen")
    b.request(7, retrieve_call=cti_pb2.CallRef(call_id=call, device="ext:8001"))
    assert b.agent(8, "1001", "supervise", device="ext:8003", reason="listen").ok


# ---- callbacks and voicemail ------------------------------------------------------------------
CALLBACK = {"hotline": ("1", "co")}


def callback_bench(tmp_path, **kw):
    b = Bench(tmp_path, callbacks=CALLBACK, **kw)
    b.agent(1, "1001", "not_ready")
    b.agent(1, "1002", "not_ready")
    return b


def test_a_queued_caller_keys_for_a_callback_and_is_released_then_an_agent_calls_back(tmp_path):
    b = callback_bench(tmp_path)
    call = b.incoming(2, "13800138000")
    out = b.ev(5, 5, digit=cardd_pb2.Digit(digit="7"))      # not the callback key
    assert names(out) == [] and cmds(out) == []
    out = b.ev(6, 5, digit=cardd_pb2.Digit(digit="1"))
    (reg,) = [e for e in out.events if e.name == "CallbackRegistered"]
    assert reg.call_id == call and reg.data["callback_number"] == "13800138000"
    assert cmds(out) == [(5, "stop_media"), (5, "play_prompt")]  # music off, confirmation on
    assert cmd(out, 5, "play_prompt").play_prompt.files[0].endswith("callback-confirm.wav")
    b.ev(7, 5, prompt_done=cardd_pb2.PromptDone(interrupted=True))   # the music, stopped
    out = b.ev(8, 5, prompt_done=cardd_pb2.PromptDone())        # confirmed: the line is cleared
    assert "CallCleared" in names(out) and call not in b.model.calls
    assert (5, "hangup") in cmds(out) and cmd(out, 5, "hangup").hangup.cause == 16
    assert b.svc.acd.queue_figures("hotline", b.now).callbacks_waiting == 1

    b.agent(30, "1002", "ready")                        # the entry reaches agent 1002
    out = b.last
    assert cmd(out, 2, "ring").ring.caller_id == "13800138000"
    delivered = next(e for e in out.events if e.name == "Delivered")
    assert delivered.device == "ext:8002" and delivered.agent == "1002"
    assert b.svc.acd.agents["1002"].state == "ringing"
    out = b.answer(33, 2)                               # the agent answers: dial the customer
    assert "Originated" in names(out)
    dial = cmd(out, 5, "dial").dial
    assert dial.number == "13800138000"
    assert b.svc.acd.agents["1002"].state == "busy"
    out = b.answer(40, 5)                               # the customer answers: bridged
    assert "Established" in names(out) and (5, "bridge") in cmds(out)
    out = b.hang_up(100, 5)
    assert "CallCleared" in names(out)
    assert b.svc.acd.agents["1002"].state == "after_call_work"
    f = b.svc.acd.queue_figures("hotline", b.now)
    assert f.callbacks_waiting == 0 and f.callbacks_completed == 1


def test_a_callback_the_customer_does_not_take_is_reported_failed(tmp_path):
    b = callback_bench(tmp_path)
    records = []
    b.svc.writer = records.append
    b.incoming(2, "13800138000")
    b.ev(6, 5, digit=cardd_pb2.Digit(digit="1"))
    b.ev(7, 5, prompt_done=cardd_pb2.PromptDone(interrupted=True))   # the music, stopped
    b.ev(8, 5, prompt_done=cardd_pb2.PromptDone())
    b.agent(30, "1001", "ready")
    b.answer(33, 1)
    out = b.hang_up(50, 5)                              # busy/no answer at the far end
    assert "CallCleared" in names(out)
    assert (1, "hangup") in cmds(out)
    assert b.svc.acd.agents["1001"].state == "after_call_work"
    assert [r.event for r in records if r.event.startswith("CALLBACK")] == [
        "CALLBACK_REQUESTED", "CALLBACK_DIAL", "CALLBACK_FAILED", "CALLBACK_RETRY"]
    f = b.svc.acd.queue_figures("hotline", b.now)     # out of the queue until its retry
    assert (f.callbacks_waiting, f.callbacks_completed, f.callbacks_failed) == (0, 0, 1)
    assert not b.svc.placing


def test_an_agent_not_answering_a_callback_puts_the_entry_back(tmp_path):
    b = callback_bench(tmp_path)
    b.incoming(2, "13800138000")
    b.ev(6, 5, digit=cardd_pb2.Digit(digit="1"))
    b.ev(7, 5, prompt_done=cardd_pb2.PromptDone(interrupted=True))   # the music, stopped
    b.ev(8, 5, prompt_done=cardd_pb2.PromptDone())
    b.agent(30, "1001", "ready")
    b.tick(45)                                          # rona_s = 10
    assert b.svc.acd.agents["1001"].state == "not_ready"
    assert cmds(b.last) == [(1, "hangup")] and "CallCleared" in names(b.last)
    assert b.svc.acd.queue_figures("hotline", b.now).callbacks_waiting == 1
    b.agent(50, "1002", "ready")                        # the next agent gets the entry
    assert cmd(b.last, 2, "ring").ring.caller_id == "13800138000"


def test_overflow_to_callback_releases_the_caller_with_a_confirmation(tmp_path):
    q = QueueConfig("hotline", members=("1001", "1002"), announce_first_s=None,
                    overflow=[OverflowRule.parse("wait>=30:callback")])
    b = callback_bench(tmp_path, queues=[q])
    call = b.incoming(2, "13800138000")
    out = b.tick(35)
    assert "CallbackRegistered" in names(out) and (5, "play_prompt") in cmds(out)
    b.ev(36, 5, prompt_done=cardd_pb2.PromptDone(interrupted=True))   # the music, stopped
    b.ev(37, 5, prompt_done=cardd_pb2.PromptDone())
    assert call not in b.model.calls
    assert b.svc.acd.queue_figures("hotline", b.now).callbacks_waiting == 1


def test_overflow_to_voicemail_records_a_message_into_the_queue_log(tmp_path):
    q = QueueConfig("hotline", members=("1001", "1002"), announce_first_s=None,
                    overflow=[OverflowRule.parse("wait>=30:voicemail:200")])
    b = callback_bench(tmp_path, queues=[q])
    records = []
    b.svc.writer = records.append
    call = b.incoming(2, "13800138000")
    out = b.tick(35)
    rec = cmd(out, 5, "record").record
    assert rec.beep and rec.path.startswith(f"voicemail/200/{call}-") and rec.max_s > 0
    assert "Diverted" in names(out) or any("voicemail:200" in e.reason for e in out.events)
    out = b.ev(36, 5, prompt_done=cardd_pb2.PromptDone())   # the music stopping: still recording
    assert call in b.model.calls and "CallCleared" not in names(out)
    out = b.ev(50, 5, record_done=cardd_pb2.RecordDone(path=rec.path, duration_s=12.5, ok=True))
    assert "CallCleared" in names(out) and call not in b.model.calls
    (vm,) = [r for r in records if r.event == "VOICEMAIL"]
    assert vm.call == call and vm.queue == "hotline"
    assert vm.data["path"] == rec.path and vm.data["mailbox"] == "200" and vm.data["ok"]
