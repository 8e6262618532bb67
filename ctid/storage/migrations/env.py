"""Alembic environment for ctid's schema.

Store.migrate() hands over its own connection (config.attributes["connection"]), so the
migration runs with the store's SQLite pragmas or PostgreSQL timeouts, inside the
transaction that holds the migration lock. Run by hand, the URL comes from
`-x url=...`, then HOTLINE_DB_URL, then sqlalchemy.url in alembic.ini.
"""
import os

import sqlalchemy as sa
from alembic import context

from ctid.storage.models import metadata

config = context.config


def _url() -> str:
    return (context.get_x_argument(as_dictionary=True).get("url")
            or os.environ.get("HOTLINE_DB_URL")
            or config.get_main_option("sqlalchemy.url"))


def _configure(**kw) -> None:
    context.configure(target_metadata=metadata, compare_type=True, **kw)


def run_offline() -> None:
    """`alembic upgrade head --sql`: print the DDL instead of running it."""
    url = _url()
    _configure(url=url, literal_binds=True, render_as_batch=url.startswith("sqlite"))
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    conn = config.attributes.get("connection")
    if conn is not None:
        _configure(connection=conn, render_as_batch=conn.dialect.name == "sqlite")
        with context.begin_transaction():
            context.run_migrations()
        return
    if config.config_file_name and not config.attributes.get("quiet"):
        from logging.config import fileConfig
        fileConfig(config.config_file_name, disable_existing_loggers=False)
    engine = sa.create_engine(_url())
    try:
        with engine.begin() as conn:
            _configure(connection=conn, render_as_batch=conn.dialect.name == "sqlite")
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
