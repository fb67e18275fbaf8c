"""Model lifecycle at run time: promote a stored version, hot-swap the served model.

A swap loads the new version beside the old one, off the event loop (resolve, verify
checksums, load, warm up), starts its batcher and scores one pair through it, and only
then replaces `ModelHolder.current`, in one assignment. Requests that took the old model
finish on it and name it; the old model is retired once they have (its InFlight count
reaches zero, its batcher drains), and then its scorer is closed. A version that fails
verification or warm-up is refused and the old one keeps serving, untouched. One swap
runs at a time; a second one is refused at once rather than queued.

The CLI path is `plaudit models promote NAME:V` (moves the alias in the store), then
`POST /v1/models/reload` (a running service re-resolves its configured model and swaps).
`POST /v1/models/{name}/promote` does both, and puts the alias back if the swap fails,
so the store and the service agree. With several worker processes a request reaches one
of them; the others follow the store (service.model_watch).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass

from model_store.engines import TEST_ENGINES
from model_store.errors import ChecksumError, ModelNotFoundError, StoreError
from model_store.references import DEFAULT_ALIAS
from model_store.scoring import WARMUP_PAIR
from model_store.store import ModelStore, ModelVersion
from service.batching import Batcher
from service.errors import InvalidInput, NotReady, ServiceError
from service.metrics import ServiceMetrics
from service.model import LoadedModel, ModelHolder
from service.model_loading import ModelLoadError, batch_limits, load_model, log_precision_note
from service.settings import Settings, env_name

log = logging.getLogger("plaudit.lifecycle")

# Requests carry a deadline of request_timeout_s; this covers writing their responses.
DRAIN_MARGIN_S = 5.0
# Errors whose own text says what is wrong with a version (anything else: its type too).
_DESCRIBED_ERRORS = (StoreError, ModelLoadError, ValueError, OSError, RuntimeError, ImportError)


class ReloadInProgress(ServiceError):
    status_code = 409
    code = "reload_in_progress"


class ChecksumRefused(ServiceError):
    """The version's files differ from those recorded when it was registered."""

    status_code = 409
    code = "checksum_failed"


class LoadRefused(ServiceError):
    """The version verified, but could not be loaded or warmed up."""

    status_code = 422
    code = "model_load_failed"


class ModelLookupFailed(ServiceError):
    status_code = 404
    code = "model_not_found"


class NoModelStore(ServiceError):
    """The service runs a test engine, which serves no stored model."""

    status_code = 409
    code = "no_model_store"


@dataclass(frozen=True, slots=True)
class ServedRef:
    name: str
    version: str


@dataclass(frozen=True, slots=True)
class SwapOutcome:
    """What a reload or promote did: `old` is None when no model was being served."""

    old: ServedRef | None
    new: ServedRef
    swapped: bool


def _ref(model: LoadedModel) -> ServedRef:
    return ServedRef(name=model.name, version=model.version)


def _describe(exc: BaseException) -> str:
    """What a refused swap tells its (admin) caller: the message of the errors Plaudit's own
    loading code raises, but never the text of anything else (an engine's internals, paths)."""
    if isinstance(exc, _DESCRIBED_ERRORS) and str(exc):
        return str(exc)
    return f"an unexpected {type(exc).__name__}; see the server log"


async def retire(model: LoadedModel, timeout_s: float) -> bool:
    """Let every request that took `model` finish, drain and stop its batcher, close its scorer.

    True if all of them finished within `timeout_s`; those that had not are answered 503
    (retry), as at shutdown.
    """
    give_up = time.monotonic() + timeout_s
    released = await model.requests.wait_idle(timeout_s)
    drained = await model.batcher.drain(max(0.0, give_up - time.monotonic()))
    model.scorer.close()  # the batcher has stopped, so no batch is running on it
    return released and drained


