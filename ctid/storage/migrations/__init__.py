"""Alembic migrations of ctid's schema (a package so that it ships with ctid)."""
