"""ctid.toml: the daemon's sockets and database, the cardd nodes it drives, and the PBX
built on their channels (extensions, trunk groups, number routing, opening calendars).

Every problem names the file, the line and the key. Unknown keys are errors: a typo in a
dial plan must not be silently ignored. Problems in independent entries are all collected,
so `ctictl check-config` can list them in one go; the exception carries the first one in
its attributes and every one in `problems`.

Example (etc/ctid.toml has a complete one):

    [ctid]
    name = "ctid"
    timezone = "Asia/Shanghai"

    [[cardd]]
    node = "node1"
    events = "ipc://run/cardd-events.sock"
    commands = "ipc://run/cardd-commands.sock"

    [[extension]]
    number = "8001"
    channel = "node1/1"

    [[trunk_group]]
    name = "co"
    channels = "node1/5-8"
    number = "12345"

    [[route]]
    match = "8XXX"
    to = "ext:"                 # the extension the dialled number names

    [[calendar]]
    name = "office"
    open = ["mon-fri 08:30-17:30"]
    holidays = ["2026-10-01..2026-10-07"]
    workdays = ["2026-10-10"]
"""
from __future__ import annotations

import dataclasses
import difflib
import os
import re
import tomllib
import zoneinfo
from typing import Any, Callable

from ctid.model.calls import ChannelRef, Device, DeviceType
from ctid.model.routing import (TARGET_KINDS, Calendar, DialPlan, Route, RoutingError,
                                compile_pattern)

SOURCES = ("any", "trunk", "extension")
DIRECTIONS = ("both", "in", "out")
DB_SCHEMES = ("sqlite", "postgresql")


class ConfigError(Exception):
    """A configuration problem, with where it is. `problems` lists every one found (this
    one first)."""

    def __init__(self, path: str, line: int | None, key: str, message: str):
        self.path, self.line, self.key, self.message = path, line, key, message
        self.problems: list[ConfigError] = [self]
        super().__init__(self.where())

    def where(self) -> str:
        place = f"{self.path}:{self.line}" if self.line else self.path
        return f"{place}: {self.key}: {self.message}"

    def __str__(self) -> str:
        return "\n".join(p.where() for p in self.problems)


# ---- the configuration -------------------------------------------------------------------
@dataclasses.dataclass
class CtidSection:
    name: str = "ctid"
    run_dir: str = "run"
    timezone: str = "Asia/Shanghai"

    @property
    def tz(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)


@dataclasses.dataclass
class CtiSection:
    events: str = "ipc://run/ctid-events.sock"       # PUB: CSTA events
    requests: str = "ipc://run/ctid-requests.sock"   # ROUTER: CTI requests
    retain: int = 100000            # events kept for replay after a client's gap
    keys: str = ""                  # clients' CURVE public keys, roles and scopes
    server_key: str = ""            # the server's secret key file; empty: CURVE off
    heartbeat_ms: int = 1000

    @property
    def curve(self) -> bool:
        return bool(self.server_key)


@dataclasses.dataclass
class MetricsSection:
    listen: str = "127.0.0.1:9631"


@dataclasses.dataclass
class DatabaseSection:
    url: str = "sqlite:///run/hotline.db"
    queue_max: int = 10000          # records held in memory before spilling to the spool
    spool_dir: str = ""             # where records wait while the database is away

    def spool_path(self, run_dir: str) -> str:
        return self.spool_dir or os.path.join(run_dir, "db-spool")


@dataclasses.dataclass
class CarddNode:
    node: str
    events: str
    commands: str


@dataclasses.dataclass
class ExtensionConfig:
    number: str
    channel: ChannelRef
    name: str = ""


@dataclasses.dataclass
class TrunkGroupConfig:
    name: str
    channels: list[ChannelRef]
    number: str = ""                # the line's own number (DNIS of inbound analog calls)
    direction: str = "both"         # "both", "in", "out"


