"""MFC/R2 variants as data: one TOML file per carrier practice (etc/r2/<name>.toml).

A variant says which ABCD bit patterns carry each line signal, what every backward MF
signal means (groups A and B), which forward signals end the ANI or the DNIS, when the
incoming register asks for the calling party's category and number, what to send by
default, and the protocol timers. `R2Line` reads nothing else: China No.1 and ITU-T
Q.441 differ only in their files.

Line signals are written as the two bits A and B ("10" = A on, B off); C and D are the
same in every signal of a variant (`cd`). Signal numbers are 1..15 (Q.441 pairs; a
digit d is sent as signal d, the digit 0 as signal 10).

Every problem in a file is reported as `VariantError` naming the file, the line and the
key: a typo in a signaling table should never pass silently.
"""
from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from pathlib import Path
from typing import Any

LINE_SIGNALS = ("idle", "seize", "seize_ack", "answer", "clear_back", "clear_forward", "blocked")
OPTIONAL_LINE_SIGNALS = ("forced_release",)

# What a backward signal of group A asks of the outgoing register.
A_MEANINGS = {
    "next_digit": "send the next digit of the number being sent (DNIS, or the ANI after the category)",
    "next_dnis": "send the next DNIS digit",
    "next_ani": "send the next ANI digit",
    "category": "send the calling party's category; the ANI follows on request",
    "category_then_ani": "send the category the first time, the next ANI digit after that",
    "restart_dnis": "send the DNIS again from its first digit",
    "dnis_minus_1": "send the last digit but one again",
    "dnis_minus_2": "send the last digit but two again",
    "dnis_minus_3": "send the last digit but three again",
    "address_complete": "address complete: change over to group II/B",
    "address_complete_charge": "address complete, call accepted with charge (no group B)",
    "congestion": "congestion: release",
    "unallocated": "unallocated number: release",
}
# What a backward signal of group B says about the called subscriber.
B_MEANINGS = {
    "free_charge": "subscriber free, call charged",
    "free_no_charge": "subscriber free, no charge",
    "busy": "subscriber busy",
    "congestion": "congestion",
    "unallocated": "unallocated number",
    "out_of_order": "subscriber line out of order",
    "special_info": "send special information tone",
}
ACCEPT_MEANINGS = ("free_charge", "free_no_charge")
ANI_REQUEST = ("after_dnis", "after_first_digit", "never")

# Q.850 causes reported for each refusal, and the refusal sent for a hangup cause.
CAUSE_OF_MEANING = {"busy": 17, "unallocated": 1, "congestion": 42, "out_of_order": 27,
                    "special_info": 31}
MEANING_OF_CAUSE = {17: "busy", 1: "unallocated", 34: "congestion", 38: "congestion",
                    41: "congestion", 42: "congestion", 27: "out_of_order", 22: "special_info"}


class VariantError(Exception):
    """A variant file that cannot be used, with where the fault is."""

    def __init__(self, path: str, line: int | None, key: str, message: str):
        self.path, self.line, self.key, self.message = path, line, key, message
        where = f"{path}:{line}" if line else path
        super().__init__(f"{where}: {key}: {message}" if key else f"{where}: {message}")


