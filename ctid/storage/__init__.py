"""ctid's storage: SQLAlchemy models with Alembic migrations (SQLite by default, PostgreSQL
in production), a write queue that keeps the database off the call path, and CDRs."""
from .models import KINDS, RecordKind, StoreError, TableKind, metadata, register_kind
from .store import Store, is_transient

__all__ = ["KINDS", "RecordKind", "Store", "StoreError", "TableKind", "is_transient",
           "metadata", "register_kind"]
