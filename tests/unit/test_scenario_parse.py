"""ctisim scenarios: the shipped ones load; bad ones are refused naming file, line and key;
expectations judge an event log as documented."""
import glob
import os
import textwrap

import pytest

from drivers.config import load_cardd_config
from hotline_proto import cardd_pb2
from simulators.scenario import (ScenarioError, ScenarioRun, check_against_cards, load_scenario,
                                 parse_duration, parse_scenario)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHIPPED = sorted(glob.glob(os.path.join(ROOT, "etc", "ctisim", "scenarios", "*.yaml")))


def refused(text, path="bad.yaml"):
    with pytest.raises(ScenarioError) as info:
        parse_scenario(textwrap.dedent(text), path)
    return info.value


def test_shipped_scenarios_load_and_fit_their_cards():
    names = {os.path.basename(p) for p in SHIPPED}
    assert {"fxs-dial.yaml", "fxo-incoming.yaml", "fxs-ring-callerid.yaml", "fxo-battery.yaml",
            "demo.yaml"} <= names
    for path in SHIPPED:
        sc = load_scenario(path)
        cfg = load_cardd_config(sc.cardd)
        check_against_cards(sc, {c.channel: c.port for c in cfg.channels})
        assert sc.scripts, path


def test_a_full_scenario_parses_into_steps_rules_and_expectations():
    sc = parse_scenario(textwrap.dedent("""\
        cardd: cardd.toml
        clock: realtime
        timeout_s: 12
        lines:
          5: {polarity_on_hangup: true, outbound: {"8001": {after: 2s, polarity: true}}}
        steps:
          - {phone: 1, do: off_hook}
          - {phone: 1, expect: tone, tone: dial, within: 1s}
          - {phone: 1, do: dial, digits: 8001, mark: dialled}
          - {wait_for: {kind: digit, channel: 1, digit: "1"}, within: 100 ticks}
          - {send: {command: ring, channel: 2, caller_id: "0123"}, at: 5s}
        client:
          - when: {kind: digit, channel: 1}
            digits: 4
            send: [{command: ring, channel: 2, caller_id: "{digits}"}, answer]
            delay: 500ms
        expect:
          - event: {kind: digit, channel: 1}
            after_mark: dialled
            within: 30 ticks
          - {phone: 1, heard: dial}
          - gap_free: true
        """), "/x/s.yaml")
    assert sc.name == "s" and sc.clock == "realtime" and sc.timeout_s == 12.0
    assert sc.cardd == "/x/cardd.toml"                       # relative to the scenario file
    assert sc.lines[5]["polarity_on_hangup"] is True
    assert sc.lines[5]["outbound"]["8001"]["after"].to_ticks(0.02) == 100
    steps = sc.scripts[0].steps
    assert [s.verb for s in steps] == ["do", "expect", "do", "wait_for", "send"]
    assert steps[2].params == {"digits": "8001"} and steps[2].mark == "dialled"
    assert steps[3].within.to_ticks(0.02) == 100 and steps[3].line == 10
    assert steps[4].command.fields == {"caller_id": "0123"}  # leading zero kept: YAML 1.2 core
    rule = sc.rules[0]
    assert rule.digits == 4 and rule.delay.to_ticks(0.02) == 25
    cmd = rule.send[0].build(7, {"channel": 1, "digits": "8001"})
    assert cmd.id == 7 and cmd.channel == 2 and cmd.ring.caller_id == "8001"
    assert rule.send[1].build(8, {"channel": 5}).WhichOneof("kind") == "answer"
    assert [e.kind for e in sc.expectations] == ["event", "phone", "gap_free"]