@dataclasses.dataclass
class CtidConfig:
    path: str
    ctid: CtidSection = dataclasses.field(default_factory=CtidSection)
    cti: CtiSection = dataclasses.field(default_factory=CtiSection)
    metrics: MetricsSection = dataclasses.field(default_factory=MetricsSection)
    database: DatabaseSection = dataclasses.field(default_factory=DatabaseSection)
    cardd: list[CarddNode] = dataclasses.field(default_factory=list)
    extensions: list[ExtensionConfig] = dataclasses.field(default_factory=list)
    trunk_groups: list[TrunkGroupConfig] = dataclasses.field(default_factory=list)
    routes: list[Route] = dataclasses.field(default_factory=list)
    calendars: dict[str, Calendar] = dataclasses.field(default_factory=dict)
    # The ACD ([acd], [[queue]], [[agent]]): read by ctid.acd_service.settings.
    acd: Any = None
    queues: list = dataclasses.field(default_factory=list)
    agents: list = dataclasses.field(default_factory=list)
    # The IVR ([ivr], [ivr.sources], [ivr.apps], [ivr.pin]): the table as written, checked
    # here, read by ivr.ctid_service.from_settings. None: no IVR ("ivr:" routes fail).
    ivr: dict | None = None

    @property
    def tz(self) -> zoneinfo.ZoneInfo:
        return self.ctid.tz

    def devices(self) -> list[Device]:
        """The call model's devices: one per extension, one per trunk channel."""
        out = [Device(f"ext:{e.number}", DeviceType.EXTENSION, name=e.name, channel=e.channel,
                      number=e.number) for e in self.extensions]
        for g in self.trunk_groups:
            out += [Device(f"trunk:{ch}", DeviceType.TRUNK, name=g.name, channel=ch,
                           number=g.number, group=g.name) for ch in g.channels]
        return out

    def dialplan(self) -> DialPlan:
        return DialPlan(list(self.routes), dict(self.calendars))


# ---- where each key stands in the text ----------------------------------------------------
_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-\"' ]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-]+|\"[^\"]*\"|'[^']*')\s*=")


class LineMap:
    """Line numbers of tables, [[array]] entries and keys in a TOML text; tomllib keeps no
    positions. Keys are found by (table, index, key): index counts a [[table]]'s entries
    from 0 and is None for a plain [table]. A value spanning several lines (a list) keeps
    its extent, so an element can be found by its text."""

    def __init__(self, text: str):
        self.text_lines = text.splitlines()
        self.lines: dict[tuple, int] = {}
        self.extent: dict[tuple, tuple[int, int]] = {}
        table, index, counts = "", None, {}
        last: tuple | None = None
        for number, line in enumerate(self.text_lines, start=1):
            m = _HEADER.match(line)
            k = None if m else _KEY.match(line)
            if (m or k) and last is not None:
                self._close(last, number - 1)
                last = None
            if m:
                table = ".".join(p.strip().strip("\"'") for p in m.group(2).split("."))
                if m.group(1) == "[[":
                    index = counts.get(table, 0)
                    counts[table] = index + 1
                else:
                    index = None
                self.lines.setdefault((table, index, None), number)
            elif k:
                last = (table, index, k.group(1).strip("\"'"))
                self.lines.setdefault(last, number)
        if last is not None:
            self._close(last, len(self.text_lines))

    def _close(self, key: tuple, end: int) -> None:
        self.extent.setdefault(key, (self.lines[key], end))

    def line(self, table: str, index: int | None, key: str | None = None) -> int | None:
        return self.lines.get((table, index, key)) or self.lines.get((table, index, None))

    def value_line(self, table: str, index: int | None, key: str, value: Any) -> int | None:
        """The line holding one element of a (possibly multi-line) list value."""
        start, end = self.extent.get((table, index, key), (None, None))
        if start is None:
            return self.line(table, index, key)
        needle = str(value)
        for n in range(start, end + 1):
            if needle in self.text_lines[n - 1]:
                return n
        return start


class _Skip(Exception):
    """An entry with a problem: the problem is recorded, the entry is left out."""


@dataclasses.dataclass(frozen=True)
class Field:
    types: type | tuple
    default: Any = None
    allowed: tuple | None = None
    check: Callable[[Any], str | None] | None = None    # returns a problem or None
    required: bool = False


