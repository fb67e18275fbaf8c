"""Readers (`FeedbackStore.open(..., create=False)`: `plaudit feedback export|stats`, `plaudit
train --data URL`) never write into a database that does not hold Plaudit's schema."""

from __future__ import annotations

import argparse
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command

from service.feedback import database
from service.feedback.cli import register_commands
from service.feedback.errors import FeedbackStoreError
from service.feedback.migrations import alembic_config, current_revision, head_revision
from service.feedback.records import NewFeedback
from service.feedback.store import FeedbackStore
from tests.conftest import libpq_url


def foreign_sqlite(path: Path, *, wal: bool = False) -> Path:
    """Another application's SQLite file: a table of its own, one row."""
    connection = sqlite3.connect(path)
    try:
        if wal:
            connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
        connection.execute("INSERT INTO invoices (total) VALUES (12.5)")
        connection.commit()
    finally:
        connection.close()
    return path


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file in the folder and its bytes: what a refused command must leave as it was."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def run_feedback(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="plaudit")
    register_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


@pytest.mark.parametrize("wal", [False, True], ids=["rollback-journal", "wal"])
def test_a_reader_refuses_another_applications_sqlite_file_and_changes_nothing(tmp_path: Path, wal: bool) -> None:
    path = foreign_sqlite(tmp_path / "other.db", wal=wal)
    before = snapshot(tmp_path)
    with pytest.raises(FeedbackStoreError) as refused:
        FeedbackStore.open(f"sqlite:///{path}", create=False)
    assert str(refused.value) == (
        f"sqlite+pysqlite:///{path} is not a Plaudit feedback database (it has no feedback table): "
        "check --db or PLAUDIT_FEEDBACK_DB; `plaudit serve --feedback-db URL` creates one"
    )
    assert snapshot(tmp_path) == before  # same bytes, and no -wal/-shm left behind


def test_a_reader_refuses_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "feedback.db"
    path.touch()
    with pytest.raises(FeedbackStoreError, match=r"is not a Plaudit feedback database \(it has no tables\)"):
        FeedbackStore.open(f"sqlite:///{path}", create=False)
    assert snapshot(tmp_path) == {"feedback.db": b""}


def test_a_feedback_table_without_plaudits_revision_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE feedback (id INTEGER PRIMARY KEY, comment TEXT)")
    connection.close()
    before = snapshot(tmp_path)
    with pytest.raises(FeedbackStoreError, match="it has a feedback table, but no alembic_version table"):
        FeedbackStore.open(f"sqlite:///{path}", create=False)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("create", [False, True], ids=["reader", "server"])
def test_an_unknown_schema_revision_is_refused_by_readers_and_the_server(tmp_path: Path, create: bool) -> None:
    # Alembic would otherwise fail with "Can't locate revision", a traceback rather than a message.
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
        connection.execute("INSERT INTO alembic_version VALUES ('abc123')")
    connection.close()
    with pytest.raises(FeedbackStoreError, match=r"is at schema revision 'abc123', which is not one this Plaudit"):
        FeedbackStore.open(f"sqlite:///{path}", create=create)
    with sqlite3.connect(path) as connection:
        tables = {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    connection.close()
    assert tables == {"alembic_version"}


def test_a_reader_still_upgrades_a_plaudit_database_at_an_older_revision(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'feedback.db'}"
    with FeedbackStore.open(url) as store:
        store.add(NewFeedback(kind="like", prompt="p", response="r", liked=True))
        with database.transaction(store._engine, write=True) as connection:
            command.downgrade(alembic_config(connection), "-1")
            older = current_revision(connection)
    assert older is not None and older != head_revision()
    with FeedbackStore.open(url, create=False) as store:
        assert store.count() == 1
        with database.transaction(store._engine, write=False) as connection:
            assert current_revision(connection) == head_revision()


def test_the_server_still_creates_its_schema_beside_other_tables(tmp_path: Path) -> None:
    path = foreign_sqlite(tmp_path / "shared.db")
    with FeedbackStore.open(f"sqlite:///{path}") as store:  # create=True, as `plaudit serve` opens it
        assert store.count() == 0
    with sqlite3.connect(path) as connection:
        assert connection.execute("SELECT total FROM invoices").fetchall() == [(12.5,)]
    connection.close()


@pytest.mark.parametrize("command_argv", [["stats"], ["stats", "--json"], ["export", "--out", "{tmp}/out.jsonl"]])
def test_feedback_commands_refuse_a_foreign_database(tmp_path: Path, command_argv: list[str],
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "app"
    folder.mkdir()
    path = foreign_sqlite(folder / "other.db")
    before = snapshot(folder)
    argv = ["feedback", *(a.replace("{tmp}", str(tmp_path)) for a in command_argv), "--db", f"sqlite:///{path}"]
    assert run_feedback(argv) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"error: sqlite+pysqlite:///{path} is not a Plaudit feedback database (it has no feedback table): "
        "check --db or PLAUDIT_FEEDBACK_DB; `plaudit serve --feedback-db URL` creates one\n"
    )
    assert snapshot(folder) == before
    assert not (tmp_path / "out.jsonl").exists()


def test_train_refuses_a_foreign_database_naming_its_url(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from plaudit.cli import main

    folder = tmp_path / "app"
    folder.mkdir()
    path = foreign_sqlite(folder / "other.db")
    before = snapshot(folder)
    assert main(["train", "--data", f"sqlite:///{path}", "--model", "linear", "--store", str(tmp_path / "st")]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"error: cannot read feedback from the database: sqlite+pysqlite:///{path} is not a Plaudit feedback "
        "database (it has no feedback table): check the --data URL; `plaudit serve --feedback-db URL` creates one\n"
    )
    assert snapshot(folder) == before
    assert not (tmp_path / "st").exists()


def test_train_on_a_database_without_feedback_names_the_url_not_a_temp_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from plaudit.cli import main

    url = f"sqlite:///{tmp_path / 'feedback.db'}"
    FeedbackStore.open(url).close()  # a Plaudit database, as the server leaves it before any feedback
    assert main(["train", "--data", url, "--model", "linear", "--store", str(tmp_path / "st")]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"error: cannot read feedback from the database: sqlite+pysqlite:///{tmp_path / 'feedback.db'} holds no "
        "feedback yet: collect some through `plaudit serve` first, or drop this --data\n"
    )
    assert not (tmp_path / "st").exists()


@pytest.mark.postgres
def test_a_reader_refuses_a_postgres_schema_without_plaudits_tables(postgres_server: str,
                                                                    postgres_schema_url: str) -> None:
    import psycopg

    schema = sa.engine.make_url(postgres_schema_url).query["options"].removeprefix("-csearch_path=")
    with psycopg.connect(libpq_url(postgres_server), autocommit=True) as connection:
        connection.execute(f'CREATE TABLE "{schema}".invoices (id serial PRIMARY KEY, total real)')
    with pytest.raises(FeedbackStoreError, match=r"is not a Plaudit feedback database \(it has no feedback table\)"):
        FeedbackStore.open(postgres_schema_url, create=False)
    with psycopg.connect(libpq_url(postgres_server), autocommit=True) as connection:
        tables = connection.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,)
        ).fetchall()
    assert tables == [("invoices",)]
