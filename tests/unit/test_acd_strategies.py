"""ACD strategies and skills: each strategy offers the call to the agent it should."""
from ctid.acd import Acd, AcdConfig, CancelOffer, OfferCall, QueueConfig


def make(strategy, agents=("a", "b", "c"), agent_skills=None, **queue):
    acd = Acd([QueueConfig("q", strategy=strategy, wrapup_s=0.0, announce_first_s=None,
                           moh=None, **queue)], AcdConfig(figures_every_s=None))
    for aid in agents:
        acd.add_agent(aid, (agent_skills or {}).get(aid))
    return acd


def login_all(acd, agents, t0=0.0):
    for i, aid in enumerate(agents):
        acd.agent_login(aid, f"10{i}", t0 + i)


def offers(acts):
    return [a.agent for a in acts if isinstance(a, OfferCall)]


def serve(acd, agent, call, t_answer, t_end):
    acd.agent_answered(agent, call, t_answer)
    return acd.call_ended(call, t_end)


def test_longest_idle_picks_the_agent_available_longest():
    acd = make("longest_idle")
    login_all(acd, "abc")                       # ready at t=0, 1, 2
    assert offers(acd.call_arrived("c1", "q", "", now=10)) == ["a"]
    serve(acd, "a", "c1", 11, 20)               # a idle again from t=20
    assert offers(acd.call_arrived("c2", "q", "", now=21)) == ["b"]
    assert offers(acd.call_arrived("c3", "q", "", now=22)) == ["c"]


def test_fewest_calls_picks_the_agent_with_fewest_answered_calls():
    acd = make("fewest_calls")
    login_all(acd, "abc")
    # a takes two calls, b one, c none; c then becomes the most recently ready.
    acd.set_not_ready("b", 3)
    acd.set_not_ready("c", 3)
    for i, t in enumerate((10, 20)):
        assert offers(acd.call_arrived(f"x{i}", "q", "", now=t)) == ["a"]
        serve(acd, "a", f"x{i}", t, t + 1)
    acd.set_ready("b", 30)
    acd.set_not_ready("a", 30)
    assert offers(acd.call_arrived("y", "q", "", now=31)) == ["b"]
    serve(acd, "b", "y", 31, 32)
    acd.set_ready("a", 40)
    acd.set_ready("c", 50)
    assert offers(acd.call_arrived("z", "q", "", now=60)) == ["c"]
    assert offers(acd.call_arrived("w", "q", "", now=61)) == ["b"]


def test_least_talk_time_picks_the_agent_who_talked_least():
    acd = make("least_talk_time")
    login_all(acd, "abc")
    talk = {"a": 100, "b": 30, "c": 60}
    t = 10.0
    for aid in "abc":
        for other in "abc":
            if other != aid:
                acd.set_not_ready(other, t)
        call = f"call-{aid}"
        assert offers(acd.call_arrived(call, "q", "", now=t)) == [aid]
        serve(acd, aid, call, t, t + talk[aid])
        t += talk[aid] + 1
        for other in "abc":
            if other != aid:
                acd.set_ready(other, t)
    # b is the most recently ready of the three (longest idle would not pick b)
    assert offers(acd.call_arrived("n1", "q", "", now=t + 5)) == ["b"]
    assert offers(acd.call_arrived("n2", "q", "", now=t + 6)) == ["c"]


def test_round_robin_gives_the_turn_to_whoever_this_queue_served_least_recently():
    acd = make("round_robin")
    login_all(acd, "abc")
    assert offers(acd.call_arrived("c1", "q", "", now=10)) == ["a"]
    serve(acd, "a", "c1", 10, 11)
    assert offers(acd.call_arrived("c2", "q", "", now=12)) == ["b"]
    serve(acd, "b", "c2", 12, 13)
    # c takes a break and comes back: its idle time restarts, its turn does not.
    acd.set_not_ready("c", 14)
    acd.set_ready("c", 15)
    assert offers(acd.call_arrived("c3", "q", "", now=16)) == ["c"]
    serve(acd, "c", "c3", 16, 17)
    assert offers(acd.call_arrived("c4", "q", "", now=18)) == ["a"]


