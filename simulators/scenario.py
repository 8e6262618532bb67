"""ctisim scenarios: YAML files that drive the simulated world and say what must happen.

A scenario names the cardd configuration to run against, the far-side actors' options,
scripts of timed or event-triggered steps, the application's rules (ctisim acts as
cardd's client until ctid exists), and the expectations that make it a test. Every error
names the file, the line and the key. The full guide with examples is
etc/ctisim/scenarios/README.md; in short:

    name: fxs-dial                     # default: the file name
    description: free text
    cardd: ../../cardd.toml            # cardd.toml, relative to this file (or an inline
                                       # table with the same sections as cardd.toml)
    clock: fast                        # fast (lockstep) | realtime; `ctisim --clock` overrides
    timeout_s: 30                      # wall-clock limit: exceeding it fails the run
    duration: 60s                      # optional: run exactly this long (simulated time)
    settle: 0.5s                       # after the last script ends, keep running this long
    lines:                             # options of the actor on a channel (phone on FXS
      5: {polarity_on_hangup: true}    #   ports, co_line on FXO ports; see ACTOR_OPTIONS)
    scripts:                           # run side by side; `steps:` alone is one script
      - name: caller
        loop: false                    # loop: start again after the last step
        steps:
          - {phone: 1, do: off_hook}
          - {phone: 1, expect: tone, tone: dial, within: 1s}
          - {phone: 1, do: dial, digits: "8001", mark: dialled}
          - {wait_for: {kind: digit, channel: 1, digit: "1"}, within: 2s}
          - {wait: 500ms}
          - {send: {command: hangup, channel: 1}}
    client:                            # the application: cardd event -> commands
      - when: {kind: incoming, channel: 5}
        send: answer                   # channel: the event's; `delay: 2s` waits first
      - when: {kind: digit, channel: 1}
        digits: 4                      # fire once 4 digits were collected on the channel
        send: {command: ring, channel: 2, caller_id: "{digits}"}
    expect:
      - event: {kind: off_hook, channel: 1}
      - in_order: [{kind: off_hook, channel: 1}, {kind: digit, digit: "8"}]
      - digits: "8001"
        channel: 1
      - gap_free: true                 # event sequence numbers have no gap
      - event: {kind: cleared, channel: 5}
        after_mark: far_hangup         # the first such event after the mark...
        within: 100 ticks              # ...came no later than this (event `tick` field)
      - no_event: {kind: service, channel: 5}
      - count: {kind: incoming}
        at_least: 1
      - {phone: 2, caller_id: "13812345678"}
      - {phone: 1, heard: dial}
      - {co_line: 5, digits: "8001"}

Steps: a target (`phone: N` or `co_line: N`) with `do:` (an action, parameters beside it)
or `expect:` (a check polled each tick until it holds, or fails after `within`, default
5 s); or `wait: DURATION`; or `wait_for: EVENT`; or `send: COMMAND`. Any step may carry
`at:` (not before this time after the script (re)started), `after:` (a pause before it),
`when: EVENT` (a cardd event seen since the previous step began triggers it), `within:`,
`mark: NAME` (the tick it completed, for expectations) and `note:`.

Durations: a number (seconds), "500ms", "1.5s", "100 ticks". Digits and numbers are
strings; YAML here is the 1.2 core schema (no `on`/`yes` booleans, no octal), so a key
named `on` or a number with a leading zero means what it says.

Events (EVENT) match cardd's ChannelEvent: `kind` is the name of its oneof (off_hook,
on_hook, digit, incoming, proceeding, alerting, answered, cleared, flash, service, tone,
prompt_done, span_alarm, caller_id_sent, node_started, dial_complete), plus `channel`,
`span`, `call_id` and the fields of that kind (`ani`, `digit`, `cause`, `in_service`...).
Commands (COMMAND) are a name (answer, hangup, dial, play_tone, stop_media, ring,
play_prompt, bridge, unbridge, send_digits, status, conference_join, conference_leave)
or a mapping {command: NAME, channel: N, <fields of that command>}; string fields may
use {channel}, {digits}, {ani}, {dnis} and {call_id} of the event that triggered them.
A command that cardd refuses fails the run, unless it says `may_fail: true`; one that
says `refused: true` fails the run if cardd accepts it.
"""
from __future__ import annotations

import dataclasses
import os
import re
from typing import Any, Callable

import yaml
from google.protobuf import descriptor

from hotline_proto import cardd_pb2

CLOCKS = ("fast", "realtime")
DEFAULT_WITHIN_S = 5.0
DEFAULT_TIMEOUT_S = 30.0
DEFAULT_SETTLE_S = 0.5
HELLO_ID_BASE = 1 << 40            # command ids of the start-up status requests
HELLO_EVERY_TICKS = 25
SUBSCRIPTION_SETTLE_TICKS = 5


class ScenarioError(Exception):
    """A scenario that cannot be run, with where the fault is."""

    def __init__(self, path: str, line: int | None, key: str, message: str):
        self.path, self.line, self.key, self.message = path, line, key, message
        where = f"{path}:{line}" if line else path
        super().__init__(f"{where}: {key}: {message}" if key else f"{where}: {message}")


# ---- YAML with line numbers (YAML 1.2 core schema) ---------------------------------------
class _Map(dict):
    line: int = 0

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.lines: dict[Any, int] = {}


class _List(list):
    line: int = 0

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.lines: list[int] = []


class _Loader(yaml.SafeLoader):
    pass


_Loader.yaml_implicit_resolvers = {}
for _tag, _regexp, _first in [
    ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("tag:yaml.org,2002:int", r"^[-+]?(?:0|[1-9][0-9]*)$", "-+0123456789"),
    ("tag:yaml.org,2002:float", r"^[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?$",
     "-+0123456789."),
    ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
]:
    _Loader.add_implicit_resolver(_tag, re.compile(_regexp), list(_first))


def _construct_map(loader: _Loader, node: yaml.MappingNode) -> _Map:
    loader.flatten_mapping(node)
    out = _Map()
    out.line = node.start_mark.line + 1
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if key in out:
            raise ScenarioError(loader.name, line, str(key),
                                f"duplicate key (first on line {out.lines[key]})")
        out[key] = loader.construct_object(value_node, deep=True)
        out.lines[key] = line
    return out


def _construct_list(loader: _Loader, node: yaml.SequenceNode) -> _List:
    out = _List()
    out.line = node.start_mark.line + 1
    for item in node.value:
        out.append(loader.construct_object(item, deep=True))
        out.lines.append(item.start_mark.line + 1)
    return out


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_Loader.add_constructor("tag:yaml.org,2002:seq", _construct_list)


# ---- the parsed scenario ----------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Duration:
    seconds: float | None = None
    ticks: int | None = None
    text: str = ""

    def to_ticks(self, tick_s: float) -> int:
        return self.ticks if self.ticks is not None else int(round(self.seconds / tick_s))

    def __str__(self) -> str:
        return self.text


