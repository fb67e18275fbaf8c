"""Every way a data file can be wrong is reported with its file, line and field."""

from __future__ import annotations

import codecs
import json
from pathlib import Path

import pytest

from training.data.errors import MAX_ERRORS, DataError, DataValidationError
from training.data.loaders import load_dataset, load_examples

PAIR = {"prompt": "p", "chosen": "good", "rejected": "bad"}


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def jsonl_lines(*rows: object) -> str:
    return "".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows)


def only_error(path: Path) -> DataError:
    with pytest.raises(DataValidationError) as info:
        load_examples(path)
    (error,) = info.value.errors
    return error


# (file name, content, line, field, text the message must contain)
JSONL_CASES = [
    ("not_json", jsonl_lines(PAIR, '{"prompt": "p",'), 2, None, "not valid JSON: "),
    ("not_object", jsonl_lines(PAIR, PAIR, [1, 2]), 3, None, "row is not a JSON object: got list"),
    (
        "missing_rejected",
        jsonl_lines({"prompt": "p", "chosen": "a"}),
        1,
        "rejected",
        "missing: a pairs row needs prompt, chosen, rejected",
    ),
    (
        "missing_response",
        jsonl_lines({"prompt": "p", "rating": 3}),
        1,
        "response",
        "missing: a ratings row needs prompt, response, rating",
    ),
    ("prompt_int", jsonl_lines({**PAIR, "prompt": 5}), 1, "prompt", "expected a non-empty string, got int"),
    ("chosen_null", jsonl_lines({**PAIR, "chosen": None}), 1, "chosen", "expected a non-empty string, got null"),
    # A null prompt is the prompt's error, not "no dialogue in 'chosen'" (as if an HH row).
    ("prompt_null", jsonl_lines({**PAIR, "prompt": None}), 1, "prompt", "expected a non-empty string, got null"),
    ("prompt_list", jsonl_lines({**PAIR, "prompt": ["p"]}), 1, "prompt", "expected a non-empty string, got list"),
    (
        "ratings_prompt_null",
        jsonl_lines({"prompt": None, "response": "r", "rating": 3}),
        1,
        "prompt",
        "expected a non-empty string, got null",
    ),
    (
        "likes_prompt_int",
        jsonl_lines({"prompt": 7, "response": "r", "liked": True}),
        1,
        "prompt",
        "expected a non-empty string, got int",
    ),
    (
        "likes_prompt_null",
        jsonl_lines({"prompt": None, "response": "r", "liked": False}),
        1,
        "prompt",
        "expected a non-empty string, got null",
    ),
    (
        "empty_chosen",
        jsonl_lines({**PAIR, "chosen": ""}),
        1,
        "chosen",
        "expected a non-empty string, got an empty string",
    ),
    (
        "blank_rejected",
        jsonl_lines({**PAIR, "rejected": "  \n"}),
        1,
        "rejected",
        "expected a non-empty string, got an empty string",
    ),
    (
        "empty_response",
        jsonl_lines({"prompt": "p", "response": "", "liked": True}),
        1,
        "response",
        "got an empty string",
    ),
    ("identical", jsonl_lines({**PAIR, "rejected": " good "}), 1, "rejected", "is identical to 'chosen'"),
    (
        "rating_str",
        jsonl_lines({"prompt": "p", "response": "r", "rating": "4"}),
        1,
        "rating",
        "expected a number, got str",
    ),
    (
        "rating_bool",
        jsonl_lines({"prompt": "p", "response": "r", "rating": True}),
        1,
        "rating",
        "expected a number, got bool",
    ),
    (
        "rating_nan",
        jsonl_lines('{"prompt": "p", "response": "r", "rating": NaN}'),
        1,
        "rating",
        "expected a finite number, got nan",
    ),
    (
        "margin_inf",
        jsonl_lines('{"prompt": "p", "chosen": "a", "rejected": "b", "margin": Infinity}'),
        1,
        "margin",
        "expected a finite number, got inf",
    ),
    ("margin_negative", jsonl_lines({**PAIR, "margin": -1}), 1, "margin", "expected a number >= 0, got -1"),
    (
        "liked_int",
        jsonl_lines({"prompt": "p", "response": "r", "liked": 1}),
        1,
        "liked",
        "expected true or false, got int",
    ),
    ("annotator_int", jsonl_lines({**PAIR, "annotator": 3}), 1, "annotator", "expected a non-empty string, got int"),
    (
        "hh_no_marker",
        jsonl_lines({"chosen": "\n\nHuman: hi\n\nAssistant: hello", "rejected": "Human: hi, no reply"}),
        1,
        "rejected",
        "expected a dialogue with an '\\n\\nAssistant:' turn, found none",
    ),
    (
        "hh_ends_with_human",
        jsonl_lines(
            {
                "chosen": "\n\nHuman: hi\n\nAssistant: a\n\nHuman: thanks",
                "rejected": "\n\nHuman: hi\n\nAssistant: b",
            }
        ),
        1,
        "chosen",
        "expected the dialogue to end with its '\\n\\nAssistant:' turn",
    ),
    (
        "duplicate_key",
        jsonl_lines('{"prompt": "p", "response": "r", "rating": "bad", "rating": 3}'),
        1,
        "rating",
        "appears twice in the row",
    ),
    (
        "liked_null",
        jsonl_lines({"prompt": "p", "response": "r", "liked": None}),
        1,
        "liked",
        "expected true or false, got null",
    ),
    (
        "lone_surrogate",
        jsonl_lines('{"prompt": "p\\ud800", "response": "r", "rating": 3}'),
        1,
        "prompt",
        "not valid Unicode: a lone surrogate (U+D800) at character 1",
    ),
    (
        "mixed",
        jsonl_lines({"prompt": "p", "response": "r", "rating": 3, "liked": True}),
        1,
        None,
        "row mixes the fields of ratings and likes",
    ),
]


