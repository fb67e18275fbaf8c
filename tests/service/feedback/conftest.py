"""Fixtures: a feedback database URL per backend (a SQLite file, or a fresh PostgreSQL schema).

PostgreSQL tests use the real server of tests/conftest.py's `postgres_server` (its URL from
$PLAUDIT_TEST_POSTGRES_URL); each gets its own schema, dropped afterwards.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from service.feedback.store import FeedbackStore
from tests.conftest import libpq_url

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture
def postgres_schema_url(postgres_server: str) -> Iterator[str]:
    """A URL whose connections work in a fresh, empty schema (search_path), dropped afterwards."""
    import psycopg

    schema = f"plaudit_test_{uuid.uuid4().hex}"
    admin = libpq_url(postgres_server)
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
