"""GET /v1/models: what is being served."""

from __future__ import annotations

from fastapi import APIRouter

from service.deps import ModelDep, RequestIdDep
from service.routes.scoring import model_ref
from service.schemas import ModelsResponse, error_responses

router = APIRouter(prefix="/v1", tags=["models"], responses=error_responses(401, 403, 503))


@router.get("/models", response_model=ModelsResponse, summary="The loaded model")
async def models(model: ModelDep, request_id: RequestIdDep) -> ModelsResponse:
    info = model.info
    return ModelsResponse(
        model=model_ref(model),
        request_id=request_id,
        engine=info.engine,
        device=info.device,
        precision=info.precision,
        max_length=info.max_length,
        aliases=list(info.aliases),
        engine_workers=info.engine_workers,
        threads_per_call=info.threads_per_call,
        max_batch_items=info.max_batch_items,
        lone_call_threads=info.lone_call_threads,
    )