@dataclasses.dataclass
class EventMatch:
    kind: str | None
    channel: int | None = None
    span: int | None = None
    call_id: str | None = None
    fields: dict[str, Any] = dataclasses.field(default_factory=dict)
    line: int = 0

    def matches(self, ev: "SeenEvent") -> bool:
        if self.kind is not None and ev.kind != self.kind:
            return False
        if self.channel is not None and ev.channel != self.channel:
            return False
        if self.span is not None and ev.span != self.span:
            return False
        if self.call_id is not None and ev.call_id != self.call_id:
            return False
        return all(ev.fields.get(k) == v for k, v in self.fields.items())

    def __str__(self) -> str:
        parts = [self.kind or "any event"]
        for name in ("channel", "span", "call_id"):
            if getattr(self, name) is not None:
                parts.append(f"{name}={getattr(self, name)}")
        parts += [f"{k}={v!r}" for k, v in self.fields.items()]
        return " ".join(parts)


@dataclasses.dataclass
class CommandSpec:
    command: str
    channel: int | None
    fields: dict[str, Any]
    may_fail: bool = False         # a refusal is fine
    refused: bool = False          # a refusal is required (the command must not be accepted)
    line: int = 0

    def build(self, cmd_id: int, context: dict[str, Any]) -> cardd_pb2.Command:
        channel = self.channel if self.channel is not None else context.get("channel")
        if channel is None and self.command != "status":
            raise KeyError("channel")
        cmd = cardd_pb2.Command(id=cmd_id, channel=channel or 0)
        sub = getattr(cmd, self.command)
        sub.SetInParent()
        for name, value in self.fields.items():
            if isinstance(value, str):
                value = value.format_map(_Context(context))
            if isinstance(value, list):
                getattr(sub, name).extend(value)
            else:
                setattr(sub, name, value)
        return cmd

    def __str__(self) -> str:
        args = "".join(f" {k}={v!r}" for k, v in self.fields.items())
        where = f" channel {self.channel}" if self.channel is not None else ""
        return f"{self.command}{where}{args}"


class _Context(dict):
    def __missing__(self, key):
        return "{" + key + "}"


@dataclasses.dataclass
class Step:
    line: int
    verb: str                      # do | expect | wait | wait_for | send
    target: tuple[str, int] | None = None
    name: str = ""                 # the action or check
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    wait: Duration | None = None
    event: EventMatch | None = None
    command: CommandSpec | None = None
    at: Duration | None = None
    after: Duration | None = None
    within: Duration | None = None
    when: EventMatch | None = None
    mark: str | None = None
    note: str = ""

    def describe(self) -> str:
        return f"line {self.line}: {self.summary()}"

    def summary(self) -> str:
        who = f"{self.target[0]} {self.target[1]}: " if self.target else ""
        args = "".join(f" {k}={v!r}" for k, v in self.params.items())
        what = {"do": f"do {self.name}{args}", "expect": f"expect {self.name}{args}",
                "wait": f"wait {self.wait}", "wait_for": f"wait for {self.event}",
                "send": f"send {self.command}"}[self.verb]
        return f"{who}{what}"


@dataclasses.dataclass
class Script:
    name: str
    steps: list[Step]
    loop: bool = False
    line: int = 0


@dataclasses.dataclass
class Rule:
    when: EventMatch
    send: list[CommandSpec]
    digits: int | None = None
    delay: Duration | None = None
    once: bool = False
    line: int = 0


@dataclasses.dataclass
class Expectation:
    line: int
    kind: str        # event | no_event | in_order | digits | gap_free | count | phone | co_line
    event: EventMatch | None = None
    events: list[EventMatch] = dataclasses.field(default_factory=list)
    channel: int | None = None
    value: Any = None
    after_mark: str | None = None
    within: Duration | None = None
    at_least: int | None = None
    at_most: int | None = None
    target: tuple[str, int] | None = None
    check: str = ""

    def describe(self) -> str:
        k = self.kind
        if k == "event":
            text = f"event {self.event}"
            if self.after_mark:
                text += f" after mark {self.after_mark!r}"
            if self.within:
                text += f" within {self.within}"
            return text
        if k == "no_event":
            return f"no event {self.event}"
        if k == "in_order":
            return "in order: " + "; ".join(str(e) for e in self.events)
        if k == "digits":
            return f"digits {self.value!r} on channel {self.channel}"
        if k == "gap_free":
            return "event sequence numbers without a gap"
        if k == "count":
            bounds = [f"at least {self.at_least}" if self.at_least is not None else "",
                      f"at most {self.at_most}" if self.at_most is not None else ""]
            return f"count of {self.event}: " + " and ".join(b for b in bounds if b)
        return f"{self.target[0]} {self.target[1]} {self.check} {self.value!r}"


@dataclasses.dataclass
class Scenario:
    path: str
    name: str
    description: str = ""
    cardd: str | dict | None = None         # a path (absolute) or an inline config table
    cardd_line: int = 0
    clock: str = "fast"
    timeout_s: float = DEFAULT_TIMEOUT_S
    duration: Duration | None = None
    settle: Duration = Duration(seconds=DEFAULT_SETTLE_S, text=f"{DEFAULT_SETTLE_S}s")
    lines: dict[int, dict[str, Any]] = dataclasses.field(default_factory=dict)
    scripts: list[Script] = dataclasses.field(default_factory=list)
    rules: list[Rule] = dataclasses.field(default_factory=list)
    expectations: list[Expectation] = dataclasses.field(default_factory=list)

    def channels_used(self) -> dict[int, tuple[str, int]]:
        """channel -> (actor kind, line of first use), for checking against the cards."""
        out: dict[int, tuple[str, int]] = {}
        for script in self.scripts:
            for step in script.steps:
                if step.target and step.target[0] not in SPAN_TARGETS:
                    out.setdefault(step.target[1], (step.target[0], step.line))
        for e in self.expectations:
            if e.target and e.target[0] not in SPAN_TARGETS:
                out.setdefault(e.target[1], (e.target[0], e.line))
        return out

    def spans_used(self) -> dict[tuple[str, int], int]:
        """(span-level actor kind, span) -> line of first use."""
        out: dict[tuple[str, int], int] = {}
        for step in (st for script in self.scripts for st in script.steps):
            if step.target and step.target[0] in SPAN_TARGETS:
                out.setdefault(step.target, step.line)
        for e in self.expectations:
            if e.target and e.target[0] in SPAN_TARGETS:
                out.setdefault(e.target, e.line)
        return out


