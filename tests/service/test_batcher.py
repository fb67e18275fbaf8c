"""The Batcher on its own (no HTTP), driven with asyncio and the real test engines."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import numpy as np
import pytest

from model_store.engines.deterministic import DeterministicScorer, FailingScorer
from model_store.scoring import Encoded, TextPair
from service.batching import Batcher
from service.errors import DeadlineExceeded, NotReady, QueueFullError, ScoringFailed
from service.metrics import ServiceMetrics
from service.settings import Settings

T = TypeVar("T")


def pairs(*responses: str, prompt: str = "tell me about eggs") -> list[TextPair]:
    return [TextPair(prompt, r) for r in responses]


def value(metrics: ServiceMetrics, name: str, **labels: str) -> float:
    got = metrics.registry.get_sample_value(name, labels)
    return 0.0 if got is None else got


async def eventually(condition: Callable[[], bool], what: str) -> None:
    give_up = time.monotonic() + 10
    while not condition():
        if time.monotonic() > give_up:
            pytest.fail(f"gave up waiting for {what}")
        await asyncio.sleep(0.005)


def with_batcher(scorer: Any, body: Callable[[Batcher, ServiceMetrics], Awaitable[T]], **limits: Any) -> T:
    """Run `body` against a started Batcher inside a fresh event loop, then stop it."""

    async def main() -> T:
        metrics = ServiceMetrics()
        batcher = Batcher(scorer, Settings(engine="deterministic", **limits), metrics)
        batcher.start()
        try:
            return await body(batcher, metrics)
        finally:
            # A test that failed while holding the engine or tokenizer must not leave stop()
            # waiting for the held call.
            if isinstance(scorer, (HeldScorer, HeldTokenizer)):
                scorer.release.set()
            await batcher.stop()

    return asyncio.run(main())


def queued_engine_jobs(batcher: Batcher) -> int:
    """Jobs handed to the engine pool that no engine worker has picked up yet: prefetched
    batches waiting for a worker."""
    assert batcher._engine_pool is not None
    return batcher._engine_pool._work_queue.qsize()


class HeldScorer(DeterministicScorer):
    """The deterministic engine, whose calls (`run` and `run_alone` alike) start and then wait
    until the test sets `release`, so a batch runs for as long as the test needs rather than
    for a delay_s that a loaded machine may outlast. `events` notes each call's "start" and
    "end" in order, with whatever the test adds (`note`)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.events: list[str] = []
        self._changed = threading.Condition()

    def _run(self, batch):  # type: ignore[no-untyped-def]
        self.note("start")
        try:
            assert self.release.wait(30), "the test never released the engine"
            return super()._run(batch)
        finally:
            self.note("end")

    def note(self, event: str) -> None:
        with self._changed:
            self.events.append(event)
            self._changed.notify_all()

    @property
    def started(self) -> int:
        return self.events.count("start")

    @property
    def finished(self) -> int:
        return self.events.count("end")

    def wait_until(self, condition: Callable[[], bool]) -> bool:
        """Block the calling thread (the event loop's too) until `condition` holds; False
        after 10 s. For a test that keeps the loop busy while the engine threads go on."""
        with self._changed:
            return self._changed.wait_for(condition, timeout=10)


@pytest.mark.parametrize("engine_workers", [1, 2])
def test_scores_match_the_engine_alone_whatever_the_batch(engine_workers: int):
    texts = [f"answer {i} " + "because here is an example " * (i % 4) for i in range(20)]
    want = DeterministicScorer().score(pairs(*texts))
    alone = np.concatenate([DeterministicScorer().run(DeterministicScorer().encode(pairs(t))) for t in texts])
    np.testing.assert_allclose(alone, want, atol=1e-5)

    async def body(batcher: Batcher, metrics: ServiceMetrics) -> list[np.ndarray]:
        return list(
            await asyncio.gather(*(batcher.submit(pairs(*texts[i : i + 3])) for i in range(0, 20, 3)))
        )

    got = with_batcher(
        DeterministicScorer(delay_s=0.05), body, max_batch_items=4, engine_workers=engine_workers
    )
    np.testing.assert_allclose(np.concatenate(got), want, atol=1e-5)