@pytest.mark.parametrize("text, line, key, message", [
    ("steps:\n  - {phone: 1, do: off_hook\n", 3, "(syntax)", "expected ',' or '}'"),
    ("cardd: a.toml\nstepz: []\n", 2, "stepz", "unknown key in a scenario"),
    ("steps:\n  - {phone: 1, do: dance}\n", 2, "do", "phone cannot do 'dance'"),
    ("steps:\n  - phone: 1\n    do: dial\n", 3, "do", "phone do dial needs 'digits'"),
    ("steps:\n  - {phone: 1, do: dial, digits: 12x}\n", 2, "digits", "not a DTMF digit string"),
    ("steps:\n  - {wait: soon}\n", 2, "wait", "expected a duration"),
    ("steps:\n  - {wait: 1s, send: answer}\n", 2, "steps", "exactly one of"),
    ("steps:\n  - {co_line: 5, expect: tone, tone: dial}\n", 2, "expect", "co_line cannot expect 'tone'"),
    ("steps:\n  - {phone: 1, expect: tone, tone: buzzing}\n", 2, "tone", "unknown tone 'buzzing'"),
    ("steps:\n  - wait_for: {kind: ringing}\n", 2, "kind", "unknown event kind 'ringing'"),
    ("steps:\n  -\n    wait_for:\n      kind: digit\n      digits: '1'\n", 5, "digits",
     "unknown field for event digit"),
    ("steps:\n  - {send: {command: pickup, channel: 1}}\n", 2, "command", "unknown command 'pickup'"),
    ("steps:\n  - {send: {command: ring, channel: 1, callerid: '1'}}\n", 2, "callerid",
     "unknown field for command ring"),
    ("steps:\n  - {phone: 0, do: off_hook}\n", 2, "phone", "expected a channel number"),
    ("steps:\n  - {phone: 1, do: off_hook}\n  - {phone: 1, do: on_hook}\nclock: slow\n", 4, "clock",
     "'slow' is not one of fast, realtime"),
    ("steps:\n  - {wait: 1s}\nexpect:\n  - event: {kind: cleared}\n    within: 2s\n", 5, "within",
     "add after_mark"),
    ("steps:\n  - {wait: 1s}\nexpect:\n  - event: {kind: cleared}\n    after_mark: gone\n", 4,
     "after_mark", "no step sets mark 'gone'"),
    ("scripts:\n  - name: a\n    loop: true\n    steps: [{wait: 1s}]\n", 2, "loop", "needs the scenario's `duration:`"),
    ("steps:\n  - {wait: 1s}\n  - {wait: 2s, wait: 3s}\n", 3, "wait", "duplicate key"),
    ("lines:\n  5: {polarity_on_hangup: yes}\nsteps: [{wait: 1s}]\n", 2, "polarity_on_hangup",
     "expected bool, got a string 'yes'"),
    ("client:\n  - when: {kind: incoming}\nsteps: [{wait: 1s}]\n", 2, "client", "needs `when:`"),
    ("expect:\n  - {phone: 1, hears: dial}\nsteps: [{wait: 1s}]\n", 2, "phone",
     "one of heard, caller_id, digits, rings"),
])
def test_bad_scenarios_name_file_line_and_key(text, line, key, message):
    e = refused(text)
    assert (e.path, e.line, e.key) == ("bad.yaml", line, key), str(e)
    assert message in e.message, str(e)
    assert str(e).startswith(f"bad.yaml:{line}: ")


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(ScenarioError, match=r"nothere\.yaml: cannot read"):
        load_scenario(tmp_path / "nothere.yaml")


def test_actors_must_fit_the_configured_ports():
    sc = parse_scenario("steps:\n  - {wait: 1s}\n  - {phone: 5, do: off_hook}\n", "s.yaml")
    with pytest.raises(ScenarioError, match=r"s\.yaml:3: phone: channel 5 is an fxo port: a phone needs an fxs port"):
        check_against_cards(sc, {1: "fxs", 5: "fxo"})
    sc = parse_scenario("steps:\n  - {co_line: 9, do: ring}\n", "s.yaml")
    with pytest.raises(ScenarioError, match=r"channel 9 is not configured \(channels: 1-4,7\)"):
        check_against_cards(sc, {1: "fxs", 2: "fxs", 3: "fxs", 4: "fxs", 7: "fxo"})
    sc = parse_scenario("lines:\n  1: {polarity_on_hangup: true}\nsteps: [{wait: 1s}]\n", "s.yaml")
    with pytest.raises(ScenarioError, match=r"s\.yaml:2: polarity_on_hangup: channel 1 is a phone"):
        check_against_cards(sc, {1: "fxs"})


def test_durations():
    assert parse_duration("500ms").to_ticks(0.02) == 25
    assert parse_duration("1.5 s").to_ticks(0.02) == 75
    assert parse_duration("7 ticks").to_ticks(0.01) == 7
    assert parse_duration("2").seconds == 2.0
    assert parse_duration("1.5 ticks") is None and parse_duration("-1s") is None


