"""POST /v1/feedback (scope feedback); GET /v1/feedback/export and /stats (scope admin)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Depends, Query, Response
from fastapi.responses import StreamingResponse

from service.auth import require_scope
from service.deps import FeedbackDep, HolderDep, RequestIdDep, SettingsDep
from service.errors import InvalidInput
from service.feedback_intake import record_feedback
from service.feedback_state import database_errors_as_503
from service.schemas import error_doc, error_responses
from service.schemas_feedback import FeedbackCreated, FeedbackRequest, FeedbackStatsResponse

router = APIRouter(
    prefix="/v1/feedback", tags=["feedback"], responses=error_responses(401, 403, 404, 408, 409, 413, 415, 422, 503)
)

REPLAY_HEADER = "Idempotent-Replayed"
JSONL_MEDIA_TYPE = "application/x-ndjson"
# Rows per worker-thread hop while exporting: bounds memory, amortizes the hop.
EXPORT_CHUNK_ROWS = 500

_ERRORS: dict[int | str, dict[str, Any]] = {
    404: error_doc("choice: no remembered /v1/compare with that request_id"),
    409: error_doc("feedback_id already used for a different body, or a choice on a request_id used twice"),
    413: error_doc("metadata or body too large"),
    422: error_doc("not exactly one feedback shape, or a bad field"),
    503: error_doc("feedback store disabled or unavailable (Retry-After when it is passing)"),
}


@router.post(
    "",
    status_code=201,
    response_model=FeedbackCreated,
    summary="Store one judgement: a like, a rating, a pair, or a choice on a /v1/compare result",
    dependencies=[Depends(require_scope("feedback"))],
    responses={
        200: {"model": FeedbackCreated, "description": "A replay: this feedback_id and body were already stored"},
        **_ERRORS,
    },
)
async def add_feedback(
    body: FeedbackRequest,
    response: Response,
    feedback: FeedbackDep,
    holder: HolderDep,
    settings: SettingsDep,
    request_id: RequestIdDep,
) -> FeedbackCreated:
    result = await record_feedback(body, await feedback.acquire(), holder.current, settings)
    if not result.created:
        response.status_code = 200
        response.headers[REPLAY_HEADER] = "true"
    row = result.row
    return FeedbackCreated(
        feedback_id=row.feedback_id,
        kind=row.kind,  # type: ignore[arg-type]  # the store only keeps the three kinds
        created_at=row.created_at,
        replayed=not result.created,
        request_id=request_id,
    )


@router.get(
    "/export",
    summary="Stored feedback as JSONL in training's shapes, oldest first, streamed",
    dependencies=[Depends(require_scope("admin"))],
    response_class=StreamingResponse,
    responses={200: {"content": {JSONL_MEDIA_TYPE: {}}}, 503: _ERRORS[503]},
)
async def export_feedback(
    feedback: FeedbackDep,
    since: Annotated[
        str | None, Query(description="Only rows stored at or after this ISO 8601 time (UTC if no offset).")
    ] = None,
    kind: Annotated[Literal["like", "rating", "pair"] | None, Query(description="Only this kind.")] = None,
) -> StreamingResponse:
    store = await feedback.acquire()
    rows = store.export(since=_parse_since(since), kind=kind)
    # The first chunk is read before answering, so a failing database is an error status
    # (503), not a 200 whose body stops short; later, the status has been sent.
    try:
        with database_errors_as_503("feedback export failed"):
            first = await asyncio.to_thread(_next_chunk, rows)
    except BaseException:
        await _close_in_thread(rows)
        raise
    return StreamingResponse(
        _chunks(first, rows),
        media_type=JSONL_MEDIA_TYPE,
        headers={"Content-Disposition": 'attachment; filename="feedback.jsonl"'},
    )


@router.get(
    "/stats",
    response_model=FeedbackStatsResponse,
    summary="Counts by kind and source, like rate, agreement between users",
    dependencies=[Depends(require_scope("admin"))],
    responses={503: _ERRORS[503]},
)
async def feedback_stats(
    feedback: FeedbackDep, settings: SettingsDep, request_id: RequestIdDep
) -> FeedbackStatsResponse:
    store = await feedback.acquire()
    with database_errors_as_503("feedback stats failed"):
        stats = await asyncio.to_thread(store.stats)
    return FeedbackStatsResponse(
        **stats, rating_scale=(settings.rating_min, settings.rating_max), request_id=request_id
    )


def _parse_since(since: str | None) -> datetime | None:
    if since is None or not since.strip():
        return None
    try:
        return datetime.fromisoformat(since.strip())
    except ValueError:
        raise InvalidInput(
            f"since: {since!r} is not an ISO 8601 date or time; use e.g. 2024-05-01 or 2024-05-01T12:00:00Z"
        ) from None


def _next_chunk(rows: Iterator[dict[str, Any]]) -> bytes:
    lines = []
    for row in rows:
        lines.append(json.dumps(row, ensure_ascii=False))
        if len(lines) >= EXPORT_CHUNK_ROWS:
            break
    return "".join(line + "\n" for line in lines).encode("utf-8")


async def _chunks(first: bytes, rows: Iterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    try:
        chunk = first
        while chunk:
            yield chunk
            chunk = await asyncio.to_thread(_next_chunk, rows)
    finally:
        await _close_in_thread(rows)


async def _close_in_thread(rows: Iterator[dict[str, Any]]) -> None:
    """End the export's read transaction, even when the client went away (a cancelled scope)."""
    close = getattr(rows, "close", None)
    if close is not None:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(close)
