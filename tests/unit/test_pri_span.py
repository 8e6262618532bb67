"""PRI span signaling (drivers.signaling.pri) against the simulator's exchange
(simulators.actors.pri_co.PriExchange), both in this process.

Frames cross a wire of two queues each tick; time is ticks (20 ms) on both sides, so
every timer fires at an exact tick. cardd's channels are numbered 101-130 here (timeslots
1-15, 17-31), so a mix-up of channel numbers and timeslots cannot pass unnoticed.
"""
from __future__ import annotations

import collections
import random

import pytest

from drivers.signaling import events as ev
from drivers.signaling import span_health
from drivers.signaling.analog.config import SignalingError
from drivers.signaling.pri import PriConfig, PriSpan, PriState
from simulators.actors.pri_co import CoPlan, PriExchange

TIMESLOTS = [*range(1, 16), *range(17, 32)]
CHANNELS = [(100 + i + 1, ts) for i, ts in enumerate(TIMESLOTS)]
CH = {ts: ch for ch, ts in CHANNELS}          # timeslot -> cardd channel
TS = {ch: ts for ch, ts in CHANNELS}
TICK_S = 0.02
RESTART = 0x46              # Q.931 message type of RESTART


def q931_type(frame: bytes) -> int | None:
    """Message type of the Q.931 message in an I-frame, or None."""
    if len(frame) < 8 or frame[2] & 1:
        return None
    l3 = frame[4:]
    if l3[0] != 0x08:
        return None
    return l3[2 + (l3[1] & 0x0F)]


class Pair:
    """cardd's PriSpan and the exchange on one E1, back to back."""

    def __init__(self, node: str = "cpe", metrics=None, cut: bool = False, **cfg):
        self.to_co: collections.deque[bytes] = collections.deque()
        self.to_span: collections.deque[bytes] = collections.deque()
        self.cut = cut
        self.tick = 0
        self.events: list[tuple[int, int, ev.CallEvent]] = []
        self.actions: list[tuple[int, int, ev.Action]] = []
        self.sent: list[tuple[int, bytes]] = []
        self.played: dict[int, list[str]] = collections.defaultdict(list)
        self.span = PriSpan(1, CHANNELS, PriConfig(node=node, **cfg), metrics=metrics)
        self.co = PriExchange(1, self.to_span.append,
                              node="network" if node == "cpe" else "cpe",
                              media=lambda ts, what: self.played[ts].append(what))
        self.call_ids: dict[int, int] = {}
        self._calls = 0
        self.step(3)

    # -- carrying out what the span returns, as cardd does --
    def carry(self, pairs) -> None:
        for channel, action in pairs:
            self.actions.append((self.tick, channel, action))
            if isinstance(action, ev.SendFrame):
                self.sent.append((self.tick, action.frame))
                if not self.cut:
                    self.to_co.append(action.frame)
            elif isinstance(action, ev.Emit):
                self.events.append((self.tick, channel, action.event))
            elif isinstance(action, ev.NewCall):
                self._calls += 1
                self.call_ids[channel] = self._calls
            elif isinstance(action, ev.EndCall):
                self.call_ids.pop(channel, None)
            elif isinstance(action, ev.TakeCall):
                self.call_ids[channel] = self.call_ids.pop(action.from_channel)

    def deliver(self) -> None:
        while self.to_co or self.to_span:
            if self.cut:
                self.to_co.clear()
                self.to_span.clear()
                return
            while self.to_co:
                self.co.receive(self.to_co.popleft())
            while self.to_span:
                self.carry(self.span.on_dframe(self.to_span.popleft(), self.tick))

    def step(self, n: int = 1) -> None:
        for _ in range(n):
            self.tick += 1
            self.deliver()
            self.carry(self.span.on_tick(self.tick))
            for channel, line in self.span.lines.items():
                self.carry((channel, a) for a in line.on_tick(self.tick))
            self.co.step(self.tick * TICK_S)
            self.deliver()

    def seconds(self, s: float) -> None:
        self.step(int(round(s / TICK_S)))

    def cmd(self, channel: int, name: str, **args) -> list:
        actions = self.span.lines[channel].on_command(name, self.tick, **args)
        self.carry((channel, a) for a in actions)
        self.deliver()
        return actions

    def alarm(self, bits: int) -> None:
        self.carry(self.span.on_alarm(bits, self.tick))

    def until(self, predicate, seconds: float = 5.0) -> None:
        for _ in range(int(seconds / TICK_S)):
            if predicate():
                return
            self.step()
        assert predicate(), f"not within {seconds} s; last events: {self.events[-6:]}"

    # -- what happened --
    def emitted(self, kind, channel: int | None = None, since: int = 0) -> list:
        return [e for t, ch, e in self.events if isinstance(e, kind) and t >= since
                and (channel is None or ch == channel)]

    def states(self) -> collections.Counter:
        return collections.Counter(line.state for line in self.span.lines.values())

    def all_idle(self) -> bool:
        return all(line.state == PriState.IDLE and line.in_service
                   for line in self.span.lines.values())


