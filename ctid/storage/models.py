"""The tables ctid writes, and the record kinds the write queue accepts.

Every table written through the queue has a `rid` (the record's uuid, given when it was
submitted) with a unique constraint: the writer inserts with ON CONFLICT DO NOTHING on it,
so a record written twice (a retry after a commit whose acknowledgement was lost, a spool
replayed after a crash) is stored once. `id` is an ascending surrogate key: rows sort in
the order they were written.

Adding a table (the IVR's statistics, say): a class here, a record kind registered with
`register_kind` (a `TableKind` does for flat rows), and a new revision under migrations/.
Times are stored as SQL timestamps (timestamptz on PostgreSQL, UTC text on SQLite) and
handed to and from Python as epoch seconds, the call model's clock.
"""
from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any, Iterable

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class StoreError(ValueError):
    """A record or a request the store cannot take; the text says what is wrong."""


class Timestamp(sa.types.TypeDecorator):
    """Epoch seconds in Python, a timestamp with time zone in SQL."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if isinstance(value, dt.datetime):
            if value.tzinfo is None:
                raise StoreError(f"naive datetime {value}: give a time zone or epoch seconds")
            when = value.astimezone(dt.timezone.utc)
        else:
            when = dt.datetime.fromtimestamp(float(value), dt.timezone.utc)
        return when.replace(tzinfo=None) if dialect.name == "sqlite" else when

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value.timestamp()


# JSON documents: JSONB on PostgreSQL (indexable), JSON text elsewhere.
Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
# SQLite only autoincrements an INTEGER PRIMARY KEY.
Serial = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Rid = sa.String(36)


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING)


class Cdr(Base):
    """One row per call."""
    __tablename__ = "cdr"
    __table_args__ = {"info": {"conflict_key": ("rid",)}}

    id: Mapped[int] = mapped_column(Serial, primary_key=True, autoincrement=True)
    rid: Mapped[str] = mapped_column(Rid, unique=True)
    call_id: Mapped[str] = mapped_column(sa.Text, index=True)
    started: Mapped[float] = mapped_column(Timestamp, index=True)
    ended: Mapped[float | None] = mapped_column(Timestamp, nullable=True)
    calling: Mapped[str] = mapped_column(sa.Text, default="")
    called: Mapped[str] = mapped_column(sa.Text, default="")
    outcome: Mapped[str] = mapped_column(sa.Text, default="")
    data: Mapped[dict] = mapped_column(Json, default=dict)
    transfers: Mapped[list] = mapped_column(Json, default=list)


class CdrLeg(Base):
    """One row per party of a call: who, when, how long, how it ended."""
    __tablename__ = "cdr_leg"
    __table_args__ = (sa.Index(None, "device", "started"),
                      {"info": {"conflict_key": ("cdr_rid", "seq")}})

    cdr_rid: Mapped[str] = mapped_column(Rid, sa.ForeignKey("cdr.rid", ondelete="CASCADE"),
                                         primary_key=True)
    seq: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=False)
    call_id: Mapped[str] = mapped_column(sa.Text, index=True)
    device: Mapped[str] = mapped_column(sa.Text)
    role: Mapped[str] = mapped_column(sa.Text)
    started: Mapped[float] = mapped_column(Timestamp)
    answered: Mapped[float | None] = mapped_column(Timestamp, nullable=True)
    ended: Mapped[float | None] = mapped_column(Timestamp, nullable=True)
    cause: Mapped[int] = mapped_column(sa.Integer, default=0)


class Audit(Base):
    """CTI security: who asked for what, and whether it was allowed."""
    __tablename__ = "audit"
    __table_args__ = {"info": {"conflict_key": ("rid",)}}

    id: Mapped[int] = mapped_column(Serial, primary_key=True, autoincrement=True)
    rid: Mapped[str] = mapped_column(Rid, unique=True)
    time: Mapped[float] = mapped_column(Timestamp, index=True)
    client: Mapped[str] = mapped_column(sa.Text, default="")
    role: Mapped[str] = mapped_column(sa.Text, default="")
    request: Mapped[str] = mapped_column(sa.Text)
    allowed: Mapped[bool] = mapped_column(sa.Boolean)
    reason: Mapped[str] = mapped_column(sa.Text, default="")


class QueueLog(Base):
    """The ACD's queue log (ctid.acd.stats.LogRecord.row()): one row per transition."""
    __tablename__ = "queue_log"
    __table_args__ = (sa.Index(None, "queue", "time"), {"info": {"conflict_key": ("rid",)}})

    id: Mapped[int] = mapped_column(Serial, primary_key=True, autoincrement=True)
    rid: Mapped[str] = mapped_column(Rid, unique=True)
    time: Mapped[float] = mapped_column(Timestamp, index=True)
    queue: Mapped[str] = mapped_column(sa.Text, default="")
    call: Mapped[str] = mapped_column(sa.Text, default="")
    agent: Mapped[str] = mapped_column(sa.Text, default="")
    event: Mapped[str] = mapped_column(sa.Text)
    data: Mapped[dict] = mapped_column(Json, default=dict)


