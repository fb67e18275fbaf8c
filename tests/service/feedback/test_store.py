"""FeedbackStore on both backends: schema, idempotent adds, conflicts, comparison memory."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from service.feedback import database
from service.feedback.errors import AmbiguousComparison, FeedbackConflict, InvalidFeedback, UnknownComparison
from service.feedback.migrations import alembic_config, current_revision, head_revision
from service.feedback.records import NewFeedback, ScoredComparison, comparison_key
from service.feedback.schema import metadata
from service.feedback.store import FeedbackStore

LIKE = NewFeedback(
    kind="like", prompt="Capital of France?", response="Paris.", liked=True, user="ann",
    source="chat-ui", metadata={"session": "s1"}, model_name="rm", model_version="3", feedback_id="fb-1",
)
COMPARISON = ScoredComparison(
    request_id="req-1", prompt="Say hi", response_a="Hi!", response_b="Go away.",
    score_a=1.5, score_b=-0.5, model_name="rm", model_version="3",
)


def test_migrations_create_exactly_the_declared_schema(store: FeedbackStore) -> None:
    with database.transaction(store._engine, write=False) as connection:
        assert current_revision(connection) == head_revision()
        assert compare_metadata(MigrationContext.configure(connection), metadata) == []
        tables = set(sa.inspect(connection).get_table_names())
    assert {"feedback", "scored_comparisons", "alembic_version"} <= tables


def test_reopening_keeps_data_and_migrations_go_down_and_up(db_url: str) -> None:
    with FeedbackStore.open(db_url) as store:
        store.add(LIKE)
    with FeedbackStore.open(db_url) as store:
        assert store.count() == 1
        with database.transaction(store._engine, write=True) as connection:
            command.downgrade(alembic_config(connection), "base")
            assert not {"feedback", "scored_comparisons"} & set(sa.inspect(connection).get_table_names())
            command.upgrade(alembic_config(connection), "head")
            assert current_revision(connection) == head_revision()


def test_add_stores_the_row_and_returns_it(store: FeedbackStore) -> None:
    result = store.add(LIKE)
    assert result.created
    row = result.row
    assert (row.feedback_id, row.kind, row.prompt, row.response, row.liked) == (
        "fb-1", "like", "Capital of France?", "Paris.", True)
    assert (row.user, row.source, row.metadata, row.model_name, row.model_version) == (
        "ann", "chat-ui", {"session": "s1"}, "rm", "3")
    assert row.created_at.tzinfo is not None and row.created_at.utcoffset() == timedelta(0)
    assert store.get("fb-1") == row
    assert store.count() == 1


def test_retry_with_the_same_body_returns_the_original_row(store: FeedbackStore) -> None:
    first = store.add(LIKE)
    again = store.add(LIKE)
    assert not again.created
    assert again.row == first.row
    assert store.count() == 1


def test_same_id_with_another_body_is_a_conflict(store: FeedbackStore) -> None:
    original = store.add(LIKE).row
    changed = NewFeedback(**{**{f: getattr(LIKE, f) for f in LIKE.__dataclass_fields__}, "liked": False})
    with pytest.raises(FeedbackConflict) as caught:
        store.add(changed)
    assert caught.value.existing == original
    assert "feedback_id 'fb-1' was already used for different feedback" in str(caught.value)
    assert store.count() == 1
    assert store.get("fb-1") == original


def test_without_an_id_each_add_is_new(store: FeedbackStore) -> None:
    item = NewFeedback(kind="pair", prompt="p", chosen="good", rejected="bad")
    first, second = store.add(item), store.add(item)
    assert first.created and second.created
    assert first.row.feedback_id != second.row.feedback_id
    assert len(first.row.feedback_id) == 32
    assert store.count() == 2


def test_invalid_feedback_stores_nothing(store: FeedbackStore) -> None:
    with pytest.raises(InvalidFeedback, match="rating: 9 is outside the scale 1-5"):
        store.add(NewFeedback(kind="rating", prompt="p", response="r", rating=9))
    assert store.count() == 0


def test_a_remembered_comparison_resolves_to_a_pair(store: FeedbackStore) -> None:
    store.remember_comparison(COMPARISON)
    assert store.resolve_choice("req-1", "a") == ("Say hi", "Hi!", "Go away.", "rm", "3")
    prompt, chosen, rejected, model_name, model_version = store.resolve_choice("req-1", "b")
    assert (chosen, rejected) == ("Go away.", "Hi!")


def test_a_retried_comparison_keeps_its_latest_scores(store: FeedbackStore) -> None:
    assert store.remember_comparison(COMPARISON)
    assert store.remember_comparison(ScoredComparison("req-1", "Say hi", "Hi!", "Go away.", 0.5, 0.1, "rm", "4"))
    assert store.resolve_choice("req-1", "a") == ("Say hi", "Hi!", "Go away.", "rm", "4")


def test_a_request_id_reused_for_other_texts_resolves_no_choice(store: FeedbackStore) -> None:
    """Two comparisons under one id (a client reusing X-Request-ID): a choice cannot tell which
    one it means, and picking either could put the wrong pair into training."""
    assert store.remember_comparison(COMPARISON)
    assert not store.remember_comparison(ScoredComparison("req-1", "Say bye", "Bye!", "No.", 0.0, 1.0, "rm", "4"))
    with pytest.raises(AmbiguousComparison, match="request_id 'req-1' was used by more than one /v1/compare"):
        store.resolve_choice("req-1", "a")
    store.remember_comparison(COMPARISON)  # the first texts again do not undo it
    with pytest.raises(AmbiguousComparison):
        store.resolve_choice("req-1", "b")


def test_an_expired_request_id_may_be_used_again(db_url: str) -> None:
    with FeedbackStore.open(db_url, comparison_retention=timedelta(milliseconds=50)) as store:
        store.remember_comparison(COMPARISON)
        time.sleep(0.1)  # past the retention: the old comparison no longer counts
        assert store.remember_comparison(ScoredComparison("req-1", "Say bye", "Bye!", "No.", 0.0, 1.0, "rm", "4"))
        assert store.resolve_choice("req-1", "a") == ("Say bye", "Bye!", "No.", "rm", "4")


def test_unknown_request_id_and_bad_choice(store: FeedbackStore) -> None:
    store.remember_comparison(COMPARISON)
    with pytest.raises(UnknownComparison, match="unknown or expired request_id 'nope'"):
        store.resolve_choice("nope", "a")
    with pytest.raises(InvalidFeedback, match='choice: expected "a" or "b", got \'c\''):
        store.resolve_choice("req-1", "c")


def _remember_list(store: FeedbackStore, request_id: str, n: int) -> None:
    for i in range(n):
        key = comparison_key(request_id, i)
        assert store.remember_comparison(ScoredComparison(key, f"p{i}", f"a{i}", f"b{i}", 0.0, 1.0))


def test_a_list_comparison_resolves_by_index_and_says_what_index_to_give(store: FeedbackStore) -> None:
    _remember_list(store, "cmp-2", 2)
    _remember_list(store, "CMP-2", 3)  # another id differing only in case; SQLite's LIKE ignores case
    _remember_list(store, "cmp-20", 4)  # another id that starts like it
    # An id that LIKE 'cmp_2#%' matches, '_' being any character there: no item of cmp-2's list.
    store.remember_comparison(ScoredComparison("cmp_2#7", "p", "x", "y", 0.0, 0.0))
    assert store.resolve_choice("cmp-2", "b", index=1)[:3] == ("p1", "b1", "a1")

    no_index = r"^index: request_id 'cmp-2' scored a list of comparisons; give its index \(kept: 0-1\)$"
    with pytest.raises(InvalidFeedback, match=no_index):
        store.resolve_choice("cmp-2", "b")
    with pytest.raises(UnknownComparison) as past:
        store.resolve_choice("cmp-2", "b", index=5)
    assert str(past.value).startswith(
        "request_id 'cmp-2' keeps comparisons 0-1 of its list, not 5 (past the list's end, or it could not be stored)"
    )
    # A list whose item 2 was not stored (remembering never fails a comparison): nothing claims a
    # length, and the kept items are named as they are.
    for i in (0, 1, 3):
        store.remember_comparison(ScoredComparison(comparison_key("gap", i), "p", "x", "y", 0.0, 0.0))
    with pytest.raises(UnknownComparison, match=r"^request_id 'gap' keeps comparisons 0-1, 3 of its list, not 2 "):
        store.resolve_choice("gap", "a", index=2)
    with pytest.raises(InvalidFeedback, match=r"give its index \(kept: 0-1, 3\)$"):
        store.resolve_choice("gap", "a")
    store.remember_comparison(COMPARISON)
    single = "request_id 'req-1' scored a single comparison, not a list; leave index out"
    with pytest.raises(InvalidFeedback, match=single):
        store.resolve_choice("req-1", "a", index=0)
    _remember_list(store, "one", 1)
    with pytest.raises(InvalidFeedback, match=r"scored a list of comparisons; give its index \(kept: 0\)$"):
        store.resolve_choice("one", "a")
    with pytest.raises(UnknownComparison) as unknown:
        store.resolve_choice("nope", "a", index=2)
    assert "'nope'" in str(unknown.value) and "#" not in str(unknown.value)


def test_an_ambiguous_list_comparison_is_named_by_its_request_id(store: FeedbackStore) -> None:
    _remember_list(store, "cmp-2", 2)
    assert not store.remember_comparison(ScoredComparison(comparison_key("cmp-2", 0), "other", "x", "y", 0.0, 0.0))
    with pytest.raises(AmbiguousComparison, match="request_id 'cmp-2' was used") as refused:
        store.resolve_choice("cmp-2", "a", index=0)
    assert "#" not in str(refused.value)


def test_expired_list_comparisons_are_unknown_not_a_missing_index(db_url: str) -> None:
    with FeedbackStore.open(db_url, comparison_retention=timedelta(microseconds=1)) as store:
        _remember_list(store, "cmp-2", 2)
        with pytest.raises(UnknownComparison, match="unknown or expired request_id 'cmp-2'"):
            store.resolve_choice("cmp-2", "a")


def test_comparisons_expire_after_the_retention(db_url: str) -> None:
    with FeedbackStore.open(db_url, comparison_retention=timedelta(microseconds=1)) as store:
        store.remember_comparison(COMPARISON)
        with pytest.raises(UnknownComparison):
            store.resolve_choice("req-1", "a")


def test_purge_deletes_only_old_comparisons(store: FeedbackStore) -> None:
    store.remember_comparison(COMPARISON)
    assert store.purge_comparisons(older_than=timedelta(hours=1)) == 0
    assert store.resolve_choice("req-1", "a").chosen == "Hi!"
    store.remember_comparison(ScoredComparison("req-2", "p", "x", "y", 0.0, 0.0))
    assert store.purge_comparisons(older_than=timedelta(0)) == 2
    with pytest.raises(UnknownComparison):
        store.resolve_choice("req-1", "a")


def test_purge_goes_in_batches_and_deletes_every_old_comparison(store: FeedbackStore) -> None:
    for i in range(7):
        store.remember_comparison(ScoredComparison(f"old-{i}", "p", "x", "y", 0.0, 0.0))
    assert store.purge_comparisons(older_than=timedelta(0), batch_rows=3) == 7  # 3 + 3 + 1
    assert store.purge_comparisons(older_than=timedelta(0), batch_rows=3) == 0
    with pytest.raises(UnknownComparison):
        store.resolve_choice("old-6", "a")


def test_stores_opening_a_new_database_at_once_migrate_it_once(db_url: str) -> None:
    barrier = threading.Barrier(6)

    def open_and_add(index: int) -> int:
        barrier.wait()
        with FeedbackStore.open(db_url) as store:
            store.add(NewFeedback(kind="like", prompt=f"p{index}", response="r", liked=True))
            return store.count()

    with ThreadPoolExecutor(6) as pool:
        counts = list(pool.map(open_and_add, range(6)))
    assert max(counts) == 6
    with FeedbackStore.open(db_url) as store, database.transaction(store._engine, write=False) as connection:
        assert connection.exec_driver_sql("SELECT count(*) FROM alembic_version").scalar() == 1