@pytest.fixture
def pair() -> Pair:
    p = Pair()
    p.until(lambda: p.span.dchannel_up and p.co.dchannel_up)
    return p


def answer_incoming(p: Pair) -> None:
    for ch in [ch for t, ch, e in p.events if isinstance(e, ev.Incoming)]:
        if p.span.lines[ch].state == PriState.OFFERED:
            p.cmd(ch, "answer")


# ---- inbound and outbound calls with numbers and causes ------------------------------------
def test_inbound_call_numbers_answer_and_causes_both_ways(pair):
    p = pair
    c = p.co.place("8001", "13800138000", channel=5, exclusive=True, number_ton="subscriber",
                   number_plan="isdn", ani_ton="national", ani_plan="isdn",
                   presentation="restricted", screening="network", name="ZHANG SAN",
                   redirecting="01087654321", redirecting_reason="no_reply")
    p.until(lambda: p.emitted(ev.Incoming))
    (inc,) = p.emitted(ev.Incoming)
    ch = CH[5]
    assert [x for t, x, e in p.events if isinstance(e, ev.Incoming)] == [ch]
    assert (inc.ani, inc.dnis) == ("13800138000", "8001")
    assert (inc.calling_ton, inc.calling_plan, inc.presentation, inc.screening) == \
        ("national", "isdn", "restricted", "network")
    assert (inc.called_ton, inc.called_plan) == ("subscriber", "isdn")
    assert (inc.redirecting, inc.redirecting_reason) == ("01087654321", "no_reply")
    assert p.span.lines[ch].wire_state == "RINGING"
    p.until(lambda: c.state == "alerting")        # CALL PROCEEDING, then ALERTING at once
    p.cmd(ch, "answer")
    p.until(lambda: c.state == "connected")
    assert p.span.lines[ch].state == PriState.CONNECTED
    assert p.emitted(ev.Answered, ch)
    # The far end clears with 17 (user busy): cardd reports exactly that cause.
    p.co.hang_up(c, 17)
    p.until(lambda: p.emitted(ev.Cleared, ch))
    (cleared,) = p.emitted(ev.Cleared, ch)
    assert cleared.cause == 17 and "User busy" in cleared.reason
    p.until(lambda: p.span.lines[ch].state == PriState.IDLE and not c.active)
    # A second call: cardd rejects it with 21 (call rejected); the exchange gets 21.
    c2 = p.co.place("8002", "13800138001", channel=5)
    p.until(lambda: p.span.lines[ch].state == PriState.OFFERED)
    p.cmd(ch, "hangup", cause=21)
    p.until(lambda: not c2.active)
    assert c2.cause_from_host == 21
    assert p.emitted(ev.Cleared, ch)[-1].cause == 21
    p.seconds(0.5)
    assert p.all_idle() and p.span.link.active_calls() == 0 and p.co.link.active_calls() == 0


