"""libpri binding: a network-side and a CPE-side PriLink wired back to back in one process.

Frames travel through in-memory queues; time is simulated (10 ms steps) and handed to
both links, so every timer fires at an exact simulated instant.
"""
from __future__ import annotations

import collections
import random
import time

import pytest

from drivers.native import libpri as P

STEP = 0.01


class BackToBack:
    """Two links, one queue per direction, one simulated clock."""

    def __init__(self, switch: str = "euroisdn_e1", **kwargs):
        self.to_net: collections.deque[bytes] = collections.deque()
        self.to_cpe: collections.deque[bytes] = collections.deque()
        self.now = 0.0
        self.wire_log: list[tuple[str, bytes]] = []
        self.net = P.PriLink("network", switch, self._from_net, name="net", **kwargs)
        self.cpe = P.PriLink("cpe", switch, self._from_cpe, name="cpe", **kwargs)
        self.events: dict[str, list[P.PriEvent]] = {"net": [], "cpe": []}

    def _from_net(self, frame: bytes) -> None:
        self.wire_log.append(("net", frame))
        self.to_cpe.append(frame)

    def _from_cpe(self, frame: bytes) -> None:
        self.wire_log.append(("cpe", frame))
        self.to_net.append(frame)

    def step(self, dt: float = STEP) -> dict[str, list[P.PriEvent]]:
        """Deliver every queued frame, then advance the clock by dt and run timers."""
        out: dict[str, list[P.PriEvent]] = {"net": [], "cpe": []}
        while self.to_net or self.to_cpe:
            while self.to_net:
                out["net"] += self.net.receive_frame(self.to_net.popleft())
            while self.to_cpe:
                out["cpe"] += self.cpe.receive_frame(self.to_cpe.popleft())
        self.now += dt
        out["net"] += self.net.run_timers(self.now)
        out["cpe"] += self.cpe.run_timers(self.now)
        for side in out:
            self.events[side] += out[side]
        return out

    def run(self, seconds: float) -> dict[str, list[P.PriEvent]]:
        total: dict[str, list[P.PriEvent]] = {"net": [], "cpe": []}
        for _ in range(int(round(seconds / STEP))):
            out = self.step()
            total["net"] += out["net"]
            total["cpe"] += out["cpe"]
        return total

    def wait_for(self, side: str, kind: type, limit: float = 5.0) -> P.PriEvent:
        """Step until `side` reports an event of `kind`; return it."""
        deadline = self.now + limit
        while self.now < deadline:
            for ev in self.step()[side]:
                if isinstance(ev, kind):
                    return ev
        raise AssertionError(f"{side} saw no {kind.__name__} within {limit}s: "
                             f"{self.events[side][-5:]}")


def only(events, kind):
    found = [e for e in events if isinstance(e, kind)]
    assert len(found) == 1, events
    return found[0]


@pytest.fixture
def wire() -> BackToBack:
    w = BackToBack()
    w.wait_for("net", P.DchanUp)
    w.run(0.05)
    assert any(isinstance(e, P.DchanUp) for e in w.events["cpe"])
    return w


def test_dchannel_comes_up_on_both_sides():
    w = BackToBack()
    out = w.step()
    assert any(isinstance(e, P.DchanUp) for e in out["net"])
    assert any(isinstance(e, P.DchanUp) for e in out["cpe"])
    # Q.921 keeps the link alive with T203 (10 s) on the caller's clock: no event, no loss.
    assert not any(isinstance(e, P.DchanDown) for side in w.run(60.0).values() for e in side)
    # Frames leave without the 2 FCS bytes: a SABME is address (2) + control (1).
    first_net = next(f for side, f in w.wire_log if side == "net")
    assert len(first_net) == 3 and first_net[2] & 0xEF == 0x6F


