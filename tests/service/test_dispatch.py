"""score_pairs: it takes the current model and holds it exactly while scoring (no HTTP)."""

from __future__ import annotations

import asyncio

import pytest
from starlette.requests import Request

from model_store.engines.deterministic import DeterministicScorer
from model_store.scoring import TextPair
from service.batching import Batcher
from service.dispatch import score_pairs
from service.errors import NotReady
from service.metrics import ServiceMetrics
from service.model import LoadedModel, ModelHolder, ModelInfo
from service.settings import Settings


def _request() -> Request:
    async def receive() -> dict:
        await asyncio.Event().wait()  # the client never leaves
        return {"type": "http.disconnect"}

    return Request({"type": "http", "method": "POST", "path": "/v1/score", "headers": [], "state": {}}, receive)


def test_score_pairs_holds_the_model_it_scored_with_until_the_scores_are_back() -> None:
    async def main() -> None:
        settings = Settings(engine="deterministic")
        scorer = DeterministicScorer(version="1", delay_s=0.05)
        batcher = Batcher(scorer, settings, ServiceMetrics())
        batcher.start()
        info = ModelInfo(name="m", version="1", engine="deterministic", device="cpu", precision="fp32", max_length=512)
        holder = ModelHolder()
        holder.set(LoadedModel(info=info, scorer=scorer, batcher=batcher))
        model = holder.get()
        pairs = [TextPair("p", "a"), TextPair("p", "b b")]

        scoring = asyncio.create_task(score_pairs(_request(), holder, settings, pairs))
        await asyncio.sleep(0.02)  # inside the engine's 50 ms
        assert model.requests.count == 1
        used, scores = await scoring
        assert used is model and model.requests.count == 0
        assert scores.tolist() == pytest.approx(scorer.run(scorer.encode(pairs)).tolist())
        await batcher.stop()

        with pytest.raises(NotReady):  # no live batcher: nothing is taken or held
            await score_pairs(_request(), holder, settings, pairs)
        assert model.requests.count == 0

    asyncio.run(main())
