"""The IVR flow language: YAML files loaded into `Flow` objects.

A flow file::

    flow: gov12345                   # the name routes use: "ivr:gov12345"
    start: welcome
    languages: [zh, en]              # the first one is the default
    timezone: Asia/Shanghai
    vars: {vip: "no"}                # variables the flow uses beyond the built-ins
    calendars: {office: {open: ["mon-fri 08:30-17:30"], holidays: [...], workdays: [...]}}
    lists: {blacklist: ["13800000000"], vip: {file: lists/vip.txt}}
    sources: {crm: {http: "http://127.0.0.1:8089", timeout: 2}}
    prompts: {welcome: {zh: "您好...", en: "Welcome..."}}
    nodes:
      welcome: {type: play, prompt: welcome, next: menu}
      ...

Node types and their keys are the table `NODE_TYPES` below. A prompt is a catalog
name, or one of {say: TEXT}, {file: PATH}, {digits|number|money|date|time|datetime:
VALUE}, or a list of those; TEXT and VALUE may hold ${variables}.

Loading checks the structure (YAML syntax, duplicate keys, unknown or missing keys,
wrong types, unknown node types); `ivr.validate` checks the graph. Every problem is an
`Issue` naming the file, the line and the node.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
from pathlib import Path
from typing import Any, Callable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from ctid.model.routing import Calendar, RoutingError

from .speech import SAYERS

DTMF_KEYS = "0123456789*#"
MAX_MENU_OPTIONS = 10
BUILTIN_VARS = frozenset({"ani", "dnis", "call_id", "lang", "flow", "node", "lookup_error",
                          "pin_failures", "recording", "external_app",
                          "external_error"})
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_.]*)\}")


# ---- problems -------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Issue:
    file: str
    line: int
    node: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:"
        return f"{where} node {self.node!r}: {self.message}" if self.node else f"{where} {self.message}"


class FlowError(ValueError):
    """A flow file that cannot be used; `.issues` lists every problem found."""

    def __init__(self, issues: list[Issue]):
        self.issues = list(issues)
        super().__init__("\n".join(str(i) for i in self.issues))


class _Bad(Exception):
    """A value that does not fit its key (caught and turned into an Issue)."""


# ---- YAML with line numbers -----------------------------------------------------------
class LMap(dict):
    """A YAML mapping that remembers the line of itself and of each key."""
    line = 0
    key_lines: dict


class LList(list):
    line = 0


class _DuplicateKey(Exception):
    def __init__(self, key, line):
        self.key, self.line = key, line


class _Loader(yaml.SafeLoader):
    pass


def _map(loader: _Loader, node: yaml.MappingNode) -> LMap:
    loader.flatten_mapping(node)
    m = LMap()
    m.line = node.start_mark.line + 1
    m.key_lines = {}
    for k_node, v_node in node.value:
        key = loader.construct_object(k_node, deep=True)
        if isinstance(key, int) and not isinstance(key, bool):
            key = str(key)               # menu keys 1: ... are digits, not numbers
        if key in m:
            raise _DuplicateKey(key, k_node.start_mark.line + 1)
        m[key] = loader.construct_object(v_node, deep=True)
        m.key_lines[key] = k_node.start_mark.line + 1
    return m


def _seq(loader: _Loader, node: yaml.SequenceNode) -> LList:
    out = LList(loader.construct_object(v, deep=True) for v in node.value)
    out.line = node.start_mark.line + 1
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _map)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _seq)


def load_yaml(path: str | os.PathLike, text: str | None = None) -> Any:
    """Parse YAML keeping line numbers; errors name the file and the line."""
    path = str(path)
    if text is None:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise FlowError([Issue(path, 0, "", f"cannot read: {e.strerror}")]) from None
        except UnicodeDecodeError as e:
            raise FlowError([Issue(path, 0, "", f"not UTF-8 text: {e.reason}")]) from None
    try:
        return yaml.load(text, Loader=_Loader)
    except _DuplicateKey as e:
        raise FlowError([Issue(path, e.line, "", f"duplicate key {e.key!r}")]) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        line = mark.line + 1 if mark else 0
        problem = getattr(e, "problem", None) or str(e)
        hint = ""
        if "alias" in str(e) or "'*'" in str(e):
            hint = " (quote the keys * and #: \"*\": ..., \"#\": ...)"
        raise FlowError([Issue(path, line, "", f"YAML syntax: {problem}{hint}")]) from None


# ---- templates --------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Template:
    """Text with ${var} references; $$ is a literal dollar."""
    text: str

    @property
    def vars(self) -> frozenset[str]:
        return frozenset(m.group(1) for m in _VAR.finditer(self.text))

    def render(self, variables: dict[str, str], escape: Callable[[str], str] | None = None) -> str:
        """Substitute variables (unset ones are empty); `escape` quotes each value (URLs)."""
        def value(m):
            v = str(variables.get(m.group(1), ""))
            return escape(v) if escape else v
        return _VAR.sub(value, self.text.replace("$$", "\0")).replace("\0", "$")

    @property
    def static(self) -> bool:
        return not self.vars


# ---- prompts ----------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class CatalogRef:
    name: str


@dataclasses.dataclass(frozen=True)
class SayText:
    text: Template
    lang: str = ""                   # "" = the call's language


@dataclasses.dataclass(frozen=True)
class FileRef:
    path: str                        # absolute, resolved against the flow file's folder


@dataclasses.dataclass(frozen=True)
class SayValue:
    kind: str                        # a key of ivr.speech.SAYERS
    value: Template


PromptItem = CatalogRef | SayText | FileRef | SayValue


@dataclasses.dataclass(frozen=True)
class PromptText:
    """One catalog entry in one language: a recording, or text for TTS, or both (the
    text then documents the recording and serves the simulated caller's matching)."""
    text: str = ""
    file: str = ""


@dataclasses.dataclass
class PromptDef:
    name: str
    line: int
    file: str                        # the catalog it came from
    by_lang: dict[str, PromptText]   # "*" = any language


# ---- conditions -------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Cond:
    op: str                          # var, open, closed, holiday, time, weekday, date, in_list, all, any, not
    args: Any
    line: int


_VAR_TESTS = ("eq", "ne", "in", "not_in", "lt", "le", "gt", "ge", "matches", "empty")
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


# ---- nodes and flows ------------------------------------------------------------------
@dataclasses.dataclass
class Node:
    id: str
    type: str
    line: int
    opts: dict[str, Any]
    exits: dict[str, str]            # exit label -> target node id
    exit_lines: dict[str, int]
    key_lines: dict[str, int]


@dataclasses.dataclass
class SourceSpec:
    name: str
    kind: str                        # "sql" or "http"
    url: str
    timeout_s: float
    line: int


@dataclasses.dataclass
class Flow:
    name: str
    path: str
    kind: str                        # "main" or "subflow"
    start: str
    start_line: int
    languages: list[str]
    timezone: dt.tzinfo
    max_duration_s: float
    on_max_duration: str
    say_mode: str                    # "tts" (whole phrases) or "fragments"
    vars: dict[str, str]
    calendars: dict[str, Calendar]
    lists: dict[str, frozenset[str]]
    sources: dict[str, SourceSpec]
    prompts: dict[str, PromptDef]
    nodes: dict[str, Node]
    line_of: dict[str, int]          # top-level key -> line
    prompt_guard_s: float = 300.0    # a prompt that never reports its end is cut off

    @property
    def language(self) -> str:
        return self.languages[0]

    def issue(self, line: int, node: str, message: str) -> Issue:
        return Issue(self.path, line, node, message)


# ---- field parsers ----------------------------------------------------------------------
class _Ctx:
    def __init__(self, path: str, base: Path):
        self.path, self.base = path, base
        self.issues: list[Issue] = []
        self.node = ""

    def add(self, line: int, message: str, node: str | None = None) -> None:
        self.issues.append(Issue(self.path, line, self.node if node is None else node, message))


def _str(ctx, v, line):
    if isinstance(v, bool) or not isinstance(v, (str, int, float)):
        raise _Bad(f"must be text, got {type(v).__name__}")
    return str(v)


def _name(ctx, v, line):
    s = _str(ctx, v, line)
    if not _NAME.fullmatch(s):
        raise _Bad(f"{s!r} is not a name (letters, digits, _ and -)")
    return s


def _varname(ctx, v, line):
    s = _str(ctx, v, line)
    if not _VAR.fullmatch("${" + s + "}"):
        raise _Bad(f"{s!r} is not a variable name")
    return s


def _template(ctx, v, line):
    return Template(_str(ctx, v, line))


def _bool(ctx, v, line):
    if not isinstance(v, bool):
        raise _Bad(f"must be true or false, got {v!r}")
    return v


def _number(lo: float | None = None, hi: float | None = None, integer: bool = False):
    def parse(ctx, v, line):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise _Bad(f"must be a number, got {v!r}")
        if integer and not float(v).is_integer():
            raise _Bad(f"must be a whole number, got {v!r}")
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            rng = f"{lo if lo is not None else '-inf'}..{hi if hi is not None else 'inf'}"
            raise _Bad(f"{v!r} is out of range {rng}")
        return int(v) if integer else float(v)
    return parse


def _keyset(ctx, v, line):
    s = "" if v is None else _str(ctx, v, line)
    if len(s) > 1 or (s and s not in DTMF_KEYS):
        raise _Bad(f"{s!r} is not one DTMF key (0-9, *, #) or empty")
    return s


def _node_ref(ctx, v, line):
    return _name(ctx, v, line)


def _str_map(ctx, v, line):
    if not isinstance(v, dict):
        raise _Bad("must be a mapping of name: value")
    out = {}
    for k, val in v.items():
        if not isinstance(k, str) or not _NAME.fullmatch(k):
            raise _Bad(f"{k!r} is not a name")
        if isinstance(val, (dict, list)) or val is None:
            raise _Bad(f"{k}: must be text or a number")
        out[k] = Template(str(val).lower() if isinstance(val, bool) else str(val))
    return out


def _prompt(ctx, v, line):
    items = v if isinstance(v, list) else [v]
    if not items:
        raise _Bad("is an empty list")
    out = []
    for item in items:
        if isinstance(item, str):
            if not _NAME.fullmatch(item):
                raise _Bad(f"{item!r} is not a prompt name; for spoken text write {{say: ...}}")
            out.append(CatalogRef(item))
        elif isinstance(item, dict) and set(item) == {"say", "lang"}:
            out.append(SayText(Template(_str(ctx, item["say"], line)), _name(ctx, item["lang"], line)))
        elif isinstance(item, dict) and len(item) == 1:
            (kind, val), = item.items()
            if kind == "say":
                out.append(SayText(Template(_str(ctx, val, line))))
            elif kind == "file":
                out.append(FileRef(str((ctx.base / _str(ctx, val, line)).resolve())))
            elif kind in SAYERS:
                out.append(SayValue(kind, Template(_str(ctx, val, line))))
            elif kind == "prompt":
                out.append(CatalogRef(_name(ctx, val, line)))
            else:
                raise _Bad(f"unknown prompt kind {kind!r} (expected say, file, prompt, "
                           f"{', '.join(SAYERS)})")
        else:
            raise _Bad(f"a prompt is a name or a one-key mapping, got {item!r}")
    return tuple(out)


def _options(ctx, v, line):
    """Menu options: DTMF key -> node."""
    if not isinstance(v, dict) or not v:
        raise _Bad("must be a mapping of key: node")
    out = {}
    for k, target in v.items():
        kline = v.key_lines.get(k, line) if isinstance(v, LMap) else line
        key = str(k)
        if len(key) != 1 or key not in DTMF_KEYS:
            ctx.add(kline, f"bad option key {key!r}: a key is one of 0-9, * or # "
                           f"(quote * and #)")
            continue
        try:
            out[key] = _node_ref(ctx, target, kline)
        except _Bad as e:
            ctx.add(kline, f"option {key!r}: {e}")
    if len(v) > MAX_MENU_OPTIONS:
        ctx.add(line, f"a menu has at most {MAX_MENU_OPTIONS} options, this one has {len(v)}")
    return out


def _lang_options(ctx, v, line):
    if not isinstance(v, dict) or not v:
        raise _Bad("must be a mapping of key: language")
    out = {}
    for k, lang in v.items():
        kline = v.key_lines.get(k, line) if isinstance(v, LMap) else line
        if len(str(k)) != 1 or str(k) not in DTMF_KEYS:
            ctx.add(kline, f"bad option key {k!r}: a key is one of 0-9, * or #")
            continue
        out[str(k)] = _name(ctx, lang, kline)
    return out


def _cond(ctx, v, line) -> Cond:
    if not isinstance(v, dict) or not v:
        raise _Bad(f"a condition is a mapping, got {v!r}")
    line = getattr(v, "line", line)
    keys = set(v)
    if keys == {"in_list", "var"}:                 # another variable than the caller's number
        return Cond("in_list", (_name(ctx, v["in_list"], line), _varname(ctx, v["var"], line)), line)
    if "var" in keys:
        tests = keys & set(_VAR_TESTS)
        extra = keys - set(_VAR_TESTS) - {"var"}
        if len(tests) != 1 or extra:
            raise _Bad(f"a var condition has var and one of {', '.join(_VAR_TESTS)}; "
                       f"got {', '.join(sorted(keys))}")
        test, = tests
        arg = v[test]
        if test in ("in", "not_in"):
            if not isinstance(arg, list):
                raise _Bad(f"{test} takes a list")
            arg = tuple(str(a) for a in arg)
        elif test in ("lt", "le", "gt", "ge"):
            arg = _number()(ctx, arg, line)
        elif test == "matches":
            try:
                arg = re.compile(_str(ctx, arg, line))
            except re.error as e:
                raise _Bad(f"bad regular expression: {e}") from None
        elif test == "empty":
            arg = _bool(ctx, arg, line)
        else:
            arg = Template(_str(ctx, arg, line).lower() if isinstance(arg, bool) else _str(ctx, arg, line))
        return Cond("var", (_varname(ctx, v["var"], line), test, arg), line)
    if len(keys) != 1:
        raise _Bad(f"one test per condition (use all: or any: to combine), got {sorted(keys)}")
    (op, arg), = v.items()
    if op in ("open", "closed", "holiday"):
        return Cond(op, _name(ctx, arg, line), line)
    if op == "in_list":
        return Cond(op, (_name(ctx, arg, line), "ani"), line)
    if op == "time":
        m = re.fullmatch(r"\s*(\d\d:\d\d)\s*-\s*(\d\d:\d\d)\s*", _str(ctx, arg, line))
        if not m:
            raise _Bad(f"time takes 'HH:MM-HH:MM', got {arg!r}")
        try:
            return Cond(op, (dt.time.fromisoformat(m.group(1)), dt.time.fromisoformat(m.group(2))), line)
        except ValueError as e:
            raise _Bad(f"time {arg!r}: {e}") from None
    if op == "weekday":
        days = arg if isinstance(arg, list) else [arg]
        bad = [d for d in days if d not in _WEEKDAYS]
        if bad or not days:
            raise _Bad(f"weekday takes names from {', '.join(_WEEKDAYS)}, got {arg!r}")
        return Cond(op, frozenset(_WEEKDAYS.index(d) for d in days), line)
    if op == "date":
        text = _str(ctx, arg, line)
        try:
            a, _, b = text.partition("..")
            first = dt.date.fromisoformat(a.strip())
            last = dt.date.fromisoformat(b.strip()) if b else first
        except ValueError:
            raise _Bad(f"date takes YYYY-MM-DD or YYYY-MM-DD..YYYY-MM-DD, got {arg!r}") from None
        return Cond(op, (first, last), line)
    if op in ("all", "any"):
        if not isinstance(arg, list) or not arg:
            raise _Bad(f"{op} takes a list of conditions")
        return Cond(op, tuple(_cond(ctx, c, line) for c in arg), line)
    if op == "not":
        return Cond(op, _cond(ctx, arg, line), line)
    raise _Bad(f"unknown condition {op!r} (expected var, open, closed, holiday, time, "
               f"weekday, date, in_list, all, any, not)")


def _cases(ctx, v, line):
    if not isinstance(v, list) or not v:
        raise _Bad("must be a list of {if: condition, goto: node}")
    out = []
    for i, case in enumerate(v):
        cline = getattr(case, "line", line)
        if not isinstance(case, dict) or set(case) != {"if", "goto"}:
            ctx.add(cline, f"case {i + 1}: must have exactly the keys if and goto")
            continue
        try:
            out.append((_cond(ctx, case["if"], cline), _node_ref(ctx, case["goto"], cline), cline))
        except _Bad as e:
            ctx.add(cline, f"case {i + 1}: {e}")
    return tuple(out)


def _lookup_sql(ctx, v, line):
    s = _str(ctx, v, line).strip()
    if not s:
        raise _Bad("is empty")
    if "${" in s:
        raise _Bad("SQL takes :name parameters (from params:), never ${...} text "
                   "substitution")
    return s


def _http(ctx, v, line):
    if isinstance(v, str):
        return {"url": Template(v), "method": "GET", "body": {}}
    if not isinstance(v, dict) or "url" not in v:
        raise _Bad("takes a URL or {url: ..., method: GET|POST, body: {...}}")
    extra = set(v) - {"url", "method", "body"}
    if extra:
        raise _Bad(f"unknown key {sorted(extra)[0]!r} (expected url, method, body)")
    method = str(v.get("method", "GET")).upper()
    if method not in ("GET", "POST"):
        raise _Bad(f"method must be GET or POST, got {method!r}")
    return {"url": Template(_str(ctx, v["url"], line)), "method": method,
            "body": _str_map(ctx, v.get("body", {}), line)}


def _result_map(ctx, v, line):
    if not isinstance(v, dict) or not v:
        raise _Bad("must map variable: column (SQL) or variable: field.path (HTTP JSON)")
    return {_name(ctx, k, line): _str(ctx, c, line) for k, c in v.items()}


@dataclasses.dataclass(frozen=True)
class Field:
    parse: Callable
    required: bool = False
    default: Any = None
    exit: bool = False               # the value is a node id (an edge of the graph)


_T = dict(timeout=Field(_number(0.5, 120), default=5.0),
          retries=Field(_number(0, 9, integer=True), default=2),
          invalid_prompt=Field(_prompt), timeout_prompt=Field(_prompt))
_DATA = Field(_str_map, default={})

NODE_TYPES: dict[str, dict[str, Field]] = {
    "play": dict(prompt=Field(_prompt, True), barge_in=Field(_bool, default=False),
                 next=Field(_node_ref, True, exit=True)),
    "menu": dict(prompt=Field(_prompt, True), options=Field(_options, True),
                 repeat_key=Field(_keyset, default=""), var=Field(_name),
                 barge_in=Field(_bool, default=True), on_fail=Field(_node_ref, True, exit=True), **_T),
    "collect": dict(prompt=Field(_prompt, True), var=Field(_name, True),
                    min=Field(_number(0, 64, integer=True), default=1),
                    max=Field(_number(1, 64, integer=True), default=20),
                    terminator=Field(_keyset, default="#"),
                    inter_digit_timeout=Field(_number(0.5, 60), default=3.0),
                    pattern=Field(_str), secret=Field(_bool, default=False),
                    barge_in=Field(_bool, default=True),
                    next=Field(_node_ref, True, exit=True),
                    on_fail=Field(_node_ref, True, exit=True), **_T),
    "language": dict(prompt=Field(_prompt, True), options=Field(_lang_options, True),
                     timeout=Field(_number(0.5, 60), default=5.0),
                     barge_in=Field(_bool, default=True), next=Field(_node_ref, True, exit=True)),
    "lookup": dict(source=Field(_name, True), sql=Field(_lookup_sql), http=Field(_http),
                   params=Field(_str_map, default={}), result=Field(_result_map, default={}),
                   timeout=Field(_number(0.1, 60)), wait_prompt=Field(_prompt),
                   wait_after=Field(_number(0, 60), default=0.5),
                   next=Field(_node_ref, True, exit=True), not_found=Field(_node_ref, exit=True),
                   fallback=Field(_node_ref, True, exit=True)),
    "set": dict(vars=Field(_str_map, True), next=Field(_node_ref, True, exit=True)),
    "branch": dict(cases=Field(_cases, True), **{"else": Field(_node_ref, True, exit=True)}),
    "pin": dict(account=Field(_template, True), entered=Field(_template, True),
                expected=Field(_template, True), hash=Field(_str, default="none"),
                next=Field(_node_ref, True, exit=True), retry=Field(_node_ref, True, exit=True),
                locked=Field(_node_ref, True, exit=True)),
    "queue": dict(queue=Field(_template, True), priority=Field(_number(0, 100, integer=True), default=0),
                  prompt=Field(_prompt), data=_DATA),
    "transfer": dict(to=Field(_template, True), prompt=Field(_prompt), data=_DATA),
    "voicemail": dict(mailbox=Field(_template, True), prompt=Field(_prompt),
                      beep=Field(_bool, default=True),
                      max_length=Field(_number(1, 3600), default=120.0),
                      silence=Field(_number(0.5, 60), default=5.0), var=Field(_name),
                      data=_DATA, next=Field(_node_ref, True, exit=True)),
    "faxback": dict(document=Field(_template, True), to=Field(_template, default=Template("${ani}")),
                    data=_DATA, next=Field(_node_ref, True, exit=True)),
    "hangup": dict(prompt=Field(_prompt), cause=Field(_number(1, 127, integer=True), default=16)),
    "goto": dict(to=Field(_node_ref, True, exit=True)),
    "subflow": dict(flow=Field(_name, True), next=Field(_node_ref, True, exit=True)),
    "return": dict(),
    "external": dict(app=Field(_name, True), timeout=Field(_number(0.5, 600), default=10.0),
                     next=Field(_node_ref, True, exit=True), fallback=Field(_node_ref, True, exit=True)),
}
TERMINAL_TYPES = frozenset({"queue", "transfer", "hangup", "return"})
# nodes that pass control on at once (no prompt, no input, no back end): a loop made of
# these alone spins without the caller hearing anything
INSTANT_TYPES = frozenset({"set", "branch", "goto"})
_COMMON_KEYS = {"type", "note"}


def _parse_node(ctx: _Ctx, node_id: str, raw: Any, line: int) -> Node | None:
    ctx.node = node_id
    if not isinstance(raw, dict):
        ctx.add(line, "a node is a mapping with a type")
        return None
    ntype = raw.get("type")
    if ntype not in NODE_TYPES:
        ctx.add(raw.key_lines.get("type", line) if isinstance(raw, LMap) else line,
                f"unknown node type {ntype!r} (expected one of {', '.join(sorted(NODE_TYPES))})"
                if ntype is not None else "missing key 'type'")
        return None
    schema = NODE_TYPES[ntype]
    key_lines = dict(getattr(raw, "key_lines", {}))
    opts, exits, exit_lines = {}, {}, {}
    for key in raw:
        if key not in schema and key not in _COMMON_KEYS:
            ctx.add(key_lines.get(key, line), f"unknown key {key!r} for a {ntype} node "
                                              f"(expected {', '.join(sorted(schema)) or 'no keys'})")
    for key, f in schema.items():
        kline = key_lines.get(key, line)
        if key not in raw or raw[key] is None:
            if f.required:
                ctx.add(line, f"missing key {key!r} for a {ntype} node")
            opts[key] = f.default
            continue
        try:
            opts[key] = f.parse(ctx, raw[key], kline)
        except _Bad as e:
            ctx.add(kline, f"{key}: {e}")
            opts[key] = f.default
            continue
        if f.exit:
            exits[key] = opts[key]
            exit_lines[key] = kline
    if ntype == "menu" and opts["options"]:
        for key, target in opts["options"].items():
            exits[key] = target
            exit_lines[key] = getattr(raw["options"], "key_lines", {}).get(key, line)
    if ntype == "branch" and opts["cases"]:
        for i, (_, target, cline) in enumerate(opts["cases"]):
            exits[f"case{i + 1}"] = target
            exit_lines[f"case{i + 1}"] = cline
    if ntype == "lookup":
        if ("sql" in raw) == ("http" in raw):
            ctx.add(line, "a lookup node has exactly one of sql or http")
    if ntype == "collect" and opts["min"] > opts["max"]:
        ctx.add(key_lines.get("min", line), f"min ({opts['min']}) is more than max ({opts['max']})")
    if ntype == "collect" and opts["pattern"]:
        try:
            opts["pattern"] = re.compile(opts["pattern"])
        except re.error as e:
            ctx.add(key_lines.get("pattern", line), f"pattern: bad regular expression: {e}")
            opts["pattern"] = None
    if ntype == "pin" and opts["hash"] not in ("none", "sha256"):
        ctx.add(key_lines.get("hash", line), f"hash must be none or sha256, got {opts['hash']!r}")
    ctx.node = ""
    return Node(node_id, ntype, line, opts, exits, exit_lines, key_lines)


# ---- top level ------------------------------------------------------------------------
_TOP_KEYS = {"flow", "kind", "description", "start", "languages", "timezone", "max_duration",
             "on_max_duration", "say", "vars", "calendars", "lists", "sources", "prompts",
             "catalogs", "nodes", "prompt_guard"}


def _file_list(ctx, v, line):
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise _Bad("must be a list of file names")
    return list(v)


def _prompt_catalog(ctx: _Ctx, raw: Any, line: int, languages: list[str],
                    into: dict[str, PromptDef]) -> None:
    if not isinstance(raw, dict):
        ctx.add(line, "prompts: must be a mapping of name: {language: text}")
        return
    for name, entry in raw.items():
        pline = raw.key_lines.get(name, line) if isinstance(raw, LMap) else line
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            ctx.add(pline, f"prompt name {name!r} is not a name")
            continue
        by_lang: dict[str, PromptText] = {}
        if isinstance(entry, str):
            by_lang["*"] = PromptText(text=entry)
        elif isinstance(entry, dict):
            for lang, val in entry.items():
                if lang == "file":
                    by_lang["*"] = PromptText(file=str((ctx.base / str(val)).resolve()))
                elif isinstance(val, str):
                    by_lang[lang] = PromptText(text=val)
                elif isinstance(val, dict) and set(val) <= {"text", "file"} and val:
                    f = str((ctx.base / str(val["file"])).resolve()) if val.get("file") else ""
                    by_lang[lang] = PromptText(text=str(val.get("text", "")), file=f)
                else:
                    ctx.add(pline, f"prompt {name!r}: {lang}: expected text or "
                                   f"{{text: ..., file: ...}}")
        else:
            ctx.add(pline, f"prompt {name!r}: expected text or a mapping of language: text")
            continue
        if name in into and into[name].file == ctx.path:
            ctx.add(pline, f"prompt {name!r} is defined twice")
        into[name] = PromptDef(name, pline, ctx.path, by_lang)


def _sources(ctx: _Ctx, raw: Any, line: int) -> dict[str, SourceSpec]:
    out = {}
    if not isinstance(raw, dict):
        ctx.add(line, "sources: must be a mapping of name: {sql: URL} or {http: URL}")
        return out
    for name, spec in raw.items():
        sline = raw.key_lines.get(name, line) if isinstance(raw, LMap) else line
        if not isinstance(spec, dict) or len(set(spec) & {"sql", "http"}) != 1 \
                or set(spec) - {"sql", "http", "timeout"}:
            ctx.add(sline, f"source {name!r}: expected {{sql: URL}} or {{http: URL}} "
                           f"with an optional timeout")
            continue
        kind = "sql" if "sql" in spec else "http"
        try:
            timeout = _number(0.1, 60)(ctx, spec.get("timeout", 3.0), sline)
        except _Bad as e:
            ctx.add(sline, f"source {name!r}: timeout: {e}")
            timeout = 3.0
        out[name] = SourceSpec(name, kind, str(spec[kind]), timeout, sline)
    return out


def _lists(ctx: _Ctx, raw: Any, line: int) -> dict[str, frozenset[str]]:
    out = {}
    if not isinstance(raw, dict):
        ctx.add(line, "lists: must be a mapping of name: [numbers] or name: {file: PATH}")
        return out
    for name, spec in raw.items():
        lline = raw.key_lines.get(name, line) if isinstance(raw, LMap) else line
        if isinstance(spec, list):
            out[name] = frozenset(str(x) for x in spec)
        elif isinstance(spec, dict) and set(spec) == {"file"}:
            path = ctx.base / str(spec["file"])
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as e:
                ctx.add(lline, f"list {name!r}: cannot read {path}: {e.strerror}")
                continue
            out[name] = frozenset(ln.split("#", 1)[0].strip() for ln in text.splitlines()
                                  if ln.split("#", 1)[0].strip())
        else:
            ctx.add(lline, f"list {name!r}: expected a list of numbers or {{file: PATH}}")
    return out


def _calendars(ctx: _Ctx, raw: Any, line: int) -> dict[str, Calendar]:
    out = {}
    if not isinstance(raw, dict):
        ctx.add(line, "calendars: must be a mapping of name: {open: [...], holidays: [...]}")
        return out
    for name, spec in raw.items():
        cline = raw.key_lines.get(name, line) if isinstance(raw, LMap) else line
        if not isinstance(spec, dict) or "open" not in spec or set(spec) - {"open", "holidays", "workdays"}:
            ctx.add(cline, f"calendar {name!r}: expected open, holidays, workdays")
            continue
        try:
            out[name] = Calendar.parse(name, [str(s) for s in spec["open"]],
                                       [str(s) for s in spec.get("holidays") or []],
                                       [str(s) for s in spec.get("workdays") or []])
        except (RoutingError, TypeError) as e:
            ctx.add(cline, str(e))
    return out


def load_flow(path: str | os.PathLike, text: str | None = None) -> Flow:
    """Load one flow file; raises FlowError listing every structural problem."""
    path = str(path)
    raw = load_yaml(path, text)
    ctx = _Ctx(path, Path(path).resolve().parent)
    if not isinstance(raw, dict):
        raise FlowError([Issue(path, 1, "", "a flow file is a mapping with flow, start and nodes")])
    lines = dict(raw.key_lines)
    for key in raw:
        if key not in _TOP_KEYS:
            ctx.add(lines[key], f"unknown key {key!r} (expected {', '.join(sorted(_TOP_KEYS))})")
    for key in ("flow", "start", "nodes"):
        if key not in raw:
            ctx.add(1, f"missing key {key!r}")
    if ctx.issues:
        raise FlowError(ctx.issues)

    def get(key, parse, default):
        if key not in raw or raw[key] is None:
            return default
        try:
            return parse(ctx, raw[key], lines[key])
        except _Bad as e:
            ctx.add(lines[key], f"{key}: {e}")
            return default

    name = get("flow", _name, "?")
    kind = get("kind", _str, "main")
    if kind not in ("main", "subflow"):
        ctx.add(lines["kind"], f"kind must be main or subflow, got {kind!r}")
    languages = raw.get("languages") or ["zh"]
    if not isinstance(languages, list) or not all(isinstance(l, str) and _NAME.fullmatch(l) for l in languages):
        ctx.add(lines.get("languages", 1), "languages: must be a list of language codes")
        languages = ["zh"]
    tzname = get("timezone", _str, "Asia/Shanghai")
    try:
        tz = ZoneInfo(tzname)
    except (ZoneInfoNotFoundError, ValueError):
        ctx.add(lines.get("timezone", 1), f"unknown timezone {tzname!r}")
        tz = ZoneInfo("Asia/Shanghai")
    say_mode = get("say", _str, "tts")
    if say_mode not in ("tts", "fragments"):
        ctx.add(lines["say"], f"say must be tts or fragments, got {say_mode!r}")
    variables = {k: t.text for k, t in get("vars", _str_map, {}).items()}

    prompts: dict[str, PromptDef] = {}
    for cat in get("catalogs", _file_list, []):
        cat_path = ctx.base / cat
        try:
            cat_raw = load_yaml(cat_path)
        except FlowError as e:
            ctx.issues += e.issues
            continue
        sub = _Ctx(str(cat_path), cat_path.resolve().parent)
        _prompt_catalog(sub, cat_raw, 1, languages, prompts)
        ctx.issues += sub.issues
    if "prompts" in raw:
        _prompt_catalog(ctx, raw["prompts"], lines["prompts"], languages, prompts)

    nodes: dict[str, Node] = {}
    raw_nodes = raw["nodes"]
    if not isinstance(raw_nodes, dict) or not raw_nodes:
        ctx.add(lines["nodes"], "nodes: must be a mapping of node id: node")
        raw_nodes = {}
    for node_id, spec in raw_nodes.items():
        nline = raw_nodes.key_lines.get(node_id, lines["nodes"])
        if not isinstance(node_id, str) or not _NAME.fullmatch(node_id):
            ctx.add(nline, f"node id {node_id!r} is not a name", node=str(node_id))
            continue
        node = _parse_node(ctx, node_id, spec, nline)
        if node is not None:
            nodes[node_id] = node

    flow = Flow(
        name=name, path=path, kind=kind, start=get("start", _name, ""),
        start_line=lines.get("start", 1), languages=list(languages), timezone=tz,
        max_duration_s=get("max_duration", _number(10, 86400), 900.0),
        on_max_duration=get("on_max_duration", _name, ""), say_mode=say_mode,
        vars=variables,
        calendars=_calendars(ctx, raw["calendars"], lines["calendars"]) if "calendars" in raw else {},
        lists=_lists(ctx, raw["lists"], lines["lists"]) if "lists" in raw else {},
        sources=_sources(ctx, raw["sources"], lines["sources"]) if "sources" in raw else {},
        prompts=prompts, nodes=nodes, line_of=lines,
        prompt_guard_s=get("prompt_guard", _number(5, 3600), 300.0))
    if ctx.issues:
        raise FlowError(ctx.issues)
    return flow


class FlowSet:
    """The flows a ctid serves, by name (sub-flows are called by name too)."""

    def __init__(self, flows: list[Flow] = ()):
        self.flows: dict[str, Flow] = {}
        for f in flows:
            self.add(f)

    def add(self, flow: Flow) -> None:
        if flow.name in self.flows:
            other = self.flows[flow.name]
            raise FlowError([Issue(flow.path, flow.line_of.get("flow", 1), "",
                                   f"flow name {flow.name!r} is already used by {other.path}")])
        self.flows[flow.name] = flow

    def __getitem__(self, name: str) -> Flow:
        try:
            return self.flows[name]
        except KeyError:
            raise KeyError(f"no IVR flow named {name!r} (loaded: "
                           f"{', '.join(sorted(self.flows)) or 'none'})") from None

    def __contains__(self, name: str) -> bool:
        return name in self.flows

    @classmethod
    def load(cls, paths) -> "FlowSet":
        """Load flow files and folders (every *.yaml directly inside a folder). Raises
        FlowError with the issues of every file."""
        issues: list[Issue] = []
        fs = cls()
        for path in flow_files(paths):
            try:
                fs.add(load_flow(path))
            except FlowError as e:
                issues += e.issues
        if issues:
            raise FlowError(issues)
        return fs


def flow_files(paths) -> list[str]:
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    out = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            out += sorted(str(x) for x in p.glob("*.yaml"))
        else:
            out.append(str(p))
    return out
