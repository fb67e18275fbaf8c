"""What `plaudit eval` and `plaudit data check` refuse, and what they accept besides files.

The real CLI (`plaudit.cli.main`, so the dispatcher too), the linear model trained on the
sample data (tests/conftest.py), and real feedback databases (SQLite files: the feedback_db
fixture of tests/training/conftest.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from plaudit.cli import main
from tests.conftest import SAMPLE_DIR

PAIRS = SAMPLE_DIR / "pairs.jsonl"
PLOTS_FIX = "pass a folder to write the PNG plots into (it is made if missing)"


def eval_argv(store: Path, *extra: str, data: str = str(PAIRS)) -> list[str]:
    return ["eval", "--store", str(store), "--model", "lin", "--data", data, *extra]


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err.removeprefix("error: ").rstrip("\n")


# -- --precision int8 on a version without an int8 file ---------------------------------------


def test_eval_refuses_int8_for_a_linear_version_which_has_no_int8_file(
    linear_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # It printed "model lin:1 (onnx, int8)" and exited 0, with the fp32 model's scores.
    capsys.readouterr()
    missing = tmp_path / "not-read.jsonl"  # refused before the data is read
    assert main(eval_argv(linear_store, "--precision", "int8", data=str(missing))) == 2
    assert one_line_error(capsys) == (
        "lin:1 has no int8 ONNX file (has: fp32); a linear model is exported in fp32 only: "
        "pick --precision fp32 (or auto)"
    )
    for precision in ("fp32", "auto"):
        assert main(eval_argv(linear_store, "--precision", precision, "--json")) == 0
        assert json.loads(capsys.readouterr().out)["model"]["precision"] == "fp32"


# -- --plots that cannot be a folder ------------------------------------------------------------


@pytest.mark.parametrize(
    ("plots", "says"),
    [
        ("a-file", "{tmp}/a-file is a file, not a folder: " + PLOTS_FIX),
        ("a-file/plots", "{tmp}/a-file/plots is under {tmp}/a-file, which is a file, not a folder: " + PLOTS_FIX),
        ("", "the path is empty: " + PLOTS_FIX),
    ],
    ids=["a-file", "under-a-file", "empty"],
)
def test_eval_refuses_plots_that_cannot_be_a_folder_before_evaluating(
    linear_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], plots: str, says: str
) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    capsys.readouterr()
    target = str(tmp_path / plots) if plots else ""
    # The data does not exist: had the evaluation started, it would say so instead.
    assert main(eval_argv(linear_store, "--plots", target, data=str(tmp_path / "not-read.jsonl"))) == 2
    assert one_line_error(capsys) == "--plots: " + says.format(tmp=tmp_path)
    assert (tmp_path / "a-file").read_text() == "not a folder"


def test_eval_makes_a_missing_plots_folder_and_its_parents(
    linear_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plots = tmp_path / "new" / "plots"
    assert main(eval_argv(linear_store, "--plots", str(plots), "--json")) == 0
    report = json.loads(capsys.readouterr().out)
    assert sorted(Path(p).name for p in report["plots"].values()) == ["reliability.png", "score_distributions.png"]
    assert all(Path(p).parent == plots and Path(p).stat().st_size > 0 for p in report["plots"].values())


# -- an empty path ------------------------------------------------------------------------------


def test_data_check_names_an_empty_path_as_empty_not_as_a_directory(capsys: pytest.CaptureFixture[str]) -> None:
    # Path("") is the working directory: it was reported as ": is a directory".
    assert main(["data", "check", "", str(PAIRS)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err
    assert err.splitlines()[1:] == ["  '': the path is empty; pass the path of a data file (.jsonl, .ndjson, .csv)"]


# -- feedback database URLs, read as `train --data` reads them ---------------------------------


def test_data_check_reads_a_feedback_database_url_and_names_it_in_the_report(
    feedback_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["data", "check", feedback_db, str(PAIRS), "--json"]) == 0
    out, err = capsys.readouterr()
    report = json.loads(out)  # the export's note went to stderr: stdout is the JSON alone
    assert report["files"] == [feedback_db.replace("sqlite://", "sqlite+pysqlite://"), str(PAIRS)]
    assert report["counts"]["pairs"] == 2 + sum(1 for line in PAIRS.open() if line.strip())
    assert (report["counts"]["likes"], report["counts"]["ratings"]) == (1, 1)
    assert err == f"exported 4 feedback rows from {report['files'][0]} for checking\n"

    assert main(["data", "check", feedback_db]) == 0
    assert capsys.readouterr().out.startswith(f"files: {report['files'][0]}\n")


def test_eval_reads_a_feedback_database_url(
    linear_store: Path, feedback_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main(eval_argv(linear_store, "--json", data=feedback_db)) == 0
    out, err = capsys.readouterr()
    report = json.loads(out)
    assert report["n_examples"] == 4 and report["pairs"]["n"] == 2
    assert report["ratings"]["n"] == 1 and report["likes"]["n"] == 1
    assert "exported 4 feedback rows from" in err and err.endswith(" for evaluation\n")


def test_train_with_json_keeps_the_export_note_off_stdout(
    feedback_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["train", "--model", "linear", "--data", feedback_db, "--data", str(PAIRS), "--store", str(tmp_path),
            "--name", "fb", "--no-progress", "--json"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["version"]  # stdout is the JSON report alone
    assert "exported 4 feedback rows from" in err and err.endswith(" for training\n")


@pytest.mark.parametrize("command", ["data-check", "eval"])
def test_a_feedback_database_that_does_not_exist_is_one_clear_line(
    linear_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    url = f"sqlite:///{tmp_path / 'nowhere' / 'fb.db'}"
    argv = ["data", "check", url] if command == "data-check" else eval_argv(linear_store, data=url)
    capsys.readouterr()
    assert main(argv) == 2
    err = one_line_error(capsys)
    assert err.startswith(f"cannot read feedback from the database: no feedback database at {tmp_path / 'nowhere' / 'fb.db'}")
    assert not (tmp_path / "nowhere").exists()  # not created by reading