def test_an_idle_batcher_runs_a_lone_request_at_once():
    async def body(batcher: Batcher, metrics: ServiceMetrics) -> np.ndarray:
        return await batcher.submit(pairs("hello there"))

    metrics_seen: dict[str, float] = {}

    async def watched(batcher: Batcher, metrics: ServiceMetrics) -> np.ndarray:
        out = await body(batcher, metrics)
        for trigger in ("nothing_coming", "max_wait", "full"):
            metrics_seen[trigger] = value(metrics, "plaudit_batch_triggers_total", trigger=trigger)
        return out

    # max_wait_ms is huge: a batch that waited for company would show as "max_wait".
    scores = with_batcher(DeterministicScorer(), watched, max_wait_ms=1000)
    assert scores.shape == (1,)
    assert metrics_seen == {"nothing_coming": 1.0, "max_wait": 0.0, "full": 0.0}


def test_a_lone_item_on_an_idle_batcher_takes_one_engine_job_and_no_tokenizer_hop():
    async def body(batcher: Batcher, metrics: ServiceMetrics) -> None:
        want = DeterministicScorer().score(pairs("hello there"))
        for _ in range(3):  # one at a time: the batcher is idle for each
            np.testing.assert_allclose(await batcher.submit(pairs("hello there")), want, atol=1e-6)
        assert batcher._tokenize_pool is not None and not batcher._tokenize_pool._threads  # never used
        assert value(metrics, "plaudit_batch_size_items_count") == 3.0
        assert value(metrics, "plaudit_tokenize_seconds_count") == 3.0
        assert value(metrics, "plaudit_batch_size_tokens_sum") == 3.0 * (2 + 3 + 4)  # words + specials
        assert batcher.queue_depth == 0

    with_batcher(DeterministicScorer(), body)


class CallRecordingScorer(HeldScorer):
    """The held engine, noting which entry point each engine call used (before it is held)."""

    def __init__(self) -> None:
        super().__init__()
        self.entry_points: list[tuple[str, int]] = []

    def run(self, batch):  # type: ignore[no-untyped-def]
        self.entry_points.append(("run", len(batch)))
        return super().run(batch)

    def run_alone(self, batch):  # type: ignore[no-untyped-def]
        self.entry_points.append(("run_alone", len(batch)))
        return super().run_alone(batch)


def test_only_an_item_on_an_idle_engine_is_a_lone_call():
    """`run_alone` may take every core (the ONNX engine's wide session); a call made while
    another batch runs must not, or the two would fight over the cores."""
    scorer = CallRecordingScorer()

    async def body(batcher: Batcher, metrics: ServiceMetrics) -> None:
        scorer.release.set()
        await batcher.submit(pairs("idle"))
        assert scorer.entry_points == [("run_alone", 1)]
        scorer.release.clear()  # from here on each batch runs until the test lets it end
        first = asyncio.create_task(batcher.submit(pairs("first", "batch")))
        await eventually(lambda: len(scorer.entry_points) == 2, "the first batch")
        # One engine worker is still free, but a batch is running: this item is not alone.
        second = asyncio.create_task(batcher.submit(pairs("while busy")))
        await eventually(lambda: len(scorer.entry_points) == 3, "the item on the second worker")
        scorer.release.set()
        await asyncio.gather(first, second)
        assert scorer.entry_points == [("run_alone", 1), ("run", 2), ("run", 1)]
        # Nor when the running batch's caller has gone: the engine is still busy with it.
        scorer.release.clear()
        third = asyncio.create_task(batcher.submit(pairs("abandoned", "batch")))
        await eventually(lambda: len(scorer.entry_points) == 4, "the abandoned batch")
        third.cancel()
        await asyncio.gather(third, return_exceptions=True)
        after = asyncio.create_task(batcher.submit(pairs("after the abandoned one")))
        await eventually(lambda: len(scorer.entry_points) == 5, "the item after the abandoned one")
        scorer.release.set()
        await after
        assert scorer.entry_points[3:] == [("run", 2), ("run", 1)]

    with_batcher(scorer, body, engine_workers=2)