class _Checker:
    """Checks tables against field specs and collects the problems it finds."""

    def __init__(self, path: str, text: str):
        self.path = path
        self.map = LineMap(text)
        self.problems: list[ConfigError] = []

    @staticmethod
    def name(table: str, index: int | None, key: str | None) -> str:
        base = table if index is None else f"{table}[{index}]"
        if key is None:
            return base or "(top level)"
        return f"{base}.{key}" if base else key

    def problem(self, table: str, index: int | None, key: str | None, message: str,
                line: int | None = None) -> _Skip:
        line = line or self.map.line(table, index, key)
        if line is None and key is not None:        # a sub-table: [table.key] or [key]
            line = self.map.line(f"{table}.{key}" if table else key, None)
        self.problems.append(ConfigError(self.path, line, self.name(table, index, key), message))
        return _Skip()

    def section(self, data: Any, table: str, index: int | None, spec: dict[str, Field]) -> dict:
        if not isinstance(data, dict):
            raise self.problem(table, index, None, "must be a table")
        out = {}
        for key in data:
            if key not in spec:
                near = difflib.get_close_matches(key, list(spec), n=1)
                hint = f"did you mean {near[0]!r}? " if near else ""
                raise self.problem(table, index, key,
                                   f"unknown key ({hint}known: {', '.join(sorted(spec))})")
        for key, f in spec.items():
            if key not in data:
                if f.required:
                    raise self.problem(table, index, None, f"missing required key {key!r}")
                out[key] = f.default
                continue
            value = data[key]
            types = f.types if isinstance(f.types, tuple) else (f.types,)
            if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
                hint = ""
                if str in types and isinstance(value, int) and not isinstance(value, bool):
                    hint = f' (write numbers in quotes: "{value}")'
                raise self.problem(table, index, key, f"expected {_type_names(types)}, got "
                                   f"{type(value).__name__} {value!r}{hint}")
            if f.allowed is not None and value not in f.allowed:
                raise self.problem(table, index, key,
                                   f"{value!r} is not one of {', '.join(map(str, f.allowed))}")
            if f.check is not None:
                message = f.check(value)
                if message:
                    raise self.problem(table, index, key, message)
            out[key] = value
        return out

    def entries(self, data: dict, table: str) -> list[tuple[int, Any]]:
        raw = data.get(table, [])
        if not isinstance(raw, list):
            self.problem("", None, table, f"write each one as a [[{table}]] table")
            return []
        return list(enumerate(raw))

    @staticmethod
    def declared(entries: list[tuple[int, Any]], key: str) -> set[str]:
        """Names the entries declare, even entries with problems: what refers to them
        should not report a second, knock-on problem."""
        return {e[key] for _, e in entries if isinstance(e, dict) and isinstance(e.get(key), str)}


def _type_names(types: tuple) -> str:
    names = {str: "string", int: "integer", float: "number", bool: "true/false", list: "list",
             dict: "table"}
    return " or ".join(names.get(t, t.__name__) for t in types)


# ---- value checks ------------------------------------------------------------------------
_ENDPOINT = re.compile(r"(ipc://.+|inproc://.+|tcp://[^\s:]+:(\d{1,5}|\*))")


def _endpoint(value: str) -> str | None:
    if not _ENDPOINT.fullmatch(value):
        return f"{value!r} is not a ZeroMQ endpoint (ipc://PATH, tcp://HOST:PORT or inproc://NAME)"
    return None


def _listen(value: str) -> str | None:
    m = re.fullmatch(r"[^:\s]+:(\d{1,5})", value)
    if not m or not 0 < int(m.group(1)) < 65536:
        return f"{value!r}: expected HOST:PORT, e.g. 127.0.0.1:9631"
    return None


def _positive(value: int) -> str | None:
    return None if value > 0 else f"must be greater than 0, got {value}"


def _not_negative(value: int) -> str | None:
    return None if value >= 0 else f"must be 0 or more, got {value}"


def _timezone(value: str) -> str | None:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return f"unknown time zone {value!r} (an IANA name such as Asia/Shanghai)"
    return None


def _db_url(value: str) -> str | None:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError
    try:
        url = make_url(value)
    except ArgumentError:
        return f"{value!r} is not a database URL (e.g. sqlite:///run/hotline.db)"
    if url.get_backend_name() not in DB_SCHEMES:
        return (f"database {url.get_backend_name()!r} is not supported "
                f"(use {' or '.join(DB_SCHEMES)})")
    return None


def _digits(value: str) -> str | None:
    return None if re.fullmatch(r"[0-9]+", value) else f"{value!r}: a number is digits only"


