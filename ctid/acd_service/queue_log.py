"""The ACD's queue log into the database: each record (ctid.acd.stats.LogRecord) as one row
of table queue_log, through the storage write queue, which never blocks the call path.

The table and its migration belong to ctid.storage (revision 0001 creates queue_log with
the record's columns: time, queue, call, agent, event, data). A record the store refuses
is logged and counted, never raised into the ACD.
"""
from __future__ import annotations

import logging

from ctid.acd import LogRecord

log = logging.getLogger("ctid.acd.queue_log")

TABLE = "queue_log"


class QueueLogWriter:
    def __init__(self, store):
        self.store = store
        self.written = 0
        self.refused = 0

    def __call__(self, rec: LogRecord) -> None:
        try:
            self.store.submit(TABLE, rec.row())
            self.written += 1
        except Exception as e:          # StoreError (a bad record, a closed queue)
            self.refused += 1
            if self.refused <= 10 or self.refused % 1000 == 0:
                log.error("queue log record %s for call %r not stored (%d so far): %s",
                          rec.event, rec.call, self.refused, e)