def test_a_lone_item_holds_its_engine_worker_so_the_next_batch_waits_for_it():
    scorer = HeldScorer()

    async def body(batcher: Batcher, metrics: ServiceMetrics) -> None:
        lone = asyncio.create_task(batcher.submit(pairs("first")))
        await eventually(lambda: scorer.started == 1, "the lone item to reach the engine")
        queued = asyncio.create_task(batcher.submit(pairs("second", "third")))  # not idle: queued
        # The next batch is formed and handed to the engine pool (the prefetch slot), where it
        # waits: the only engine worker is the lone item's. (A prefetched batch counts its size
        # in the engine thread when it starts, so the count below is still the lone item's.)
        await eventually(lambda: queued_engine_jobs(batcher) == 1, "the next batch to wait for the worker")
        assert scorer.started == 1
        assert value(metrics, "plaudit_batch_size_items_count") == 1
        scorer.release.set()
        await lone
        await queued
        assert scorer.events == ["start", "end", "start", "end"]  # one after the other
        assert value(metrics, "plaudit_batch_size_items_sum") == 3.0

    with_batcher(scorer, body, engine_workers=1)


def test_a_lone_item_that_fails_or_is_cancelled_frees_its_slot_and_worker():
    async def failing(batcher: Batcher, metrics: ServiceMetrics) -> None:
        with pytest.raises(ScoringFailed, match="scoring failed while scoring"):
            await batcher.submit(pairs("doomed"))
        assert batcher.alive and batcher.queue_depth == 0

    with_batcher(FailingScorer(), failing, engine_workers=1)

    scorer = HeldScorer()

    async def cancelled(batcher: Batcher, metrics: ServiceMetrics) -> None:
        lone = asyncio.create_task(batcher.submit(pairs("impatient")))
        await eventually(lambda: scorer.started == 1, "the lone item to reach the engine")
        lone.cancel()
        with pytest.raises(asyncio.CancelledError):
            await lone
        assert batcher.queue_depth == 0  # at once, though its job still runs
        assert scorer.finished == 0
        # The worker comes back when the job ends, and the next request uses it. With no
        # prefetch slot, the job's is the only one: the next batch waits until it is given back.
        following = asyncio.create_task(batcher.submit(pairs("next", "one")))
        await eventually(lambda: len(batcher._waiting) == 2, "the next request to wait for the worker")
        scorer.release.set()
        await eventually(following.done, "the next request to get the worker")
        assert (await following).shape == (2,)

    with_batcher(scorer, cancelled, engine_workers=1, prefetch_batches=0)


def test_the_collector_waits_for_requests_still_being_tokenized():
    async def body(batcher: Batcher, metrics: ServiceMetrics) -> tuple[float, float]:
        # Both are accepted at once; with one tokenizer thread the second is still being
        # tokenized when the first is ready, so the first waits for it. (The first has two
        # items: a lone item on an idle batcher would skip the queue, as the next tests show.)
        await asyncio.gather(batcher.submit(pairs("first", "second")), batcher.submit(pairs("third")))
        return value(metrics, "plaudit_batch_size_items_count"), value(
            metrics, "plaudit_batch_size_items_sum"
        )

    assert with_batcher(DeterministicScorer(), body, max_wait_ms=1000, tokenize_workers=1) == (1.0, 3.0)