@pytest.mark.parametrize(("name", "content", "line", "field", "fragment"), JSONL_CASES, ids=[c[0] for c in JSONL_CASES])
def test_jsonl_row_errors_name_file_line_and_field(
    tmp_path: Path, name: str, content: str, line: int, field: str | None, fragment: str
) -> None:
    path = write(tmp_path / f"{name}.jsonl", content)
    error = only_error(path)
    assert (error.path, error.line, error.field) == (str(path), line, field)
    assert fragment in error.message
    prefix = f"{path}:{line}: " + (f"field '{field}': " if field else "")
    assert str(error).startswith(prefix)


def test_rating_outside_the_scale_says_how_to_declare_it(tmp_path: Path) -> None:
    path = write(
        tmp_path / "r.jsonl",
        jsonl_lines({"prompt": "p", "response": "r", "rating": 3}, {"prompt": "p", "response": "r", "rating": 7}),
    )
    assert str(only_error(path)) == (
        f"{path}:2: field 'rating': rating 7 is outside the declared scale 1-5; "
        "pass --rating-scale MIN-MAX if the scale differs"
    )
    assert load_dataset([path], rating_scale=(0, 10)).ratings[1].rating == 7.0


def test_row_in_no_known_shape_lists_its_keys_and_the_shapes(tmp_path: Path) -> None:
    path = write(tmp_path / "x.jsonl", jsonl_lines({"a": 1, "b": 2}))
    assert str(only_error(path)) == (
        f"{path}:1: row matches no known shape (keys: a, b); expected one of: pairs {{prompt, chosen, rejected}}, "
        "HH pairs {chosen, rejected}, ratings {prompt, response, rating}, likes {prompt, response, liked}"
    )


