"""Interoperability with openr2 1.3.3 as an independent far end over the simulated span.

openr2 runs on wrapped system calls (simulators/openr2_peer.py): the same CAS bits and
MF audio our stack produces, judged by someone else's implementation.

ITU variant: calls in both directions carry the ANI and the DNIS in full.
China variant: openr2 receives both from us, but as the calling side it never sends the
ANI: when our register asks for it (A1 after KA), openr2 1.3.3 reads A1 as "next DNIS
digit", has none left and stays silent (China has no end-of-DNIS signal); our register
takes the silence as "no ANI" after mf_back_cycle_ms, changes over to group B, and the
call completes with the DNIS and an empty ANI.
"""
import os

import pytest

from drivers.backends.base import PortInfo, PortKind, SpanInfo
from drivers.signaling import events as ev
from drivers.signaling.r2 import R2Options
from simulators.actors.r2_co import HostSide
from simulators.cards import VirtualCards
from simulators.world import World


@pytest.fixture(scope="module")
def openr2():
    """The openr2 peer module, building the cffi extension first if it is missing."""
    from simulators import openr2_peer
    if openr2_peer.available():
        import importlib
        import sys
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        sys.path.insert(0, os.path.join(root, "cffi_build"))
        try:
            import build_openr2
            build_openr2.build_in_place()
        finally:
            sys.path.pop(0)
        openr2_peer = importlib.reload(openr2_peer)
    assert openr2_peer.available() is None, openr2_peer.available()
    return openr2_peer


class Rig:
    def __init__(self, openr2, variant, channels=(1, 2), **peer_options):
        chans = list(channels)
        self.cards = VirtualCards([SpanInfo(1, "e1-1", "e1")],
                                  [PortInfo(c, 1, PortKind.E1) for c in chans])
        self.world = World(self.cards)
        self.peer = openr2.OpenR2Peer(self.world, chans, variant=variant, **peer_options).attach()
        self.host = HostSide(self.cards, chans, variant, options=R2Options())
        for line in self.host.lines.values():
            line.set_trace(True)
        self.run(5)

    def run(self, ticks):
        for _ in range(ticks):
            self.cards.next_tick()
            self.world.step(self.cards.tick)
            self.host.step(self.cards.tick)

    def until(self, done, limit=1500):
        for _ in range(limit):
            if done():
                return
            self.run(1)
        raise AssertionError(f"not reached in {limit} ticks; host: "
                             f"{[l.describe() for l in self.host.lines.values()]}; openr2: "
                             f"{[c.state for c in self.peer.channels.values()]}\n"
                             f"{self.peer.log_tail(30)}")

    def close(self):
        self.peer.close()


@pytest.mark.parametrize("variant", ["itu", "china"])
def test_we_call_openr2_with_ani_and_dnis(openr2, variant):
    rig = Rig(openr2, variant)
    try:
        rig.host.command(1, "dial", number="12345", ani="13812345678")
        rig.until(lambda: rig.host.of(1, ev.Answered))
        call = rig.peer.channel(1).calls[-1]
        assert (call.dnis, call.ani) == ("12345", "13812345678")
        assert call.category == openr2.lib.OR2_CALLING_PARTY_CATEGORY_NATIONAL_SUBSCRIBER
        assert [type(e).__name__ for e in rig.host.of(1)] == \
            ["DialComplete", "Proceeding", "Alerting", "Answered"]
        assert call.protocol_errors == []
        rig.host.command(1, "hangup")                  # clear forward; openr2 goes idle
        rig.until(lambda: rig.host.lines[1].state.value == "idle")
        rig.until(lambda: call.ended is not None)
        assert call.disconnect_cause == "normal" and call.protocol_errors == []
    finally:
        rig.close()


def test_openr2_calls_us_itu_with_ani_and_dnis(openr2):
    rig = Rig(openr2, "itu")
    try:
        rig.peer.channel(2).call("54321", "87654321")
        rig.until(lambda: rig.host.of(2, ev.Incoming))
        assert rig.host.of(2, ev.Incoming) == [ev.Incoming(ani="87654321", dnis="54321",
                                                           category="ordinary")]
        rig.host.command(2, "answer")
        call = rig.peer.channel(2).calls[-1]
        rig.until(lambda: call.answered is not None)
        assert call.accepted is not None and call.protocol_errors == []
        rig.peer.channel(2).hang_up()                  # openr2 clears forward
        rig.until(lambda: rig.host.of(2, ev.Cleared))
        assert rig.host.of(2, ev.Cleared)[0].cause == 16
        rig.until(lambda: rig.host.lines[2].state.value == "idle" and call.ended is not None)
    finally:
        rig.close()


def test_openr2_china_calls_us_dnis_only(openr2):
    rig = Rig(openr2, "china")
    try:
        rig.peer.channel(2).call("54321", "87654321")
        rig.until(lambda: rig.host.of(2, ev.Incoming))
        assert rig.host.of(2, ev.Incoming) == [ev.Incoming(ani="", dnis="54321",
                                                           category="ordinary")]
        trace = rig.host.lines[2].trace.format()
        assert "A-1 on: next_digit" in trace and "ANI '' ended by silence" in trace
        assert "Sending ANI digit" not in "\n".join(line for _, line in rig.peer.log)
        rig.host.command(2, "answer")
        call = rig.peer.channel(2).calls[-1]
        rig.until(lambda: call.answered is not None)
        rig.host.command(2, "hangup")                  # clear back; openr2 clears forward
        rig.until(lambda: rig.host.lines[2].state.value == "idle")
        assert call.protocol_errors == []
    finally:
        rig.close()


def test_openr2_refuses_our_call_busy(openr2):
    rig = Rig(openr2, "itu", channels=(1,), on_offered="busy")
    try:
        rig.host.command(1, "dial", number="777", ani="1")
        rig.until(lambda: rig.host.of(1, ev.Cleared))
        assert rig.host.of(1, ev.Cleared)[0].cause == 17
        rig.until(lambda: rig.host.lines[1].state.value == "idle")
        assert rig.peer.channel(1).calls[-1].dnis == "777"
    finally:
        rig.close()
