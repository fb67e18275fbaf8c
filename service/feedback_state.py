"""The feedback store as the running service holds it: opened at startup, purged, closed.

The store is optional-but-default: it is on unless PLAUDIT_FEEDBACK_ENABLED=false. When it
cannot be opened (a PostgreSQL not up yet, a SQLite path that cannot be written), the service
still scores; the feedback routes answer 503 with Retry-After and /v1/compare does not remember,
while feedback requests and /v1/compare try to open it again (at most every FEEDBACK_RETRY_S),
so feedback comes back by itself once the database answers. Database errors of a running
store become the same 503 (database_errors_as_503).
Every store call is blocking database I/O, so it runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING

from service.errors import ServiceError
from service.feedback.records import comparison_key as comparison_key  # where the store keeps its key scheme
from service.settings import Settings, env_name

if TYPE_CHECKING:
    from service.feedback import FeedbackStore, ScoredComparison

log = logging.getLogger("plaudit.service")

# Expired comparisons are refused by the store whatever their age on disk; purging only
# reclaims space, so a few passes per retention period (at most hourly) is plenty.
MAX_PURGE_INTERVAL_S = 3600.0
MIN_PURGE_INTERVAL_S = 1.0
# How long /v1/compare waits for its comparisons to be remembered before it answers anyway
# (the remembering goes on in its thread): a slow database must not stall scoring.
REMEMBER_WAIT_S = 2.0


class FeedbackUnavailable(ServiceError):
    status_code = 503
    code = "feedback_unavailable"


# While the store could not be opened, a feedback request (or /v1/compare) tries again at most
# this often; 503s meanwhile carry it as Retry-After. Read when the store is opened at start.
FEEDBACK_RETRY_S = 5.0
RETRY_SOON = {"Retry-After": "1"}  # a passing database problem; disabled feedback gets none
_NOT_OPENED = "the feedback store could not be opened (see the server log); it will be retried"


@contextlib.contextmanager
def database_errors_as_503(failed: str) -> Iterator[None]:
    """Turn a failing database (unreachable, locked past its timeout, disk full, a read-only
    replica after a failover...) or a pool with no free connection into FeedbackUnavailable
    (503 + Retry-After). `failed` starts the log line, e.g. "feedback not stored"."""
    from sqlalchemy.exc import InternalError, OperationalError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    try:
        yield
    except (OperationalError, InternalError) as exc:
        reason = (str(exc.orig or exc).splitlines() or [""])[0]
        log.warning("%s: the database failed: %s", failed, reason)
        raise FeedbackUnavailable("the feedback database is unavailable; retry later", headers=RETRY_SOON) from None
    except PoolTimeout:
        log.warning("%s: no database connection came free in time", failed)
        raise FeedbackUnavailable("the feedback database is busy; retry later", headers=RETRY_SOON) from None


class FeedbackStoreHolder:
    """The open store, or why there is none.

    With `reopen` (the store could not be opened at start), a request that finds no store tries
    `reopen` again in a thread, one try at a time and at most once per `retry_s`, so the service
    recovers by itself once its database answers."""

    def __init__(
        self,
        store: FeedbackStore | None,
        problem: str | None = None,
        *,
        reopen: Callable[[], FeedbackStore] | None = None,
        retry_s: float = FEEDBACK_RETRY_S,
    ) -> None:
        self._store = store
        self.problem = problem
        self._reopen = reopen if store is None else None
        self.retry_s = retry_s
        self._next_try = time.monotonic() + retry_s  # the start has just tried
        self._opening: asyncio.Task[None] | None = None
        self._purging: asyncio.Task[None] | None = None
        self.remembering: set[asyncio.Future[None]] = set()  # outlived their request's wait

    @property
    def store(self) -> FeedbackStore | None:
        """The open store, or None."""
        return self._store

    def store_or_reopen(self) -> FeedbackStore | None:
        """The open store, or None after starting a reopen in the background when one is due:
        /v1/compare, which remembers only while there is a store, brings it back this way too
        without waiting for it."""
        if self._store is None:
            self._reopen_if_due()
        return self._store

    def start_purging(self) -> None:
        """Purge expired comparisons in the background until `close()`."""
        if self._store is not None and self._purging is None:
            self._purging = asyncio.create_task(
                purge_comparisons_periodically(self), name="plaudit-comparison-purge"
            )

    def get(self) -> FeedbackStore:
        """The store, or FeedbackUnavailable (503) saying why there is none."""
        if self._store is None:
            raise self._unavailable()
        return self._store

    async def acquire(self) -> FeedbackStore:
        """The store; if there is none, first a reopen when one is due (waiting for one already
        under way). FeedbackUnavailable (503, with Retry-After while retrying) if still none."""
        if self._store is None:
            self._reopen_if_due()
            if self._opening is not None:
                await asyncio.shield(self._opening)  # a request that goes away leaves it to finish
        return self.get()

    def _unavailable(self) -> FeedbackUnavailable:
        if self._reopen is None:
            return FeedbackUnavailable(self.problem or "the feedback store is not open")
        retry_after = max(1, math.ceil(self.retry_s))
        return FeedbackUnavailable(f"{_NOT_OPENED}: try again in {retry_after} s", {"Retry-After": str(retry_after)})

    def _reopen_if_due(self) -> None:
        if self._reopen is None or self._opening is not None or time.monotonic() < self._next_try:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # read outside the event loop: nothing to schedule on
            return
        self._opening = asyncio.create_task(self._try_reopen(self._reopen), name="plaudit-feedback-reopen")

    async def _try_reopen(self, reopen: Callable[[], FeedbackStore]) -> None:
        try:
            store = await asyncio.to_thread(reopen)
        except Exception as exc:
            log.warning(
                "feedback store still unavailable (next try in %g s): %s: %s", self.retry_s, type(exc).__name__, exc
            )
            return
        finally:
            self._next_try = time.monotonic() + self.retry_s
            self._opening = None
        if self._reopen is None:  # closed meanwhile
            await asyncio.to_thread(store.close)
            return
        self._store, self._reopen, self.problem = store, None, None
        log.warning("feedback store opened on a retry: %s; feedback is accepted again", store.url)
        self.start_purging()

    async def close(self) -> None:
        self._reopen = None
        if self._opening is not None:  # a reopen under way closes what it opens (see _try_reopen)
            await asyncio.wait({self._opening}, timeout=REMEMBER_WAIT_S)
        if self._purging is not None:
            self._purging.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._purging
            self._purging = None
        store, self._store = self._store, None
        self.problem = "the service is shutting down"
        if self.remembering:  # comparisons answered before they were stored: let them land
            await asyncio.wait(set(self.remembering), timeout=REMEMBER_WAIT_S)
        if store is not None:
            await asyncio.to_thread(store.close)


async def open_feedback_store(settings: Settings) -> FeedbackStoreHolder:
    """Open (and migrate) the configured store in a thread and start purging it; never raises.
    A store that cannot be opened is retried on demand (see FeedbackStoreHolder). Close the
    holder to stop."""
    url = settings.feedback_url()
    if url is None:
        return FeedbackStoreHolder(
            None, f"feedback is disabled on this server ({env_name('feedback_enabled')}=false)"
        )
    from service.feedback import FeedbackStore, FeedbackStoreError

    retention = timedelta(hours=settings.comparison_retention_hours)

    def open_store() -> FeedbackStore:
        return FeedbackStore.open(url, comparison_retention=retention)

    try:
        store = await asyncio.to_thread(open_store)
    except FeedbackStoreError as exc:  # its message hides any password, but not hosts or paths
        log.error("feedback store unavailable (retried on demand, every %g s at most): %s", FEEDBACK_RETRY_S, exc)
        # Feedback clients are product UIs: the reason (the driver's words) stays in the log.
        return FeedbackStoreHolder(None, reopen=open_store, retry_s=FEEDBACK_RETRY_S)
    except Exception as exc:
        log.error("feedback store unavailable: unexpected %s", type(exc).__name__, exc_info=exc)
        return FeedbackStoreHolder(None, reopen=open_store, retry_s=FEEDBACK_RETRY_S)
    log.info("feedback store: %s (comparisons kept %g hours)", store.url, settings.comparison_retention_hours)
    holder = FeedbackStoreHolder(store)
    holder.start_purging()
    return holder


def purge_interval_s(retention: timedelta) -> float:
    return min(MAX_PURGE_INTERVAL_S, max(MIN_PURGE_INTERVAL_S, retention.total_seconds() / 4))


async def purge_comparisons_periodically(holder: FeedbackStoreHolder) -> None:
    """Delete expired comparisons now and then, until cancelled; a failed pass is only logged."""
    store = holder.store
    if store is None:
        return
    interval = purge_interval_s(store.comparison_retention)
    while True:
        try:
            purged = await asyncio.to_thread(store.purge_comparisons)
            if purged:
                log.info("purged %d expired comparisons from the feedback store", purged)
        except Exception as exc:
            log.warning("could not purge expired comparisons: %s: %s", type(exc).__name__, exc)
        await asyncio.sleep(interval)


async def remember_comparisons(
    holder: FeedbackStoreHolder, comparisons: Sequence[ScoredComparison], wait_s: float = REMEMBER_WAIT_S
) -> bool:
    """Keep what /v1/compare scored so that a later choice resolves. Never raises: the
    comparison is answered either way; a failure is logged (without the texts).

    Waits at most `wait_s`; True if the remembering finished by then. If not, it goes on in its
    thread and a choice on these comparisons resolves once it has."""
    store = holder.store
    if store is None or not comparisons:
        return True

    def remember_all() -> None:
        for comparison in comparisons:
            try:
                if not store.remember_comparison(comparison):
                    log.warning(
                        "request_id %s was used again for another comparison; a choice on it will be "
                        "refused (the client should send a fresh X-Request-ID with each /v1/compare)",
                        comparison.request_id,
                    )
            except Exception as exc:
                log.warning(
                    "comparison %s was scored but not remembered, so a choice on it cannot be resolved: %s: %s",
                    comparison.request_id,
                    type(exc).__name__,
                    exc,
                )

    job = asyncio.ensure_future(asyncio.to_thread(remember_all))
    done, _ = await asyncio.wait({job}, timeout=wait_s)
    if job in done:
        return True
    log.warning(
        "remembering %d comparison(s) took over %.3g s; answered before they were stored "
        "(is the feedback database slow?)", len(comparisons), wait_s,
    )
    holder.remembering.add(job)  # a reference, until it ends
    job.add_done_callback(holder.remembering.discard)
    return False
