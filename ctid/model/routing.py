"""Number routing: dial-plan patterns, targets, time-of-day and holiday calendars.

Patterns follow the Asterisk convention telephony engineers know: digits match themselves,
X is 0-9, Z is 1-9, N is 2-9, [1-5] a set, '.' one or more of anything, '!' zero or more.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import re

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
TARGET_KINDS = ("ext", "trunk", "queue", "ivr")


class RoutingError(ValueError):
    pass


def compile_pattern(pattern: str) -> re.Pattern:
    """Compile a dial pattern to a regex over digit strings."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c.isdigit() or c in "*#ABCD":
            out.append(re.escape(c))
        elif c == "X":
            out.append("[0-9]")
        elif c == "Z":
            out.append("[1-9]")
        elif c == "N":
            out.append("[2-9]")
        elif c == "[":
            j = pattern.find("]", i)
            if j < 0:
                raise RoutingError(f"pattern {pattern!r}: '[' without ']'")
            body = pattern[i + 1:j]
            if not re.fullmatch(r"[0-9\-]+", body):
                raise RoutingError(f"pattern {pattern!r}: bad set [{body}]")
            out.append(f"[{body}]")
            i = j
        elif c == ".":
            out.append("[0-9*#]+")
        elif c == "!":
            out.append("[0-9*#]*")
        else:
            raise RoutingError(f"pattern {pattern!r}: unexpected character {c!r}")
        i += 1
    return re.compile("".join(out))


def _elements(pattern: str) -> list[str]:
    """Pattern elements, with '.' expanded to 'one of anything, then zero or more'."""
    elems, i = [], 0
    while i < len(pattern):
        if pattern[i] == "[":
            j = pattern.index("]", i)
            elems.append(pattern[i:j + 1])
            i = j + 1
        elif pattern[i] == ".":
            elems += ["?", "!"]
            i += 1
        else:
            elems.append(pattern[i])
            i += 1
    return elems


def _elem_matches(elem: str, d: str) -> bool:
    if elem == "X":
        return d.isdigit()
    if elem == "Z":
        return d in "123456789"
    if elem == "N":
        return d in "23456789"
    if elem.startswith("["):
        return re.fullmatch(elem, d) is not None
    if elem in "?!":
        return True
    return elem == d


def can_extend(pattern: str, digits: str) -> bool:
    """Could more digits make `digits` match `pattern`? (An NFA walk over the elements.)"""
    elems = _elements(pattern)

    def closure(states: set[int]) -> set[int]:
        out, todo = set(states), list(states)
        while todo:
            i = todo.pop()
            if i < len(elems) and elems[i] == "!" and i + 1 not in out:
                out.add(i + 1)
                todo.append(i + 1)
        return out

    states = closure({0})
    for d in digits:
        nxt = set()
        for i in states:
            if i < len(elems) and _elem_matches(elems[i], d):
                nxt.add(i if elems[i] == "!" else i + 1)
        states = closure(nxt)
        if not states:
            return False
    return any(i < len(elems) for i in states)