def test_requests_arriving_while_the_engine_is_busy_share_the_next_batch():
    # Items pile up while every slot is taken (the worker busy, the prefetched batch formed),
    # and that pile is the next batch. max_wait_ms=0: the collector never lingers for company,
    # and each request is queued before the next is sent, so only the pile-up can join them.
    scorer = CallRecordingScorer()

    async def body(batcher: Batcher, metrics: ServiceMetrics) -> None:
        running = asyncio.create_task(batcher.submit(pairs("first", "batch")))
        await eventually(lambda: scorer.started == 1, "the first batch to run")
        prefetched = asyncio.create_task(batcher.submit(pairs("prefetched")))
        await eventually(lambda: queued_engine_jobs(batcher) == 1, "the next batch to be prefetched")
        # Every slot is taken: what arrives now waits, one request after the other.
        second = asyncio.create_task(batcher.submit(pairs("second", "third")))
        await eventually(lambda: len(batcher._waiting) == 2, "the second request to wait")
        third = asyncio.create_task(batcher.submit(pairs("fourth")))
        await eventually(lambda: len(batcher._waiting) == 3, "the third request to wait")
        assert scorer.entry_points == [("run", 2)] and queued_engine_jobs(batcher) == 1
        scorer.release.set()
        results = await asyncio.gather(running, prefetched, second, third)
        assert scorer.entry_points == [("run", 2), ("run", 1), ("run", 3)]
        for got, texts in zip(results[2:], [("second", "third"), ("fourth",)], strict=True):
            np.testing.assert_allclose(got, DeterministicScorer().score(pairs(*texts)), atol=1e-5)

    with_batcher(scorer, body, engine_workers=1, prefetch_batches=1, max_wait_ms=0)


def test_with_two_engine_workers_a_second_batch_starts_while_the_first_runs():
    scorer = HeldScorer()

    async def body(batcher: Batcher, metrics: ServiceMetrics) -> None:
        first = asyncio.create_task(batcher.submit(pairs("first")))
        await eventually(lambda: scorer.started == 1, "the first batch")
        second = asyncio.create_task(batcher.submit(pairs("second")))
        # One worker would hold the second item back (prefetched, in the engine pool's queue)
        # until the first batch ended, and the engine is held: it could not start.
        await eventually(lambda: scorer.started == 2, "the second batch to start")
        assert not first.done() and scorer.finished == 0  # both run at once
        scorer.release.set()
        scores = await asyncio.gather(first, second)
        assert [s.shape for s in scores] == [(1,), (1,)]

    with_batcher(scorer, body, engine_workers=2)


@pytest.mark.parametrize("prefetch_batches", [1, 0])
def test_a_prefetched_batch_starts_when_the_running_one_ends_even_while_the_loop_is_busy(prefetch_batches: int):
    """The point of prefetching: a worker that finishes picks up the next batch itself. Without
    it, the next batch is formed on the event loop, which under load is busy with HTTP."""
    scorer = HeldScorer()

    async def body(batcher: Batcher, metrics: ServiceMetrics) -> list[str]:
        first = asyncio.create_task(batcher.submit(pairs("first", "batch")))
        await eventually(lambda: scorer.started == 1, "the first batch")
        second = asyncio.create_task(batcher.submit(pairs("second", "batch")))
        if prefetch_batches:
            await eventually(lambda: queued_engine_jobs(batcher) == 1, "the second batch to be prefetched")
        else:
            await eventually(lambda: len(batcher._waiting) == 2, "the second batch's items to wait")
        # Now the loop is busy (blocked) while the first batch ends.
        scorer.release.set()
        if prefetch_batches:
            # Only the engine thread can start the second batch while the loop is blocked.
            assert scorer.wait_until(lambda: scorer.started == 2), "the prefetched batch did not start"
        else:
            assert scorer.wait_until(lambda: scorer.finished == 1), "the first batch did not end"
        scorer.note("loop free")
        await asyncio.gather(first, second)
        return scorer.events

    events = with_batcher(scorer, body, engine_workers=1, prefetch_batches=prefetch_batches)
    second_started = [i for i, event in enumerate(events) if event == "start"][1]
    if prefetch_batches:
        assert second_started < events.index("loop free")  # during the block, once the first ended
    else:
        assert second_started > events.index("loop free")  # only once the loop could form it


