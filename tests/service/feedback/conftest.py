"""Fixtures: a feedback database URL per backend (a SQLite file, or a fresh PostgreSQL schema).

PostgreSQL tests use the real server at $PLAUDIT_TEST_POSTGRES_URL (default
postgresql://postgres@127.0.0.1:5432/test); each gets its own schema, dropped afterwards,
and they skip with a clear message when no server answers.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from service.feedback.store import FeedbackStore

POSTGRES_URL_ENV = "PLAUDIT_TEST_POSTGRES_URL"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def postgres_url() -> str:
    return os.environ.get(POSTGRES_URL_ENV, DEFAULT_POSTGRES_URL)


def _libpq_url(url: str) -> str:
    """The URL as psycopg itself takes it (no SQLAlchemy driver suffix)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The server's URL, or a skip when nobody answers there."""
    import psycopg

    url = postgres_url()
    try:
        with psycopg.connect(_libpq_url(url), connect_timeout=3) as connection:
            connection.execute("SELECT 1")
    except psycopg.Error as exc:
        shown = make_url(url).render_as_string(hide_password=True)
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        pytest.skip(f"PostgreSQL not reachable at {shown}: skipping ({reason}; set {POSTGRES_URL_ENV})")
    return url


@pytest.fixture
def postgres_schema_url(postgres_server: str) -> Iterator[str]:
    """A URL whose connections work in a fresh, empty schema (search_path), dropped afterwards."""
    import psycopg

    schema = f"plaudit_test_{uuid.uuid4().hex}"
    admin = _libpq_url(postgres_server)
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE SCHEMA "{schema}"')
    try:
        url = make_url(postgres_server).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL for an empty feedback database, once per backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'data' / 'feedback.db'}"
    return str(request.getfixturevalue("postgres_schema_url"))


@pytest.fixture
def store(db_url: str) -> Iterator[FeedbackStore]:
    opened = FeedbackStore.open(db_url)
    try:
        yield opened
    finally:
        opened.close()