# ---- expectations judged on an event log ------------------------------------------------
class EventLog:
    """cardd's side of the runner, as plain lists: events to deliver, commands sent."""

    def __init__(self):
        self.events, self.replies, self.sent = [], [], []

    def poll_events(self):
        out, self.events = self.events, []
        return out

    def poll_replies(self):
        out, self.replies = self.replies, []
        return out

    def send(self, cmd):
        self.sent.append(cmd)
        self.replies.append(cardd_pb2.Reply(id=cmd.id, ok=True))

    def subscribed(self):
        return True


def event(seq, tick, channel, kind, **fields):
    ev = cardd_pb2.ChannelEvent(seq=seq, tick=tick, channel=channel)
    getattr(ev, kind).SetInParent()
    for k, v in fields.items():
        setattr(getattr(ev, kind), k, v)
    return ev


def run_log(text, events_at):
    """Run a scenario's runner over ticks, delivering events at given ticks."""
    sc = parse_scenario(textwrap.dedent(text), "s.yaml")
    log = EventLog()
    run = ScenarioRun(sc, {}, log)
    for tick in range(1, 400):
        log.events += events_at.get(tick, [])
        run.step(tick)
        if run.finished():
            break
    return run, log


def test_expectations_on_an_event_log():
    text = """\
        steps:
          - {send: {command: answer, channel: 5}, mark: answered}
          - {wait_for: {kind: cleared, channel: 5}, within: 2s}
        client:
          - when: {kind: digit, channel: 1}
            digits: 2
            send: {command: ring, channel: 2, caller_id: "{digits}"}
        expect:
          - event: {kind: cleared, channel: 5}
            after_mark: answered
            within: 10 ticks
          - digits: "42"
            channel: 1
          - gap_free: true
          - in_order: [{kind: digit, digit: "4"}, {kind: digit, digit: "2"}, {kind: cleared}]
          - no_event: {kind: service}
        """
    # The scripts begin (and the mark is set) once the runner's start-up status request is
    # answered and a few ticks have passed: by tick 10 here. An event of cardd's tick t
    # arrives at tick t+1 at the earliest.
    good = {11: [event(3, 10, 1, "digit", digit="4"), event(4, 10, 1, "digit", digit="2")],
            16: [event(5, 15, 5, "cleared", cause=16)]}
    run, log = run_log(text, good)
    assert run.evaluate() == []
    ring = [c for c in log.sent if c.WhichOneof("kind") == "ring"]
    assert len(ring) == 1 and ring[0].channel == 2 and ring[0].ring.caller_id == "42"

    late_and_gappy = {11: [event(3, 10, 1, "digit", digit="4"), event(5, 10, 1, "digit", digit="2")],
                      41: [event(6, 40, 5, "cleared", cause=16)]}
    run, _ = run_log(text, late_and_gappy)
    failures = {f.expected: f.seen for f in run.evaluate()}
    late = failures["event cleared channel=5 after mark 'answered' within 10 ticks"]
    assert "came" in late and "ticks after the mark" in late
    assert failures["event sequence numbers without a gap"] == "3 then 5"


def test_time_bounds_hold_when_cardd_numbers_ticks_its_own_way():
    # With the dahdi backend cardd counts its own reads, so its tick numbers and ours differ
    # by a constant. Marks are mapped into its numbering.
    text = """\
        steps:
          - {send: {command: answer, channel: 5}, mark: answered}
          - {wait_for: {kind: cleared, channel: 5}, within: 2s}
        expect:
          - event: {kind: cleared, channel: 5}
            after_mark: answered
            within: 10 ticks
        """
    on_time = {11: [event(1, 1010, 1, "digit", digit="4")], 16: [event(2, 1015, 5, "cleared")]}
    run, _ = run_log(text, on_time)
    assert run.tick_offset == -1000 and run.evaluate() == []
    late = {11: [event(1, 1010, 1, "digit", digit="4")], 31: [event(2, 1030, 5, "cleared")]}
    run, _ = run_log(text, late)
    assert [f.expected for f in run.evaluate()] == [
        "event cleared channel=5 after mark 'answered' within 10 ticks"]