def test_a_prefetched_batch_skips_the_items_of_requests_that_gave_up_while_it_waited():
    scorer = CallRecordingScorer()

    async def body(batcher: Batcher, metrics: ServiceMetrics) -> None:
        first = asyncio.create_task(batcher.submit(pairs("first", "batch")))
        await eventually(lambda: scorer.entry_points == [("run", 2)], "the first batch")
        doomed = asyncio.create_task(batcher.submit(pairs("x", "y")))
        kept = asyncio.create_task(batcher.submit(pairs("z")))
        # Both are tokenized together and form the prefetched batch, waiting for the worker.
        # (Were "z" tokenized past max_wait_ms, the prefetched batch would be "x" and "y" alone:
        # theirs are the oldest items, tokenized first by the one tokenizer thread.)
        await eventually(
            lambda: batcher.queue_depth == 5 and queued_engine_jobs(batcher) == 1,
            "both requests to be accepted and the prefetched batch handed to the engine pool",
        )
        doomed.cancel()
        await asyncio.gather(doomed, return_exceptions=True)
        scorer.release.set()
        await first
        assert (await kept).shape == (1,)
        assert scorer.entry_points == [("run", 2), ("run", 1)]  # "x" and "y" never reached the engine
        assert value(metrics, "plaudit_dropped_items_total", reason="cancelled") == 2.0
        assert value(metrics, "plaudit_batch_size_items_sum") == 3.0  # what the engine ran

    with_batcher(scorer, body, engine_workers=1, prefetch_batches=1, max_wait_ms=200)


def test_a_failed_batch_with_two_workers_fails_only_its_own_requests():
    async def body(batcher: Batcher, metrics: ServiceMetrics) -> None:
        results = await asyncio.gather(
            *(batcher.submit(pairs(f"item {i}")) for i in range(4)), return_exceptions=True
        )
        assert all(isinstance(r, ScoringFailed) for r in results)
        assert batcher.alive and batcher.queue_depth == 0

    with_batcher(FailingScorer(delay_s=0.05), body, engine_workers=2, max_batch_items=1)


def test_item_and_token_limits_split_batches():
    async def body(batcher: Batcher, metrics: ServiceMetrics) -> tuple[float, float]:
        await batcher.submit(pairs(*["one two three four five"] * 5, prompt="p"))  # 9 tokens each
        return value(metrics, "plaudit_batch_size_items_count"), value(
            metrics, "plaudit_batch_size_tokens_sum"
        )

    assert with_batcher(DeterministicScorer(), body, max_batch_items=2) == (3.0, 45.0)
    assert with_batcher(DeterministicScorer(), body, max_batch_tokens=27) == (2.0, 45.0)


def test_a_full_queue_refuses_new_items():
    scorer = HeldScorer()

    async def body(batcher: Batcher, metrics: ServiceMetrics) -> str:
        running = asyncio.create_task(batcher.submit(pairs("a", "b")))
        await eventually(lambda: batcher.queue_depth == 2, "the first request")
        with pytest.raises(QueueFullError) as refused:
            await batcher.submit(pairs("c", "d"))
        scorer.release.set()
        await running
        assert batcher.queue_depth == 0
        await batcher.submit(pairs("c", "d"))  # room again
        return refused.value.message

    message = with_batcher(scorer, body, max_queue_items=3, max_items_per_request=2)
    assert "max_queue_items=3" in message


def test_a_failed_batch_fails_every_request_in_it_and_the_batcher_carries_on():
    async def body(batcher: Batcher, metrics: ServiceMetrics) -> list[BaseException | np.ndarray]:
        results = await asyncio.gather(
            *(batcher.submit(pairs(f"r{i}")) for i in range(4)), return_exceptions=True
        )
        assert batcher.alive and batcher.queue_depth == 0
        results.extend(await asyncio.gather(batcher.submit(pairs("again")), return_exceptions=True))
        return results

    results = with_batcher(FailingScorer(delay_s=0.05), body)
    assert len(results) == 5
    for result in results:
        assert isinstance(result, ScoringFailed)
        assert str(result) == "scoring failed while scoring: engine failure (test engine 'failing')"