@dataclasses.dataclass
class Calendar:
    """Opening hours by weekday, holidays (closed) and extra working days (open: China moves
    weekends around public holidays, so a Saturday can be a working day)."""
    name: str
    hours: dict[int, list[tuple[dt.time, dt.time]]] = dataclasses.field(default_factory=dict)
    holidays: set[dt.date] = dataclasses.field(default_factory=set)
    workdays: set[dt.date] = dataclasses.field(default_factory=set)
    workday_hours: list[tuple[dt.time, dt.time]] = dataclasses.field(default_factory=list)

    @classmethod
    def parse(cls, name: str, open_spec: list[str], holidays: list[str] = (),
              workdays: list[str] = ()) -> "Calendar":
        cal = cls(name=name)
        for spec in open_spec:
            m = re.fullmatch(r"\s*([a-z]{3})(?:-([a-z]{3}))?\s+(\d\d:\d\d)-(\d\d:\d\d)\s*", spec)
            if not m or m.group(1) not in WEEKDAYS or (m.group(2) and m.group(2) not in WEEKDAYS):
                raise RoutingError(f"calendar {name}: bad opening hours {spec!r} "
                                   f"(expected e.g. 'mon-fri 08:30-17:30')")
            first = WEEKDAYS.index(m.group(1))
            last = WEEKDAYS.index(m.group(2)) if m.group(2) else first
            start, end = dt.time.fromisoformat(m.group(3)), dt.time.fromisoformat(m.group(4))
            if end <= start:
                raise RoutingError(f"calendar {name}: {spec!r} ends before it starts")
            for day in range(first, last + 1):
                cal.hours.setdefault(day, []).append((start, end))
            if first == 0:
                cal.workday_hours = cal.hours[0]
        cal.holidays = _dates(name, holidays)
        cal.workdays = _dates(name, workdays)
        return cal

    def is_open(self, when: dt.datetime) -> bool:
        day = when.date()
        if day in self.holidays:
            return False
        spans = self.workday_hours if day in self.workdays else self.hours.get(when.weekday(), [])
        t = when.time()
        return any(start <= t < end for start, end in spans)


def _dates(name: str, specs) -> set[dt.date]:
    out: set[dt.date] = set()
    for spec in specs:
        try:
            if ".." in spec:
                a, b = (dt.date.fromisoformat(x) for x in spec.split("..", 1))
                if b < a:
                    raise ValueError("range runs backwards")
                out.update(a + dt.timedelta(days=i) for i in range((b - a).days + 1))
            else:
                out.add(dt.date.fromisoformat(spec))
        except ValueError as e:
            raise RoutingError(f"calendar {name}: bad date {spec!r}: {e}") from None
    return out


@dataclasses.dataclass
class Route:
    match: str
    to: str                          # "ext:8001", "trunk:co", "queue:hotline", "ivr:main"
    strip: int = 0
    prepend: str = ""
    calendar: str = ""
    closed_to: str = ""              # where calls go when the calendar is closed
    source: str = "any"              # "any", "trunk", "extension"
    regex: re.Pattern = dataclasses.field(init=False, repr=False)

    def __post_init__(self):
        self.regex = compile_pattern(self.match)
        for target in filter(None, (self.to, self.closed_to)):
            kind = target.split(":", 1)[0]
            if ":" not in target or kind not in TARGET_KINDS:
                raise RoutingError(f"route {self.match}: bad target {target!r} "
                                   f"(expected {', '.join(k + ':NAME' for k in TARGET_KINDS)})")


@dataclasses.dataclass(frozen=True)
class Decision:
    kind: str                        # "route", "wait", "invalid"
    target: str = ""                 # "ext:8001" ...
    number: str = ""                 # the number to pass on (after strip/prepend)
    route: Route | None = None


class DialPlan:
    def __init__(self, routes: list[Route], calendars: dict[str, Calendar]):
        self.routes = routes
        self.calendars = calendars
        for r in routes:
            if r.calendar and r.calendar not in calendars:
                raise RoutingError(f"route {r.match}: unknown calendar {r.calendar!r}")

    def decide(self, digits: str, when: dt.datetime, source: str = "any",
               complete: bool = False) -> Decision:
        """Route `digits`. complete=True when no more digits will come (timeout, en-bloc)."""
        candidates = [r for r in self.routes if r.source in ("any", source)]
        matched = next((r for r in candidates if r.regex.fullmatch(digits)), None)
        longer = any(can_extend(r.match, digits) for r in candidates)
        if matched is None:
            return Decision("wait" if longer and not complete else "invalid")
        if longer and not complete:
            return Decision("wait")   # e.g. "9." keeps collecting until timeout or '#'

        target = matched.to
        if matched.calendar and not self.calendars[matched.calendar].is_open(when):
            target = matched.closed_to or ""
            if not target:
                return Decision("invalid", route=matched)
        number = matched.prepend + digits[matched.strip:]
        if target.endswith(":"):         # "ext:" routes to the extension the number names
            target += number
        return Decision("route", target=target, number=number, route=matched)
