"""ACD queues: caller priority and ageing, sticky agent, overflow, maximum wait, callbacks,
announcements and music on hold."""
import pytest

from ctid.acd import (Acd, AcdConfig, AcdError, Announce, CallbackDue, CallbackRegistered,
                      CallQueued, MusicOnHold, OfferCall, Overflow, PriorityPolicy,
                      QueueConfig, Target)


def make(*queues, agents=("a", "b"), policy=None):
    acd = Acd(queues or [QueueConfig("q", wrapup_s=0.0, announce_first_s=None)],
              AcdConfig(figures_every_s=None), policy=policy)
    for aid in agents:
        acd.add_agent(aid)
    return acd


def offers(acts):
    return [(a.agent, a.call) for a in acts if isinstance(a, OfferCall)]


def of(acts, kind):
    return [a for a in acts if isinstance(a, kind)]


def order_served(acd, agent, calls, t):
    """Log ``agent`` in and serve calls one by one; the order they came in."""
    served = []
    acts = acd.agent_login(agent, "1001", t)
    for _ in calls:
        (who, call), = offers(acts)
        served.append(call)
        acd.agent_answered(who, call, t)
        t += 1
        acts = acd.call_ended(call, t)
    return served


# ---- priority -------------------------------------------------------------------------
def test_vip_jumps_the_queue():
    acd = make(QueueConfig("q", wrapup_s=0.0, priority_step_s=60.0, announce_first_s=None),
               policy=PriorityPolicy(vip_numbers={"13900000001"}))
    acd.call_arrived("n1", "q", "13800000001", now=0)
    acd.call_arrived("n2", "q", "13800000002", now=5)
    acd.call_arrived("v", "q", "13900000001", now=10)
    assert acd.calls["v"].pclass == "vip"
    assert [acd.position(c) for c in ("v", "n1", "n2")] == [1, 2, 3]
    assert order_served(acd, "a", ["v", "n1", "n2"], 20) == ["v", "n1", "n2"]


def test_ageing_lets_a_long_waiting_low_priority_call_keep_its_turn():
    # One level is worth 60 s of waiting: a level-2 call arriving 130 s after a level-0
    # call does not overtake it; one arriving 100 s after does.
    acd = make(QueueConfig("q", wrapup_s=0.0, priority_step_s=60.0, announce_first_s=None))
    acd.call_arrived("old", "q", "", now=0)
    acd.call_arrived("p2_early", "q", "", priority=2, now=100)
    acd.call_arrived("p2_late", "q", "", priority=2, now=130)
    assert order_served(acd, "a", ["x", "y", "z"], 200) == ["p2_early", "old", "p2_late"]


def test_strict_priority_classes_without_ageing():
    acd = make(QueueConfig("q", wrapup_s=0.0, priority_step_s=None, announce_first_s=None))
    acd.call_arrived("old", "q", "", now=0)
    acd.call_arrived("p1", "q", "", priority=1, now=10_000)
    assert order_served(acd, "a", ["x", "y"], 10_001) == ["p1", "old"]


def test_priority_policy_tiers_and_care_line_rules():
    pol = PriorityPolicy(vip_numbers={"111"})
    lv = lambda caller, data, care=False, now=0.0: \
        pol.classify(caller, data, "q", care, None, now)
    assert lv("222", {"tier": "gold"}) == (4, "gold")
    assert lv("111", {"tier": "gold"}) == (8, "vip")
    assert lv("333", {"age": 72}) == (0, "normal")              # not a care line
    assert lv("333", {"age": 72}, care=True) == (5, "elderly")
    assert lv("444", None, care=True, now=10) == (0, "normal")
    assert lv("444", None, care=True, now=3600) == (3, "repeat")  # called back within a day
    assert lv("444", None, care=True, now=3600 + 90_000) == (0, "normal")
    with pytest.raises(AcdError, match="unknown priority class"):
        pol.level_of("platinum-plus")