# ---- what actors can be told and asked (the scenario's vocabulary) ------------------------
# Each entry: name -> {parameter: (type, default or REQUIRED)}.
REQUIRED = object()
ACTIONS: dict[str, dict[str, dict[str, tuple]]] = {
    "phone": {
        "off_hook": {}, "on_hook": {}, "flash": {},
        "dial": {"digits": (str, REQUIRED), "on_ms": (int, 100), "off_ms": (int, 100)},
        "record": {"on": (bool, True)},
    },
    "co_line": {
        "ring": {"caller_id": (str, None), "name": (str, None), "callerid": (str, "fsk"),
                 "format": (str, "mdmf"), "rings": (int, None)},
        "hang_up": {}, "talk": {"sound": (str, "speech"), "level_dbm0": (float, -20.0)},
        "quiet": {}, "press": {"digits": (str, REQUIRED), "on_ms": (int, 100), "off_ms": (int, 100)},
        "remove_battery": {}, "restore_battery": {}, "reverse_polarity": {},
    },
}
CHECKS: dict[str, dict[str, dict[str, tuple]]] = {
    "phone": {
        "tone": {"tone": (str, REQUIRED)},
        "ringing": {"rings": (int, 1)},
        "not_ringing": {},
        "caller_id": {"number": (str, REQUIRED), "name": (str, None)},
        "digits": {"digits": (str, REQUIRED)},
    },
    "co_line": {
        "answered": {}, "seized": {}, "released": {},
        "digits": {"digits": (str, REQUIRED)},
        "idle": {},
    },
}
# Final checks on actors in `expect:` (what the actor observed over the whole run).
FINAL_CHECKS = {"phone": {"heard": str, "caller_id": str, "digits": str, "rings": int},
                "co_line": {"digits": str, "answered": int}}
ACTOR_OPTIONS: dict[str, dict[str, tuple]] = {
    "phone": {"answer_after_rings": (int, None), "hang_up_after": (str, None)},
    "co_line": {"polarity_on_hangup": (bool, False), "polarity_on_answer": (bool, False),
                "open_loop_on_hangup": (bool, False), "callerid_gap": (str, None),
                "interdigit": (str, None), "outbound": (dict, None)},
}
CO_OUTBOUND = {"answer": (bool, True), "after": (str, "3s"), "busy": (bool, False),
               "polarity": (bool, False)}
TONE_NAMES = ("dial", "busy", "ringback", "congestion", "silence", "voice")


def register_target(kind: str, actions: dict, checks: dict, final_checks: dict) -> None:
    """Add a kind of actor that steps and expectations name as `KIND: NUMBER` (span-level
    actors: the number is a span). Its tables use the string "REQUIRED" for REQUIRED."""
    def fix(table: dict) -> dict:
        return {name: {p: (t, REQUIRED if d == "REQUIRED" else d) for p, (t, d) in ps.items()}
                for name, ps in table.items()}
    ACTIONS[kind] = fix(actions)
    CHECKS[kind] = fix(checks)
    FINAL_CHECKS[kind] = dict(final_checks)
    SPAN_TARGETS.add(kind)


SPAN_TARGETS: set[str] = set()


def _register_span_actors() -> None:
    from .actors import pri_co, r2_co
    register_target("pri", pri_co.PRI_ACTIONS, pri_co.PRI_CHECKS, pri_co.PRI_FINAL_CHECKS)
    register_target("r2", r2_co.R2_ACTIONS, r2_co.R2_CHECKS, r2_co.R2_FINAL_CHECKS)


_register_span_actors()

STEP_MODIFIERS = ("at", "after", "within", "when", "mark", "note")
VERBS = ("do", "expect", "wait", "wait_for", "send")


# ---- parsing --------------------------------------------------------------------------
_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(ms|s|sec|seconds?|ticks?|t)?\s*$")