def _digits_or_empty(value: str) -> str | None:
    return _digits(value) if value else None


def _dial_string(value: str) -> str | None:
    return None if re.fullmatch(r"[0-9*#]*", value) else f"{value!r}: only digits, * and #"


def _name(value: str) -> str | None:
    if not re.fullmatch(r"[A-Za-z0-9_\-]+", value):
        return f"{value!r}: names are letters, digits, '_' and '-'"
    return None


def _pattern(value: str) -> str | None:
    if not value:
        return "empty pattern"
    try:
        compile_pattern(value)
    except RoutingError as e:
        return str(e)
    return None


def _strings(value: list) -> str | None:
    bad = [v for v in value if not isinstance(v, str)]
    return f"every element must be a string, got {bad[0]!r}" if bad else None


# ---- section specs -----------------------------------------------------------------------
_CTID = {"name": Field(str, "ctid", check=_name), "run_dir": Field(str, "run"),
         "timezone": Field(str, "Asia/Shanghai", check=_timezone)}
_CTI = {"events": Field(str, CtiSection.events, check=_endpoint),
        "requests": Field(str, CtiSection.requests, check=_endpoint),
        "retain": Field(int, CtiSection.retain, check=_not_negative),
        "keys": Field(str, ""), "server_key": Field(str, ""),
        "heartbeat_ms": Field(int, CtiSection.heartbeat_ms, check=_positive)}
_METRICS = {"listen": Field(str, MetricsSection.listen, check=_listen)}
_DATABASE = {"url": Field(str, DatabaseSection.url, check=_db_url),
             "queue_max": Field(int, DatabaseSection.queue_max, check=_not_negative),
             "spool_dir": Field(str, "")}
_CARDD = {"node": Field(str, required=True, check=_name),
          "events": Field(str, "ipc://run/cardd-events.sock", check=_endpoint),
          "commands": Field(str, "ipc://run/cardd-commands.sock", check=_endpoint)}
_EXTENSION = {"number": Field(str, required=True, check=_digits),
              "channel": Field(str, required=True), "name": Field(str, "")}
_TRUNK_GROUP = {"name": Field(str, required=True, check=_name),
                "channels": Field((str, list), required=True),
                "number": Field(str, "", check=_digits_or_empty),
                "direction": Field(str, "both", DIRECTIONS)}
_ROUTE = {"match": Field(str, required=True, check=_pattern), "to": Field(str, required=True),
          "strip": Field(int, 0, check=_not_negative),
          "prepend": Field(str, "", check=_dial_string), "calendar": Field(str, ""),
          "closed_to": Field(str, ""), "source": Field(str, "any", SOURCES)}
_CALENDAR = {"name": Field(str, required=True, check=_name),
             "open": Field(list, required=True, check=_strings),
             "holidays": Field(list, [], check=_strings),
             "workdays": Field(list, [], check=_strings)}
_TABLES = {"ctid": _CTID, "cti": _CTI, "metrics": _METRICS, "database": _DATABASE}
_ARRAYS = ("cardd", "extension", "trunk_group", "route", "calendar")
_SERVICE_SECTIONS = ("acd", "queue", "agent")     # read by ctid.acd_service.settings
_IVR = {"flows": Field(list, ["etc/ivr"], check=_strings), "tts_cache": Field(str, ""),
        "prewarm": Field(bool, True), "max_ports": Field(int, 480, check=_positive),
        "stats_every_s": Field((int, float), 60.0, check=_positive),
        "lookup_workers": Field(int, 4, check=_positive),
        "render_workers": Field(int, 2, check=_positive),
        "sources": Field(dict, {}), "apps": Field(dict, {}), "pin": Field(dict, {})}
_IVR_PIN = {"max_failures": Field(int, 3, check=_positive),
            "lock_minutes": Field((int, float), 30, check=_not_negative),
            "lock_on": Field(list, ["account", "caller"], check=_strings)}
_PIN_LOCK_ON = ("account", "caller")


