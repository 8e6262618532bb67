"""`ctictl bench report`: how fast the CDR report is on a large, made-up set of calls.

Calls are generated in memory (a Poisson-ish day profile, outcomes and trunks drawn from
fixed shares), so the figures measure the report itself, not the database: summary,
CSV, XLSX and the chart, each in calls per second.
"""
from __future__ import annotations

import datetime as dt
import os
import random
import tempfile
import time
import zoneinfo

from . import export
from .cdr_report import summarize
from .plot import plot_calls

ZONE = zoneinfo.ZoneInfo("Asia/Shanghai")
OUTCOMES = (("answered", 0.72), ("noAnswer", 0.14), ("busy", 0.08), ("trunksBusy", 0.03),
            ("invalidNumber", 0.03))
# Busier in office hours: relative weights of each local hour.
HOUR_WEIGHTS = (1, 1, 1, 1, 1, 2, 3, 5, 12, 18, 20, 18, 10, 14, 19, 20, 17, 12, 6, 4, 3, 2, 1, 1)


def synthetic_cdrs(calls: int, days: int = 7, seed: int = 1,
                   start: dt.date = dt.date(2026, 11, 23)) -> list[dict]:
    """`calls` CDRs over `days` days from `start`, oldest first, in Store.cdrs() shape."""
    rng = random.Random(seed)
    names, weights = zip(*OUTCOMES)
    hours = [(d, h) for d in range(days) for h in range(24)]
    hour_w = [HOUR_WEIGHTS[h] for _, h in hours]
    out = []
    for i in range(calls):
        d, h = rng.choices(hours, hour_w)[0]
        base = dt.datetime.combine(start + dt.timedelta(days=d), dt.time(h), ZONE).timestamp()
        t0 = base + rng.random() * 3600
        outcome = rng.choices(names, weights)[0]
        trunk = f"trunk:node1/{5 + rng.randrange(4)}"
        ext = f"ext:80{rng.randrange(1, 41):02d}"
        inbound = rng.random() < 0.7
        caller, called = (trunk, ext) if inbound else (ext, trunk)
        ring = rng.uniform(2, 20)
        if outcome == "answered":
            end = t0 + ring + rng.expovariate(1 / 150)
            ans = t0 + ring
        else:
            end, ans = t0 + ring, None
        out.append({
            "rid": f"r{i}", "call_id": f"C{i}", "started": t0, "ended": end,
            "calling": "13812345678" if inbound else ext[4:], "called": "12345",
            "outcome": outcome, "data": {"trunk": trunk}, "transfers": [],
            "legs": [{"device": caller, "role": "caller", "started": t0,
                      "answered": t0 if inbound else None, "ended": end, "cause": 16},
                     {"device": called, "role": "called", "started": t0 + 0.2,
                      "answered": ans, "ended": end, "cause": 16}]})
    out.sort(key=lambda c: c["started"])
    return out


def run(calls: int = 50000, days: int = 7, seed: int = 1) -> dict:
    cdrs = synthetic_cdrs(calls, days, seed)
    lo = dt.datetime.combine(dt.date(2026, 11, 23), dt.time(), ZONE).timestamp()
    hi = lo + days * 86400
    out: dict = {"calls": calls, "days": days}
    t = time.perf_counter()
    report = summarize(cdrs, ZONE, lo, hi)
    out["summary_calls_per_s"] = _rate(calls, t)
    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
        t = time.perf_counter()
        export.write_csv(os.path.join(tmp, "calls.csv"), cdrs, ZONE)
        out["csv_calls_per_s"] = _rate(calls, t)
        t = time.perf_counter()
        export.write_xlsx(os.path.join(tmp, "calls.xlsx"), report, cdrs)
        out["xlsx_calls_per_s"] = _rate(calls, t)
        out["xlsx_mb"] = round(os.path.getsize(os.path.join(tmp, "calls.xlsx")) / 1e6, 2)
        t = time.perf_counter()
        plot_calls(report, os.path.join(tmp, "calls.png"))
        out["plot_s"] = round(time.perf_counter() - t, 3)
    return out


def _rate(n: int, t0: float) -> int:
    return int(n / max(1e-9, time.perf_counter() - t0))