def test_outbound_call_numbers_progress_and_causes(pair):
    p = pair
    ch = CH[20]
    p.co.plans["95566"] = CoPlan(answer=True, after=1.0, ringback=True)
    p.cmd(ch, "dial", number="95566", ani="02161234567", called_ton="national",
          called_plan="isdn", calling_ton="national", calling_plan="isdn",
          presentation="restricted", redirecting="02160000000", redirecting_reason="busy",
          caller_name="HOTLINE")
    p.until(lambda: p.emitted(ev.Answered, ch), 3)
    (c,) = [x for x in p.co.calls if not x.to_host]
    r = c.ring
    assert (r.called_number, r.called_ton, r.called_plan) == ("95566", "national", "isdn")
    assert (r.calling_number, r.calling_ton, r.calling_presentation) == \
        ("02161234567", "national", "restricted")
    assert (r.redirecting_number, r.redirecting_reason) == ("02160000000", "busy")
    assert r.channel == 20 and r.complete
    kinds = [type(e).__name__ for t, x, e in p.events if x == ch]
    assert kinds == ["Proceeding", "Alerting", "Answered"]
    assert p.emitted(ev.Alerting, ch)[0].inband          # ringback comes in-band
    assert p.played[20][:2] == ["ringback", "talk"]
    p.cmd(ch, "hangup", cause=16)
    p.until(lambda: not c.active)
    assert c.cause_from_host == 16
    p.until(lambda: p.span.lines[ch].state == PriState.IDLE)


def test_outbound_rejected_busy_with_inband_tone(pair):
    p = pair
    ch = CH[9]
    p.co.plans["8888"] = CoPlan(cause=17, inband=True, tone_s=1.0)
    p.cmd(ch, "dial", number="8888")
    p.until(lambda: p.emitted(ev.Cleared, ch), 3)
    progress = p.emitted(ev.Progress, ch)
    assert progress and progress[0].inband                # busy tone in-band before release
    assert p.played[9][0] == "busy"
    assert p.emitted(ev.Cleared, ch)[0].cause == 17
    first_progress = next(t for t, x, e in p.events if isinstance(e, ev.Progress))
    cleared_at = next(t for t, x, e in p.events if isinstance(e, ev.Cleared))
    assert cleared_at - first_progress >= round(1.0 / TICK_S) - 1
    p.until(lambda: p.span.lines[ch].state == PriState.IDLE)
    # Rejected at once, without tones: RELEASE COMPLETE / DISCONNECT with cause 1.
    p.co.plans["9999"] = CoPlan(cause=1, inband=False)
    p.cmd(ch, "dial", number="9999")
    p.until(lambda: len(p.emitted(ev.Cleared, ch)) == 2, 3)
    assert p.emitted(ev.Cleared, ch)[-1].cause == 1


# ---- B-channel selection and glare ----------------------------------------------------------
def test_preferred_channel_moves_where_the_network_puts_it(pair):
    p = pair
    p.co.plans["7001"] = CoPlan(assign_channel=12, after=0.5)
    p.cmd(CH[30], "dial", number="7001", channel_mode="preferred")
    p.until(lambda: p.emitted(ev.Answered), 3)
    takes = [(x, a) for t, x, a in p.actions if isinstance(a, ev.TakeCall)]
    assert takes == [(CH[12], ev.TakeCall(from_channel=CH[30]))]
    assert p.span.lines[CH[12]].state == PriState.CONNECTED
    assert p.span.lines[CH[30]].state == PriState.IDLE
    assert [x for t, x, e in p.events if isinstance(e, ev.Answered)] == [CH[12]]
    assert CH[12] in p.call_ids and CH[30] not in p.call_ids
    # Exclusive: the network may not move it; a call put elsewhere is cleared (cause 6).
    p.co.plans["7002"] = CoPlan(assign_channel=13)
    p.cmd(CH[29], "dial", number="7002", channel_mode="exclusive")
    p.until(lambda: p.emitted(ev.Cleared, CH[29]), 3)
    assert p.emitted(ev.Cleared, CH[29])[0].cause == 6


