"""CDR summaries for operators: calls per hour and per day, by outcome, by direction, by
trunk and by extension, with answer rate and average talk time.

A functional core: `summarize(cdrs, tz, since, until)` takes CDRs as Store.cdrs() returns
them (one dict per call, with its legs) and computes figures; no database, no clock.

Definitions (the same as the CDR exports' `answered` and `talk_s` columns):
- a call is *answered* when a party other than the caller answered (the first such time);
- its *talk time* runs from that answer to the call's end (calls still open have none);
- its *answer time* runs from the call's start to that answer;
- a device's talk time in a call runs from when both it and the call were answered (the
  caller: from the call's answer) to when its leg (or else the call) ended; a device
  counts once per call, and as answered when it talked;
- *direction*: inbound when the first leg is a trunk, outbound when a later leg is,
  internal otherwise.
Hours and days are in the report's zone (ctid.toml's [ctid] timezone).
"""
from __future__ import annotations

import collections
import dataclasses
import datetime as dt
from typing import Iterable, Optional

from ctid.storage.cdr import call_summary

TRUNK, EXTENSION = "trunk:", "ext:"
DIRECTIONS = ("inbound", "outbound", "internal")
NO_OUTCOME = "(none)"                       # calls stored without an outcome
BUCKETS = ("hour", "day")


@dataclasses.dataclass
class Tally:
    """Figures for a set of calls."""
    calls: int = 0
    answered: int = 0
    talked: int = 0             # answered calls whose talk time is known (they ended)
    talk_s: float = 0.0         # total talk time of those
    timed: int = 0              # answered calls whose time to answer is known
    answer_s: float = 0.0       # total time to answer of those

    def add(self, answered: bool, talk_s: Optional[float] = None,
            answer_s: Optional[float] = None) -> None:
        self.calls += 1
        if answered:
            self.answered += 1
            if answer_s is not None:
                self.timed += 1
                self.answer_s += answer_s
            if talk_s is not None:
                self.talked += 1
                self.talk_s += talk_s

    @property
    def answer_rate(self) -> Optional[float]:
        return self.answered / self.calls if self.calls else None

    @property
    def avg_talk_s(self) -> Optional[float]:
        return self.talk_s / self.talked if self.talked else None

    @property
    def avg_answer_s(self) -> Optional[float]:
        return self.answer_s / self.timed if self.timed else None

    def to_dict(self) -> dict:
        return {"calls": self.calls, "answered": self.answered,
                "answer_rate": _round(self.answer_rate, 4),
                "talk_s": round(self.talk_s, 3), "avg_talk_s": _round(self.avg_talk_s, 3),
                "avg_answer_s": _round(self.avg_answer_s, 3)}


@dataclasses.dataclass
class Bucket:
    """One hour or one day: its start (aware, in the report's zone) and its calls."""
    start: dt.datetime
    tally: Tally = dataclasses.field(default_factory=Tally)
    outcomes: collections.Counter = dataclasses.field(default_factory=collections.Counter)

    def to_dict(self) -> dict:
        return {"start": self.start.isoformat(), **self.tally.to_dict(),
                "outcomes": dict(sorted(self.outcomes.items()))}


@dataclasses.dataclass
class CdrReport:
    tz: dt.tzinfo
    since: Optional[float]          # the window asked for (epoch seconds; None: open)
    until: Optional[float]
    total: Tally
    by_outcome: dict[str, int]      # most frequent first
    by_direction: dict[str, Tally]
    by_trunk: dict[str, Tally]      # device id ("trunk:node1/5") -> figures
    by_extension: dict[str, Tally]  # device id ("ext:8001") -> figures
    per_hour: list[Bucket]          # every hour of the window, empty ones included
    per_day: list[Bucket]
    hour_of_day: list[Tally]        # 24 entries: the window's calls by local hour

    @property
    def zone(self) -> str:
        return zone_name(self.tz)

    def buckets(self, size: str) -> list[Bucket]:
        if size not in BUCKETS:
            raise ValueError(f"bucket must be one of {', '.join(BUCKETS)}, got {size!r}")
        return self.per_hour if size == "hour" else self.per_day

    def outcomes(self) -> list[str]:
        """Outcomes in display order: answered first, then by how often they occur."""
        return sorted(self.by_outcome, key=lambda o: (o != "answered", -self.by_outcome[o], o))

    def to_dict(self) -> dict:
        return {
            "zone": self.zone, "since": _iso(self.since, self.tz),
            "until": _iso(self.until, self.tz), "total": self.total.to_dict(),
            "by_outcome": dict(self.by_outcome),
            "by_direction": {k: v.to_dict() for k, v in self.by_direction.items()},
            "by_trunk": {k: v.to_dict() for k, v in self.by_trunk.items()},
            "by_extension": {k: v.to_dict() for k, v in self.by_extension.items()},
            "per_hour": [b.to_dict() for b in self.per_hour],
            "per_day": [b.to_dict() for b in self.per_day],
            "hour_of_day": [t.to_dict() for t in self.hour_of_day],
        }