def test_cancelled_requests_are_dropped_before_inference():
    scorer = HeldScorer()

    async def body(batcher: Batcher, metrics: ServiceMetrics) -> tuple[float, float, float]:
        first = asyncio.create_task(batcher.submit(pairs("first")))
        await eventually(lambda: value(metrics, "plaudit_batch_size_items_count") == 1, "the first batch")
        doomed = asyncio.create_task(batcher.submit(pairs("x", "y", "z")))
        # Its items wait in the queue: with no prefetch slot none is taken while the first runs.
        # (A prefetched batch's skip has its own test above.)
        await eventually(lambda: len(batcher._waiting) == 3, "the doomed request to be queued")
        doomed.cancel()
        with pytest.raises(asyncio.CancelledError):
            await doomed
        assert not batcher._waiting
        scorer.release.set()
        await first
        await batcher.submit(pairs("after"))
        return (
            value(metrics, "plaudit_dropped_items_total", reason="cancelled"),
            value(metrics, "plaudit_batch_size_items_count"),
            value(metrics, "plaudit_batch_size_items_sum"),
        )

    assert with_batcher(scorer, body, prefetch_batches=0) == (3.0, 2.0, 2.0)


def test_expired_requests_fail_with_deadline_exceeded_and_never_run():
    async def body(batcher: Batcher, metrics: ServiceMetrics) -> tuple[float, float]:
        with pytest.raises(DeadlineExceeded):
            await batcher.submit(pairs("late"), deadline=time.monotonic() - 1)
        first = asyncio.create_task(batcher.submit(pairs("first")))
        await eventually(lambda: value(metrics, "plaudit_batch_size_items_count") == 1, "the first batch")
        with pytest.raises(DeadlineExceeded, match="deadline exceeded"):
            await batcher.submit(pairs("a", "b"), deadline=time.monotonic() + 0.05)
        await first
        assert batcher.queue_depth == 0
        # "a" and "b" may wait in a prefetched batch behind the first one; that batch counts
        # their drop in the engine thread when its turn comes, which can be after `first` is back.
        await eventually(lambda: not batcher._running, "the prefetched batch's turn")
        return value(metrics, "plaudit_batch_size_items_sum"), value(
            metrics, "plaudit_dropped_items_total", reason="deadline"
        )

    ran, dropped = with_batcher(DeterministicScorer(delay_s=0.3), body)
    assert ran == 1.0
    assert dropped == 3.0  # "late" (dropped while tokenizing) and "a", "b"


