"""Our R2 stack against itself over the simulated span: CAS bits through the virtual cards,
compelled MF as audio through two media engines (the simulator's R2 office and a cardd
stand-in), ANI/DNIS/category and B-signals checked on both sides."""
import pytest

from drivers.backends.base import PortInfo, PortKind, SpanInfo
from drivers.signaling import events as ev
from drivers.signaling.r2 import R2Options
from simulators.actors.r2_co import HostSide, R2Office
from simulators.cards import VirtualCards
from simulators.world import World


class Rig:
    def __init__(self, variant="china", channels=(1, 2), options=None, max_dnis=None):
        chans = list(channels)
        self.cards = VirtualCards([SpanInfo(1, "e1-1", "e1")],
                                  [PortInfo(c, 1, PortKind.E1) for c in chans])
        self.world = World(self.cards)
        self.office = R2Office(self.world, chans, variant, options).attach()
        self.host = HostSide(self.cards, chans, variant,
                             options=R2Options(max_dnis=max_dnis))
        self.run(3)

    def run(self, ticks):
        for _ in range(ticks):
            self.cards.next_tick()
            self.world.step(self.cards.tick)
            self.host.step(self.cards.tick)

    def until(self, done, limit=1500):
        for _ in range(limit):
            if done():
                return self.cards.tick
            self.run(1)
        raise AssertionError(f"not reached in {limit} ticks; host: "
                             f"{[l.describe() for l in self.host.lines.values()]}; office: "
                             f"{[t.describe() for t in self.office.trunks.values()]}")

    def host_kinds(self, ch):
        return [type(e).__name__ for e in self.host.of(ch)]

    def idle(self, ch):
        return self.host.lines[ch].state.value == "idle" and \
            self.office.trunk(ch).line.state.value == "idle"


def test_inbound_china_with_ani_dnis_and_category_then_clear_forward():
    rig = Rig("china", max_dnis=5)
    trunk = rig.office.trunk(1)
    trunk.call("12345", "13812345678", category="priority")
    rig.until(lambda: rig.host.of(1, ev.Incoming))
    assert rig.host.of(1, ev.Incoming) == [ev.Incoming(ani="13812345678", dnis="12345",
                                                       category="priority")]
    rig.host.command(1, "answer")
    rig.until(lambda: trunk.current.answered is not None)
    assert rig.host_kinds(1) == ["Incoming", "Answered"]
    assert [name for _, name in trunk.current.events] == \
        ["DialComplete", "Proceeding", "Alerting", "Answered"]
    trunk.hang_up()                                   # the caller clears forward
    rig.until(lambda: rig.idle(1))
    assert rig.host.of(1, ev.Cleared) == [ev.Cleared(16, "caller hung up (clear forward)")]


def test_outbound_china_with_ani_dnis_and_category_then_clear_back():
    rig = Rig("china", options={2: {"on_incoming": "answer", "answer_after": 1.0}})
    trunk = rig.office.trunk(2)
    rig.host.command(2, "dial", number="55501", ani="87654321", category="ordinary")
    rig.until(lambda: rig.host.of(2, ev.Answered))
    assert rig.host_kinds(2) == ["DialComplete", "Proceeding", "Alerting", "Answered"]
    call = trunk.current
    assert (call.dnis, call.ani, call.category) == ("55501", "87654321", "ordinary")
    alerting = next(t for t, ch, e in rig.host.events if isinstance(e, ev.Alerting))
    answered = next(t for t, ch, e in rig.host.events if isinstance(e, ev.Answered))
    assert 45 <= answered - alerting <= 60            # rang for answer_after (1 s = 50 ticks)
    trunk.hang_up()                                   # the called party clears back
    rig.until(lambda: rig.idle(2))
    assert rig.host.of(2, ev.Cleared) == [ev.Cleared(16, "far end hung up (clear back)")]


@pytest.mark.parametrize("refusal, cause", [("busy", 17), ("unallocated", 1),
                                            ("congestion", 42)])
def test_outbound_refused_with_b_signals(refusal, cause):
    rig = Rig("china", channels=(1,), options={1: {"on_incoming": "reject",
                                                   "reject_with": refusal}})
    rig.host.command(1, "dial", number="66601", ani="1")
    rig.until(lambda: rig.host.of(1, ev.Cleared))
    assert rig.host.of(1, ev.Cleared)[0].cause == cause
    assert rig.office.trunk(1).current.dnis == "66601"
    rig.until(lambda: rig.idle(1))


def test_inbound_refused_busy_by_the_application():
    rig = Rig("china", channels=(1,), max_dnis=4)
    trunk = rig.office.trunk(1)
    trunk.call("8001", "02087654321")
    rig.until(lambda: rig.host.of(1, ev.Incoming))
    rig.host.command(1, "hangup", cause=17)
    rig.until(lambda: rig.idle(1))
    assert trunk.current.cause == 17 and trunk.current.reason == "subscriber busy"
    assert rig.host.of(1, ev.Cleared) == [ev.Cleared(17, "refused")]


def test_caller_abandons_while_ringing_and_host_clears_back_when_connected():
    rig = Rig("china", channels=(1, 2), max_dnis=3)
    t1, t2 = rig.office.trunk(1), rig.office.trunk(2)
    t1.call("123", "555")
    rig.until(lambda: t1.check("ringing"))            # accepted by the line after accept_ms
    assert rig.host.lines[1].wire_state == "RINGING"
    t1.hang_up()
    rig.until(lambda: rig.idle(1))
    assert rig.host.of(1, ev.Cleared)[0].reason == "caller hung up (clear forward)"
    t2.call("456", "777")
    rig.until(lambda: rig.host.of(2, ev.Incoming))
    rig.host.command(2, "answer")
    rig.until(lambda: t2.check("connected"))
    rig.host.command(2, "hangup")                     # clear back; the office clears forward
    rig.until(lambda: rig.idle(2))
    assert t2.current.reason == "far end hung up (clear back)"


def test_itu_both_directions_on_one_channel():
    rig = Rig("itu", channels=(1,))
    trunk = rig.office.trunk(1)
    trunk.call("4711", "3012345")
    rig.until(lambda: rig.host.of(1, ev.Incoming))
    assert rig.host.of(1, ev.Incoming) == [ev.Incoming(ani="3012345", dnis="4711",
                                                       category="ordinary")]
    rig.host.command(1, "answer")
    rig.until(lambda: trunk.check("connected"))
    rig.host.command(1, "hangup")
    rig.until(lambda: rig.idle(1))
    rig.host.command(1, "dial", number="99", ani="", presentation="restricted")
    rig.until(lambda: len(rig.host.of(1, ev.Answered)) == 2)
    assert (trunk.current.dnis, trunk.current.ani) == ("99", "")   # I-12: withheld


def test_host_trace_of_a_simulated_call():
    rig = Rig("china", channels=(1,), max_dnis=2)
    line = rig.host.lines[1]
    line.set_trace(True)
    rig.office.trunk(1).call("12", "34")
    rig.until(lambda: rig.host.of(1, ev.Incoming))
    rig.host.command(1, "hangup", cause=17)
    rig.until(lambda: rig.idle(1))
    trace = line.traces[-1]
    text = trace.format()
    assert "I-1 (DNIS digit 1) on" in text and "A-6 on: category" in text
    assert "I-15 (end of ANI) on" in text and "B-2 on: busy" in text
    ticks = [e.tick for e in trace.entries]
    assert ticks == sorted(ticks) and trace.ended >= ticks[-1]
