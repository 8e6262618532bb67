"""Data look-ups for IVR flows: SQL through SQLAlchemy and HTTP through urllib, each with
a timeout, answering `LookupResult`s. A back end that is down, slow or answers garbage
gives ok=False with the reason, and the flow takes its fallback path.

`LookupService` runs look-ups on a few worker threads so ctid's loop never waits on a
database or a web service: `submit(action)` returns at once; `poll()` hands back the
results that have arrived. The IVR session enforces the timeout on its own clock too,
so a result that comes late is simply ignored.

SQL statements take :name parameters bound from the node's params (never text
substitution). SQLite look-ups are interrupted at the deadline (a progress handler),
PostgreSQL ones by statement_timeout; other engines rely on the session's timeout.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import logging
import queue
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class LookupResult:
    ok: bool
    row: dict | None = None             # ok and None: nothing found
    error: str = ""


class _Deadline(threading.local):
    at: float | None = None


class SqlSource:
    def __init__(self, url: str, timeout_s: float = 3.0):
        from sqlalchemy import create_engine, event
        self.url = url
        self.timeout_s = timeout_s
        self._deadline = _Deadline()
        self._backend = url.split(":", 1)[0].split("+", 1)[0]
        connect_args: dict[str, Any] = {}
        if self._backend == "sqlite":
            connect_args = {"timeout": timeout_s, "check_same_thread": False}
        elif self._backend == "postgresql":
            connect_args = {"connect_timeout": max(1, int(timeout_s + 0.999))}
        self.engine = create_engine(url, connect_args=connect_args, pool_pre_ping=True)
        if self._backend == "sqlite":
            event.listen(self.engine, "connect", self._on_sqlite_connect)

    def _on_sqlite_connect(self, dbapi_conn, _record) -> None:
        deadline = self._deadline

        def progress() -> int:          # nonzero aborts the running statement
            return 1 if deadline.at is not None and time.monotonic() > deadline.at else 0
        dbapi_conn.set_progress_handler(progress, 2000)

    def run(self, statement: str, params: dict, timeout_s: float | None = None) -> LookupResult:
        from sqlalchemy import exc, text
        t = timeout_s or self.timeout_s
        self._deadline.at = time.monotonic() + t
        try:
            with self.engine.begin() as conn:
                if self._backend == "postgresql":
                    conn.execute(text(f"SET LOCAL statement_timeout = {int(t * 1000)}"))
                result = conn.execute(text(statement), params)
                if result.returns_rows:
                    row = result.mappings().first()
                    return LookupResult(True, dict(row) if row is not None else None)
                return LookupResult(True, {"lastrowid": result.lastrowid, "rowcount": result.rowcount})
        except exc.SQLAlchemyError as e:
            reason = str(getattr(e, "orig", None) or e).splitlines()[0]
            if "interrupted" in reason:
                reason = f"timed out after {t:g} s"
            return LookupResult(False, error=f"sql: {reason}")
        finally:
            self._deadline.at = None

    def close(self) -> None:
        self.engine.dispose()


def _json_path(doc: Any, path: str) -> Any:
    for part in filter(None, path.split(".")):
        if isinstance(doc, list):
            try:
                doc = doc[int(part)]
            except (ValueError, IndexError):
                raise KeyError(path) from None
        elif isinstance(doc, dict) and part in doc:
            doc = doc[part]
        else:
            raise KeyError(path)
    return doc


class HttpSource:
    def __init__(self, url: str, timeout_s: float = 3.0):
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s

    def full_url(self, target: str) -> str:
        if "://" in target:
            return target
        return f"{self.url}/{target.lstrip('/')}"

    def run(self, target: str, method: str = "GET", body: dict | None = None,
            timeout_s: float | None = None) -> LookupResult:
        t = timeout_s or self.timeout_s
        url = self.full_url(target)
        data = None
        headers = {"Accept": "application/json"}
        if method == "POST":
            data = json.dumps(body or {}, ensure_ascii=False).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=t) as resp:
                raw = resp.read(1 << 20)
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return LookupResult(True, None)
            return LookupResult(False, error=f"http: {url}: status {e.code}")
        except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError, OSError) as e:
            reason = getattr(e, "reason", e)
            if isinstance(reason, (socket.timeout, TimeoutError)):
                reason = f"timed out after {t:g} s"
            return LookupResult(False, error=f"http: {url}: {reason}")
        try:
            doc = json.loads(raw.decode("utf-8")) if raw.strip() else None
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            return LookupResult(False, error=f"http: {url}: not JSON ({e})")
        if isinstance(doc, list):
            doc = doc[0] if doc else None
        if doc is None:
            return LookupResult(True, None)
        if not isinstance(doc, dict):
            return LookupResult(False, error=f"http: {url}: expected a JSON object")
        return LookupResult(True, doc)

    def close(self) -> None:
        pass


def extract(row: dict, column: str) -> Any:
    """A column of an SQL row, or a dotted path into an HTTP JSON object."""
    if column in row:
        return row[column]
    return _json_path(row, column)


class LookupService:
    """Runs the IVR's Lookup actions on worker threads; sources are opened on first use
    and kept (one SQLAlchemy engine per URL)."""

    def __init__(self, workers: int = 4, overrides: dict[str, str] | None = None):
        self.overrides = dict(overrides or {})      # source name -> URL (deployment config)
        self._sources: dict[tuple[str, str], SqlSource | HttpSource] = {}
        self._lock = threading.Lock()
        self._pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="ivr-lookup")
        self._done: queue.SimpleQueue = queue.SimpleQueue()

    def _source(self, action) -> SqlSource | HttpSource:
        url = self.overrides.get(action.source, action.url)
        key = (action.kind, url)
        with self._lock:
            src = self._sources.get(key)
            if src is None:
                src = (SqlSource if action.kind == "sql" else HttpSource)(url, action.timeout_s)
                self._sources[key] = src
        return src

    def run(self, action) -> LookupResult:
        """Run one Lookup action now (in the calling thread)."""
        try:
            src = self._source(action)
            if action.kind == "sql":
                return src.run(action.query, dict(action.params), action.timeout_s)
            return src.run(action.query, action.method, dict(action.params), action.timeout_s)
        except Exception as e:          # a bad URL, a missing driver: the flow falls back
            log.warning("IVR lookup %s on %s failed: %s", action.request_id, action.source, e)
            return LookupResult(False, error=f"{action.kind}: {e}")

    def submit(self, action) -> None:
        def work():
            self._done.put((action.request_id, self.run(action)))
        self._pool.submit(work)

    def poll(self) -> list[tuple[str, LookupResult]]:
        out = []
        while True:
            try:
                out.append(self._done.get_nowait())
            except queue.Empty:
                return out

    def wait(self, timeout_s: float) -> list[tuple[str, LookupResult]]:
        """Block up to timeout_s for at least one result (tests and tools)."""
        try:
            first = self._done.get(timeout=timeout_s)
        except queue.Empty:
            return []
        return [first] + self.poll()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        for src in self._sources.values():
            src.close()


def run_script(url: str, path: str) -> None:
    """Run an SQL script (statements separated by ';' at line ends) - the demo data."""
    from sqlalchemy import create_engine, text
    with open(path, encoding="utf-8") as f:
        script = f.read()
    statements, current = [], []
    for line in script.splitlines():
        if line.strip().startswith("--"):
            continue
        current.append(line)
        if line.rstrip().endswith(";"):
            statements.append("\n".join(current).strip().rstrip(";"))
            current = []
    if "\n".join(current).strip():
        statements.append("\n".join(current).strip())
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            for s in statements:
                conn.execute(text(s))
    finally:
        engine.dispose()


def http_url_quote(value: str) -> str:
    return urllib.parse.quote(value, safe="")
