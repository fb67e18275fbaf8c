"""POST /v1/score, /v1/compare, /v1/rank: parse, check limits, score through the batcher."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from fastapi import APIRouter, Request

from model_store.scoring import TextPair
from service.deps import ScoringContext, ScoringDep
from service.dispatch import score_pairs
from service.limits import enforce_limits
from service.feedback_state import comparison_key, remember_comparisons
from service.model import LoadedModel
from service.schemas import (
    CompareBatchResponse,
    CompareRequest,
    CompareResponse,
    CompareResult,
    Comparison,
    ModelRefOut,
    RankedResponse,
    RankRequest,
    RankResponse,
    ScoreRequest,
    ScoreResponse,
    error_responses,
)

if TYPE_CHECKING:
    from service.feedback import ScoredComparison

router = APIRouter(
    prefix="/v1", tags=["scoring"], responses=error_responses(401, 403, 408, 413, 415, 422, 429, 500, 503, 504)
)


def model_ref(model: LoadedModel) -> ModelRefOut:
    return ModelRefOut(name=model.name, version=model.version)


def sigmoid(x: float) -> float:
    """1 / (1 + e^-x) without overflow for large |x|."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


@router.post("/score", response_model=ScoreResponse, summary="Score (prompt, response) pairs")
async def score(body: ScoreRequest, request: Request, ctx: ScoringDep) -> ScoreResponse:
    # With PLAUDIT_SCORE_LANE on (the default), valid JSON bodies reach score_items through
    # service.score_lane instead; this route answers the rest and documents the endpoint.
    return await score_items(body, request, ctx)


async def score_items(body: ScoreRequest, request: Request, ctx: ScoringContext) -> ScoreResponse:
    """What POST /v1/score does with a parsed body, whichever way it came in."""
    texts = (
        (f"items.{i}.{field}", text)
        for i, item in enumerate(body.items)
        for field, text in (("prompt", item.prompt), ("response", item.response))
    )
    enforce_limits(len(body.items), texts, ctx.settings)
    pairs = [TextPair(item.prompt, item.response) for item in body.items]
    model, scores = await score_pairs(request, ctx.holder, ctx.settings, pairs)
    return ScoreResponse(scores=scores.tolist(), model=model_ref(model), request_id=ctx.request_id)


@router.post(
    "/compare",
    response_model=CompareResponse | CompareBatchResponse,
    summary="Probability that response_a is preferred to response_b",
)
async def compare(body: CompareRequest, request: Request, ctx: ScoringDep) -> CompareResponse | CompareBatchResponse:
    """Each comparison is remembered (before the answer goes out) so that a later POST
    /v1/feedback {request_id, choice} resolves to it; remembering never fails the comparison."""
    comparisons = body.as_comparisons()
    prefix = "comparisons.{i}." if body.comparisons is not None else ""
    texts = (
        (prefix.format(i=i) + field, getattr(c, field))
        for i, c in enumerate(comparisons)
        for field in ("prompt", "response_a", "response_b")
    )
    enforce_limits(2 * len(comparisons), texts, ctx.settings, unit="items (2 per comparison)")
    pairs = [TextPair(c.prompt, r) for c in comparisons for r in (c.response_a, c.response_b)]
    model, scored = await score_pairs(request, ctx.holder, ctx.settings, pairs)
    scores = scored.tolist()
    request_id, feedback = ctx.request_id, ctx.feedback
    results = [
        CompareResult(p_a_preferred=sigmoid(a - b), score_a=a, score_b=b)
        for a, b in zip(scores[0::2], scores[1::2], strict=True)
    ]
    if feedback.store_or_reopen() is not None:
        await remember_comparisons(feedback, scored_comparisons(body, comparisons, results, model, request_id))
    if body.comparisons is None:
        return CompareResponse(**results[0].model_dump(), model=model_ref(model), request_id=request_id)
    return CompareBatchResponse(results=results, model=model_ref(model), request_id=request_id)


def scored_comparisons(
    body: CompareRequest,
    comparisons: list[Comparison],
    results: list[CompareResult],
    model: LoadedModel,
    request_id: str,
) -> list[ScoredComparison]:
    from service.feedback import ScoredComparison

    single = body.comparisons is None
    return [
        ScoredComparison(
            request_id=comparison_key(request_id, None if single else i),
            prompt=c.prompt,
            response_a=c.response_a,
            response_b=c.response_b,
            score_a=r.score_a,
            score_b=r.score_b,
            model_name=model.name,
            model_version=model.version,
        )
        for i, (c, r) in enumerate(zip(comparisons, results, strict=True))
    ]


@router.post("/rank", response_model=RankResponse, summary="Order responses to one prompt, best first")
async def rank(body: RankRequest, request: Request, ctx: ScoringDep) -> RankResponse:
    texts = [("prompt", body.prompt)] + [(f"responses.{i}", r) for i, r in enumerate(body.responses)]
    enforce_limits(len(body.responses), texts, ctx.settings)
    pairs = [TextPair(body.prompt, r) for r in body.responses]
    model, scored = await score_pairs(request, ctx.holder, ctx.settings, pairs)
    scores = scored.tolist()
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    if body.top_n is not None:
        order = order[: body.top_n]
    results = [RankedResponse(index=i, score=scores[i]) for i in order]
    return RankResponse(results=results, model=model_ref(model), request_id=ctx.request_id)
