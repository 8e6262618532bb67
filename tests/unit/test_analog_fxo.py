"""FXO line (our port on a CO line): exact action sequences per scenario, timers by tick
count, refused commands leave the line untouched, stray inputs are ignored, and every
state is reachable and has a way back to idle."""
import pytest

from drivers.backends.base import HookOp, HwEvent
from drivers.media.engine import CallerIdEvent, DigitEvent, PlayDone, R2Event, ToneEvent
from drivers.signaling import events as ev
from drivers.signaling.analog import AnalogConfig, FxoLine, FxoState, SignalingError
from tests.analog_harness import TICK, cleared, cmd, emit, explore, feed, reach, run, snapshot

S = FxoState


def digit(d):
    return DigitEvent(0, d, 0, 800)


def heard(name):
    return ToneEvent(0, name, 0)


NEW, END = ev.NewCall(), ev.EndCall()
OFFHOOK, ONHOOK = ev.Hook(HookOp.OFFHOOK), ev.Hook(HookOp.ONHOOK)
STOP = ev.Media("stop")
CID_ON, CID_OFF = ev.Media("receive_callerid", (True,)), ev.Media("receive_callerid", (False,))
TONES_ON, TONES_OFF = ev.Media("detect_tones", (True,)), ev.Media("detect_tones", (False,))
DIALTONE_ON = ev.Media("detect_tones", (True, ("dial",)))     # dial tone alone: heard sooner
EC_ON, EC_OFF = ev.Media("echo_cancel", (True,)), ev.Media("echo_cancel", (False,))
ANSWERED = ev.Emit(ev.Answered())


def incoming(ani="", name=""):
    return [NEW, emit(ev.Incoming(ani=ani, caller_name=name))]


ANSWER = [OFFHOOK, CID_OFF, TONES_ON, EC_ON, ANSWERED]
RELEASE = [ONHOOK, STOP, TONES_OFF, EC_OFF]          # on-hook from a connected call
# Outbound up to PROCEEDING: seize, dial tone heard, digits sent, PlayDone.
DIAL_8001 = [
    (0, cmd("dial", number="8001"), [NEW, OFFHOOK, DIALTONE_ON], S.WAIT_DIALTONE),
    (20, heard("dial"), [ev.Media("send_dtmf", ("8001", "dial"))], S.DIALING),
    (30, digit("8"), [], S.DIALING),                 # our own digits echoed back: not events
    (40, PlayDone(0, "prompt", True, None), [], S.DIALING),   # not the dialling finishing
    (58, PlayDone(0, "dial", False, None), [TONES_ON, emit(ev.DialComplete()), emit(ev.Proceeding())], S.PROCEEDING),
]