def test_incoming_preferred_on_a_busy_channel_gets_another_one(pair):
    p = pair
    p.cmd(CH[3], "dial", number="5550")
    p.until(lambda: p.emitted(ev.Answered, CH[3]), 5)
    c = p.co.place("8001", "1", channel=3, exclusive=False)
    p.until(lambda: p.emitted(ev.Incoming), 2)
    (ch,) = [x for t, x, e in p.events if isinstance(e, ev.Incoming)]
    assert ch != CH[3] and c.timeslot == TS[ch]
    # Exclusive on a busy channel: refused with 44.
    c2 = p.co.place("8002", "1", channel=3, exclusive=True)
    p.until(lambda: not c2.active, 2)
    assert c2.cause_from_host == 44


def test_glare_cpe_side_network_wins_exclusive(pair):
    """Both ends seize timeslot 7 in the same tick, both exclusively: the network's call
    is offered on it and cardd's SETUP is cleared with cause 44 on both sides."""
    p = pair
    ch = CH[7]
    actions = p.span.lines[ch].on_command("dial", p.tick, number="95566",
                                          channel_mode="exclusive")
    co_call = p.co.place("8001", "13800138000", channel=7, exclusive=True)
    p.carry((ch, a) for a in actions)               # both SETUPs are on the wire now
    p.deliver()
    p.step(5)
    cleared = p.emitted(ev.Cleared, ch)
    assert cleared and cleared[0].cause == 44 and "glare" in cleared[0].reason
    incoming = p.emitted(ev.Incoming, ch)
    assert incoming and incoming[0].dnis == "8001"
    host_call = [c for c in p.co.calls if not c.to_host]
    assert all(c.state == "done" for c in host_call)      # the exchange refused it too
    p.cmd(ch, "answer")
    p.until(lambda: co_call.state == "connected")
    p.co.hang_up(co_call)
    p.seconds(1)
    assert p.all_idle() and p.span.link.active_calls() == 0 and p.co.link.active_calls() == 0


def test_glare_cpe_side_preferred_call_goes_elsewhere(pair):
    p = pair
    ch = CH[7]
    p.co.plans["95566"] = CoPlan(after=0.5)
    actions = p.span.lines[ch].on_command("dial", p.tick, number="95566",
                                          channel_mode="preferred")
    co_call = p.co.place("8001", "1", channel=7, exclusive=True)
    p.carry((ch, a) for a in actions)
    p.deliver()
    p.until(lambda: len(p.emitted(ev.Answered)) == 0 and p.emitted(ev.Incoming, ch), 2)
    p.until(lambda: any(isinstance(e, ev.Proceeding) for t, x, e in p.events), 2)
    # cardd's call survived on another channel, where the network put it.
    host = [c for c in p.co.calls if not c.to_host][0]
    assert host.timeslot != 7 and host.active
    owner = CH[host.timeslot]
    assert p.span.lines[owner].outgoing and owner in p.call_ids
    assert not p.emitted(ev.Cleared)
    assert co_call.active


def test_glare_network_side_cpe_gives_way():
    """cardd is the network: when both seize timeslot 4, the CPE's SETUP is refused with
    44 and cardd's call goes through."""
    p = Pair(node="network")
    p.until(lambda: p.span.dchannel_up and p.co.dchannel_up)
    ch = CH[4]
    p.co.plans["8001"] = CoPlan(after=0.5)
    actions = p.span.lines[ch].on_command("dial", p.tick, number="8001",
                                          channel_mode="exclusive")
    co_call = p.co.place("95566", "1", channel=4, exclusive=True)
    p.carry((ch, a) for a in actions)
    p.deliver()
    p.until(lambda: p.emitted(ev.Answered, ch), 3)
    assert not p.emitted(ev.Incoming)
    assert not co_call.active and co_call.cause_from_host == 44
    p.cmd(ch, "hangup")
    p.seconds(1)
    assert p.all_idle() and p.span.link.active_calls() == 0 and p.co.link.active_calls() == 0


