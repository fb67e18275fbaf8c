"""A fresh database for each run, and reading its feedback rows back directly."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadtest.feedback_bench.config import BenchError


@dataclass(frozen=True, slots=True)
class FreshDatabase:
    url: str  # with any password: for the server and the checks only
    shown: str  # without the password: for messages
    backend: str  # sqlite | postgresql
    name: str  # the SQLite file, or the PostgreSQL database's name


@contextlib.contextmanager
def fresh_database(url: str, keep: bool = False) -> Iterator[FreshDatabase]:
    """An empty database the benchmark owns, dropped afterwards unless `keep`.

    SQLite: the URL's file, which must not exist (the benchmark never deletes a file it
    did not create). PostgreSQL: a new database plaudit_bench_<uuid> on the URL's server,
    created through the URL's own database (which must exist and allow CREATE DATABASE).
    """
    from service.feedback.database import describe, parse_url
    from service.feedback.errors import FeedbackStoreError

    try:
        parsed = parse_url(url)
    except FeedbackStoreError as exc:
        raise BenchError(str(exc)) from None
    if parsed.get_backend_name() == "sqlite":
        path = Path(parsed.database or "").absolute()
        if path.exists():
            raise BenchError(
                f"{path} already exists: the benchmark needs a database file of its own, which it "
                "deletes at the end; give --db sqlite:///PATH with a PATH that does not exist"
            )
        try:
            yield FreshDatabase(url, describe(parsed), "sqlite", str(path))
        finally:
            if not keep:
                for suffix in ("", "-wal", "-shm", "-journal"):
                    Path(f"{path}{suffix}").unlink(missing_ok=True)
        return

    import psycopg

    admin = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"plaudit_bench_{uuid.uuid4().hex}"
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=10) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BenchError(f"cannot create a database on {describe(parsed)}: {reason}") from None
    fresh = parsed.set(database=name)
    try:
        yield FreshDatabase(fresh.render_as_string(hide_password=False), describe(fresh), "postgresql", name)
    finally:
        if not keep:
            with psycopg.connect(admin, autocommit=True, connect_timeout=10) as connection:
                # FORCE: a killed server's connections may not all be gone yet.
                connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def postgres_database_exists(url: str, name: str) -> bool:
    """Whether the PostgreSQL server at `url` has a database called `name`."""
    import psycopg

    from service.feedback.database import parse_url

    admin = parse_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True, connect_timeout=10) as connection:
        found = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    return found is not None


def read_stored_rows(db_url: str) -> list[dict[str, Any]]:
    """Every row of the feedback table, by id, read directly with SQLAlchemy."""
    import sqlalchemy as sa

    from service.feedback import database
    from service.feedback.schema import feedback

    engine = database.create_engine(database.parse_url(db_url), pool_size=1)
    try:
        with database.transaction(engine, write=False) as connection:
            return [dict(row._mapping) for row in connection.execute(sa.select(feedback).order_by(feedback.c.id))]
    finally:
        engine.dispose()