CSV_CASES = [
    ("rating_text", "prompt,response,rating\np,r,4\np,r,four\n", 3, "rating", "expected a number, got 'four'"),
    ("rating_scale", "prompt,response,rating\np,r,0\n", 2, "rating", "rating 0 is outside the declared scale 1-5"),
    (
        "liked_maybe",
        "prompt,response,liked\np,r,maybe\n",
        2,
        "liked",
        "expected true/false, 1/0 or yes/no, got 'maybe'",
    ),
    (
        "empty_response",
        "prompt,response,liked\np,,true\n",
        2,
        "response",
        "expected a non-empty string, got an empty cell",
    ),
    ("empty_rating", "prompt,response,rating\np,r,\n", 2, "rating", "expected a number, got an empty cell"),
    (
        "empty_liked",
        "prompt,response,liked,annotator\np,r,,ana\n",
        2,
        "liked",
        "expected true/false, 1/0 or yes/no, got an empty cell",
    ),
    ("empty_prompt", "prompt,chosen,rejected\n,a,b\n", 2, "prompt", "expected a non-empty string, got an empty cell"),
    ("missing_column", "prompt,rating\np,3\n", 2, "response", "missing: a ratings row needs prompt, response, rating"),
    (
        "blank_chosen",
        "prompt,chosen,rejected\np, ,b\n",
        2,
        "chosen",
        "expected a non-empty string, got an empty string",
    ),
    ("identical", "prompt,chosen,rejected\np,same,same\n", 2, "rejected", "is identical to 'chosen'"),
    ("short_row", "prompt,response,rating\np,r,1\np,r\n", 3, None, "row has 2 values but the header names 3 columns"),
    ("no_shape", "question,answer\nq,a\n", 2, None, "row matches no known shape (keys: question, answer)"),
    # float() would take these: "1_0" as 10, "nan" as NaN.
    ("rating_underscore", "prompt,response,rating\np,r,1_0\n", 2, "rating", "expected a number, got '1_0'"),
    ("rating_nan", "prompt,response,rating\np,r,nan\n", 2, "rating", "expected a number, got 'nan'"),
    # An unclosed quote is refused where its row starts, not read as one cell to the end.
    (
        "unclosed_quote",
        'prompt,response,rating\np,r,3\np,"unclosed,3\np,r,4\np,r,9\n',
        3,
        None,
        "not valid CSV: unexpected end of data",
    ),
    (
        "repeated_column",
        "prompt,response,response\np,r,s\n",
        1,
        None,
        "the header names column 'response' more than once",
    ),
]


@pytest.mark.parametrize(("name", "content", "line", "field", "fragment"), CSV_CASES, ids=[c[0] for c in CSV_CASES])
def test_csv_row_errors_name_file_line_and_field(
    tmp_path: Path, name: str, content: str, line: int, field: str | None, fragment: str
) -> None:
    path = write(tmp_path / f"{name}.csv", content)
    error = only_error(path)
    assert (error.path, error.line, error.field) == (str(path), line, field)
    assert fragment in error.message


@pytest.mark.parametrize(
    ("name", "content"),
    [("zero.jsonl", ""), ("blank.jsonl", "\n  \n"), ("zero.csv", "")],
)
def test_empty_files(tmp_path: Path, name: str, content: str) -> None:
    path = write(tmp_path / name, content)
    assert str(only_error(path)) == f"{path}: file is empty: expected rows of pairs, ratings or likes"


def test_a_csv_with_only_its_header_says_so(tmp_path: Path) -> None:
    path = write(tmp_path / "header_only.csv", "prompt,response,rating\n")
    assert str(only_error(path)) == f"{path}: file has a header but no rows: expected rows of pairs, ratings or likes"


@pytest.mark.skipif(not Path("/proc/self/mem").exists(), reason="needs Linux's /proc/self/mem")
def test_a_file_that_cannot_be_read_is_an_error_not_a_crash(tmp_path: Path) -> None:
    unreadable = tmp_path / "mem.jsonl"
    unreadable.symlink_to("/proc/self/mem")  # exists, but reading it from offset 0 fails (EIO)
    error = only_error(unreadable)
    assert (error.path, error.line) == (str(unreadable), None)
    assert error.message.startswith("cannot be read: ")


