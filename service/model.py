"""The served model, kept behind one small holder so that it can be swapped atomically.

Routes take the `LoadedModel` once per request (its scorer and batcher travel together),
so a later hot-swap only has to assign `ModelHolder.current`; requests already running
finish on the model they started with. Each request holds the model's `InFlight` count
while it runs, so the swap knows when the old model is no longer used.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

from model_store.scoring import Scorer
from service.batching import Batcher
from service.errors import NotReady
from service.settings import DEFAULT_MAX_BATCH_ITEMS

LoadState = Literal["loading", "ready", "failed", "stopped"]


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What is being served, as /v1/models reports it."""

    name: str
    version: str
    engine: str
    device: str
    precision: str
    max_length: int | None
    aliases: tuple[str, ...] = ()  # those pointing at this version when it was loaded
    # The store it came from (None for the test engines): /v1/models reads the aliases
    # there on each call, since a CLI promote or rollback moves them without a reload.
    store_root: str | None = None
    engine_workers: int = 1  # batches run at once (Settings.engine_layout)
    threads_per_call: int = 1
    max_batch_items: int = DEFAULT_MAX_BATCH_ITEMS  # items per engine call at most (Settings.engine_layout)
    lone_call_threads: int | None = None  # threads of a lone item on an idle engine, when it gets its own


class InFlight:
    """How many requests are using one model right now.

    A request takes its model before it reaches the batcher, so the batcher's own queue
    cannot see it yet; this count can, and a swap waits for it to reach zero before it
    drains and closes the old model.
    """

    def __init__(self) -> None:
        self.count = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @contextmanager
    def hold(self) -> Iterator[None]:
        self.count += 1
        self._idle.clear()
        try:
            yield
        finally:
            self.count -= 1
            if self.count == 0:
                self._idle.set()

    async def wait_idle(self, timeout_s: float) -> bool:
        """True once no request holds the model; False if some still do after `timeout_s`."""
        if self.count == 0:
            return True
        try:
            await asyncio.wait_for(self._idle.wait(), max(0.0, timeout_s))
        except TimeoutError:
            return False
        return True


@dataclass(frozen=True, slots=True)
class LoadedModel:
    info: ModelInfo
    scorer: Scorer
    batcher: Batcher
    requests: InFlight = field(default_factory=InFlight, compare=False, repr=False)

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def version(self) -> str:
        return self.info.version


class ModelHolder:
    """Holds the one model the app serves, and why there is none when there is none."""

    def __init__(self) -> None:
        self.current: LoadedModel | None = None
        self.state: LoadState = "loading"
        self.problem: str | None = None
        self._on_set: list[Callable[[], None]] = []

    def set(self, model: LoadedModel) -> None:
        self.current = model
        self.state = "ready"
        self.problem = None
        for callback in self._on_set:
            callback()

    def when_set(self, callback: Callable[[], None]) -> None:
        """Call `callback()` each time a model begins to be served (a load or a swap), and now if
        one already is."""
        self._on_set.append(callback)
        if self.current is not None:
            callback()

    def mark_failed(self, problem: str) -> None:
        self.state = "failed"
        self.problem = problem

    @property
    def ready(self) -> bool:
        return self.current is not None and self.current.batcher.alive

    @property
    def broken(self) -> bool:
        """A model was being served and its batcher died of a bug: only a reload (of the same
        version, if need be) or a restart brings the service back."""
        return self.state == "ready" and self.current is not None and not self.current.batcher.alive

    def why_not_ready(self) -> str:
        if self.state == "loading":
            return "the model is still loading; retry shortly"
        if self.state == "failed":
            return f"the model failed to load: {self.problem}"
        if self.state == "stopped":
            return "the service is shutting down"
        return "the batcher is not running (it stopped unexpectedly; see the server log)"

    def get(self) -> LoadedModel:
        """The model to use for one request, or NotReady (503)."""
        model = self.current
        if model is None or not model.batcher.alive:
            # A failed load stays failed until a reload: a client told to retry in 1 s would
            # retry every second for good.
            raise NotReady(self.why_not_ready(), retry_after_s=None if self.state == "failed" else 1)
        return model

    async def close(self) -> None:
        model, self.current = self.current, None
        self.state = "stopped"
        if model is not None:
            await model.batcher.stop()
            model.scorer.close()