def test_network_call_to_cpe_answered_then_cleared_with_cause_16(wire):
    net, cpe = wire.net, wire.cpe
    call = net.new_call()
    net.setup(call, 5, True, called="8001", calling="13800138000",
              called_ton="subscriber", called_plan="isdn",
              calling_ton="national", calling_plan="isdn",
              calling_presentation="restricted", calling_screening="network",
              calling_name="ZHANG SAN", redirecting="01087654321",
              redirecting_ton="national", redirecting_reason="busy")
    ring = wire.wait_for("cpe", P.Ring)
    assert (ring.channel, ring.exclusive, ring.complete) == (5, True, True)
    assert ring.called_number == "8001"
    assert (ring.called_ton, ring.called_plan) == ("subscriber", "isdn")
    assert ring.calling_number == "13800138000"
    assert (ring.calling_ton, ring.calling_plan) == ("national", "isdn")
    assert (ring.calling_presentation, ring.calling_screening) == ("restricted", "network")
    assert ring.redirecting_number == "01087654321"
    assert ring.redirecting_reason == "busy"
    assert ring.bearer == "speech"
    assert ring.call.incoming and not ring.call.ended

    cpe.proceeding(ring.call, 5)
    assert wire.wait_for("net", P.Proceeding).call is call
    cpe.alerting(ring.call, 5, inband=True)
    ringing = wire.wait_for("net", P.Ringing)
    assert ringing.call is call and ringing.inband
    cpe.answer(ring.call, 5)
    answer = wire.wait_for("net", P.Answer)
    assert answer.call is call and answer.channel == 5

    cpe.hangup(ring.call, 16)
    req = wire.wait_for("net", P.HangupReq)
    assert (req.call, req.cause) == (call, 16)
    net.hangup(call, 16)      # RELEASE; the CPE answers RELEASE COMPLETE
    wire.run(0.1)
    assert only(wire.events["cpe"], P.Hangup).cause == 16
    assert only(wire.events["net"], P.HangupAck).call is call
    assert call.ended and ring.call.ended
    assert net.active_calls() == 0 and cpe.active_calls() == 0
    # Clearing an ended call again is harmless; anything else on it is refused.
    assert net.hangup(call, 16) is False
    with pytest.raises(P.PriError, match="has ended"):
        net.answer(call, 5)


def test_cpe_call_rejected_user_busy_cause_17(wire):
    net, cpe = wire.net, wire.cpe
    call = cpe.new_call()
    cpe.setup(call, None, False, called="95566", calling="02161234567",
              calling_ton="national")
    ring = wire.wait_for("net", P.Ring)
    assert ring.channel is None and not ring.exclusive
    net.hangup(ring.call, P_USER_BUSY)
    req = wire.wait_for("cpe", P.HangupReq)
    assert (req.call, req.cause) == (call, 17)
    assert P.cause_text(req.cause) == "User busy"
    cpe.hangup(call, 16)
    wire.run(0.1)
    assert only(wire.events["net"], P.Hangup).call is ring.call
    assert call.ended and ring.call.ended
    assert net.active_calls() == 0 and cpe.active_calls() == 0


P_USER_BUSY = 17


def test_caller_clears_before_the_call_is_answered(wire):
    net, cpe = wire.net, wire.cpe
    # Cleared at once, before the network side has said anything about the SETUP.
    call = cpe.new_call()
    cpe.setup(call, 1, True, called="95566", calling="8001")
    cpe.hangup(call, 16)
    wire.run(0.1)
    ring = only(wire.events["net"], P.Ring)
    hangup = only(wire.events["net"], P.Hangup)
    assert hangup.call is ring.call and hangup.cause == 16 and ring.call.ended
    assert call.ended
    # Cleared while ringing.
    call = net.new_call()
    net.setup(call, 2, True, called="8001", calling="8002")
    ring = wire.wait_for("cpe", P.Ring)
    cpe.alerting(ring.call, 2)
    wire.wait_for("net", P.Ringing)
    net.hangup(call, 16)
    cpe.hangup(wire.wait_for("cpe", P.HangupReq).call, 16)
    wire.run(0.1)
    assert call.ended and ring.call.ended
    assert net.active_calls() == 0 and cpe.active_calls() == 0