SCENARIOS = {
    "incoming with FSK caller ID, answered, far end hangs up (busy tone)": (AnalogConfig(), [
        (0, HwEvent.RINGBEGIN, [CID_ON], S.RING_DETECTED),
        (0, HwEvent.RINGERON, [], S.RING_DETECTED),          # the same ring, reported twice
        (50, HwEvent.RINGEROFF, [], S.RING_DETECTED),
        (80, CallerIdEvent(0, "13812345678", "Zhang"), incoming("13812345678", "Zhang"), S.OFFERED),
        (250, HwEvent.RINGERON, [], S.OFFERED),
        (260, cmd("answer"), ANSWER, S.CONNECTED),
        (300, digit("5"), [emit(ev.Digit("5", 100, 0))], S.CONNECTED),
        (310, heard("cng"), [emit(ev.ToneDetected("cng"))], S.CONNECTED),
        (1000, heard("busy"), RELEASE + [cleared(16, "busy tone"), END], S.IDLE),
        (100000, TICK, [], S.IDLE),
    ]),
    "no caller ID: offered at the second ring, then abandoned": (AnalogConfig(), [
        (0, HwEvent.RINGERON, [CID_ON], S.RING_DETECTED),
        (50, HwEvent.RINGEROFF, [], S.RING_DETECTED),
        (250, HwEvent.RINGERON, incoming(), S.OFFERED),
        (300, HwEvent.RINGEROFF, [], S.OFFERED),
        (599, TICK, [], S.OFFERED),                           # 6 s = 300 ticks after the last edge
        (600, TICK, [CID_OFF, cleared(16, "caller abandoned"), END], S.IDLE),
    ]),
    "DAHDI style: RINGBEGIN then RINGOFFHOOK for one ring, no ring-off reports": (AnalogConfig(), [
        (0, HwEvent.RINGBEGIN, [CID_ON], S.RING_DETECTED),
        (10, HwEvent.RINGOFFHOOK, [], S.RING_DETECTED),       # within the 2 s debounce
        (250, HwEvent.RINGOFFHOOK, incoming(), S.OFFERED),    # the next ring
    ]),
    "caller gives up before any caller ID: no call ever existed": (AnalogConfig(), [
        (0, HwEvent.RINGERON, [CID_ON], S.RING_DETECTED),
        (50, HwEvent.RINGEROFF, [], S.RING_DETECTED),
        (349, TICK, [], S.RING_DETECTED),
        (350, TICK, [CID_OFF], S.IDLE),
    ]),
    "callerid none: offered at the first ring": (AnalogConfig(callerid="none"), [
        (0, HwEvent.RINGERON, incoming(), S.OFFERED),
        (5, cmd("answer"), [OFFHOOK, TONES_ON, EC_ON, ANSWERED], S.CONNECTED),
    ]),
    "DTMF caller ID before the first ring": (AnalogConfig(callerid="dtmf"), [
        *[(i, digit(d), [], S.IDLE) for i, d in enumerate("A13812345678C")],
        (40, HwEvent.RINGERON, incoming("13812345678"), S.OFFERED),
    ]),
    "DTMF caller ID in the Taiwan framing (D<number>C)": (AnalogConfig(callerid="dtmf"), [
        *[(i, digit(d), [], S.IDLE) for i, d in enumerate("D0227654321C")],
        (40, HwEvent.RINGERON, incoming("0227654321"), S.OFFERED),
    ]),
    "DTMF caller ID withheld (D3#: private): offered at once without a number": (
        AnalogConfig(callerid="dtmf"), [
            *[(i, digit(d), [], S.IDLE) for i, d in enumerate("D3#")],
            (40, HwEvent.RINGERON, incoming(""), S.OFFERED),
        ]),
    "stale DTMF digits are not caller ID": (AnalogConfig(callerid="dtmf"), [
        *[(i, digit(d), [], S.IDLE) for i, d in enumerate("A1C")],
        (400, HwEvent.RINGERON, [], S.RING_DETECTED),         # 5 s window passed
        (450, HwEvent.RINGEROFF, [], S.RING_DETECTED),
        (650, HwEvent.RINGERON, incoming(), S.OFFERED),
    ]),
    "polarity reversal disconnects a connected call": (AnalogConfig(callerid="none"), [
        (0, HwEvent.RINGERON, incoming(), S.OFFERED),
        (5, cmd("answer"), [OFFHOOK, TONES_ON, EC_ON, ANSWERED], S.CONNECTED),
        (500, HwEvent.POLARITY, RELEASE + [cleared(16, "polarity reversal"), END], S.IDLE),
    ]),
    "polarity ignored without polarity_disconnect": (AnalogConfig(callerid="none", polarity_disconnect=False), [
        (0, HwEvent.RINGERON, incoming(), S.OFFERED),
        (5, cmd("answer"), [OFFHOOK, TONES_ON, EC_ON, ANSWERED], S.CONNECTED),
        (500, HwEvent.POLARITY, [], S.CONNECTED),
    ]),
    "loss of loop current disconnects": (AnalogConfig(callerid="none"), [
        (0, HwEvent.RINGERON, incoming(), S.OFFERED),
        (5, cmd("answer"), [OFFHOOK, TONES_ON, EC_ON, ANSWERED], S.CONNECTED),
        (500, HwEvent.ONHOOK, RELEASE + [cleared(16, "loop current lost"), END], S.IDLE),
    ]),
    "without busy_detect a busy tone is only reported": (AnalogConfig(callerid="none", busy_detect=False), [
        (0, HwEvent.RINGERON, incoming(), S.OFFERED),
        (5, cmd("answer"), [OFFHOOK, EC_ON, ANSWERED], S.CONNECTED),
        (500, heard("busy"), [emit(ev.ToneDetected("busy"))], S.CONNECTED),
        (600, cmd("hangup", cause=16), [ONHOOK, STOP, EC_OFF, cleared(16, "hangup"), END], S.IDLE),
    ]),
    "application media on a connected call": (AnalogConfig(callerid="none"), [
        (0, HwEvent.RINGERON, incoming(), S.OFFERED),
        (5, cmd("answer"), [OFFHOOK, TONES_ON, EC_ON, ANSWERED], S.CONNECTED),
        (6, cmd("play_prompt", files=["menu.wav"]), [ev.Media("play_prompts", (("menu.wav",), "prompt", False))],
         S.CONNECTED),
        (7, PlayDone(0, "prompt", False, ""), [emit(ev.PromptDone(False, ""))], S.CONNECTED),
        (8, cmd("play_tone", tone="ringback"), [ev.Media("play_tone", ("ringback",))], S.CONNECTED),
        (9, cmd("stop_media"), [STOP], S.CONNECTED),
        (10, cmd("send_digits", digits="0#"), [ev.Media("send_dtmf", ("0#",))], S.CONNECTED),
        (11, cmd("hangup", cause=31), RELEASE + [cleared(31, "hangup"), END], S.IDLE),
    ]),
    "declined call: the remaining rings are ignored": (AnalogConfig(callerid="none"), [
        (0, HwEvent.RINGERON, incoming(), S.OFFERED),
        (10, cmd("hangup", cause=21), [cleared(21, "declined"), END], S.DECLINED),
        (50, HwEvent.RINGEROFF, [], S.DECLINED),
        (250, HwEvent.RINGERON, [], S.DECLINED),
        (300, HwEvent.RINGEROFF, [], S.DECLINED),
        (599, TICK, [], S.DECLINED),
        (600, TICK, [], S.IDLE),
        (700, HwEvent.RINGERON, incoming(), S.OFFERED),       # a new call
    ]),
    "outbound: dial tone, digits, ringback, declared answered, busy": (AnalogConfig(), [
        *DIAL_8001,
        (100, heard("ringback"), [emit(ev.Alerting())], S.ALERTING),
        (350, heard("ringback"), [], S.ALERTING),
        (400, digit("1"), [emit(ev.Digit("1", 100, 0))], S.ALERTING),
        (500, cmd("answer"), [EC_ON, ANSWERED], S.CONNECTED),
        (900, heard("busy"), RELEASE + [cleared(16, "busy tone"), END], S.IDLE),
    ]),
    "outbound without dial tone: dial anyway, digits timed": (AnalogConfig(), [
        (0, cmd("dial", number="8001"), [NEW, OFFHOOK, DIALTONE_ON], S.WAIT_DIALTONE),
        (10, heard("busy"), [], S.WAIT_DIALTONE),
        (49, TICK, [], S.WAIT_DIALTONE),                      # 1 s = 50 ticks
        (50, TICK, [ev.Media("send_dtmf", ("8001", "dial"))], S.DIALING),
        (89, TICK, [], S.DIALING),                            # 4 digits x 200 ms = 40 ticks
        (90, TICK, [TONES_ON, emit(ev.DialComplete()), emit(ev.Proceeding())], S.PROCEEDING),
        (100, heard("busy"), [ONHOOK, STOP, TONES_OFF, cleared(17, "busy tone"), END], S.IDLE),
    ]),
    "outbound: congestion tone": (AnalogConfig(), [
        *DIAL_8001,
        (100, heard("congestion"), [ONHOOK, STOP, TONES_OFF, cleared(42, "congestion tone"), END], S.IDLE),
    ]),
    "outbound: answer on polarity, disconnect on the next": (AnalogConfig(answer_on_polarity=True), [
        *DIAL_8001,
        (100, heard("ringback"), [emit(ev.Alerting())], S.ALERTING),
        (300, HwEvent.POLARITY, [EC_ON, ANSWERED], S.CONNECTED),
        (900, HwEvent.POLARITY, RELEASE + [cleared(16, "polarity reversal"), END], S.IDLE),
    ]),
    "outbound: polarity means nothing without answer_on_polarity": (AnalogConfig(), [
        *DIAL_8001,
        (300, HwEvent.POLARITY, [], S.PROCEEDING),
    ]),
    "outbound hung up while waiting for dial tone": (AnalogConfig(), [
        (0, cmd("dial", number="1"), [NEW, OFFHOOK, DIALTONE_ON], S.WAIT_DIALTONE),
        (5, cmd("hangup"), [ONHOOK, STOP, TONES_OFF, cleared(16, "hangup"), END], S.IDLE),
        (1000, TICK, [], S.IDLE),
    ]),
    "battery lost in a call, then restored": (AnalogConfig(callerid="none"), [
        (0, HwEvent.RINGERON, incoming(), S.OFFERED),
        (5, cmd("answer"), [OFFHOOK, TONES_ON, EC_ON, ANSWERED], S.CONNECTED),
        (9, HwEvent.ALARM, RELEASE + [cleared(38, "no battery"), END,
                                      emit(ev.ServiceChange(False, "no battery"))], S.OUT_OF_SERVICE),
        (10, HwEvent.RINGERON, [], S.OUT_OF_SERVICE),
        (11, HwEvent.ALARM, [], S.OUT_OF_SERVICE),
        (20, HwEvent.NOALARM, [emit(ev.ServiceChange(True, "battery restored"))], S.IDLE),
    ]),
    "battery lost while a call is offered": (AnalogConfig(), [
        (0, HwEvent.RINGERON, [CID_ON], S.RING_DETECTED),
        (80, CallerIdEvent(0, "1", ""), incoming("1"), S.OFFERED),
        (90, HwEvent.ALARM, [CID_OFF, cleared(38, "no battery"), END,
                             emit(ev.ServiceChange(False, "no battery"))], S.OUT_OF_SERVICE),
        (1000, TICK, [], S.OUT_OF_SERVICE),
    ]),
    "battery lost while idle": (AnalogConfig(), [
        (0, HwEvent.ALARM, [emit(ev.ServiceChange(False, "no battery"))], S.OUT_OF_SERVICE),
    ]),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario(name):
    cfg, steps = SCENARIOS[name]
    run(FxoLine(5, cfg), steps)


# ---- refusals ---------------------------------------------------------------------------
SETUP = {
    S.IDLE: [],
    S.RING_DETECTED: [(0, HwEvent.RINGERON)],
    S.OFFERED: [(0, HwEvent.RINGERON), (80, CallerIdEvent(0, "1", ""))],
    S.DECLINED: [(0, HwEvent.RINGERON), (80, CallerIdEvent(0, "1", "")), (90, cmd("hangup"))],
    S.WAIT_DIALTONE: [(0, cmd("dial", number="12"))],
    S.DIALING: [(0, cmd("dial", number="12")), (50, TICK)],
    S.PROCEEDING: [(0, cmd("dial", number="12")), (50, TICK), (70, TICK)],
    S.ALERTING: [(0, cmd("dial", number="12")), (50, TICK), (70, TICK), (80, heard("ringback"))],
    S.CONNECTED: [(0, HwEvent.RINGERON), (80, CallerIdEvent(0, "1", "")), (90, cmd("answer"))],
    S.OUT_OF_SERVICE: [(0, HwEvent.ALARM)],
}


def line_in(state, cfg=None):
    line = FxoLine(5, cfg or AnalogConfig())
    for tick, what in SETUP[state]:
        feed(line, tick, what)
    assert line.state == state
    return line


REFUSED = [
    (S.IDLE, "ring", {"caller_id": "1"}, "cannot ring a phone"),
    (S.IDLE, "answer", {}, "no incoming call"),
    (S.IDLE, "hangup", {}, "no call to hang up"),
    (S.IDLE, "send_digits", {"digits": "1"}, "no call"),
    (S.IDLE, "dial", {"number": ""}, "number is missing"),
    (S.IDLE, "dial", {"number": "800-1"}, "cannot be sent as DTMF"),
    (S.IDLE, "dial", {}, "number is missing"),
    (S.RING_DETECTED, "answer", {}, "no call has been offered"),
    (S.RING_DETECTED, "dial", {"number": "1"}, "ringing with an incoming call"),
    (S.OFFERED, "dial", {"number": "1"}, "ringing with an incoming call"),
    (S.OFFERED, "play_prompt", {"files": ["a.wav"]}, "on-hook"),
    (S.DECLINED, "answer", {}, "declined"),
    (S.DECLINED, "hangup", {}, "already cleared"),
    (S.WAIT_DIALTONE, "send_digits", {"digits": "1"}, "being dialled"),
    (S.DIALING, "play_tone", {"tone": "busy"}, "being dialled"),
    (S.DIALING, "answer", {}, "dialling"),
    (S.PROCEEDING, "dial", {"number": "1"}, "already in progress"),
    (S.CONNECTED, "answer", {}, "already connected"),
    (S.CONNECTED, "ring", {}, "cannot ring a phone"),
    (S.CONNECTED, "hangup", {"cause": 300}, "cause must be a Q.850 cause"),
    (S.OUT_OF_SERVICE, "dial", {"number": "1"}, "out of service"),
    (S.OUT_OF_SERVICE, "answer", {}, "no battery"),
]


@pytest.mark.parametrize("state,name,args,reason", REFUSED,
                         ids=[f"{s.name}-{n}-{i}" for i, (s, n, _, _) in enumerate(REFUSED)])
def test_refused_command_changes_nothing(state, name, args, reason):
    line = line_in(state)
    before = snapshot(line)
    with pytest.raises(SignalingError, match=reason):
        line.on_command(name, 77, **args)
    assert snapshot(line) == before


def test_status_is_accepted_in_every_state():
    for state in S:
        line = line_in(state)
        assert line.on_command("status", 95) == []
        assert line.state == state


def test_wire_state_names_a_cardd_channel_state():
    from hotline_proto import cardd_pb2
    for state in S:
        assert line_in(state).wire_state in cardd_pb2.ChannelState.keys()


# ---- stray inputs -----------------------------------------------------------------------
STRAY_MEDIA = [R2Event(0, 1, 0), object(), ToneEvent(0, "", 0)]


@pytest.mark.parametrize("state", list(S))
def test_inputs_without_a_transition_are_ignored(state):
    for hw in list(HwEvent) + [99]:
        if (state, hw) in FxoLine.TRANSITIONS:
            continue
        line = line_in(state)
        before = snapshot(line)
        assert line.on_hw(hw, 95) == [], hw
        assert snapshot(line) == before
    media = STRAY_MEDIA + [m for m, key in [(digit("1"), "digit"), (heard("dial"), "tone.dial"),
                                            (PlayDone(0, "prompt", False, ""), "play_done"),
                                            (CallerIdEvent(0, "1", ""), "callerid")]
                           if (state, key) not in FxoLine.TRANSITIONS
                           and (key != "tone.dial" or (state, "tone.*") not in FxoLine.TRANSITIONS)
                           and not (state == S.IDLE and key == "digit")]
    for m in media:
        line = line_in(state)
        before = snapshot(line)
        assert line.on_media(m, 95) == [], m
        assert snapshot(line) == before


# ---- the transition table as a graph ------------------------------------------------------
ALARMS = (HwEvent.ALARM, HwEvent.NOALARM)
FXO_INPUTS = (list(HwEvent) + [digit("1"), CallerIdEvent(0, "1", ""), PlayDone(0, None, False, "")]
              + [heard(t) for t in ("dial", "ringback", "busy", "congestion", "cng")]
              + [cmd("answer"), cmd("hangup"), cmd("dial", number="1"), cmd("ring"),
                 cmd("play_tone", tone="busy"), cmd("send_digits", digits="1")])


@pytest.mark.parametrize("kwargs,unused", [
    ({}, set()),
    ({"callerid": "none"}, {S.RING_DETECTED}),     # offered at the first ring: nothing to wait for
    ({"callerid": "dtmf"}, set()),
    ({"answer_on_polarity": True, "busy_detect": False}, set()),
])
def test_every_state_reachable_and_returns_to_idle(kwargs, unused):
    make = lambda: FxoLine(5, AnalogConfig(**kwargs))   # noqa: E731
    edges = explore(make, [i for i in FXO_INPUTS if i not in ALARMS])
    assert reach(edges, S.IDLE) == set(S) - {S.OUT_OF_SERVICE} - unused
    for state in set(S) - {S.OUT_OF_SERVICE} - unused:
        assert S.IDLE in reach(edges, state), f"{state} has no way back to idle"
    edges = explore(make, FXO_INPUTS)
    for state in set(S) - unused:
        assert S.OUT_OF_SERVICE in edges[state], f"{state} ignores a battery alarm"
    assert edges[S.OUT_OF_SERVICE] == {S.OUT_OF_SERVICE, S.IDLE}


def test_tables_cover_every_state():
    assert {s for s, _ in FxoLine.TRANSITIONS} == set(S)
    assert set(FxoLine.WIRE_STATE) == set(S) and set(FxoLine.STATE_TEXT) == set(S)


# ---- with the real media engine ------------------------------------------------------------
class Exchange:
    """Row 0: our FXO port, driven by the line. Row 1: the exchange end of the wire, driven
    by the test. Each row receives what the other sent the tick before."""

    def __init__(self, cfg):
        import numpy as np

        from drivers.media import g711
        from drivers.media.engine import MediaEngine
        self.np = np
        self.engine = MediaEngine(2, load_prompts="inline")
        self.line = FxoLine(5, cfg)
        self.silence = g711.silence_byte("alaw")
        self.tx = np.full((2, 160), self.silence, dtype=np.uint8)
        self.tick = 0
        self.hooks, self.events, self.co_heard = [], [], []

    def carry_out(self, actions):
        for a in actions:
            if isinstance(a, ev.Media):
                getattr(self.engine, a.method)(0, *a.args)
            elif isinstance(a, ev.Hook):
                self.hooks.append(a.op)
            elif isinstance(a, ev.Emit):
                self.events.append(a.event)

    def run(self, ticks, until=None):
        for _ in range(ticks):
            self.tick += 1
            rx = self.np.full((2, 160), self.silence, dtype=self.np.uint8)
            rx[0], rx[1] = self.tx[1], self.tx[0]
            self.tx, media_events = self.engine.tick(rx)
            for m in media_events:
                if m.row == 0:
                    self.carry_out(self.line.on_media(m, self.tick))
                else:
                    self.co_heard.append(m)
            self.carry_out(self.line.on_tick(self.tick))
            if until is not None and until():
                return


def test_outbound_call_dials_on_dial_tone_and_hears_busy():
    x = Exchange(AnalogConfig(echo_cancel=False))   # the echo canceller is not this test's subject
    x.carry_out(x.line.on_command("dial", 0, number="8001"))
    assert x.hooks == [HookOp.OFFHOOK]
    x.engine.play_tone(1, "dial")                  # the exchange answers the seizure
    x.run(30, until=lambda: x.line.state == S.DIALING)
    assert x.line.state == S.DIALING and x.tick < 30     # dial tone heard, not the 1 s wait
    x.engine.stop(1)
    x.run(100, until=lambda: x.line.state == S.PROCEEDING)
    assert [d.digit for d in x.co_heard if type(d).__name__ == "DigitEvent"] == list("8001")
    assert x.events == [ev.DialComplete(), ev.Proceeding()]
    assert x.tick < 100                            # 4 digits of 200 ms, not the fallback
    x.engine.play_tone(1, "busy")                  # the called party is busy
    x.run(150, until=lambda: x.line.state == S.IDLE)
    assert x.line.state == S.IDLE
    assert x.events[2:] == [ev.Cleared(17, "busy tone")]
    assert x.hooks == [HookOp.OFFHOOK, HookOp.ONHOOK]


def test_incoming_caller_id_offer_answer_and_busy_tone_disconnect():
    x = Exchange(AnalogConfig(echo_cancel=False))   # the echo canceller is not this test's subject
    x.carry_out(x.line.on_hw(HwEvent.RINGBEGIN, 0))
    x.carry_out(x.line.on_hw(HwEvent.RINGEROFF, 50))
    x.tick = 50
    x.engine.send_callerid(1, "13812345678", "Zhang")   # between the rings, as a CO does
    x.run(150, until=lambda: x.line.state == S.OFFERED)
    assert x.events == [ev.Incoming(ani="13812345678", caller_name="Zhang")]
    x.carry_out(x.line.on_command("answer", x.tick))
    assert x.line.state == S.CONNECTED and x.hooks == [HookOp.OFFHOOK]
    x.engine.play_tone(1, "busy")                  # the caller hung up: the CO sends busy
    x.run(150, until=lambda: x.line.state == S.IDLE)
    assert x.events[1:] == [ev.Answered(), ev.Cleared(16, "busy tone")]
    assert x.hooks == [HookOp.OFFHOOK, HookOp.ONHOOK]