# ---- the summary ---------------------------------------------------------------------------
def summarize(cdrs: Iterable[dict], tz: dt.tzinfo, since: Optional[float] = None,
              until: Optional[float] = None) -> CdrReport:
    """Figures for the CDRs (Store.cdrs() shape). `since`/`until` (epoch seconds) set the
    hours and days listed, empty ones included; without them the calls' own span does."""
    if since is not None and until is not None and until <= since:
        raise ValueError("the report's end must be after its start")
    total = Tally()
    outcomes: collections.Counter = collections.Counter()
    directions = {d: Tally() for d in DIRECTIONS}
    trunks: dict[str, Tally] = {}
    exts: dict[str, Tally] = {}
    hours: dict[dt.datetime, Bucket] = {}
    days: dict[dt.datetime, Bucket] = {}
    hod = [Tally() for _ in range(24)]
    first = last = None
    for cdr in cdrs:
        s = call_summary(cdr)
        started = cdr["started"]
        answered_at = s["answered"]
        answered = answered_at is not None
        answer_s = answered_at - started if answered else None
        talk_s = s["talk_s"]
        outcome = cdr["outcome"] or NO_OUTCOME

        total.add(answered, talk_s, answer_s)
        outcomes[outcome] += 1
        directions[direction(cdr)].add(answered, talk_s, answer_s)
        for device, (dev_answered, dev_talk) in device_talk(cdr, answered_at).items():
            table = trunks if device.startswith(TRUNK) else exts
            table.setdefault(device, Tally()).add(dev_answered, dev_talk)

        local = dt.datetime.fromtimestamp(started, tz)
        for key, table in ((hour_start(local), hours), (day_start(local), days)):
            b = table.get(key)
            if b is None:
                b = table[key] = Bucket(key)
            b.tally.add(answered, talk_s, answer_s)
            b.outcomes[outcome] += 1
        hod[local.hour].add(answered, talk_s, answer_s)
        first = started if first is None else min(first, started)
        last = started if last is None else max(last, started)

    lo = since if since is not None else first
    hi = until if until is not None else (None if last is None else last + 1e-6)
    return CdrReport(
        tz=tz, since=since, until=until, total=total,
        by_outcome=dict(sorted(outcomes.items(), key=lambda kv: (-kv[1], kv[0]))),
        by_direction=directions,
        by_trunk=dict(sorted(trunks.items())), by_extension=dict(sorted(exts.items())),
        per_hour=_fill(hours, lo, hi, tz, "hour"), per_day=_fill(days, lo, hi, tz, "day"),
        hour_of_day=hod)


def direction(cdr: dict) -> str:
    legs = cdr["legs"]
    if legs and legs[0]["device"].startswith(TRUNK):
        return "inbound"
    if any(leg["device"].startswith(TRUNK) for leg in legs[1:]):
        return "outbound"
    return "internal"


def device_talk(cdr: dict, answered_at: Optional[float]
                ) -> dict[str, tuple[bool, Optional[float]]]:
    """Each trunk and extension of the call -> (did it talk, its talk time or None while
    the call is open). A device with several legs (a transfer back, say) counts once, its
    talk times summed."""
    out: dict[str, tuple[bool, Optional[float]]] = {}
    for leg in cdr["legs"]:
        device = leg["device"]
        if not device.startswith((TRUNK, EXTENSION)):
            continue
        talked, total = out.get(device, (False, None))
        # The caller is in the call from its start; the call model may not stamp an
        # answer on the caller's leg, so the call's answer stands for it.
        joined = leg["answered"] if leg["role"] != "caller" else answered_at
        if answered_at is not None and joined is not None:
            end = leg["ended"] if leg["ended"] is not None else cdr["ended"]
            talk = None if end is None else max(0.0, end - max(joined, answered_at))
            talked = True
            if talk is not None:
                total = (total or 0.0) + talk
        out[device] = (talked, total)
    return out


# ---- hours and days in a zone ----------------------------------------------------------------
def hour_start(local: dt.datetime) -> dt.datetime:
    return local.replace(minute=0, second=0, microsecond=0)


def day_start(local: dt.datetime) -> dt.datetime:
    return dt.datetime.combine(local.date(), dt.time(), local.tzinfo)


