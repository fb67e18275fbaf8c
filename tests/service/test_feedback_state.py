"""How the running service uses its feedback store: /v1/compare's remembering is bounded, so
a slow database delays no comparison. A real SQLite file, its write lock held by another
connection, plays the slow database."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

from service.feedback import FeedbackStore, ScoredComparison
from service.feedback_state import FeedbackStoreHolder, remember_comparisons


def test_a_slow_database_delays_the_answer_by_the_wait_at_most_and_the_comparison_still_lands(
    tmp_path: Path,
) -> None:
    path = tmp_path / "feedback.db"
    store = FeedbackStore.open(f"sqlite:///{path}")
    comparison = ScoredComparison(request_id="req-1", prompt="p", response_a="a", response_b="b", score_a=1.0, score_b=0.0)

    locker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)  # the timer commits
    locker.execute("BEGIN IMMEDIATE")  # another writer holds the lock: the store's write queues
    released = threading.Timer(1.0, locker.execute, ("COMMIT",))

    async def main() -> bool:
        holder = FeedbackStoreHolder(store)
        released.start()
        answered_in_time = await remember_comparisons(holder, [comparison], wait_s=0.1)
        assert len(holder.remembering) == 1  # still queued behind the lock, referenced meanwhile
        await holder.close()  # shutdown lets it land before closing the store
        return answered_in_time

    try:
        assert asyncio.run(main()) is False
    finally:
        released.join()
        locker.close()

    reopened = FeedbackStore.open(f"sqlite:///{path}")
    try:
        assert reopened.resolve_choice("req-1", "a")[:3] == ("p", "a", "b")
    finally:
        reopened.close()


def test_a_prompt_database_is_waited_for(tmp_path: Path) -> None:
    store = FeedbackStore.open(f"sqlite:///{tmp_path / 'feedback.db'}")
    comparison = ScoredComparison(request_id="req-2", prompt="p", response_a="a", response_b="b", score_a=0.0, score_b=1.0)

    async def main() -> bool:
        holder = FeedbackStoreHolder(store)
        try:
            return await remember_comparisons(holder, [comparison], wait_s=30.0)
        finally:
            await holder.close()

    assert asyncio.run(main()) is True
