"""Call detail records: one per call with every leg, as CallModel.cdr(call) builds them.

    {"call_id", "started", "ended", "calling", "called", "outcome", "data", "transfers",
     "legs": [{"device", "role", "started", "answered", "ended", "cause"}, ...]}

A CDR is one queue record, so a call and its legs reach the database in one transaction
or not at all. Reports read them back in the same shape (plus `rid`), and export them to
CSV (one line per call) or to an Excel workbook (a sheet of calls, a sheet of legs).
"""
from __future__ import annotations

import csv
import datetime as dt
import json
from typing import Any, Iterable

import sqlalchemy as sa

from .models import (Cdr, CdrLeg, RecordKind, StoreError, _is_time, check_json, check_value,
                     register_kind)

_CDR_FIELDS = ("call_id", "started", "ended", "calling", "called", "outcome", "data",
               "transfers", "legs")
_LEG_FIELDS = ("device", "role", "started", "answered", "ended", "cause")
_CDR_COLS = {c.name: c for c in Cdr.__table__.columns}
_LEG_COLS = {c.name: c for c in CdrLeg.__table__.columns}


class CdrKind(RecordKind):
    name = "cdr"

    def normalize(self, cdr: dict) -> dict:
        if not isinstance(cdr, dict):
            raise StoreError(f"cdr: a CDR is a dict, got {type(cdr).__name__}")
        unknown = sorted(set(cdr) - set(_CDR_FIELDS))
        if unknown:
            raise StoreError(f"cdr: unknown field(s) {', '.join(unknown)} "
                             f"(known: {', '.join(_CDR_FIELDS)})")
        call_id = cdr.get("call_id")
        if not isinstance(call_id, str) or not call_id:
            raise StoreError(f"cdr: call_id must be a non-empty string, got {call_id!r}")
        what = f"cdr {call_id}"
        if "started" not in cdr:
            raise StoreError(f"{what}: missing field 'started'")
        out: dict[str, Any] = {"call_id": call_id}
        for name in ("started", "ended", "calling", "called", "outcome"):
            value = cdr.get(name, None if name in ("started", "ended") else "")
            out[name] = check_value(f"{what}.{name}", _CDR_COLS[name], value)
        data = cdr.get("data") or {}
        if not isinstance(data, dict):
            raise StoreError(f"{what}.data: expected a dict, got {data!r}")
        check_json(f"{what}.data", data)
        transfers = cdr.get("transfers") or []
        if not isinstance(transfers, (list, tuple)):
            raise StoreError(f"{what}.transfers: expected a list, got {transfers!r}")
        check_json(f"{what}.transfers", list(transfers))
        out["data"], out["transfers"] = dict(data), list(transfers)
        legs = cdr.get("legs") or []
        if not isinstance(legs, (list, tuple)):
            raise StoreError(f"{what}.legs: expected a list, got {legs!r}")
        out["legs"] = [self._leg(f"{what}.legs[{i}]", leg) for i, leg in enumerate(legs)]
        return out

    @staticmethod
    def _leg(what: str, leg: dict) -> dict:
        if not isinstance(leg, dict):
            raise StoreError(f"{what}: a leg is a dict, got {type(leg).__name__}")
        unknown = sorted(set(leg) - set(_LEG_FIELDS))
        if unknown:
            raise StoreError(f"{what}: unknown field(s) {', '.join(unknown)} "
                             f"(known: {', '.join(_LEG_FIELDS)})")
        for name in ("device", "role", "started"):
            if name not in leg:
                raise StoreError(f"{what}: missing field {name!r}")
        return {name: check_value(f"{what}.{name}", _LEG_COLS[name],
                                  leg.get(name, 0 if name == "cause" else None))
                for name in _LEG_FIELDS}

    def rows(self, rid: str, cdr: dict) -> list[tuple[sa.Table, list[dict]]]:
        head = {k: v for k, v in cdr.items() if k != "legs"}
        legs = [{"cdr_rid": rid, "seq": i, "call_id": cdr["call_id"], **leg}
                for i, leg in enumerate(cdr["legs"])]
        out = [(Cdr.__table__, [{"rid": rid, **head}])]
        if legs:
            out.append((CdrLeg.__table__, legs))
        return out


register_kind(CdrKind())


# ---- reading back ------------------------------------------------------------------------
def to_epoch(when: Any, tz: dt.tzinfo, what: str) -> float | None:
    """Epoch seconds from epoch seconds, an aware datetime, or a naive one (in `tz`)."""
    if when is None:
        return None
    if isinstance(when, dt.datetime):
        return (when if when.tzinfo else when.replace(tzinfo=tz)).timestamp()
    if isinstance(when, dt.date):
        return dt.datetime.combine(when, dt.time(), tz).timestamp()
    if _is_time(when):
        return float(when)
    raise StoreError(f"{what}: expected epoch seconds, a date or a datetime, got {when!r}")


