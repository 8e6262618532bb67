"""Random event storms against the ACD: only clear AcdErrors, and its invariants hold.

A seeded random driver throws valid and invalid calls in any order (answers for calls
never offered, unknown agents, time going backwards, transfers of waiting calls...).
After every step the structures must agree with each other: no caller waits in a queue
that has an idle member, every reserved agent points at a call offered to them, etc.
"""
import random

import pytest

from ctid.acd import Acd, AcdConfig, AcdError, CallbackDue, OfferCall, QueueConfig
from ctid.acd.agent import OFFERED, ON_CALL, READY, WORKING


def check_invariants(acd: Acd) -> None:
    for q in acd.queues.values():
        if q.waiting:
            assert len(q.index) == 0, f"{q.name}: callers wait while members are idle"
        assert q.waiting == sorted(q.waiting)
        live = 0
        for key in q.waiting:
            c = acd.calls[key[-1]]
            assert c.queue is q and c.key == key and c.state in ("waiting", "callback")
            live += c.state == "waiting"
        assert live == q.live_waiting
        for cid in q.sticky:
            assert acd.calls[cid].state == "sticky" and acd.calls[cid].queue is q
        assert q.staffed == sum(acd.agents[a].state in WORKING for a in q.members)
    for a in acd.agents.values():
        for name, m in a.memberships.items():
            assert (a.id in m.queue.index) == (a.state == READY), (a.id, a.state, name)
        if a.state in OFFERED:
            c = acd.calls[a.offered_call]
            assert c.state == "offered" and a.id in c.agents
        else:
            assert a.offered_call is None
        if a.state in ON_CALL and a.call is not None:
            c = acd.calls[a.call]
            assert c.state in ("connected", "dialling") and c.agent == a.id
        if a.state not in ON_CALL:
            assert a.call is None
        if a.state == "logged_off":
            assert a.extension == ""
        else:
            assert acd.by_extension[a.extension] == a.id
    for c in acd.calls.values():
        if c.state == "offered":
            assert c.agents and all(acd.agents[i].offered_call == c.id for i in c.agents)
        if c.state in ("connected", "dialling") and c.agent is not None:
            assert acd.agents[c.agent].call == c.id
        if c.state in ("callback", "offered", "dialling", "callback_retry") and c.callback:
            assert c.cb_attempts <= c.queue.cfg.callback_retries
        if c.state == "callback_retry":     # out of the list until its retry timer fires
            assert c.key not in c.queue.waiting and not c.agents and c.agent is None
        if c.state in ("dialling", "callback_retry", "callback"):
            assert c.callback
    for q in acd.queues.values():
        s = q.stats
        pending = sum(1 for c in acd.calls.values() if c.queue is q and c.callback
                      and c.state != "connected")
        assert q.callbacks_pending == pending, q.name
        assert s.callbacks_requested == s.callbacks_completed + s.callbacks_abandoned + pending