# ---- loading -----------------------------------------------------------------------------
def load_ctid_config(path: str | os.PathLike) -> CtidConfig:
    """Read and check ctid.toml. Raises ConfigError (with every problem in `problems`)."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ConfigError(path, None, "(file)", f"cannot read: {e.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(path, None, "(file)", f"not UTF-8 text: {e}") from None
    return parse_ctid_config(text, path)


def parse_ctid_config(text: str, path: str = "ctid.toml") -> CtidConfig:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"line (\d+)", str(e))
        raise ConfigError(path, int(m.group(1)) if m else None, "(syntax)", str(e)) from None
    c = _Checker(path, text)
    cfg = _Builder(c, data).build()
    if c.problems:
        c.problems.sort(key=lambda p: p.line or 0)
        first = c.problems[0]
        first.problems = list(c.problems)
        raise first
    return cfg


class _Builder:
    def __init__(self, checker: _Checker, data: dict):
        self.c = checker
        self.data = data
        self.cfg = CtidConfig(path=checker.path)
        self.taken: dict[ChannelRef, str] = {}          # channel -> who uses it
        self.queue_names: set[str] = set()

    def build(self) -> CtidConfig:
        c, data = self.c, self.data
        for key in data:
            known = [*_TABLES, *_ARRAYS, *_SERVICE_SECTIONS, "ivr"]
            if key not in known:
                near = difflib.get_close_matches(key, known, n=1)
                hint = f"did you mean {near[0]!r}? " if near else ""
                line = (c.map.line(key, None) or c.map.line(key, 0) or c.map.line("", None, key))
                c.problem("", None, key, f"unknown section ({hint}known: "
                          f"{', '.join(sorted(known))})", line)
        self._tables()
        self._cardd()
        self._extensions()
        self._trunk_groups()
        self._calendars()
        from ctid.acd_service import settings as acd_settings
        acd_settings.build(self)
        self._ivr()
        self._routes()
        return self.cfg

    def _tables(self) -> None:
        for table, spec in _TABLES.items():
            value = self.data.get(table, {})
            if table in self.data and not isinstance(value, dict):
                self.c.problem("", None, table, f"must be a table [{table}]")
                continue
            try:
                v = self.c.section(value, table, None, spec)
            except _Skip:
                continue
            target = getattr(self.cfg, table)
            for k, val in v.items():
                setattr(target, k, val)

    def _cardd(self) -> None:
        seen: dict[str, int] = {}
        endpoints: dict[str, int] = {}
        entries = self.c.entries(self.data, "cardd")
        self.nodes = self.c.declared(entries, "node")
        if not entries and isinstance(self.data.get("cardd", []), list):
            self.c.problem("", None, "cardd", "no [[cardd]] node: ctid needs at least one "
                           "cardd to take calls from")
        for i, entry in entries:
            try:
                v = self.c.section(entry, "cardd", i, _CARDD)
                if v["node"] in seen:
                    raise self.c.problem("cardd", i, "node", f"node {v['node']!r} is already "
                                         f"listed by cardd[{seen[v['node']]}]")
                seen[v["node"]] = i
                for key in ("events", "commands"):
                    if v[key] in endpoints:
                        raise self.c.problem("cardd", i, key, f"{v[key]} is already used by "
                                             f"cardd[{endpoints[v[key]]}]")
                    endpoints[v[key]] = i
            except _Skip:
                continue
            self.cfg.cardd.append(CarddNode(**v))

    def _channels(self, spec: str, table: str, index: int, key: str) -> list[ChannelRef]:
        """'node1/5-8,10' -> channel references, each checked against the cardd nodes."""
        m = re.fullmatch(r"\s*([A-Za-z0-9_\-]+)/([0-9,\-\s]+)", spec)
        if not m:
            raise self.c.problem(table, index, key, f"{spec!r}: expected NODE/CHANNEL or "
                                 "NODE/FIRST-LAST, e.g. node1/5-8")
        node = m.group(1)
        if node not in self.nodes:
            known = ", ".join(sorted(self.nodes)) or "none"
            raise self.c.problem(table, index, key, f"{spec!r}: node {node!r} is not a [[cardd]] "
                                 f"node (known: {known})")
        numbers: list[int] = []
        for part in m.group(2).split(","):
            part = part.strip()
            lo, _, hi = part.partition("-")
            if not lo.isdigit() or (hi and not hi.strip().isdigit()):
                raise self.c.problem(table, index, key, f"{spec!r}: bad channel list")
            first, last = int(lo), int(hi) if hi else int(lo)
            if first < 1 or last < first:
                raise self.c.problem(table, index, key, f"{spec!r}: channels count from 1 and "
                                     "ranges run upwards")
            numbers.extend(range(first, last + 1))
        return [ChannelRef(node, n) for n in numbers]

    def _take(self, refs: list[ChannelRef], who: str, table: str, index: int, key: str,
              line: int | None = None) -> None:
        for ref in refs:
            if ref in self.taken:
                raise self.c.problem(table, index, key,
                                     f"channel {ref} is already used by {self.taken[ref]}", line)
        for ref in refs:
            self.taken[ref] = who

    def _extensions(self) -> None:
        numbers: dict[str, int] = {}
        entries = self.c.entries(self.data, "extension")
        self.extension_numbers = self.c.declared(entries, "number")
        for i, entry in entries:
            try:
                v = self.c.section(entry, "extension", i, _EXTENSION)
                if v["number"] in numbers:
                    raise self.c.problem("extension", i, "number", f"extension {v['number']} is "
                                         f"already defined by extension[{numbers[v['number']]}]")
                numbers[v["number"]] = i
                refs = self._channels(v["channel"], "extension", i, "channel")
                if len(refs) != 1:
                    raise self.c.problem("extension", i, "channel",
                                         f"{v['channel']!r}: an extension has one channel")
                self._take(refs, f"extension {v['number']}", "extension", i, "channel")
            except _Skip:
                continue
            self.cfg.extensions.append(ExtensionConfig(number=v["number"], channel=refs[0],
                                                       name=v["name"]))

    def _trunk_groups(self) -> None:
        names: dict[str, int] = {}
        entries = self.c.entries(self.data, "trunk_group")
        self.trunk_names = self.c.declared(entries, "name")
        for i, entry in entries:
            try:
                v = self.c.section(entry, "trunk_group", i, _TRUNK_GROUP)
                if v["name"] in names:
                    raise self.c.problem("trunk_group", i, "name", f"trunk group {v['name']!r} is "
                                         f"already defined by trunk_group[{names[v['name']]}]")
                names[v["name"]] = i
                specs = v["channels"] if isinstance(v["channels"], list) else [v["channels"]]
                if not specs or not all(isinstance(s, str) for s in specs):
                    raise self.c.problem("trunk_group", i, "channels",
                                         'expected "NODE/FIRST-LAST" or a list of them')
                refs: list[ChannelRef] = []
                for spec in specs:
                    line = self.c.map.value_line("trunk_group", i, "channels", f'"{spec}"')
                    more = self._channels(spec, "trunk_group", i, "channels")
                    self._take(more, f"trunk group {v['name']}", "trunk_group", i, "channels", line)
                    refs += more
            except _Skip:
                continue
            self.cfg.trunk_groups.append(TrunkGroupConfig(name=v["name"], channels=refs,
                                                          number=v["number"],
                                                          direction=v["direction"]))

    def _calendars(self) -> None:
        names: dict[str, int] = {}
        entries = self.c.entries(self.data, "calendar")
        self.calendar_names = self.c.declared(entries, "name")
        for i, entry in entries:
            try:
                v = self.c.section(entry, "calendar", i, _CALENDAR)
                name = v["name"]
                if name in names:
                    raise self.c.problem("calendar", i, "name", f"calendar {name!r} is already "
                                         f"defined by calendar[{names[name]}]")
                names[name] = i
                if not v["open"]:
                    raise self.c.problem("calendar", i, "open",
                                         'no opening hours (e.g. ["mon-fri 08:30-17:30"])')
                # Element by element, so a problem points at its own line.
                for key, arg in (("open", 1), ("holidays", 2), ("workdays", 3)):
                    for spec in v[key]:
                        args = [name, [], [], []]
                        args[arg] = [spec]
                        try:
                            Calendar.parse(*args)
                        except RoutingError as e:
                            line = self.c.map.value_line("calendar", i, key, f'"{spec}"')
                            raise self.c.problem("calendar", i, key,
                                                 str(e).removeprefix(f"calendar {name}: "), line)
                cal = Calendar.parse(name, v["open"], v["holidays"], v["workdays"])
                for spec in v["workdays"]:
                    both = sorted(Calendar.parse(name, [], [], [spec]).workdays & cal.holidays)
                    if both:
                        line = self.c.map.value_line("calendar", i, "workdays", f'"{spec}"')
                        raise self.c.problem("calendar", i, "workdays", f"{both[0]} is listed "
                                             "both as a holiday and as a workday", line)
            except _Skip:
                continue
            self.cfg.calendars[name] = cal

    def _ivr(self) -> None:
        """[ivr]: checked key by key here; the flows themselves by `ctictl check-config`
        (ivr.validate) and at start-up."""
        if "ivr" not in self.data:
            return
        try:
            v = self.c.section(self.data["ivr"], "ivr", None, _IVR)
            for path in v["flows"]:
                if not os.path.exists(path):
                    raise self.c.problem("ivr", None, "flows", f"{path!r}: no such file or "
                                         "folder", self.c.map.value_line("ivr", None, "flows",
                                                                         f'"{path}"'))
            for sub in ("sources", "apps"):
                for name, url in v[sub].items():
                    if not isinstance(url, str) or not url:
                        raise self.c.problem(f"ivr.{sub}", None, name,
                                             f"expected a URL string, got {url!r}")
                    if sub == "apps" and _endpoint(url):
                        raise self.c.problem(f"ivr.{sub}", None, name, _endpoint(url))
            pin = self.c.section(v["pin"], "ivr.pin", None, _IVR_PIN)
            for who in pin["lock_on"]:
                if who not in _PIN_LOCK_ON:
                    raise self.c.problem("ivr.pin", None, "lock_on", f"{who!r} is not one of "
                                         f"{', '.join(_PIN_LOCK_ON)}")
            v["pin"] = {k: val for k, val in pin.items() if k in v["pin"]}
        except _Skip:
            return
        self.cfg.ivr = v

    def _target(self, target: str, index: int, key: str, outbound_ok: bool = True) -> None:
        kind, sep, name = target.partition(":")
        if not sep or kind not in TARGET_KINDS:
            raise self.c.problem("route", index, key, f"bad target {target!r} (expected "
                                 f"{', '.join(k + ':NAME' for k in TARGET_KINDS)})")
        if kind == "ext" and name and name not in self.extension_numbers:
            raise self.c.problem("route", index, key,
                                 f"{target!r}: no extension {name} (see [[extension]])")
        if kind == "trunk":
            if name not in self.trunk_names:
                known = ", ".join(sorted(self.trunk_names)) or "none"
                raise self.c.problem("route", index, key,
                                     f"{target!r}: no trunk group {name!r} (known: {known})")
            group = next((g for g in self.cfg.trunk_groups if g.name == name), None)
            if group is not None and group.direction == "in":
                raise self.c.problem("route", index, key, f"{target!r}: trunk group {name!r} "
                                     "takes inbound calls only (direction = \"in\")")
        if kind in ("queue", "ivr") and not name:
            raise self.c.problem("route", index, key, f"{target!r}: name the {kind}")
        if kind == "queue" and name not in self.queue_names:
            known = ", ".join(sorted(self.queue_names)) or "none"
            raise self.c.problem("route", index, key,
                                 f"{target!r}: no queue {name!r} (see [[queue]]; known: {known})")

    def _routes(self) -> None:
        earlier: list[tuple[int, Route]] = []
        for i, entry in self.c.entries(self.data, "route"):
            try:
                v = self.c.section(entry, "route", i, _ROUTE)
                self._target(v["to"], i, "to")
                if v["closed_to"]:
                    if not v["calendar"]:
                        raise self.c.problem("route", i, "closed_to",
                                             "closed_to needs a calendar to say when it is closed")
                    self._target(v["closed_to"], i, "closed_to")
                if v["calendar"] and v["calendar"] not in self.calendar_names:
                    known = ", ".join(sorted(self.calendar_names)) or "none"
                    raise self.c.problem("route", i, "calendar",
                                         f"unknown calendar {v['calendar']!r} (known: {known})")
                for j, r in earlier:
                    if r.match == v["match"] and r.source in ("any", v["source"]):
                        raise self.c.problem("route", i, "match", f"never used: route[{j}] "
                                             f"already takes {v['match']!r} from this source")
                try:
                    route = Route(**v)
                except RoutingError as e:
                    raise self.c.problem("route", i, None, str(e)) from None
            except _Skip:
                continue
            earlier.append((i, route))
            self.cfg.routes.append(route)
