"""Feedback database URLs and the SQLite connection settings that make commits durable."""

from __future__ import annotations

import socket
import time
import sqlite3
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from service.feedback import database
from service.feedback.errors import FeedbackStoreError
from service.feedback.store import FeedbackStore


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("", "URL is empty"),
        ("not a url", "is not a valid URL"),
        ("sqlite://", "in-memory SQLite"),
        ("sqlite:///:memory:", "in-memory SQLite"),
        ("mysql://root@localhost/db", "uses 'mysql', which is not supported"),
        ("postgresql+psycopg2://u@h/db", "not supported"),
        ("postgresql://u@h:5432", "names no database"),
    ],
)
def test_bad_urls_are_refused_with_the_fix(url: str, words: str) -> None:
    with pytest.raises(FeedbackStoreError) as caught:
        database.parse_url(url)
    assert words in str(caught.value)
    assert "sqlite:///path/to/feedback.db or postgresql://" in str(caught.value)


def test_password_never_shows_in_messages() -> None:
    with pytest.raises(FeedbackStoreError) as caught:
        database.parse_url("mysql://user:s3cret@host/db")
    assert "s3cret" not in str(caught.value)


@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "postgresql+psycopg"])
def test_postgres_urls_use_psycopg_3(scheme: str) -> None:
    assert database.parse_url(f"{scheme}://u@h:5432/db").drivername == "postgresql+psycopg"