def test_restart_is_acknowledged(wire):
    wire.cpe.restart(7)
    wire.run(0.05)
    assert only(wire.events["net"], P.Restart).channel == 7
    assert only(wire.events["cpe"], P.RestartAck).channel == 7
    # The whole interface: one RESTART per B-channel, each sent when the last is acked.
    wire.net.restart()
    wire.run(0.5)
    acked = [e.channel for e in wire.events["net"] if isinstance(e, P.RestartAck)]
    assert acked == [*range(1, 16), *range(17, 32)]


def test_overlap_receiving_with_information_digits():
    w = BackToBack(overlap_dial=True)
    w.wait_for("net", P.DchanUp)
    w.run(0.05)
    call = w.cpe.new_call()
    w.cpe.setup(call, None, False, called="1", calling="8001", overlap=True)
    ring = w.wait_for("net", P.Ring)
    assert ring.called_number == "1" and not ring.complete
    w.net.need_more_info(ring.call, 3)
    ack = w.wait_for("cpe", P.SetupAck)
    assert (ack.call, ack.channel) == (call, 3)
    w.cpe.information(call, "0086")
    w.run(0.05)
    infos = [e for e in w.events["net"] if isinstance(e, P.Info)]
    assert all(e.call is ring.call for e in infos)
    assert ring.called_number + "".join(e.digits for e in infos) == "10086"
    w.net.proceeding(ring.call, 3)
    assert w.wait_for("cpe", P.Proceeding).channel == 3
    w.net.answer(ring.call, 3)
    w.wait_for("cpe", P.Answer)
    w.net.hangup(ring.call, 16)
    w.cpe.hangup(w.wait_for("cpe", P.HangupReq).call, 16)
    w.run(0.1)
    assert w.net.active_calls() == 0 and w.cpe.active_calls() == 0


def test_overlap_setup_needs_overlap_dial(wire):
    with pytest.raises(P.PriError, match="set_overlap_dial"):
        wire.cpe.setup(wire.cpe.new_call(), 1, True, called="1", overlap=True)


def test_garbage_and_truncated_frames_do_not_disturb_the_link(wire):
    rng = random.Random(20240521)
    # Truncated copies of a real SETUP, then random junk of every size class.
    call = wire.cpe.new_call()
    wire.cpe.setup(call, 1, True, called="95566", calling="8001")
    setup_frame = wire.to_net[-1]
    wire.to_net.clear()
    junk = [setup_frame[:n] for n in range(len(setup_frame))]
    junk += [bytes(rng.randrange(256) for _ in range(n))
             for n in (0, 1, 2, 3, 4, 5, 8, 40, 260, 1022, 1023, 4096) for _ in range(25)]
    for frame in junk:
        wire.net.receive_frame(frame)
        wire.cpe.receive_frame(frame)
        wire.to_net.clear()      # whatever libpri answers to junk (FRMR, REJ) is dropped
        wire.to_cpe.clear()
    assert wire.net.frames_dropped > 0
    # Junk that happens to look like an I-frame with a wrong N(R) makes Q.921 re-establish
    # the link, as it must; after 30 s of normal traffic the link is up on both sides.
    wire.run(30.0)
    for side in ("net", "cpe"):
        dchan = [e for e in wire.events[side] if isinstance(e, (P.DchanUp, P.DchanDown))]
        assert isinstance(dchan[-1], P.DchanUp), (side, dchan)
    call = wire.net.new_call()
    wire.net.setup(call, 2, True, called="8002", calling="8003")
    ring = wire.wait_for("cpe", P.Ring)
    wire.cpe.answer(ring.call, 2)
    wire.wait_for("net", P.Answer)