# ---- overlap ----------------------------------------------------------------------------
def test_overlap_receiving_until_interdigit_timeout():
    p = Pair(interdigit_ms=2000)
    p.until(lambda: p.span.dchannel_up)
    p.co.place("80012345", "1", channel=2, overlap_digits=3)
    p.until(lambda: p.span.lines[CH[2]].state == PriState.COLLECTING, 1)
    assert p.span.lines[CH[2]].wire_state == "COLLECTING"
    p.step(3)
    last_info = p.tick
    p.until(lambda: p.emitted(ev.Incoming), 4)
    (t, _, inc), = [x for x in p.events if isinstance(x[2], ev.Incoming)]
    assert inc.dnis == "80012345"
    # Offered one interdigit time after the digits stopped (no Sending Complete).
    assert abs(t - last_info - 100) <= 3


def test_overlap_receiving_with_fixed_number_length_and_en_bloc():
    p = Pair(dnis_digits=8)
    p.until(lambda: p.span.dchannel_up)
    p.co.place("80012345", "1", channel=2, overlap_digits=4)
    p.step(3)
    assert p.emitted(ev.Incoming)[0].dnis == "80012345"     # at once, on the 8th digit
    p2 = Pair(overlap_receiving=False)
    p2.until(lambda: p2.span.dchannel_up)
    p2.co.place("80012345", "1", channel=2, overlap_digits=4)
    p2.step(3)
    assert p2.emitted(ev.Incoming)[0].dnis == "8001"        # en bloc: what SETUP had


def test_overlap_sending(pair):
    p = pair
    ch = CH[11]
    p.co.plans["12345"] = CoPlan(after=0.2)
    p.co.plans["default"] = CoPlan(digits=5)
    p.cmd(ch, "dial", number="12", overlap=True)
    p.cmd(ch, "send_digits", digits="3")                 # before SETUP ACK: held back
    p.until(lambda: p.span.lines[ch].state == PriState.OVERLAP_SENDING, 1)
    p.cmd(ch, "send_digits", digits="45")
    p.until(lambda: p.emitted(ev.Answered, ch), 3)
    (c,) = [x for x in p.co.calls if not x.to_host]
    assert c.called == "12345"


# ---- span health ---------------------------------------------------------------------------
def test_alarm_mid_call_clears_calls_and_span_returns_by_itself_with_backoff(pair):
    p = pair
    calls = [p.co.place("8001", str(i), channel=ts) for i, ts in enumerate((1, 2, 3))]
    p.until(lambda: len(p.emitted(ev.Incoming)) == 3)
    answer_incoming(p)
    p.until(lambda: all(c.state == "connected" for c in calls))
    # LOS: the line is cut, the card reports the alarm.
    p.cut = True
    p.co.lose_everything()
    los = span_health.alarm_bits("red,los")
    p.alarm(los)
    cleared = p.emitted(ev.Cleared)
    assert len(cleared) == 3 and all(c.cause == 38 for c in cleared)
    out = p.emitted(ev.ServiceChange)
    assert len(out) == 30 and not any(s.in_service for s in out)
    assert "los" in out[0].reason
    with pytest.raises(SignalingError, match="out of service"):
        p.cmd(CH[20], "dial", number="1")
    p.seconds(3)
    p.cut = False
    cleared_tick = p.tick
    p.alarm(0)
    base = 100                                              # 2000 ms in ticks
    delay = base + round(base * span_health.span_jitter(1) * 0.25)
    p.until(lambda: len(p.emitted(ev.ServiceChange, since=cleared_tick)) == 30, 10)
    back = [(t, e) for t, x, e in p.events if isinstance(e, ev.ServiceChange) and t >= cleared_tick]
    first_back = min(t for t, e in back)
    # Every channel was restarted (RESTART, acknowledged) first, at most 4 at a time.
    restarts = [t for t, f in p.sent if q931_type(f) == RESTART and t >= cleared_tick]
    assert len(restarts) == 30
    assert restarts[0] - cleared_tick == delay
    assert max(collections.Counter(restarts).values()) <= 4
    assert first_back >= restarts[0] and all(e.in_service for t, e in back)
    assert p.all_idle()
    # A second outage soon after: the delay doubles (a flapping span backs off).
    p.alarm(los)
    p.seconds(1)
    again = p.tick
    p.alarm(0)
    p.until(lambda: len([1 for t, f in p.sent if q931_type(f) == RESTART and t >= again]), 10)
    first = min(t for t, f in p.sent if q931_type(f) == RESTART and t >= again)
    assert first - again == 2 * base + round(2 * base * span_health.span_jitter(1) * 0.25)
    p.until(p.all_idle, 10)
    # A call goes through again.
    c = p.co.place("8009", "1", channel=9)
    p.until(lambda: p.span.lines[CH[9]].state == PriState.OFFERED)
    p.cmd(CH[9], "answer")
    p.until(lambda: c.state == "connected")


