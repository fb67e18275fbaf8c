"""Loading each shape from JSONL and CSV, the HH dialogue form, and the Dataset API."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from training.data.examples import LikeExample, PairExample, RatingExample
from training.data.loaders import Dataset, load_dataset, load_examples


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def jsonl(path: Path, *rows: object) -> Path:
    return write(path, "".join(json.dumps(row) + "\n" for row in rows))


def test_pairs_from_jsonl_with_optional_margin_and_annotator(tmp_path: Path) -> None:
    path = jsonl(
        tmp_path / "pairs.jsonl",
        {"prompt": "Hi?", "chosen": "Hello! How can I help?", "rejected": "What."},
        {"prompt": "Hi?", "chosen": "Hello there.", "rejected": "Go away.", "margin": 1.5, "annotator": " ana "},
    )
    first, second = load_examples(path)
    assert first == PairExample("Hi?", "Hello! How can I help?", "What.", 0.0, None)
    assert second == PairExample("Hi?", "Hello there.", "Go away.", 1.5, "ana")
    assert (first.origin, second.origin) == (f"{path}:1", f"{path}:2")


def test_ratings_and_likes_from_jsonl(tmp_path: Path) -> None:
    path = jsonl(
        tmp_path / "mixed.ndjson",
        {"prompt": "p", "response": "r", "rating": 4},
        {"prompt": "p", "response": "r", "liked": False, "annotator": "ben"},
    )
    rating, like = load_examples(path, rating_scale=(0, 10))
    assert rating == RatingExample("p", "r", 4.0, 0.0, 10.0, None)
    assert like == LikeExample("p", "r", False, "ben")


def test_blank_lines_are_skipped_and_line_numbers_stay_physical(tmp_path: Path) -> None:
    row = json.dumps({"prompt": "p", "response": "r", "liked": True})
    path = write(tmp_path / "likes.jsonl", f"\n{row}\n   \n\n{row}\n\n")
    assert [e.origin for e in load_examples(path)] == [f"{path}:2", f"{path}:5"]


def test_extra_keys_are_ignored(tmp_path: Path) -> None:
    row = {
        "prompt": "p",
        "chosen": "a",
        "rejected": "b",
        "feedback_id": "f1",
        "source": "ui",
        "user": "u",
        "kind": "pair",
        "model_version": "m:1",
        "created_at": "2024-01-01",
        "metadata": {"x": 1},
        "id": 7,
    }
    (pair,) = load_examples(jsonl(tmp_path / "p.jsonl", row))
    assert pair == PairExample("p", "a", "b")


def test_unknown_fields_are_named_once_in_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(
        json.dumps({"prompt": "p", "chosen": "a", "rejected": "b", "margn": 2}) + "\n"
        + json.dumps({"prompt": "q", "chosen": "a", "rejected": "b", "margn": 1, "note": "x"}) + "\n"
    )
    dataset = load_dataset([path])
    assert [e.margin for e in dataset.pairs] == [0.0, 0.0]  # the typo's value is not read...
    (warning,) = dataset.warnings  # ...and that is said, once per file
    assert warning.startswith(f"{path}: ignored field(s) 'margn' (first on line 1), 'note' (first on line 2); ")


def test_a_field_of_another_shape_is_named_in_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    rows = [
        {"prompt": "p", "response": "r", "liked": True, "margin": 2},  # a margin does nothing on a like
        {"prompt": "p", "chosen": "a", "rejected": "b", "response": "c"},
        {"prompt": "q", "response": "r", "liked": False, "margin": 1},  # said once, at its first line
        {"prompt": "p", "response": "r", "rating": 4, "rating_min": 1, "rating_max": 5},  # read: no warning
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    dataset = load_dataset([path])
    assert len(dataset.examples) == 4  # loaded all the same
    assert dataset.warnings == [
        f"{path}: field 'margin' is ignored on likes rows (first on line 1); "
        "likes rows read prompt, response, liked, annotator",
        f"{path}: field 'response' is ignored on pairs rows (first on line 2); "
        "pairs rows read prompt, chosen, rejected, margin, annotator",
    ]


def test_csv_cells_longer_than_the_csv_modules_default_cap_load(tmp_path: Path) -> None:
    long_reply = "word " * 40_000  # 200,000 characters, over csv's default 131,072
    path = tmp_path / "long.csv"
    path.write_text(f"prompt,chosen,rejected\np,{long_reply},short\n")
    (pair,) = load_examples(path)
    assert pair.chosen == long_reply


def test_null_columns_of_other_shapes_do_not_make_a_row_ambiguous(tmp_path: Path) -> None:
    row = {"prompt": "p", "response": "r", "rating": None, "liked": True, "chosen": None, "annotator": None}
    assert load_examples(jsonl(tmp_path / "p.jsonl", row)) == [LikeExample("p", "r", True)]


def test_each_shape_from_csv(tmp_path: Path) -> None:
    pairs = write(tmp_path / "pairs.csv", "prompt,chosen,rejected,margin\nq,good,bad,\nq,fine,rude,2\n")
    ratings = write(tmp_path / "ratings.csv", 'prompt,response,rating,annotator\nq,"a, with comma",3.5,ana\nq,b,1,\n')
    likes = write(tmp_path / "likes.csv", "prompt,response,liked\nq,a,true\nq,b,NO\nq,c,1\nq,d,0\nq,e,Yes\nq,f,FALSE\n")
    assert load_examples(pairs) == [PairExample("q", "good", "bad", 0.0), PairExample("q", "fine", "rude", 2.0)]
    assert load_examples(ratings) == [
        RatingExample("q", "a, with comma", 3.5, annotator="ana"),
        RatingExample("q", "b", 1.0),
    ]
    assert [e.liked for e in load_dataset([likes]).likes] == [True, False, True, False, True, False]


def test_csv_origins_point_at_the_line_a_record_starts_on(tmp_path: Path) -> None:
    path = write(tmp_path / "r.csv", 'prompt,response,rating\nq,"two\nlines",2\n\nq,c,3\n')
    assert [e.origin for e in load_examples(path)] == [f"{path}:2", f"{path}:5"]


def test_csv_with_a_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeffprompt,response,liked\nq,a,true\n".encode())
    assert load_examples(path) == [LikeExample("q", "a", True)]


HH_CHOSEN = "\n\nHuman: How do I boil an egg?\n\nAssistant: Which kind?\n\nHuman: Soft.\n\nAssistant:  Six minutes. "
HH_REJECTED = "\n\nHuman: How do I boil an egg?\n\nAssistant: Which kind?\n\nHuman: Soft.\n\nAssistant: No idea."


def test_hh_dialogues_are_split_at_the_last_assistant_turn(tmp_path: Path) -> None:
    dataset = load_dataset([jsonl(tmp_path / "hh.jsonl", {"chosen": HH_CHOSEN, "rejected": HH_REJECTED})])
    (pair,) = dataset.examples
    assert pair == PairExample(
        prompt="Human: How do I boil an egg?\n\nAssistant: Which kind?\n\nHuman: Soft.",
        chosen="Six minutes.",
        rejected="No idea.",
    )
    assert dataset.warnings == []


def test_hh_rows_with_a_null_prompt_load_as_hh_pairs(tmp_path: Path) -> None:
    # What a writer that emits every column for every row gives HH rows; only a null prompt
    # beside plain responses is refused (as a pairs row, naming 'prompt').
    hh = {"chosen": HH_CHOSEN, "rejected": HH_REJECTED}
    dataset = load_dataset([jsonl(tmp_path / "hh.jsonl", {"prompt": None, **hh}, hh)])
    assert [(p.prompt, p.chosen, p.rejected) for p in dataset.pairs] == [
        ("Human: How do I boil an egg?\n\nAssistant: Which kind?\n\nHuman: Soft.", "Six minutes.", "No idea.")
    ] * 2
    assert dataset.warnings == []


def test_hh_rows_whose_dialogues_differ_before_the_last_turn_load_with_a_warning(tmp_path: Path) -> None:
    other = HH_REJECTED.replace("Soft.", "Hard.")
    dataset = load_dataset(
        [
            jsonl(
                tmp_path / "hh.jsonl",
                {"chosen": HH_CHOSEN, "rejected": HH_REJECTED},
                {"chosen": HH_CHOSEN, "rejected": other},
            )
        ]
    )
    assert [p.prompt for p in dataset.pairs] == [dataset.pairs[0].prompt] * 2
    assert dataset.pairs[1].prompt.endswith("Soft.")
    (warning,) = dataset.warnings
    assert warning.startswith(f"{tmp_path / 'hh.jsonl'}:2: ")
    assert "differ before their last" in warning


@pytest.mark.hh
def test_real_hh_file_loads_with_five_warnings(hh_pairs: Path) -> None:
    dataset = load_dataset([hh_pairs])
    assert dataset.counts() == {"pairs": 1631, "ratings": 0, "likes": 0}
    assert [w.split(": ", 1)[0] for w in dataset.warnings] == [
        f"{hh_pairs}:{line}" for line in (862, 1174, 1365, 1367, 1429)
    ]
    assert all(p.prompt.startswith("Human:") for p in dataset.pairs)
    assert dataset.sha256 == hashlib.sha256(hh_pairs.read_bytes()).hexdigest()


def test_dataset_splits_shapes_counts_and_hashes_files_in_order(tmp_path: Path) -> None:
    a = jsonl(
        tmp_path / "a.jsonl",
        {"prompt": "p", "chosen": "x", "rejected": "y"},
        {"prompt": "p", "response": "r", "liked": True},
    )
    b = write(tmp_path / "b.csv", "prompt,response,rating\np,r,5\np,s,1\n")
    dataset = load_dataset([a, str(b)])
    assert isinstance(dataset, Dataset)
    assert dataset.files == [str(a), str(b)]
    assert dataset.counts() == {"pairs": 1, "ratings": 2, "likes": 1}
    assert [type(e) for e in dataset.examples] == [PairExample, LikeExample, RatingExample, RatingExample]
    assert len(dataset.pairs) == 1 and len(dataset.ratings) == 2 and len(dataset.likes) == 1
    assert dataset.sha256 == hashlib.sha256(a.read_bytes() + b.read_bytes()).hexdigest()
    assert load_dataset([b, a]).sha256 != dataset.sha256
    with pytest.raises(AttributeError):
        dataset.sha256 = "changed"  # type: ignore[misc]


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "a.jsonl", {"prompt": "p", "response": "r", "rating": 3})
    with pytest.raises(ValueError, match="no data files given"):
        load_dataset([])
    with pytest.raises(ValueError, match="min < max"):
        load_dataset([path], rating_scale=(5, 1))
