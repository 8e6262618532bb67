"""R2Line as a pure state machine: CAS bits and MF edges in, actions out, ticks as time."""
import dataclasses
import os

import pytest

from drivers.backends.base import ChannelEvent, HwEvent
from drivers.signaling import events as ev
from drivers.signaling.r2 import R2Error, R2Line, R2Options, SetCas, TraceWriter, load_variant


@dataclasses.dataclass(frozen=True)
class Mf:                      # shaped like the media engine's R2Event
    row: int
    signal: int
    sample: int = 0


class Drive:
    """One line and its clock: feed the far end's signals, collect what the line does."""

    def __init__(self, variant="china", **options):
        self.v = load_variant(variant)
        self.line = R2Line(7, self.v, R2Options(**options))
        self.tick = 1
        self.actions = self.line.on_tick(1)           # the idle pattern goes out first

    def _take(self, actions):
        self.actions = actions
        return actions

    def cas(self, name):
        bits = self.v.line.abcd(name)
        return self._take(self.line.on_hw(ChannelEvent(7, HwEvent.BITSCHANGED, value=bits), self.tick))

    def mf(self, signal):
        return self._take(self.line.on_media(Mf(0, signal), self.tick))

    def pulse(self, signal):
        """The far register's signal on, then off (the line answers the 'on')."""
        on = self.mf(signal)
        off = self.mf(0)
        return on, off

    def cmd(self, name, **args):
        return self._take(self.line.on_command(name, self.tick, **args))

    def run(self, ticks):
        out = []
        for _ in range(ticks):
            self.tick += 1
            out += self.line.on_tick(self.tick)
        self.actions = out
        return out

    # what came out
    def sent_cas(self, actions=None):
        """The line signals sent, as the first name of their bits, except that the
        shared 11 pattern reads as seize_ack/clear_back/blocked alike."""
        return [self.v.line.names(a.bits) for a in (actions if actions is not None else self.actions)
                if isinstance(a, SetCas)]

    @staticmethod
    def tones(actions):
        return [a.args[0] for a in actions if isinstance(a, ev.Media) and a.method == "r2_send"]

    @staticmethod
    def events(actions):
        return [a.event for a in actions if isinstance(a, ev.Emit)]


def sent(d, actions, *names):
    """The line sent exactly these line signals (by name; shared patterns match any name)."""
    got = d.sent_cas(actions)
    return len(got) == len(names) and all(n in g for n, g in zip(names, got))