def test_dchannel_loss_takes_idle_channels_out_and_reports_it(pair):
    p = pair
    p.cut = True
    p.seconds(20)                          # Q.921 notices (T203, then T200 x N200)
    down = [e for t, x, e in p.events if isinstance(e, ev.DChannel)]
    assert down[-1] == ev.DChannel(up=False, reason="lost")
    assert all(not line.in_service for line in p.span.lines.values())
    p.cut = False
    p.until(lambda: p.all_idle(), 30)
    assert [e.up for t, x, e in p.events if isinstance(e, ev.DChannel)][-1] is True


def test_no_dchannel_at_start_reports_channels_out_after_the_grace():
    p = Pair(dchannel_grace_ms=1000, cut=True)
    p.seconds(0.9)
    assert not p.emitted(ev.ServiceChange)
    p.seconds(0.2)
    out = p.emitted(ev.ServiceChange)
    assert len(out) == 30 and out[0].reason.startswith("the span is out of service")


# ---- restarts and maintenance ------------------------------------------------------------
def test_far_end_restart_clears_the_call(pair):
    p = pair
    c = p.co.place("8001", "1", channel=6)
    p.until(lambda: p.emitted(ev.Incoming))
    p.cmd(CH[6], "answer")
    p.until(lambda: c.state == "connected")
    p.co.restart(6)
    p.step(3)
    assert p.emitted(ev.Cleared, CH[6])[0].cause == 41
    assert p.emitted(ev.ChannelReset, CH[6])[0].by_far_end
    p.seconds(1)
    assert p.all_idle() and p.span.link.active_calls() == 0 and p.co.link.active_calls() == 0


def test_stuck_channel_is_restarted_by_itself_and_counted():
    from prometheus_client import CollectorRegistry
    registry = CollectorRegistry()
    p = Pair(stuck_clearing_ms=2000, metrics=span_health.SpanMetrics(registry))
    p.until(lambda: p.span.dchannel_up)
    p.co.plans["6000"] = CoPlan(after=0.1, stuck=True)   # never completes a release
    ch = CH[25]
    p.cmd(ch, "dial", number="6000")
    p.until(lambda: p.emitted(ev.Answered, ch), 2)
    p.cmd(ch, "hangup")
    start = p.tick
    p.until(lambda: p.emitted(ev.ChannelReset, ch), 4)
    reset_tick = next(t for t, x, e in p.events if isinstance(e, ev.ChannelReset))
    assert reset_tick - start == 100
    assert p.emitted(ev.ChannelReset, ch)[0].reason == "stuck in clearing"
    p.until(lambda: p.span.lines[ch].state == PriState.IDLE, 2)
    assert [t for t, f in p.sent if q931_type(f) == RESTART]
    assert registry.get_sample_value("hotline_cardd_channel_resets_total",
                                     {"span": "1", "reason": "stuck in clearing"}) == 1
    assert p.co.restarts == [25]


def test_reset_and_service_commands():
    p = Pair()
    p.until(lambda: p.span.dchannel_up)
    ch = CH[15]
    p.cmd(ch, "set_service", in_service=False)
    assert p.span.lines[ch].wire_state == "BLOCKED"
    assert p.emitted(ev.ServiceChange, ch)[-1].in_service is False
    with pytest.raises(SignalingError, match="blocked for maintenance"):
        p.cmd(ch, "dial", number="1")
    # An exclusive call for it is refused with 44; a preferred one goes elsewhere.
    c = p.co.place("8001", "1", channel=15, exclusive=True)
    p.step(3)
    assert c.cause_from_host == 44
    p.cmd(ch, "set_service", in_service=True)          # EuroISDN: RESTART brings it back
    p.until(lambda: p.span.lines[ch].state == PriState.IDLE, 1)
    assert p.emitted(ev.ServiceChange, ch)[-1].in_service is True
    assert p.co.restarts == [15]
    p.cmd(ch, "reset_channel")
    p.until(lambda: p.span.lines[ch].state == PriState.IDLE, 1)
    assert p.emitted(ev.ChannelReset, ch)[-1].reason == "reset by command"


