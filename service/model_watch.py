"""Follow the store: swap in a new version when the configured reference moves to one.

Triton's "poll" model control, for one model: every `Settings.model_poll_interval_s` the
service resolves its configured reference (NAME -> its production alias, NAME@ALIAS) and,
when that names another version than the one served, reloads through the same ModelSwapper
as `POST /v1/models/reload` (load beside, warm up, swap, retire the old one).

This is how a promote reaches every worker of a multi-worker server: the request lands on
one worker, which moves the alias and swaps at once; the others see the alias move at their
next check. A version that is refused (bad checksums, fails to load) is tried again after
FIRST_RETRY_S, then after twice as long each time up to MAX_RETRY_S, unless the reference
moves elsewhere first: a bad promote does not make every worker retry a doomed load every
few seconds, and a passing cause (memory short while two models are loaded, a store read
error) does not leave one worker on the old version for good. A model whose batcher has
died is reloaded too, so a worker with polling on heals itself.
"""

from __future__ import annotations

import asyncio
import logging
import time

from model_store.engines import TEST_ENGINES
from model_store.errors import StoreError
from model_store.references import parse_ref
from model_store.store import ModelStore
from service.errors import ServiceError
from service.lifecycle import ModelSwapper, ReloadInProgress
from service.model import ModelHolder
from service.settings import Settings

log = logging.getLogger("plaudit.model_watch")

FIRST_RETRY_S = 30.0  # after a version is refused, before it is tried again
MAX_RETRY_S = 600.0  # the wait doubles with each refusal of the same version, up to this


def follows_store(settings: Settings) -> bool:
    """Whether this service checks the store: polling is on, a stored model is served (the
    test engines serve none) and its reference can move (NAME:VERSION cannot)."""
    if settings.model_poll_interval_s <= 0 or settings.engine in TEST_ENGINES:
        return False
    try:
        return parse_ref(settings.model).version is None
    except StoreError:
        return False  # the first load reports the bad reference


class StoreFollower:
    """One service's checks of the store; `check_once` is one step of `run`."""

    def __init__(self, settings: Settings, holder: ModelHolder, swapper: ModelSwapper) -> None:
        self.settings = settings
        self.holder = holder
        self.swapper = swapper
        self._store = ModelStore(settings.store_dir)
        self._refused: str | None = None  # the version last refused, tried again at _retry_at
        self._retry_at = 0.0  # time.monotonic()
        self._retry_s = FIRST_RETRY_S
        self._unresolvable: str | None = None  # the last resolve error, logged once

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.settings.model_poll_interval_s)
            try:
                await self.check_once()
            except Exception:  # the next check may succeed; serving goes on either way
                log.exception("checking the store for a new version of %r failed", self.settings.model)

    async def check_once(self) -> bool:
        """Resolve the reference; reload if it names a version not served. True if swapped."""
        served = self.holder.current
        if (served is None and self.holder.state != "failed") or self.swapper.busy:
            return False  # first load still running, shutting down, or a swap under way
        try:
            wanted = await asyncio.to_thread(self._store.resolve, self.settings.model)
        except StoreError as exc:
            if str(exc) != self._unresolvable:
                log.warning("cannot resolve %r in the store (still serving what was loaded): %s", self.settings.model, exc)
                self._unresolvable = str(exc)
            return False
        self._unresolvable = None
        served_now = served is not None and (served.name, served.version) == (wanted.name, str(wanted.version))
        if served_now and not self.holder.broken:
            self._refused = None
            return False
        if wanted.ref == self._refused and time.monotonic() < self._retry_at:
            return False
        if served_now:
            log.warning("the batcher of %s has died; loading it afresh", wanted.ref)
        else:
            log.info("%s now resolves to %s; reloading", self.settings.model, wanted.ref)
        try:
            outcome = await self.swapper.reload()
        except ReloadInProgress:
            return False  # an admin request got there first
        except ServiceError as exc:
            self._retry_s = min(2 * self._retry_s, MAX_RETRY_S) if wanted.ref == self._refused else FIRST_RETRY_S
            self._refused, self._retry_at = wanted.ref, time.monotonic() + self._retry_s
            log.error(
                "did not swap to %s: %s; trying again in %.3g s unless the alias moves",
                wanted.ref, exc.message, self._retry_s,
            )
            return False
        return outcome.swapped