def ticks_of(ms):
    return -(-ms // 20)


def test_first_tick_sends_the_idle_pattern():
    d = Drive("china")
    assert d.actions == [SetCas(0b1011)]
    assert Drive("itu").actions == [SetCas(0b1001)]


def test_incoming_call_china_sequence():
    d = Drive("china", max_dnis=5)
    a = d.cas("seize")
    assert sent(d, a, "seize_ack")
    assert ev.Media("r2_detect", ("forward",)) in a
    assert d.line.wire_state == "COLLECTING"
    for digit in "12345":
        on, off = d.pulse(int(digit) or 10)
        assert d.tones(off) == [None]
        expected = 6 if digit == "5" else 1          # after the 5th digit: A6, send KA + ANI
        assert d.tones(on) == [expected]
    on, _ = d.pulse(1)                               # KA 1: ordinary subscriber
    assert d.tones(on) == [1]
    for digit in "13812345678":
        on, _ = d.pulse(10 if digit == "0" else int(digit))
        assert d.tones(on) == [1]
    on, _ = d.pulse(15)                              # end of ANI
    assert d.tones(on) == [3]                        # A3: change over to group B
    on = d.mf(3)                                     # KD 3: local call
    assert on[0] == ev.NewCall()
    assert d.events(on) == [ev.Incoming(ani="13812345678", dnis="12345", category="ordinary")]
    assert d.line.wire_state == "RINGING"
    a = d.cmd("answer")
    assert d.tones(a) == [1]                         # B1: subscriber free
    a = d.mf(0)                                      # KD ends: our B1 ends, answer after a delay
    assert d.tones(a) == [None] and not d.sent_cas(a)
    delay = ticks_of(d.v.timers.answer_delay_ms)
    assert d.run(delay - 1) == []
    a = d.run(1)
    assert sent(d, a, "answer") and d.events(a) == [ev.Answered()]
    a = d.cas("clear_forward")
    assert d.events(a) == [ev.Cleared(16, "caller hung up (clear forward)")]
    assert ev.EndCall() in a and sent(d, a, "idle") and d.line.state.value == "idle"


def test_dnis_ends_by_timeout_then_a_pulse_asks_for_ka():
    d = Drive("china")                               # max_dnis 20: the DNIS ends by silence
    d.cas("seize")
    for s in (5, 5, 5):
        d.pulse(s)
    cycle = ticks_of(d.v.timers.mf_back_cycle_ms)
    assert d.run(cycle - 1) == []
    a = d.run(1)
    assert d.tones(a) == [6]                         # A6 as a pulse: the forward is silent
    a = d.run(ticks_of(d.v.timers.mf_pulse_ms))
    assert d.tones(a) == [None]
    assert d.line.call.dnis == "555" and d.line.call.requested == "category"


def test_incoming_refused_busy_then_cleared_forward():
    d = Drive("china", max_dnis=1)
    d.cas("seize")
    d.pulse(8)                                       # DNIS "8": complete at once -> A6
    d.pulse(1)                                       # KA
    d.pulse(15)                                      # no ANI: end of ANI -> A3
    d.mf(3)
    a = d.cmd("hangup", cause=17)
    assert d.events(a) == [ev.Cleared(17, "refused")] and ev.EndCall() in a
    assert d.tones(a) == [2]                         # B2: subscriber busy
    assert d.tones(d.mf(0)) == [None]
    a = d.cas("clear_forward")
    assert sent(d, a, "idle") and d.events(a) == [] and d.line.state.value == "idle"


def test_unexpected_forward_signal_sends_congestion_and_reports_nothing():
    d = Drive("china")
    d.cas("seize")
    a = d.mf(13)                                     # not a digit while receiving the DNIS
    assert d.tones(a) == [4] and d.events(a) == []   # A4 congestion; no call was offered
    assert d.line.counters["protocol_errors"] == 1
    d.mf(0)
    a = d.cas("clear_forward")
    assert d.line.state.value == "idle" and d.events(a) == []


def test_outgoing_call_china_sequence():
    d = Drive("china")
    a = d.cmd("dial", number="12345", ani="87654321")
    assert a[0] == ev.NewCall() and sent(d, a, "seize")
    assert d.line.wire_state == "DIALING"
    a = d.cas("seize_ack")
    assert ev.Media("r2_detect", ("backward",)) in a and d.tones(a) == [1]
    tones_sent = []

    def answer_with(signal, silent=False):
        on = d.mf(signal)
        assert d.tones(on) == ([] if silent else [None])   # the forward stops on hearing us
        off = d.mf(0)
        tones_sent.extend(d.tones(off))
        return off
    for _ in range(4):
        answer_with(1)                               # A1: next digit
    assert tones_sent == [2, 3, 4, 5]
    answer_with(1)
    assert d.tones(d.actions) == []                  # no more DNIS, no end signal: silence
    answer_with(6, silent=True)                      # A6 (as a pulse): send KA
    answer_with(1)
    for _ in range(7):
        answer_with(1)
    answer_with(1)                                   # after the 8 ANI digits: I-15
    assert tones_sent[4:] == [1, 8, 7, 6, 5, 4, 3, 2, 1, 15]
    a = answer_with(3)                               # A3: group II (KD)
    assert d.events(a) == [ev.DialComplete(), ev.Proceeding()] and d.tones(a) == [3]
    a = answer_with(1)                               # B1: subscriber free
    assert d.events(a) == [ev.Alerting()] and ev.Media("r2_detect", (None,)) in a
    a = d.cas("answer")
    assert d.events(a) == [ev.Answered()] and d.line.wire_state == "CONNECTED"
    a = d.cas("clear_back")
    assert d.events(a) == [ev.Cleared(16, "far end hung up (clear back)")]
    assert sent(d, a, "idle") and d.line.state.value == "out_clear_fwd"
    a = d.cas("idle")                                # release guard
    assert d.line.state.value == "idle"


@pytest.mark.parametrize("variant, signal, cause", [("china", 2, 17), ("china", 5, 1),
                                                    ("itu", 3, 17), ("itu", 4, 42)])
def test_outgoing_refused_by_b_signal(variant, signal, cause):
    d = Drive(variant)
    d.cmd("dial", number="1", ani="")
    d.cas("seize_ack")
    d.pulse(d.v.address_complete)                    # straight to group II
    assert d.line.state.value == "out_group_ii"
    _, off = d.pulse(signal)
    assert d.events(off)[0].cause == cause and ev.EndCall() in off
    assert sent(d, off, "idle")


def test_itu_outgoing_sends_category_then_ani_on_a5_and_end_signals():
    d = Drive("itu")
    d.cmd("dial", number="42", ani="31", category="priority")
    sent = d.tones(d.cas("seize_ack"))
    for s in (5, 5, 5, 5, 1, 1):                     # category, 3, 1, end of ANI, 2, end of DNIS
        d.mf(s)
        sent += d.tones(d.mf(0))
    assert sent == [4, 2, 3, 1, 15, 2, 15]


def test_timers_clear_with_their_causes():
    d = Drive("china")
    d.cmd("dial", number="1")
    n = ticks_of(d.v.timers.seize_ack_ms)
    assert d.run(n - 1) == []
    a = d.run(1)
    assert d.events(a)[0].cause == ev.CAUSE_RECOVERY_ON_TIMER and d.line.state.value == "idle"

    d = Drive("china", max_dnis=1)
    d.cmd("dial", number="1")
    d.cas("seize_ack")
    d.pulse(3)
    d.pulse(1)                                       # B1: accepted, never answered
    a = d.run(ticks_of(d.v.timers.answer_ms))
    assert d.events(a)[0] == ev.Cleared(ev.CAUSE_NO_ANSWER, "no answer")

    d = Drive("china")
    d.cmd("dial", number="1")
    d.cas("seize_ack")                               # our I-1 never answered
    a = d.run(ticks_of(d.v.timers.mf_fwd_safety_ms))
    assert d.events(a)[0].cause == ev.CAUSE_PROTOCOL_ERROR


def test_release_guard_timeout_idles_the_channel():
    d = Drive("china", max_dnis=1)
    d.cas("seize")
    d.pulse(1)
    d.pulse(1)
    d.pulse(15)
    d.mf(3)
    d.cmd("answer")
    d.mf(0)
    d.run(10)
    a = d.cmd("hangup")
    assert sent(d, a, "clear_back") and d.events(a)[0] == ev.Cleared(16, "hangup")
    a = d.run(ticks_of(d.v.timers.release_guard_ms))
    assert sent(d, a, "idle") and d.line.counters["release_timeouts"] == 1


def test_commands_refused_with_reasons():
    d = Drive("china")
    with pytest.raises(R2Error, match="answer refused: there is no incoming call"):
        d.cmd("answer")
    with pytest.raises(R2Error, match="only have the digits 0-9"):
        d.cmd("dial", number="12A")
    with pytest.raises(R2Error, match="cannot ring a phone"):
        d.cmd("ring", caller_id="1")
    with pytest.raises(R2Error, match="no calling party category 'vip'"):
        d.cmd("dial", number="1", category="vip")
    with pytest.raises(R2Error, match="overlap sending is not available"):
        d.cmd("dial", number="1", overlap=True)
    d.cmd("dial", number="1", calling_ton="national")    # ISDN details are ignored on R2
    with pytest.raises(R2Error, match="dial refused: a call is already in progress"):
        d.cmd("dial", number="2")


def test_blocking_both_ways():
    d = Drive("china")
    a = d.cas("blocked")
    assert d.events(a) == [ev.ServiceChange(False, "blocked by the far end")]
    assert d.line.wire_state == "BLOCKED"
    with pytest.raises(R2Error, match="the far end has blocked this channel"):
        d.cmd("dial", number="1")
    assert d.events(d.cas("idle")) == [ev.ServiceChange(True, "unblocked by the far end")]
    a = d.cmd("set_service", in_service=False)
    assert sent(d, a, "blocked")
    assert d.events(d.cas("seize")) == []                 # a seize on a blocked channel: ignored
    a = d.cmd("set_service", in_service=True)
    assert sent(d, a, "idle")


def test_dual_seizure_clears_the_outgoing_attempt():
    d = Drive("itu")
    d.cmd("dial", number="1")
    a = d.cas("seize")
    assert d.events(a)[0] == ev.Cleared(ev.CAUSE_NO_CIRCUIT, "dual seizure")
    assert d.line.counters["dual_seizures"] == 1 and d.line.state.value == "idle"


def test_alarm_clears_the_call_and_takes_the_channel_out_of_service():
    d = Drive("china")
    d.cmd("dial", number="1")
    a = d.line.on_hw(HwEvent.ALARM, d.tick)
    assert d.events(a) == [ev.Cleared(38, "channel alarm"), ev.ServiceChange(False, "alarm")]
    assert d.line.wire_state == "OUT_OF_SERVICE"
    a = d.line.on_hw(HwEvent.NOALARM, d.tick)
    assert sent(d, a, "idle") and d.line.wire_state == "IDLE"


def test_trace_on_demand_goes_to_the_sink_and_to_files(tmp_path):
    d = Drive("china", max_dnis=1)
    writer = TraceWriter(tmp_path)
    got = []
    d.line.set_trace(True, lambda t: (got.append(t), writer(t)))
    d.cas("seize")
    d.pulse(1)
    d.pulse(1)
    d.pulse(15)
    d.mf(3)
    d.cmd("hangup", cause=17)
    d.mf(0)
    d.cas("clear_forward")
    writer.close()
    assert len(got) == 1
    trace = got[0]
    assert trace.direction == "in" and trace.summary["dnis"] == "1"
    kinds = [e.kind for e in trace.entries]
    assert {"cas_rx", "cas_tx", "mf_rx", "mf_tx", "state", "call"} <= set(kinds)
    texts = [e.text for e in trace.entries]
    assert "0011 seize" in texts and "1111 seize_ack" in texts and "B-2 on: busy" in texts
    files = os.listdir(tmp_path)
    assert files == [trace.filename]
    assert "incoming: dnis='1'" in (tmp_path / files[0]).read_text()
    d.line.set_trace(False)
    d.cas("seize")
    assert d.line.trace is None


def test_reset_channel_idles_a_stuck_call():
    d = Drive("china")
    d.cmd("dial", number="1")
    d.cas("seize_ack")                               # the far register never answers
    a = d.cmd("reset_channel")
    assert d.events(a)[0] == ev.Cleared(ev.CAUSE_TEMPORARY_FAILURE, "channel reset")
    assert isinstance(d.events(a)[-1], ev.ChannelReset) and ev.EndCall() in a
    assert sent(d, a, "idle") and d.line.state.value == "idle"
    assert ev.Media("r2_detect", (None,)) in a


def test_double_answer_when_the_variant_asks_for_it():
    d = Drive("china", max_dnis=1)
    d.line.variant = d.v = d.v.with_timers(double_answer_ms=400, answer_delay_ms=0)
    d.cas("seize")
    d.pulse(1)
    d.pulse(1)
    d.pulse(15)
    d.mf(3)
    d.cmd("answer")
    a = d.mf(0)
    assert sent(d, a, "answer") and d.events(a) == [ev.Answered()]
    n = ticks_of(400)
    assert d.run(n - 1) == []
    assert sent(d, d.run(1), "clear_back")
    assert d.run(n - 1) == [] and sent(d, d.run(1), "answer")


def test_span_alarm_clears_calls_and_lines_return_after_the_backoff():
    import types

    from drivers.signaling.r2.span import span_for
    span_cfg = types.SimpleNamespace(span=3, name="r2-3", r2_variant="china", options={})
    chans = [types.SimpleNamespace(channel=c, span=3) for c in (61, 62)]
    span = span_for(span_cfg, chans)
    line = span.lines[61]
    line.on_tick(1)
    line.on_command("dial", 1, number="1")
    out = span.on_alarm(8, 5)                         # red alarm
    by_channel = {}
    for ch, action in out:
        by_channel.setdefault(ch, []).append(action)
    assert ev.Emit(ev.Cleared(38, "channel alarm")) in by_channel[61]
    assert ev.Emit(ev.ServiceChange(False, "alarm")) in by_channel[62]
    assert line.wire_state == "OUT_OF_SERVICE" and not span.health.in_service
    assert span.on_alarm(0, 10) == []                 # cleared: wait the backoff first
    delay = span.health.backoff_ticks()
    assert all(span.on_tick(t) == [] for t in range(10, 10 + delay))
    back = span.on_tick(10 + delay)
    assert sorted({ch for ch, _ in back}) == [61, 62]
    assert (61, SetCas(0b1011)) in back and line.wire_state == "IDLE" and span.health.in_service