def test_service_messages_on_a_lucent5e_span():
    p = Pair(switchtype="lucent5e")
    p.co = PriExchange(1, p.to_span.append, node="network", switch="lucent5e",
                       timeslots=[ts for ts in TIMESLOTS])
    p.until(lambda: p.span.dchannel_up and p.co.dchannel_up, 10)
    p.co.link.maintenance_service(0, 8, "out_of_service")
    p.co.flush()
    p.step(2)
    assert p.span.lines[CH[8]].wire_state == "BLOCKED"
    assert p.emitted(ev.ServiceChange, CH[8])[-1].in_service is False


def test_commands_are_checked_and_refused_with_reasons(pair):
    p = pair
    ch = CH[1]
    with pytest.raises(SignalingError, match="cannot ring"):
        p.cmd(ch, "ring")
    with pytest.raises(SignalingError, match="no incoming call"):
        p.cmd(ch, "answer")
    with pytest.raises(SignalingError, match="not digits"):
        p.cmd(ch, "dial", number="12a")
    with pytest.raises(SignalingError, match="called_ton 'galactic'"):
        p.cmd(ch, "dial", number="1", called_ton="galactic")
    with pytest.raises(SignalingError, match="channel_mode"):
        p.cmd(ch, "dial", number="1", channel_mode="sometimes")
    with pytest.raises(SignalingError, match="unexpected argument"):
        p.cmd(ch, "dial", number="1", colour="red")
    p.cmd(ch, "dial", number="1")
    state = p.span.lines[ch].state
    with pytest.raises(SignalingError, match="already on this channel"):
        p.cmd(ch, "dial", number="2")
    with pytest.raises(SignalingError, match="Q.850"):
        p.cmd(ch, "hangup", cause=300)
    assert p.span.lines[ch].state == state              # refusals changed nothing


# ---- robustness and load ----------------------------------------------------------------
def test_garbage_and_truncated_frames_leave_no_channel_behind(pair):
    p = pair
    calls = [p.co.place("8001", str(i), channel=ts) for i, ts in enumerate((1, 2, 17, 31))]
    p.until(lambda: len(p.emitted(ev.Incoming)) == 4)
    answer_incoming(p)
    p.until(lambda: all(c.state == "connected" for c in calls))
    rng = random.Random(7)
    real = [f for _, f in p.sent][-5:] + [bytes([0x00, 0x01, 0x00, 0x00, 0x08, 0x02, 0x80,
                                                  0x01, 0x05])]
    junk = [f[:n] for f in real for n in range(len(f))]
    junk += [bytes(rng.randrange(256) for _ in range(n))
             for n in (0, 1, 2, 3, 4, 5, 9, 40, 260, 1022, 1023, 3000) for _ in range(20)]
    for frame in junk:
        p.carry(p.span.on_dframe(frame, p.tick))   # never raises
    p.step()
    p.co.hang_up_all()
    p.seconds(40)
    for line in p.span.lines.values():
        assert line.state == PriState.IDLE and line.in_service, (line.channel, line.state)
    assert p.span.link.active_calls() == 0 and p.co.link.active_calls() == 0
    c = p.co.place("8001", "1", channel=1)
    p.until(lambda: p.span.lines[CH[1]].state == PriState.OFFERED)
    p.cmd(CH[1], "answer")
    p.until(lambda: c.state == "connected")


