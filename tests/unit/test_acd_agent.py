"""ACD agent state machine: legal and illegal moves, RONA, wrap-up, transfers, reconciler,
supervisor operations and hot desking."""
import pytest

from ctid.acd import (Acd, AcdConfig, AcdError, AgentStateChanged, AgentStateCorrected,
                      CallQueued, CancelOffer, IllegalTransition, OfferCall, QueueConfig,
                      Supervise, TRANSITIONS)
from ctid.acd.agent import STATES


def make(queues=None, agents=("a", "b"), **acd_cfg):
    queues = queues or [QueueConfig("q", wrapup_s=0.0, rona_s=20.0, announce_first_s=None,
                                    moh=None)]
    acd = Acd(queues, AcdConfig(figures_every_s=None, **acd_cfg))
    for aid in agents:
        acd.add_agent(aid)
    return acd


def offers(acts):
    return [(a.agent, a.call) for a in acts if isinstance(a, OfferCall)]


def states(acd):
    return {aid: a.state for aid, a in acd.agents.items()}


def test_transition_table_names_only_known_states():
    for (state, _event), new in TRANSITIONS.items():
        assert state in STATES and new in STATES


def test_login_ready_offer_answer_end_walks_the_states():
    acd = make(agents=("a",))
    seen = []
    for acts in (acd.agent_login("a", "1001", 0),
                 acd.call_arrived("c1", "q", "13800138000", now=1),
                 acd.agent_ringing("a", "c1", 1.5),
                 acd.agent_answered("a", "c1", 3),
                 acd.agent_hold("a", 10), acd.agent_retrieve("a", 20),
                 acd.call_ended("c1", 30)):
        seen += [(x.old, x.new) for x in acts if isinstance(x, AgentStateChanged)]
    assert seen == [("logged_off", "not_ready"), ("not_ready", "ready"),
                    ("ready", "reserved"), ("reserved", "ringing"), ("ringing", "busy"),
                    ("busy", "on_hold"), ("on_hold", "busy"),
                    ("busy", "after_call_work"), ("after_call_work", "ready")]
    times = acd.agents["a"].times(30)
    assert times["busy"] == pytest.approx(17) and times["on_hold"] == pytest.approx(10)


def test_illegal_transitions_raise_and_change_nothing():
    acd = make()
    acd.agent_login("a", "1001", 0)
    n_log = len(acd.log.records)
    before = states(acd)
    with pytest.raises(IllegalTransition, match="'hold' is not allowed in state 'ready'"):
        acd.agent_hold("a", 1)
    with pytest.raises(IllegalTransition, match="logged_off"):
        acd.set_ready("b", 1)
    acd.call_arrived("c1", "q", "", now=2)
    acd.agent_answered("a", "c1", 3)
    with pytest.raises(IllegalTransition, match="'logout' is not allowed in state 'busy'"):
        acd.agent_logout("a", 4)
    with pytest.raises(AcdError, match="not offered to agent 'b'"):
        acd.agent_answered("b", "c1", 4)
    with pytest.raises(AcdError, match="unknown agent"):
        acd.set_ready("nobody", 4)
    with pytest.raises(AcdError, match="time went backwards"):
        acd.set_not_ready("a", 1)
    assert states(acd)["a"] == "busy" and states(acd)["b"] == before["b"]
    assert acd.agents["a"].pending_not_ready is None
    assert [r.event for r in acd.log.records[n_log:]] == ["ENTERQUEUE", "AGENT_STATE", "OFFER",
                                                          "AGENT_STATE", "CONNECT"]


def test_ring_no_answer_sends_agent_to_not_ready_and_call_to_the_head():
    acd = make()
    acd.agent_login("a", "1001", 0)
    assert offers(acd.call_arrived("c1", "q", "", now=1)) == [("a", "c1")]
    acd.call_arrived("c2", "q", "", priority="vip", now=2)     # waits, would be first
    assert acd.position("c2") == 1
    acts = acd.tick(21)                                         # rona_s = 20
    agent = acd.agents["a"]
    assert (agent.state, agent.reason) == ("not_ready", "rona")
    assert any(isinstance(x, CallQueued) and x.call == "c1" and x.position == 1 for x in acts)
    assert acd.position("c1") == 1 and acd.position("c2") == 2
    assert acd.log.events("RINGNOANSWER")[0].agent == "a"
    # The next agent who is ready gets c1, not the VIP who arrived later.
    acd.agent_login("b", "1002", 22)
    assert acd.agents["b"].offered_call == "c1"


def test_explicit_no_answer_reoffers_to_another_idle_agent_at_once():
    acd = make()
    acd.agent_login("a", "1001", 0)
    acd.agent_login("b", "1002", 1)
    acd.call_arrived("c1", "q", "", now=5)
    acts = acd.agent_no_answer("a", "c1", 8)
    assert offers(acts) == [("b", "c1")]
    assert acd.agents["a"].reason == "rona"


