"""cardd.toml: spans and channels described like DAHDI's system.conf, plus each one's signaling.

Every error names the file, the line and the key at fault. Unknown keys are errors too: a
typo in a telephony config should never be silently ignored.

Example (etc/cardd.toml has a complete one):

    [node]
    name = "node1"
    run_dir = "run"

    [backend]
    type = "sim"                                  # or "dahdi"
    endpoint = "ipc://run/ctisim-cards.sock"      # sim: where ctisim serves the cards

    [[span]]
    span = 1
    kind = "analog"

    [[channels]]
    channels = "1-4"          # DAHDI channel numbers
    span = 1
    port = "fxs"              # a phone is attached (DAHDI: fxoks)
    callerid = "fsk"
"""
from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from typing import Any

PORTS = ("fxs", "fxo", "e1")
SPAN_KINDS = ("analog", "e1")
E1_SIGNALING = ("pri_cpe", "pri_net", "r2")
LAWS = ("alaw", "ulaw")
BACKENDS = ("sim", "dahdi")
E1_TIMESLOTS = 31          # timeslots 1..31; 16 carries the D-channel (PRI) or CAS (R2)


class ConfigError(Exception):
    """A configuration error, with where it is."""

    def __init__(self, path: str, line: int | None, key: str, message: str):
        self.path, self.line, self.key, self.message = path, line, key, message
        where = f"{path}:{line}" if line else path
        super().__init__(f"{where}: {key}: {message}")


@dataclasses.dataclass
class SpanConfig:
    span: int
    name: str
    kind: str                       # "analog" | "e1"
    framing: str = "ccs"            # e1: "ccs" (PRI) or "cas" (R2)
    coding: str = "hdb3"
    crc4: bool = True
    signaling: str = ""             # e1: pri_cpe | pri_net | r2
    switchtype: str = "euroisdn_e1"
    r2_variant: str = "china"
    options: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class ChannelConfig:
    channel: int
    span: int
    port: str                       # fxs | fxo | e1
    signaling: str                  # fxs | fxo | pri | r2
    timeslot: int = 0               # e1 only
    options: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class CarddConfig:
    path: str
    node: str = "node1"
    run_dir: str = "run"
    backend: str = "sim"
    backend_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    events_endpoint: str = "ipc://run/cardd-events.sock"
    commands_endpoint: str = "ipc://run/cardd-commands.sock"
    metrics_listen: str = "127.0.0.1:9630"
    law: str = "alaw"
    tone_plan: str = "cn"
    block: int = 160
    spans: list[SpanConfig] = dataclasses.field(default_factory=list)
    channels: list[ChannelConfig] = dataclasses.field(default_factory=list)

    def channel(self, number: int) -> ChannelConfig:
        for ch in self.channels:
            if ch.channel == number:
                return ch
        raise KeyError(number)


# ---- where each key stands -------------------------------------------------------------
_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-\"]+)\s*\]\]?")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-]+|\"[^\"]*\")\s*=")


def _key_lines(text: str) -> dict[tuple, int]:
    """Map (table, index, key) -> line number; index counts [[arrays]] (None for tables)."""
    lines: dict[tuple, int] = {}
    table, index = "", None
    counts: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        m = _HEADER.match(line)
        if m:
            table = m.group(2).strip('"')
            if m.group(1) == "[[":
                index = counts.get(table, 0)
                counts[table] = index + 1
            else:
                index = None
            lines.setdefault((table, index, None), number)
            continue
        k = _KEY.match(line)
        if k:
            lines.setdefault((table, index, k.group(1).strip('"')), number)
    return lines


class _Reader:
    def __init__(self, path: str, text: str):
        self.path = path
        self.lines = _key_lines(text)

    def line(self, table: str, index: int | None, key: str | None) -> int | None:
        return self.lines.get((table, index, key)) or self.lines.get((table, index, None))

    def error(self, table: str, index: int | None, key: str | None, message: str) -> ConfigError:
        name = table if key is None else (f"{table}.{key}" if table else key)
        if index is not None:
            name = f"{table}[{index}]" + (f".{key}" if key else "")
        return ConfigError(self.path, self.line(table, index, key), name, message)

    def section(self, data: dict, table: str, index: int | None, spec: dict[str, tuple]):
        """Check one table against spec {key: (types, default, allowed or None)}."""
        out = {}
        for key in data:
            if key not in spec:
                raise self.error(table, index, key,
                                 f"unknown key (known: {', '.join(sorted(spec))})")
        for key, (types, default, allowed) in spec.items():
            if key not in data:
                if default is _REQUIRED:
                    raise self.error(table, index, None, f"missing required key {key!r}")
                out[key] = default
                continue
            value = data[key]
            if not isinstance(value, types) or (isinstance(value, bool) and bool not in _as_tuple(types)):
                raise self.error(table, index, key,
                                 f"expected {_type_names(types)}, got {type(value).__name__} {value!r}")
            if allowed is not None and value not in allowed:
                raise self.error(table, index, key,
                                 f"{value!r} is not one of {', '.join(map(str, allowed))}")
            out[key] = value
        return out


