"""ACD: a call withdrawn from its queue by the party that placed it (an agent cancelling
a consultation that waits there) leaves like an abandon, but is logged WITHDRAWN and is
not the caller's abandon in the figures."""
import pytest

from ctid.acd import (Acd, AcdConfig, AcdError, AgentStateChanged, CancelOffer, OfferCall,
                      QueueConfig)


def make(cfg=None, agents=("a", "b")):
    acd = Acd([cfg or QueueConfig("q", wrapup_s=0.0, announce_first_s=None)],
              AcdConfig(figures_every_s=None))
    for aid in agents:
        acd.add_agent(aid)
    return acd


def offers(acts):
    return [(a.agent, a.call) for a in acts if isinstance(a, OfferCall)]


def test_a_withdrawn_waiting_call_leaves_the_queue_and_is_not_an_abandon():
    acd = make()
    for i, c in enumerate(("c1", "leg", "c3")):
        acd.call_arrived(c, "q", f"1380000000{i}", now=i)
    assert acd.call_withdrawn("leg", 10, reason="consultation cleared by ext:8001") == []

    assert "leg" not in acd.calls
    assert acd.position("c3") == 2                          # moved up behind c1
    (rec,) = acd.log.events("WITHDRAWN")
    assert (rec.queue, rec.call, rec.agent) == ("q", "leg", "")
    assert rec.data == {"position": 2, "wait_s": 9, "reason": "consultation cleared by ext:8001"}
    assert acd.log.events("ABANDON") == []
    f = acd.queue_figures("q", 10)
    assert (f.waiting, f.abandoned, f.offered, f.abandon_rate) == (2, 0, 0, None)
    # the agent who logs in is offered the callers, never the withdrawn leg
    (offer,) = offers(acd.agent_login("a", "8001", 11))
    assert offer == ("a", "c1")


def test_only_the_abandon_counts_in_the_abandon_rate():
    acd = make(agents=("a",))
    acd.call_arrived("gone", "q", "13800000001", now=0)
    acd.call_arrived("leg", "q", "13800000002", now=1)
    acd.call_arrived("kept", "q", "13800000003", now=2)
    acd.call_abandoned("gone", 5)
    acd.call_withdrawn("leg", 6)
    acd.agent_login("a", "8001", 7)
    acd.agent_answered("a", "kept", 8)
    f = acd.queue_figures("q", 8)
    assert (f.offered, f.answered, f.abandoned, f.abandon_rate) == (2, 1, 1, 0.5)
    assert acd.log.events("WITHDRAWN")[0].data["reason"] == ""


def test_a_withdrawn_offer_is_cancelled_and_the_agent_takes_the_next_caller():
    acd = make(agents=("a",))
    acd.agent_login("a", "8001", 0)
    assert offers(acd.call_arrived("leg", "q", "", now=1)) == [("a", "leg")]
    acd.agent_ringing("a", "leg", 2)
    acd.call_arrived("next", "q", "13800000001", now=3)

    acts = acd.call_withdrawn("leg", 4, "consultation cleared")
    assert [a for a in acts if isinstance(a, CancelOffer)] == [CancelOffer("a", "leg", "withdrawn")]
    assert [(a.old, a.new, a.reason) for a in acts if isinstance(a, AgentStateChanged)] == [
        ("ringing", "ready", "withdrawn"), ("ready", "reserved", "q")]
    assert offers(acts) == [("a", "next")]
    assert acd.agents["a"].offered_call == "next"
    assert acd.queue_figures("q", 4).abandoned == 0


def test_a_not_ready_asked_during_the_withdrawn_offer_applies_at_once():
    acd = make(agents=("a",))
    acd.agent_login("a", "8001", 0)
    acd.call_arrived("leg", "q", "", now=1)
    acd.set_not_ready("a", 2, "lunch")                     # pending while reserved
    acd.call_arrived("next", "q", "13800000001", now=3)
    acts = acd.call_withdrawn("leg", 4)
    assert offers(acts) == []
    assert (acd.agents["a"].state, acd.agents["a"].reason) == ("not_ready", "lunch")
    assert acd.position("next") == 1


def test_a_ring_all_offer_withdrawn_releases_every_ringing_agent():
    acd = make(QueueConfig("q", strategy="ring_all", wrapup_s=0.0, announce_first_s=None))
    acd.agent_login("a", "8001", 0)
    acd.agent_login("b", "8002", 0)
    assert sorted(offers(acd.call_arrived("leg", "q", "", now=1))) == [("a", "leg"), ("b", "leg")]
    acts = acd.call_withdrawn("leg", 2)
    assert sorted(a.agent for a in acts if isinstance(a, CancelOffer)) == ["a", "b"]
    assert [acd.agents[x].state for x in ("a", "b")] == ["ready", "ready"]
    # nothing left ringing: the ring-all timeout has nothing to fire
    assert acd.tick(100) == [] and acd.next_due() is None


def test_a_sticky_wait_withdrawn_is_not_offered_to_the_agent_it_waited_for():
    acd = make(QueueConfig("q", wrapup_s=0.0, sticky_wait_s=30.0, announce_first_s=None))
    acd.agent_login("a", "8001", 0)
    acd.agent_login("b", "8002", 0)
    (who, _), = offers(acd.call_arrived("first", "q", "13800000001", now=1))
    acd.agent_answered(who, "first", 2)
    acd.call_arrived("other", "q", "13900000009", now=3)   # keeps the other agent busy
    other = next(x for x in ("a", "b") if x != who)
    acd.agent_answered(other, "other", 4)
    acd.call_ended("first", 5)
    acd.set_not_ready(who, 6, "break")
    acd.call_arrived("again", "q", "13800000001", now=7)   # waits for `who`
    assert acd.calls["again"].state == "sticky"
    acd.call_withdrawn("again", 8)
    assert offers(acd.set_ready(who, 9)) == []
    assert acd.agents[who].state == "ready"
    assert acd.queue_figures("q", 9).waiting == 0


def test_only_a_waiting_or_offered_call_can_be_withdrawn_and_a_refusal_changes_nothing():
    acd = make(agents=("a",))
    acd.agent_login("a", "8001", 0)
    acd.call_arrived("talk", "q", "13800000001", now=1)
    acd.agent_answered("a", "talk", 2)
    with pytest.raises(AcdError, match="'talk' is connected; only a waiting or offered"):
        acd.call_withdrawn("talk", 3)
    acd.call_arrived("cb", "q", "13800000002", now=3)
    acd.request_callback("cb", now=4)
    with pytest.raises(AcdError, match="'cb' is a callback entry"):
        acd.call_withdrawn("cb", 5)
    with pytest.raises(AcdError, match="unknown call 'nope'"):
        acd.call_withdrawn("nope", 5)
    acd.call_arrived("w", "q", "13800000003", now=5)
    with pytest.raises(AcdError, match="reason must be a string"):
        acd.call_withdrawn("w", 6, reason=7)
    with pytest.raises(AcdError, match="time went backwards"):
        acd.call_withdrawn("w", 4)
    assert acd.log.events("WITHDRAWN") == []
    assert acd.calls["talk"].state == "connected" and acd.calls["cb"].state == "callback"
    assert acd.position("w") == 2                          # behind the callback entry
