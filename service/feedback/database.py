"""Database URLs and engines for the feedback store: SQLite files and PostgreSQL.

SQLite is set up for durability with concurrent writers: WAL journal, synchronous=FULL
(a commit survives power loss), a busy timeout (writers queue instead of failing) and
foreign keys on. SQLAlchemy, not the sqlite3 module, emits BEGIN, so reads run in real
transactions and writes take the write lock up front (BEGIN IMMEDIATE): a writer never
has to upgrade a read lock, which is what makes SQLite fail with "database is locked".
PostgreSQL goes through psycopg 3.
"""

from __future__ import annotations

import functools
import sqlite3
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

from service.feedback.errors import FeedbackStoreError
from service.feedback.hang_watch import HangWatch

URL_HELP = "expected sqlite:///path/to/feedback.db or postgresql://USER@HOST:PORT/DATABASE"
SQLITE_BUSY_TIMEOUT_S = 30.0
_WRITE_OPTION = "plaudit_write"
_SQLITE_DRIVERS = {"sqlite", "sqlite+pysqlite"}
_POSTGRES_DRIVERS = {"postgresql", "postgres", "postgresql+psycopg"}
POSTGRES_CONNECT_TIMEOUT_S = 5  # libpq counts whole seconds
POSTGRES_WRITE_LOCK = 0x706C61756469  # the advisory lock writers take ("plaudi"), one per database
POOL_TIMEOUT_S = 5.0
# An idle pooled connection is probed after this many seconds, then every interval, and
# declared dead after count unanswered probes: about 11 s in all.
POSTGRES_KEEPALIVE_IDLE_S = 5
POSTGRES_KEEPALIVE_INTERVAL_S = 2
POSTGRES_KEEPALIVE_COUNT = 3
# A writer waits for another's write lock as long on PostgreSQL as on SQLite, then fails (503).
POSTGRES_LOCK_TIMEOUT_S = SQLITE_BUSY_TIMEOUT_S
# The server ends a session of ours left idle inside a transaction this long (its process hung
# or stopped mid-write), which frees the write lock for every other server. Plaudit's own
# transactions never wait on a client: an export reads each batch in a transaction of its own.
POSTGRES_IDLE_IN_TRANSACTION_S = 60
# A connection held this long (from checkout, its liveness ping included, to its return) is
# presumed stuck on a server that stopped answering, and cut (service.feedback.hang_watch): a
# writer's lock wait (POSTGRES_LOCK_TIMEOUT_S) and then its write fit well inside it.
POSTGRES_HANG_LIMIT_S = POSTGRES_LOCK_TIMEOUT_S + 15
_HANG_WATCH = "plaudit_hang_watch"  # where a pooled connection's info keeps its engine's HangWatch
_FRESH = "plaudit_fresh"  # set on a connection just made, which needs no liveness ping


def parse_url(url: str) -> URL:
    """The SQLAlchemy URL for `url`, or FeedbackStoreError saying what is wrong with it."""
    if not isinstance(url, str) or not url.strip():
        raise FeedbackStoreError(f"feedback database URL is empty: {URL_HELP}")
    try:
        parsed = make_url(url.strip())
    except Exception:  # make_url raises ArgumentError or ValueError depending on the defect
        raise FeedbackStoreError(f"feedback database URL {url!r} is not a valid URL: {URL_HELP}") from None
    shown = parsed.render_as_string(hide_password=True)
    if parsed.drivername in _SQLITE_DRIVERS:
        database = parsed.database or ""
        if database in ("", ":memory:") or parsed.query.get("mode") == "memory":
            raise FeedbackStoreError(
                f"feedback database URL {shown!r} is an in-memory SQLite database, which keeps "
                f"nothing: give a file, {URL_HELP}"
            )
        return parsed.set(drivername="sqlite+pysqlite")
    if parsed.drivername in _POSTGRES_DRIVERS:
        if not parsed.database:
            raise FeedbackStoreError(f"feedback database URL {shown!r} names no database: {URL_HELP}")
        return parsed.set(drivername="postgresql+psycopg")
    raise FeedbackStoreError(
        f"feedback database URL {shown!r} uses '{parsed.drivername}', which is not supported: {URL_HELP} "
        "(PostgreSQL is reached through psycopg 3; other drivers are not)"
    )


def describe(url: URL) -> str:
    """The URL as it may be shown in messages and logs (no password)."""
    return url.render_as_string(hide_password=True)


