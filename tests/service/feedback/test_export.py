"""Export: exactly the stored rows, in id order, in the shapes training loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.feedback.errors import FeedbackStoreError
from service.feedback.export import export_jsonl
from service.feedback.records import FeedbackRow, NewFeedback
from service.feedback.store import FeedbackStore
from training.data.examples import LikeExample, PairExample, RatingExample
from training.data.loaders import load_dataset

ITEMS = [
    NewFeedback(kind="like", prompt="How are you?", response="Fine, thanks.", liked=True, user="ann",
                source="chat-ui", model_name="rm", model_version="1", feedback_id="like-1"),
    NewFeedback(kind="rating", prompt="Summarize: ...", response="A summary.", rating=4, user="bob",
                source="review-tool", request_id="req-9"),
    NewFeedback(kind="pair", prompt="Write a haiku", chosen="Old pond / frog jumps in", rejected="No.",
                source="chat-ui", model_name="rm", model_version="2"),
    NewFeedback(kind="like", prompt="Tell me a joke", response="Knock knock. — «Who's there?» 🐸", liked=False,
                user="bob", metadata={"ui": {"button": "thumbs-down"}}),
    NewFeedback(kind="rating", prompt="Rate this", response="Meh.", rating=2.5, rating_min=0, rating_max=10),
]


def expected(row: FeedbackRow) -> dict[str, object]:
    out: dict[str, object] = {"feedback_id": row.feedback_id, "kind": row.kind, "prompt": row.prompt}
    if row.kind == "like":
        out |= {"response": row.response, "liked": row.liked}
    elif row.kind == "rating":
        out |= {"response": row.response, "rating": row.rating, "rating_min": row.rating_min,
                "rating_max": row.rating_max}
    else:
        out |= {"chosen": row.chosen, "rejected": row.rejected}
    return out | {
        "source": row.source, "annotator": row.user, "model_name": row.model_name,
        "model_version": row.model_version, "created_at": row.created_at.isoformat(),
    }


def test_export_reproduces_exactly_the_rows_in_id_order(store: FeedbackStore) -> None:
    rows = [store.add(item).row for item in ITEMS]
    assert list(store.export()) == [expected(row) for row in rows]


def test_a_paused_export_holds_no_database_connection(store: FeedbackStore, monkeypatch: pytest.MonkeyPatch) -> None:
    # A client that stalls mid-export must not keep a connection the writers need.
    import service.feedback.export as export_module

    monkeypatch.setattr(export_module, "EXPORT_BATCH_ROWS", 2)
    rows = [store.add(item).row for item in ITEMS]
    exported = store.export()
    first = next(exported)
    assert store._engine.pool.checkedout() == 0
    late = store.add(NewFeedback(kind="like", prompt="Later?", response="Yes.", liked=True)).row
    assert [first, *exported] == [expected(row) for row in [*rows, late]]  # later rows follow


def test_ratings_on_two_scales_export_and_load_on_their_own_scales(store: FeedbackStore, tmp_path: Path) -> None:
    store.add(NewFeedback(kind="rating", prompt="p", response="top of 1-5", rating=5))
    store.add(NewFeedback(kind="rating", prompt="q", response="middle of 0-10", rating=5, rating_min=0, rating_max=10))
    path = tmp_path / "ratings.jsonl"
    export_jsonl(store, path)
    dataset = load_dataset([path])
    assert dataset.warnings == []  # the scale fields are read, not ignored
    assert [round(e.normalized, 6) for e in dataset.ratings] == [1.0, 0.0]


def test_export_filters_by_kind_and_since(store: FeedbackStore) -> None:
    rows = [store.add(item).row for item in ITEMS]
    assert list(store.export(kind="rating")) == [expected(rows[1]), expected(rows[4])]
    since = rows[2].created_at
    assert list(store.export(since=since)) == [expected(r) for r in rows[2:]]
    # A naive time is read as UTC.
    assert list(store.export(since=since.replace(tzinfo=None), kind="like")) == [expected(rows[3])]
    with pytest.raises(FeedbackStoreError, match="kind 'likes' is not one of: like, rating, pair"):
        store.export(kind="likes")


def test_export_streams_more_rows_than_one_batch(store: FeedbackStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("service.feedback.export.EXPORT_BATCH_ROWS", 4)
    for index in range(11):
        store.add(NewFeedback(kind="like", prompt=f"p{index}", response="r", liked=True, feedback_id=f"id-{index}"))
    ids = [row["feedback_id"] for row in store.export()]
    assert ids == [f"id-{index}" for index in range(11)]


def test_jsonl_export_loads_in_training(store: FeedbackStore, tmp_path: Path) -> None:
    rows = [store.add(item).row for item in ITEMS[:4]]  # one rating scale (1-5) per training file
    out = tmp_path / "exports" / "feedback.jsonl"
    assert export_jsonl(store, out) == 4
    lines = out.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == [expected(row) for row in rows]
    assert not [p.name for p in out.parent.iterdir() if p.name != "feedback.jsonl"]  # no temp file left

    dataset = load_dataset([out], rating_scale=(1.0, 5.0))
    assert dataset.counts() == {"pairs": 1, "ratings": 1, "likes": 2}
    assert dataset.examples == [
        LikeExample("How are you?", "Fine, thanks.", True, annotator="ann"),
        RatingExample("Summarize: ...", "A summary.", 4.0, 1.0, 5.0, annotator="bob"),
        PairExample("Write a haiku", "Old pond / frog jumps in", "No.", annotator=None),
        LikeExample("Tell me a joke", "Knock knock. — «Who's there?» 🐸", False, annotator="bob"),
    ]


def test_jsonl_export_refuses_a_directory(store: FeedbackStore, tmp_path: Path) -> None:
    with pytest.raises(FeedbackStoreError, match="is a directory; give a file name"):
        export_jsonl(store, tmp_path)


def test_jsonl_export_refuses_its_own_database_file(tmp_path: Path) -> None:
    # Library callers get the same guard as `plaudit feedback export`.
    db = tmp_path / "feedback.db"
    with FeedbackStore.open(f"sqlite:///{db}") as store:
        store.add(ITEMS[0])
        before = db.read_bytes()
        with pytest.raises(FeedbackStoreError, match=r"is the feedback database .*feedback\.db itself"):
            export_jsonl(store, db)
        assert db.read_bytes() == before
        assert store.count() == 1


def test_an_export_that_fails_halfway_keeps_the_previous_one(store: FeedbackStore, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    for item in ITEMS:
        store.add(item)
    out = tmp_path / "exports" / "feedback.jsonl"
    assert export_jsonl(store, out) == len(ITEMS)
    previous = out.read_bytes()

    rows = store.export

    def fails_after_two(**kwargs: object) -> object:
        for i, row in enumerate(rows(**kwargs)):  # type: ignore[arg-type]
            if i == 2:
                raise FeedbackStoreError("the database went away")  # as a lost connection would
            yield row

    monkeypatch.setattr(store, "export", fails_after_two)
    with pytest.raises(FeedbackStoreError, match="went away"):
        export_jsonl(store, out)
    assert out.read_bytes() == previous
    assert [p.name for p in out.parent.iterdir()] == ["feedback.jsonl"]  # no temp file left
