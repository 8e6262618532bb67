"""The IVR interpreter: one `IvrSession` per call, a functional core.

Events go in (start, digit, prompt_done, lookup_result, record_done, external, timer,
hangup), each with the time `now` (seconds) from the caller's clock; actions come out
(Play, Collect, SetVar, Lookup, Queue, Transfer, RecordVoicemail, FaxBack, Hangup,
ExternalStart, ExternalSend, StopMedia, End). Nothing here touches a socket, a file, a
database or the wall clock; `session.deadline` says when the shell must call on_timer.

The session's states and what each event does in each are the table `TRANSITIONS`;
an event a state does not list is ignored (and counted in `session.ignored`).

Media contract with cardd: a Play that replaces a Play still running makes cardd
report PromptDone(interrupted) for the old one, so the session counts the PromptDones
it must skip. With barge-in, cardd reports PromptDone(interrupted, digit) and then the
Digit; both orders are handled. A prompt that never reports its end is cut off after
the flow's prompt_guard; every wait for the caller has a timeout; the whole IVR stay is
bounded by the flow's max_duration.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import logging
from typing import Any, Callable

from .flow import (CatalogRef, Cond, FileRef, Flow, FlowSet, Node, SayText, SayValue,
                   Template)
from .lookup import LookupResult, extract, http_url_quote
from .security import PinGuard, pin_matches
from .speech import SAYERS, SpeechError
from .stats import IvrStats

log = logging.getLogger(__name__)

MAX_STEPS = 200             # node entries in one event: a runaway flow is stopped
MAX_SUBFLOW_DEPTH = 8
TERMINATOR_GRACE_S = 2.0    # after a full entry, a terminator key this soon belongs to it
# Node types that run on after a caller hung up during a recording (they need no caller).
NODES_WITHOUT_CALLER = frozenset({"set", "branch", "lookup", "goto"})


# ---- actions ----------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Prompt:
    """One clip: a recording (`file`) or text for TTS (`text`), in `lang`."""
    text: str = ""
    file: str = ""
    lang: str = "zh"


class Action:
    __slots__ = ()


@dataclasses.dataclass(frozen=True)
class Play(Action):
    prompts: tuple[Prompt, ...]
    barge_in: bool = False


@dataclasses.dataclass(frozen=True)
class PlayTone(Action):
    tone: str


@dataclasses.dataclass(frozen=True)
class StopMedia(Action):
    pass


@dataclasses.dataclass(frozen=True)
class Collect(Action):
    """Digit collection starts (informational: cardd reports every digit anyway)."""
    var: str
    min: int
    max: int
    terminator: str
    timeout_s: float
    inter_digit_s: float


@dataclasses.dataclass(frozen=True)
class SetVar(Action):
    name: str
    value: str


@dataclasses.dataclass(frozen=True)
class Lookup(Action):
    request_id: str
    source: str
    kind: str                          # "sql" or "http"
    url: str                           # the source's database or base URL
    query: str                         # the SQL statement, or the request URL
    params: dict                       # SQL bind parameters, or the POST body
    timeout_s: float
    method: str = ""                   # HTTP method


@dataclasses.dataclass(frozen=True)
class Queue(Action):
    queue: str
    priority: int
    data: dict


@dataclasses.dataclass(frozen=True)
class Transfer(Action):
    number: str
    data: dict


@dataclasses.dataclass(frozen=True)
class RecordVoicemail(Action):
    mailbox: str
    max_s: float
    silence_s: float
    beep: bool
    data: dict


@dataclasses.dataclass(frozen=True)
class FaxBack(Action):
    document: str
    number: str
    data: dict


@dataclasses.dataclass(frozen=True)
class Hangup(Action):
    cause: int = 16


@dataclasses.dataclass(frozen=True)
class ExternalStart(Action):
    app: str
    session: str
    info: dict


@dataclasses.dataclass(frozen=True)
class ExternalSend(Action):
    app: str
    session: str
    event: dict


@dataclasses.dataclass(frozen=True)
class End(Action):
    """The session is over; the call leaves the IVR (outcome: queued, transferred,
    hangup, abandoned, voicemail, error)."""
    outcome: str
    trail: str


# ---- the call and its trail ---------------------------------------------------------------
@dataclasses.dataclass
class CallInfo:
    call_id: str
    ani: str = ""
    dnis: str = ""
    data: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class TrailStep:
    flow: str
    node: str
    t: float                          # seconds since the session started
    keys: str = ""
    exit: str = ""


class Trail:
    """Nodes visited and keys pressed: compact text for the agent's screen and a list."""

    def __init__(self, main_flow: str):
        self.main_flow = main_flow
        self.steps: list[TrailStep] = []

    def compact(self) -> str:
        parts = []
        for s in self.steps:
            name = s.node if s.flow == self.main_flow else f"{s.flow}:{s.node}"
            parts.append(f"{name}[{s.keys}]" if s.keys else name)
        return ">".join(parts)

    def as_list(self) -> list[dict]:
        return [dataclasses.asdict(s) for s in self.steps]

    def json(self) -> str:
        return json.dumps(self.as_list(), ensure_ascii=False, separators=(",", ":"))


