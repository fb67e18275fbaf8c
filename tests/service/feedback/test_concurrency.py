"""Many threads posting at once, retrying the same ids at the same moment, on both backends.

Every acknowledged judgement must be stored exactly once; a retry must return the row
that won; a conflicting body with a taken id must be refused, never half-stored.
"""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from service.feedback.errors import FeedbackConflict
from service.feedback.records import AddResult, NewFeedback
from service.feedback.store import FeedbackStore

THREADS = 32
STEPS = 6  # posts of its own per thread
RETRY_EVERY = 10  # every 10th item is also posted by a neighbour thread, at the same moment


def item(thread: int, step: int) -> NewFeedback:
    index = thread * STEPS + step
    return NewFeedback(
        kind="like", prompt=f"prompt {index}", response=f"response {index}", liked=index % 3 != 0,
        user=f"user{thread}", source="loadtest", feedback_id=f"fb-{index}",
    )


def run_in_lockstep(work: Callable[[int, int], None]) -> None:
    """Call work(thread, step) on THREADS threads, all threads starting each step together."""
    barrier = threading.Barrier(THREADS)

    def worker(thread: int) -> None:
        for step in range(STEPS):
            barrier.wait()
            work(thread, step)

    with ThreadPoolExecutor(THREADS) as pool:
        for future in [pool.submit(worker, t) for t in range(THREADS)]:
            future.result()


def test_every_acknowledged_post_is_stored_exactly_once(store: FeedbackStore) -> None:
    results: dict[str, list[AddResult]] = defaultdict(list)
    lock = threading.Lock()

    def post(thread: int, step: int) -> None:
        duplicated = (thread * STEPS + step) % RETRY_EVERY == 0
        neighbour = (thread - 1) % THREADS
        # The neighbour's duplicate goes first so that both threads send the same id at once.
        if ((neighbour * STEPS + step) % RETRY_EVERY) == 0:
            own = [item(neighbour, step), item(thread, step)]
        else:
            own = [item(thread, step)]
        if duplicated:
            own.append(item(thread, step))  # and the owner retries once more, right after
        for new in own:
            result = store.add(new)
            with lock:
                results[new.feedback_id or ""].append(result)

    run_in_lockstep(post)

    assert len(results) == THREADS * STEPS
    assert sum(len(r) for r in results.values()) > THREADS * STEPS * 1.15  # the retries really happened
    for feedback_id, answers in results.items():
        assert sum(a.created for a in answers) == 1, feedback_id
        assert all(a.row == answers[0].row for a in answers), feedback_id
    stored = Counter(row["feedback_id"] for row in store.export())
    assert stored == Counter({feedback_id: 1 for feedback_id in results})
    assert store.count() == THREADS * STEPS


def test_racing_conflicting_bodies_store_exactly_one(store: FeedbackStore) -> None:
    outcomes: dict[str, list[str]] = defaultdict(list)
    lock = threading.Lock()

    def post(thread: int, step: int) -> None:
        # Threads 2k and 2k+1 send the same id with opposite verdicts at the same moment.
        shared_id = f"race-{thread // 2}-{step}"
        new = NewFeedback(kind="like", prompt="p", response=f"r{step}", liked=thread % 2 == 0, feedback_id=shared_id)
        try:
            outcome = "created" if store.add(new).created else "retry"
        except FeedbackConflict as conflict:
            assert conflict.existing.liked is not new.liked
            outcome = "conflict"
        with lock:
            outcomes[shared_id].append(outcome)

    run_in_lockstep(post)

    assert len(outcomes) == THREADS // 2 * STEPS
    assert all(sorted(o) == ["conflict", "created"] for o in outcomes.values()), outcomes
    assert store.count() == len(outcomes)


def test_a_row_never_commits_before_a_writer_that_began_first(store: FeedbackStore, db_url: str) -> None:
    """What keeps exports whole: ids and created_at follow commit order. A writer that has
    begun (here a raw transaction holding the write lock, as add() does while it inserts)
    must commit before any later add() becomes visible; otherwise an export paging by id
    could pass the earlier writer's lower id before it commits, and never see it."""
    from service.feedback import database

    engine = database.create_engine(database.parse_url(db_url))
    later = NewFeedback(kind="like", prompt="p", response="later", liked=True, feedback_id="fb-later")
    try:
        with database.transaction(engine, write=True):  # the earlier writer, mid-transaction
            adding = threading.Thread(target=store.add, args=(later,))
            adding.start()
            for _ in range(20):  # 1 s: an unserialized add commits in milliseconds
                adding.join(0.05)
                assert store.get("fb-later") is None, "a later writer committed while an earlier one was open"
        adding.join(10)
        assert not adding.is_alive()
        assert store.get("fb-later") is not None
    finally:
        engine.dispose()
