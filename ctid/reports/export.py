"""The CDR report to files: CSV (one line per call, as Store.export_csv writes it) and an
Excel workbook holding the summary sheets ahead of the calls and their legs.

Workbook sheets: summary (window, totals, outcomes, directions), per hour, per day,
trunks, extensions, then calls and legs in the columns of ctid.storage.cdr's export.
Times are local to the report's zone (Excel cells carry no zone; the zone is named in the
headers). Written in openpyxl's streaming mode, so a month of calls stays small in memory.
"""
from __future__ import annotations

import datetime as dt
import os
from typing import Iterable, Optional

from ctid.storage import cdr as cdr_mod

from .cdr_report import Bucket, CdrReport, Tally

TALLY_COLUMNS = ("calls", "answered", "answer rate", "talk s", "avg talk s", "avg answer s")


def write_csv(path: str, cdrs: Iterable[dict], tz: dt.tzinfo) -> int:
    """One line per call (ctid.storage's CSV: UTF-8 with BOM, ISO times); returns the count."""
    _check_dir(path)
    try:
        return cdr_mod.write_csv(path, cdrs, tz)
    except OSError as e:
        raise ValueError(f"cannot write {path}: {e.strerror}") from None


def write_xlsx(path: str, report: CdrReport, cdrs: Iterable[dict],
               names: Optional[dict[str, str]] = None) -> int:
    """The workbook; `cdrs` are the report's calls (an iterator is fine, e.g. one that
    shows progress). Returns the number of calls written."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell

    _check_dir(path)
    names = names or {}
    tz = report.tz
    zone = report.zone
    wb = Workbook(write_only=True)

    def pct(ws, v):
        if v is None:
            return None
        c = WriteOnlyCell(ws, value=v)
        c.number_format = "0.0%"
        return c

    def tally(ws, t: Tally, answer_s: bool = True) -> list:
        row = [t.calls, t.answered, pct(ws, t.answer_rate), round(t.talk_s, 3),
               _r(t.avg_talk_s)]
        return row + [_r(t.avg_answer_s)] if answer_s else row

    def local(t: Optional[float]):
        return None if t is None else dt.datetime.fromtimestamp(t, tz).replace(tzinfo=None)

    ws = wb.create_sheet("summary")
    ws.append(["CDR report", f"zone {zone}"])
    ws.append([f"from ({zone})", local(report.since) or "(first call)"])
    ws.append([f"until, excluded ({zone})", local(report.until) or "(after the last call)"])
    ws.append([])
    ws.append(["", *TALLY_COLUMNS])
    ws.append(["all calls", *tally(ws, report.total)])
    for d, t in report.by_direction.items():
        ws.append([d, *tally(ws, t)])
    ws.append([])
    ws.append(["outcome", "calls", "share"])
    for o in report.outcomes():
        n = report.by_outcome[o]
        ws.append([o, n, pct(ws, n / report.total.calls)])

    outcomes = report.outcomes()
    for title, buckets in (("per hour", report.per_hour), ("per day", report.per_day)):
        ws = wb.create_sheet(title)
        ws.append([f"start ({zone})", *TALLY_COLUMNS, *(f"outcome {o}" for o in outcomes)])
        for b in buckets:
            ws.append([_bucket_start(b), *tally(ws, b.tally),
                       *(b.outcomes.get(o, 0) for o in outcomes)])

    for title, table in (("trunks", report.by_trunk), ("extensions", report.by_extension)):
        ws = wb.create_sheet(title)
        ws.append(["device", "name", *TALLY_COLUMNS[:-1]])     # devices: no answer time
        for device, t in table.items():
            ws.append([device, names.get(device, ""), *tally(ws, t, answer_s=False)])

    calls = wb.create_sheet("calls")
    legs = wb.create_sheet("legs")
    calls.append([f"{c} ({zone})" if c in ("started", "answered", "ended") else c
                  for c in cdr_mod.CALL_COLUMNS])
    legs.append([f"{c} ({zone})" if c in ("started", "answered", "ended") else c
                 for c in cdr_mod.LEG_COLUMNS])
    n = 0
    for cdr in cdrs:
        s = cdr_mod.call_summary(cdr)
        for k in ("started", "answered", "ended"):
            s[k] = local(s[k])
        calls.append([s[k] for k in cdr_mod.CALL_COLUMNS])
        for seq, leg in enumerate(cdr["legs"]):
            legs.append([cdr["call_id"], seq, leg["device"], leg["role"], local(leg["started"]),
                         local(leg["answered"]), local(leg["ended"]), leg["cause"]])
        n += 1
    try:
        wb.save(path)
    except OSError as e:
        raise ValueError(f"cannot write {path}: {e.strerror}") from None
    return n


def _bucket_start(b: Bucket) -> dt.datetime:
    return b.start.replace(tzinfo=None)


def _r(v: Optional[float]) -> Optional[float]:
    return None if v is None else round(v, 3)


def _check_dir(path: str) -> None:
    """A clear error before any work, rather than a traceback after it."""
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise ValueError(f"cannot write {path}: no directory {parent}")
    if os.path.isdir(path):
        raise ValueError(f"cannot write {path}: it is a directory")