def create_engine(
    url: URL,
    *,
    pool_size: int = 8,
    connect_timeout_s: int = POSTGRES_CONNECT_TIMEOUT_S,
    hang_limit_s: float = POSTGRES_HANG_LIMIT_S,
) -> sa.Engine:
    """An engine for a URL from `parse_url`; creates a SQLite file's parent folders.

    A PostgreSQL server that stops answering (a failover, a dropped route) fails a call in
    seconds rather than minutes: a connection attempt gives up after `connect_timeout_s`
    (libpq's connect_timeout; a URL's own `?connect_timeout=` wins, as for the keepalive and
    tcp_user_timeout settings below), and a caller waits at most POOL_TIMEOUT_S for a pooled
    connection. Those calls hold service threads meanwhile. A writer waits at most
    POSTGRES_LOCK_TIMEOUT_S for another's write lock, and a session stalled mid-transaction is
    ended by the server (POSTGRES_IDLE_IN_TRANSACTION_S), so one hung writer cannot hold every
    other one. A server process that hangs while its TCP stack still answers, which no network
    timeout sees, is caught by holding each connection at most `hang_limit_s` (HangWatch); a
    schema migration is exempt (`transaction(..., time_limited=False)`).
    """
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url, pool_size)
    # libpq settings a URL may override. A connection whose network goes (a failover, a
    # dropped route) is noticed in seconds too: keepalive probes find an idle one dead, and
    # tcp_user_timeout drops one whose sent query goes unacknowledged that long.
    defaults = {
        "connect_timeout": connect_timeout_s,
        "keepalives": 1,
        "keepalives_idle": POSTGRES_KEEPALIVE_IDLE_S,
        "keepalives_interval": POSTGRES_KEEPALIVE_INTERVAL_S,
        "keepalives_count": POSTGRES_KEEPALIVE_COUNT,
        "tcp_user_timeout": connect_timeout_s * 1000,  # milliseconds
    }
    connect_args = {key: value for key, value in defaults.items() if key not in url.query}
    engine = sa.create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=POOL_TIMEOUT_S,
        connect_args=connect_args,
    )
    _watch_postgres_connections(engine, HangWatch(hang_limit_s, describe(url)), ping_limit_s=connect_timeout_s)
    settings = _write_transaction_settings(url)
    if settings:
        # SET LOCAL in each write transaction rather than libpq's `options` at connect: a
        # pooler such as PgBouncer refuses that startup parameter unless told to ignore it.
        statement = "SELECT " + ", ".join(f"set_config('{name}', '{value}', true)" for name, value in settings.items())
        sa.event.listen(engine, "begin", functools.partial(_begin_postgres_transaction, statement))
    return engine


@contextmanager
def transaction(engine: sa.Engine, *, write: bool, time_limited: bool = True) -> Iterator[sa.Connection]:
    """A connection inside a transaction, committed when the block ends without error.

    `write=True` marks a transaction that will write, and writers go one at a time on both
    backends: SQLite starts it with BEGIN IMMEDIATE; PostgreSQL takes a transaction-level
    advisory lock first. So rows get their id and created_at in commit order, and an export
    paging by id, or `since` the last row seen, never passes a row that commits later
    (on PostgreSQL, two writers could otherwise commit in the other order than their ids).
    When the block returns, the commit has completed (durable).
    `time_limited=False` lets a PostgreSQL transaction run past the engine's hang limit (a
    schema migration: long, and not hung).
    """
    with engine.connect() as connection:
        if not time_limited:
            watch = connection.connection.info.get(_HANG_WATCH)
            if watch is not None:
                watch.release(connection.connection.dbapi_connection)
        if write:
            connection.execution_options(**{_WRITE_OPTION: True})
        with connection.begin():
            if write and connection.dialect.name == "postgresql":
                connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": POSTGRES_WRITE_LOCK})
            yield connection


def _write_transaction_settings(url: URL) -> dict[str, str]:
    """The server settings (milliseconds) each write transaction sets for itself, less any the
    URL's own `?options=-c NAME=VALUE` sets for the whole session: the URL's value wins."""
    options = url.query.get("options") or ""
    given = " ".join(options) if isinstance(options, tuple) else options
    ours = {
        "lock_timeout": str(int(POSTGRES_LOCK_TIMEOUT_S * 1000)),
        "idle_in_transaction_session_timeout": str(POSTGRES_IDLE_IN_TRANSACTION_S * 1000),
    }
    return {name: value for name, value in ours.items() if f"{name}=" not in given}


