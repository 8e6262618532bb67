"""ctid's store on SQLite and PostgreSQL: migrations, CDRs with every leg, and a write queue
that returns at once, holds records while the database is stalled or gone (in memory, then
in an fsynced spool that survives a restart) and writes each exactly once, in order."""
import contextlib
import csv
import datetime as dt
import os
import shutil
import socket
import sqlite3
import threading
import time
import zoneinfo

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from ctid.config import load_ctid_config
from ctid.model.callmodel import CallModel
from ctid.storage import Store, StoreError, TableKind, metadata
from ctid.storage.models import KINDS, CdrLeg, register_kind
from ctid.storage.queue import read_rejects
from hotline_proto import cardd_pb2, cti_pb2

SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")
T0 = dt.datetime(2026, 11, 23, 10, 0, tzinfo=SHANGHAI).timestamp()   # a Monday, office open

FAST = dict(busy_timeout_s=0.05, lock_timeout_s=0.05, connect_timeout_s=1,
            retry_min_s=0.01, retry_max_s=0.1)


def wait_until(predicate, what, timeout=30.0):
    """Poll for a condition the test needs before it goes on (not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for: {what}")
        time.sleep(0.01)


def cdr(i: int, legs: int = 2) -> dict:
    start = T0 + 60 * i
    return {"call_id": f"C{i}", "started": start, "ended": start + 30, "calling": "13812345678",
            "called": "12345", "outcome": "answered", "data": {"ani": "13812345678", "n": i},
            "transfers": [],
            "legs": [{"device": f"ext:800{k + 1}", "role": "caller" if k == 0 else "called",
                      "started": start, "answered": start + 2, "ended": start + 30, "cause": 16}
                     for k in range(legs)]}


def audit(i: int) -> dict:
    return {"time": T0 + i, "client": f"desk{i}", "role": "agent", "request": "make_call",
            "allowed": i % 3 != 0, "reason": "" if i % 3 else "out of scope"}


def count(url: str, table: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar()
    finally:
        engine.dispose()


@contextlib.contextmanager
def stalled(url: str):
    """Another session holds the tables so that nobody else can write to them (reads go on):
    SQLite: an exclusive transaction; PostgreSQL: LOCK TABLE ... IN EXCLUSIVE MODE."""
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
    conn = engine.connect()
    tx = conn.begin()
    conn.execute(sa.text("LOCK TABLE cdr, cdr_leg, audit, queue_log IN EXCLUSIVE MODE"))
    try:
        yield
    finally:
        tx.commit()
        conn.close()
        engine.dispose()


# ---- schema ------------------------------------------------------------------------------
def test_migrations_create_the_schema_the_models_describe(db_url, tmp_path):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    store = Store(db_url, spool_dir=str(tmp_path / "spool"), **FAST)
    assert store.revision() is None
    assert store.migrate() == "0002"
    assert store.migrate() == "0002"                     # again: nothing to do
    with store.engine.connect() as conn:
        names = set(sa.inspect(conn).get_table_names())
        assert {"cdr", "cdr_leg", "audit", "queue_log", "ivr_node_stats", "alembic_version"} <= names
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}),
                                metadata)
    assert diff == []
    if db_url.startswith("sqlite"):
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 50
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2      # FULL
    store.close()


# ---- CDRs --------------------------------------------------------------------------------
def _chev(channel, **kind):
    e = cardd_pb2.ChannelEvent(channel=channel)
    (field, msg), = kind.items()
    getattr(e, field).CopyFrom(msg)
    return e


def transferred_call_cdrs() -> list[dict]:
    """A call in on the CO line, answered at 8001, transferred to 8002 after a consultation,
    cleared by the caller: the call model's own CDRs, on the shipped configuration's devices
    (with a plain dial plan: the shipped one sends 12345 to the IVR, which is not hosted here)."""
    from ctid.model.routing import DialPlan, Route
    cfg = load_ctid_config("etc/ctid.toml")
    plan = DialPlan([Route("12345", "ext:8001"), Route("8XXX", "ext:")], {})
    m = CallModel(cfg.devices(), plan, tz=cfg.tz)
    out = m.channel_event("node1", _chev(5, incoming=cardd_pb2.Incoming(ani="13812345678")), T0)
    call_id = out.events[0].call_id
    cdrs = list(out.cdrs)
    cdrs += m.channel_event("node1", _chev(1, answered=cardd_pb2.Answered()), T0 + 3).cdrs
    reply, out = m.request(cti_pb2.Request(consultation_call=cti_pb2.ConsultationCall(
        call_id=call_id, device="ext:8001", called="8002")), T0 + 20)
    cdrs += out.cdrs
    cdrs += m.channel_event("node1", _chev(2, answered=cardd_pb2.Answered()), T0 + 22).cdrs
    _, out = m.request(cti_pb2.Request(transfer_call=cti_pb2.TransferCall(
        held_call_id=call_id, active_call_id=reply.call_id, device="ext:8001")), T0 + 25)
    cdrs += out.cdrs
    cdrs += m.channel_event("node1", _chev(5, cleared=cardd_pb2.Cleared(cause=16)), T0 + 60).cdrs
    return cdrs


def _approx_cdr(c: dict) -> dict:
    out = dict(c)
    for k in ("started", "ended"):
        out[k] = pytest.approx(c[k], abs=1e-5) if c[k] is not None else None
    out["legs"] = [{k: (pytest.approx(v, abs=1e-5) if isinstance(v, float) else v)
                    for k, v in leg.items()} for leg in c["legs"]]
    return out


def test_cdr_with_legs_and_transfers_round_trip(db_url, tmp_path):
    cdrs = transferred_call_cdrs()
    assert cdrs and any(c["transfers"] for c in cdrs)
    assert max(len(c["legs"]) for c in cdrs) >= 3
    with Store(db_url, spool_dir=str(tmp_path / "spool"), tz=SHANGHAI, **FAST) as store:
        rids = [store.submit_cdr(c) for c in cdrs]
        assert store.flush(timeout=30)
        back = store.cdrs()
        assert [b["rid"] for b in back] == rids
        for b, c in zip(back, cdrs):
            assert {k: v for k, v in b.items() if k != "rid"} == _approx_cdr(c)
        main = next(c for c in cdrs if c["transfers"])
        legs = store.legs(main["call_id"])
        assert [(leg["seq"], leg["device"], leg["role"]) for leg in legs] == [
            (i, leg["device"], leg["role"]) for i, leg in enumerate(main["legs"])]
        assert store.stats()["written"] == len(cdrs) and store.pending() == 0


def test_reports_by_period_and_exports(db_url, tmp_path):
    store = Store(db_url, spool_dir=str(tmp_path / "spool"), tz=SHANGHAI, **FAST).start()
    for i in range(5):                                   # calls at 10:00, 10:01, ... 10:04
        store.submit_cdr(cdr(i))
    store.submit_cdr({"call_id": "X1", "started": T0 + 30, "calling": "8001", "called": "8009",
                      "outcome": "invalidNumber", "legs": [
                          {"device": "ext:8001", "role": "caller", "started": T0 + 30,
                           "ended": T0 + 31, "cause": 1}]})
    assert store.flush(timeout=30)
    assert [c["call_id"] for c in store.cdrs(T0 + 60, T0 + 180)] == ["C1", "C2"]
    local = dt.datetime(2026, 11, 23, 10, 1)             # naive: the store's zone (Shanghai)
    assert [c["call_id"] for c in store.cdrs(since=local)] == ["C1", "C2", "C3", "C4"]
    assert [c["call_id"] for c in store.cdrs(until=T0 + 60)] == ["C0", "X1"]
    assert store.cdrs(call_id="X1")[0]["ended"] is None
    with pytest.raises(StoreError, match="since"):
        store.cdrs(since="yesterday")

    n = store.export_csv(str(tmp_path / "cdr.csv"), T0, T0 + 120)
    with open(tmp_path / "cdr.csv", encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    assert n == 3 and [r["call_id"] for r in rows] == ["C0", "X1", "C1"]
    assert rows[0]["started"] == "2026-11-23T10:00:00.000+08:00"
    assert rows[0]["answered"] == "2026-11-23T10:00:02.000+08:00"
    assert (rows[0]["duration_s"], rows[0]["talk_s"]) == ("30.0", "28.0")
    assert rows[0]["legs"] == "ext:8001 caller 16; ext:8002 called 16"
    assert rows[1]["answered"] == "" and rows[1]["outcome"] == "invalidNumber"

    from openpyxl import load_workbook
    assert store.export_xlsx(str(tmp_path / "cdr.xlsx"), T0, T0 + 120) == 3
    wb = load_workbook(tmp_path / "cdr.xlsx")
    calls = list(wb["calls"].values)
    legs = list(wb["legs"].values)
    assert calls[0][1] == "started (Asia/Shanghai)"
    assert calls[1][0] == "C0" and calls[1][1] == dt.datetime(2026, 11, 23, 10, 0)
    assert [r[:4] for r in legs[1:]] == [("C0", 0, "ext:8001", "caller"), ("C0", 1, "ext:8002", "called"),
                                         ("X1", 0, "ext:8001", "caller"), ("C1", 0, "ext:8001", "caller"),
                                         ("C1", 1, "ext:8002", "called")]
    store.close()


def test_bad_records_are_refused_at_submit(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/h.db", spool_dir=str(tmp_path / "spool"), **FAST)
    cases = [
        ("cdr", {"started": T0}, "call_id must be a non-empty string"),
        ("cdr", {"call_id": "C1"}, "missing field 'started'"),
        ("cdr", {"call_id": "C1", "started": "10:00"}, "cdr C1.started: expected epoch seconds"),
        ("cdr", {"call_id": "C1", "started": T0, "duraton": 3}, "unknown field(s) duraton"),
        ("cdr", {"call_id": "C1", "started": T0, "data": {"x": object()}}, "cdr C1.data: not storable"),
        ("cdr", {"call_id": "C1", "started": T0, "legs": [{"device": "ext:8001", "role": "caller"}]},
         "cdr C1.legs[0]: missing field 'started'"),
        ("cdr", {"call_id": "C1", "started": T0, "legs": [
            {"device": "ext:8001", "role": "caller", "started": T0, "cause": "16"}]},
         "cdr C1.legs[0].cause: expected an integer"),
        ("audit", {"time": T0, "request": "x", "allowed": "yes"}, "audit.allowed: expected true/false"),
        ("audit", {"time": T0, "allowed": True}, "audit: missing field 'request'"),
        ("calls", {}, "no table 'calls'"),
    ]
    for table, row, words in cases:
        with pytest.raises(StoreError) as e:
            store.submit(table, row)
        assert words in str(e.value), (row, str(e.value))
    assert store.pending() == 0
    store.close()


# ---- a stalled or absent database ---------------------------------------------------------
def test_stalled_database_delays_writes_and_loses_nothing(db_url, tmp_path):
    spool = tmp_path / "spool"
    store = Store(db_url, spool_dir=str(spool), queue_max=5, batch=4, **FAST).start()
    with stalled(db_url):
        order = []
        for i in range(40):                    # the caller is never held up by the lock
            order.append(store.submit_cdr(cdr(i, legs=1 + i % 3)))
            if i % 2:
                order.append(store.submit_audit(audit(i)))
        assert store.pending() == 60
        wait_until(lambda: store.stats()["retries"] >= 2, "the writer to hit the lock")
        wait_until(lambda: store.stats()["spooled"] >= 60 - 5 - 4, "records to reach the spool")
        stats = store.stats()
        assert stats["in_memory"] <= 5 + 4 and stats["written"] == 0 and stats["failing"]
        assert (spool / "store.spool").stat().st_size > 0
        assert count(db_url, "cdr") == 0        # readers are not blocked, and nothing got in
    assert store.flush(timeout=60)
    assert count(db_url, "cdr") == 40 and count(db_url, "audit") == 20
    assert count(db_url, "cdr_leg") == sum(1 + i % 3 for i in range(40))
    got = [c["rid"] for c in store.cdrs()]
    assert got == [r for r in order if r in set(got)]                  # in submission order
    assert [a["rid"] for a in store.rows("audit")] == [r for r in order if r not in set(got)]
    stats = store.stats()
    assert stats["written"] == 60 and stats["rejected"] == 0 and not stats["failing"]
    assert not (spool / "store.spool").exists()                        # drained and removed
    assert store.close()


def test_spool_survives_a_restart_and_replays_exactly_once(db_url, tmp_path):
    spool = tmp_path / "spool"
    first = Store(db_url, spool_dir=str(spool), queue_max=3, batch=2, **FAST).start()
    with stalled(db_url):
        rids = [first.submit_cdr(cdr(i)) for i in range(12)]
        wait_until(lambda: first.stats()["retries"] >= 1, "the writer to hit the lock")
        assert first.close(timeout=0.2) is False          # could not write: all spooled
        with open(spool / "store.spool") as f:
            assert len(f.readlines()) == 12
        with pytest.raises(StoreError, match="closed"):
            first.submit_cdr(cdr(99))
    kept = tmp_path / "kept.spool"
    shutil.copy(spool / "store.spool", kept)

    second = Store(db_url, spool_dir=str(spool), **FAST).start()
    assert second.pending() == 12
    rids.append(second.submit_cdr(cdr(12)))               # new records queue behind the old
    assert second.flush(timeout=60)
    assert [c["rid"] for c in second.cdrs()] == rids
    assert second.close()

    # A crash between commit and cursor update replays records the database already has.
    shutil.copy(kept, spool / "store.spool")
    third = Store(db_url, spool_dir=str(spool), **FAST).start()
    assert third.flush(timeout=60)
    assert [c["rid"] for c in third.cdrs()] == rids
    assert count(db_url, "cdr_leg") == 2 * 13
    assert third.stats()["written"] == 12 and third.close()


def test_one_spool_directory_per_store(tmp_path):
    a = Store(f"sqlite:///{tmp_path}/a.db", spool_dir=str(tmp_path / "spool"), **FAST).start()
    b = Store(f"sqlite:///{tmp_path}/b.db", spool_dir=str(tmp_path / "spool"), **FAST)
    with pytest.raises(RuntimeError, match="in use by another store"):
        b.start()
    a.close()


def test_torn_spool_tail_from_a_crash_is_dropped(tmp_path):
    spool = tmp_path / "spool"
    url = f"sqlite:///{tmp_path}/h.db"
    first = Store(url, spool_dir=str(spool), queue_max=0, **FAST).start()
    with stalled(url):
        for i in range(3):
            first.submit_cdr(cdr(i))
        assert first.close(timeout=0.1) is False
    with open(spool / "store.spool", "ab") as f:
        f.write(b'{"t":"cdr","rid":"abc","row":{"call_')          # the power went here
    second = Store(url, spool_dir=str(spool), **FAST).start()
    assert second.flush(timeout=30)
    assert [c["call_id"] for c in second.cdrs()] == ["C0", "C1", "C2"]
    second.close()


class _Orphans(TableKind):
    """A record kind whose legs name a CDR that does not exist: the database refuses them."""

    def __init__(self):
        super().__init__(CdrLeg.__table__, name="orphan_leg", skip=("cdr_rid", "seq"))

    def rows(self, rid, row):
        return [(self.table, [{"cdr_rid": "no-such-cdr", "seq": 0, **row}])]


def test_a_record_the_database_refuses_is_set_aside_not_blocking(db_url, tmp_path):
    register_kind(_Orphans())
    try:
        spool = tmp_path / "spool"
        store = Store(db_url, spool_dir=str(spool), batch=10, **FAST)
        good = [store.submit_cdr(cdr(0))]
        bad = store.submit("orphan_leg", {"call_id": "C9", "device": "ext:8001", "role": "caller",
                                          "started": T0, "cause": 16})
        good.append(store.submit_cdr(cdr(1)))
        store.start()                                  # all three in one batch
        assert store.flush(timeout=30)
        assert [c["rid"] for c in store.cdrs()] == good
        stats = store.stats()
        assert stats["rejected"] == 1 and stats["written"] == 3
        (error, rec), = read_rejects(str(spool / "store.rejected"))
        assert rec.rid == bad and rec.table == "orphan_leg" and "IntegrityError" in error
        store.close()
    finally:
        KINDS.pop("orphan_leg", None)


# ---- PostgreSQL going away and coming back ----------------------------------------------
class TcpProxy:
    """A TCP forwarder in front of the test server that can be switched off (connections
    refused, open ones cut) and on again, as a server restart looks to a client."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self.listener = None
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()

    def start(self):
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", self.port))
        self.listener.listen(16)
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def stop(self):
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)     # wakes the accepting thread
        self.listener.close()
        with self.lock:
            for s in self.conns:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            self.conns.clear()

    def _accept(self, listener):
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.conns += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src, dst):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


def test_postgresql_down_at_start_and_restarted_in_between(pg_db_url, tmp_path):
    db_url = pg_db_url
    url = make_url(db_url)
    proxy = TcpProxy((url.host, url.port))
    via_proxy = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)

    store = Store(via_proxy, spool_dir=str(tmp_path / "spool"), queue_max=4, batch=3, **FAST)
    store.start()                                  # connection refused: not fatal
    rids = [store.submit_cdr(cdr(i)) for i in range(5)]
    wait_until(lambda: store.stats()["retries"] >= 2, "the writer to find the server down")
    proxy.start()                                  # the server is back: migrate, then write
    assert store.flush(timeout=60)
    assert count(db_url, "cdr") == 5

    proxy.stop()                                   # a restart: open connections are cut
    rids += [store.submit_cdr(cdr(i)) for i in range(5, 15)]
    wait_until(lambda: store.stats()["retries"] >= 4, "the writer to find the server gone")
    assert store.pending() == 10
    proxy.start()
    assert store.flush(timeout=60)
    assert [c["rid"] for c in store.cdrs()] == rids
    assert count(db_url, "cdr_leg") == 30
    assert store.close()
    proxy.stop()