class HeldTokenizer(DeterministicScorer):
    """Tokenizes only once `release` is set, so a deadline can pass while items are with it."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def encode(self, pairs: Sequence[TextPair]) -> list[Encoded]:
        assert self.release.wait(10), "the test never released the tokenizer"
        return super().encode(pairs)


def test_items_whose_deadline_passes_while_tokenizing_count_as_dropped():
    # CI once saw this race in the test above: the deadline passed before the items left
    # the tokenizer, and the drop went uncounted.
    scorer = HeldTokenizer()

    async def body(batcher: Batcher, metrics: ServiceMetrics) -> tuple[float, float]:
        with pytest.raises(DeadlineExceeded, match="deadline exceeded"):
            await batcher.submit(pairs("a", "b", "c"), deadline=time.monotonic() + 0.05)
        assert batcher.queue_depth == 0
        scorer.release.set()
        await batcher.submit(pairs("d", "e"))  # the tokenizer finishes the late items first
        assert batcher.queue_depth == 0
        return value(metrics, "plaudit_dropped_items_total", reason="deadline"), value(
            metrics, "plaudit_batch_size_items_sum"
        )

    assert with_batcher(scorer, body) == (3.0, 2.0)


def test_a_deadline_that_expires_as_its_batch_finishes_fails_only_that_request():
    # The race: the engine's result and the deadline timer reach the event loop in the same
    # iteration. The timer cancels the request's future before the batch task hands out
    # scores, so the batch must skip that future, not fail everything outstanding.
    scorer = HeldScorer()

    async def body(batcher: Batcher, metrics: ServiceMetrics) -> None:
        # Two items, so the request goes through batches (a lone item would skip them): one
        # batch each (max_batch_items=1), the first running and the second prefetched. The
        # deadline only has to outlast the few loop steps up to the block below.
        deadline = time.monotonic() + 1.0
        late = asyncio.create_task(batcher.submit(pairs("late", "later"), deadline=deadline))
        await eventually(
            lambda: scorer.started == 1 and queued_engine_jobs(batcher) == 1, "the late request's batches"
        )
        waiting = asyncio.create_task(batcher.submit(pairs("waiting")))
        await eventually(lambda: len(batcher._waiting) == 1, "the second request")
        assert not late.done(), "the deadline passed before the test could block the loop"
        # Block the loop while the engine finishes both batches and the deadline passes. (The
        # deadline's timer is set a moment after `deadline`: hence the margin.)
        scorer.release.set()
        assert scorer.wait_until(lambda: scorer.finished == 2), "the engine did not finish"
        while time.monotonic() < deadline + 0.05:
            time.sleep(max(0.0, deadline + 0.05 - time.monotonic()))
        with pytest.raises(DeadlineExceeded):
            await late
        scores = await waiting
        assert scores.shape == (1,)
        assert batcher.alive and batcher.queue_depth == 0
        assert value(metrics, "plaudit_batch_size_items_count") == 3

    with_batcher(scorer, body, max_batch_items=1)


def test_a_dead_collector_fails_waiting_requests_and_reports_not_alive():
    scorer = HeldScorer()

    async def body(batcher: Batcher, metrics: ServiceMetrics) -> None:
        first = asyncio.create_task(batcher.submit(pairs("first")))
        await eventually(lambda: value(metrics, "plaudit_batch_size_items_count") == 1, "the first batch")
        waiting = asyncio.create_task(batcher.submit(pairs("second")))
        await eventually(lambda: batcher.queue_depth == 2, "the second request")
        assert batcher.alive
        batcher._collector.cancel()  # type: ignore[union-attr]  # the worker dies unexpectedly
        with pytest.raises(NotReady, match="stopped unexpectedly"):
            await waiting
        assert not batcher.alive and batcher.queue_depth == 0
        # The first item's engine job is still running (held); its caller hears when it ends.
        assert not first.done()
        scorer.release.set()
        with pytest.raises(NotReady, match="stopped unexpectedly"):
            await first
        with pytest.raises(NotReady):
            await batcher.submit(pairs("third"))

    with_batcher(scorer, body)


def test_stop_after_the_collector_died_of_a_bug_still_stops_cleanly():
    async def main() -> None:
        batcher = Batcher(DeterministicScorer(), Settings(engine="deterministic"), ServiceMetrics())
        batcher.start()
        batcher._waiting.append(object())  # type: ignore[arg-type]  # a bug: an item the collector can't read
        batcher._wake()
        await eventually(lambda: not batcher.alive, "the collector to die")
        await batcher.stop()  # must not re-raise the collector's error
        assert batcher._engine_pool is not None and batcher._engine_pool._shutdown
        with pytest.raises(NotReady):
            await batcher.submit(pairs("late"))

    asyncio.run(main())


def test_stop_fails_outstanding_requests_and_waits_for_the_running_batch():
    async def main() -> None:
        batcher = Batcher(
            DeterministicScorer(delay_s=0.2), Settings(engine="deterministic"), ServiceMetrics()
        )
        batcher.start()
        first = asyncio.create_task(batcher.submit(pairs("first")))
        await eventually(lambda: batcher.queue_depth == 1, "the request")
        await batcher.stop()
        with pytest.raises(NotReady, match="shutting down"):
            await first
        assert not batcher.alive
        with pytest.raises(NotReady):
            await batcher.submit(pairs("late"))

    asyncio.run(main())


def test_drain_finishes_queued_and_running_items_then_stops():
    async def main() -> None:
        metrics = ServiceMetrics()
        scorer = HeldScorer()
        batcher = Batcher(scorer, Settings(engine="deterministic"), metrics)
        batcher.start()
        running = asyncio.create_task(batcher.submit(pairs("first")))
        await eventually(lambda: value(metrics, "plaudit_batch_size_items_count") == 1, "the first batch")
        queued = [asyncio.create_task(batcher.submit(pairs(f"queued {i}", "and another"))) for i in range(3)]
        await eventually(lambda: batcher.queue_depth == 7, "the queued requests")

        draining = asyncio.create_task(batcher.drain(timeout_s=30))
        await eventually(lambda: not batcher.accepting, "the drain to begin")
        with pytest.raises(NotReady, match="being replaced"):
            await batcher.submit(pairs("too late"))
        assert batcher.alive  # still scoring what it accepted
        assert not draining.done()  # the first item is still running

        scorer.release.set()
        assert await draining is True
        results = [await running, *[await task for task in queued]]
        want = [DeterministicScorer().score(pairs("first"))] + [
            DeterministicScorer().score(pairs(f"queued {i}", "and another")) for i in range(3)
        ]
        for got, expected in zip(results, want, strict=True):
            np.testing.assert_allclose(got, expected, atol=1e-5)
        assert value(metrics, "plaudit_batch_size_items_sum") == 7.0
        assert not batcher.alive and batcher.queue_depth == 0
        with pytest.raises(NotReady):
            await batcher.submit(pairs("after"))

    asyncio.run(main())


def test_drain_of_an_idle_batcher_stops_it_at_once():
    async def main() -> None:
        batcher = Batcher(DeterministicScorer(), Settings(engine="deterministic"), ServiceMetrics())
        batcher.start()
        await batcher.submit(pairs("one"))
        assert await batcher.drain(timeout_s=0) is True
        assert not batcher.alive

    asyncio.run(main())


def test_drain_that_times_out_fails_what_is_left_like_stop():
    scorer = HeldScorer()

    async def body(batcher: Batcher, metrics: ServiceMetrics) -> None:
        slow = asyncio.create_task(batcher.submit(pairs("slow")))
        await eventually(lambda: scorer.started == 1, "the first item to reach the engine")
        waiting = asyncio.create_task(batcher.submit(pairs("behind it")))
        await eventually(lambda: batcher.queue_depth == 2, "both requests")
        # The engine is held: nothing can be answered before the drain's timeout.
        draining = asyncio.create_task(batcher.drain(timeout_s=0.05))
        await eventually(lambda: batcher.queue_depth == 0, "the drain to give up and fail what is left")
        with pytest.raises(NotReady, match="shutting down"):
            await waiting
        # Like stop, it waits for the running item, whose caller hears when its job ends.
        assert not draining.done() and not slow.done()
        scorer.release.set()
        assert await draining is False
        with pytest.raises(NotReady, match="shutting down"):
            await slow
        assert not batcher.alive and batcher.queue_depth == 0
        assert scorer.events == ["start", "end"]  # the failed request never reached the engine

    with_batcher(scorer, body)


@pytest.mark.parametrize(("waste", "batches"), [(0.1, 2), (100.0, 1)])
def test_padding_cap_keeps_a_long_item_out_of_a_batch_of_short_ones(waste: float, batches: int):
    texts = ["short answer one", "short answer two", "short answer six", "a long answer " * 40]
    want = DeterministicScorer().score(pairs(*texts))

    async def body(batcher: Batcher, metrics: ServiceMetrics) -> tuple[np.ndarray, float]:
        got = await batcher.submit(pairs(*texts))
        return got, value(metrics, "plaudit_batch_size_items_count")

    got, ran = with_batcher(DeterministicScorer(), body, max_padding_waste=waste)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert ran == batches