def test_wrapup_is_one_and_the_longest_of_the_agents_queues():
    qs = [QueueConfig("A", wrapup_s=10.0, announce_first_s=None, moh=None),
          QueueConfig("B", wrapup_s=30.0, announce_first_s=None, moh=None)]
    acd = make(qs, agents=("a",))
    acd.agent_login("a", "1001", 0)
    acd.call_arrived("c1", "A", "", now=1)
    acd.agent_answered("a", "c1", 2)
    acd.call_ended("c1", 100)
    acd.call_arrived("c2", "A", "", now=105)
    assert acd.next_due() == 130
    assert offers(acd.tick(115)) == []                          # A's 10 s are not enough
    assert acd.agents["a"].state == "after_call_work"
    assert offers(acd.tick(130)) == [("a", "c2")]


def test_transfer_out_starts_wrapup_and_transfer_in_keeps_what_is_left_of_it():
    q = [QueueConfig("q", wrapup_s=20.0, announce_first_s=None, moh=None)]
    acd = make(q)
    acd.agent_login("a", "1001", 0)
    acd.agent_login("b", "1002", 1)
    # b finishes a call at 40: wrap-up until 60.
    acd.call_arrived("x", "q", "", now=2)                       # goes to a (longest idle)
    acd.call_arrived("y", "q", "", now=3)                       # goes to b
    acd.agent_answered("a", "x", 4)
    acd.agent_answered("b", "y", 5)
    acd.call_ended("y", 40)
    assert acd.agents["b"].state == "after_call_work"
    # a transfers x to b at 45: a wraps up, b is simply busy again.
    acts = acd.call_transferred("x", 45, to_agent="b")
    changes = [(c.agent, c.old, c.new) for c in acts if isinstance(c, AgentStateChanged)]
    assert ("b", "after_call_work", "busy") in changes
    assert ("a", "busy", "after_call_work") in changes
    assert acd.calls["x"].agent == "b"
    acd.call_ended("x", 50)                                     # b's new wrap-up would end at 70
    acd.tick(69)
    assert acd.agents["b"].state == "after_call_work"
    acd.tick(70)
    assert acd.agents["b"].state == "ready"


def test_interrupted_wrapup_resumes_when_longer_than_the_new_one():
    q = [QueueConfig("q", wrapup_s=20.0, announce_first_s=None, moh=None),
         QueueConfig("short", wrapup_s=0.0, members=("c",), announce_first_s=None, moh=None)]
    acd = make(q, agents=("a", "b", "c"))
    acd.agent_login("a", "1001", 0)
    acd.call_arrived("x", "q", "", now=1)
    acd.agent_answered("a", "x", 2)
    acd.call_ended("x", 40)                                     # a: wrap-up until 60
    acd.agent_login("c", "1003", 41)
    acd.call_arrived("z", "short", "", now=42)
    acd.agent_answered("c", "z", 42)
    acd.call_transferred("z", 43, to_agent="a")                 # a takes it during wrap-up
    acd.call_ended("z", 45)                                     # new wrap-up 20 s -> 65
    assert acd.agents["a"].wrapup_until == 65
    acd.tick(64)
    assert acd.agents["a"].state == "after_call_work"


def test_not_ready_asked_during_a_call_applies_after_wrapup():
    q = [QueueConfig("q", wrapup_s=5.0, announce_first_s=None, moh=None)]
    acd = make(q, agents=("a",))
    acd.agent_login("a", "1001", 0)
    acd.call_arrived("c1", "q", "", now=1)
    acd.agent_answered("a", "c1", 2)
    assert acd.set_not_ready("a", 3, "lunch") == []
    acd.call_ended("c1", 10)
    acd.call_arrived("c2", "q", "", now=11)
    acts = acd.tick(15)
    assert offers(acts) == []
    assert (acd.agents["a"].state, acd.agents["a"].reason) == ("not_ready", "lunch")


def test_hot_desking_offers_go_to_the_extension_of_this_login():
    acd = make(agents=("a", "b"))
    acd.agent_login("a", "1001", 0)
    acd.agent_logout("a", 1)
    acd.agent_login("a", "2002", 2, softphone=True)
    acts = acd.call_arrived("c1", "q", "", now=3)
    assert [o.extension for o in acts if isinstance(o, OfferCall)] == ["2002"]
    with pytest.raises(AcdError, match="extension '2002' already has agent 'a'"):
        acd.agent_login("b", "2002", 4)


def test_reconciler_ends_a_stuck_busy_agent_with_a_correction_event():
    q = [QueueConfig("q", wrapup_s=0.0, announce_first_s=None, moh=None)]
    acd = make(q, agents=("a",))
    acd.agent_login("a", "1001", 0)
    acd.call_arrived("c1", "q", "", now=1)
    acd.agent_answered("a", "c1", 2)
    assert acd.reconcile({"1001": "idle"}, 4) == []             # within the grace period
    acts = acd.reconcile({"1001": "idle", "9999": "connected"}, 60)
    corr = [x for x in acts if isinstance(x, AgentStateCorrected)]
    assert [(c.agent, c.channel_state, c.old, c.new) for c in corr] == \
        [("a", "idle", "busy", "after_call_work")]
    assert acd.agents["a"].state == "ready"
    assert "c1" not in acd.calls
    assert acd.log.events("CORRECTION")[0].agent == "a"