class State(enum.Enum):
    IDLE = "idle"
    PLAYING = "playing"          # waiting for a prompt to end
    INPUT = "input"              # waiting for keys
    LOOKUP = "lookup"            # waiting for a back end
    RECORDING = "recording"      # voicemail being recorded
    EXTERNAL = "external"        # an outside program drives the call
    DONE = "done"


S = State
_LIVE = (S.PLAYING, S.INPUT, S.LOOKUP, S.RECORDING, S.EXTERNAL)
TRANSITIONS: dict[tuple[State, str], str] = {
    (S.IDLE, "start"): "_ev_start",
    (S.PLAYING, "prompt_done"): "_ev_played",
    (S.PLAYING, "digit"): "_ev_digit_while_playing",
    (S.PLAYING, "timer"): "_ev_play_guard",
    (S.PLAYING, "external"): "_ev_external",
    (S.INPUT, "digit"): "_ev_input_digit",
    (S.INPUT, "timer"): "_ev_input_timeout",
    (S.INPUT, "external"): "_ev_external",
    (S.LOOKUP, "lookup_result"): "_ev_lookup_result",
    (S.LOOKUP, "timer"): "_ev_lookup_timeout",
    (S.RECORDING, "record_done"): "_ev_recorded",
    (S.RECORDING, "timer"): "_ev_recorded",
    (S.EXTERNAL, "external"): "_ev_external",
    (S.EXTERNAL, "digit"): "_ev_external_digit",
    (S.EXTERNAL, "timer"): "_ev_external_timeout",
    **{(s, "hangup"): "_ev_hangup" for s in _LIVE},
    **{(s, "max_duration"): "_ev_max_duration" for s in _LIVE},
}


@dataclasses.dataclass
class _CollectSpec:
    var: str
    min: int
    max: int
    terminator: str
    timeout_s: float
    inter_digit_s: float
    pattern: Any = None
    secret: bool = False
    barge_in: bool = True


@dataclasses.dataclass
class _Frame:
    flow: Flow
    node: str                      # the subflow node to leave by "next" on return