@dataclasses.dataclass(frozen=True)
class Timers:
    """Protocol timers in milliseconds (lines turn them into ticks, rounding up)."""
    seize_ack_ms: int = 2000           # outgoing: seize sent, no seize acknowledgement
    mf_back_cycle_ms: int = 2000       # incoming: no forward signal after our request;
                                       # ends the DNIS (or ANI) where no end signal exists
    mf_pulse_ms: int = 150             # a backward signal sent while the forward is silent
    mf_fwd_safety_ms: int = 30000      # outgoing: no backward answer to our signal
    accept_ms: int = 1000              # incoming: call offered, the application silent:
                                       # accept (subscriber free) and let it ring
    answer_ms: int = 60000             # outgoing: accepted, never answered
    answer_delay_ms: int = 150         # incoming: last MF tone off -> answer bits
    double_answer_ms: int = 0          # incoming: answer, clear back, answer (0: off)
    release_guard_ms: int = 3000       # clearing: no idle (or clear forward) from the far end
    ring_max_ms: int = 120000          # incoming: accepted and ringing, never answered

    def ticks(self, name: str, tick_ms: int) -> int:
        ms = getattr(self, name)
        return -(-ms // tick_ms) if ms > 0 else 0


@dataclasses.dataclass(frozen=True)
class LineCodes:
    """The A and B bits of each line signal (2-bit numbers, A high) and the fixed C, D."""
    ab: dict[str, int]
    cd: int

    def abcd(self, name: str) -> int:
        return (self.ab[name] << 2) | self.cd

    def names(self, abcd: int) -> tuple[str, ...]:
        """Line signals whose A and B bits are those of `abcd` (several share a pattern)."""
        ab = (abcd >> 2) & 0b11
        return tuple(n for n, v in self.ab.items() if v == ab)


@dataclasses.dataclass(frozen=True)
class Variant:
    name: str
    description: str
    path: str
    line: LineCodes
    group_a: dict[int, str]            # backward signal -> meaning (answers to group I)
    group_b: dict[int, str]            # backward signal -> meaning (answers to group II)
    categories: dict[int, str]         # calling party category signal -> name
    services: dict[int, str]           # group II signal -> name (China: KD)
    ani_request: str = "after_dnis"
    max_dnis: int = 20
    max_ani: int = 20
    end_of_dnis: int = 0               # forward signal ending the DNIS (0: none, by timeout)
    end_of_ani: int = 15
    ani_restricted: int = 0            # forward signal: calling number withheld (0: none)
    category: int = 1                  # calling party category sent by default
    group_ii: int = 1                  # group II signal sent after address complete
    accept: str = "free_charge"        # B meaning sent when accepting a call
    timers: Timers = dataclasses.field(default_factory=Timers)

    # ---- signals the registers send ----------------------------------------------------
    def a_signal(self, *meanings: str) -> int:
        """The first group A signal having one of `meanings` (in that order of preference)."""
        for meaning in meanings:
            for sig, m in sorted(self.group_a.items()):
                if m == meaning:
                    return sig
        return 0

    def b_signal(self, meaning: str) -> int:
        for sig, m in sorted(self.group_b.items()):
            if m == meaning:
                return sig
        return 0

    @property
    def request_next_dnis(self) -> int:
        return self.a_signal("next_dnis", "next_digit")

    @property
    def request_next_ani(self) -> int:
        return self.a_signal("next_ani", "next_digit", "category_then_ani")

    @property
    def request_category(self) -> int:
        return self.a_signal("category", "category_then_ani")

    @property
    def address_complete(self) -> int:
        return self.a_signal("address_complete")

    @property
    def a_congestion(self) -> int:
        return self.a_signal("congestion")

    def refusal_signal(self, cause: int) -> int:
        """The group B signal that refuses a call for Q.850 `cause` (busy when unknown)."""
        meaning = MEANING_OF_CAUSE.get(cause, "busy")
        return self.b_signal(meaning) or self.b_signal("busy")

    def category_name(self, signal: int) -> str:
        return self.categories.get(signal, f"category-{signal}")

    def service_name(self, signal: int) -> str:
        return self.services.get(signal, f"group-ii-{signal}")

    def category_signal(self, name_or_number: str | int) -> int:
        """A category given by name ("ordinary") or number (1..15)."""
        if isinstance(name_or_number, int) and not isinstance(name_or_number, bool):
            if 1 <= name_or_number <= 15:
                return name_or_number
        elif isinstance(name_or_number, str):
            text = name_or_number.strip()
            if text.isdigit() and 1 <= int(text) <= 15:
                return int(text)
            for sig, name in self.categories.items():
                if name == text:
                    return sig
        raise ValueError(f"{self.name} variant has no calling party category "
                         f"{name_or_number!r} (known: {', '.join(self.categories.values())}, "
                         f"or a signal number 1-15)")

    def with_timers(self, **ms: int) -> "Variant":
        """The same variant with some timers changed (tests, per-span overrides)."""
        bad = sorted(set(ms) - {f.name for f in dataclasses.fields(Timers)})
        if bad:
            raise ValueError(f"unknown R2 timer {bad[0]!r}")
        return dataclasses.replace(self, timers=dataclasses.replace(self.timers, **ms))


# ---- finding variant files -------------------------------------------------------------------
def _search_path() -> list[Path]:
    out = [Path(p) for p in os.environ.get("HOTLINE_R2_VARIANTS", "").split(os.pathsep) if p]
    out.append(Path(__file__).resolve().parents[3] / "etc" / "r2")   # the source tree
    out.append(Path("/etc/hotline/r2"))
    return out


def variant_path(name: str) -> str:
    """`name` as a file: a path (has a slash or ends in .toml), or <dir>/<name>.toml on
    the search path ($HOTLINE_R2_VARIANTS, then etc/r2 of the source tree)."""
    if "/" in name or name.endswith(".toml"):
        return name
    if not re.fullmatch(r"[A-Za-z0-9_\-]+", name):
        raise VariantError(name, None, "", "a variant name is letters, digits, - and _")
    for d in _search_path():
        candidate = d / f"{name}.toml"
        if candidate.is_file():
            return str(candidate)
    known = sorted({p.stem for d in _search_path() if d.is_dir() for p in d.glob("*.toml")})
    raise VariantError(name, None, "", f"no R2 variant file {name}.toml (known: "
                       f"{', '.join(known) or 'none'}; searched {', '.join(map(str, _search_path()))})")


_CACHE: dict[tuple[str, float], Variant] = {}


def load_variant(name: str | os.PathLike) -> Variant:
    """Load a variant by name (etc/r2/<name>.toml) or by path; cached per file version."""
    path = variant_path(os.fspath(name))
    try:
        stat = os.stat(path)
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise VariantError(path, None, "(file)", f"cannot read: {e.strerror}") from None
    key = (os.path.abspath(path), stat.st_mtime)
    if key not in _CACHE:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise VariantError(path, None, "(file)", f"not UTF-8 text: {e}") from None
        _CACHE[key] = parse_variant(text, path)
    return _CACHE[key]


# ---- parsing -------------------------------------------------------------------------------
_HEADER = re.compile(r"^\s*\[\s*([A-Za-z0-9_.\-]+)\s*\]")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-]+|\"[^\"]*\")\s*=")