def test_thirty_simultaneous_calls(pair):
    p = pair
    calls = [p.co.place("8001", f"138{i:08d}") for i in range(30)]
    p.until(lambda: len(p.emitted(ev.Incoming)) == 30)
    assert p.states()[PriState.OFFERED] == 30
    answer_incoming(p)
    p.until(lambda: all(c.state == "connected" for c in calls))
    assert p.states()[PriState.CONNECTED] == 30
    with pytest.raises(Exception, match="busy"):
        p.co.place("8001", "1")
    p.seconds(5)
    p.co.hang_up_all()
    p.until(lambda: len(p.emitted(ev.Cleared)) == 30)
    p.seconds(1)
    assert p.all_idle() and p.span.link.active_calls() == 0 and p.co.link.active_calls() == 0
    assert len(set(p.call_ids)) == 0


def test_call_answered_after_a_long_ring_stays_up(pair):
    """libpri's timers count from the span's clock: a CONNECT sent after a long quiet spell
    must not find T313 already run out (the call would be cleared at once)."""
    p = pair
    c = p.co.place("8001", "1", channel=1)
    p.seconds(8)
    p.cmd(CH[1], "answer")
    p.seconds(15)
    assert c.state == "connected" and p.span.lines[CH[1]].state == PriState.CONNECTED
    assert not p.emitted(ev.Cleared)


def test_restart_never_acknowledged_takes_the_channel_out_until_the_span_recovers():
    p = Pair(restart_ack_ms=1000)
    p.until(lambda: p.span.dchannel_up)
    ch = CH[10]
    p.cut = True                              # nothing reaches the far end any more
    p.cmd(ch, "reset_channel")
    p.seconds(2.9)
    assert p.span.lines[ch].state == PriState.RESTARTING
    assert p.span.lines[ch].restart_tries == 3               # sent, then asked again twice
    p.seconds(0.2)
    line = p.span.lines[ch]
    assert line.state == PriState.OUT_OF_SERVICE and line.unreachable
    assert p.emitted(ev.ServiceChange, ch)[-1].reason == \
        "the far end does not acknowledge RESTART for the channel"
    p.cut = False                             # the link comes back: so does the channel
    p.until(p.all_idle, 30)


def test_tones_before_answer_announce_inband_information(pair):
    """A tone or prompt played to an offered call first sends PROGRESS with progress
    indicator 8, so the caller's network connects the B-channel before answer."""
    p = pair
    c = p.co.place("8001", "1", channel=4)
    p.until(lambda: p.span.lines[CH[4]].state == PriState.OFFERED)
    actions = p.cmd(CH[4], "play_tone", tone="ringback")
    assert ev.Media("play_tone", ("ringback",)) in actions
    p.step(2)
    assert "Progress" in c.events
    p.cmd(CH[4], "play_tone", tone="busy")           # once is enough
    p.step(2)
    assert c.events.count("Progress") == 1
    p.cmd(CH[4], "answer")
    p.until(lambda: c.state == "connected")


def test_a_call_outlives_a_short_dchannel_outage_and_its_channel_is_not_reported_out(pair):
    p = pair
    c = p.co.place("8001", "1", channel=8)
    p.until(lambda: p.span.lines[CH[8]].state == PriState.OFFERED)
    p.cmd(CH[8], "answer")
    p.until(lambda: c.state == "connected")
    p.span.link.set_timer("T309", 30000)        # keep active calls over a link loss for 30 s
    p.cut = True
    p.seconds(16)
    assert not p.span.dchannel_up
    assert not p.emitted(ev.ServiceChange, CH[8])         # busy: not reported out
    assert len(p.emitted(ev.ServiceChange)) == 29         # the idle ones are
    p.cut = False
    p.until(lambda: p.span.dchannel_up, 10)
    p.until(lambda: len([e for e in p.emitted(ev.ServiceChange) if e.in_service]) == 29, 10)
    assert p.span.lines[CH[8]].state == PriState.CONNECTED and not p.emitted(ev.Cleared)
    p.co.hang_up(c)
    p.until(lambda: p.emitted(ev.Cleared, CH[8]), 3)
    p.until(p.all_idle, 3)
    assert not p.emitted(ev.ServiceChange, CH[8])