class IvrSession:
    def __init__(self, flows: FlowSet, flow: str, call: CallInfo, *,
                 guard: PinGuard | None = None, stats: IvrStats | None = None,
                 session_id: str | None = None):
        self.flows = flows
        self.flow: Flow = flows[flow]
        self.main = self.flow
        self.call = call
        self.id = session_id or call.call_id
        self.guard = guard if guard is not None else PinGuard()
        self.stats = stats if stats is not None else IvrStats()
        self.state = S.IDLE
        self.lang = self.flow.language
        self.vars: dict[str, str] = dict(self.flow.vars)
        self.vars.update({f"data.{k}": str(v) for k, v in call.data.items()})
        self.vars.update(ani=call.ani, dnis=call.dnis, call_id=call.call_id, lang=self.lang,
                         flow=self.flow.name)
        self.trail = Trail(self.flow.name)
        self.outcome = ""
        self.ignored = 0
        self.errors: list[str] = []
        self.node: Node | None = None
        self.started = 0.0
        self.now = 0.0
        self._entered_at = 0.0
        self._node_deadline: float | None = None
        self._max_deadline: float | None = None
        self._out: list[Action] = []
        self._playing = False            # a Play of ours is still running on cardd
        self._stale = 0                  # PromptDones still to come for replaced plays
        self._pending_terminator: tuple[str, float] | None = None   # see _late_terminator
        self._caller_gone = False        # hung up during a recording: see _ev_hangup
        self._current_play: tuple = ((), False)
        self._replayed = False
        self._barge = False
        self._last_done = (False, "")
        self._then: Callable[[], None] | None = None
        self._input = ""                 # "menu", "collect", "language" while in INPUT
        self._collect: _CollectSpec | None = None
        self._collect_done: Callable[[str, str], None] | None = None
        self._collect_fail: Callable[[str], None] | None = None
        self._digits = ""
        self._attempt = 0
        self._lookup_id = ""
        self._lookups = 0
        self._lookup_deadline = 0.0
        self._wait_prompt = None
        self._stack: list[_Frame] = []
        self._steps = 0
        self._ext_app = ""
        self._ext_node: Node | None = None

    # ---- public API ----------------------------------------------------------------------
    @property
    def deadline(self) -> float | None:
        ds = [d for d in (self._node_deadline, self._max_deadline) if d is not None]
        return min(ds) if ds and self.state is not S.DONE else None

    @property
    def finished(self) -> bool:
        return self.state is S.DONE

    def start(self, now: float) -> list[Action]:
        return self._dispatch("start", now)

    def on_digit(self, digit: str, now: float) -> list[Action]:
        if not isinstance(digit, str) or len(digit) != 1 or digit not in "0123456789*#ABCD":
            self.errors.append(f"ignored bad digit {digit!r}")
            return []
        return self._dispatch("digit", now, digit=digit)

    def on_prompt_done(self, interrupted: bool, digit: str, now: float) -> list[Action]:
        return self._dispatch("prompt_done", now, interrupted=interrupted, digit=digit)

    def on_lookup_result(self, request_id: str, result: LookupResult, now: float) -> list[Action]:
        return self._dispatch("lookup_result", now, request_id=request_id, result=result)

    def on_record_done(self, ok: bool, path: str, duration_s: float, now: float) -> list[Action]:
        return self._dispatch("record_done", now, ok=ok, path=path, duration_s=duration_s)

    def on_external(self, command: dict, now: float) -> list[Action]:
        return self._dispatch("external", now, command=command)

    def on_timer(self, now: float) -> list[Action]:
        return self._dispatch("timer", now)

    def on_hangup(self, now: float) -> list[Action]:
        return self._dispatch("hangup", now)

    def attached_data(self) -> dict[str, str]:
        """What travels with the call: the IVR trail (compact and structured) and more."""
        return {"ivr_flow": self.main.name, "ivr_trail": self.trail.compact(),
                "ivr_trail_json": self.trail.json(), "ivr_lang": self.lang}

    # ---- dispatch ------------------------------------------------------------------------
    def _dispatch(self, event: str, now: float, **kw) -> list[Action]:
        if self.state is S.DONE:
            return []
        self._out = []
        self._steps = 0
        if now < self.now:
            now = self.now                   # a clock that steps back does not rewind timers
        self.now = now
        if event not in ("timer", "hangup", "start") and self._due(now):
            self._fire_timer()               # an overdue timer goes first
            if self.state is S.DONE:
                return self._out
        if event == "timer":
            self._fire_timer()
            return self._out
        if event == "prompt_done":
            if self._stale > 0:
                self._stale -= 1
                return self._out
            if kw.get("interrupted") and self._late_terminator(kw.get("digit", "")):
                self._replay(stale=False)     # its key stopped the next prompt: play it again
                return self._out
            self._playing = False
        if event == "digit" and self._late_terminator(kw["digit"], consume=True):
            if self.state is S.PLAYING and self._playing and self._barge and not self._replayed:
                self._replay(stale=True)      # key before cardd's PromptDone
            return self._out
        self._handle(event, **kw)
        return self._out

    def _late_terminator(self, digit: str, consume: bool = False) -> bool:
        """Is this the terminator a caller keys after an entry that was already full?

        The prompt said "end with #": a caller who keys all the digits and then '#' must not
        have that '#' barge into (and answer) the next prompt."""
        pending = self._pending_terminator
        if pending is None or digit != pending[0] or self.now > pending[1]:
            return False
        if consume:
            self._pending_terminator = None
        return True

    def _replay(self, stale: bool) -> None:
        prompts, barge_in = self._current_play
        if stale:
            self._stale += 1
        self._replayed = True
        self._emit(Play(prompts, barge_in))
        self._playing = True
        self._node_deadline = self.now + self.flow.prompt_guard_s

    def _due(self, now: float) -> bool:
        d = self.deadline
        return d is not None and now >= d

    def _fire_timer(self) -> None:
        if self._max_deadline is not None and self.now >= self._max_deadline:
            self._max_deadline = None
            self._handle("max_duration")
        elif self._node_deadline is not None and self.now >= self._node_deadline:
            self._node_deadline = None
            self._handle("timer")

    def _handle(self, event: str, **kw) -> None:
        name = TRANSITIONS.get((self.state, event))
        if name is None:
            self.ignored += 1
            return
        getattr(self, name)(**kw)

    def _emit(self, action: Action) -> None:
        self._out.append(action)

    # ---- nodes ---------------------------------------------------------------------------
    def _enter(self, node_id: str) -> None:
        self._steps += 1
        if self._steps > MAX_STEPS:
            self.errors.append(f"flow {self.flow.name}: more than {MAX_STEPS} nodes without "
                               f"waiting for anything (at {node_id}); call ended")
            log.error("IVR %s: %s", self.id, self.errors[-1])
            self._end_with(Hangup(), "error")
            return
        node = self.flow.nodes[node_id]
        if self._caller_gone and node.type not in NODES_WITHOUT_CALLER:
            # the first node that needs the caller ends the call (it is never entered)
            self.state = S.DONE
            self.outcome = "voicemail"
            self._playing = False
            self._node_deadline = self._max_deadline = None
            self._emit(End("voicemail", self.trail.compact()))
            return
        self.node = node
        self._node_deadline = None
        self._entered_at = self.now
        self.trail.steps.append(TrailStep(self.flow.name, node.id, round(self.now - self.started, 3)))
        self.stats.enter(self.flow.name, node.id)
        getattr(self, f"_enter_{node.type}")(node)

    def _leave(self, label: str) -> None:
        node = self.node
        self.trail.steps[-1].exit = label
        self.stats.exit(self.flow.name, node.id, label, self.now - self._entered_at)

    def _goto(self, label: str, target_label: str | None = None) -> None:
        """Leave the current node by exit `label` (stats, trail) to the node named by the
        exit `target_label` (default: the same)."""
        node = self.node
        target = node.exits.get(target_label or label)
        self._leave(label)
        self._enter(target)

    def _keys(self, keys: str) -> None:
        self.trail.steps[-1].keys += keys

    def _set(self, name: str, value: str, announce: bool = True) -> None:
        self.vars[name] = value
        if name == "lang":
            self.lang = value
        if announce:
            self._emit(SetVar(name, value))

    def _render(self, t: Template, escape=None) -> str:
        return t.render(self.vars, escape)

    def _data(self, node: Node) -> dict[str, str]:
        data = self.attached_data()
        data.update({k: self._render(t) for k, t in (node.opts.get("data") or {}).items()})
        return data

    # ---- prompts and playing ---------------------------------------------------------------
    def _prompts(self, items) -> tuple[Prompt, ...]:
        out: list[Prompt] = []
        for item in items or ():
            if isinstance(item, CatalogRef):
                p = self.flow.prompts[item.name]
                entry = p.by_lang.get(self.lang) or p.by_lang.get("*") \
                    or p.by_lang.get(self.flow.language)
                out.append(Prompt(entry.text, entry.file, self.lang))
            elif isinstance(item, SayText):
                text = self._render(item.text)
                if text.strip():
                    out.append(Prompt(text, "", item.lang or self.lang))
            elif isinstance(item, FileRef):
                out.append(Prompt("", item.path, self.lang))
            elif isinstance(item, SayValue):
                out += self._say_value(item)
        return tuple(out)

    def _say_value(self, item: SayValue) -> list[Prompt]:
        value = self._render(item.value)
        try:
            spoken = SAYERS[item.kind](value)
        except SpeechError as e:
            # never say something wrong: leave the value out, and note why
            self.errors.append(f"node {self.node.id if self.node else '?'}: {e}")
            log.warning("IVR %s: %s", self.id, self.errors[-1])
            return []
        if self.lang != "zh":
            text = " ".join(value) if item.kind == "digits" else value
            return [Prompt(text, "", self.lang)]
        if self.flow.say_mode == "fragments":
            out = []
            for word, frag in zip(spoken.words, spoken.fragments):
                p = self.flow.prompts.get(f"frag_{frag}")
                entry = (p.by_lang.get("zh") or p.by_lang.get("*")) if p else None
                out.append(Prompt(entry.text or word, entry.file, "zh") if entry
                           else Prompt(word, "", "zh"))
            return out
        return [Prompt(spoken.text, "", "zh")]

    def _play(self, items, barge_in: bool, then: Callable[[], None]) -> None:
        prompts = self._prompts(items)
        if not prompts:
            then()
            return
        if self._playing:
            self._stale += 1                 # cardd reports the replaced play as done
        self._emit(Play(prompts, barge_in))
        self._current_play = (prompts, barge_in)
        self._replayed = False
        self._playing = True
        self._barge = barge_in
        self._then = then
        self.state = S.PLAYING
        self._node_deadline = self.now + self.flow.prompt_guard_s

    def _stop_media(self) -> None:
        if self._playing:
            self._emit(StopMedia())
            self._stale += 1
            self._playing = False

    def _ev_played(self, interrupted: bool = False, digit: str = "") -> None:
        self._last_done = (interrupted, digit)
        then, self._then = self._then, None
        self._node_deadline = None
        if then is not None:
            then()

    def _ev_digit_while_playing(self, digit: str) -> None:
        if not self._barge:
            return                           # keys during a prompt that cannot be interrupted
        # the digit came before cardd's PromptDone: that report is now stale
        self._stale += 1
        self._playing = False
        self._ev_played(True, digit)
        if self.state in (S.INPUT, S.EXTERNAL):
            self._handle("digit", digit=digit)

    def _ev_play_guard(self) -> None:
        self.errors.append(f"node {self.node.id}: prompt did not finish within "
                           f"{self.flow.prompt_guard_s:g} s; moving on")
        self._ev_played()

    def _await_input(self, kind: str, timeout_s: float) -> None:
        self.state = S.INPUT
        self._input = kind
        self._node_deadline = self.now + timeout_s

    # ---- start, end, hangup ------------------------------------------------------------
    def _ev_start(self) -> None:
        self.started = self.now
        self._max_deadline = self.now + self.main.max_duration_s
        self._enter(self.flow.start)

    def _end_with(self, action, outcome: str) -> None:
        """End the session; `action` (or a function making it, called once the trail
        records the exit, so the data it carries is final) goes out before End."""
        if self.state is not S.DONE and self.trail.steps and not self.trail.steps[-1].exit:
            self._leave(outcome)
        if callable(action):
            action = action()
        if action is not None:
            self._emit(action)
        self.state = S.DONE
        self.outcome = outcome
        self._node_deadline = self._max_deadline = None
        self._emit(End(outcome, self.trail.compact()))

    def _ev_hangup(self) -> None:
        if self.state is S.RECORDING and not self._caller_gone:
            # "Hang up when you are done": the message is the point of the call. Wait for the
            # recording to close, then run the nodes that need no caller (a ticket insert...).
            self._caller_gone = True
            return
        dwell = self.now - self._entered_at
        outcome = "voicemail" if self.state is S.RECORDING else "abandoned"
        if self._ext_app:
            self._emit(ExternalSend(self._ext_app, self.id, {"kind": "hangup"}))
        if self.node is not None:
            if outcome == "abandoned":
                self.stats.abandon(self.flow.name, self.node.id, dwell)
                self.trail.steps[-1].exit = "hangup"
            else:
                self._leave("hangup")
        self.state = S.DONE
        self.outcome = outcome
        self._playing = False
        self._node_deadline = self._max_deadline = None
        self._emit(End(outcome, self.trail.compact()))

    def _ev_max_duration(self) -> None:
        self.errors.append(f"call in the IVR longer than {self.main.max_duration_s:g} s")
        self._stop_media()
        if self._ext_app:
            self._send({"kind": "hangup", "reason": "max_duration"})
            self._ext_leave()
        target = self.main.on_max_duration
        self._leave("max_duration")
        if target:
            self.flow, self._stack = self.main, []
            self._enter(target)
        else:
            self._end_with(Hangup(), "max_duration")

    # ---- play ------------------------------------------------------------------------------
    def _enter_play(self, node: Node) -> None:
        self._play(node.opts["prompt"], node.opts["barge_in"], lambda: self._goto("next"))

    # ---- menu ------------------------------------------------------------------------------
    def _enter_menu(self, node: Node) -> None:
        self._attempt = 0
        self._menu_prompt(node, node.opts["prompt"])

    def _menu_prompt(self, node: Node, items) -> None:
        self._play(items, node.opts["barge_in"],
                   lambda: self._await_input("menu", node.opts["timeout"]))

    def _menu_digit(self, digit: str) -> None:
        node = self.node
        self._keys(digit)
        if digit in node.opts["options"]:
            if node.opts["var"]:
                self._set(node.opts["var"], digit)
            self._goto(digit)
        elif digit == node.opts["repeat_key"]:
            self.stats.event(self.flow.name, node.id, "repeat")
            self._menu_prompt(node, node.opts["prompt"])
        else:
            self._retry(node, "invalid")

    def _retry(self, node: Node, why: str) -> None:
        """An invalid entry or no entry: prompt again, or leave by on_fail."""
        self.stats.event(self.flow.name, node.id, why)
        self._attempt += 1
        if self._attempt > node.opts["retries"]:
            self._goto("fail", "on_fail")
            return
        extra = node.opts["invalid_prompt"] if why == "invalid" else node.opts["timeout_prompt"]
        items = tuple(extra or ()) + tuple(node.opts["prompt"])
        if node.type == "menu":
            self._menu_prompt(node, items)
        else:
            self._collect_prompt(items)

    # ---- collect ----------------------------------------------------------------------------
    def _enter_collect(self, node: Node) -> None:
        o = node.opts
        self._attempt = 0
        spec = _CollectSpec(o["var"], o["min"], o["max"], o["terminator"], o["timeout"],
                            o["inter_digit_timeout"], o["pattern"], o["secret"], o["barge_in"])
        self._emit(Collect(spec.var, spec.min, spec.max, spec.terminator, spec.timeout_s,
                           spec.inter_digit_s))
        self._begin_collect(spec, o["prompt"], self._collect_node_done,
                            lambda why: self._retry(self.node, why))

    def _begin_collect(self, spec: _CollectSpec, items, done, fail) -> None:
        self._collect, self._collect_done, self._collect_fail = spec, done, fail
        self._collect_prompt(items)

    def _collect_prompt(self, items) -> None:
        self._digits = ""
        spec = self._collect
        self._play(items, spec.barge_in, lambda: self._await_input("collect", spec.timeout_s))

    def _collect_digit(self, digit: str) -> None:
        spec = self._collect
        if spec.terminator and digit == spec.terminator:
            self._keys(digit)
            self._collect_finish("terminator")
            return
        self._digits += digit
        self._keys("*" if spec.secret else digit)
        if len(self._digits) >= spec.max:
            self._collect_finish("max")
        else:
            self._node_deadline = self.now + spec.inter_digit_s

    def _collect_timeout(self) -> None:
        if self._digits:
            self._collect_finish("timeout")
        else:
            self._collect_fail("no_input")

    def _collect_finish(self, reason: str) -> None:
        spec, digits = self._collect, self._digits
        if reason == "max" and spec.terminator:
            self._pending_terminator = (spec.terminator,
                                        self.now + min(spec.inter_digit_s, TERMINATOR_GRACE_S))
        if len(digits) < spec.min or (spec.pattern is not None and not spec.pattern.fullmatch(digits)):
            self._collect_fail("invalid")
            return
        self._collect_done(digits, reason)

    def _collect_node_done(self, digits: str, reason: str) -> None:
        spec = self._collect
        self._set(spec.var, digits, announce=not spec.secret)
        self._goto("next")

    # ---- language ----------------------------------------------------------------------------
    def _enter_language(self, node: Node) -> None:
        self._play(node.opts["prompt"], node.opts["barge_in"],
                   lambda: self._await_input("language", node.opts["timeout"]))

    def _language_digit(self, digit: str) -> None:
        node = self.node
        self._keys(digit)
        lang = node.opts["options"].get(digit)
        if lang is None:
            self.stats.event(self.flow.name, node.id, "invalid")
            self._choose_language(self.flow.language, "default")
        else:
            self._choose_language(lang, digit)

    def _choose_language(self, lang: str, label: str) -> None:
        self._set("lang", lang)
        self._goto(label, "next")

    # ---- input dispatch -------------------------------------------------------------------------
    def _ev_input_digit(self, digit: str) -> None:
        if self._input == "menu":
            self._menu_digit(digit)
        elif self._input == "collect":
            self._collect_digit(digit)
        elif self._input == "language":
            self._language_digit(digit)

    def _ev_input_timeout(self) -> None:
        if self._input == "menu":
            self._retry(self.node, "no_input")
        elif self._input == "collect":
            self._collect_timeout()
        elif self._input == "language":
            self.stats.event(self.flow.name, self.node.id, "no_input")
            self._choose_language(self.flow.language, "default")

    # ---- lookup --------------------------------------------------------------------------------
    def _enter_lookup(self, node: Node) -> None:
        o = node.opts
        src = self.flow.sources[o["source"]]
        timeout = o["timeout"] or src.timeout_s
        self._lookups += 1
        self._lookup_id = f"{self.id}:{self._lookups}"
        if o["sql"] is not None:
            action = Lookup(self._lookup_id, src.name, "sql", src.url, o["sql"],
                            {k: self._render(t) for k, t in o["params"].items()}, timeout)
        else:
            h = o["http"]
            action = Lookup(self._lookup_id, src.name, "http", src.url,
                            self._render(h["url"], http_url_quote),
                            {k: self._render(t) for k, t in h["body"].items()}, timeout,
                            h["method"])
        self._emit(action)
        self.state = S.LOOKUP
        self._lookup_deadline = self.now + timeout
        # a slow back end: after wait_after the caller hears the wait prompt, not silence
        self._wait_prompt = o["wait_prompt"] if o["wait_prompt"] and o["wait_after"] < timeout else None
        self._node_deadline = (self.now + o["wait_after"]) if self._wait_prompt else self._lookup_deadline
        if self._wait_prompt and o["wait_after"] == 0:
            self._ev_lookup_timeout()

    def _ev_lookup_result(self, request_id: str, result: LookupResult) -> None:
        if request_id != self._lookup_id:
            self.ignored += 1                # a late answer to an earlier look-up
            return
        self._lookup_id = ""
        node = self.node
        if not result.ok:
            self._lookup_fallback(result.error or "lookup failed")
            return
        if result.row is None:
            self.stats.event(self.flow.name, node.id, "not_found")
            self._goto("not_found", "not_found" if "not_found" in node.exits else "fallback")
            return
        values = {}
        for var, column in node.opts["result"].items():
            try:
                v = extract(result.row, column)
            except KeyError:
                self._lookup_fallback(f"the answer has no {column!r}")
                return
            values[var] = "" if v is None else str(v)
        for var, v in values.items():
            self._set(var, v)
        self._goto("next")

    def _lookup_fallback(self, error: str) -> None:
        self.stats.event(self.flow.name, self.node.id, "error")
        self._set("lookup_error", error)
        self._goto("fallback")

    def _ev_lookup_timeout(self) -> None:
        if self._wait_prompt is not None and self.now < self._lookup_deadline and not self._caller_gone:
            prompts = self._prompts(self._wait_prompt)
            self._wait_prompt = None
            if prompts:
                if self._playing:
                    self._stale += 1
                self._emit(Play(prompts, False))
                self._playing, self._barge, self._then = True, False, None
            self._node_deadline = self._lookup_deadline
            return
        self._lookup_id = ""
        self.stats.event(self.flow.name, self.node.id, "timeout")
        self._set("lookup_error", "timeout")
        self._goto("fallback")

    # ---- set, branch, goto ---------------------------------------------------------------------
    def _enter_set(self, node: Node) -> None:
        for name, t in node.opts["vars"].items():
            self._set(name, self._render(t))
        self._goto("next")

    def _enter_branch(self, node: Node) -> None:
        for i, (cond, _, _) in enumerate(node.opts["cases"]):
            if self._test(cond):
                self._goto(f"case{i + 1}")
                return
        self._goto("else")

    def _enter_goto(self, node: Node) -> None:
        self._goto("to")

    def _local_now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.now, self.main.timezone)

    def _test(self, cond: Cond) -> bool:
        op, a = cond.op, cond.args
        if op == "var":
            name, test, arg = a
            v = self.vars.get(name, "")
            if test == "eq":
                return v == self._render(arg)
            if test == "ne":
                return v != self._render(arg)
            if test == "in":
                return v in arg
            if test == "not_in":
                return v not in arg
            if test == "matches":
                return arg.fullmatch(v) is not None
            if test == "empty":
                return (v == "") == arg
            try:
                x = float(v)
            except ValueError:
                return False
            return {"lt": x < arg, "le": x <= arg, "gt": x > arg, "ge": x >= arg}[test]
        when = self._local_now()
        if op == "open":
            return self.flow.calendars[a].is_open(when)
        if op == "closed":
            return not self.flow.calendars[a].is_open(when)
        if op == "holiday":
            return when.date() in self.flow.calendars[a].holidays
        if op == "time":
            start, end = a
            t = when.time()
            return start <= t < end if start <= end else (t >= start or t < end)
        if op == "weekday":
            return when.weekday() in a
        if op == "date":
            return a[0] <= when.date() <= a[1]
        if op == "in_list":
            name, var = a
            return self.vars.get(var, "") in self.flow.lists[name]
        if op == "all":
            return all(self._test(c) for c in a)
        if op == "any":
            return any(self._test(c) for c in a)
        if op == "not":
            return not self._test(a)
        raise AssertionError(op)

    # ---- PIN ------------------------------------------------------------------------------------
    def _enter_pin(self, node: Node) -> None:
        o = node.opts
        account = self._render(o["account"])
        ok = pin_matches(self._render(o["entered"]), self._render(o["expected"]), o["hash"])
        v = self.guard.check(account, self.call.ani, ok, self.now, call_id=self.call.call_id,
                             flow=self.flow.name)
        self._set("pin_failures", str(v.failures), announce=False)
        self._goto({"ok": "next", "failed": "retry", "locked": "locked"}[v.result])

    # ---- leaving the IVR --------------------------------------------------------------------------
    def _enter_queue(self, node: Node) -> None:
        def queue_now():
            self._stop_media()
            self._end_with(lambda: Queue(self._render(node.opts["queue"]), node.opts["priority"],
                                         self._data(node)), "queued")
        self._play(node.opts["prompt"], False, queue_now)

    def _enter_transfer(self, node: Node) -> None:
        def transfer_now():
            self._stop_media()
            self._end_with(lambda: Transfer(self._render(node.opts["to"]), self._data(node)),
                           "transferred")
        self._play(node.opts["prompt"], False, transfer_now)

    def _enter_hangup(self, node: Node) -> None:
        def hangup_now():
            self._stop_media()
            self._end_with(Hangup(node.opts["cause"]), "hangup")
        self._play(node.opts["prompt"], False, hangup_now)

    def _enter_voicemail(self, node: Node) -> None:
        o = node.opts

        def record():
            self._stop_media()
            self._emit(RecordVoicemail(self._render(o["mailbox"]), o["max_length"], o["silence"],
                                       o["beep"], self._data(node)))
            self.state = S.RECORDING
            self._node_deadline = self.now + o["max_length"] + 10.0
        self._play(o["prompt"], False, record)

    def _ev_recorded(self, ok: bool = False, path: str = "", duration_s: float = 0.0) -> None:
        node = self.node
        if node.opts["var"]:
            self._set(node.opts["var"], path if ok else "")
        self._set("recording", path if ok else "", announce=False)
        if not ok:
            self.stats.event(self.flow.name, node.id, "record_failed")
        self._goto("next")

    def _enter_faxback(self, node: Node) -> None:
        self._emit(FaxBack(self._render(node.opts["document"]), self._render(node.opts["to"]),
                           self._data(node)))
        self._goto("next")

    # ---- sub-flows ---------------------------------------------------------------------------
    def _enter_subflow(self, node: Node) -> None:
        if len(self._stack) >= MAX_SUBFLOW_DEPTH:
            self.errors.append(f"sub-flows nested deeper than {MAX_SUBFLOW_DEPTH} at {node.id}")
            self._goto("next")
            return
        target = self.flows[node.opts["flow"]]
        self._leave("call")
        self._stack.append(_Frame(self.flow, node.id))
        self.flow = target
        self._enter(target.start)

    def _enter_return(self, node: Node) -> None:
        self._leave("return")
        if not self._stack:
            self._end_with(Hangup(), "error")
            return
        frame = self._stack.pop()
        self.flow = frame.flow
        self.node = frame.flow.nodes[frame.node]
        self._enter(self.node.exits["next"])

    # ---- external IVR ------------------------------------------------------------------------
    def _enter_external(self, node: Node) -> None:
        self._stop_media()
        self._ext_app = node.opts["app"]
        self._ext_node = node
        self._set("external_app", self._ext_app, announce=False)
        info = {"call_id": self.call.call_id, "ani": self.call.ani, "dnis": self.call.dnis,
                "flow": self.flow.name, "node": node.id, "lang": self.lang,
                "trail": self.trail.compact(),
                "vars": {k: v for k, v in self.vars.items() if not k.startswith("_")}}
        self._emit(ExternalStart(self._ext_app, self.id, info))
        self._external_wait()

    def _external_wait(self) -> None:
        self.state = S.EXTERNAL
        self._node_deadline = self.now + self._ext_node.opts["timeout"]

    def _send(self, event: dict) -> None:
        self._emit(ExternalSend(self._ext_app, self.id, event))

    def _ev_external(self, command: dict) -> None:
        if not self._ext_app:
            self.ignored += 1
            return
        kind = command.get("kind") if isinstance(command, dict) else None
        handler = getattr(self, f"_ext_{kind}", None) if isinstance(kind, str) else None
        if handler is None:
            self._send({"kind": "error", "error": f"unknown command {kind!r}"})
            return
        try:
            handler(command)
        except (KeyError, TypeError, ValueError) as e:
            self._send({"kind": "error", "error": f"bad {kind} command: {e}"})
            if self.state is S.EXTERNAL:
                self._external_wait()

    def _ext_play(self, cmd: dict) -> None:
        prompts = tuple(Prompt(str(p.get("text", "")), str(p.get("file", "")),
                               str(p.get("lang") or self.lang)) for p in cmd["prompts"])
        if not prompts or any(not (p.text or p.file) for p in prompts):
            raise ValueError("every prompt needs text or a file")
        self._collect = None
        if self._playing:
            self._stale += 1
        self._emit(Play(prompts, bool(cmd.get("barge_in", False))))
        self._playing, self._barge = True, bool(cmd.get("barge_in", False))
        self.state = S.PLAYING
        self._node_deadline = self.now + self.flow.prompt_guard_s

        def done():
            interrupted, digit = self._last_done
            self._send({"kind": "prompt_done", "interrupted": interrupted, "digit": digit})
            self._external_wait()
        self._then = done

    def _ext_collect(self, cmd: dict) -> None:
        spec = _CollectSpec("", int(cmd.get("min", 1)), int(cmd.get("max", 20)),
                            str(cmd.get("terminator", "#")), float(cmd.get("timeout", 5.0)),
                            float(cmd.get("inter_digit_timeout", 3.0)),
                            barge_in=bool(cmd.get("barge_in", True)))
        if not 0 <= spec.min <= spec.max or spec.max < 1 or spec.timeout_s <= 0:
            raise ValueError("need 0 <= min <= max, max >= 1, timeout > 0")
        prompts = [{"text": p.get("text", ""), "file": p.get("file", "")} for p in cmd.get("prompts", [])]
        items = tuple(SayText(Template(p["text"])) if p["text"] else FileRef(p["file"])
                      for p in prompts if p["text"] or p["file"])

        def done(digits, reason):
            self._send({"kind": "collected", "digits": digits, "reason": reason})
            self._external_wait()

        def fail(why):
            self._send({"kind": "collected", "digits": self._digits, "reason": why})
            self._external_wait()
        self._begin_collect(spec, items, done, fail)

    def _ext_set(self, cmd: dict) -> None:
        for k, v in dict(cmd["vars"]).items():
            self._set(str(k), str(v))
        self._send({"kind": "ok"})
        self._external_wait()

    def _ext_leave(self) -> None:
        self._ext_app = ""

    def _ext_transfer(self, cmd: dict) -> None:
        number = str(cmd["to"])
        self._ext_leave()
        self._stop_media()
        self._end_with(lambda: Transfer(number, self._data(self.node)), "transferred")

    def _ext_queue(self, cmd: dict) -> None:
        queue = str(cmd["queue"])
        self._ext_leave()
        self._stop_media()
        priority = int(cmd.get("priority", 0))
        self._end_with(lambda: Queue(queue, priority, self._data(self.node)), "queued")

    def _ext_hangup(self, cmd: dict) -> None:
        self._ext_leave()
        self._stop_media()
        self._end_with(Hangup(int(cmd.get("cause", 16))), "hangup")

    def _ext_return(self, cmd: dict) -> None:
        for k, v in dict(cmd.get("vars") or {}).items():
            self._set(str(k), str(v))
        self._ext_leave()
        self._stop_media()
        self._goto("next")

    def _ext_unreachable(self, cmd: dict) -> None:
        # the bridge could not deliver to the application: do not keep the caller waiting
        self.stats.event(self.flow.name, self.node.id, "unreachable")
        self._ext_leave()
        self._stop_media()
        self._set("external_error", "unreachable", announce=False)
        self._goto("fallback")

    def _ev_external_digit(self, digit: str) -> None:
        self._keys(digit)
        self._send({"kind": "digit", "digit": digit})

    def _ev_external_timeout(self) -> None:
        self.stats.event(self.flow.name, self.node.id, "timeout")
        self._send({"kind": "hangup", "reason": "timeout"})   # the app lets the call go
        self._ext_leave()
        self._set("external_error", "timeout", announce=False)
        self._goto("fallback")
