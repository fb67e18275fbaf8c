"""Liveness, readiness and metrics for orchestrators and Prometheus."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import APIRouter, Response

from service.deps import HolderDep, MetricsDep, RequestIdDep, WorkersDep
from service.errors import NotReady
from service.metrics import METRICS_CONTENT_TYPE
from service.schemas import HealthResponse, ModelRefOut, ReadyResponse, WorkersOut, error_doc, error_responses

# HEAD too, as load balancers and uptime checkers send it (uvicorn sends the head, no body).
PROBE_METHODS = ["GET", "HEAD"]
# 401 and 403 only where keys are on and PLAUDIT_OPEN_PROBES=false.
router = APIRouter(tags=["ops"], responses=error_responses(401, 403))

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])


def probe_route(path: str, **options: Any) -> Callable[[Endpoint], Endpoint]:
    """A route for each of PROBE_METHODS: one route with both would give its two OpenAPI
    operations one operationId (FastAPI warns of the duplicate, and clients generated from
    the document clash)."""

    def register(endpoint: Endpoint) -> Endpoint:
        for method in PROBE_METHODS:
            router.add_api_route(path, endpoint, methods=[method], **options)
        return endpoint

    return register


@probe_route(
    "/healthz",
    response_model=HealthResponse,
    summary="Liveness: 200 while the process can serve, loading included; 503 once its batcher has died",
    responses={503: error_doc("The batcher stopped unexpectedly: restart this process, or reload")},
)
async def healthz(holder: HolderDep, request_id: RequestIdDep) -> HealthResponse:
    if holder.broken:
        # Not ready would only take it out of rotation; an orchestrator restarts what is not alive.
        raise NotReady(
            "the batcher stopped unexpectedly (see the server log); restart this process or POST /v1/models/reload"
        )
    model = holder.current
    ref = ModelRefOut(name=model.name, version=model.version) if model is not None else None
    return HealthResponse(status="alive", model=ref, request_id=request_id)


@probe_route(
    "/readyz",
    response_model=ReadyResponse,
    summary="Readiness: 200 once the model is loaded and the batcher runs (in every worker), else 503",
    responses={503: error_doc("Not ready: loading, failed to load, batcher stopped, or a worker not ready")},
)
async def readyz(holder: HolderDep, workers: WorkersDep, request_id: RequestIdDep) -> ReadyResponse:
    model = holder.get()  # NotReady (503) says why: loading, failed, stopped
    group = None
    if workers is not None:
        # A few small local files, read on the loop: cheaper than a hop to a thread.
        ready = workers.ready_count(self_ready=True)
        if ready < workers.expected:
            raise NotReady(f"{ready} of {workers.expected} workers are ready; retry shortly")
        group = WorkersOut(ready=ready, expected=workers.expected)
    return ReadyResponse(
        status="ready",
        model=ModelRefOut(name=model.name, version=model.version),
        workers=group,
        request_id=request_id,
    )


@probe_route("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(registry: MetricsDep, workers: WorkersDep) -> Response:
    if workers is not None:
        workers.statuses()  # forgets workers that have died, so their live gauges stop counting
    return Response(content=registry.render(), media_type=METRICS_CONTENT_TYPE)