_REQUIRED = object()


def _as_tuple(types) -> tuple:
    return types if isinstance(types, tuple) else (types,)


def _type_names(types) -> str:
    return " or ".join(t.__name__ for t in _as_tuple(types))


def parse_range(spec: str) -> list[int]:
    """'1-4,7,9-10' -> [1, 2, 3, 4, 7, 9, 10] (DAHDI's channel list syntax)."""
    out: list[int] = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            raise ValueError("empty element")
        if "-" in part:
            lo, hi = part.split("-", 1)
            lo_i, hi_i = int(lo), int(hi)
            if hi_i < lo_i:
                raise ValueError(f"range {part!r} runs backwards")
            out.extend(range(lo_i, hi_i + 1))
        else:
            out.append(int(part))
    return out


_NODE = {"name": (str, "node1", None), "run_dir": (str, "run", None)}
_BACKEND = {"type": (str, "sim", BACKENDS), "endpoint": (str, "ipc://run/ctisim-cards.sock", None),
            "emulation": (str, "", None), "timeout_s": ((int, float), 10.0, None)}
# Which [backend] keys each backend takes.
_BACKEND_KEYS = {"sim": ("endpoint", "timeout_s"), "dahdi": ("emulation", "timeout_s")}
_BUS = {"events": (str, "ipc://run/cardd-events.sock", None),
        "commands": (str, "ipc://run/cardd-commands.sock", None)}
_METRICS = {"listen": (str, "127.0.0.1:9630", None)}
_MEDIA = {"law": (str, "alaw", LAWS), "tone_plan": (str, "cn", None), "block": (int, 160, (80, 160, 320))}
# E1 span settings, only on spans of the matching signaling; defaults live in the
# signaling modules. PRI: drivers.signaling.pri.config.PriConfig fields (times in ms).
_PRI_OPTIONS = {
    "channel_mode": (str, None, ("preferred", "exclusive")),
    "hunt": (str, None, ("ascending", "descending")),
    "overlap_receiving": (bool, None, None), "interdigit_ms": (int, None, None),
    "dnis_digits": (int, None, None), "overlap_sending": (bool, None, None),
    "alert_on_offer": (bool, None, None), "stuck_clearing_ms": (int, None, None),
    "restart_ack_ms": (int, None, None), "restart_attempts": (int, None, None),
    "restart_on_recovery": (bool, None, None), "dchannel_grace_ms": (int, None, None),
    "recovery_base_ms": (int, None, None), "recovery_cap_ms": (int, None, None),
    "recovery_stable_ms": (int, None, None), "recovery_jitter": ((int, float), None, None),
    "echo_cancel": (bool, None, None),
}
# MFC/R2 (drivers.signaling.r2.make_line): digits taken before the register stops asking
# (overriding the variant's), the tone an incoming caller hears while it rings ("": none),
# and a directory to trace every call into.
_R2_OPTIONS = {
    "r2_max_dnis": (int, None, None), "r2_max_ani": (int, None, None),
    "r2_ringback": (str, None, None), "r2_trace": (str, None, None),
}
# The smallest value each whole-number setting takes (others: 0).
_OPTION_MIN = {"restart_attempts": 1, "r2_max_dnis": 1, "interdigit_ms": 1}
_OPTION_MAX = {"r2_max_dnis": 64, "r2_max_ani": 64}
_SPAN = {"span": (int, _REQUIRED, None), "name": (str, "", None), "kind": (str, _REQUIRED, SPAN_KINDS),
         "framing": (str, "", ("ccs", "cas", "")), "coding": (str, "hdb3", ("hdb3", "ami")),
         "crc4": (bool, True, None), "signaling": (str, "", E1_SIGNALING + ("",)),
         "switchtype": (str, "euroisdn_e1", None), "r2_variant": (str, "china", None),
         "channels": (str, "", None), "pcap": (str, "", None),
         **_PRI_OPTIONS, **_R2_OPTIONS}