def _key_lines(text: str) -> dict[tuple[str, str | None], int]:
    lines: dict[tuple[str, str | None], int] = {}
    table = ""
    for number, line in enumerate(text.splitlines(), start=1):
        m = _HEADER.match(line)
        if m:
            table = m.group(1)
            lines.setdefault((table, None), number)
            continue
        k = _KEY.match(line)
        if k:
            lines.setdefault((table, k.group(1).strip('"')), number)
    return lines


_TOP = {"variant", "line", "register", "group_a", "group_b", "categories", "services", "timers"}
_REGISTER = {"ani_request": str, "max_dnis": int, "max_ani": int, "end_of_dnis": int,
             "end_of_ani": int, "ani_restricted": int, "category": int, "group_ii": int,
             "accept": str}


class _Reader:
    def __init__(self, path: str, text: str):
        self.path = path
        self.lines = _key_lines(text)

    def error(self, table: str, key: str | None, message: str) -> VariantError:
        line = self.lines.get((table, key)) or self.lines.get((table, None))
        name = f"{table}.{key}" if key is not None else (table or "(top)")
        return VariantError(self.path, line, name, message)

    def table(self, data: dict, name: str, required: bool = True) -> dict:
        if name not in data:
            if required:
                raise self.error("", None, f"missing section [{name}]")
            return {}
        value = data[name]
        if not isinstance(value, dict):
            raise self.error("", name, f"[{name}] must be a table")
        return value

    def signal_table(self, data: dict, name: str, meanings: dict | None) -> dict[int, str]:
        out: dict[int, str] = {}
        for key, value in self.table(data, name, required=meanings is not None).items():
            if not key.isdigit() or not 1 <= int(key) <= 15:
                raise self.error(name, key, "keys are MF signal numbers 1..15")
            if not isinstance(value, str) or not value:
                raise self.error(name, key, f"expected a name, got {value!r}")
            if meanings is not None and value not in meanings:
                raise self.error(name, key, f"unknown meaning {value!r} (known: "
                                 f"{', '.join(meanings)})")
            out[int(key)] = value
        return out


def _bits(r: _Reader, table: str, key: str, value: Any, width: int) -> int:
    if not isinstance(value, str) or not re.fullmatch(f"[01]{{{width}}}", value):
        raise r.error(table, key, f"expected {width} bits written as a string like "
                      f"{'10'[:width] if width == 2 else '1001'[:width]!r}, got {value!r}")
    return int(value, 2)


