"""GET /v1/models: what is being served."""

from __future__ import annotations

import logging

from fastapi import APIRouter

from model_store.errors import StoreError
from model_store.store import ModelStore
from service.deps import ModelDep, RequestIdDep
from service.model import ModelInfo
from service.routes.scoring import model_ref
from service.schemas import ModelsResponse, error_responses

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["models"], responses=error_responses(401, 403, 503))


@router.get("/models", response_model=ModelsResponse, summary="The loaded model")
def models(model: ModelDep, request_id: RequestIdDep) -> ModelsResponse:
    # A plain def: FastAPI runs it in its thread pool, so reading the store's alias file
    # never blocks the event loop (the store may sit on a network disk).
    info = model.info
    return ModelsResponse(
        model=model_ref(model),
        request_id=request_id,
        engine=info.engine,
        device=info.device,
        precision=info.precision,
        max_length=info.max_length,
        aliases=current_aliases(info),
        engine_workers=info.engine_workers,
        threads_per_call=info.threads_per_call,
        max_batch_items=info.max_batch_items,
        lone_call_threads=info.lone_call_threads,
    )


def current_aliases(info: ModelInfo) -> list[str]:
    """The aliases pointing at the served version now, as the store says.

    `plaudit models promote` and `rollback` move aliases without touching the server, so
    the set known at load time may be stale; if the store cannot be read, it is all we have.
    """
    if info.store_root is None:
        return list(info.aliases)
    try:
        return ModelStore(info.store_root).aliases_of(info.name, int(info.version))
    except (StoreError, OSError) as exc:
        log.warning("could not read the aliases of %s from %s (%s); reporting those known at load", info.name, info.store_root, exc)
        return list(info.aliases)