def test_timers_run_on_the_simulated_clock(wire):
    """T303 (4 s) twice without any answer to SETUP: the call fails at exactly +8 s."""
    call = wire.cpe.new_call()
    t0 = wire.now
    wire.cpe.setup(call, 1, True, called="95566", calling="8001")
    wire.wait_for("net", P.Ring)      # the network never responds at layer 3
    assert wire.cpe.next_timer() == pytest.approx(t0 + 4.0)
    hangup = wire.wait_for("cpe", P.Hangup, limit=10.0)
    assert wire.now - t0 == pytest.approx(8.0, abs=STEP * 1.5)
    assert hangup.call is call and hangup.cause == 18     # no user responding
    with pytest.raises(P.PriError, match="backwards"):
        wire.cpe.run_timers(wire.now - 1.0)


def test_service_messages_on_a_north_american_switch():
    w = BackToBack("lucent5e", service_messages=True)
    w.wait_for("net", P.DchanUp)
    w.run(0.05)
    w.cpe.maintenance_service(0, 5, "out_of_service")
    w.run(0.05)
    change = only(w.events["net"], P.ServiceChange)
    assert (change.channel, change.state) == (5, "out_of_service")
    assert only(w.events["cpe"], P.ServiceAck).state == "out_of_service"


def test_bad_arguments_get_clear_errors(wire):
    with pytest.raises(P.PriError, match="switch type"):
        P.PriLink("cpe", "euroisdn_x", lambda f: None)
    with pytest.raises(P.PriError, match="node type"):
        P.PriLink("user", "euroisdn_e1", lambda f: None)
    with pytest.raises(P.PriError, match="callable"):
        P.PriLink("cpe", "euroisdn_e1", None)
    call = wire.cpe.new_call()
    with pytest.raises(P.PriError, match="channel"):
        wire.cpe.setup(call, 200, True, called="1")
    with pytest.raises(P.PriError, match="type of number"):
        wire.cpe.setup(call, 1, True, called="1", called_ton="galactic")
    with pytest.raises(P.PriError, match="not a dial digit"):
        wire.cpe.information(call, "12x")
    with pytest.raises(P.PriError, match="another link"):
        wire.net.hangup(call, 16)
    with pytest.raises(P.PriError, match="cause"):
        wire.cpe.hangup(call, 0)
    with pytest.raises(P.PriError, match="SERVICE"):
        wire.cpe.maintenance_service(0, 1, "out_of_service")
    with pytest.raises(P.PriError, match="unknown libpri timer"):
        wire.cpe.set_timer("T999", 10)
    wire.cpe.set_timer("T303", 2500)
    assert wire.cpe.get_timer("T303") == 2500
    with pytest.raises(P.PriError, match="bytes"):
        wire.cpe.receive_frame("not bytes")


def test_two_hundred_sequential_calls(wire):
    net, cpe = wire.net, wire.cpe
    n = 200
    started = time.perf_counter()
    for i in range(n):
        call = net.new_call()
        channel = 1 + i % 15
        net.setup(call, channel, True, called=f"8{i:03d}", calling="13800138000")
        ring = wire.wait_for("cpe", P.Ring)
        assert ring.called_number == f"8{i:03d}"
        cpe.proceeding(ring.call, channel)
        cpe.alerting(ring.call, channel)
        cpe.answer(ring.call, channel)
        wire.wait_for("net", P.Answer)
        net.hangup(call, 16)
        cpe.hangup(wire.wait_for("cpe", P.HangupReq).call, 16)
        wire.wait_for("net", P.Hangup)
        assert call.ended and ring.call.ended
    elapsed = time.perf_counter() - started
    assert net.active_calls() == 0 and cpe.active_calls() == 0
    print(f"\nlibpri back to back: {n} calls (SETUP..RELEASE COMPLETE) in {elapsed:.3f} s "
          f"wall = {n / elapsed:.0f} setups/s, {wire.now:.1f} s simulated")
