"""Liveness, readiness and metrics for orchestrators and Prometheus."""

from __future__ import annotations

from fastapi import APIRouter, Response

from service.deps import HolderDep, MetricsDep, RequestIdDep
from service.metrics import METRICS_CONTENT_TYPE
from service.schemas import HealthResponse, ModelRefOut, ReadyResponse

router = APIRouter(tags=["ops"])


@router.get("/healthz", response_model=HealthResponse, summary="Liveness: 200 while the process runs")
async def healthz(holder: HolderDep, request_id: RequestIdDep) -> HealthResponse:
    model = holder.current
    ref = ModelRefOut(name=model.name, version=model.version) if model is not None else None
    return HealthResponse(status="alive", model=ref, request_id=request_id)


@router.get(
    "/readyz",
    response_model=ReadyResponse,
    summary="Readiness: 200 once the model is loaded and the batcher runs, else 503",
    responses={503: {"description": "Not ready: loading, failed to load, or batcher stopped"}},
)
async def readyz(holder: HolderDep, request_id: RequestIdDep) -> ReadyResponse:
    model = holder.get()  # NotReady (503) says why: loading, failed, stopped
    return ReadyResponse(
        status="ready", model=ModelRefOut(name=model.name, version=model.version), request_id=request_id
    )


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(registry: MetricsDep) -> Response:
    return Response(content=registry.render(), media_type=METRICS_CONTENT_TYPE)
