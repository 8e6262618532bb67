"""Shared fixtures.

Databases: `db_url` runs a test once on SQLite (a file in the test's directory) and once on
PostgreSQL (a schema of its own in the database HOTLINE_TEST_PG_URL names, dropped after
the test). `make test` starts a local server with scripts/pg-test-server.sh and exports the
URL. Without it the PostgreSQL half is skipped on a developer machine, and fails where CI
or HOTLINE_REQUIRE_PG is set: a CI run must not pass by skipping the production database.
"""
import contextlib
import os
import uuid

import pytest

PG_ENV = "HOTLINE_TEST_PG_URL"


def pg_required() -> bool:
    return bool(os.environ.get("CI") or os.environ.get("HOTLINE_REQUIRE_PG"))


@pytest.fixture(scope="session")
def pg_url():
    """The test PostgreSQL server's URL (postgresql+psycopg2://...), checked reachable."""
    url = os.environ.get(PG_ENV, "").strip()
    if not url:
        if pg_required():
            pytest.fail(f"{PG_ENV} is not set but CI/HOTLINE_REQUIRE_PG requires the PostgreSQL "
                        f"tests: export {PG_ENV}=$(scripts/pg-test-server.sh)", pytrace=False)
        pytest.skip(f"PostgreSQL not configured: export {PG_ENV}=$(scripts/pg-test-server.sh)")
    import sqlalchemy as sa
    engine = sa.create_engine(url, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as e:           # noqa: BLE001 - any failure here means: not usable
        pytest.fail(f"{PG_ENV}={url} is set but the server does not answer: {e}", pytrace=False)
    finally:
        engine.dispose()
    return url


@contextlib.contextmanager
def _pg_schema(base: str):
    """A schema of its own in the test database; the URL's search_path points there."""
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url
    schema = f"test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def pg_db_url(pg_url):
    """A fresh, empty PostgreSQL database (a schema of its own)."""
    with _pg_schema(pg_url) as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """A fresh, empty database: a SQLite file, or a PostgreSQL schema of its own."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/hotline.db"
        return
    with _pg_schema(request.getfixturevalue("pg_url")) as url:
        yield url


def need_tool(name: str) -> str:
    """The path of a command a test needs. Under `make test` and CI (which install it) its
    absence is a failure; on a developer machine without it the test is skipped, saying so."""
    import shutil
    path = shutil.which(name)
    if path is None:
        if pg_required():
            pytest.fail(f"{name} is not installed, but `make test` installs it", pytrace=False)
        pytest.skip(f"{name} is not installed")
    return path
