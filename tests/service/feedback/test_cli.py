"""`plaudit feedback export|stats` on real databases."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from service.feedback.cli import DB_ENV, register_commands
from service.feedback.records import NewFeedback
from service.feedback.store import FeedbackStore


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="plaudit")
    register_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


def fill(url: str) -> None:
    with FeedbackStore.open(url) as store:
        store.add(NewFeedback(kind="like", prompt="p1", response="r", liked=True, user="ann", source="ui"))
        store.add(NewFeedback(kind="like", prompt="p1", response="r", liked=True, user="bob", source="ui"))
        store.add(NewFeedback(kind="pair", prompt="p2", chosen="a", rejected="b", user="ann", feedback_id="pair-1"))


def test_cli_export_writes_the_rows(db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fill(db_url)
    out = tmp_path / "out" / "feedback.jsonl"
    assert run(["feedback", "export", "--db", db_url, "--out", str(out)]) == 0
    assert capsys.readouterr().out == f"wrote 3 feedback rows to {out}\n"
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [(r["kind"], r["prompt"], r["annotator"]) for r in rows] == [
        ("like", "p1", "ann"), ("like", "p1", "bob"), ("pair", "p2", "ann")]
    assert rows[2] | {"created_at": None} == {
        "feedback_id": "pair-1", "kind": "pair", "prompt": "p2", "chosen": "a", "rejected": "b", "source": None,
        "annotator": "ann", "model_name": None, "model_version": None, "created_at": None}

    assert run(["feedback", "export", "--db", db_url, "--out", str(out), "--kind", "pair",
                "--since", "2000-01-01T00:00:00Z"]) == 0
    assert [json.loads(line)["feedback_id"] for line in out.read_text(encoding="utf-8").splitlines()] == ["pair-1"]
    assert run(["feedback", "export", "--db", db_url, "--out", str(out), "--since", "2999-01-01"]) == 0
    assert out.read_text(encoding="utf-8") == ""


def test_cli_stats_text_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'feedback.db'}"
    fill(url)
    monkeypatch.setenv(DB_ENV, url)  # the default --db
    assert run(["feedback", "stats"]) == 0
    text = capsys.readouterr().out
    assert f"feedback in sqlite+pysqlite:///{tmp_path / 'feedback.db'}: 3 rows" in text
    assert "by kind:    like 2, rating 0, pair 1" in text
    assert "like rate:  100.0% (2 of 2)" in text
    assert "like    1 / 1  100.0%" in text
    assert run(["feedback", "stats", "--db", url, "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["by_kind"] == {"like": 2, "rating": 0, "pair": 1}
    assert stats["agreement"]["like"]["share_all_agree"] == 1.0


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["feedback", "stats", "--db", "sqlite:///{tmp}/missing.db"], "error: no feedback database at "),
        (["feedback", "stats", "--db", "mysql://x@y/z"], "error: feedback database URL 'mysql://x@y/z' uses 'mysql'"),
        (["feedback", "export", "--db", "sqlite:///{tmp}/missing.db", "--out", "{tmp}/o.jsonl"], "error: no feedback"),
    ],
)
def test_cli_errors_are_one_line(argv: list[str], words: str, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert run([a.replace("{tmp}", str(tmp_path)) for a in argv]) == 1
    err = capsys.readouterr().err
    assert err.startswith(words) and err.count("\n") == 1
    assert not (tmp_path / "missing.db").exists()


def test_cli_refuses_a_bad_since(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        run(["feedback", "export", "--out", str(tmp_path / "o.jsonl"), "--since", "yesterday"])
    assert exited.value.code == 2
    assert "'yesterday' is not an ISO 8601 time" in capsys.readouterr().err


def test_plaudit_feedback_does_not_log_alembics_chatter(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # Alembic logs its dialect and DDL mode at INFO each time a database is opened: lines that
    # buried the command's own output.
    import logging

    from plaudit.cli import main

    url = f"sqlite:///{tmp_path / 'feedback.db'}"
    fill(url)
    alembic = logging.getLogger("alembic")
    monkeypatch.setattr(alembic, "level", alembic.level)  # main() quiets it for the process
    caplog.set_level(logging.INFO)
    assert main(["feedback", "stats", "--db", url]) == 0
    assert [r.getMessage() for r in caplog.records if r.name.startswith("alembic")] == []


def test_train_names_its_own_flag_for_a_missing_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # It used to say "check --db or PLAUDIT_FEEDBACK_DB", flags `plaudit train` does not take.
    from plaudit.cli import main

    url = f"sqlite:///{tmp_path / 'missing.db'}"
    assert main(["train", "--data", url, "--model", "linear", "--store", str(tmp_path / "store")]) != 0
    err = capsys.readouterr().err
    assert f"no feedback database at {tmp_path / 'missing.db'}" in err
    assert "check the --data URL" in err and "--db" not in err
    assert not (tmp_path / "missing.db").exists() and not (tmp_path / "store").exists()


def _same_as_database(tmp_path: Path, db: Path, how: str) -> str:
    """An --out that is the database file, or one of its companions, written some other way."""
    if how == "symlink":
        (tmp_path / "link.db").symlink_to(db)
        return str(tmp_path / "link.db")
    if how == "hard link":
        (tmp_path / "hard.db").hardlink_to(db)
        return str(tmp_path / "hard.db")
    if how == "dotted path":
        return str(tmp_path / "sub" / ".." / db.name)
    return f"{db}{how}"  # "", "-wal", "-shm", "-journal"


@pytest.mark.parametrize("how", ["", "-wal", "-shm", "-journal", "symlink", "hard link", "dotted path"])
def test_cli_export_refuses_to_write_over_its_own_database(how: str, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "fbcopy.db"
    url = f"sqlite:///{db}"
    fill(url)
    (tmp_path / "sub").mkdir()
    out = _same_as_database(tmp_path, db, how)
    before = db.read_bytes()
    assert run(["feedback", "export", "--db", url, "--out", out]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    what = f"the feedback database {db}" + (f"'s {how} file" if how.startswith("-") else " itself")
    assert captured.err == (
        f"error: --out {out} is {what}, which the export would overwrite: "
        f"give --out a file of its own, such as {tmp_path / 'fbcopy.jsonl'}\n"
    )
    assert db.read_bytes() == before
    with FeedbackStore.open(url, create=False) as store:
        assert store.count() == 3


def test_cli_export_says_when_a_folder_of_out_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'feedback.db'}"
    fill(url)
    storefile = tmp_path / "storefile"
    storefile.write_text("not a folder\n", encoding="utf-8")
    for out in (storefile / "x.jsonl", storefile / "deeper" / "x.jsonl"):
        assert run(["feedback", "export", "--db", url, "--out", str(out)]) == 2
        assert capsys.readouterr().err == (
            f"error: cannot write --out {out}: {storefile} is a file, not a folder; give --out a path in a folder\n"
        )
    assert storefile.read_text(encoding="utf-8") == "not a folder\n"
