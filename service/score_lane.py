"""POST /v1/score without FastAPI's request machinery: the service's hottest path.

The event loop shares the machine's cores with the engine, and on a small request FastAPI's
middleware, routing, dependency solving and body parsing are a good part of the loop's work:
paced at 140 one-item requests/s, the loop spent 1.26 ms of CPU per request through FastAPI and
0.89 ms through this lane. Where the engine is cheap per item that is throughput: x1.5 items/s
on the deterministic engine, x1.28 on the linear model (README, Benchmarks: The `/v1/score` lane).

Only the well-formed case takes the lane: a POST to /v1/score whose body is JSON (by its
Content-Type), arrived whole, and validates as a ScoreRequest. Everything else goes on to
FastAPI with the body replayed, so a body that is not JSON, not whole or not valid gets the
route's own 415 or 422. The lane then does what the route does with the route's own parts: the
"score" scope check, the readiness check, `score_items` (limits, then the batcher), the one error
shape. The route stays registered, so OpenAPI documents the endpoint as before, and
`PLAUDIT_SCORE_LANE=false` sends every request through it. The answers are the route's byte for
byte (tests/service/test_score_lane.py); that relies on FastAPI 0.130+, which serialises a
response_model with pydantic's own JSON, as the lane does.
"""

from __future__ import annotations

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from service.auth import require_scope
from service.deps import get_scoring_context
from service.errors import ServiceError, error_response, is_json_media_type
from service.middleware import header, read_body, replaying
from service.routes.scoring import score_items
from service.schemas import ScoreRequest

SCORE_PATH = "/v1/score"


class ScoreLane:
    """ASGI layer, inside RequestContextMiddleware (request id, body limit, metrics, the
    generic 500), that answers well-formed POST /v1/score requests itself."""

    def __init__(self, app: ASGIApp, route: BaseRoute) -> None:
        self.app = app
        # The router's /v1/score APIRoute, set as scope["route"] as FastAPI does on a match: the
        # request metrics label requests by its path. (The app's copy would also carry the
        # router-level scope dependency; this layer runs that check itself.)
        self.route = route
        self.check_scope = require_scope("score")
        # Requests whose answer came from this layer, whatever it was (a 401 or 503 too); the
        # rest went on to FastAPI. Tests read it to tell the two paths apart.
        self.answered = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not _is_json_post_to_score(scope):
            await self.app(scope, receive, send)
            return
        messages, body = await read_body(receive)
        if messages[-1]["type"] != "http.request":
            # The client left before its body ended: FastAPI answers that as it always has.
            await self.app(scope, replaying(messages, receive), send)
            return
        try:
            parsed = ScoreRequest.model_validate_json(body)
        except ValidationError:
            await self.app(scope, replaying(messages, receive), send)
            return
        scope["route"] = self.route
        request = Request(scope, receive)
        self.answered += 1
        try:
            await self.check_scope(request)
            answer = await score_items(parsed, request, await get_scoring_context(request))
        except ServiceError as exc:
            response: Response = error_response(request, exc.status_code, exc.code, exc.message, exc.headers)
        else:
            # As FastAPI serialises a response_model: to JSON by alias, straight from the model.
            response = Response(answer.model_dump_json(by_alias=True), media_type="application/json")
        await response(scope, receive, send)


def _is_json_post_to_score(scope: Scope) -> bool:
    if scope["type"] != "http" or scope["method"] != "POST":
        return False
    path: str = scope["path"]
    root = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    if path != SCORE_PATH:
        return False
    content_type = header(scope, b"content-type")
    # Without a Content-Type, FastAPI decides what the body is.
    return content_type is not None and is_json_media_type(content_type.split(";", 1)[0].strip())
