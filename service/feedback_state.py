"""The feedback store as the running service holds it: opened at startup, purged, closed.

The store is optional-but-default: it is on unless PLAUDIT_FEEDBACK_ENABLED=false. When it
cannot be opened (an unreachable PostgreSQL, a bad URL), the service still scores; the
feedback routes answer 503 naming the problem and /v1/compare stops remembering.
Every store call is blocking database I/O, so it runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
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


class FeedbackStoreHolder:
    """The open store, or why there is none."""

    def __init__(self, store: FeedbackStore | None, problem: str | None = None) -> None:
        self.store = store
        self.problem = problem
        self._purging: asyncio.Task[None] | None = None
        self.remembering: set[asyncio.Future[None]] = set()  # outlived their request's wait

    def start_purging(self) -> None:
        """Purge expired comparisons in the background until `close()`."""
        if self.store is not None and self._purging is None:
            self._purging = asyncio.create_task(
                purge_comparisons_periodically(self), name="plaudit-comparison-purge"
            )

    def get(self) -> FeedbackStore:
        """The store, or FeedbackUnavailable (503) saying why there is none."""
        if self.store is None:
            raise FeedbackUnavailable(self.problem or "the feedback store is not open")
        return self.store

    async def close(self) -> None:
        if self._purging is not None:
            self._purging.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._purging
            self._purging = None
        store, self.store = self.store, None
        self.problem = "the service is shutting down"
        if self.remembering:  # comparisons answered before they were stored: let them land
            await asyncio.wait(set(self.remembering), timeout=REMEMBER_WAIT_S)
        if store is not None:
            await asyncio.to_thread(store.close)


async def open_feedback_store(settings: Settings) -> FeedbackStoreHolder:
    """Open (and migrate) the configured store in a thread and start purging it; never raises.
    Close the holder to stop."""
    url = settings.feedback_url()
    if url is None:
        return FeedbackStoreHolder(
            None, f"feedback is disabled on this server ({env_name('feedback_enabled')}=false)"
        )
    from service.feedback import FeedbackStore, FeedbackStoreError

    retention = timedelta(hours=settings.comparison_retention_hours)
    try:
        store = await asyncio.to_thread(FeedbackStore.open, url, comparison_retention=retention)
    except FeedbackStoreError as exc:  # its message hides any password, but not hosts or paths
        log.error("feedback store unavailable: %s", exc)
        # Feedback clients are product UIs: the reason (the driver's words) stays in the log.
        return FeedbackStoreHolder(None, "the feedback store could not be opened; see the server log")
    except Exception as exc:
        log.error("feedback store unavailable: unexpected %s", type(exc).__name__, exc_info=exc)
        return FeedbackStoreHolder(None, "the feedback store could not be opened; see the server log")
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
