"""How the running service uses its feedback store: /v1/compare's remembering is bounded, so
a slow database delays no comparison. A real SQLite file, its write lock held by another
connection, plays the slow database. A store that could not be opened is tried again."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

from service.feedback import FeedbackStore, ScoredComparison
import pytest

from service.feedback_state import FeedbackStoreHolder, FeedbackUnavailable, remember_comparisons


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


def test_a_store_that_could_not_be_opened_is_retried_once_at_a_time_at_most_once_per_interval(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "not-yet"
    folder.write_text("a file where the database's folder goes\n")  # so opening fails
    tries: list[int] = []

    def reopen() -> FeedbackStore:
        tries.append(threading.get_ident())
        return FeedbackStore.open(f"sqlite:///{folder / 'feedback.db'}")

    async def twenty_requests(holder: FeedbackStoreHolder) -> list[object]:
        return await asyncio.gather(*(holder.acquire() for _ in range(20)), return_exceptions=True)

    async def main() -> None:
        holder = FeedbackStoreHolder(None, reopen=reopen, retry_s=30.0)  # the start has just tried
        try:
            assert holder.store_or_reopen() is None and tries == []  # not due yet
            holder._next_try = 0.0  # as if 30 s had passed (sleeping through them would be slow)
            refused = await twenty_requests(holder)
            assert len(tries) == 1  # one try for all twenty
            assert all(isinstance(r, FeedbackUnavailable) and r.headers == {"Retry-After": "30"} for r in refused)
            await twenty_requests(holder)
            assert len(tries) == 1  # the interval has not passed since

            folder.unlink()
            folder.mkdir()
            holder._next_try = 0.0
            assert holder.store_or_reopen() is None  # as /v1/compare asks: starts a reopen, no wait
            for _ in range(3000):
                if holder.store is not None:
                    break
                await asyncio.sleep(0.01)
            assert holder.store is not None, "the store was not reopened"
            assert len(tries) == 2
            assert await holder.acquire() is holder.store
        finally:
            await holder.close()
        with pytest.raises(FeedbackUnavailable, match="shutting down"):
            holder.get()

    asyncio.run(main())