class _Parser:
    def __init__(self, path: str):
        self.path = path

    def error(self, where: Any, key: str, message: str, line: int | None = None) -> ScenarioError:
        if line is None:
            line = getattr(where, "lines", {}).get(key) if isinstance(where, _Map) else None
            line = line or getattr(where, "line", None)
        return ScenarioError(self.path, line, key, message)

    def keys(self, m: _Map, allowed: tuple | dict | set, what: str) -> None:
        for key in m:
            if key not in allowed:
                raise self.error(m, str(key), f"unknown key in {what} (known: "
                                 f"{', '.join(sorted(map(str, allowed)))})")

    def mapping(self, value: Any, where: Any, key: str) -> _Map:
        if not isinstance(value, _Map):
            raise self.error(where, key, f"expected a mapping, got {_kind(value)}")
        return value

    def typed(self, m: _Map, key: str, types, default=REQUIRED, what: str = ""):
        if key not in m:
            if default is REQUIRED:
                raise self.error(m, key, f"{what or 'this'} needs {key!r}", line=m.line)
            return default
        value = m[key]
        types = types if isinstance(types, tuple) else (types,)
        if str in types and isinstance(value, int) and not isinstance(value, bool) and \
                key in ("digits", "caller_id", "number", "name", "digit", "ani", "dnis"):
            return str(value)               # 8001 unquoted: still the digits 8001
        if float in types and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            names = " or ".join(t.__name__ for t in types)
            raise self.error(m, key, f"expected {names}, got {_kind(value)} {value!r}")
        return value

    def duration(self, m: _Map, key: str) -> Duration:
        value = m[key]
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if value < 0:
                raise self.error(m, key, f"a duration cannot be negative ({value})")
            return Duration(seconds=float(value), text=f"{value}s")
        if isinstance(value, str):
            d = parse_duration(value)
            if d is not None:
                return d
        raise self.error(m, key, f"expected a duration (2, 1.5s, 500ms, 100 ticks), got {value!r}")

    def channel(self, m: _Map, key: str) -> int:
        value = m[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise self.error(m, key, f"expected a channel number (1 or more), got {value!r}")
        return value

    # -- events and commands --
    def event(self, value: Any, where: Any, key: str) -> EventMatch:
        m = self.mapping(value, where, key)
        kind = m.get("kind")
        kinds = _event_kinds()
        if kind is not None and kind not in kinds:
            raise self.error(m, "kind", f"unknown event kind {kind!r} (known: {', '.join(sorted(kinds))})")
        out = EventMatch(kind=kind, line=m.line)
        fields = _message_fields(kinds[kind]) if kind else {}
        for k in m:
            if k == "kind":
                continue
            if k in ("channel", "span"):
                setattr(out, k, self.channel(m, k) if k == "channel" else self.typed(m, k, int))
            elif k == "call_id":
                out.call_id = self.typed(m, k, str)
            elif k in fields:
                out.fields[k] = self.typed(m, k, fields[k])
            else:
                known = ["kind", "channel", "span", "call_id", *fields]
                hint = "" if kind else " (name a kind to match its fields)"
                raise self.error(m, str(k), f"unknown field for event {kind or '(any)'}"
                                 f"{hint} (known: {', '.join(known)})")
        return out

    def command(self, value: Any, where: Any, key: str) -> CommandSpec:
        commands = _command_kinds()
        if isinstance(value, str):
            value_map = _Map({"command": value})
            value_map.line = getattr(where, "lines", {}).get(key, getattr(where, "line", 0))
            value_map.lines = {"command": value_map.line}
            value = value_map
        m = self.mapping(value, where, key)
        name = self.typed(m, "command", str, what="a command")
        if name not in commands:
            raise self.error(m, "command", f"unknown command {name!r} (known: {', '.join(sorted(commands))})")
        fields = _message_fields(commands[name])
        spec = CommandSpec(command=name, channel=None, fields={}, line=m.line)
        for k in m:
            if k == "command":
                continue
            if k == "channel":
                spec.channel = self.channel(m, k)
            elif k in ("may_fail", "refused"):
                setattr(spec, k, self.typed(m, k, bool))
            elif k in fields:
                ftype = fields[k]
                if ftype is list:
                    v = m[k]
                    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                        raise self.error(m, k, f"expected a list of strings, got {v!r}")
                    spec.fields[k] = list(v)
                else:
                    spec.fields[k] = self.typed(m, k, ftype)
            else:
                raise self.error(m, str(k), f"unknown field for command {name} (known: "
                                 f"{', '.join(['command', 'channel', 'may_fail', 'refused', *fields])})")
        return spec

    # -- steps --
    def step(self, value: Any, line: int) -> Step:
        if not isinstance(value, _Map):
            raise ScenarioError(self.path, line, "steps", f"a step is a mapping, got {_kind(value)} {value!r}")
        m = value
        verbs = [v for v in VERBS if v in m]
        if len(verbs) != 1:
            raise self.error(m, "steps", f"a step needs exactly one of {', '.join(VERBS)}"
                             + (f" (has {', '.join(verbs)})" if verbs else ""), line=m.line)
        verb = verbs[0]
        targets = [t for t in ACTIONS if t in m]
        if len(targets) > 1:
            raise self.error(m, targets[1], f"a step acts on one target ({', '.join(ACTIONS)})")
        step = Step(line=m.line, verb=verb)
        if targets:
            step.target = (targets[0], self.channel(m, targets[0]))
        for key in ("at", "after", "within"):
            if key in m:
                setattr(step, key, self.duration(m, key))
        if "when" in m:
            step.when = self.event(m["when"], m, "when")
        if "mark" in m:
            step.mark = self.typed(m, "mark", str)
        if "note" in m:
            step.note = self.typed(m, "note", str)
        used = {verb, *targets, *STEP_MODIFIERS}
        if verb in ("do", "expect"):
            if not targets:
                raise self.error(m, verb, f"`{verb}` needs a target: phone: N or co_line: N")
            table = (ACTIONS if verb == "do" else CHECKS)[targets[0]]
            name = m[verb]
            if not isinstance(name, str) or name not in table:
                raise self.error(m, verb, f"{targets[0]} cannot {verb} {name!r} (known: "
                                 f"{', '.join(table)})")
            step.name = name
            for p, (ptype, default) in table[name].items():
                if p in m:
                    step.params[p] = self.typed(m, p, ptype)
                elif default is REQUIRED:
                    raise self.error(m, verb, f"{targets[0]} {verb} {name} needs {p!r}")
            used |= set(table[name])
            if verb == "expect" and name == "tone" and step.params["tone"] not in TONE_NAMES:
                raise self.error(m, "tone", f"unknown tone {step.params['tone']!r} "
                                 f"(known: {', '.join(TONE_NAMES)})")
            if name in ("dial", "press", "digits") and not re.fullmatch(r"[0-9*#A-Da-d]+", step.params["digits"]):
                raise self.error(m, "digits", f"{step.params['digits']!r} is not a DTMF digit string")
        elif targets:
            raise self.error(m, targets[0], f"`{verb}` takes no target")
        elif verb == "wait":
            step.wait = self.duration(m, "wait")
        elif verb == "wait_for":
            step.event = self.event(m["wait_for"], m, "wait_for")
        elif verb == "send":
            step.command = self.command(m["send"], m, "send")
        self.keys(m, used, f"a {verb} step")
        return step

    def script(self, value: Any, line: int, index: int) -> Script:
        m = self.mapping(value, None, "scripts") if isinstance(value, _Map) else None
        if m is None:
            raise ScenarioError(self.path, line, "scripts", f"a script is a mapping with steps, got {_kind(value)}")
        self.keys(m, ("name", "loop", "steps"), "a script")
        steps = m.get("steps")
        if not isinstance(steps, _List) or not steps:
            raise self.error(m, "steps", "a script needs a non-empty list of steps", line=m.lines.get("steps", m.line))
        return Script(name=self.typed(m, "name", str, f"script {index + 1}"),
                      loop=self.typed(m, "loop", bool, False),
                      steps=[self.step(s, ln) for s, ln in zip(steps, steps.lines)], line=m.line)

    def rule(self, value: Any, line: int) -> Rule:
        if not isinstance(value, _Map):
            raise ScenarioError(self.path, line, "client", f"a client rule is a mapping, got {_kind(value)}")
        m = value
        self.keys(m, ("when", "send", "digits", "delay", "once", "note"), "a client rule")
        if "when" not in m or "send" not in m:
            raise self.error(m, "client", "a client rule needs `when:` (an event) and `send:` (commands)",
                             line=m.line)
        sends = m["send"]
        items = list(zip(sends, sends.lines)) if isinstance(sends, _List) else [(sends, None)]
        rule = Rule(when=self.event(m["when"], m, "when"),
                    send=[self.command(s, m, "send") for s, _ in items], line=m.line)
        if "digits" in m:
            rule.digits = self.typed(m, "digits", int)
            if rule.when.kind not in (None, "digit"):
                raise self.error(m, "digits", "`digits:` counts digit events: use when: {kind: digit, ...}")
            rule.when.kind = "digit"
        if "delay" in m:
            rule.delay = self.duration(m, "delay")
        rule.once = self.typed(m, "once", bool, False)
        return rule

    def expectation(self, value: Any, line: int) -> Expectation:
        if not isinstance(value, _Map):
            raise ScenarioError(self.path, line, "expect", f"an expectation is a mapping, got {_kind(value)}")
        m = value
        kinds = [k for k in ("event", "no_event", "in_order", "digits", "gap_free", "count",
                             *FINAL_CHECKS) if k in m]
        if len(kinds) != 1:
            raise self.error(m, "expect", "an expectation needs exactly one of event, no_event, "
                             "in_order, digits, gap_free, count, phone, co_line"
                             + (f" (has {', '.join(kinds)})" if kinds else ""), line=m.line)
        kind = kinds[0]
        e = Expectation(line=m.line, kind=kind)
        allowed: set = {kind}
        if kind in ("event", "no_event", "count"):
            e.event = self.event(m[kind], m, kind)
        if kind == "event":
            allowed |= {"after_mark", "within"}
            if "after_mark" in m:
                e.after_mark = self.typed(m, "after_mark", str)
            if "within" in m:
                e.within = self.duration(m, "within")
                if not e.after_mark:
                    raise self.error(m, "within", "`within` counts from a mark: add after_mark")
        elif kind == "count":
            allowed |= {"at_least", "at_most"}
            e.at_least = self.typed(m, "at_least", int, None)
            e.at_most = self.typed(m, "at_most", int, None)
            if e.at_least is None and e.at_most is None:
                raise self.error(m, "count", "a count needs at_least or at_most", line=m.line)
        elif kind == "in_order":
            seq = m["in_order"]
            if not isinstance(seq, _List) or len(seq) < 2:
                raise self.error(m, "in_order", "expected a list of two or more events")
            e.events = [self.event(x, seq, "in_order") for x in seq]
        elif kind == "digits":
            allowed |= {"channel"}
            e.value = self.typed(m, "digits", str)
            e.channel = self.channel(m, "channel") if "channel" in m else None
            if e.channel is None:
                raise self.error(m, "digits", "digits expectations need `channel`", line=m.line)
        elif kind == "gap_free":
            if m["gap_free"] is not True:
                raise self.error(m, "gap_free", "write gap_free: true")
        elif kind in FINAL_CHECKS:
            e.target = (kind, self.channel(m, kind))
            checks = FINAL_CHECKS[kind]
            named = [c for c in checks if c in m]
            if len(named) != 1:
                raise self.error(m, kind, f"say what the {kind} must have observed: one of "
                                 f"{', '.join(checks)}", line=m.line)
            e.check = named[0]
            e.value = self.typed(m, e.check, checks[e.check])
            if e.check == "heard" and e.value not in TONE_NAMES:
                raise self.error(m, "heard", f"unknown tone {e.value!r} (known: {', '.join(TONE_NAMES)})")
            allowed |= {e.check}
        self.keys(m, allowed, f"a {kind} expectation")
        return e

    def lines_section(self, value: Any, where: _Map) -> dict[int, dict]:
        m = self.mapping(value, where, "lines")
        out = {}
        for ch, opts in m.items():
            if not isinstance(ch, int) or isinstance(ch, bool) or ch < 1:
                raise self.error(m, str(ch), "lines are keyed by channel number")
            o = self.mapping(opts, m, str(ch))
            known = set(ACTOR_OPTIONS["phone"]) | set(ACTOR_OPTIONS["co_line"])
            self.keys(o, known, f"the options of channel {ch}")
            parsed = {}
            for k in o:
                types = (ACTOR_OPTIONS["phone"].get(k) or ACTOR_OPTIONS["co_line"][k])[0]
                if k in ("hang_up_after", "callerid_gap", "interdigit"):
                    parsed[k] = self.duration(o, k)
                elif k == "outbound":
                    parsed[k] = self.outbound(o[k], o)
                else:
                    parsed[k] = self.typed(o, k, types)
            out[ch] = parsed
            out[ch]["__line__"] = m.lines[ch]
        return out

    def outbound(self, value: Any, where: _Map) -> dict[str, dict]:
        """co_line outbound plans: dialled number (or "default") -> what the far end does."""
        m = self.mapping(value, where, "outbound")
        plans = {}
        for number, plan in m.items():
            p = self.mapping(plan, m, str(number))
            self.keys(p, CO_OUTBOUND, f"the outbound plan for {number}")
            parsed = {k: (self.duration(p, k) if k == "after" else self.typed(p, k, CO_OUTBOUND[k][0]))
                      for k in p}
            plans[str(number)] = parsed
        return plans


def parse_duration(text: str) -> Duration | None:
    match = _DURATION.match(text)
    if not match:
        return None
    number, unit = float(match.group(1)), (match.group(2) or "s")
    if unit.startswith("t"):
        if number != int(number):
            return None
        return Duration(ticks=int(number), text=text.strip())
    return Duration(seconds=number / 1000 if unit == "ms" else number, text=text.strip())


def _kind(value: Any) -> str:
    return {dict: "a mapping", _Map: "a mapping", list: "a list", _List: "a list",
            str: "a string", bool: "a boolean", int: "a number", float: "a number",
            type(None): "nothing"}.get(type(value), type(value).__name__)


def _event_kinds() -> dict[str, descriptor.Descriptor]:
    d = cardd_pb2.ChannelEvent.DESCRIPTOR
    return {f.name: f.message_type for f in d.oneofs_by_name["kind"].fields}


def _command_kinds() -> dict[str, descriptor.Descriptor]:
    d = cardd_pb2.Command.DESCRIPTOR
    return {f.name: f.message_type for f in d.oneofs_by_name["kind"].fields}


_PY_TYPES = {descriptor.FieldDescriptor.TYPE_STRING: str, descriptor.FieldDescriptor.TYPE_BOOL: bool,
             descriptor.FieldDescriptor.TYPE_UINT32: int, descriptor.FieldDescriptor.TYPE_UINT64: int,
             descriptor.FieldDescriptor.TYPE_INT32: int, descriptor.FieldDescriptor.TYPE_FLOAT: float,
             descriptor.FieldDescriptor.TYPE_DOUBLE: float}


def _message_fields(desc: descriptor.Descriptor) -> dict[str, type]:
    out = {}
    for f in desc.fields:
        if f.message_type is not None:
            continue
        is_list = getattr(f, "is_repeated", None)
        is_list = is_list if is_list is not None else f.label == descriptor.FieldDescriptor.LABEL_REPEATED
        out[f.name] = list if is_list else _PY_TYPES.get(f.type, str)
    return out


_TOP = ("name", "description", "cardd", "clock", "timeout_s", "duration", "settle", "lines",
        "scripts", "steps", "client", "expect")


def load_scenario(path: str | os.PathLike) -> Scenario:
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ScenarioError(path, None, "", f"cannot read: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise ScenarioError(path, None, "", f"not UTF-8 text: {e}") from None
    return parse_scenario(text, path)


def parse_scenario(text: str, path: str = "<scenario>") -> Scenario:
    loader = _Loader(text)
    loader.name = path
    try:
        data = loader.get_single_data()
    except ScenarioError:
        raise
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        problem = getattr(e, "problem", None) or str(e)
        raise ScenarioError(path, mark.line + 1 if mark else None, "(syntax)", problem) from None
    finally:
        loader.dispose()
    p = _Parser(path)
    if not isinstance(data, _Map):
        raise ScenarioError(path, None, "", f"a scenario is a mapping of keys, got {_kind(data)}")
    p.keys(data, _TOP, "a scenario")
    sc = Scenario(path=path, name=os.path.splitext(os.path.basename(path))[0])
    if "name" in data:
        sc.name = p.typed(data, "name", str)
    sc.description = p.typed(data, "description", str, "")
    if "cardd" in data:
        value = data["cardd"]
        sc.cardd_line = data.lines["cardd"]
        if isinstance(value, str):
            sc.cardd = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(path)), value))
        elif isinstance(value, _Map):
            sc.cardd = _plain(value)
        else:
            raise p.error(data, "cardd", f"expected the path of a cardd.toml or an inline table, "
                          f"got {_kind(value)}")
    sc.clock = p.typed(data, "clock", str, "fast")
    if sc.clock not in CLOCKS:
        raise p.error(data, "clock", f"{sc.clock!r} is not one of {', '.join(CLOCKS)}")
    sc.timeout_s = p.typed(data, "timeout_s", float, DEFAULT_TIMEOUT_S)
    if sc.timeout_s <= 0:
        raise p.error(data, "timeout_s", "must be positive")
    if "duration" in data:
        sc.duration = p.duration(data, "duration")
    if "settle" in data:
        sc.settle = p.duration(data, "settle")
    if "lines" in data:
        sc.lines = p.lines_section(data["lines"], data)
    if "steps" in data and "scripts" in data:
        raise p.error(data, "steps", "use either `steps:` (one script) or `scripts:`, not both")
    if "steps" in data:
        steps = data["steps"]
        if not isinstance(steps, _List) or not steps:
            raise p.error(data, "steps", "expected a non-empty list of steps")
        sc.scripts = [Script(name="main", steps=[p.step(s, ln) for s, ln in zip(steps, steps.lines)],
                             line=data.lines["steps"])]
    if "scripts" in data:
        scripts = data["scripts"]
        if not isinstance(scripts, _List) or not scripts:
            raise p.error(data, "scripts", "expected a non-empty list of scripts")
        sc.scripts = [p.script(s, ln, i) for i, (s, ln) in enumerate(zip(scripts, scripts.lines))]
    if "client" in data:
        rules = data["client"]
        if not isinstance(rules, _List):
            raise p.error(data, "client", "expected a list of rules")
        sc.rules = [p.rule(r, ln) for r, ln in zip(rules, rules.lines)]
    if "expect" in data:
        exps = data["expect"]
        if not isinstance(exps, _List):
            raise p.error(data, "expect", "expected a list of expectations")
        sc.expectations = [p.expectation(x, ln) for x, ln in zip(exps, exps.lines)]
    marks = {s.mark for script in sc.scripts for s in script.steps if s.mark}
    for e in sc.expectations:
        if e.after_mark and e.after_mark not in marks:
            raise ScenarioError(path, e.line, "after_mark",
                                f"no step sets mark {e.after_mark!r} (marks: {', '.join(sorted(marks)) or 'none'})")
    if any(s.loop for s in sc.scripts) and sc.duration is None:
        loop = next(s for s in sc.scripts if s.loop)
        raise ScenarioError(path, loop.line, "loop", "a looping script needs the scenario's `duration:`")
    return sc


