"""The write queue: keeps the database off the call path and loses nothing while it is away.

Records form one FIFO in three parts, oldest first:

    memory (at most queue_max)  ->  spool file (fsynced)  ->  tail (on its way to the spool)

`put()` only appends under a short lock: to memory while it has room and nothing waits in
the spool, otherwise to the tail. A spooler thread appends the tail to the spool file and
fsyncs it; a writer thread takes batches from the head of memory, refilling memory from the
spool (then from the tail once the spool is read out), and hands each batch to `write`,
which commits it in one transaction. A record leaves the queue only after its batch is
committed. When `write` fails with a transient error (connection refused, database locked,
lock or statement timeout) the same batch is retried with exponential backoff; meanwhile new
records pile up in the spool, so memory stays bounded however long the outage lasts.
A batch failing for any other reason is split and retried record by record; a record that
still fails alone is set aside in a rejects file (never silently dropped, never blocking
the others).

`write` must be idempotent per record (the store inserts with ON CONFLICT DO NOTHING on
the record id): a commit whose acknowledgement is lost is retried, and a spool replayed
after a crash may repeat records already written. A cursor file remembers how far the
spool is committed, so a restart replays little.

On `close(timeout)`, whatever could not be written in time is compacted into the spool in
FIFO order, for the next start to write. What a crash can lose is what sat in memory: at
most queue_max records (queue_max = 0 sends every record through the spool).
"""
from __future__ import annotations

import collections
import dataclasses
import fcntl
import json
import logging
import os
import threading
import time
import uuid
from typing import Callable, Iterable

log = logging.getLogger("ctid.storage")


class QueueClosed(RuntimeError):
    pass


@dataclasses.dataclass(slots=True)
class Record:
    table: str
    rid: str
    row: dict
    spool_end: int = 0          # end of its line in the spool file, when read from there
    done: bool = False          # written or set aside while its batch went record by record

    def line(self) -> bytes:
        doc = {"t": self.table, "rid": self.rid, "row": self.row}
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"

    @classmethod
    def from_line(cls, line: bytes) -> "Record":
        doc = json.loads(line)
        if not isinstance(doc, dict) or not isinstance(doc.get("row"), dict):
            raise ValueError("not a spooled record")
        return cls(str(doc["t"]), str(doc["rid"]), doc["row"])

    @staticmethod
    def new_rid() -> str:
        return uuid.uuid4().hex


