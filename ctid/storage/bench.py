"""Storage benchmark: what submit() costs the call path, how fast the writer drains, and
the same while the database is stalled (records spooled, then written when it is back).

    python -m ctid.storage.bench [--url URL] [--records N] [--json]

Without --url, a SQLite file in a temporary directory. A PostgreSQL URL should name a
database (or a search_path schema) the benchmark may fill: it creates the tables.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import sqlite3
import tempfile
import time

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from .store import Store


def _cdr(i: int, t0: float) -> dict:
    start = t0 + i
    return {"call_id": f"B{i}", "started": start, "ended": start + 95.5,
            "calling": "13812345678", "called": "12345", "outcome": "answered",
            "data": {"ani": "13812345678", "dnis": "12345", "trunk": "trunk:node1/5"},
            "transfers": [],
            "legs": [{"device": "trunk:node1/5", "role": "caller", "started": start,
                      "answered": start + 4.0, "ended": start + 95.5, "cause": 16},
                     {"device": "ext:8001", "role": "called", "started": start + 0.1,
                      "answered": start + 4.0, "ended": start + 95.5, "cause": 16}]}


def _percentiles(ns: list[int]) -> dict:
    s = sorted(ns)

    def pick(q):
        return round(s[min(len(s) - 1, int(q * len(s)))] / 1000, 1)
    return {"p50_us": pick(0.50), "p99_us": pick(0.99), "p999_us": pick(0.999),
            "max_us": round(s[-1] / 1000, 1)}


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


@contextlib.contextmanager
def _stalled(url: str):
    if url.startswith("sqlite"):
        con = sqlite3.connect(make_url(url).database, isolation_level=None)
        con.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            con.execute("COMMIT")
            con.close()
        return
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        tx = conn.begin()
        conn.execute(sa.text("LOCK TABLE cdr, cdr_leg IN EXCLUSIVE MODE"))
        try:
            yield
        finally:
            tx.commit()
    engine.dispose()


def _phase(store: Store, n: int, offset: int, t0: float) -> tuple[list[int], float]:
    lat = []
    start = time.perf_counter()
    for i in range(offset, offset + n):
        cdr = _cdr(i, t0)
        a = time.perf_counter_ns()
        store.submit_cdr(cdr)
        lat.append(time.perf_counter_ns() - a)
    return lat, time.perf_counter() - start


def run(url: str | None = None, records: int = 20000, queue_max: int = 2000,
        batch: int = 500) -> dict:
    tmp = tempfile.TemporaryDirectory(prefix="hotline-bench-")
    url = url or f"sqlite:///{os.path.join(tmp.name, 'bench.db')}"
    spool = os.path.join(tmp.name, "spool")
    t0 = time.time()
    result: dict = {"database": make_url(url).get_backend_name(), "records": records,
                    "queue_max": queue_max, "batch": batch}
    store = Store(url, spool_dir=spool, queue_max=queue_max, batch=batch,
                  busy_timeout_s=0.2, lock_timeout_s=0.2, retry_max_s=0.5)
    try:
        store.start()
        # Healthy database: submits race the writer.
        cpu = _cpu()
        start = time.perf_counter()
        lat, submit_s = _phase(store, records, 0, t0)
        store.flush()
        total = time.perf_counter() - start
        result["healthy"] = {"submit": _percentiles(lat), "submit_wall_s": round(submit_s, 3),
                             "written_s": round(total, 3),
                             "cdrs_per_s": round(records / total),
                             "cpu_s": round(_cpu() - cpu, 3)}

        # Stalled database: everything past queue_max goes to the spool, then drains.
        before = store.stats()["spooled"]
        with _stalled(url):
            lat, submit_s = _phase(store, records, records, t0)
            while store.stats()["spooled"] - before < records - queue_max:
                time.sleep(0.01)
            spooled = store.stats()["spooled"] - before
        t = time.perf_counter()
        store.flush()
        drain = time.perf_counter() - t
        s = store.stats()
        result["stalled"] = {"submit": _percentiles(lat), "submit_wall_s": round(submit_s, 3),
                             "spooled": spooled, "drain_s": round(drain, 3),
                             "drain_cdrs_per_s": round(records / drain) if drain else None,
                             "retries": s["retries"]}
        with store.engine.connect() as conn:
            result["rows"] = conn.execute(sa.text("SELECT count(*) FROM cdr")).scalar()
    finally:
        store.close()
        tmp.cleanup()
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ctid.storage.bench",
                                description=__doc__.split("\n")[0])
    p.add_argument("--url", help="database URL (default: SQLite in a temporary directory)")
    p.add_argument("--records", type=int, default=20000)
    p.add_argument("--queue-max", type=int, default=2000)
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    result = run(args.url, args.records, args.queue_max, args.batch)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for k, v in result.items():
            if isinstance(v, dict):
                print(f"{k}:")
                for k2, v2 in v.items():
                    print(f"  {k2:<18} {v2}")
            else:
                print(f"{k:<20} {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
