"""Typed dependencies: what a route needs, read from the lifespan state of its app.

They are `async def` so FastAPI calls them on the event loop instead of a worker thread.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, TypedDict

from fastapi import Depends, Request

from service.auth import ApiKeyTable
from service.feedback_state import FeedbackStoreHolder
from service.lifecycle import ModelSwapper
from service.metrics import ServiceMetrics
from service.model import LoadedModel, ModelHolder
from service.settings import Settings
from service.workers import WorkerGroup


class AppState(TypedDict):
    """What the lifespan yields; every request sees it as `request.state`."""

    settings: Settings
    metrics: ServiceMetrics
    holder: ModelHolder
    swapper: ModelSwapper
    workers: WorkerGroup | None  # the other processes of a multi-worker server; None if one
    feedback: FeedbackStoreHolder
    api_keys: ApiKeyTable


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.state.settings
    return settings


async def get_metrics(request: Request) -> ServiceMetrics:
    metrics: ServiceMetrics = request.state.metrics
    return metrics


async def get_holder(request: Request) -> ModelHolder:
    holder: ModelHolder = request.state.holder
    return holder


async def get_model(holder: Annotated[ModelHolder, Depends(get_holder)]) -> AsyncIterator[LoadedModel]:
    """The model serving this request; 503 (NotReady) while none is.

    Taken once per request and held until the request is done, so a hot swap retires
    the old model only after every request that took it has finished.
    """
    model = holder.get()
    with model.requests.hold():
        yield model


async def get_swapper(request: Request) -> ModelSwapper:
    swapper: ModelSwapper = request.state.swapper
    return swapper


async def get_workers(request: Request) -> WorkerGroup | None:
    workers: WorkerGroup | None = request.state.workers
    return workers


async def get_feedback(request: Request) -> FeedbackStoreHolder:
    feedback: FeedbackStoreHolder = request.state.feedback
    return feedback


async def get_request_id(request: Request) -> str:
    return str(getattr(request.state, "request_id", ""))


@dataclass(frozen=True, slots=True)
class ScoringContext:
    """What a scoring route needs, in one dependency.

    FastAPI resolves each dependency anew for every request, and a generator dependency
    (as `get_model` is) costs an exit stack and a shielded cancel scope on top: on a small
    /v1/score request that was more of the server's CPU than the route's own work. So the
    scoring routes take this plain one and `dispatch.score_pairs` takes the model itself,
    holding it exactly while it scores.
    """

    holder: ModelHolder
    settings: Settings
    feedback: FeedbackStoreHolder
    request_id: str


async def get_scoring_context(request: Request) -> ScoringContext:
    """503 (NotReady) while no model is ready, before the body's limits are checked, as
    with `get_model`."""
    state = request.state
    holder: ModelHolder = state.holder
    holder.get()  # NotReady while none is ready; score_pairs takes the model itself later
    return ScoringContext(
        holder=holder,
        settings=state.settings,
        feedback=state.feedback,
        request_id=str(getattr(state, "request_id", "")),
    )


SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[ServiceMetrics, Depends(get_metrics)]
HolderDep = Annotated[ModelHolder, Depends(get_holder)]
ModelDep = Annotated[LoadedModel, Depends(get_model)]
SwapperDep = Annotated[ModelSwapper, Depends(get_swapper)]
WorkersDep = Annotated[WorkerGroup | None, Depends(get_workers)]
FeedbackDep = Annotated[FeedbackStoreHolder, Depends(get_feedback)]
RequestIdDep = Annotated[str, Depends(get_request_id)]
ScoringDep = Annotated[ScoringContext, Depends(get_scoring_context)]