class WriteQueue:
    """See the module docstring. `write(records)` commits a batch or raises;
    `transient(exc)` says whether an exception means "try again later"."""

    def __init__(self, write: Callable[[list[Record]], None], *,
                 transient: Callable[[BaseException], bool],
                 spool_dir: str | None = None, queue_max: int = 10000, batch: int = 500,
                 retry_min_s: float = 0.05, retry_max_s: float = 2.0, name: str = "store",
                 clock: Callable[[], float] = time.monotonic):
        if queue_max < 0 or batch < 1:
            raise ValueError("queue_max must be >= 0 and batch >= 1")
        self._write = write
        self._transient = transient
        self.spool_dir = spool_dir
        self.queue_max = queue_max
        self.batch = batch
        self.retry_min_s, self.retry_max_s = retry_min_s, retry_max_s
        self.name = name
        self._clock = clock                 # only paces retries and log messages

        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)      # writer waits here
        self._spool_cv = threading.Condition(self._lock)  # spooler waits here
        self._idle = threading.Condition(self._lock)      # flush() waits here
        self._backoff = threading.Condition(self._lock)   # the writer between retries
        self._mem: collections.deque[Record] = collections.deque()
        self._tail: collections.deque[Record] = collections.deque()
        self._mem_from_spool = 0            # records in _mem that came from the spool

        # Spool file bookkeeping (byte offsets into the current spool file).
        self._spool_f = None                # append handle, used by the spooler only
        self._spool_busy = False            # the spooler is writing a chunk
        self._spool_chunk = 0               # records in that chunk
        self._spool_written = 0             # durable bytes
        self._spool_read = 0                # bytes read back into memory
        self._spool_unread = 0              # records not yet read back
        self._spool_committed = 0           # bytes whose records are in the database
        self._lock_f = None

        self._started = self._stopping = self._abandon = self._closed = False
        self._threads: list[threading.Thread] = []
        self._warned_unbounded = False
        self._last_warning = 0.0
        self.counters = collections.Counter()
        self.last_error = ""
        self.failing_since: float | None = None

    # ---- paths -----------------------------------------------------------------------
    def _path(self, suffix: str) -> str:
        return os.path.join(self.spool_dir, f"{self.name}.{suffix}")

    @property
    def spool_path(self) -> str | None:
        return self._path("spool") if self.spool_dir else None

    @property
    def rejects_path(self) -> str | None:
        return self._path("rejected") if self.spool_dir else None

    # ---- life cycle ------------------------------------------------------------------
    def start(self) -> None:
        if self._started:
            return
        if self.spool_dir:
            os.makedirs(self.spool_dir, exist_ok=True)
            self._lock_f = open(self._path("lock"), "a+")
            try:
                fcntl.flock(self._lock_f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self._lock_f.close()
                self._lock_f = None
                raise RuntimeError(f"spool directory {self.spool_dir} is in use by another "
                                   "store (one per process and directory)") from None
            self._recover_spool()
            if self._spool_unread and self._mem:
                # Submitted before start(): newer than what an earlier run left in the spool.
                self._tail.extendleft(reversed(self._mem))
                self._mem.clear()
            t = threading.Thread(target=self._spooler, name=f"{self.name}-spool", daemon=True)
            self._threads.append(t)
        self._threads.append(threading.Thread(target=self._writer, name=f"{self.name}-writer",
                                              daemon=True))
        self._started = True
        for t in self._threads:
            t.start()

    def put(self, rec: Record) -> None:
        """Queue one record. Never waits for the database or the disk."""
        with self._lock:
            if self._closed or self._stopping:
                raise QueueClosed(f"{self.name}: the queue is closed")
            self.counters["submitted"] += 1
            if self.spool_dir is None:
                self._mem.append(rec)
                if len(self._mem) > self.queue_max and not self._warned_unbounded:
                    self._warned_unbounded = True
                    log.warning("%s: %d records waiting and no spool directory: holding them "
                                "in memory", self.name, len(self._mem))
                self._work.notify()
            elif (self._spool_unread or self._spool_busy or self._tail
                  or len(self._mem) >= self.queue_max):
                self._tail.append(rec)
                self._spool_cv.notify()
            else:
                self._mem.append(rec)
                self._work.notify()

    def pending(self) -> int:
        with self._lock:
            return self._pending()

    def _pending(self) -> int:
        return len(self._mem) + len(self._tail) + self._spool_chunk + self._spool_unread

    def stats(self) -> dict:
        with self._lock:
            return {"pending": self._pending(), "in_memory": len(self._mem),
                    "in_spool": self._spool_unread + self._spool_chunk + len(self._tail),
                    "submitted": self.counters["submitted"], "written": self.counters["written"],
                    "spooled": self.counters["spooled"], "retries": self.counters["retries"],
                    "rejected": self.counters["rejected"], "lost": self.counters["lost"],
                    "failing": self.failing_since is not None, "last_error": self.last_error}

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every record so far is written; False if the time ran out."""
        deadline = None if timeout is None else self._clock() + timeout
        with self._lock:
            while self._pending():
                left = None if deadline is None else deadline - self._clock()
                if left is not None and left <= 0:
                    return False
                self._idle.wait(left if left is None else min(left, 0.5))
            return True

    def close(self, timeout: float = 10.0) -> bool:
        """Stop taking records, write what is queued for up to `timeout` seconds, spool the
        rest. True if everything reached the database."""
        with self._lock:
            if self._closed:
                return not self._pending()
            self._stopping = True
            self._work.notify_all()
        done = self.flush(timeout) if self._started else not self.pending()
        with self._lock:
            self._abandon = True
            self._work.notify_all()
            self._spool_cv.notify_all()
            self._backoff.notify_all()
        for t in self._threads:
            if t.name.endswith("-spool"):
                t.join()                    # a disk write: bounded
            else:
                t.join(timeout=1.0)         # may sit in a database call; it is a daemon
        with self._lock:
            self._closed = True
            left = self._pending()
            if left:
                self._compact_locked()
            if self._lock_f is not None:
                self._lock_f.close()
                self._lock_f = None
        return done and not left

    # ---- spooler ---------------------------------------------------------------------
    def _spooler(self) -> None:
        delay = self.retry_min_s
        while True:
            with self._lock:
                while not self._tail and not self._abandon:
                    self._spool_cv.wait()
                if self._abandon:
                    return                      # close() compacts what is left
                chunk = list(self._tail)
                self._tail.clear()
                self._spool_busy = True
                self._spool_chunk = len(chunk)
                start = self._spool_written
            data = b"".join(r.line() for r in chunk)
            try:
                if self._spool_f is None:
                    self._spool_f = open(self.spool_path, "ab")
                self._spool_f.write(data)
                self._spool_f.flush()
                os.fsync(self._spool_f.fileno())
            except OSError as e:
                log.error("%s: cannot write the spool %s: %s", self.name, self.spool_path, e)
                self._truncate_spool(start)
                with self._lock:
                    self._tail.extendleft(reversed(chunk))
                    self._spool_busy = False
                    self._spool_chunk = 0
                    self._work.notify()         # the writer may take them from the tail
                    self._backoff.wait(delay)   # not woken by put(): no retry storm
                delay = min(delay * 2, self.retry_max_s)
                continue
            delay = self.retry_min_s
            with self._lock:
                self._spool_written = start + len(data)
                self._spool_unread += len(chunk)
                self._spool_busy = False
                self._spool_chunk = 0
                self.counters["spooled"] += len(chunk)
                self._work.notify()

    def _truncate_spool(self, size: int) -> None:
        try:
            if self._spool_f is not None:
                self._spool_f.truncate(size)
        except OSError:
            pass

    def _recover_spool(self) -> None:
        """At start: take over a spool left by an earlier run (or by close())."""
        path = self.spool_path
        if not os.path.exists(path):
            return
        size = os.path.getsize(path)
        cursor = 0
        try:
            with open(self._path("cursor")) as f:
                cursor = int(f.read().strip() or 0)
        except (OSError, ValueError):
            cursor = 0
        with open(path, "rb+") as f:
            # The last complete line; anything after it was torn by a crash mid-write.
            end, pos = 0, size
            while pos > 0 and not end:
                step = min(pos, 1 << 16)
                f.seek(pos - step)
                block = f.read(step)
                nl = block.rfind(b"\n")
                if nl >= 0:
                    end = pos - step + nl + 1
                pos -= step
            if end < size:
                log.warning("%s: %s ends with a torn record (%d bytes): dropped", self.name,
                            path, size - end)
                f.truncate(end)
            if not 0 <= cursor <= end:
                cursor = 0
            if cursor:
                f.seek(cursor - 1)
                if f.read(1) != b"\n":
                    cursor = 0              # replaying more is harmless: writes are idempotent
            f.seek(cursor)
            lines = 0
            while block := f.read(1 << 20):
                lines += block.count(b"\n")
        self._spool_written = end
        self._spool_read = self._spool_committed = cursor
        self._spool_unread = lines
        if lines:
            log.info("%s: %d records waiting in %s from an earlier run", self.name, lines, path)
        elif end:
            self._reset_spool_locked()

    def _read_spool(self, start: int, end: int, count: int) -> tuple[list[Record], int, int]:
        """Up to `count` records from [start, end); returns them, the new offset and the
        number of lines consumed (corrupt lines are set aside, not returned)."""
        out: list[Record] = []
        lines = 0
        pos = start
        with open(self.spool_path, "rb") as f:
            f.seek(start)
            while len(out) < count and pos < end:
                line = f.readline(end - pos)
                if not line:
                    break
                pos += len(line)
                lines += 1
                try:
                    rec = Record.from_line(line)
                except (ValueError, KeyError, TypeError) as e:
                    self._reject_raw(line, f"unreadable spool line: {e}")
                    continue
                rec.spool_end = pos
                out.append(rec)
        return out, pos, lines

    def _reset_spool_locked(self) -> None:
        """Everything spooled is in the database: start an empty spool."""
        if self._spool_f is not None:
            self._spool_f.close()
            self._spool_f = None
        for suffix in ("spool", "cursor"):
            try:
                os.unlink(self._path(suffix))
            except FileNotFoundError:
                pass
        self._spool_written = self._spool_read = self._spool_committed = 0
        self._spool_unread = 0

    def _save_cursor(self, offset: int) -> None:
        # Not fsynced: a stale cursor only replays records the database already has.
        tmp = self._path("cursor.tmp")
        with open(tmp, "w") as f:
            f.write(str(offset))
        os.replace(tmp, self._path("cursor"))

    def _compact_locked(self) -> None:
        """At close: memory, the unread spool and the tail become the new spool, in order."""
        if not self.spool_dir:
            n = self._pending()
            self.counters["lost"] += n
            log.error("%s: %d records could not be written and there is no spool directory: "
                      "they are lost", self.name, n)
            return
        os.makedirs(self.spool_dir, exist_ok=True)
        parts = [b"".join(r.line() for r in self._mem if not r.done)]
        if self._spool_unread:
            with open(self.spool_path, "rb") as f:
                f.seek(self._spool_read)
                parts.append(f.read(self._spool_written - self._spool_read))
        parts.append(b"".join(r.line() for r in self._tail))
        n = self._pending()
        tmp = self._path("spool.tmp")
        with open(tmp, "wb") as f:
            for p in parts:
                f.write(p)
            f.flush()
            os.fsync(f.fileno())
        if self._spool_f is not None:
            self._spool_f.close()
            self._spool_f = None
        os.replace(tmp, self.spool_path)
        try:
            os.unlink(self._path("cursor"))
        except FileNotFoundError:
            pass
        dfd = os.open(self.spool_dir, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        log.warning("%s: %d records not yet written are kept in %s for the next start",
                    self.name, n, self.spool_path)

    # ---- writer ----------------------------------------------------------------------
    def _writer(self) -> None:
        delay = self.retry_min_s
        while True:
            try:
                batch = self._next_batch()
                if batch is None:
                    return
                transient_error = self._write_batch(batch)
                if transient_error is None:
                    delay = self.retry_min_s
                    self._done(len(batch))
                    continue
                self._note_failure(transient_error, len(batch))
            except Exception:               # noqa: BLE001 - a bug or a disk fault: keep going
                log.exception("%s: writer fault; retrying", self.name)
            with self._lock:
                if self._abandon:
                    return
                self._backoff.wait(delay)   # only close() cuts it short
            delay = min(delay * 2, self.retry_max_s)

    def _next_batch(self) -> list[Record] | None:
        """Refill memory from the spool (or the tail) and take the head batch; None to stop."""
        room_for = max(self.queue_max, self.batch)
        while True:
            with self._lock:
                if self._abandon:
                    return None
                plan = None
                if self._spool_unread and len(self._mem) < room_for:
                    plan = (self._spool_read, self._spool_written,
                            min(room_for - len(self._mem), self.batch))
                elif (not self._spool_unread and not self._spool_busy and self._tail
                      and len(self._mem) < room_for):
                    while self._tail and len(self._mem) < room_for:
                        self._mem.append(self._tail.popleft())
                if plan is None:
                    if self._mem:
                        batch = [self._mem[i] for i in range(min(self.batch, len(self._mem)))]
                        return batch
                    self._idle.notify_all()
                    self._work.wait()
                    continue
            records, pos, lines = self._read_spool(*plan)
            with self._lock:
                if self._abandon:
                    return None
                self._mem.extend(records)
                self._mem_from_spool += len(records)
                self._spool_read = pos
                self._spool_unread -= lines

    def _write_batch(self, batch: list[Record]) -> BaseException | None:
        """Commit a batch; on a permanent failure, record by record. Returns the transient
        error that stopped it, or None when every record is written or set aside."""
        todo = [r for r in batch if not r.done]
        if not todo:
            return None
        try:
            self._write(todo)
            return None
        except Exception as e:              # noqa: BLE001 - classified just below
            if self._transient(e):
                return e
            first_error = e
        if len(todo) > 1:
            log.warning("%s: a batch of %d failed (%s): writing its records one by one",
                        self.name, len(todo), _short(first_error))
        for rec in todo:
            try:
                if len(todo) > 1:
                    self._write([rec])
                else:
                    raise first_error
            except Exception as e:          # noqa: BLE001
                if self._transient(e):
                    return e                # the rest is retried later
                self._reject(rec, e)
            rec.done = True
        return None

    def _done(self, n: int) -> None:
        with self._lock:
            if self._closed:
                return
            cursor = 0
            for _ in range(n):
                rec = self._mem.popleft()
                if rec.spool_end:
                    cursor = rec.spool_end
                    self._mem_from_spool -= 1
            self.counters["written"] += n
            if self.failing_since is not None:
                log.warning("%s: database back after %.1f s; %d records still waiting",
                            self.name, self._clock() - self.failing_since, self._pending())
                self.failing_since = None
            if cursor:
                self._spool_committed = cursor
            drained = (self._spool_written and not self._spool_unread and not self._spool_busy
                       and not self._mem_from_spool)
            try:
                if drained:
                    self._reset_spool_locked()
                elif cursor:
                    self._save_cursor(cursor)
            except OSError as e:            # the cursor only saves replaying: not fatal
                log.error("%s: spool bookkeeping in %s failed: %s", self.name, self.spool_dir, e)
            if not self._pending():
                self._idle.notify_all()

    def _note_failure(self, e: BaseException, n: int) -> None:
        now = self._clock()
        with self._lock:
            self.counters["retries"] += 1
            self.last_error = _short(e)
            first = self.failing_since is None
            if first:
                self.failing_since = now
                self._last_warning = now
            pending = self._pending()
        if first or now - self._last_warning >= 60.0:
            self._last_warning = now
            log.warning("%s: database unavailable (%s); %d records waiting, retrying",
                        self.name, _short(e), pending)

    def _reject(self, rec: Record, e: BaseException) -> None:
        with self._lock:
            self.counters["rejected"] += 1
        log.error("%s: %s record %s refused by the database, set aside: %s", self.name,
                  rec.table, rec.rid, _short(e))
        self._reject_raw(rec.line(), _short(e))

    def _reject_raw(self, line: bytes, why: str) -> None:
        if not self.spool_dir:
            log.error("%s: rejected record: %s", self.name, line[:2000])
            return
        try:
            with open(self.rejects_path, "ab") as f:
                f.write(json.dumps({"error": why, "record": line.decode("utf-8", "replace")},
                                   ensure_ascii=False).encode() + b"\n")
                f.flush()
                os.fsync(f.fileno())
        except OSError as err:
            log.error("%s: cannot write %s (%s); rejected record: %s", self.name,
                      self.rejects_path, err, line[:2000])


def _short(e: BaseException) -> str:
    text = str(getattr(e, "orig", None) or e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:300]


def read_rejects(path: str) -> Iterable[tuple[str, Record]]:
    """(error, record) for each record set aside in a rejects file."""
    with open(path, "rb") as f:
        for line in f:
            doc = json.loads(line)
            yield doc["error"], Record.from_line(doc["record"].encode())