def test_linear_always_hunts_from_the_top_of_the_member_list():
    acd = make("linear", members=("c", "a", "b"))
    login_all(acd, "abc")
    assert offers(acd.call_arrived("c1", "q", "", now=10)) == ["c"]
    acd.agent_answered("c", "c1", 10)
    assert offers(acd.call_arrived("c2", "q", "", now=11)) == ["a"]
    acd.call_ended("c1", 12)
    assert offers(acd.call_arrived("c3", "q", "", now=13)) == ["c"]


def _random_picks(seed, n=300):
    acd = Acd([QueueConfig("q", strategy="random", announce_first_s=None, moh=None)],
              AcdConfig(seed=seed, figures_every_s=None))
    for aid in "abc":
        acd.add_agent(aid)
    login_all(acd, "abc")
    picks = []
    for i in range(n):
        picks += offers(acd.call_arrived(f"c{i}", "q", "", now=10 + i))
        acd.call_abandoned(f"c{i}", 10 + i)
    return picks


def test_random_is_seeded_and_spreads_calls():
    p1, p2, p3 = _random_picks(7), _random_picks(7), _random_picks(8)
    assert p1 == p2
    assert p1 != p3
    for aid in "abc":
        assert 60 <= p1.count(aid) <= 140


def test_ring_all_rings_every_idle_member_and_the_first_answer_wins():
    acd = make("ring_all")
    login_all(acd, "abc")
    acts = acd.call_arrived("c1", "q", "", now=10)
    assert sorted(offers(acts)) == ["a", "b", "c"]
    acts = acd.agent_answered("b", "c1", 12)
    cancelled = sorted(a.agent for a in acts if isinstance(a, CancelOffer))
    assert cancelled == ["a", "c"]
    assert acd.agents["b"].state == "busy"
    assert acd.agents["a"].state == "ready" and acd.agents["c"].state == "ready"
    assert sorted(offers(acd.call_arrived("c2", "q", "", now=13))) == ["a", "c"]


def test_ring_all_timeout_rings_again_without_penalty():
    acd = make("ring_all", rona_s=15.0)
    login_all(acd, "ab")
    acd.call_arrived("c1", "q", "", now=10)
    acts = acd.tick(25)
    assert sorted(offers(acts)) == ["a", "b"]
    assert {acd.agents[x].state for x in "ab"} == {"reserved"}


def test_skill_weighted_prefers_the_most_skilled_agent():
    skills = {"a": {"billing": 3}, "b": {"billing": 9}, "c": {"billing": 5}}
    acd = make("skill_weighted", agent_skills=skills, skills={"billing": 1})
    login_all(acd, "abc")
    assert offers(acd.call_arrived("c1", "q", "", now=10)) == ["b"]
    assert offers(acd.call_arrived("c2", "q", "", now=11)) == ["c"]
    assert offers(acd.call_arrived("c3", "q", "", now=12)) == ["a"]


def test_skill_level_below_the_minimum_keeps_an_agent_out_until_trained():
    acd = Acd([QueueConfig("vip", skills={"mandarin": 5}, announce_first_s=None, moh=None)],
              AcdConfig(figures_every_s=None))
    acd.add_agent("novice", {"mandarin": 4})
    acd.agent_login("novice", "2001", 0)
    assert "vip" not in acd.agents["novice"].memberships
    acts = acd.call_arrived("c1", "vip", "", now=1)
    assert offers(acts) == []
    acts = acd.set_skills("novice", {"mandarin": 5}, 2)
    assert offers(acts) == ["novice"]


def test_agent_in_several_queues_takes_the_most_senior_head_call():
    acd = Acd([QueueConfig("A", announce_first_s=None, moh=None),
               QueueConfig("B", announce_first_s=None, moh=None)],
              AcdConfig(figures_every_s=None))
    acd.add_agent("a")
    acd.call_arrived("b1", "B", "", now=0)
    acd.call_arrived("a1", "A", "", now=1)
    acd.call_arrived("a2", "A", "", priority="vip", now=2)
    acts = acd.agent_login("a", "1000", 3)
    assert [(o.call, o.queue) for o in acts if isinstance(o, OfferCall)] == [("a2", "A")]