def check_against_cards(sc: Scenario, port_kinds: dict[int, str]) -> None:
    """Refuse a scenario that names channels the cards lack or puts a phone on a CO line."""
    want = {"phone": "fxs", "co_line": "fxo"}
    for channel, (actor, line) in sorted(sc.channels_used().items()):
        if actor not in want:
            continue                     # span-level actors: the stack checks their spans
        kind = port_kinds.get(channel)
        if kind is None:
            raise ScenarioError(sc.path, line, actor, f"channel {channel} is not configured "
                                f"(channels: {_ranges(sorted(port_kinds))})")
        if kind != want[actor]:
            raise ScenarioError(sc.path, line, actor, f"channel {channel} is an {kind} port: "
                                f"a {actor} needs an {want[actor]} port")
    for channel, opts in sc.lines.items():
        line = opts.get("__line__")
        kind = port_kinds.get(channel)
        if kind is None:
            raise ScenarioError(sc.path, line, "lines", f"channel {channel} is not configured")
        actor = "phone" if kind == "fxs" else "co_line"
        for k in opts:
            if k != "__line__" and k not in ACTOR_OPTIONS[actor]:
                raise ScenarioError(sc.path, line, k, f"channel {channel} is a {actor} ({kind}); "
                                    f"{actor} options: {', '.join(ACTOR_OPTIONS[actor])}")


