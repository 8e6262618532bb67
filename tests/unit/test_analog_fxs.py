"""FXS line (a phone on our port): exact action sequences per scenario, timers by tick
count, refused commands leave the line untouched, stray inputs are ignored, and every
state is reachable and has a way back to idle."""
import pytest

from drivers.backends.base import ChannelEvent, HookOp, HwEvent
from drivers.media.engine import CallerIdEvent, DigitEvent, PlayDone, R2Event, ToneEvent
from drivers.signaling import events as ev
from drivers.signaling.analog import AnalogConfig, FxsLine, FxsState, SignalingError
from tests.analog_harness import TICK, cleared, cmd, emit, explore, feed, reach, run, snapshot

S = FxsState


def digit(d, start=0, duration=800):
    return DigitEvent(0, d, start, duration)


# Actions, short.
NEW, END = ev.NewCall(), ev.EndCall()
RING, RINGOFF = ev.Hook(HookOp.RING), ev.Hook(HookOp.RINGOFF)
STOP = ev.Media("stop")
EC_ON, EC_OFF = ev.Media("echo_cancel", (True,)), ev.Media("echo_cancel", (False,))


def tone(name):
    return ev.Media("play_tone", (name,))


def fsk(number, name=None):
    return ev.Media("send_callerid", (number, name, None, "callerid"))


OFFHOOK_ACTIONS = [NEW, tone("dial"), emit(ev.OffHook())]
HUNG_UP = [STOP, emit(ev.OnHook()), cleared(16, "phone hung up"), END]