class ModelSwapper:
    """Reloads and promotions for one app; holds the lock that keeps swaps one at a time."""

    def __init__(
        self,
        settings: Settings,
        metrics: ServiceMetrics,
        holder: ModelHolder,
        drain_timeout_s: float | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.holder = holder
        self.drain_timeout_s = (
            drain_timeout_s if drain_timeout_s is not None else settings.request_timeout_s + DRAIN_MARGIN_S
        )
        self._lock = asyncio.Lock()
        self._retiring: set[asyncio.Task[bool]] = set()

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    async def reload(self) -> SwapOutcome:
        """Re-resolve the configured model (e.g. NAME -> its production alias); swap if it changed."""
        async with self._exclusive():
            return await self._reload()

    async def promote(self, name: str, version: int, alias: str = DEFAULT_ALIAS) -> SwapOutcome:
        """Point `name@alias` at `version` in the store (checksums verified), then reload.

        If the reload fails (a refused version, or anything else before the swap), the
        alias goes back to where it was, so the store and the service agree.
        """
        if self.settings.engine in TEST_ENGINES:
            raise NoModelStore(
                f"this service runs the test engine {self.settings.engine!r}, which serves no stored "
                "model; promote with `plaudit models promote` against a service on onnx or torch"
            )
        async with self._exclusive():
            self._served_or_none()  # refuse before touching the store, not after
            store = ModelStore(self.settings.store_dir)
            with _store_errors(f"cannot promote {name}:{version} to {alias}"):
                previous = (await asyncio.to_thread(store.aliases, name)).get(alias)
                await asyncio.to_thread(store.promote, name, version, alias)
            log.info("promoted %s:%s to %s@%s (was %s)", name, version, name, alias, previous)
            try:
                return await self._reload()
            except Exception as exc:
                # _reload fails only before the swap (retiring the old model never raises).
                if previous == version:
                    raise
                note = await asyncio.to_thread(_restore_alias, store, name, alias, previous)
                log.warning("promotion of %s:%s failed: %s", name, version, note)
                if isinstance(exc, ServiceError):
                    exc.message = f"{exc.message}; {note}"
                raise

    async def aclose(self) -> None:
        """Wait for retirements still running (shutdown)."""
        if self._retiring:
            await asyncio.gather(*self._retiring, return_exceptions=True)

    # -- internals ----------------------------------------------------------------------

    @asynccontextmanager
    async def _exclusive(self) -> AsyncIterator[None]:
        # Checked and taken with no await in between, so two callers cannot both pass.
        if self._lock.locked():
            raise ReloadInProgress("a reload is already in progress; retry when it has finished")
        async with self._lock:
            yield

    def _served_or_none(self) -> LoadedModel | None:
        """The model served now; None after a failed first load (a reload may recover it)."""
        old = self.holder.current
        if old is None and self.holder.state != "failed":
            # Loading: the first load is still running (and would race a swap); stopped: shutdown.
            raise NotReady(f"cannot swap models now: {self.holder.why_not_ready()}")
        return old

    async def _reload(self) -> SwapOutcome:
        old = self._served_or_none()
        if self.settings.engine in TEST_ENGINES:
            if old is None:
                raise NotReady(f"cannot reload: {self.holder.why_not_ready()}")
            return SwapOutcome(old=_ref(old), new=_ref(old), swapped=False)

        store = ModelStore(self.settings.store_dir)
        with _store_errors(f"cannot resolve the configured model {self.settings.model!r} ({env_name('model')})"):
            mv = await asyncio.to_thread(store.resolve, self.settings.model)
        if old is not None and old.name == mv.name and old.version == str(mv.version) and old.batcher.alive:
            return SwapOutcome(old=_ref(old), new=_ref(old), swapped=False)
        # From here on a swap, also to the version served when its batcher has died (a fresh copy).

        new = await self._load_beside(mv, old)
        self.holder.set(new)  # the swap: requests from here on take `new`
        self.metrics.set_model(new.name, new.version)
        was = f"{old.name}:{old.version}" if old is not None else "nothing"
        log.info("now serving %s:%s (was %s)", new.name, new.version, was)
        log_precision_note(new.info)
        if old is not None:
            await self._retire(old)
        return SwapOutcome(old=_ref(old) if old is not None else None, new=_ref(new), swapped=True)

    async def _load_beside(self, mv: ModelVersion, old: LoadedModel | None) -> LoadedModel:
        """Load, verify and warm up `mv` next to `old`; refuse it (old untouched) if any step fails."""
        keeps = f"{old.name}:{old.version} keeps serving" if old is not None else "nothing is served"
        pinned = self.settings.model_copy(update={"model": mv.ref})
        try:
            scorer, info = await asyncio.to_thread(load_model, pinned)
        except ChecksumError as exc:
            log.error("refused %s: %s", mv.ref, exc)
            raise ChecksumRefused(f"refused {mv.ref}: {exc}; {keeps}") from None
        except Exception as exc:
            log.error("refused %s: loading or warm-up failed", mv.ref, exc_info=exc)
            raise LoadRefused(
                f"refused {mv.ref}: it could not be loaded and warmed up: {_describe(exc)}; {keeps}"
            ) from None
        batcher = Batcher(scorer, batch_limits(self.settings, info), self.metrics)
        batcher.start()
        try:
            # One pair through the new batcher: the whole serving path works before the swap.
            await batcher.submit([WARMUP_PAIR], deadline=time.monotonic() + self.settings.request_timeout_s)
        except BaseException as exc:
            await batcher.stop()
            scorer.close()
            if isinstance(exc, ServiceError):
                raise LoadRefused(
                    f"refused {mv.ref}: a warm-up request through its batcher failed: {exc.message}; {keeps}"
                ) from None
            raise
        return LoadedModel(info=info, scorer=scorer, batcher=batcher)

    async def _retire(self, old: LoadedModel) -> None:
        # Shielded: if the admin request is cancelled, the old model is still retired.
        task = asyncio.create_task(retire(old, self.drain_timeout_s), name="plaudit-model-retire")
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)
        try:
            clean = await asyncio.shield(task)
        except Exception as exc:  # the new model serves already; this must not undo the swap
            log.error("retiring %s:%s failed", old.name, old.version, exc_info=exc)
            return
        if not clean:
            log.warning(
                "%s:%s was retired with requests still outstanding after %.1f s; they were answered 503",
                old.name,
                old.version,
                self.drain_timeout_s,
            )


@contextmanager
def _store_errors(doing: str) -> Iterator[None]:
    """Store errors as HTTP errors whose message says what was being done."""
    try:
        yield
    except ChecksumError as exc:
        raise ChecksumRefused(f"{doing}: {exc}; nothing was changed") from None
    except ModelNotFoundError as exc:
        raise ModelLookupFailed(f"{doing}: {exc}") from None
    except StoreError as exc:
        raise InvalidInput(f"{doing}: {exc}") from None


def _restore_alias(store: ModelStore, name: str, alias: str, previous: int | None) -> str:
    """Put `name@alias` back at `previous` after a refused promotion; say what happened."""
    if previous is None:
        return (
            f"{name}@{alias} was not set before and still points at the refused version "
            f"(the store cannot unset an alias); promote a good version to {alias}"
        )
    try:
        restored = store.rollback(name, alias)
    except StoreError as exc:
        log.error("could not roll %s@%s back to %s: %s", name, alias, previous, exc)
        return f"{name}@{alias} could not be rolled back to version {previous}: {exc}"
    if restored.version != previous:
        return f"{name}@{alias} was rolled back to version {restored.version} (it was at {previous})"
    return f"{name}@{alias} is back at version {previous}"