def _watch_postgres_connections(engine: sa.Engine, watch: HangWatch, ping_limit_s: float) -> None:
    """Hold each connection under `watch` from checkout to return, and ping a pooled one at
    checkout: SQLAlchemy's own pre-ping runs before any checkout hook, where a hung server
    would hold it unwatched. The ping gets `ping_limit_s`, as long as a connection attempt,
    since a live server answers SELECT 1 at once. A failed ping is a DisconnectionError, on
    which the pool tries a new connection (SQLAlchemy's recipe for custom pessimistic pings)."""

    def connected(_dbapi_connection: Any, record: Any) -> None:
        record.info[_FRESH] = True

    def checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        record.info[_HANG_WATCH] = watch
        if not record.info.pop(_FRESH, False):
            watch.hold(dbapi_connection, ping_limit_s)
            try:
                engine.dialect.do_ping(dbapi_connection)  # SELECT 1 in autocommit: no transaction left open
            except engine.dialect.loaded_dbapi.Error as exc:
                watch.release(dbapi_connection)
                raise sa.exc.DisconnectionError(f"pooled connection failed its ping: {exc}") from exc
        watch.hold(dbapi_connection)

    def returned(dbapi_connection: Any, *_: Any) -> None:
        if dbapi_connection is not None:
            watch.release(dbapi_connection)

    sa.event.listen(engine, "connect", connected)
    sa.event.listen(engine, "checkout", checked_out)
    # Released before a close as well as on return: a closed connection's descriptor number
    # may be reused by another socket at once, which the watch must never shut down.
    for event in ("checkin", "invalidate", "close", "detach"):
        sa.event.listen(engine, event, returned)


def _begin_postgres_transaction(statement: str, connection: sa.Connection) -> None:
    if connection.get_execution_options().get(_WRITE_OPTION):
        connection.exec_driver_sql(statement)


def _sqlite_engine(url: URL, pool_size: int) -> sa.Engine:
    path = Path(url.database or "")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FeedbackStoreError(
            f"cannot create the folder {path.parent} for the feedback database {describe(url)}: {exc.strerror}"
        ) from None
    engine = sa.create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False},
    )
    sa.event.listen(engine, "connect", _configure_sqlite_connection)
    sa.event.listen(engine, "begin", _begin_sqlite_transaction)
    return engine


def create_probe_engine(url: URL) -> sa.Engine:
    """An engine for looking at an existing SQLite file without changing a byte of it.

    `create_engine` is no use for that: each of its connections switches the file to WAL,
    which rewrites the file's header, and it would create a missing file. This one opens
    the file only if it exists, turns on query_only (SQLite refuses any write), and pools
    nothing, so the last close cleans up the -wal/-shm files a WAL-mode file gets while
    read. Readers use it to check that a file is a feedback database before opening it.
    """
    path = str(url.database or "")

    def connect() -> sqlite3.Connection:
        # mode=rw: fail, not create, if the file went missing since the caller looked.
        uri = "file:" + urllib.parse.quote(str(Path(path).absolute())) + "?mode=rw"
        connection = sqlite3.connect(uri, uri=True, timeout=SQLITE_BUSY_TIMEOUT_S, check_same_thread=False)
        connection.execute("PRAGMA query_only = ON")
        return connection

    return sa.create_engine("sqlite+pysqlite://", creator=connect, poolclass=sa.pool.NullPool)


def _configure_sqlite_connection(dbapi_connection: Any, _record: Any) -> None:
    # Hand BEGIN/COMMIT to SQLAlchemy (see the module docstring).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        mode = _switch_to_wal(cursor)
        if mode != "wal":
            raise FeedbackStoreError(
                f"SQLite refused WAL journal mode (got {mode!r}); put the feedback database on a "
                "local filesystem, not a network share"
            )
        cursor.execute("PRAGMA synchronous = FULL")
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def _switch_to_wal(cursor: Any) -> str:
    """Put the file in WAL mode and return the journal mode it ends up in.

    The mode is stored in the file, so only the first connection to a new file has to
    switch it. That switch needs an exclusive lock, and SQLite answers "database is
    locked" at once, without calling the busy handler, when connections to a brand-new
    file race for it. So a locked switch is retried until the busy timeout runs out.
    """
    (mode,) = cursor.execute("PRAGMA journal_mode").fetchone()
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    delay_s = 0.005
    while str(mode).lower() != "wal":
        try:
            (mode,) = cursor.execute("PRAGMA journal_mode = WAL").fetchone()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + delay_s > deadline:
                raise
            time.sleep(delay_s)
            delay_s = min(delay_s * 2, 0.2)
            continue
        break
    return str(mode).lower()


def _begin_sqlite_transaction(connection: sa.Connection) -> None:
    write = connection.get_execution_options().get(_WRITE_OPTION, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