SCENARIOS = {
    "dial tone, digits, hang up": (AnalogConfig(), [
        (0, HwEvent.RINGOFFHOOK, OFFHOOK_ACTIONS, S.DIALTONE),
        (10, digit("8", start=1600, duration=800), [STOP, emit(ev.Digit("8", 100, 1600))], S.COLLECTING),
        (20, digit("0", start=3200, duration=480), [emit(ev.Digit("0", 60, 3200))], S.COLLECTING),
        (30, HwEvent.WINKFLASH, [emit(ev.Flash())], S.COLLECTING),
        (40, HwEvent.ONHOOK, HUNG_UP, S.IDLE),
        (100000, TICK, [], S.IDLE),            # no timer survives the call
    ]),
    "no first digit: congestion until on-hook": (AnalogConfig(), [
        (0, HwEvent.RINGOFFHOOK, OFFHOOK_ACTIONS, S.DIALTONE),
        (499, TICK, [], S.DIALTONE),           # 10 s = 500 ticks of 20 ms
        (500, TICK, [STOP, tone("congestion"), cleared(28, "no digits dialled"), END], S.LOCKOUT),
        (501, digit("5"), [], S.LOCKOUT),
        (5000, TICK, [], S.LOCKOUT),
        (5001, HwEvent.ONHOOK, [STOP, emit(ev.OnHook())], S.IDLE),
    ]),
    "interdigit timeout restarts with each digit": (AnalogConfig(), [
        (0, HwEvent.RINGOFFHOOK, OFFHOOK_ACTIONS, S.DIALTONE),
        (100, digit("1"), [STOP, emit(ev.Digit("1", 100, 0))], S.COLLECTING),
        (290, TICK, [], S.COLLECTING),
        (290, digit("2"), [emit(ev.Digit("2", 100, 0))], S.COLLECTING),
        (489, TICK, [], S.COLLECTING),          # 4 s = 200 ticks after the last digit
        (490, TICK, [STOP, tone("congestion"), cleared(28, "interdigit timeout"), END], S.LOCKOUT),
    ]),
    "a 10 ms tick doubles the tick counts": (AnalogConfig(tick_ms=10), [
        (0, HwEvent.RINGOFFHOOK, OFFHOOK_ACTIONS, S.DIALTONE),
        (999, TICK, [], S.DIALTONE),
        (1000, TICK, [STOP, tone("congestion"), cleared(28, "no digits dialled"), END], S.LOCKOUT),
    ]),
    "application takes over, answers, hangs up": (AnalogConfig(), [
        (0, HwEvent.RINGOFFHOOK, OFFHOOK_ACTIONS, S.DIALTONE),
        (10, digit("8"), [STOP, emit(ev.Digit("8", 100, 0))], S.COLLECTING),
        (20, cmd("play_tone", tone="ringback"), [tone("ringback")], S.PROCEEDING),
        (10000, TICK, [], S.PROCEEDING),       # the line's digit timers are gone
        (10001, digit("9"), [emit(ev.Digit("9", 100, 0))], S.PROCEEDING),
        (10002, cmd("answer"), [STOP, EC_ON, emit(ev.Answered())], S.CONNECTED),
        (10003, HwEvent.WINKFLASH, [emit(ev.Flash())], S.CONNECTED),
        (10004, digit("#"), [emit(ev.Digit("#", 100, 0))], S.CONNECTED),
        (10005, cmd("play_prompt", files=["a.wav", "b.wav"], barge_in=True),
         [ev.Media("play_prompts", (("a.wav", "b.wav"), "prompt", True))], S.CONNECTED),
        (10006, PlayDone(0, "prompt", True, "5"), [emit(ev.PromptDone(True, "5"))], S.CONNECTED),
        (10007, PlayDone(0, None, False, ""), [], S.CONNECTED),     # not one of our prompts
        (10008, cmd("send_digits", digits="12*"), [ev.Media("send_dtmf", ("12*",))], S.CONNECTED),
        (10009, cmd("stop_media"), [STOP], S.CONNECTED),
        (10010, ToneEvent(0, "cng", 0), [emit(ev.ToneDetected("cng"))], S.CONNECTED),
        (10011, cmd("hangup", cause=16), [STOP, EC_OFF, tone("busy"), cleared(16, "hangup"), END],
         S.LOCKOUT),
        (10012, HwEvent.ONHOOK, [STOP, emit(ev.OnHook())], S.IDLE),
    ]),
    "a prompt during dial tone stops the dial tone first": (AnalogConfig(), [
        (0, HwEvent.RINGOFFHOOK, OFFHOOK_ACTIONS, S.DIALTONE),
        (5, cmd("play_prompt", files=["welcome.wav"]),
         [STOP, ev.Media("play_prompts", (("welcome.wav",), "prompt", False))], S.PROCEEDING),
        (600, TICK, [], S.PROCEEDING),
    ]),
    "answer straight from dial tone (hot line)": (AnalogConfig(echo_cancel=False), [
        (0, HwEvent.RINGOFFHOOK, OFFHOOK_ACTIONS, S.DIALTONE),
        (5, cmd("answer"), [STOP, emit(ev.Answered())], S.CONNECTED),
        (6, HwEvent.ONHOOK, HUNG_UP, S.IDLE),
    ]),
    "ring with FSK caller ID, answered while ringing": (AnalogConfig(), [
        (0, cmd("ring", caller_id="13812345678", caller_name="Li"), [NEW, RING], S.RINGING),
        (49, TICK, [], S.RINGING),
        (50, TICK, [RINGOFF], S.RINGING),      # 1 s on
        (74, TICK, [], S.RINGING),
        (75, TICK, [fsk("13812345678", "Li")], S.RINGING),   # 500 ms after the ring
        (120, PlayDone(0, "callerid", False, None), [emit(ev.CallerIdSent("13812345678"))], S.RINGING),
        (249, TICK, [], S.RINGING),
        (250, TICK, [RING], S.RINGING),        # 4 s off
        (260, HwEvent.RINGOFFHOOK, [RINGOFF, EC_ON, emit(ev.Answered())], S.CONNECTED),
        (3000, TICK, [], S.CONNECTED),
        (3001, HwEvent.ONHOOK, [STOP, EC_OFF, emit(ev.OnHook()), cleared(16, "phone hung up"), END],
         S.IDLE),
    ]),
    "answered during the caller ID spill: spill stopped, not reported sent": (AnalogConfig(), [
        (0, cmd("ring", caller_id="8001"), [NEW, RING], S.RINGING),
        (50, TICK, [RINGOFF], S.RINGING),
        (75, TICK, [fsk("8001")], S.RINGING),
        (80, HwEvent.RINGOFFHOOK, [STOP, EC_ON, emit(ev.Answered())], S.CONNECTED),
        (81, PlayDone(0, "callerid", True, None), [], S.CONNECTED),
    ]),
    "an interrupted spill is not reported sent": (AnalogConfig(), [
        (0, cmd("ring", caller_id="8001"), [NEW, RING], S.RINGING),
        (75, TICK, [RINGOFF, fsk("8001")], S.RINGING),
        (80, PlayDone(0, "callerid", True, None), [], S.RINGING),
        (81, PlayDone(0, "prompt", False, None), [], S.RINGING),
        (100, HwEvent.RINGOFFHOOK, [EC_ON, emit(ev.Answered())], S.CONNECTED),
    ]),
    "ring without caller ID sends none": (AnalogConfig(), [
        (0, cmd("ring"), [NEW, RING], S.RINGING),
        (50, TICK, [RINGOFF], S.RINGING),
        (75, TICK, [], S.RINGING),
        (100, HwEvent.RINGOFFHOOK, [EC_ON, emit(ev.Answered())], S.CONNECTED),
    ]),
    "callerid none: no spill even with a number": (AnalogConfig(callerid="none"), [
        (0, cmd("ring", caller_id="8001"), [NEW, RING], S.RINGING),
        (50, TICK, [RINGOFF], S.RINGING),
        (75, TICK, [], S.RINGING),
    ]),
    "DTMF caller ID goes before the first ring": (AnalogConfig(callerid="dtmf"), [
        (0, cmd("ring", caller_id="1234"), [NEW, ev.Media("send_dtmf", ("A1234C", "callerid"))],
         S.RINGING),
        (60, PlayDone(0, "callerid", False, None), [emit(ev.CallerIdSent("1234"))], S.RINGING),
        (84, TICK, [], S.RINGING),             # 6 digits x 200 ms + 500 ms gap = 85 ticks
        (85, TICK, [RING], S.RINGING),
        (134, TICK, [], S.RINGING),
        (135, TICK, [RINGOFF], S.RINGING),
        (140, HwEvent.RINGOFFHOOK, [EC_ON, emit(ev.Answered())], S.CONNECTED),
    ]),
    "double-ring cadence": (AnalogConfig(ring_cadence_ms=[400, 200, 400, 2000], callerid_delay_ms=300), [
        (0, cmd("ring", caller_id="5"), [NEW, RING], S.RINGING),
        (20, TICK, [RINGOFF], S.RINGING),
        (30, TICK, [RING], S.RINGING),
        (50, TICK, [RINGOFF], S.RINGING),
        (65, TICK, [fsk("5")], S.RINGING),
        (149, TICK, [], S.RINGING),
        (150, TICK, [RING], S.RINGING),
    ]),
    "hangup while ringing stops the ring": (AnalogConfig(), [
        (0, cmd("ring", caller_id="8001"), [NEW, RING], S.RINGING),
        (10, cmd("hangup", cause=21), [RINGOFF, cleared(21, "hangup"), END], S.IDLE),
        (1000, TICK, [], S.IDLE),
    ]),
    "hangup between rings after the spill": (AnalogConfig(), [
        (0, cmd("ring", caller_id="8001"), [NEW, RING], S.RINGING),
        (50, TICK, [RINGOFF], S.RINGING),
        (75, TICK, [fsk("8001")], S.RINGING),
        (80, cmd("hangup"), [STOP, cleared(16, "hangup"), END], S.IDLE),
    ]),
    "no answer: cleared with 19 while the ring is on": (AnalogConfig(max_ring_ms=10600), [
        (0, cmd("ring"), [NEW, RING], S.RINGING),
        (50, TICK, [RINGOFF], S.RINGING),
        (250, TICK, [RING], S.RINGING),
        (300, TICK, [RINGOFF], S.RINGING),
        (500, TICK, [RING], S.RINGING),
        (529, TICK, [], S.RINGING),
        (530, TICK, [RINGOFF, cleared(19, "no answer"), END], S.IDLE),
        (10000, TICK, [], S.IDLE),
    ]),
    "port alarm while idle, then restored": (AnalogConfig(), [
        (0, HwEvent.ALARM, [emit(ev.ServiceChange(False, "port alarm"))], S.OUT_OF_SERVICE),
        (1, HwEvent.RINGOFFHOOK, [], S.OUT_OF_SERVICE),
        (2, HwEvent.NOALARM, [emit(ev.ServiceChange(True, "alarm cleared"))], S.IDLE),
    ]),
    "port alarm in a call": (AnalogConfig(), [
        (0, HwEvent.RINGOFFHOOK, OFFHOOK_ACTIONS, S.DIALTONE),
        (1, HwEvent.ALARM, [STOP, cleared(38, "port alarm"), END,
                            emit(ev.ServiceChange(False, "port alarm"))], S.OUT_OF_SERVICE),
        (1000, TICK, [], S.OUT_OF_SERVICE),
    ]),
    "port alarm while ringing": (AnalogConfig(), [
        (0, cmd("ring"), [NEW, RING], S.RINGING),
        (1, HwEvent.ALARM, [RINGOFF, cleared(38, "port alarm"), END,
                            emit(ev.ServiceChange(False, "port alarm"))], S.OUT_OF_SERVICE),
        (1000, TICK, [], S.OUT_OF_SERVICE),
    ]),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario(name):
    cfg, steps = SCENARIOS[name]
    run(FxsLine(3, cfg), steps)


def test_ticks_skipped_still_fire_in_order():
    """A late on_tick fires every due edge in deadline order."""
    line = FxsLine(3, AnalogConfig())
    line.on_command("ring", 0, caller_id="8001")
    assert line.on_tick(260) == [RINGOFF, fsk("8001"), RING]


def test_backend_channel_event_accepted():
    line = FxsLine(3, AnalogConfig())
    assert line.on_hw(ChannelEvent(channel=3, event=HwEvent.RINGOFFHOOK), 0) == OFFHOOK_ACTIONS


# ---- refusals ---------------------------------------------------------------------------
SETUP = {
    S.IDLE: [],
    S.DIALTONE: [(0, HwEvent.RINGOFFHOOK)],
    S.COLLECTING: [(0, HwEvent.RINGOFFHOOK), (1, digit("1"))],
    S.PROCEEDING: [(0, HwEvent.RINGOFFHOOK), (1, cmd("play_tone", tone="ringback"))],
    S.RINGING: [(0, cmd("ring", caller_id="1"))],
    S.CONNECTED: [(0, cmd("ring")), (1, HwEvent.RINGOFFHOOK)],
    S.LOCKOUT: [(0, HwEvent.RINGOFFHOOK), (1, cmd("hangup"))],
    S.OUT_OF_SERVICE: [(0, HwEvent.ALARM)],
}


def line_in(state, cfg=None):
    line = FxsLine(3, cfg or AnalogConfig())
    for tick, what in SETUP[state]:
        feed(line, tick, what)
    assert line.state == state
    return line


REFUSED = [
    (S.IDLE, "answer", {}, "no call to answer"),
    (S.IDLE, "hangup", {}, "no call to hang up"),
    (S.IDLE, "play_tone", {"tone": "busy"}, "no call"),
    (S.IDLE, "dial", {"number": "123"}, "cannot dial"),
    (S.DIALTONE, "ring", {}, "busy with a call"),
    (S.COLLECTING, "dial", {"number": "1"}, "cannot dial"),
    (S.RINGING, "answer", {}, "only the phone can answer"),
    (S.RINGING, "ring", {}, "busy with a call"),
    (S.RINGING, "play_prompt", {"files": ["a.wav"]}, "on-hook"),
    (S.RINGING, "send_digits", {"digits": "1"}, "on-hook"),
    (S.CONNECTED, "answer", {}, "already connected"),
    (S.CONNECTED, "ring", {}, "busy with a call"),
    (S.LOCKOUT, "ring", {}, "off-hook"),
    (S.LOCKOUT, "hangup", {}, "waiting for the phone to hang up"),
    (S.LOCKOUT, "play_tone", {"tone": "dial"}, "waiting for the phone to hang up"),
    (S.OUT_OF_SERVICE, "ring", {}, "out of service"),
    (S.OUT_OF_SERVICE, "hangup", {}, "out of service"),
    # bad arguments, in a state where the command itself would be fine
    (S.IDLE, "ring", {"caller_id": "12a"}, "cannot be sent as DTMF"),
    (S.IDLE, "ring", {"caller_id": 12}, "must be text"),
    (S.IDLE, "ring", {"number": "12"}, "unexpected argument 'number'"),
    (S.IDLE, "transfer", {}, "unknown command 'transfer'"),
    (S.CONNECTED, "hangup", {"cause": 0}, "cause must be a Q.850 cause"),
    (S.CONNECTED, "hangup", {"cause": "16"}, "cause must be a Q.850 cause"),
    (S.CONNECTED, "play_prompt", {"files": []}, "non-empty list"),
    (S.CONNECTED, "play_prompt", {"files": "a.wav"}, "non-empty list"),
    (S.CONNECTED, "play_prompt", {"files": ["a.wav"], "barge_in": "yes"}, "true or false"),
    (S.CONNECTED, "play_tone", {}, "tone is missing"),
    (S.CONNECTED, "send_digits", {"digits": "12x"}, "cannot be sent as DTMF"),
    (S.CONNECTED, "send_digits", {"digits": ""}, "digits is missing"),
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
        before = snapshot(line)
        assert line.on_command("status", 5) == []
        assert snapshot(line) == before


# ---- stray inputs -----------------------------------------------------------------------
STRAY_MEDIA = [R2Event(0, 1, 0), object(), ToneEvent(0, "", 0), CallerIdEvent(0, "1", "x")]


@pytest.mark.parametrize("state", list(S))
def test_inputs_without_a_transition_are_ignored(state):
    for hw in list(HwEvent) + [99]:
        line = line_in(state)
        before = snapshot(line)
        if (state, hw) in FxsLine.TRANSITIONS:
            continue
        assert line.on_hw(hw, 50) == [], hw
        assert snapshot(line) == before
    for media in STRAY_MEDIA:
        line = line_in(state)
        before = snapshot(line)
        assert line.on_media(media, 50) == []
        assert snapshot(line) == before


# ---- the transition table as a graph ------------------------------------------------------
FXS_INPUTS = (list(HwEvent) + [digit("1"), ToneEvent(0, "busy", 0), PlayDone(0, "prompt", False, ""),
                                CallerIdEvent(0, "1", "")]
              + [cmd("answer"), cmd("hangup"), cmd("ring", caller_id="1"), cmd("dial", number="1"),
                 cmd("play_tone", tone="ringback"), cmd("stop_media"), cmd("play_prompt", files=["a"]),
                 cmd("send_digits", digits="1")])


ALARMS = (HwEvent.ALARM, HwEvent.NOALARM)


@pytest.mark.parametrize("callerid", ["fsk", "dtmf", "none"])
def test_every_state_reachable_and_returns_to_idle(callerid):
    make = lambda: FxsLine(3, AnalogConfig(callerid=callerid))   # noqa: E731
    # Without alarms: every call state is reached and left by the normal path ...
    edges = explore(make, [i for i in FXS_INPUTS if i not in ALARMS])
    assert reach(edges, S.IDLE) == set(S) - {S.OUT_OF_SERVICE}
    for state in set(S) - {S.OUT_OF_SERVICE}:
        assert S.IDLE in reach(edges, state), f"{state} has no way back to idle"
    # ... and an alarm takes any state out of service, which NOALARM ends.
    edges = explore(make, FXS_INPUTS)
    for state in S:
        assert S.OUT_OF_SERVICE in edges[state], f"{state} ignores a port alarm"
    assert edges[S.OUT_OF_SERVICE] == {S.OUT_OF_SERVICE, S.IDLE}


def test_tables_cover_every_state():
    states_in_table = {s for s, _ in FxsLine.TRANSITIONS}
    assert states_in_table == set(S)
    assert set(FxsLine.WIRE_STATE) == set(S) and set(FxsLine.STATE_TEXT) == set(S)


# ---- configuration ----------------------------------------------------------------------
@pytest.mark.parametrize("kwargs,field", [
    ({"callerid": "sms"}, "callerid"),
    ({"ring_cadence_ms": (1000,)}, "ring_cadence_ms"),
    ({"ring_cadence_ms": (1000, 0)}, "ring_cadence_ms"),
    ({"first_digit_timeout_ms": -1}, "first_digit_timeout_ms"),
    ({"max_ring_ms": "60s"}, "max_ring_ms"),
    ({"busy_detect": "yes"}, "busy_detect"),
    ({"tick_ms": 0}, "tick_ms"),
    ({"callerid_delay_ms": 4000}, "callerid_delay_ms"),
    ({"callerid_dtmf_start": "E"}, "callerid_dtmf_start"),
    ({"flash_min_ms": 900}, "flash_min_ms"),
])
def test_bad_settings_are_named(kwargs, field):
    with pytest.raises(ValueError, match=field):
        AnalogConfig(**kwargs)


def test_cadence_from_a_config_file_list():
    assert AnalogConfig(ring_cadence_ms=[400, 200, 400, 2000]).ring_cadence_ms == (400, 200, 400, 2000)


# ---- with the real media engine ------------------------------------------------------------
def test_fsk_caller_id_reaches_the_phone_through_the_media_engine():
    """Row 0 is the FXS port, row 1 listens to what it sends like the phone would."""
    import numpy as np

    from drivers.media import g711
    from drivers.media.engine import MediaEngine

    engine = MediaEngine(2, load_prompts="inline")
    line = FxsLine(1, AnalogConfig())
    events, phone_heard = [], []

    def carry_out(actions):
        for a in actions:
            if isinstance(a, ev.Media):
                getattr(engine, a.method)(0, *a.args)
            elif isinstance(a, ev.Emit):
                events.append(a.event)

    carry_out(line.on_command("ring", 0, caller_id="13812345678", caller_name="Li"))
    engine.receive_callerid(1, True)
    silence = g711.silence_byte("alaw")
    tx = np.full((2, 160), silence, dtype=np.uint8)
    for tick in range(1, 200):
        rx = np.full((2, 160), silence, dtype=np.uint8)
        rx[1] = tx[0]
        tx, media_events = engine.tick(rx)
        for m in media_events:
            if m.row == 0:
                carry_out(line.on_media(m, tick))
            else:
                phone_heard.append(m)
        carry_out(line.on_tick(tick))
    assert [(m.number, m.name) for m in phone_heard] == [("13812345678", "Li")]
    assert events == [ev.CallerIdSent("13812345678")]