def _ranges(numbers: list[int]) -> str:
    out, start = [], None
    for i, n in enumerate(numbers):
        if start is None:
            start = n
        if i + 1 == len(numbers) or numbers[i + 1] != n + 1:
            out.append(f"{start}-{n}" if n != start else f"{n}")
            start = None
    return ",".join(out) or "none"


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


# ---- running a scenario ---------------------------------------------------------------
@dataclasses.dataclass
class SeenEvent:
    seq: int
    tick: int
    kind: str
    channel: int
    span: int
    call_id: str
    fields: dict[str, Any]

    @classmethod
    def from_proto(cls, ev: cardd_pb2.ChannelEvent) -> "SeenEvent":
        kind = ev.WhichOneof("kind") or "?"
        fields = {}
        if kind != "?":
            sub = getattr(ev, kind)
            for f in sub.DESCRIPTOR.fields:
                value = getattr(sub, f.name)
                fields[f.name] = list(value) if f.message_type is None and not isinstance(
                    value, (str, int, float, bool)) else value
        return cls(seq=ev.seq, tick=ev.tick, kind=kind, channel=ev.channel, span=ev.span,
                   call_id=ev.call_id, fields=fields)

    def __str__(self) -> str:
        shown = {k: v for k, v in self.fields.items() if v not in ("", 0, False, [])}
        args = "".join(f" {k}={v!r}" for k, v in shown.items())
        where = f"ch {self.channel}" if self.channel else (f"span {self.span}" if self.span else "node")
        call = f" call {self.call_id}" if self.call_id else ""
        return f"#{self.seq} tick {self.tick} {where} {self.kind}{args}{call}"


@dataclasses.dataclass
class Failure:
    line: int
    what: str
    expected: str
    seen: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.what}\n    expected: {self.expected}\n    seen:     {self.seen}"


class Client:
    """What the runner needs from cardd's client side (simulators.carddclient.CarddClient)."""

    def poll_events(self) -> list[cardd_pb2.ChannelEvent]: ...
    def poll_replies(self) -> list[cardd_pb2.Reply]: ...
    def send(self, cmd: cardd_pb2.Command) -> None: ...
    def subscribed(self) -> bool: ...


class _ScriptRun:
    """One script's progress: the step it is on and that step's phase."""

    def __init__(self, script: Script):
        self.script = script
        self.index = 0
        self.base = 0                # tick the script (re)started
        self.prev_done = 0           # tick the previous step completed
        self.ready: int | None = None
        self.cursor = 0              # events before this index do not trigger this step
        self.began = 0               # len(events) when the current step began
        self.context: dict[str, Any] = {}
        self.triggered = False
        self.done = False
        self.failed = False
        self.loops = 0

    @property
    def step(self) -> Step:
        return self.script.steps[self.index]