# ---- sticky agent ---------------------------------------------------------------------
def sticky_setup():
    acd = make(QueueConfig("q", wrapup_s=0.0, sticky_wait_s=30.0, announce_first_s=None))
    acd.agent_login("a", "1001", 0)
    acd.agent_login("b", "1002", 1)
    acd.call_arrived("first", "q", "13812345678", now=2)         # a: longest idle
    acd.agent_answered("a", "first", 3)
    acd.call_ended("first", 50)                                 # a ready again from 50
    return acd


def test_sticky_agent_gets_the_returning_caller_even_if_not_longest_idle():
    acd = sticky_setup()                                         # b is the longest idle now
    assert offers(acd.call_arrived("again", "q", "13812345678", now=60)) == [("a", "again")]


def test_sticky_call_waits_for_its_agent_within_the_set_wait():
    acd = sticky_setup()
    acd.call_arrived("other", "q", "", now=55)                  # b takes it
    acd.agent_answered("b", "other", 55)
    acd.call_arrived("busy_a", "q", "", now=56)                 # a takes it
    acd.agent_answered("a", "busy_a", 56)
    acd.call_ended("other", 57)                                 # b idle
    acts = acd.call_arrived("again", "q", "13812345678", now=60)
    assert offers(acts) == [] and of(acts, CallQueued)          # held for a, b stays idle
    assert acd.agents["b"].state == "ready"
    assert offers(acd.call_ended("busy_a", 70)) == [("a", "again")]


def test_sticky_wait_expires_and_the_call_goes_to_anyone():
    acd = sticky_setup()
    acd.call_arrived("busy_a", "q", "", now=55)                 # b longest idle: b
    acd.call_arrived("busy_a2", "q", "", now=55)                # a
    acd.agent_answered("a", "busy_a2", 55)
    acd.call_ended("busy_a", 56)                                # b idle again
    acd.call_arrived("again", "q", "13812345678", now=60)
    assert offers(acd.tick(89)) == []
    assert offers(acd.tick(90)) == [("b", "again")]
    assert acd.log.events("STICKY_EXPIRED")


# ---- overflow, maximum wait -----------------------------------------------------------
def test_overflow_by_wait_time_moves_the_call_to_another_queue():
    acd = make(QueueConfig("sales", skills={"sales": 1}, overflow=["wait>=60:queue:backup"],
                           announce_first_s=None),
               QueueConfig("backup", members=("b",), announce_first_s=None),
               agents=("b",))
    acd.agent_login("b", "1002", 0)
    acd.call_arrived("c1", "sales", "", now=1)
    assert acd.tick(60) == []
    acts = acd.tick(61)
    assert of(acts, Overflow) == [Overflow("c1", "sales", Target("queue", "backup"), "wait")]
    assert offers(acts) == [("b", "c1")]
    assert acd.queue_figures("sales").overflowed == 1


def test_overflow_by_queue_length_sends_the_newcomer_to_voicemail():
    acd = make(QueueConfig("q", overflow=[{"when": "length", "threshold": 2,
                                           "target": "voicemail:800"}]))
    acd.call_arrived("c1", "q", "", now=0)
    acd.call_arrived("c2", "q", "", now=1)
    acts = acd.call_arrived("c3", "q", "", now=2)
    assert acts == [Overflow("c3", "q", Target("voicemail", "800"), "length")]
    assert "c3" not in acd.calls and acd.position("c2") == 2


def test_maximum_wait_ends_the_wait_at_the_configured_target():
    acd = make(QueueConfig("q", max_wait_s=120.0, max_wait_target="voicemail:900",
                           announce_first_s=None))
    acd.call_arrived("c1", "q", "", now=0)
    acts = acd.tick(120)
    assert of(acts, Overflow) == [Overflow("c1", "q", Target("voicemail", "900"), "max_wait")]
    assert of(acts, MusicOnHold)[-1].on is False
    assert acd.queue_figures("q").timed_out == 1
    assert acd.log.events("EXITWITHTIMEOUT")[0].call == "c1"


