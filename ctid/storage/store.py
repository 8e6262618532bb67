"""Store: ctid's database, reached through a write queue so a slow database delays
reports, never calls.

    store = Store("sqlite:///run/hotline.db", spool_dir="run/db-spool")
    store.start()                        # migrate (Alembic), start the writer
    store.submit_cdr(model.cdr(call))    # returns at once
    store.submit_audit({...}); store.submit("queue_log", record.row())
    store.cdrs(since, until); store.legs(call_id); store.export_csv(path, since, until)
    store.close(timeout=10)              # write what is queued, spool the rest

SQLite (the default) runs in WAL mode with a busy timeout, so reports read while the writer
writes. PostgreSQL (production) gets connect, lock and statement timeouts, so a stalled
server turns into a retry instead of a writer stuck forever.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import threading
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.engine import make_url

from . import cdr as cdr_mod
from .models import KINDS, StoreError, metadata
from .queue import QueueClosed, Record, WriteQueue

log = logging.getLogger("ctid.storage")

HERE = os.path.dirname(os.path.abspath(__file__))
MIGRATIONS = os.path.join(HERE, "migrations")
ALEMBIC_INI = os.path.join(HERE, "alembic.ini")
_PG_MIGRATE_LOCK = 0x686F746C          # pg_advisory lock key: one migrating ctid at a time


def is_transient(e: BaseException) -> bool:
    """Will the same write succeed later? Connection trouble, locks and timeouts: yes.
    Rows the database refuses (constraint, bad value): no."""
    if isinstance(e, (exc.IntegrityError, exc.DataError, exc.ProgrammingError, StoreError)):
        return False
    if isinstance(e, exc.DBAPIError):
        return True      # OperationalError, InterfaceError, InternalError, invalidated ...
    return isinstance(e, (exc.TimeoutError, exc.DisconnectionError, OSError))


class Store:
    def __init__(self, url: str, spool_dir: str | None = None, *, queue_max: int = 10000,
                 batch: int = 500, busy_timeout_s: float = 5.0, lock_timeout_s: float = 5.0,
                 statement_timeout_s: float = 30.0, connect_timeout_s: float = 5.0,
                 retry_min_s: float = 0.05, retry_max_s: float = 2.0,
                 tz: dt.tzinfo | None = None, name: str = "store"):
        try:
            self.url = make_url(url)
        except exc.ArgumentError:
            raise StoreError(f"{url!r} is not a database URL") from None
        self.backend = self.url.get_backend_name()
        if self.backend not in ("sqlite", "postgresql"):
            raise StoreError(f"database {self.backend!r} is not supported (sqlite or postgresql)")
        self.tz = tz or dt.timezone.utc
        self.engine = self._engine(busy_timeout_s, lock_timeout_s, statement_timeout_s,
                                   connect_timeout_s)
        self._inserts = {t.name: self._insert(t) for t in metadata.sorted_tables}
        self._migrated = False
        self._migrate_lock = threading.Lock()
        self.queue = WriteQueue(self._write, transient=is_transient, spool_dir=spool_dir,
                                queue_max=queue_max, batch=batch, retry_min_s=retry_min_s,
                                retry_max_s=retry_max_s, name=name)

    # ---- connection ------------------------------------------------------------------
    def _engine(self, busy_s: float, lock_s: float, stmt_s: float, connect_s: float) -> sa.Engine:
        if self.backend == "sqlite":
            db = self.url.database or ""
            if db in ("", ":memory:") or db.startswith("file::memory:"):
                raise StoreError("an in-memory SQLite database cannot be shared with the "
                                 "writer thread: give a file, e.g. sqlite:///run/hotline.db")
            parent = os.path.dirname(os.path.abspath(db))
            try:
                os.makedirs(parent, exist_ok=True)
            except OSError as e:
                raise StoreError(f"cannot create {parent} for the database: {e.strerror}") from None
            engine = sa.create_engine(self.url, connect_args={"timeout": busy_s},
                                      pool_pre_ping=True)

            @event.listens_for(engine, "connect")
            def _sqlite_pragmas(dbapi_conn, _record):
                cur = dbapi_conn.cursor()
                cur.execute(f"PRAGMA busy_timeout = {int(busy_s * 1000)}")
                cur.execute("PRAGMA journal_mode = WAL")      # readers never wait for the writer
                # FULL: a commit is on disk before the spool forgets its records (NORMAL
                # could lose the last commits to a power cut).
                cur.execute("PRAGMA synchronous = FULL")
                cur.execute("PRAGMA foreign_keys = ON")
                cur.close()
            return engine

        connect_args = {"connect_timeout": max(1, round(connect_s)), "keepalives": 1,
                        "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3,
                        "application_name": "hotline-ctid"}
        engine = sa.create_engine(self.url, connect_args=connect_args, pool_pre_ping=True,
                                  pool_size=2, max_overflow=4)

        @event.listens_for(engine, "connect")
        def _pg_timeouts(dbapi_conn, _record):
            cur = dbapi_conn.cursor()
            cur.execute(f"SET lock_timeout = {int(lock_s * 1000)}")
            cur.execute(f"SET statement_timeout = {int(stmt_s * 1000)}")
            cur.close()
            dbapi_conn.commit()
        return engine

    def _insert(self, table: sa.Table):
        if self.backend == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:
            from sqlalchemy.dialects.postgresql import insert
        key = table.info.get("conflict_key") or [c.name for c in table.primary_key]
        return insert(table).on_conflict_do_nothing(index_elements=list(key))

    # ---- schema ----------------------------------------------------------------------
    def alembic_config(self):
        from alembic.config import Config
        cfg = Config(ALEMBIC_INI)
        cfg.set_main_option("script_location", MIGRATIONS)
        return cfg

    def migrate(self, revision: str = "head") -> str | None:
        """Bring the schema to `revision` (Alembic upgrade); returns the revision now in the
        database. Safe to call from several ctid processes at once on PostgreSQL."""
        from alembic import command
        from alembic.runtime.migration import MigrationContext
        with self._migrate_lock:
            cfg = self.alembic_config()
            with self.engine.begin() as conn:
                if self.backend == "postgresql":
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"),
                                 {"k": _PG_MIGRATE_LOCK})
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, revision)
                current = MigrationContext.configure(conn).get_current_revision()
            self._migrated = True
            return current

    def revision(self) -> str | None:
        from alembic.runtime.migration import MigrationContext
        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    # ---- life cycle ------------------------------------------------------------------
    def start(self, migrate: bool = True) -> "Store":
        """Migrate and start writing. A database that is down now is not fatal: records
        queue up and the writer migrates once it can connect."""
        if migrate:
            try:
                self.migrate()
            except Exception as e:          # noqa: BLE001 - classified
                if not is_transient(e):
                    raise
                log.warning("database not reachable at start (%s); records will queue",
                            str(getattr(e, "orig", e)).strip().splitlines()[0][:200])
        else:
            self._migrated = True
        self.queue.start()
        return self

    def close(self, timeout: float = 10.0) -> bool:
        """Write what is queued (up to `timeout` seconds), spool the rest; True if the
        database has everything."""
        done = self.queue.close(timeout)
        self.engine.dispose()
        return done

    def __enter__(self) -> "Store":
        return self.start()

    def __exit__(self, *_exc) -> None:
        self.close()

    # ---- writing ---------------------------------------------------------------------
    def submit(self, table: str, row: dict) -> str:
        """Queue one record for `table`; returns its record id. Never waits for the
        database. A bad record raises StoreError here, in the caller's thread."""
        kind = KINDS.get(table)
        if kind is None:
            raise StoreError(f"no table {table!r} to write to (known: {', '.join(sorted(KINDS))})")
        rec = Record(table, Record.new_rid(), kind.normalize(row))
        try:
            self.queue.put(rec)
        except QueueClosed as e:
            raise StoreError(str(e)) from None
        return rec.rid

    def submit_cdr(self, cdr: dict) -> str:
        return self.submit("cdr", cdr)

    def submit_audit(self, row: dict) -> str:
        return self.submit("audit", row)

    def pending(self) -> int:
        return self.queue.pending()

    def flush(self, timeout: float | None = None) -> bool:
        return self.queue.flush(timeout)

    def stats(self) -> dict:
        return self.queue.stats()

    def _write(self, records: list[Record]) -> None:
        """One transaction for the batch; inserts skip rows already present (by record id)."""
        if not self._migrated:
            self.migrate()
        rows: dict[str, list[dict]] = {}
        for rec in records:
            kind = KINDS.get(rec.table)
            if kind is None:
                raise StoreError(f"record {rec.rid}: unknown table {rec.table!r}")
            for table, table_rows in kind.rows(rec.rid, rec.row):
                rows.setdefault(table.name, []).extend(table_rows)
        with self.engine.begin() as conn:
            for table in metadata.sorted_tables:        # parents before children
                if rows.get(table.name):
                    conn.execute(self._inserts[table.name], rows[table.name])

    # ---- reports ---------------------------------------------------------------------
    def _epoch(self, when: Any, what: str) -> float | None:
        return cdr_mod.to_epoch(when, self.tz, what)

    def _read(self, fn, *args):
        try:
            with self.engine.connect() as conn:
                return fn(conn, *args)
        except exc.DBAPIError as e:
            raise StoreError(f"database query failed: {str(e.orig).strip()[:300]}") from None

    def cdrs(self, since: Any = None, until: Any = None, *, call_id: str | None = None,
             limit: int | None = None) -> list[dict]:
        """CDRs of calls started in [since, until) (epoch seconds, dates or datetimes; naive
        ones are in the store's zone), oldest first, each with its legs."""
        return self._read(cdr_mod.query_cdrs, self._epoch(since, "since"),
                          self._epoch(until, "until"), call_id, limit)

    def legs(self, call_id: str) -> list[dict]:
        return self._read(cdr_mod.query_legs, call_id)

    def rows(self, table: str, since: Any = None, until: Any = None) -> list[dict]:
        """Rows of a flat table (audit, queue_log) by their `time`, in written order."""
        t = metadata.tables.get(table)
        if t is None or "time" not in t.c:
            raise StoreError(f"no timed table {table!r}")
        q = sa.select(t).order_by(t.c.id)
        lo, hi = self._epoch(since, "since"), self._epoch(until, "until")
        if lo is not None:
            q = q.where(t.c.time >= lo)
        if hi is not None:
            q = q.where(t.c.time < hi)
        return self._read(lambda conn: [dict(r._mapping) for r in conn.execute(q)])

    def export_csv(self, path: str, since: Any = None, until: Any = None) -> int:
        """CDRs of [since, until) to a CSV file, one line per call; returns the count."""
        return cdr_mod.write_csv(path, self.cdrs(since, until), self.tz)

    def export_xlsx(self, path: str, since: Any = None, until: Any = None) -> int:
        """CDRs of [since, until) to an Excel workbook (calls and legs); returns the count."""
        return cdr_mod.write_xlsx(path, self.cdrs(since, until), self.tz)