def test_reconciler_leaves_no_agent_reserved_ringing_or_busy_on_idle_channels():
    acd = make(agents=("a", "b", "c"), reconcile_grace_s=5.0)
    for i, aid in enumerate("abc"):
        acd.agent_login(aid, f"10{i}", 0)
    acd.call_arrived("c1", "q", "", now=1)                      # a reserved
    acd.call_arrived("c2", "q", "", now=1)                      # b ringing
    acd.agent_ringing("b", "c2", 1)
    acd.reconcile({"102": "connected"}, 2)                      # too fresh: ignored
    acd.reconcile({"102": "connected"}, 10)                     # c uses its phone: busy
    assert acd.agents["c"].state == "busy"
    acd.reconcile({"100": "idle", "101": "idle", "102": "idle"}, 16)
    stuck = {aid: a.state for aid, a in acd.agents.items()
             if a.state in ("reserved", "ringing", "busy", "on_hold")}
    # the withdrawn calls were offered again to whoever was idle; nobody is stuck on them
    for aid, st in stuck.items():
        assert st == "reserved" and acd.agents[aid].since == 16


def test_reconciler_with_a_missed_answer_makes_the_agent_busy():
    acd = make(agents=("a",))
    acd.agent_login("a", "1001", 0)
    acd.call_arrived("c1", "q", "", now=1)
    acts = acd.reconcile({"1001": "connected"}, 10)
    assert any(isinstance(x, AgentStateCorrected) and x.new == "busy" for x in acts)
    assert acd.agents["a"].state == "busy" and acd.calls["c1"].state == "connected"


def test_supervisor_force_is_audited_and_returns_a_ringing_call_to_the_queue():
    acd = make()
    acd.agent_login("a", "1001", 0)
    acd.agent_login("b", "1002", 1)
    acd.set_not_ready("b", 1)
    acd.call_arrived("c1", "q", "", now=2)                      # rings a
    acts = acd.force_state("a", "not_ready", 3, by="sup1", reason="coaching")
    assert any(isinstance(x, CancelOffer) and x.reason == "forced" for x in acts)
    assert acd.agents["a"].state == "not_ready"
    rec = acd.log.events("SUPERVISOR_FORCE")[0]
    assert rec.data == {"by": "sup1", "from": "reserved", "to": "not_ready", "reason": "coaching"}
    assert acd.position("c1") == 1
    acts = acd.force_state("b", "ready", 4, by="sup1")
    assert offers(acts) == [("b", "c1")]
    with pytest.raises(IllegalTransition, match="force"):
        acd.force_state("b", "busy", 5, by="sup1")


def test_listen_whisper_barge_are_actions_on_a_busy_agent():
    acd = make(agents=("a",))
    acd.agent_login("a", "1001", 0)
    with pytest.raises(AcdError, match="not on a call"):
        acd.supervise("sup1", "a", "listen", 1)
    acd.call_arrived("c1", "q", "", now=1)
    acd.agent_answered("a", "c1", 2)
    assert acd.supervise("sup1", "a", "whisper", 3) == \
        [Supervise("sup1", "a", "c1", "1001", "whisper")]
    with pytest.raises(AcdError, match="mode"):
        acd.supervise("sup1", "a", "spy", 3)
    assert acd.log.events("SUPERVISE")[0].data == {"by": "sup1", "mode": "whisper"}


def test_not_ready_asked_while_ringing_applies_when_the_caller_leaves():
    acd = make(agents=("a",))
    acd.agent_login("a", "1001", 0)
    acd.call_arrived("c1", "q", "", now=1)
    acd.set_not_ready("a", 2, "meeting")
    acd.call_arrived("c2", "q", "", now=3)
    acts = acd.call_abandoned("c1", 4)
    assert offers(acts) == []
    assert (acd.agents["a"].state, acd.agents["a"].reason) == ("not_ready", "meeting")


def test_a_call_transferred_to_a_not_ready_agent_leaves_them_not_ready_after():
    acd = make()
    acd.agent_login("a", "1001", 0)
    acd.agent_login("b", "1002", 0, ready=False)
    acd.set_not_ready("b", 1, "training")
    acd.call_arrived("c1", "q", "", now=2)
    acd.agent_answered("a", "c1", 3)
    acd.call_transferred("c1", 10, to_agent="b")
    assert acd.agents["b"].state == "busy"
    acd.call_arrived("c2", "q", "", now=11)                     # a takes it (wrap-up 0)
    acd.call_ended("c1", 20)
    assert (acd.agents["b"].state, acd.agents["b"].reason) == ("not_ready", "training")
