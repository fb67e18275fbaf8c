"""What every scoring route does between checking its limits (service.limits) and shaping
its answer: score its pairs through the batcher under the request's deadline, giving up
(and dropping its items) if the client disconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence

import numpy as np
from fastapi import Request

from model_store.scoring import TextPair
from service.errors import ClientDisconnected
from service.model import LoadedModel, ModelHolder
from service.settings import Settings


async def _until_disconnected(request: Request) -> None:
    # The body is already read, so the next message only arrives when the client leaves.
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def score_pairs(
    request: Request, holder: ModelHolder, settings: Settings, pairs: Sequence[TextPair]
) -> tuple[LoadedModel, np.ndarray]:
    """The model that scored `pairs`, and their scores in order. The deadline counts from
    when the request arrived.

    The model is taken and held in one step (no await between them): a hot swap waits for
    held models' requests before it drains their batcher, so the items cannot meet a
    batcher that stopped accepting.
    """
    received_at = getattr(request.state, "received_at", None) or time.monotonic()
    deadline = received_at + settings.request_timeout_s
    model = holder.get()
    with model.requests.hold():
        return model, await _score_until_disconnected(request, model, pairs, deadline)


async def _score_until_disconnected(
    request: Request, model: LoadedModel, pairs: Sequence[TextPair], deadline: float
) -> np.ndarray:
    scoring = asyncio.ensure_future(model.batcher.submit(list(pairs), deadline))
    watcher = asyncio.ensure_future(_until_disconnected(request))
    try:
        await asyncio.wait({scoring, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if scoring.done():
            return scoring.result()
        raise ClientDisconnected("the client disconnected before its scores were ready")
    finally:
        for task in (scoring, watcher):
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            elif not task.cancelled():
                task.exception()  # mark as retrieved; a real error was already raised above
        # An error raised by `scoring` holds this frame in its traceback, and this frame holds
        # `scoring`, which holds the error: a cycle that kept every refused request's items (a
        # 429 under a burst) alive until a full garbage collection. Drop the frame's side.
        del scoring, watcher, task