def test_maximum_wait_counts_from_queue_entry_across_a_ring_no_answer():
    acd = make(QueueConfig("q", max_wait_s=30.0, rona_s=20.0, announce_first_s=None))
    acd.call_arrived("c1", "q", "", now=0)
    acd.agent_login("a", "1001", 25)                            # offered at 25
    acts = acd.tick(45)                                         # RONA at 45, waited 45 s
    assert of(acts, Overflow) and of(acts, Overflow)[0].reason == "max_wait"


def test_bad_overflow_configuration_is_named():
    with pytest.raises(AcdError, match="'when' must be 'wait' or 'length'"):
        QueueConfig("q", overflow=[{"when": "size", "threshold": 3, "target": "hangup"}])
    with pytest.raises(AcdError, match="overflow target kind"):
        QueueConfig("q", overflow=["wait>=10:mars"])
    with pytest.raises(AcdError, match="unknown strategy"):
        QueueConfig("q", strategy="fastest")


# ---- callbacks ------------------------------------------------------------------------
def test_callback_keeps_the_callers_place_and_becomes_an_outbound_call():
    acd = make(QueueConfig("q", wrapup_s=0.0, announce_first_s=None))
    for i, t in enumerate((0, 1, 2)):
        acd.call_arrived(f"c{i}", "q", f"1380000000{i}", now=t)
    acts = acd.request_callback("c1", None, now=5)
    assert of(acts, CallbackRegistered) == [CallbackRegistered("c1", "q", "13800000001", 2, 360)]
    assert of(acts, MusicOnHold)[0].on is False
    assert [acd.position(c) for c in ("c0", "c1", "c2")] == [1, 2, 3]
    assert acd.queue_figures("q", 6).waiting == 2
    acts = acd.agent_login("a", "1001", 10)
    assert offers(acts) == [("a", "c0")]
    acd.agent_answered("a", "c0", 10)
    acts = acd.call_ended("c0", 20)
    assert of(acts, CallbackDue) == [CallbackDue("c1", "a", "q", "13800000001", "1001")]
    assert offers(acts) == []
    acd.agent_answered("a", "c1", 25)
    acd.callback_connected("c1", 30)            # the customer answered
    acts = acd.call_ended("c1", 40)
    assert offers(acts) == [("a", "c2")]
    fig = acd.queue_figures("q", 40)
    assert (fig.callbacks_requested, fig.callbacks_completed, fig.abandoned) == (1, 1, 0)


def test_overflow_to_callback_keeps_the_place_too():
    acd = make(QueueConfig("q", wrapup_s=0.0, overflow=["wait>=60:callback"],
                           announce_first_s=None))
    acd.call_arrived("c0", "q", "010-1", now=0)
    acd.call_arrived("c1", "q", "010-2", now=30)
    acts = acd.tick(60)
    assert of(acts, Overflow)[0].target == Target("callback")
    assert acd.calls["c0"].state == "callback" and acd.position("c0") == 1
    acts = acd.agent_login("a", "1001", 61)
    assert of(acts, CallbackDue)[0].call == "c0"


# ---- announcements --------------------------------------------------------------------
def test_position_and_expected_wait_are_announced_at_the_configured_times():
    acd = make(QueueConfig("q", announce_first_s=30.0, announce_every_s=60.0,
                           default_aht_s=120.0))
    acd.agent_login("a", "1001", 0)
    acd.call_arrived("busy", "q", "", now=0)
    acd.agent_answered("a", "busy", 0)
    acts = acd.call_arrived("c1", "q", "", now=10)
    assert of(acts, CallQueued) == [CallQueued("c1", "q", 1, 120)]
    assert of(acts, MusicOnHold) == [MusicOnHold("c1", "q", "default", True)]
    acd.call_arrived("c2", "q", "", now=20)
    assert acd.tick(39) == []
    assert acd.tick(40) == [Announce("c1", "q", 1, 120)]
    assert acd.tick(50) == [Announce("c2", "q", 2, 240)]
    assert acd.tick(100) == [Announce("c1", "q", 1, 120)]