# Per-channel signaling options (analog). Defaults live in the signaling modules.
_ANALOG_OPTIONS = {
    "callerid": (str, None, ("fsk", "dtmf", "none")), "busy_detect": (bool, None, None),
    "polarity_disconnect": (bool, None, None), "answer_on_polarity": (bool, None, None),
    "echo_cancel": (bool, None, None), "first_digit_timeout_ms": (int, None, None),
    "interdigit_timeout_ms": (int, None, None), "ring_timeout_ms": (int, None, None),
    "dialtone_wait_ms": (int, None, None), "max_ring_ms": (int, None, None),
    "callerid_delay_ms": (int, None, None),
}
_CHANNELS = {"channels": (str, _REQUIRED, None), "span": (int, _REQUIRED, None),
             "port": (str, _REQUIRED, ("fxs", "fxo")), **_ANALOG_OPTIONS}
_TOP = {"node", "backend", "bus", "metrics", "media", "span", "channels"}


def _signaling_options(r: _Reader, i: int, v: dict) -> dict:
    """The PRI or R2 settings a [[span]] sets, checked against its signaling and ranges."""
    sig = v["signaling"] if v["kind"] == "e1" else ""
    out = {}
    for table, fits, what in ((_PRI_OPTIONS, sig in ("pri_cpe", "pri_net"), "a PRI setting"),
                              (_R2_OPTIONS, sig == "r2", "an R2 setting")):
        for key in table:
            value = v[key]
            if value is None:
                continue
            if not fits:
                raise r.error("span", i, key, f"{what}, but span {v['span']} has signaling "
                                              f"{sig or v['kind']!r}")
            if isinstance(value, int) and not isinstance(value, bool):
                low, high = _OPTION_MIN.get(key, 0), _OPTION_MAX.get(key)
                if value < low or (high is not None and value > high):
                    bound = f"{low}..{high}" if high is not None else f">= {low}"
                    raise r.error("span", i, key, f"must be {bound}, got {value}")
            if key == "recovery_jitter" and not 0 <= value <= 1:
                raise r.error("span", i, key, f"a fraction of the delay, 0..1, got {value}")
            out[key] = value
    return out


def load_cardd_config(path: str | os.PathLike) -> CarddConfig:
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
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"line (\d+)", str(e))
        raise ConfigError(path, int(m.group(1)) if m else None, "(syntax)", str(e)) from None
    return _build(path, text, data)


