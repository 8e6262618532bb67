"""ACD statistics: the queue log and live figures on a small hand-made trace."""
import pytest

from ctid.acd import Acd, AcdConfig, QueueConfig, QueueFigures, QueueLog


def trace():
    """Two agents, wrap-up 10 s, SL threshold 20 s.

    c1 waits 0 s, talks 60     c2 waits 5 s, talks 30     c3 waits 35 s, talks 40
    c4 abandons after 25 s     c5 waits 15 s, talks 20    c6 still waiting at the end
    """
    log = QueueLog()
    acd = Acd([QueueConfig("q", wrapup_s=10.0, sl_threshold_s=20.0, announce_first_s=None)],
              AcdConfig(figures_every_s=None), log=log)
    for aid in ("a", "b"):
        acd.add_agent(aid)
    acd.agent_login("a", "1001", 0)
    acd.call_arrived("c1", "q", "", now=0)                   # -> a
    acd.agent_answered("a", "c1", 0)
    acd.call_arrived("c2", "q", "", now=10)                  # waits
    acd.agent_login("b", "1002", 15)                         # -> b takes c2 (waited 5)
    acd.agent_answered("b", "c2", 15)
    acd.call_arrived("c3", "q", "", now=20)                  # waits
    acd.call_arrived("c4", "q", "", now=25)                  # waits
    acd.call_ended("c2", 45)                                 # b wraps up until 55
    acd.call_abandoned("c4", 50)                             # waited 25
    acd.tick(55)                                             # b ready -> c3 (waited 35)
    acd.agent_answered("b", "c3", 55)
    acd.call_ended("c1", 60)                                 # a wraps up until 70
    acd.call_arrived("c5", "q", "", now=62)
    acd.tick(77)                                             # a ready at 70 -> c5 (waited 8)
    acd.agent_answered("a", "c5", 77)                        # answered after 15 s
    acd.call_ended("c3", 95)                                 # b wrap-up until 105
    acd.call_ended("c5", 97)                                 # a wrap-up until 107
    acd.call_arrived("c6", "q", "", now=100)
    return acd, log


def test_live_figures_on_a_hand_made_trace():
    acd, _ = trace()
    acd.tick(106)                                            # b ready: takes c6
    fig = acd.queue_figures("q", 106)
    assert isinstance(fig, QueueFigures)
    assert (fig.offered, fig.answered, fig.abandoned, fig.answered_within_sl) == (5, 4, 1, 3)
    assert fig.service_level == pytest.approx(3 / 5)
    assert fig.asa_s == pytest.approx((0 + 5 + 35 + 15) / 4)
    assert fig.abandon_rate == pytest.approx(1 / 5)
    # handled: c2 (30+10), c1 (60+10), c3 (40+10); c5's wrap-up is still running
    assert fig.aht_s == pytest.approx((30 + 10 + 60 + 10 + 40 + 10) / 3)
    acd.tick(107)
    assert acd.queue_figures("q", 107).aht_s == pytest.approx((160 + 20 + 10) / 4)


def test_waiting_longest_wait_and_agents_by_state():
    acd, _ = trace()
    fig = acd.queue_figures("q", 104)
    assert fig.waiting == 1 and fig.longest_wait_s == pytest.approx(4)
    assert fig.agents["after_call_work"] == 2 and fig.agents["ready"] == 0
    assert fig.staffed == 2


def test_the_log_records_every_transition_in_order():
    _, log = trace()
    calls = [(r.event, r.call) for r in log.records if r.event != "AGENT_STATE"
             and r.event not in ("AGENTLOGIN", "OFFER")]
    assert calls[:8] == [("ENTERQUEUE", "c1"), ("CONNECT", "c1"), ("ENTERQUEUE", "c2"),
                         ("CONNECT", "c2"), ("ENTERQUEUE", "c3"), ("ENTERQUEUE", "c4"),
                         ("COMPLETE", "c2"), ("ABANDON", "c4")]
    ab = log.events("ABANDON")[0]
    assert ab.data == {"position": 2, "wait_s": 25} and ab.queue == "q" and ab.time == 50
    conn = log.events("CONNECT", call="c3")[0]
    assert (conn.agent, conn.data["wait_s"]) == ("b", 35)
    states = [(r.data["from"], r.data["to"]) for r in log.events("AGENT_STATE", agent="b")]
    assert states[:6] == [("logged_off", "not_ready"), ("not_ready", "ready"),
                          ("ready", "reserved"), ("reserved", "busy"),
                          ("busy", "after_call_work"), ("after_call_work", "ready")]
    row = ab.row()
    assert set(row) == {"time", "queue", "call", "agent", "event", "data"}
    times = [r.time for r in log.records]
    assert times == sorted(times)


def test_drain_hands_records_over_once():
    _, log = trace()
    n = len(log.records)
    assert len(log.drain()) == n and log.drain() == [] and log.count == n


def test_figures_are_emitted_by_tick_at_the_configured_interval():
    acd = Acd([QueueConfig("q"), QueueConfig("r")], AcdConfig(figures_every_s=10.0))
    assert acd.tick(0) == []
    assert acd.tick(9) == []
    out = acd.tick(10)
    assert [f.queue for f in out] == ["q", "r"] and all(f.offered == 0 for f in out)