def next_start(start: dt.datetime, size: str) -> dt.datetime:
    """The next bucket's start. Hours step in real time (a zone's change of offset makes
    no gap or double hour); days step by calendar date."""
    if size == "hour":
        t = start.timestamp() + 3600
        return hour_start(dt.datetime.fromtimestamp(t, start.tzinfo))
    return dt.datetime.combine(start.date() + dt.timedelta(days=1), dt.time(), start.tzinfo)


def _fill(found: dict[dt.datetime, Bucket], lo: Optional[float], hi: Optional[float],
          tz: dt.tzinfo, size: str) -> list[Bucket]:
    """Every bucket from the one holding `lo` to the one before `hi`, empty ones made."""
    if lo is None or hi is None:
        return []
    floor = hour_start if size == "hour" else day_start
    start = floor(dt.datetime.fromtimestamp(lo, tz))
    out = []
    while start.timestamp() < hi:
        out.append(found.get(start) or Bucket(start))
        start = next_start(start, size)
    return out


def zone_name(tz: dt.tzinfo) -> str:
    return getattr(tz, "key", None) or str(tz)


def _iso(t: Optional[float], tz: dt.tzinfo) -> Optional[str]:
    return None if t is None else dt.datetime.fromtimestamp(t, tz).isoformat()


def _round(v: Optional[float], nd: int) -> Optional[float]:
    return None if v is None else round(v, nd)


# ---- text for a terminal -----------------------------------------------------------------------
def format_text(report: CdrReport, names: Optional[dict[str, str]] = None) -> str:
    """The summary as aligned text. `names`: device id -> a name to show beside it
    (extension names and trunk groups from ctid.toml)."""
    names = names or {}
    tz = report.tz
    lines = []
    lines.append(f"CDR report, {window_text(report.since, report.until, tz)} ({report.zone})")
    t = report.total
    lines.append(f"calls {t.calls}, answered {t.answered} ({_pct(t.answer_rate)}), "
                 f"average talk {_secs(t.avg_talk_s)}, average answer {_secs(t.avg_answer_s)}")
    if not t.calls:
        return "\n".join(lines) + "\n"

    lines += ["", "by outcome:"]
    for o in report.outcomes():
        n = report.by_outcome[o]
        lines.append(f"  {o:<22} {n:>7} {n / t.calls:>7.1%}")

    header = f"  {'':<24} {'calls':>7} {'answered':>8} {'rate':>7} {'avg talk':>9}"
    for title, table in (("by direction", report.by_direction), ("by trunk", report.by_trunk),
                         ("by extension", report.by_extension)):
        rows = {k: v for k, v in table.items() if v.calls}
        if not rows:
            continue
        lines += ["", f"{title}:", header]
        for key, v in rows.items():
            label = f"{key} {names[key]}" if key in names else key
            lines.append(_row(label, v))

    days = report.per_day
    if len(days) > 1:
        lines += ["", "per day:", header]
        for b in days:
            lines.append(_row(b.start.strftime("%Y-%m-%d %a"), b.tally))
    hours = report.per_hour if len(days) <= 1 else None
    lines += ["", "per hour:" if hours is not None else "by hour of day (all days):", header]
    if hours is not None:
        for b in hours:
            lines.append(_row(b.start.strftime("%H:00"), b.tally))
    else:
        for h, v in enumerate(report.hour_of_day):
            lines.append(_row(f"{h:02d}:00", v))
    return "\n".join(lines) + "\n"


def window_text(since: Optional[float], until: Optional[float], tz: dt.tzinfo) -> str:
    """"2026-03-01 to 2026-03-31" for whole days, else "from ... to before ..."."""
    lo = None if since is None else dt.datetime.fromtimestamp(since, tz)
    hi = None if until is None else dt.datetime.fromtimestamp(until, tz)
    if lo is not None and hi is not None and lo == day_start(lo) and hi == day_start(hi):
        last = hi.date() - dt.timedelta(days=1)
        return (f"{lo:%Y-%m-%d}" if last == lo.date() else f"{lo:%Y-%m-%d} to {last:%Y-%m-%d}")
    text = "from the first call" if lo is None else f"from {lo:%Y-%m-%d %H:%M}"
    return text + ("" if hi is None else f" to before {hi:%Y-%m-%d %H:%M}")


def _row(label: str, v: Tally) -> str:
    return (f"  {label[:24]:<24} {v.calls:>7} {v.answered:>8} {_pct(v.answer_rate):>7} "
            f"{_secs(v.avg_talk_s):>9}")


def _pct(v: Optional[float]) -> str:
    return "-" if v is None else f"{v:.1%}"


def _secs(v: Optional[float]) -> str:
    return "-" if v is None else f"{v:.1f} s"
