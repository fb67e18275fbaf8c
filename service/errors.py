"""One error family, one JSON shape: {"error": {"code", "message", "request_id"}}.

Anything the service refuses on purpose is a `ServiceError` with a status, a stable
`code` and a message written for the caller. Everything else becomes a generic 500
whose details go to the log only, never to the client.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("plaudit.service")


class ServiceError(Exception):
    """Base class: an error with an HTTP status and a message meant for the client."""

    status_code: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = dict(headers or {})


class InvalidInput(ServiceError):
    status_code = 422
    code = "invalid_request"


class PayloadTooLarge(ServiceError):
    status_code = 413
    code = "payload_too_large"


class QueueFullError(ServiceError):
    status_code = 429
    code = "queue_full"

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after_s)})


class NotReady(ServiceError):
    """No model is loaded (yet), or the batcher is not running."""

    status_code = 503
    code = "not_ready"

    def __init__(self, message: str, retry_after_s: int | None = 1) -> None:
        # None: retrying soon will not help (a model that failed to load), so no Retry-After.
        super().__init__(message, headers={"Retry-After": str(retry_after_s)} if retry_after_s is not None else None)


class DeadlineExceeded(ServiceError):
    status_code = 504
    code = "deadline_exceeded"


class ClientDisconnected(ServiceError):
    """The client went away before its answer was ready (nginx's 499; nobody reads it)."""

    status_code = 499
    code = "client_closed_request"


class ScoringFailed(ServiceError):
    """The engine failed on a batch that held (some of) this request's items."""

    status_code = 500
    code = "scoring_failed"


def request_id_of(request: Request) -> str:
    return str(getattr(request.state, "request_id", "") or "")


def error_body(code: str, message: str, request_id: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "request_id": request_id}}


def error_json(code: str, message: str, request_id: str) -> bytes:
    """`error_body` as the bytes JSONResponse would send (compact, UTF-8), for the layers that
    answer below FastAPI."""
    return JSONResponse(error_body(code, message, request_id)).body


# FastAPI reads and decodes a JSON body before it runs any dependency, the API-key checks
# included, so a body that is not JSON would be answered 415/422 to a caller with no key.
# `app.state.route_guards` (service.auth.RouteGuards) runs the matched route's key checks;
# the handlers below call it first, so such a caller gets its 401 or 403 whatever it sent.
async def _refused_by_route_guards(request: Request) -> JSONResponse | None:
    """The 401/403 the matched route's guards give this request, or None if they let it in."""
    guards = getattr(request.app.state, "route_guards", None)
    if guards is None:
        return None
    try:
        await guards(request)
    except ServiceError as exc:
        return error_response(request, exc.status_code, exc.code, exc.message, exc.headers)
    return None


def error_response(
    request: Request, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        error_body(code, message, request_id_of(request)), status_code=status, headers=dict(headers or {})
    )


def describe_validation_errors(errors: Any) -> str:
    """ "items.0.response: field required; top_n: input should be greater than 0"."""
    parts = []
    for problem in errors:
        loc = [str(p) for p in problem.get("loc", ())]
        if loc and loc[0] == "body":
            loc = loc[1:]
        msg = str(problem.get("msg", "invalid value")).removeprefix("Value error, ")
        if problem.get("type") == "json_invalid":
            # FastAPI gives json's own message ("Invalid control character at", "Extra data"),
            # and the character offset as the location: say it as one sentence.
            reason = str(problem.get("ctx", {}).get("error", msg)).removesuffix(" at").lower()
            at = f" at character {loc[0]}" if loc and loc[0].isdigit() else ""
            where, msg = "body", f"invalid JSON{at}: {reason}"
        else:
            where = ".".join(loc) or "body"
        parts.append(f"{where}: {msg[:1].lower()}{msg[1:]}")
    return "; ".join(parts) or "invalid request"


async def _service_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    return error_response(request, exc.status_code, exc.code, exc.message, exc.headers)


def is_json_media_type(media_type: str) -> bool:
    """application/json or application/*+json: the media types whose bodies FastAPI reads as JSON."""
    maintype, _, subtype = media_type.lower().partition("/")
    return maintype == "application" and (subtype == "json" or subtype.endswith("+json"))


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    refused = await _refused_by_route_guards(request)
    if refused is not None:
        return refused
    errors = exc.errors()
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip()
    has_body = request.headers.get("content-length", "0").strip() not in ("", "0") or (
        "transfer-encoding" in request.headers
    )
    # FastAPI reads a form-typed body (plain `curl -d` sends one), or one sent with no
    # Content-Type, as not JSON and then says it is "not a valid dictionary": name the real
    # problem instead. (No body at all stays a 422: "body: field required".)
    not_json = not is_json_media_type(media_type) if media_type else has_body
    if not_json and any(tuple(e.get("loc", ())) == ("body",) for e in errors):
        sent_as = f"as {media_type}" if media_type else "without a Content-Type"
        return error_response(
            request,
            415,
            "unsupported_media_type",
            f"the body was sent {sent_as}; send JSON with Content-Type: application/json",
        )
    return error_response(request, 422, InvalidInput.code, describe_validation_errors(errors))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400:
        refused = await _refused_by_route_guards(request)
        if refused is not None:
            return refused
        # FastAPI's "There was an error parsing the body": bytes that are not UTF-8, or JSON
        # nested too deep to parse. The same status and code as any other invalid JSON.
        return error_response(
            request, 422, InvalidInput.code, "body: not valid JSON; send a JSON object encoded as UTF-8"
        )
    codes = {404: "not_found", 405: "method_not_allowed"}
    code = codes.get(exc.status_code, "http_error")
    return error_response(request, exc.status_code, code, str(exc.detail), exc.headers)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    # Unexpected exceptions are caught by service.middleware.RequestContextMiddleware, which
    # logs the traceback and answers a generic 500 that still carries the request id.