class IvrNodeStats(Base):
    """The IVR's per-node figures (ivr.stats.IvrStats.drain): one row per flow and node for
    each period in which something happened there."""
    __tablename__ = "ivr_node_stats"
    __table_args__ = (sa.Index(None, "flow", "node", "time"), {"info": {"conflict_key": ("rid",)}})

    id: Mapped[int] = mapped_column(Serial, primary_key=True, autoincrement=True)
    rid: Mapped[str] = mapped_column(Rid, unique=True)
    time: Mapped[float] = mapped_column(Timestamp, index=True)
    flow: Mapped[str] = mapped_column(sa.Text)
    node: Mapped[str] = mapped_column(sa.Text)
    entries: Mapped[int] = mapped_column(sa.Integer, default=0)
    exits: Mapped[dict] = mapped_column(Json, default=dict)        # exit name -> count
    time_s: Mapped[float] = mapped_column(sa.Float, default=0.0)   # time callers spent there
    abandons: Mapped[int] = mapped_column(sa.Integer, default=0)
    events: Mapped[dict] = mapped_column(Json, default=dict)       # invalid, timeout... -> count


metadata = Base.metadata


# ---- record kinds: what submit(table, row) accepts and the rows it becomes --------------
class RecordKind:
    """Checks a submitted row (in the caller's thread, so a bad one is refused at once
    and never blocks the writer) and turns a stored record into table rows."""

    name: str = ""

    def normalize(self, row: dict) -> dict:
        raise NotImplementedError

    def rows(self, rid: str, row: dict) -> list[tuple[sa.Table, list[dict]]]:
        raise NotImplementedError


KINDS: dict[str, RecordKind] = {}


def register_kind(kind: RecordKind) -> RecordKind:
    KINDS[kind.name] = kind
    return kind


def _is_time(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_json(what: str, value: Any) -> None:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise StoreError(f"{what}: not storable as JSON: {e}") from None


def check_value(what: str, column: sa.Column, value: Any) -> Any:
    """One value against its column's type; returns it (ints widened to float for times)."""
    if value is None:
        if column.nullable:
            return None
        raise StoreError(f"{what}: must not be empty")
    t = column.type
    if isinstance(t, Timestamp):
        if not _is_time(value):
            raise StoreError(f"{what}: expected epoch seconds, got {value!r}")
        return float(value)
    if isinstance(t, sa.Boolean):
        if not isinstance(value, bool):
            raise StoreError(f"{what}: expected true/false, got {value!r}")
        return value
    if isinstance(t, sa.Integer):
        if not isinstance(value, int) or isinstance(value, bool):
            raise StoreError(f"{what}: expected an integer, got {value!r}")
        return value
    if isinstance(t, (sa.Text, sa.String)):
        if not isinstance(value, str):
            raise StoreError(f"{what}: expected text, got {type(value).__name__} {value!r}")
        return value
    check_json(what, value)
    return value


class TableKind(RecordKind):
    """A flat row: keys are the table's columns (less id and rid)."""

    def __init__(self, table: sa.Table, name: str | None = None,
                 skip: Iterable[str] = ("id", "rid")):
        self.table = table
        self.name = name or table.name
        self.columns = {c.name: c for c in table.columns if c.name not in skip}

    def normalize(self, row: dict) -> dict:
        if not isinstance(row, dict):
            raise StoreError(f"{self.name}: a record is a dict, got {type(row).__name__}")
        unknown = sorted(set(row) - set(self.columns))
        if unknown:
            raise StoreError(f"{self.name}: unknown field(s) {', '.join(unknown)} "
                             f"(known: {', '.join(self.columns)})")
        out = {}
        for name, col in self.columns.items():
            if name in row:
                out[name] = check_value(f"{self.name}.{name}", col, row[name])
            elif col.default is not None:
                d = col.default
                out[name] = d.arg(None) if d.is_callable else d.arg
            elif col.nullable:
                out[name] = None
            else:
                raise StoreError(f"{self.name}: missing field {name!r}")
        return out

    def rows(self, rid: str, row: dict) -> list[tuple[sa.Table, list[dict]]]:
        return [(self.table, [{"rid": rid, **row}])]


register_kind(TableKind(Audit.__table__))
register_kind(TableKind(QueueLog.__table__))
register_kind(TableKind(IvrNodeStats.__table__))