def test_sqlite_file_is_created_with_durable_settings(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "feedback.db"
    with FeedbackStore.open(f"sqlite:///{path}") as store:
        assert path.is_file()
        with store._engine.connect() as connection:
            pragma = {name: connection.exec_driver_sql(f"PRAGMA {name}").scalar() for name in
                      ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")}
    assert pragma == {"journal_mode": "wal", "synchronous": 2, "busy_timeout": 30000, "foreign_keys": 1}


def test_sqlite_writes_take_the_write_lock_up_front(tmp_path: Path) -> None:
    engine = database.create_engine(database.parse_url(f"sqlite:///{tmp_path / 'f.db'}"))
    try:
        with database.transaction(engine, write=True) as writer:
            writer.exec_driver_sql("CREATE TABLE t (x)")
            # A second writer cannot even begin while the first holds the lock.
            other = sa.create_engine(f"sqlite:///{tmp_path / 'f.db'}", connect_args={"timeout": 0})
            raw = other.raw_connection()
            try:
                raw.driver_connection.isolation_level = None  # type: ignore[union-attr]
                with pytest.raises(sqlite3.OperationalError, match="database is locked"):
                    raw.cursor().execute("BEGIN IMMEDIATE")
            finally:
                raw.close()
                other.dispose()
    finally:
        engine.dispose()


def test_open_refuses_a_missing_file_when_asked_not_to_create(tmp_path: Path) -> None:
    with pytest.raises(FeedbackStoreError, match=r"no feedback database at .*missing\.db"):
        FeedbackStore.open(f"sqlite:///{tmp_path / 'missing.db'}", create=False)
    assert not (tmp_path / "missing.db").exists()


def test_unreachable_postgres_is_a_clear_error() -> None:
    shown = r"postgresql\+psycopg://u:\*\*\*@127\.0\.0\.1:1/db"
    with pytest.raises(FeedbackStoreError, match=rf"cannot open the feedback database {shown}"):
        FeedbackStore.open("postgresql://u:pw@127.0.0.1:1/db?connect_timeout=2")


def test_a_postgres_server_that_never_answers_fails_at_the_connect_timeout() -> None:
    """A TCP peer that accepts and then says nothing (a hung server, a half-dead failover):
    without a connect timeout libpq would wait for it for good, holding a service thread."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # the kernel completes the handshake; nobody ever reads or writes
        port = silent.getsockname()[1]
        engine = database.create_engine(database.parse_url(f"postgresql://u@127.0.0.1:{port}/db"), connect_timeout_s=1)
        try:
            with pytest.raises(sa.exc.OperationalError, match="timeout"):
                engine.connect()
        finally:
            engine.dispose()


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("these are my notes, not a database\n" * 200, encoding="utf-8")
    with pytest.raises(FeedbackStoreError, match=r"cannot open the feedback database .*notes\.db: file is not a database"):
        FeedbackStore.open(f"sqlite:///{path}")


@pytest.mark.postgres
def test_postgres_connections_notice_a_lost_network_in_seconds(postgres_server: str) -> None:
    """Keepalives and tcp_user_timeout are what libpq uses on the live connection; a URL's own
    value wins over ours."""
    url = database.parse_url(postgres_server).update_query_dict({"keepalives_idle": "7"})
    engine = database.create_engine(url, connect_timeout_s=4)
    try:
        with engine.connect() as connection:
            params = connection.connection.dbapi_connection.info.get_parameters()
    finally:
        engine.dispose()
    assert params["keepalives"] == "1"
    assert params["keepalives_idle"] == "7"
    assert (params["keepalives_interval"], params["keepalives_count"]) == ("2", "3")
    assert (params["connect_timeout"], params["tcp_user_timeout"]) == ("4", "4000")


def _write_lock_holder(url: str) -> sa.Connection:
    """Another writer (another server, say) in the middle of a write: it holds the write lock."""
    other = sa.create_engine(database.parse_url(url)).connect()
    other.begin()
    other.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": database.POSTGRES_WRITE_LOCK})
    return other


@pytest.mark.postgres
def test_postgres_write_transactions_bound_lock_waits_and_stalls(postgres_schema_url: str) -> None:
    """Each write transaction sets its own limits (SET LOCAL), beside the URL's own options (here
    a search_path); no `options` startup parameter is added, which poolers such as PgBouncer
    refuse."""
    engine = database.create_engine(database.parse_url(postgres_schema_url))
    show = "SELECT current_setting('lock_timeout'), current_setting('idle_in_transaction_session_timeout'), current_setting('search_path')"
    try:
        with database.transaction(engine, write=True) as connection:
            in_write = connection.execute(sa.text(show)).one()
            sent = connection.connection.dbapi_connection.info.get_parameters()
        with database.transaction(engine, write=False) as connection:
            in_read = connection.execute(sa.text(show)).one()
    finally:
        engine.dispose()
    assert in_write[0] == f"{int(database.POSTGRES_LOCK_TIMEOUT_S)}s"
    assert in_write[1] == f"{database.POSTGRES_IDLE_IN_TRANSACTION_S // 60}min"
    assert in_write[2].startswith("plaudit_test_") and in_read[2].startswith("plaudit_test_")
    assert in_read[:2] == ("0", "0")  # readers take no write lock: the server's defaults
    assert "lock_timeout" not in sent.get("options", "")


@pytest.mark.postgres
def test_a_postgres_writer_gives_up_on_a_held_write_lock(postgres_schema_url: str) -> None:
    # The URL shortens the wait so that the test need not sit out the default 30 s.
    url = database.parse_url(postgres_schema_url)
    url = url.update_query_dict({"options": f"{url.query['options']} -c lock_timeout=300"})
    holder = _write_lock_holder(postgres_schema_url)
    engine = database.create_engine(url)
    try:
        with pytest.raises(sa.exc.OperationalError, match="lock timeout"):
            with database.transaction(engine, write=True):
                pass
        holder.rollback()
        with database.transaction(engine, write=True):  # free again: the writer proceeds
            pass
    finally:
        holder.close()
        engine.dispose()


@pytest.mark.postgres
def test_a_writer_stalled_mid_transaction_loses_its_lock_to_the_server(postgres_schema_url: str) -> None:
    url = database.parse_url(postgres_schema_url)
    stalled_url = url.update_query_dict({"options": f"{url.query['options']} -c idle_in_transaction_session_timeout=200"})
    stalled = database.create_engine(stalled_url)
    engine = database.create_engine(url)
    stall_over = threading.Event()
    got_lock_during_stall: list[bool] = []

    def another_writer() -> None:
        with database.transaction(engine, write=True):
            got_lock_during_stall.append(not stall_over.is_set())

    try:
        with pytest.raises(sa.exc.DBAPIError, match="idle-in-transaction timeout"):
            with database.transaction(stalled, write=True) as connection:
                other = threading.Thread(target=another_writer)
                other.start()  # waits for the write lock
                time.sleep(1.5)  # a hung process: holds the write lock and sends nothing
                stall_over.set()
                connection.execute(sa.text("SELECT 1"))  # the server has ended the session
        other.join(timeout=30)
        assert got_lock_during_stall == [True]  # freed by the server, not by the stalled client
    finally:
        stall_over.set()
        stalled.dispose()
        engine.dispose()
