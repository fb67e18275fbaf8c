"""From a POST /v1/feedback body to a row, through the real intake code and a real store."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from service.feedback.records import ScoredComparison
from service.feedback.store import FeedbackStore
from service.feedback_intake import FeedbackIdConflict, record_feedback
from service.schemas_feedback import FeedbackRequest
from service.settings import Settings

SETTINGS = Settings(engine="deterministic")


def choice(letter: str, feedback_id: str = "choice-1") -> FeedbackRequest:
    return FeedbackRequest(request_id="req-7", choice=letter, feedback_id=feedback_id)


def test_a_retried_choice_replays_after_its_comparison_expired(db_url: str) -> None:
    with FeedbackStore.open(db_url) as store:
        store.remember_comparison(ScoredComparison("req-7", "Say hi", "Hi!", "Go away.", 1.0, 0.0, "rm", "3"))
        first = asyncio.run(record_feedback(choice("a"), store, None, SETTINGS))
        assert first.created and (first.row.chosen, first.row.rejected) == ("Hi!", "Go away.")
        assert store.purge_comparisons(older_than=timedelta(0)) == 1  # the comparison is gone now
        again = asyncio.run(record_feedback(choice("a"), store, None, SETTINGS))
        assert (again.created, again.row) == (False, first.row)  # the original, not a 404
        # The same id with another body is still a conflict, comparison or not.
        changes = ({"user": "someone-else"}, {"metadata": {"screen": "other"}}, {"model": {"name": "rm", "version": "4"}})
        for changed in changes:
            other = FeedbackRequest(request_id="req-7", choice="a", feedback_id="choice-1", **changed)
            with pytest.raises(FeedbackIdConflict):
                asyncio.run(record_feedback(other, store, None, SETTINGS))
        # While the comparison is still known, a different letter under the same id conflicts.
        store.remember_comparison(ScoredComparison("req-7", "Say hi", "Hi!", "Go away.", 1.0, 0.0, "rm", "3"))
        with pytest.raises(FeedbackIdConflict):
            asyncio.run(record_feedback(choice("b"), store, None, SETTINGS))
        assert store.count() == 1


def test_a_busy_database_is_a_503_with_retry_after(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlite3

    from service.feedback import database
    from service.feedback_state import FeedbackUnavailable

    monkeypatch.setattr(database, "SQLITE_BUSY_TIMEOUT_S", 0.2)  # read when the store connects
    path = tmp_path / "feedback.db"
    with FeedbackStore.open(f"sqlite:///{path}") as store:
        locker = sqlite3.connect(path, isolation_level=None)
        locker.execute("BEGIN IMMEDIATE")  # another writer holds the lock past the busy timeout
        try:
            body = FeedbackRequest(prompt="p", response="r", liked=True)
            with pytest.raises(FeedbackUnavailable) as raised:
                asyncio.run(record_feedback(body, store, None, SETTINGS))
        finally:
            locker.execute("ROLLBACK")
            locker.close()
    assert raised.value.status_code == 503 and raised.value.headers == {"Retry-After": "1"}
