"""A feedback database given as --data is read (exported) only once the command's own checks
have passed, and `plaudit train` refuses one given twice, as it refuses a file given twice.

The real CLI (`plaudit.cli.main`, so the dispatcher), real SQLite feedback databases
(tests/training/conftest.py) and the linear model trained on the sample data
(tests/conftest.py). A refusal is compared with the same command given a data file instead of
the database: the same words, the same exit code, and no "exported N feedback rows" note.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from plaudit.cli import main
from tests.conftest import SAMPLE_DIR
from tests.training.conftest import make_feedback_db

PAIRS = SAMPLE_DIR / "pairs.jsonl"
EXPORT_NOTE = " feedback rows from "  # of "exported N feedback rows from URL for ..."
# Nothing listens on port 1: had the dispatcher tried to export it, the command would say
# "cannot read feedback from the database" instead of refusing its arguments.
UNREACHABLE_PG = "postgresql://plaudit:s3cret@127.0.0.1:1/feedback"


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in err, err
    return code, out, err


def train_argv(store: Path, *extra: str, data: tuple[str, ...]) -> list[str]:
    argv = ["train", "--store", str(store), "--name", "fb", "--no-progress", *extra]
    return [*argv, *(x for d in data for x in ("--data", d))]


# -- 1. the command's mistakes are refused before any database is exported --------------------


TRAIN_MISTAKES = {
    "transformer-flag-with-linear": (("--model", "linear", "--epochs", "3"), "error: --epochs applies to --model transformer only"),
    "bad-name": (("--model", "linear", "--name", "Bad"), "error: --name: invalid model name 'Bad'"),
    "bad-promote": (("--model", "linear", "--promote", "Bad Alias"), "error: --promote: invalid alias 'Bad Alias'"),
    "bad-val-fraction": (("--model", "linear", "--val-fraction", "1"), "error: --val-fraction must be between 0 and 1"),
    "resume-without-checkpoints": (("--resume",), "error: --resume continues from --checkpoint-dir DIR"),
    "store-is-a-file": (("--model", "linear", "--store", "{file}"), "error: --store {file}: is a file, not a folder"),
    "missing-backbone": (("--backbone", "{tmp}/no-backbone"), "error: --backbone {tmp}/no-backbone: not a Hugging Face model folder"),
}


@pytest.mark.parametrize("mistake", list(TRAIN_MISTAKES))
def test_train_refuses_its_arguments_before_exporting_the_database(
    feedback_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], mistake: str
) -> None:
    flags, says = TRAIN_MISTAKES[mistake]
    a_file = tmp_path / "a-file"
    a_file.write_text("not a store")
    flags = tuple(f.format(file=a_file, tmp=tmp_path) for f in flags)
    says = says.format(file=a_file, tmp=tmp_path)
    store = tmp_path / "store"
    given_a_file = run(train_argv(store, *flags, data=(str(PAIRS),)), capsys)
    for database in (feedback_db, UNREACHABLE_PG):
        code, out, err = run(train_argv(store, *flags, data=(database, str(PAIRS))), capsys)
        assert (code, out, err) == given_a_file  # as refused with a file: no export note, same words
        assert code == 2 and err.startswith(says) and err.count("\n") == 1, err
        assert EXPORT_NOTE not in out + err and "s3cret" not in err
    assert not store.exists() and a_file.read_text() == "not a store"


@pytest.mark.parametrize("mistake", ["no-such-model", "plots-is-a-file", "int8-of-a-linear-model"])
def test_eval_refuses_its_arguments_before_exporting_the_database(
    linear_store: Path, feedback_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], mistake: str
) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    model, extra, says = {
        "no-such-model": ("nosuch", (), "error: no model named 'nosuch'"),
        "plots-is-a-file": ("lin", ("--plots", str(a_file)), f"error: --plots: {a_file} is a file, not a folder"),
        "int8-of-a-linear-model": ("lin", ("--precision", "int8"), "error: lin:1 has no int8 ONNX file"),
    }[mistake]
    argv = ["eval", "--store", str(linear_store), "--model", model, *extra, "--data"]
    given_a_file = run([*argv, str(PAIRS)], capsys)
    for database in (feedback_db, UNREACHABLE_PG):
        code, out, err = run([*argv, database], capsys)
        assert (code, out, err) == given_a_file
        assert code == 2 and err.startswith(says) and err.count("\n") == 1, err
        assert EXPORT_NOTE not in out + err
    assert a_file.read_text() == "not a folder"


def test_train_and_eval_that_pass_their_checks_still_read_the_database(
    linear_store: Path, feedback_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(train_argv(tmp_path / "store", "--model", "linear", "--json", data=(feedback_db, str(PAIRS))), capsys)
    assert code == 0 and json.loads(out)["version"] == 1
    assert err.count(EXPORT_NOTE) == 1 and err.endswith(" for training\n")
    code, out, err = run(["eval", "--store", str(linear_store), "--model", "lin", "--json", "--data", feedback_db], capsys)
    assert code == 0 and json.loads(out)["n_examples"] == 4
    assert err.count(EXPORT_NOTE) == 1 and err.endswith(" for evaluation\n")


# -- 2. the same feedback database twice -------------------------------------------------------


def test_train_refuses_the_same_database_twice_before_exporting_it(
    feedback_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Exported twice, it reached training as feedback-0.jsonl and feedback-1.jsonl: two files,
    # which training.pipeline.check_distinct_data let through, so its rows were trained on twice.
    db = feedback_db.removeprefix("sqlite:///")
    monkeypatch.chdir(Path(db).parent.parent)
    store = tmp_path / "store"
    for second, shown in [
        (feedback_db, f"'{feedback_db}' twice"),
        (f"sqlite+pysqlite:///{db}", f"'{feedback_db}' and 'sqlite+pysqlite:///{db}'"),
        ("sqlite:///feedback/fb.db", f"'{feedback_db}' and 'sqlite:///feedback/fb.db'"),
        ("sqlite:///./feedback/../feedback/fb.db", f"'{feedback_db}' and 'sqlite:///./feedback/../feedback/fb.db'"),
    ]:
        code, out, err = run(train_argv(store, "--model", "linear", data=(feedback_db, str(PAIRS), second)), capsys)
        assert (code, out) == (2, "")
        assert err == (
            f"error: --data names the same feedback database {shown}: its rows would be trained on twice; "
            "give each database once\n"
        )
    assert not store.exists()


def test_the_same_database_twice_is_refused_without_connecting_or_showing_its_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(train_argv(tmp_path / "store", "--model", "linear", data=(UNREACHABLE_PG, UNREACHABLE_PG)), capsys)
    assert (code, out) == (2, "")
    assert err == (
        "error: --data names the same feedback database 'postgresql://plaudit:***@127.0.0.1:1/feedback' twice: "
        "its rows would be trained on twice; give each database once\n"
    )


def test_train_takes_two_different_databases(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = make_feedback_db(tmp_path / "a" / "fb.db")
    second = make_feedback_db(tmp_path / "b" / "fb.db")  # the same rows, another database
    code, out, err = run(train_argv(tmp_path / "store", "--model", "linear", "--json", data=(first, second, str(PAIRS))), capsys)
    assert code == 0, err
    assert json.loads(out)["version"] == 1 and err.count(EXPORT_NOTE) == 2


def test_eval_and_data_check_read_a_database_given_twice_once_and_count_it_twice(
    linear_store: Path, feedback_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # As a data file given twice: no training, so nothing to refuse; exported once, not twice.
    code, out, err = run(["eval", "--store", str(linear_store), "--model", "lin", "--json",
                          "--data", feedback_db, "--data", feedback_db], capsys)
    assert code == 0 and json.loads(out)["n_examples"] == 8
    assert err.count(EXPORT_NOTE) == 1
    code, out, err = run(["data", "check", feedback_db, feedback_db, "--json"], capsys)
    report = json.loads(out)
    assert code == 0 and report["counts"]["pairs"] == 4
    assert report["files"] == [feedback_db.replace("sqlite://", "sqlite+pysqlite://")] * 2
    assert err.count(EXPORT_NOTE) == 1
