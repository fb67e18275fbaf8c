"""Dynamic batching: items from concurrent requests share engine calls.

Pipeline, per request:  submit -> encode (tokenizer thread pool) -> waiting list ->
collector task picks a batch -> Scorer.run (engine_workers inference threads) -> scores back.

Tokenizing happens in its own threads, so it overlaps inference. The collector never
waits for a fuller batch when nothing else is on its way: it lingers (up to
max_wait_ms, counted from the oldest waiting item) only while other accepted requests
are still being tokenized. While the engine runs a batch, new items simply pile up and
form the next one. With engine_workers > 1, up to that many batches run at once (for
engines whose calls overlap well, e.g. separate GPU streams or single-threaded CPU calls);
bench_serving measures the engine at 1 and N concurrent calls before you pick N.

Prefetch: up to prefetch_batches more batches are formed ahead and wait in the engine
pool's own queue, so a worker that finishes one starts the next at once. Without it the
worker idles while its result goes back to the loop and the collector forms the next
batch, and under load the loop is busy with HTTP: on 2 cores about 5% of the machine sat
idle that way, and prefetch served x1.05-1.11 the items/s (README, Benchmarks: Prefetch).
A waiting batch skips, when its turn comes, the items of requests that gave up meanwhile.

Failure rules: a batch that fails fails every request with an item in it (none is left
hanging) and the collector goes on with the next batch. Cancelled and expired requests
have their waiting items dropped before they reach the engine. If the collector task
itself dies, `alive` turns False and every outstanding request is failed.

Retiring (a model swap): `drain` stops accepting new requests, lets every accepted one
finish (tokenizing, waiting and running items alike), then stops; `stop` fails what is
still outstanding at once (shutdown).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import numpy as np

from model_store.scoring import Encoded, Scorer, ScoringError, TextPair
from service.batch_packing import is_full, padded_tokens, select_batch
from service.errors import DeadlineExceeded, NotReady, QueueFullError, ScoringFailed, ServiceError
from service.metrics import ServiceMetrics
from service.settings import DEFAULT_MAX_BATCH_ITEMS

log = logging.getLogger("plaudit.batching")

A = TypeVar("A")
R = TypeVar("R")


class BatchLimits(Protocol):
    """The part of `Settings` the batcher reads."""

    @property
    def max_batch_items(self) -> int | None: ...
    @property
    def max_batch_tokens(self) -> int: ...
    @property
    def max_padding_waste(self) -> float: ...
    @property
    def max_wait_ms(self) -> float: ...
    @property
    def max_queue_items(self) -> int: ...
    @property
    def tokenize_workers(self) -> int: ...
    @property
    def engine_workers(self) -> int | None: ...
    @property
    def prefetch_batches(self) -> int: ...


@dataclass(eq=False)
class _Request:
    n_items: int
    deadline: float | None  # time.monotonic() value
    future: asyncio.Future[np.ndarray]
    scores: np.ndarray = field(init=False)
    remaining: int = field(init=False)
    finished: bool = False
    # True while its items are with the tokenizer: not yet waiting, so a drop then counts
    # all of them (a deadline shorter than tokenizing must still show in the metric).
    tokenizing: bool = False
    # Why its waiting items were dropped ("cancelled", "deadline", "failed"); a batch that
    # was already handed to the engine pool counts its own when its turn comes.
    dropped_as: str = "failed"

    def __post_init__(self) -> None:
        self.scores = np.zeros(self.n_items, dtype=np.float32)
        self.remaining = self.n_items


@dataclass(eq=False)
class _Item:
    request: _Request
    index: int
    encoded: Encoded
    enqueued_at: float

    @property
    def n_tokens(self) -> int:
        return self.encoded.n_tokens


class Batcher:
    """Owns the thread pools and the collector task for one loaded Scorer."""

    def __init__(self, scorer: Scorer, limits: BatchLimits, metrics: ServiceMetrics | None = None) -> None:
        self.scorer = scorer
        # None is Settings' "auto", which the model loader resolves (model_loading.batch_limits);
        # limits that never went through it get the general default.
        self.max_batch_items = limits.max_batch_items or DEFAULT_MAX_BATCH_ITEMS
        self.max_batch_tokens = limits.max_batch_tokens
        self.max_padding_waste = limits.max_padding_waste
        self.max_wait_s = limits.max_wait_ms / 1000.0
        self.max_queue_items = limits.max_queue_items
        self._tokenize_workers = limits.tokenize_workers
        # Likewise, such limits run one batch at a time.
        self._engine_workers = limits.engine_workers or 1
        self._prefetch_batches = limits.prefetch_batches
        self.metrics = metrics or ServiceMetrics()
        self._waiting: list[_Item] = []
        self._live: set[_Request] = set()
        self._accepted_items = 0  # items of live requests: tokenizing, waiting or running
        self._tokenizing = 0  # requests inside Scorer.encode right now
        self._wakeup: asyncio.Event | None = None
        self._idle: asyncio.Event | None = None  # set while no request is outstanding
        self._collector: asyncio.Task[None] | None = None
        self._tokenize_pool: ThreadPoolExecutor | None = None
        self._engine_pool: ThreadPoolExecutor | None = None
        # Slots for batches handed to the engine pool: one per worker, plus the prefetched.
        self._free_workers: asyncio.Semaphore | None = None
        self._running: set[asyncio.Task[None]] = set()  # batches in the engine pool, running or queued
        self._stopping = False
        self._accepting = True

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        """Start the collector task; call from inside the running event loop."""
        if self._collector is not None:
            raise RuntimeError("Batcher.start() called twice")
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._tokenize_pool = ThreadPoolExecutor(
            self._tokenize_workers, thread_name_prefix="plaudit-tokenize"
        )
        self._engine_pool = ThreadPoolExecutor(self._engine_workers, thread_name_prefix="plaudit-engine")
        self._free_workers = asyncio.Semaphore(self._engine_workers + self._prefetch_batches)
        self._collector = asyncio.get_running_loop().create_task(
            self._collect(), name="plaudit-batch-collector"
        )
        self._collector.add_done_callback(self._on_collector_exit)

    async def stop(self) -> None:
        """Fail what is still outstanding, stop the collector, wait for the running batch."""
        if self._stopping:
            return
        self._stopping = True
        if self._collector is not None:
            self._collector.cancel()
            # asyncio.wait, not await: a collector that died of an error (already logged by
            # _on_collector_exit) must not re-raise here and skip the shutdown below.
            await asyncio.wait([self._collector])
        self._fail_all(NotReady("the service is shutting down; retry on another instance"))
        if self._tokenize_pool is not None:
            # Queued encodes still run (briefly); their requests are already answered.
            self._tokenize_pool.shutdown(wait=False)
        if self._engine_pool is not None:
            # Let running batches finish, so the scorer is not closed under them; prefetched
            # ones have nobody left to answer.
            await asyncio.to_thread(self._engine_pool.shutdown, True, cancel_futures=True)
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)

    async def drain(self, timeout_s: float) -> bool:
        """Stop accepting requests, wait for every accepted one to be answered, then stop.

        True if all were answered within `timeout_s`; if not, `stop` fails the rest
        (NotReady), as at shutdown. The batcher stays `alive` while it drains, so items
        still being tokenized are queued and scored as usual.
        """
        self._accepting = False
        drained = True
        if self._idle is not None and self._accepted_items:
            try:
                await asyncio.wait_for(self._idle.wait(), timeout_s)
            except TimeoutError:
                drained = False
                log.warning(
                    "drain timed out after %.1f s with %d item(s) outstanding; failing them",
                    timeout_s,
                    self._accepted_items,
                )
        await self.stop()
        return drained

    @property
    def accepting(self) -> bool:
        """Whether `submit` takes new requests (False once draining or stopped)."""
        return self._accepting and self.alive

    @property
    def alive(self) -> bool:
        return self._collector is not None and not self._collector.done() and not self._stopping

    @property
    def queue_depth(self) -> int:
        """Items accepted and not yet answered."""
        return self._accepted_items

    # -- the request side -------------------------------------------------------------

    async def submit(self, pairs: Sequence[TextPair], deadline: float | None = None) -> np.ndarray:
        """Score `pairs` (float32 [len(pairs)], in order), sharing batches with other requests.

        `deadline` is a time.monotonic() value. Raises QueueFullError, DeadlineExceeded,
        ScoringFailed or NotReady; if the caller is cancelled, the items are dropped.
        """
        if not pairs:
            return np.zeros(0, dtype=np.float32)
        if not self.alive:
            raise NotReady("the batcher is not running")
        if not self._accepting:
            raise NotReady("this model version is being replaced; retry")
        n = len(pairs)
        if self._accepted_items + n > self.max_queue_items:
            raise QueueFullError(
                f"queue full: {self._accepted_items} items are waiting and this request adds {n}, "
                f"over max_queue_items={self.max_queue_items}; retry after a short pause"
            )
        loop = asyncio.get_running_loop()
        request = _Request(n_items=n, deadline=deadline, future=loop.create_future())
        alone = self._can_run_alone(n) and (deadline is None or deadline > time.monotonic())
        self._accept(request)
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            async with asyncio.timeout(timeout):
                if alone:
                    return await self._run_alone(request, pairs[0])
                request.tokenizing = True  # until _enqueue puts its items in the queue
                encoded = await self._encode(list(pairs))
                self._enqueue(request, encoded)
                return await request.future
        except TimeoutError:
            self._abandon(request, "deadline")
            late = self._deadline_message(request)
        except asyncio.CancelledError:
            self._abandon(request, "cancelled")
            raise
        except Exception:
            # ServiceErrors, and any bug: either way the request's queue slots come back.
            self._abandon(request, "failed")
            raise
        finally:
            # If the request was failed while this coroutine was elsewhere (tokenizing),
            # its future holds an exception nobody awaits: mark it seen to keep logs clean.
            if request.future.done() and not request.future.cancelled():
                request.future.exception()
        # Only a passed deadline gets here. Raised outside the except clause, which would make
        # the TimeoutError its __context__: that one's traceback leads to the asyncio.timeout,
        # to the task running this coroutine and so back to this error, a cycle that kept the
        # request's items alive until a full garbage collection.
        raise DeadlineExceeded(late)

    def _can_run_alone(self, n_items: int) -> bool:
        """One item, nothing else accepted and no batch in the engine: there is nothing to
        batch it with, and it may take every core (`Scorer.run_alone`)."""
        assert self._free_workers is not None
        return n_items == 1 and self._accepted_items == 0 and not self._running and not self._free_workers.locked()

    async def _run_alone(self, request: _Request, pair: TextPair) -> np.ndarray:
        """Tokenize and score a lone item in one engine-thread job.

        The usual path hands an item to the tokenizer thread, back to the loop, to the
        collector and on to an engine thread: about 0.5 ms of wake-ups that buy nothing
        when no other item is there to share a batch with (bench_serving's idle scenario).
        The job holds an engine worker until it ends, even if its caller gives up.
        """
        assert self._free_workers is not None and self._engine_pool is not None
        await self._free_workers.acquire()  # free: checked in the same loop step
        job = self._engine_pool.submit(self._encode_and_run, pair)
        loop = asyncio.get_running_loop()
        job.add_done_callback(lambda _: _call_soon_threadsafe(loop, self._free_workers_release))
        self.metrics.batch_triggers.labels(trigger="nothing_coming").inc()
        self.metrics.queue_wait.observe(0.0)
        self.metrics.batch_items.observe(1)  # at its start, as for any batch
        try:
            scores, n_tokens, tokenize_s, inference_s = await asyncio.wrap_future(job)
        except Exception as exc:
            log.error("a lone item failed", exc_info=exc)
            error = ScoringFailed(_engine_failure_message("scoring", exc))
            self._fail(request, error, "failed")
            raise error from None
        self.metrics.tokenize.observe(tokenize_s)
        self.metrics.batch_tokens.observe(n_tokens)
        self.metrics.inference.observe(inference_s)
        if not self._finish(request):
            return await request.future  # stopped meanwhile: raises what stop() set
        request.scores[0] = scores[0]
        return request.scores

    def _free_workers_release(self) -> None:
        assert self._free_workers is not None
        self._free_workers.release()
        self._wake()  # the collector may be waiting for this worker

    def _encode_and_run(self, pair: TextPair) -> tuple[np.ndarray, int, float, float]:
        """In an engine thread: (scores, tokens, tokenize seconds, inference seconds)."""
        started = time.perf_counter()
        encoded = _checked_encoding(self.scorer.encode([pair]), 1)
        tokenized = time.perf_counter()
        # Nothing else was accepted and no batch was running (_can_run_alone): the engine is idle.
        scores = _checked_scores(self.scorer.run_alone(encoded), 1)
        return scores, encoded[0].n_tokens, tokenized - started, time.perf_counter() - tokenized

    async def _encode(self, pairs: list[TextPair]) -> list[Encoded]:
        assert self._tokenize_pool is not None
        self._tokenizing += 1
        try:
            encoded, seconds = await asyncio.get_running_loop().run_in_executor(
                self._tokenize_pool, _timed, self.scorer.encode, pairs
            )
            encoded = list(encoded)  # an engine's bad return fails here, as "while tokenizing"
        except Exception as exc:
            log.error("Scorer.encode failed", exc_info=exc)
            raise ScoringFailed(_engine_failure_message("tokenizing", exc)) from None
        finally:
            self._tokenizing -= 1
            self._wake()
        self.metrics.tokenize.observe(seconds)
        try:
            return _checked_encoding(encoded, len(pairs))
        except ScoringError as exc:
            raise ScoringFailed(str(exc)) from None

    def _accept(self, request: _Request) -> None:
        self._live.add(request)
        self._accepted_items += request.n_items
        if self._idle is not None:
            self._idle.clear()
        self.metrics.queue_depth.set(self._accepted_items)

    def _enqueue(self, request: _Request, encoded: list[Encoded]) -> None:
        if request.finished:
            return
        if not self.alive:
            raise NotReady("the batcher stopped while this request was being tokenized")
        now = time.monotonic()
        self._waiting.extend(_Item(request, i, e, now) for i, e in enumerate(encoded))
        request.tokenizing = False
        self._wake()

    def _finish(self, request: _Request) -> bool:
        """Mark `request` answered (once); False if it already was."""
        if request.finished:
            return False
        request.finished = True
        self._live.discard(request)
        self._accepted_items -= request.n_items
        self.metrics.queue_depth.set(self._accepted_items)
        if self._accepted_items == 0 and self._idle is not None:
            self._idle.set()
        return True

    def _drop_waiting(self, request: _Request, reason: str) -> None:
        request.dropped_as = reason
        if request.tokenizing:
            # None of its items is waiting yet, and none will be (_enqueue skips a finished request).
            self.metrics.dropped_items.labels(reason=reason).inc(request.n_items)
            return
        kept = [it for it in self._waiting if it.request is not request]
        dropped = len(self._waiting) - len(kept)
        if dropped:
            self._waiting = kept
            self.metrics.dropped_items.labels(reason=reason).inc(dropped)

    def _abandon(self, request: _Request, reason: str) -> None:
        """The caller gave up (cancelled, timed out): drop its items, answer nothing."""
        if self._finish(request):
            if not request.future.done():
                request.future.cancel()
            self._drop_waiting(request, reason)

    def _fail(self, request: _Request, error: ServiceError, reason: str) -> None:
        if self._finish(request):
            if not request.future.done():
                request.future.set_exception(error)
            self._drop_waiting(request, reason)

    def _fail_all(self, error: ServiceError) -> None:
        for request in list(self._live):
            self._fail(request, error, "failed")

    def _deadline_message(self, request: _Request) -> str:
        return (
            f"deadline exceeded: {request.n_items} item(s) were not scored in time "
            f"({request.n_items - request.remaining} done); the service is overloaded or the engine is slow"
        )

    def _wake(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()

    # -- the collector ----------------------------------------------------------------

    async def _collect(self) -> None:
        assert self._free_workers is not None
        while True:
            await self._wait_for_items()
            # Items keep piling up while every slot is taken (each worker busy and the
            # prefetched batches formed); that pile is the next batch, so batches grow
            # exactly when the engine is the bottleneck.
            await self._free_workers.acquire()
            trigger = await self._linger()
            batch = self._take_batch()
            if not batch:
                self._free_workers.release()
                continue
            self.metrics.batch_triggers.labels(trigger=trigger).inc()
            task = asyncio.get_running_loop().create_task(self._run_batch(batch))
            self._running.add(task)
            task.add_done_callback(self._on_batch_done)

    def _on_batch_done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        assert self._free_workers is not None
        self._free_workers.release()
        if not task.cancelled() and task.exception() is not None:
            # _run_batch answers every failure itself; reaching here is a bug in it.
            log.critical("a batch task failed unexpectedly", exc_info=task.exception())
            self._fail_all(ScoringFailed("scoring failed unexpectedly; see the server log"))

    async def _wait_for_items(self) -> None:
        assert self._wakeup is not None
        while not self._waiting:
            self._wakeup.clear()
            await self._wakeup.wait()

    async def _linger(self) -> str:
        """Wait for a fuller batch only while more items are known to be on their way.

        Returns why the wait ended: "full", "max_wait" or "nothing_coming" (no other
        request is being tokenized, so waiting could only add latency).
        """
        assert self._wakeup is not None
        while self._waiting:
            if is_full(self._waiting, self.max_batch_items, self.max_batch_tokens):
                return "full"
            if self._tokenizing == 0:
                return "nothing_coming"
            left = self._waiting[0].enqueued_at + self.max_wait_s - time.monotonic()
            if left <= 0:
                return "max_wait"
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), left)
            except TimeoutError:
                return "max_wait"
        return "nothing_coming"

    def _take_batch(self) -> list[_Item]:
        now = time.monotonic()
        for request in {it.request for it in self._waiting}:
            if request.deadline is not None and request.deadline <= now:
                self._fail(request, DeadlineExceeded(self._deadline_message(request)), "deadline")
        batch = select_batch(self._waiting, self.max_batch_items, self.max_batch_tokens, self.max_padding_waste)
        taken = set(map(id, batch))
        self._waiting = [it for it in self._waiting if id(it) not in taken]
        return batch

    async def _run_batch(self, batch: list[_Item]) -> None:
        assert self._engine_pool is not None
        try:
            ran, scores, seconds = await asyncio.get_running_loop().run_in_executor(
                self._engine_pool, self._run_on_engine, batch
            )
        except Exception as exc:
            requests = {it.request for it in batch if not it.request.finished}
            log.error("a batch of %d items (%d requests) failed", len(batch), len(requests), exc_info=exc)
            error = ScoringFailed(_engine_failure_message("scoring", exc))
            for request in requests:
                self._fail(request, error, "failed")
            return
        if not ran:
            return
        self.metrics.inference.observe(seconds)
        for item, score in zip(ran, scores, strict=True):
            request = item.request
            if request.finished:
                continue  # cancelled or failed while its batch was running
            request.scores[item.index] = score
            request.remaining -= 1
            # A deadline or a disconnect cancels the future at once, but the request is
            # marked finished only when its coroutine runs again: this batch may come first.
            if request.remaining == 0 and self._finish(request) and not request.future.done():
                request.future.set_result(request.scores)

    def _run_on_engine(self, batch: list[_Item]) -> tuple[list[_Item], np.ndarray, float]:
        """In an engine thread, when the batch's turn comes: the items it scored, their scores
        and the engine call's seconds.

        A prefetched batch may have waited behind another, so items whose request has gone
        meanwhile are dropped here rather than scored. (`finished` is set on the loop and only
        ever turns True; one that turns as this reads it costs a wasted score, no more.)
        """
        live: list[_Item] = []
        for item in batch:
            if item.request.finished:
                self.metrics.dropped_items.labels(reason=item.request.dropped_as).inc()
            else:
                live.append(item)
        if not live:
            return live, np.zeros(0, dtype=np.float32), 0.0
        started = time.monotonic()
        for item in live:
            self.metrics.queue_wait.observe(started - item.enqueued_at)
        self.metrics.batch_items.observe(len(live))
        self.metrics.batch_tokens.observe(padded_tokens(live))
        scores, seconds = _timed(self.scorer.run, [it.encoded for it in live])
        return live, _checked_scores(scores, len(live)), seconds

    def _on_collector_exit(self, task: asyncio.Task[None]) -> None:
        if self._stopping:
            return
        error = None if task.cancelled() else task.exception()
        log.critical("the batch collector stopped unexpectedly; the service is not ready", exc_info=error)
        self._fail_all(NotReady("the batcher stopped unexpectedly; the service needs a restart"))


def _checked_encoding(encoded: Sequence[Encoded], n_items: int) -> list[Encoded]:
    """The engine's encoding of `n_items` items, as a list; ScoringError if it has another count."""
    encoded = encoded if isinstance(encoded, list) else list(encoded)  # _encode already made one
    if len(encoded) != n_items:
        raise ScoringError(f"the engine encoded {len(encoded)} items for a request of {n_items}")
    return encoded


def _checked_scores(scores: Sequence[float] | np.ndarray, n_items: int) -> np.ndarray:
    """The engine's scores for a batch of `n_items`, as float32; ScoringError if it has another count."""
    checked = np.asarray(scores, dtype=np.float32).reshape(-1)
    if checked.shape[0] != n_items:
        raise ScoringError(f"engine returned {checked.shape[0]} scores for a batch of {n_items} items")
    return checked


def _call_soon_threadsafe(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
    with contextlib.suppress(RuntimeError):  # the loop closed first (an abandoned job at exit)
        loop.call_soon_threadsafe(callback)


def _timed(fn: Callable[[A], R], arg: A) -> tuple[R, float]:
    """Run `fn(arg)` (in a worker thread) and say how long it took there."""
    started = time.perf_counter()
    result = fn(arg)
    return result, time.perf_counter() - started


def _engine_failure_message(stage: str, exc: BaseException) -> str:
    # ScoringError messages are written for users (e.g. a score-count mismatch); any
    # other exception text may leak internals, so it stays in the log.
    if isinstance(exc, ScoringError):
        return f"scoring failed while {stage}: {exc}"
    return f"scoring failed while {stage}: the engine raised an unexpected error; see the server log"