def test_missing_file_directory_and_unsupported_type(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    assert str(only_error(missing)) == f"{missing}: file not found"
    assert str(only_error(tmp_path)) == f"{tmp_path}: is a directory; pass the data files inside it"
    text = write(tmp_path / "data.txt", "prompt\n")
    assert str(only_error(text)) == f"{text}: unsupported file type '.txt': expected one of .jsonl, .ndjson, .csv"


def test_text_that_is_not_utf8_points_at_its_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(json.dumps(PAIR).encode() + b"\n" + '{"prompt": "café"}\n'.encode("latin-1"))
    error = only_error(path)
    assert (error.line, error.field) == (2, None)
    assert "not valid UTF-8" in error.message


@pytest.mark.parametrize(
    ("content", "line"),
    [
        (b'{"prompt":"p","chosen":"a\xff","rejected":"b"}\n', 1),
        # The bad byte first on its line: an offset 3 bytes short would count the line above.
        (json.dumps(PAIR).encode() + b'\n\xff{"prompt":"p"}\n', 2),
    ],
    ids=["mid_line", "line_start"],
)
def test_text_that_is_not_utf8_after_a_byte_order_mark_names_the_bad_byte_and_its_line(
    tmp_path: Path, content: bytes, line: int
) -> None:
    path = tmp_path / "bom.jsonl"
    path.write_bytes(codecs.BOM_UTF8 + content)
    error = only_error(path)
    assert (error.line, error.field) == (line, None)
    assert error.message == "not valid UTF-8 text (byte 0xff); save the file as UTF-8"


def test_errors_are_collected_across_files_and_nothing_loads(tmp_path: Path) -> None:
    good = write(tmp_path / "good.jsonl", jsonl_lines(PAIR))
    bad_json = write(tmp_path / "a.jsonl", jsonl_lines(PAIR, {**PAIR, "prompt": ""}, "oops"))
    bad_csv = write(tmp_path / "b.csv", "prompt,response,liked\np,r,true\np,r,perhaps\n")
    with pytest.raises(DataValidationError) as info:
        load_dataset([good, bad_json, tmp_path / "missing.csv", bad_csv])
    where = [(e.path, e.line, e.field) for e in info.value.errors]
    assert where == [
        (str(bad_json), 2, "prompt"),
        (str(bad_json), 3, None),
        (str(tmp_path / "missing.csv"), None, None),
        (str(bad_csv), 3, "liked"),
    ]
    text = str(info.value)
    assert text.splitlines()[0] == "the data is invalid: 4 errors"
    assert text.splitlines()[1:] == [f"  {e}" for e in info.value.errors]
    assert not info.value.truncated


def test_loading_stops_after_max_errors(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.jsonl", jsonl_lines(*[{**PAIR, "chosen": 1}] * (MAX_ERRORS + 5)))
    with pytest.raises(DataValidationError) as info:
        load_dataset([path, tmp_path / "never_looked_at.jsonl"])
    assert len(info.value.errors) == MAX_ERRORS
    assert info.value.truncated
    assert [e.line for e in info.value.errors] == list(range(1, MAX_ERRORS + 1))
    assert str(info.value).splitlines()[0] == (
        f"the data is invalid: stopped after the first {MAX_ERRORS} errors; fix these and run again"
    )


def test_exactly_max_errors_is_not_reported_as_truncated(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.jsonl", jsonl_lines(*[{**PAIR, "chosen": 1}] * MAX_ERRORS, PAIR))
    with pytest.raises(DataValidationError) as info:
        load_dataset([path])
    assert len(info.value.errors) == MAX_ERRORS
    assert not info.value.truncated
    assert str(info.value).splitlines()[0] == f"the data is invalid: {MAX_ERRORS} errors"


def test_data_error_format() -> None:
    assert (
        str(DataError("f.csv", 3, "rating", "expected a number, got 'x'"))
        == "f.csv:3: field 'rating': expected a number, got 'x'"
    )
    assert str(DataError("f.csv", 3, None, "not valid CSV")) == "f.csv:3: not valid CSV"
    assert str(DataError("f.csv", None, None, "file not found")) == "f.csv: file not found"