def _build(path: str, text: str, data: dict) -> CarddConfig:
    r = _Reader(path, text)
    for key in data:
        if key not in _TOP:
            raise r.error("", None, key, f"unknown section (known: {', '.join(sorted(_TOP))})")
    for name in ("node", "backend", "bus", "metrics", "media"):
        if name in data and not isinstance(data[name], dict):
            raise r.error("", None, name, "must be a table [" + name + "]")
    node = r.section(data.get("node", {}), "node", None, _NODE)
    backend = r.section(data.get("backend", {}), "backend", None, _BACKEND)
    bus = r.section(data.get("bus", {}), "bus", None, _BUS)
    metrics = r.section(data.get("metrics", {}), "metrics", None, _METRICS)
    media = r.section(data.get("media", {}), "media", None, _MEDIA)
    if not re.fullmatch(r"[^:\s]+:\d{1,5}", metrics["listen"]):
        raise r.error("metrics", None, "listen", "expected HOST:PORT, e.g. 127.0.0.1:9630")

    cfg = CarddConfig(path=path, node=node["name"], run_dir=node["run_dir"],
                      backend=backend["type"],
                      backend_options={k: v for k, v in backend.items()
                                       if v != "" and k in _BACKEND_KEYS[backend["type"]]},
                      events_endpoint=bus["events"], commands_endpoint=bus["commands"],
                      metrics_listen=metrics["listen"], law=media["law"],
                      tone_plan=media["tone_plan"], block=media["block"])

    spans_raw = data.get("span", [])
    if not isinstance(spans_raw, list):
        raise r.error("", None, "span", "spans are written as [[span]] tables")
    by_span: dict[int, SpanConfig] = {}
    for i, s in enumerate(spans_raw):
        v = r.section(s, "span", i, _SPAN)
        if v["span"] < 1:
            raise r.error("span", i, "span", "span numbers start at 1")
        if v["span"] in by_span:
            raise r.error("span", i, "span", f"span {v['span']} is defined twice")
        if v["kind"] == "e1":
            if not v["signaling"]:
                raise r.error("span", i, None, "an e1 span needs signaling = pri_cpe, pri_net or r2")
            framing = v["framing"] or ("cas" if v["signaling"] == "r2" else "ccs")
            if (framing == "cas") != (v["signaling"] == "r2"):
                raise r.error("span", i, "framing",
                              f"framing {framing!r} does not fit signaling {v['signaling']!r}")
        else:
            for key in ("signaling", "framing", "channels"):
                if v[key]:
                    raise r.error("span", i, key, "only e1 spans take this key")
            framing = ""
        options = {"pcap": v["pcap"]} if v["pcap"] else {}
        options.update(_signaling_options(r, i, v))
        sc = SpanConfig(span=v["span"], name=v["name"] or f"span{v['span']}", kind=v["kind"],
                        framing=framing, coding=v["coding"], crc4=v["crc4"],
                        signaling=v["signaling"], switchtype=v["switchtype"],
                        r2_variant=v["r2_variant"], options=options)
        sc.options["first_channel"] = v["channels"]
        by_span[sc.span] = sc
        cfg.spans.append(sc)

    taken: dict[int, str] = {}

    def take(number: int, where: str, table: str, index: int, key: str) -> None:
        if number < 1:
            raise r.error(table, index, key, f"channel {number}: channel numbers start at 1")
        if number in taken:
            raise r.error(table, index, key, f"channel {number} is already used by {taken[number]}")
        taken[number] = where

    groups = data.get("channels", [])
    if not isinstance(groups, list):
        raise r.error("", None, "channels", "channel groups are written as [[channels]] tables")
    for i, g in enumerate(groups):
        v = r.section(g, "channels", i, _CHANNELS)
        span = by_span.get(v["span"])
        if span is None:
            raise r.error("channels", i, "span", f"span {v['span']} is not defined by a [[span]]")
        if span.kind != "analog":
            raise r.error("channels", i, "span",
                          f"span {v['span']} is an e1 span: its channels come from the span itself")
        try:
            numbers = parse_range(v["channels"])
        except ValueError as e:
            raise r.error("channels", i, "channels", f"bad channel list {v['channels']!r}: {e}") from None
        options = {k: v[k] for k in _ANALOG_OPTIONS if v[k] is not None}
        for n in numbers:
            take(n, f"[[channels]] #{i + 1}", "channels", i, "channels")
            cfg.channels.append(ChannelConfig(channel=n, span=span.span, port=v["port"],
                                              signaling=v["port"], options=dict(options)))

    # E1 spans: 30 bearer channels each (timeslot 16 is signaling), numbered after whatever
    # came before unless `channels = "first-last"` pins them.
    next_free = max(taken, default=0) + 1
    for i, span in enumerate(cfg.spans):
        if span.kind != "e1":
            continue
        pinned = span.options.pop("first_channel", "")
        if pinned:
            try:
                numbers = parse_range(pinned)
            except ValueError as e:
                raise r.error("span", i, "channels", f"bad channel list {pinned!r}: {e}") from None
            if len(numbers) != E1_TIMESLOTS - 1:
                raise r.error("span", i, "channels",
                              f"an E1 span has {E1_TIMESLOTS - 1} bearer channels, list has {len(numbers)}")
        else:
            numbers = list(range(next_free, next_free + E1_TIMESLOTS - 1))
        slots = [ts for ts in range(1, E1_TIMESLOTS + 1) if ts != 16]
        sig = "r2" if span.signaling == "r2" else "pri"
        for n, ts in zip(numbers, slots):
            take(n, f"span {span.span}", "span", i, "channels")
            cfg.channels.append(ChannelConfig(channel=n, span=span.span, port="e1",
                                              signaling=sig, timeslot=ts))
        next_free = max(taken) + 1
    for span in cfg.spans:
        span.options.pop("first_channel", None)
    cfg.channels.sort(key=lambda c: c.channel)
    if not cfg.channels:
        raise ConfigError(path, None, "channels", "no channels configured")
    return cfg

