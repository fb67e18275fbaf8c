"""POST /v1/models/reload and /v1/models/{name}/promote (admin): hot-swap the served model.

The CLI path: `plaudit models promote NAME:V` moves the alias in the store, then
`curl -X POST -H "Authorization: Bearer $ADMIN_KEY" http://HOST/v1/models/reload`
makes a running service serve it. The work is done by service.lifecycle.ModelSwapper.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from service.auth import require_scope
from service.deps import RequestIdDep, SwapperDep
from service.errors import InvalidInput
from service.lifecycle import ServedRef, SwapOutcome
from service.schemas import ModelRefOut, PromotedOut, PromoteRequest, SwapResponse, error_doc, error_responses

router = APIRouter(
    prefix="/v1/models",
    tags=["lifecycle"],
    dependencies=[Depends(require_scope("admin"))],
    responses=error_responses(401, 403, 404, 408, 409, 415, 422, 503),
)

_REFUSALS = {
    409: error_doc("A reload is already in progress, or the version failed its checksums"),
    422: error_doc("The version could not be loaded or warmed up (the old one keeps serving)"),
}


def _ref_out(ref: ServedRef | None) -> ModelRefOut | None:
    return ModelRefOut(name=ref.name, version=ref.version) if ref is not None else None


def _response(outcome: SwapOutcome, request_id: str) -> SwapResponse:
    new = _ref_out(outcome.new)
    assert new is not None
    return SwapResponse(old=_ref_out(outcome.old), new=new, swapped=outcome.swapped, request_id=request_id)


@router.post(
    "/reload",
    response_model=SwapResponse,
    summary="Re-resolve the configured model (e.g. NAME -> its production alias) and swap if it changed",
    responses=_REFUSALS,
)
async def reload(request: Request, swapper: SwapperDep, request_id: RequestIdDep) -> SwapResponse:
    await _refuse_a_body(request)
    return _response(await swapper.reload(), request_id)


async def _refuse_a_body(request: Request) -> None:
    """Reload takes no body (`{}` aside): one such as {"model": "tf:2"} was silently ignored,
    and its sender believed it had chosen what to serve."""
    body = (await request.body()).strip()
    if body in (b"", b"{}"):
        return
    raise InvalidInput(
        "body: POST /v1/models/reload takes no body; it serves what the configured model "
        "(PLAUDIT_MODEL) resolves to now. To serve another version, promote it: "
        "POST /v1/models/{name}/promote {version, alias}"
    )


@router.post(
    "/{name}/promote",
    response_model=SwapResponse,
    summary="Point an alias at a stored version, then reload; the alias is restored if the reload fails",
    responses={**_REFUSALS, 404: error_doc("No such model or version in the store")},
)
async def promote(name: str, body: PromoteRequest, swapper: SwapperDep, request_id: RequestIdDep) -> SwapResponse:
    response = _response(await swapper.promote(name, body.version, body.alias), request_id)
    response.promoted = PromotedOut(name=name, version=str(body.version), alias=body.alias)
    return response