QUEUES = [
    QueueConfig("sales", strategy="longest_idle", skills={"sales": 1}, wrapup_s=5.0,
                rona_s=8.0, sticky_wait_s=10.0, overflow=["wait>=40:queue:support"],
                announce_first_s=5.0, announce_every_s=7.0, callback_retries=1,
                callback_retry_s=4.0),
    QueueConfig("support", strategy="ring_all", wrapup_s=0.0, rona_s=6.0,
                overflow=["length>=3:callback"], max_wait_s=60.0, callback_retry_s=2.0),
    QueueConfig("vip", strategy="skill_weighted", skills={"vip": 3}, wrapup_s=12.0,
                rona_s=5.0, priority_step_s=None, max_wait_s=30.0,
                max_wait_target="queue:sales"),
    QueueConfig("care", strategy="round_robin", care_line=True, wrapup_s=3.0, rona_s=7.0,
                overflow=["wait>=20:voicemail:1"]),
    QueueConfig("rand", strategy="random", skills={"sales": 2}, wrapup_s=1.0, rona_s=4.0),
]
AGENTS = {"a": {"sales": 3, "vip": 5}, "b": {"sales": 1}, "c": {"vip": 9},
          "d": {}, "e": {"sales": 5, "vip": 3}, "f": {"sales": 2}}


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_random_storm_keeps_invariants_and_raises_only_acd_errors(seed):
    rng = random.Random(seed)
    acd = Acd(QUEUES, AcdConfig(seed=seed, figures_every_s=15.0, reconcile_grace_s=2.0))
    for aid, sk in AGENTS.items():
        acd.add_agent(aid, sk)
    agents = list(AGENTS) + ["ghost"]
    queues = [q.name for q in QUEUES] + ["nowhere"]
    callers = ["", "111", "222", "333"]
    now = 0.0
    n_calls = 0
    offered_seen = 0
    errors = 0
    callback_moves = {"fail": 0, "retry": 0, "connect": 0}

    def pick_call():
        pool = list(acd.calls) + ["c0", "zz"]
        return rng.choice(pool)

    ops = ["arrive"] * 6 + ["answer"] * 6 + ["end"] * 4 + ["abandon", "noanswer", "ring",
           "login", "login", "logout", "ready", "ready", "notready", "hold", "retrieve",
           "transfer", "callback", "callback", "callback", "force", "reconcile", "supervise",
           "tick", "tick",
           "skills", "cbfail", "cbfail", "cbconnect", "cbconnect", "backwards"]
    for step in range(1500):
        op = rng.choice(ops)
        now += rng.choice((0.0, 0.5, 1.0, 3.0))
        a = rng.choice(agents)
        try:
            if op == "arrive":
                n_calls += 1
                acts = acd.call_arrived(f"c{n_calls}", rng.choice(queues), rng.choice(callers),
                                        rng.choice([None, None, 0, 5, "vip", "bogus", 42]),
                                        rng.choice([None, {"tier": "gold"}, {"age": 80}]), now)
            elif op == "answer":
                # mostly answer real offers, sometimes nonsense
                offers = [(x.id, x.offered_call) for x in acd.agents.values() if x.offered_call]
                if offers and rng.random() < 0.8:
                    acts = acd.agent_answered(*rng.choice(offers), now)
                else:
                    acts = acd.agent_answered(a, pick_call(), now)
            elif op == "end":
                acts = acd.call_ended(pick_call(), now)
            elif op == "abandon":
                acts = acd.call_abandoned(pick_call(), now)
            elif op == "noanswer":
                acts = acd.agent_no_answer(a, pick_call(), now)
            elif op == "ring":
                acts = acd.agent_ringing(a, pick_call(), now)
            elif op == "login":
                acts = acd.agent_login(a, rng.choice(["100", "101", "102", "103", "104", "105"]),
                                       now, ready=rng.random() < 0.8)
            elif op == "logout":
                acts = acd.agent_logout(a, now)
            elif op == "ready":
                acts = acd.set_ready(a, now)
            elif op == "notready":
                acts = acd.set_not_ready(a, now, rng.choice(["break", "lunch", ""]))
            elif op == "hold":
                acts = acd.agent_hold(a, now)
            elif op == "retrieve":
                acts = acd.agent_retrieve(a, now)
            elif op == "transfer":
                acts = acd.call_transferred(pick_call(), now,
                                            **rng.choice([{"to_agent": a}, {"to_queue": rng.choice(queues)}, {}]))
            elif op == "callback":
                waiting = [c.id for c in acd.calls.values() if c.state in ("waiting", "sticky")]
                cid = rng.choice(waiting) if waiting and rng.random() < 0.8 else pick_call()
                acts = acd.request_callback(cid, rng.choice([None, "138"]), now)
            elif op in ("cbfail", "cbconnect"):
                # mostly callbacks being placed, sometimes any call
                placing = [c.id for c in acd.calls.values() if c.callback and c.state in
                           (("offered", "dialling") if op == "cbfail" else ("dialling",))]
                cid = rng.choice(placing) if placing and rng.random() < 0.8 else pick_call()
                if op == "cbfail":
                    acts = acd.callback_failed(cid, now, rng.choice(["busy", "no answer", ""]))
                    callback_moves["fail"] += 1
                else:
                    acts = acd.callback_connected(cid, now)
                    callback_moves["connect"] += 1
            elif op == "force":
                acts = acd.force_state(a, rng.choice(["ready", "not_ready", "logged_off", "busy"]),
                                       now, by="sup")
            elif op == "reconcile":
                acts = acd.reconcile({ext: rng.choice(["idle", "ringing", "connected"])
                                      for ext in ("100", "101", "102", "103")}, now)
            elif op == "supervise":
                acts = acd.supervise("sup", a, rng.choice(["listen", "barge", "x"]), now)
            elif op == "skills":
                acts = acd.set_skills(a, rng.choice(list(AGENTS.values()) + [{"vip": 0}]), now)
            elif op == "backwards":
                acts = acd.tick(now - 10)
            else:
                acts = acd.tick(now)
            offered_seen += sum(isinstance(x, OfferCall) for x in acts)
            callback_moves["retry"] += sum(isinstance(x, CallbackDue) and x.attempt > 1
                                           for x in acts)
        except AcdError:
            errors += 1
        try:
            check_invariants(acd)
        except AssertionError as e:
            raise AssertionError(f"after step {step} op {op} agent {a}: {e}") from None
    assert offered_seen > 20 and errors > 50       # the storm did exercise both sides
    assert acd.log.events("CALLBACK_RETRY") and acd.log.events("CALLBACK_CONNECT"), callback_moves