class ScenarioRun:
    """Drives a scenario inside the clock loop: World calls step(tick) before its actors.

    Functional core: it sees events and replies through `client`, touches actors through
    `actors` (channel -> Phone/CoLine) and keeps time only in ticks.
    """

    def __init__(self, scenario: Scenario, actors: dict[int, Any], client: Client,
                 tick_s: float = 0.020, log: Callable[[str], None] | None = None):
        self.sc = scenario
        self.actors = actors
        self.client = client
        self.tick_s = tick_s
        self.log = log or (lambda text: None)
        self.events: list[SeenEvent] = []
        self.failures: list[Failure] = []
        self.marks: dict[str, int] = {}
        self.started_at: int | None = None
        self.tick = 0
        self.scripts = [_ScriptRun(s) for s in scenario.scripts]
        self._digits: dict[int, str] = {}
        self._fired: set[int] = set()
        self._pending: list[tuple[int, CommandSpec, dict, int]] = []     # (tick, spec, context, line)
        self._sent: dict[int, tuple[CommandSpec, int, int]] = {}           # id -> (spec, channel, line)
        self._next_id = 1
        self._last_activity = 0
        self.commands_sent = 0
        self.replies_failed = 0
        self.ready = False
        self.first_seq = 0                 # cardd's last event seq when it first answered
        self.tick_offset: int | None = None  # our tick minus cardd's (see _on_event)
        self._hello_ids: set[int] = set()
        self._next_hello = 0
        self._answered = False
        self._subscribed_ticks = 0

    # -- the clock loop calls this every tick --
    def step(self, tick: int) -> None:
        self.tick = tick
        for ev in self.client.poll_events():
            self._on_event(SeenEvent.from_proto(ev))
        for reply in self.client.poll_replies():
            if reply.id in self._hello_ids:
                self._answered = True
                self.first_seq = reply.seq
                continue
            self._on_reply(reply)
        if not self.ready:
            # Scripts begin once cardd answers a command and our subscription to its
            # events is in place (plus a few ticks for cardd to take the subscription in).
            if self._answered and self.client.subscribed():
                self._subscribed_ticks += 1
                self.ready = self._subscribed_ticks > SUBSCRIPTION_SETTLE_TICKS
            if not self._answered and tick >= self._next_hello:
                cmd = cardd_pb2.Command(id=HELLO_ID_BASE + len(self._hello_ids),
                                        status=cardd_pb2.Status())
                self._hello_ids.add(cmd.id)
                self.client.send(cmd)
                self._next_hello = tick + HELLO_EVERY_TICKS
            return
        if self.started_at is None:
            self.started_at = tick
            for run in self.scripts:
                run.base = run.prev_done = tick
                run.cursor = run.began = len(self.events)
        due = [p for p in self._pending if p[0] <= tick]
        self._pending = [p for p in self._pending if p[0] > tick]
        for _, spec, context, line in due:
            self._send(spec, context, line)
        for run in self.scripts:
            self._advance(run, tick)

    # -- events and the application's rules --
    def _on_event(self, ev: SeenEvent) -> None:
        # cardd stamps events with its backend's tick numbers: the simulator's own with the
        # sim backend, the count of its reads with the dahdi backend. An event of tick t
        # reaches us at our tick t+1 at the earliest, so the least lag seen gives the offset
        # between the two numberings (0 with the sim backend; exact in lockstep).
        lag = self.tick - ev.tick - 1
        if self.tick_offset is None or lag < self.tick_offset:
            self.tick_offset = lag
        self.events.append(ev)
        ch = ev.channel
        if ev.kind in ("off_hook", "incoming", "cleared", "on_hook"):
            self._digits[ch] = ""
        elif ev.kind == "digit":
            self._digits[ch] = self._digits.get(ch, "") + ev.fields.get("digit", "")
        for i, rule in enumerate(self.sc.rules):
            if (rule.once and i in self._fired) or not rule.when.matches(ev):
                continue
            if rule.digits is not None and len(self._digits.get(ch, "")) != rule.digits:
                continue
            self._fired.add(i)
            context = {"channel": ch, "digits": self._digits.get(ch, ""), "call_id": ev.call_id,
                       "ani": ev.fields.get("ani", ""), "dnis": ev.fields.get("dnis", "")}
            delay = rule.delay.to_ticks(self.tick_s) if rule.delay else 0
            for spec in rule.send:
                self._pending.append((self.tick + delay, spec, context, rule.line))

    def _send(self, spec: CommandSpec, context: dict, line: int) -> None:
        try:
            cmd = spec.build(self._next_id, context)
        except KeyError:
            self.failures.append(Failure(line, f"command {spec}", "a channel to send it to",
                                         "no channel given and no triggering event"))
            return
        except (ValueError, TypeError) as e:
            self.failures.append(Failure(line, f"command {spec}", "a command cardd can take", str(e)))
            return
        self._sent[cmd.id] = (spec, cmd.channel, line)
        self._next_id += 1
        self.commands_sent += 1
        self.log(f"tick {self.tick}: send {spec.command} to channel {cmd.channel}")
        self.client.send(cmd)

    def _on_reply(self, reply: cardd_pb2.Reply) -> None:
        sent = self._sent.pop(reply.id, None)
        if sent is None:
            return
        spec, channel, line = sent
        if not reply.ok:
            self.replies_failed += 1
        if spec.refused and reply.ok:
            self.failures.append(Failure(line, f"command {spec.command} on channel {channel}",
                                         "a refusal", "accepted"))
        elif not reply.ok and not (spec.may_fail or spec.refused):
            self.failures.append(Failure(line, f"command {spec.command} on channel {channel}",
                                         "ok", f"refused: {reply.error}"))
        else:
            self.log(f"tick {self.tick}: {spec.command} on channel {channel}: "
                     + ("ok" if reply.ok else f"refused ({reply.error})"))

    # -- scripts --
    def _advance(self, run: _ScriptRun, tick: int) -> None:
        while not run.done:
            step = run.step
            if run.ready is None:
                ready = run.prev_done + (step.after.to_ticks(self.tick_s) if step.after else 0)
                if step.at:
                    ready = max(ready, run.base + step.at.to_ticks(self.tick_s))
                run.ready = ready
                run.began = len(self.events)
                run.triggered = step.when is None
                run.context = {}
            if tick < run.ready:
                return
            within = (step.within.to_ticks(self.tick_s) if step.within
                      else int(round(DEFAULT_WITHIN_S / self.tick_s)))
            late = tick - run.ready > within     # only checks and awaited events can be late
            if not run.triggered:
                ev = self._find(step.when, run.cursor)
                if ev is None:
                    if late and step.within is not None:
                        return self._fail(run, step, f"a cardd event {step.when}",
                                          self._nearby(step.when, run.cursor))
                    return
                run.triggered = True
                run.context = {"channel": ev.channel, "call_id": ev.call_id,
                               "ani": ev.fields.get("ani", ""), "dnis": ev.fields.get("dnis", ""),
                               "digits": self._digits.get(ev.channel, "")}
            result = self._do(run, step, tick)
            if result is False:
                return                      # failed; already recorded
            if result is None:
                if late and step.verb in ("expect", "wait_for"):
                    return self._fail(run, step, *self._missing(step, run))
                return
            self._complete(run, step, tick)
            if run.done:
                return

    def _do(self, run: _ScriptRun, step: Step, tick: int) -> bool | None:
        """Carry out the step's verb: True when complete, None while waiting, False failed."""
        if step.verb == "do":
            actor = self._actor(step.target)
            try:
                getattr(actor, step.name)(**step.params)
            except Exception as e:      # an actor refusing (a phone on-hook cannot dial)
                self._fail(run, step, f"{step.name} to be possible", str(e))
                return False
            self.log(f"tick {tick}: {step.describe()}")
            return True
        if step.verb == "expect":
            actor = self._actor(step.target)
            return True if actor.check(step.name, **step.params) else None
        if step.verb == "wait":
            return True if tick - run.ready >= step.wait.to_ticks(self.tick_s) else None
        if step.verb == "wait_for":
            return True if self._find(step.event, run.cursor) is not None else None
        if step.verb == "send":
            self._send(step.command, run.context, step.line)
            return True
        raise AssertionError(step.verb)

    def _actor(self, target: tuple[str, int]):
        """Span-level actors are keyed (kind, span); phones and CO lines by channel."""
        return self.actors[target] if target in self.actors else self.actors[target[1]]

    def _missing(self, step: Step, run: _ScriptRun) -> tuple[str, str]:
        within = step.within or Duration(seconds=DEFAULT_WITHIN_S, text=f"{DEFAULT_WITHIN_S:g}s")
        if step.verb == "expect":
            actor = self._actor(step.target)
            args = "".join(f" {k}={v!r}" for k, v in step.params.items())
            return f"{step.name}{args} within {within}", actor.describe()
        return f"a cardd event {step.event} within {within}", self._nearby(step.event, run.cursor)

    def _complete(self, run: _ScriptRun, step: Step, tick: int) -> None:
        if step.mark:
            self.marks[step.mark] = tick
        self._last_activity = tick
        run.prev_done = tick
        run.ready = None
        run.cursor = run.began              # the next step sees events since this one began
        run.index += 1
        if run.index == len(run.script.steps):
            if run.script.loop:
                run.index = 0
                run.base = tick
                run.loops += 1
            else:
                run.done = True

    def _fail(self, run: _ScriptRun, step: Step, expected: str, seen: str) -> None:
        run.done = run.failed = True
        self._last_activity = self.tick
        self.failures.append(Failure(step.line, f"script {run.script.name!r}: {step.summary()}",
                                     expected, seen))

    def _find(self, match: EventMatch, start: int) -> SeenEvent | None:
        for ev in self.events[start:]:
            if match.matches(ev):
                return ev
        return None

    def _nearby(self, match: EventMatch, start: int) -> str:
        related = [e for e in self.events[start:]
                   if match.channel is None or e.channel == match.channel]
        if not related:
            return "no event" + (f" on channel {match.channel}" if match.channel else "")
        return "; ".join(str(e) for e in related[-6:])

    # -- when the run is over --
    def scripts_done(self) -> bool:
        return all(r.done for r in self.scripts if not r.script.loop)

    def finished(self) -> bool:
        """Every non-looping script done, pending commands sent, marks' windows closed."""
        if self.started_at is None:
            return False
        if self.sc.duration is not None:
            return self.tick - self.started_at >= self.sc.duration.to_ticks(self.tick_s)
        if not self.scripts_done() or self._pending:
            return False
        settle = self.sc.settle.to_ticks(self.tick_s)
        if self.tick - self._last_activity < settle:
            return False
        for e in self.sc.expectations:
            if e.after_mark and e.within and e.after_mark in self.marks:
                if self.tick < self.marks[e.after_mark] + e.within.to_ticks(self.tick_s) + 1 and \
                        self._evaluate(e) is not None:
                    return False
        return True

    def evaluate(self) -> list[Failure]:
        """Failures from the run itself, then every expectation that did not hold."""
        out = list(self.failures)
        for run in self.scripts:
            if not run.done and not run.script.loop:
                step = run.step
                out.append(Failure(step.line, f"script {run.script.name!r} did not finish",
                                   f"{step.summary()} to complete", "the run ended first"))
        for spec, channel, line in self._sent.values():
            out.append(Failure(line, f"command {spec.command} on channel {channel}",
                               "a reply from cardd", "no reply"))
        for e in self.sc.expectations:
            seen = self._evaluate(e)
            if seen is not None:
                out.append(Failure(e.line, "expectation", e.describe(), seen))
        return out

    def _evaluate(self, e: Expectation) -> str | None:
        """None if the expectation holds, else what was seen instead."""
        evs = self.events
        if e.kind == "event":
            start_tick = self.marks.get(e.after_mark) if e.after_mark else None
            if e.after_mark and start_tick is None:
                return f"mark {e.after_mark!r} was never reached"
            if start_tick is not None:
                start_tick -= self.tick_offset or 0          # in cardd's tick numbers
            found = [x for x in evs if e.event.matches(x) and (start_tick is None or x.tick >= start_tick)]
            if not found:
                return self._nearby(e.event, 0)
            if e.within is not None:
                gap = found[0].tick - start_tick
                if gap > e.within.to_ticks(self.tick_s):
                    return (f"{found[0]} came {gap} ticks after the mark (cardd tick {start_tick}"
                            + (f", our tick {self.marks[e.after_mark]})" if self.tick_offset else ")"))
            return None
        if e.kind == "no_event":
            found = [x for x in evs if e.event.matches(x)]
            return None if not found else "; ".join(str(x) for x in found[:5])
        if e.kind == "count":
            n = sum(1 for x in evs if e.event.matches(x))
            if (e.at_least is not None and n < e.at_least) or (e.at_most is not None and n > e.at_most):
                return f"{n} such events"
            return None
        if e.kind == "in_order":
            i = 0
            for x in evs:
                if i < len(e.events) and e.events[i].matches(x):
                    i += 1
            if i == len(e.events):
                return None
            return f"stopped before {e.events[i]}: " + self._nearby(e.events[i], 0)
        if e.kind == "digits":
            got = "".join(x.fields.get("digit", "") for x in evs
                          if x.kind == "digit" and x.channel == e.channel)
            return None if got == e.value else f"digits {got!r}"
        if e.kind == "gap_free":
            seqs = [x.seq for x in evs]
            gaps = [(a, b) for a, b in zip(seqs, seqs[1:]) if b != a + 1]
            if not seqs:
                return "no events at all"
            if gaps:
                return ", ".join(f"{a} then {b}" for a, b in gaps[:5])
            return None
        if e.target is not None:
            actor = self.actors.get(e.target, self.actors.get(e.target[1]))
            if actor is None:
                return f"no {e.kind} on channel {e.target[1]}"
            ok, seen = actor.observed(e.check, e.value)
            return None if ok else seen
        raise AssertionError(e.kind)

    def tail(self, n: int = 15) -> list[str]:
        return [str(e) for e in self.events[-n:]]