def query_cdrs(conn: sa.Connection, since: float | None, until: float | None,
               call_id: str | None = None, limit: int | None = None) -> list[dict]:
    c = Cdr.__table__.c
    q = sa.select(Cdr.__table__).order_by(c.started, c.id)
    if since is not None:
        q = q.where(c.started >= since)
    if until is not None:
        q = q.where(c.started < until)
    if call_id is not None:
        q = q.where(c.call_id == call_id)
    if limit is not None:
        q = q.limit(limit)
    heads = [dict(r._mapping) for r in conn.execute(q)]
    legs = _legs_by_rid(conn, [h["rid"] for h in heads])
    out = []
    for h in heads:
        out.append({"rid": h["rid"], "call_id": h["call_id"], "started": h["started"],
                    "ended": h["ended"], "calling": h["calling"], "called": h["called"],
                    "outcome": h["outcome"], "data": h["data"] or {},
                    "transfers": h["transfers"] or [], "legs": legs.get(h["rid"], [])})
    return out


def _legs_by_rid(conn: sa.Connection, rids: list[str]) -> dict[str, list[dict]]:
    c = CdrLeg.__table__.c
    out: dict[str, list[dict]] = {}
    for i in range(0, len(rids), 500):        # stay well under any bound-parameter limit
        q = (sa.select(CdrLeg.__table__).where(c.cdr_rid.in_(rids[i:i + 500]))
             .order_by(c.cdr_rid, c.seq))
        for r in conn.execute(q):
            m = r._mapping
            out.setdefault(m["cdr_rid"], []).append({k: m[k] for k in _LEG_FIELDS})
    return out


def query_legs(conn: sa.Connection, call_id: str) -> list[dict]:
    """Every leg of the call(s) with this id, oldest call first, in leg order."""
    c, h = CdrLeg.__table__.c, Cdr.__table__.c
    q = (sa.select(CdrLeg.__table__).join(Cdr.__table__, h.rid == c.cdr_rid)
         .where(c.call_id == call_id).order_by(h.started, h.id, c.seq))
    return [{k: r._mapping[k] for k in ("seq", *_LEG_FIELDS)} for r in conn.execute(q)]


# ---- exports -----------------------------------------------------------------------------
CALL_COLUMNS = ("call_id", "started", "answered", "ended", "duration_s", "talk_s", "calling",
                "called", "outcome", "legs", "transfers", "data")
LEG_COLUMNS = ("call_id", "seq", "device", "role", "started", "answered", "ended", "cause")


def _answered(cdr: dict) -> float | None:
    """When the call was answered: the first answer by a party other than the caller."""
    times = [leg["answered"] for leg in cdr["legs"]
             if leg["role"] != "caller" and leg["answered"] is not None]
    return min(times) if times else None


def call_summary(cdr: dict) -> dict:
    answered = _answered(cdr)
    ended = cdr["ended"]
    talk = ended - answered if ended is not None and answered is not None else None
    return {
        "call_id": cdr["call_id"], "started": cdr["started"], "answered": answered,
        "ended": ended,
        "duration_s": round(ended - cdr["started"], 3) if ended is not None else None,
        "talk_s": round(talk, 3) if talk is not None else None,
        "calling": cdr["calling"], "called": cdr["called"], "outcome": cdr["outcome"],
        "legs": "; ".join(f"{leg['device']} {leg['role']} {leg['cause']}" for leg in cdr["legs"]),
        "transfers": "; ".join(map(str, cdr["transfers"])),
        "data": json.dumps(cdr["data"], ensure_ascii=False, sort_keys=True) if cdr["data"] else "",
    }


def _iso(t: float | None, tz: dt.tzinfo) -> str:
    if t is None:
        return ""
    return dt.datetime.fromtimestamp(t, tz).isoformat(timespec="milliseconds")


def write_csv(path: str, cdrs: Iterable[dict], tz: dt.tzinfo) -> int:
    """One line per call; times in ISO 8601 with the zone's offset. UTF-8 with a byte-order
    mark, so Excel opens Chinese names and numbers correctly."""
    n = 0
    with open(path, "w", newline="", encoding="utf-8-sig") as f:
        w = csv.writer(f)
        w.writerow(CALL_COLUMNS)
        for cdr in cdrs:
            s = call_summary(cdr)
            for k in ("started", "answered", "ended"):
                s[k] = _iso(s[k], tz)
            w.writerow(["" if s[k] is None else s[k] for k in CALL_COLUMNS])
            n += 1
    return n


def write_xlsx(path: str, cdrs: Iterable[dict], tz: dt.tzinfo) -> int:
    """A workbook with a "calls" sheet and a "legs" sheet; times are local (Excel cells
    carry no zone), the zone is named in the header."""
    from openpyxl import Workbook

    def local(t):
        return None if t is None else dt.datetime.fromtimestamp(t, tz).replace(tzinfo=None)

    zone = getattr(tz, "key", None) or str(tz)
    wb = Workbook(write_only=True)
    calls = wb.create_sheet("calls")
    legs = wb.create_sheet("legs")
    calls.append([f"{c} ({zone})" if c in ("started", "answered", "ended") else c
                  for c in CALL_COLUMNS])
    legs.append([f"{c} ({zone})" if c in ("started", "answered", "ended") else c
                 for c in LEG_COLUMNS])
    n = 0
    for cdr in cdrs:
        s = call_summary(cdr)
        for k in ("started", "answered", "ended"):
            s[k] = local(s[k])
        calls.append([s[k] for k in CALL_COLUMNS])
        for seq, leg in enumerate(cdr["legs"]):
            legs.append([cdr["call_id"], seq, leg["device"], leg["role"], local(leg["started"]),
                         local(leg["answered"]), local(leg["ended"]), leg["cause"]])
        n += 1
    wb.save(path)
    return n
