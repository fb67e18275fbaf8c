from __future__ import annotations

import json
from pathlib import Path

import pytest

from loadtest.data import (
    DataError,
    ItemCycle,
    load_items,
    synthetic_items,
)
from model_store.scoring import TextPair

HH_FILE = Path("/work/shared/data/hh-harmless/pairs.jsonl")


def write_jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_pairs_give_one_item_per_response(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "pairs.jsonl", [{"prompt": "p", "chosen": "good", "rejected": "bad"}])
    assert load_items(path) == [TextPair("p", "good"), TextPair("p", "bad")]


def test_likes_and_ratings_give_one_item(tmp_path: Path) -> None:
    rows = [
        {"prompt": "p1", "response": "r1", "liked": True},
        {"prompt": "p2", "response": "r2", "rating": 4},
    ]
    assert load_items(write_jsonl(tmp_path / "f.jsonl", rows)) == [
        TextPair("p1", "r1"),
        TextPair("p2", "r2"),
    ]


def test_hh_rows_are_split_as_training_splits_them(tmp_path: Path) -> None:
    # The load generator sends what training and evaluation saw: the same cut, and the
    # same refusal of a dialogue that does not end on the judged assistant turn.
    from training.data.loaders import load_examples

    good = {
        "chosen": "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how are you?\n\nAssistant: fine, thanks",
        "rejected": "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how are you?\n\nAssistant:  go away ",
    }
    path = write_jsonl(tmp_path / "hh.jsonl", [good])
    (example,) = load_examples(path)
    assert load_items(path) == [
        TextPair(example.prompt, example.chosen),
        TextPair(example.prompt, example.rejected),
    ]
    assert load_items(path)[1] == TextPair("Human: hi\n\nAssistant: hello\n\nHuman: how are you?", "go away")
    trailing = dict(good, rejected=good["rejected"] + "\n\nHuman: and?")
    with pytest.raises(DataError, match=r"hh\.jsonl:2: field 'rejected': .*'\\n\\nHuman:' turn follows it"):
        load_items(write_jsonl(tmp_path / "hh.jsonl", [good, trailing]))


def test_hh_rows_give_chosen_and_rejected_items(tmp_path: Path) -> None:
    row = {
        "chosen": "\n\nHuman: q\n\nAssistant: yes",
        "rejected": "\n\nHuman: q\n\nAssistant: no",
    }
    assert load_items(write_jsonl(tmp_path / "hh.jsonl", [row])) == [
        TextPair("Human: q", "yes"),
        TextPair("Human: q", "no"),
    ]


def test_hh_row_without_assistant_turn_names_file_line_and_field(tmp_path: Path) -> None:
    rows = [
        {"chosen": "\n\nHuman: q\n\nAssistant: a", "rejected": "\n\nHuman: q\n\nAssistant: b"},
        {"chosen": "\n\nHuman: q\n\nAssistant: a", "rejected": "no turns here"},
    ]
    path = write_jsonl(tmp_path / "hh.jsonl", rows)
    with pytest.raises(DataError, match=r"hh\.jsonl:2: field 'rejected'"):
        load_items(path)


def test_blank_lines_are_skipped_and_limit_cuts(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    path.write_text(
        '{"prompt": "a", "response": "1"}\n\n{"prompt": "b", "chosen": "2", "rejected": "3"}\n'
    )
    assert load_items(path) == [TextPair("a", "1"), TextPair("b", "2"), TextPair("b", "3")]
    assert load_items(path, limit=2) == [TextPair("a", "1"), TextPair("b", "2")]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", r"f\.jsonl:1: invalid JSON"),
        ('["a", "b"]', r"f\.jsonl:1: expected a JSON object, got list"),
        ('{"text": "x"}', r"f\.jsonl:1: unrecognised row with fields \['text'\]"),
        ('{"prompt": 3, "response": "x"}', r"f\.jsonl:1: field 'prompt' must be a string"),
        # Fields of one shape only: that shape, with the missing field named.
        ('{"chosen": "a"}', r"f\.jsonl:1: field 'rejected' is missing; a pairs row needs prompt, chosen, rejected"),
        ('{"prompt": "p", "rejected": "b"}', r"f\.jsonl:1: field 'chosen' is missing; a pairs row needs"),
        ('{"prompt": "p", "rating": 4}', r"f\.jsonl:1: field 'response' is missing; a likes or ratings row needs"),
        ('{"liked": true}', r"f\.jsonl:1: fields 'prompt', 'response' are missing; a likes or ratings row needs"),
        # Fields of no shape, or of two: still unrecognised.
        ('{"prompt": "p"}', r"f\.jsonl:1: unrecognised row with fields \['prompt'\]"),
        ('{"chosen": "a", "response": "r"}', r"f\.jsonl:1: unrecognised row with fields \['chosen', 'response'\]"),
    ],
)
def test_bad_rows_are_reported_with_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "f.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(DataError, match=message):
        load_items(path)


def test_a_pair_without_rejected_names_the_missing_field(tmp_path: Path) -> None:
    rows = [{"prompt": "p", "chosen": "a", "rejected": "b"}, {"prompt": "p", "chosen": "a"}]
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(DataError) as info:
        load_items(path)
    assert str(info.value) == (
        f"{path}:2: field 'rejected' is missing; "
        "a pairs row needs prompt, chosen, rejected (HH dialogues: chosen, rejected)"
    )


def test_missing_and_empty_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such data file"):
        load_items(tmp_path / "absent.jsonl")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(DataError, match="no items"):
        load_items(empty)


def test_synthetic_items_are_deterministic_and_varied() -> None:
    items = synthetic_items(30)
    assert items == synthetic_items(30)
    assert len(items) == 30
    assert len({len(it.prompt) + len(it.response) for it in items}) > 5


def test_item_cycle_hands_out_consecutive_items_and_wraps() -> None:
    items = [TextPair("p", str(i)) for i in range(5)]
    cycle = ItemCycle(items)
    assert [it.response for it in cycle.batch(0, 2)] == ["0", "1"]
    assert [it.response for it in cycle.batch(1, 2)] == ["2", "3"]
    assert [it.response for it in cycle.batch(2, 2)] == ["4", "0"]
    assert [it.response for it in cycle.batch(7, 1)] == ["2"]


@pytest.mark.hh
@pytest.mark.skipif(not HH_FILE.is_file(), reason=f"{HH_FILE} not present")
def test_real_hh_file_loads() -> None:
    items = load_items(HH_FILE, limit=200)
    assert len(items) == 200
    # A few HH dialogues end with an empty assistant turn; the split keeps them as "".
    assert all("\n\nAssistant:" not in it.response for it in items)
    assert sum(1 for it in items if it.response) >= 190
    assert all(it.prompt.startswith("Human:") for it in items)