def parse_variant(text: str, path: str = "<variant>") -> Variant:
    r = _Reader(path, text)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"line (\d+)", str(e))
        raise VariantError(path, int(m.group(1)) if m else None, "(syntax)", str(e)) from None
    for key in data:
        if key not in _TOP:
            raise r.error("", key, f"unknown section (known: {', '.join(sorted(_TOP))})")

    head = r.table(data, "variant")
    for key in head:
        if key not in ("name", "description"):
            raise r.error("variant", key, "unknown key (known: description, name)")
    name = head.get("name")
    if not isinstance(name, str) or not name:
        raise r.error("variant", "name", "every variant needs a name")
    description = head.get("description", "")
    if not isinstance(description, str):
        raise r.error("variant", "description", "expected text")

    line_raw = r.table(data, "line")
    known_line = set(LINE_SIGNALS) | set(OPTIONAL_LINE_SIGNALS) | {"cd"}
    for key in line_raw:
        if key not in known_line:
            raise r.error("line", key, f"unknown line signal (known: {', '.join(sorted(known_line))})")
    if "cd" not in line_raw:
        raise r.error("line", None, "missing key 'cd' (the fixed C and D bits)")
    cd = _bits(r, "line", "cd", line_raw["cd"], 2)
    ab = {}
    for sig in LINE_SIGNALS + OPTIONAL_LINE_SIGNALS:
        if sig in line_raw:
            ab[sig] = _bits(r, "line", sig, line_raw[sig], 2)
        elif sig in LINE_SIGNALS:
            raise r.error("line", None, f"missing line signal {sig!r}")
    # Signals a receiver must tell apart in the same state (forward: idle, seize, clear
    # forward; backward: idle, seize ack, answer, clear back, blocked, forced release).
    pairs = [("idle", "seize"), ("seize", "clear_forward"), ("idle", "seize_ack"),
             ("idle", "answer"), ("seize_ack", "answer"), ("answer", "clear_back"),
             ("idle", "blocked")]
    if "forced_release" in ab:
        pairs += [("answer", "forced_release"), ("idle", "forced_release")]
    for a, b in pairs:
        if ab[a] == ab[b]:
            raise r.error("line", b, f"{b} has the same A and B bits as {a}: the far end "
                          f"could not tell them apart")

    group_a = r.signal_table(data, "group_a", A_MEANINGS)
    group_b = r.signal_table(data, "group_b", B_MEANINGS)
    categories = r.signal_table(data, "categories", None)
    services = r.signal_table(data, "services", None)

    reg_raw = r.table(data, "register")
    reg: dict[str, Any] = {}
    for key, value in reg_raw.items():
        want = _REGISTER.get(key)
        if want is None:
            raise r.error("register", key, f"unknown key (known: {', '.join(sorted(_REGISTER))})")
        if not isinstance(value, want) or isinstance(value, bool):
            raise r.error("register", key, f"expected {want.__name__}, got {value!r}")
        reg[key] = value
    if reg.get("ani_request", "after_dnis") not in ANI_REQUEST:
        raise r.error("register", "ani_request", f"expected one of {', '.join(ANI_REQUEST)}")
    for key in ("max_dnis", "max_ani"):
        if key in reg and not 0 <= reg[key] <= 40:
            raise r.error("register", key, "expected 0..40 digits")
    for key in ("end_of_dnis", "end_of_ani", "ani_restricted"):
        if key in reg and not 0 <= reg[key] <= 15:
            raise r.error("register", key, "expected a forward signal 11..15, or 0 for none")
        if reg.get(key, 0) and 1 <= reg[key] <= 10:
            raise r.error("register", key, f"signal {reg[key]} is a digit; end and "
                          f"restriction signals are 11..15")
    for key in ("category", "group_ii"):
        if key in reg and not 1 <= reg[key] <= 15:
            raise r.error("register", key, "expected a signal number 1..15")
    if reg.get("accept", "free_charge") not in ACCEPT_MEANINGS:
        raise r.error("register", "accept", f"expected one of {', '.join(ACCEPT_MEANINGS)}")

    timers_raw = r.table(data, "timers")
    fields = {f.name for f in dataclasses.fields(Timers)}
    tvals = {}
    for key, value in timers_raw.items():
        if key not in fields:
            raise r.error("timers", key, f"unknown timer (known: {', '.join(sorted(fields))})")
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise r.error("timers", key, f"expected milliseconds (an integer >= 0), got {value!r}")
        tvals[key] = value
    for key in ("seize_ack_ms", "mf_back_cycle_ms", "mf_pulse_ms", "mf_fwd_safety_ms",
                "answer_ms", "release_guard_ms"):
        if tvals.get(key, 1) == 0:
            raise r.error("timers", key, "this timer cannot be off (0)")

    variant = Variant(name=name, description=description, path=path,
                      line=LineCodes(ab=ab, cd=cd), group_a=group_a, group_b=group_b,
                      categories=categories, services=services, timers=Timers(**tvals), **reg)
    _check_complete(r, variant)
    return variant


def _check_complete(r: _Reader, v: Variant) -> None:
    """The registers must find every signal they send, and every signal must be sendable."""
    if not v.request_next_dnis:
        raise r.error("group_a", None, "no signal asks for the next DNIS digit "
                      "(next_dnis or next_digit)")
    if not v.address_complete:
        raise r.error("group_a", None, "no address_complete signal (change to group B)")
    if not v.a_congestion:
        raise r.error("group_a", None, "no congestion signal")
    if v.ani_request != "never":
        if not v.request_category:
            raise r.error("group_a", None, "the ANI is requested but no signal asks for the "
                          "category (category or category_then_ani)")
        if not v.request_next_ani:
            raise r.error("group_a", None, "the ANI is requested but no signal asks for "
                          "its digits (next_ani, next_digit or category_then_ani)")
    for meaning in ("busy", "congestion"):
        if not v.b_signal(meaning):
            raise r.error("group_b", None, f"no {meaning} signal")
    if not v.b_signal(v.accept):
        raise r.error("register", "accept", f"group_b has no {v.accept} signal")
    if v.end_of_ani and v.end_of_ani == v.ani_restricted:
        raise r.error("register", "ani_restricted", "the same signal as end_of_ani")
