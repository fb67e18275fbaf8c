"""The outermost layer of every HTTP request (plain ASGI, so disconnects stay visible).

It gives the request an id (X-Request-ID, echoed back), refuses bodies over
max_body_bytes while reading them (by Content-Length, or by counting a streamed body),
answers 408 to a body that has not arrived within body_timeout_s, records request
metrics, and turns any unexpected exception into a generic 500 that still carries the
request id; the traceback goes to the log only.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Sequence
from typing import Any

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.activity import RequestActivity
from service.errors import PayloadTooLarge, error_json
from service.metrics import ServiceMetrics

log = logging.getLogger("plaudit.service")
access_logger = logging.getLogger("plaudit.access")

REQUEST_ID_HEADER = "x-request-id"
_MAX_REQUEST_ID_LENGTH = 128


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of request header `name` (lower-case bytes, as ASGI gives names)."""
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _client_request_id(scope: Scope) -> str | None:
    value = header(scope, REQUEST_ID_HEADER.encode())
    if value is None:
        return None
    text = value.strip()
    # "#" is refused: it joins a request id and an index in the keys under which
    # /v1/compare remembers a list of comparisons ("rid#1"), which must not collide. So is a
    # space: the access log ends "request_id=ID", and "abc request_id=forged" would forge a field.
    if 0 < len(text) <= _MAX_REQUEST_ID_LENGTH and text.isprintable() and text.isascii() and not set("# ") & set(text):
        return text
    return None


def _loggable(text: str) -> str:
    """`text` with its control characters escaped (\\n, \\x00...): a path such as
    "/x%0a2026-12-08 ... FORGED" decodes to a newline and must not start a line of its own."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _content_length(scope: Scope) -> int | None:
    value = header(scope, b"content-length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _content_encoding(scope: Scope) -> str | None:
    """The request body's Content-Encoding, where it is one that needs decoding."""
    value = header(scope, b"content-encoding")
    if value is None:
        return None
    encoding = value.strip().lower()
    return encoding if encoding not in ("", "identity") else None


class BodyTooLarge(Exception):
    """The body grew past the limit given to `read_body`."""


class BodyTimedOut(Exception):
    """The body did not arrive whole within the middleware's body_timeout_s."""


async def read_body(receive: Receive, max_bytes: int | None = None) -> tuple[list[Message], bytes]:
    """Every message up to the body's end (or a disconnect), and the body's bytes; BodyTooLarge
    as soon as they pass `max_bytes`."""
    messages: list[Message] = []
    chunks: list[bytes] = []
    total = 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        chunks.append(chunk)
        total += len(chunk)
        if max_bytes is not None and total > max_bytes:
            raise BodyTooLarge
        if not message.get("more_body", False):
            break
    return messages, b"".join(chunks)


def replaying(messages: list[Message], receive: Receive) -> Receive:
    """`receive` as if nothing had been read: `messages` again, then the live channel, so the
    app still sees http.disconnect when the client goes away."""
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay


class RequestContextMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        max_body_bytes: int,
        metrics: ServiceMetrics,
        access_log: bool = False,
        max_concurrent_requests: int | None = None,
        max_inflight_body_bytes: int | None = None,
        label_routes: Sequence[BaseRoute] = (),
        activity: RequestActivity | None = None,
        body_timeout_s: float | None = None,
    ) -> None:
        self.app = app
        self.body_timeout_s = body_timeout_s
        self.label_routes = label_routes
        # Requests past the concurrency check and not yet answered (shared with the memory trimmer).
        self.activity = activity if activity is not None else RequestActivity()
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics
        self.access_log = access_log
        self.max_concurrent_requests = max_concurrent_requests
        self.max_inflight_body_bytes = max_inflight_body_bytes
        self.body_bytes_in_flight = 0  # the body shares of the requests counted in `activity`

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        request_id = _client_request_id(scope) or uuid.uuid4().hex
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id
        state["received_at"] = started
        status = {"code": 500, "sent": False}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                status["sent"] = True
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER.encode(), request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            encoding = _content_encoding(scope)
            if encoding is not None:
                # Nothing here decodes a body (and a decoded one could outgrow max_body_bytes):
                # say so, rather than a 422 calling the compressed bytes bad JSON.
                await self._send_error(
                    send_with_id,
                    415,
                    "unsupported_media_type",
                    f"request bodies with Content-Encoding {encoding!r} are not accepted; send plain JSON",
                    request_id,
                )
                return
            counted = not _is_probe(scope)  # probes and /metrics answer under any load
            declared = _content_length(scope)
            body_share = self._body_share(scope, declared) if counted else 0
            refusal = self._over_capacity(body_share) if counted else None
            if refusal is not None:
                # Refused before the body is read: each body read and parsed at once takes
                # memory (a few MB for a large one), and the queue only bounds what is parsed.
                await self._send_error(
                    send_with_id, 429, "overloaded", f"{refusal}; retry after a short pause", request_id,
                    headers=[(b"retry-after", b"1")],
                )
                return
            if counted:
                self.activity.started()
                self.body_bytes_in_flight += body_share
            try:
                try:
                    replay = await self._read_body(declared, receive)
                except BodyTooLarge:
                    limit = PayloadTooLarge(
                        f"request body exceeds max_body_bytes={self.max_body_bytes} bytes "
                        "(PLAUDIT_MAX_BODY_BYTES); send fewer or shorter items per request"
                    )
                    await self._send_error(send_with_id, limit.status_code, limit.code, limit.message, request_id)
                    return
                except BodyTimedOut:
                    # A client that announces a body and sends it slowly, or never, would hold its
                    # place under max_concurrent_requests and its share of the body budget for as
                    # long as its socket stays open: four such stalled 8 MiB uploads refused every
                    # other request (429) until they went. Its deadline has passed anyway.
                    await self._send_error(
                        send_with_id, 408, "request_timeout",
                        f"the request body did not arrive within {self.body_timeout_s:g} s "
                        "(PLAUDIT_REQUEST_TIMEOUT_S); send the whole body promptly",
                        request_id, headers=[(b"connection", b"close")],
                    )
                    return
                await self.app(scope, replay, send_with_id)
            finally:
                if counted:
                    self.activity.ended()
                    self.body_bytes_in_flight -= body_share
        except Exception as exc:
            log.error(
                "internal error on %s %s (request_id=%s)",
                scope["method"],
                _loggable(scope["path"]),
                request_id,
                exc_info=exc,
            )
            if not status["sent"]:
                await self._send_error(send_with_id, 500, "internal_error", "internal error", request_id)
        finally:
            endpoint = self._endpoint_label(scope)
            elapsed = time.monotonic() - started
            self.metrics.requests.labels(endpoint=endpoint, status=str(status["code"])).inc()
            self.metrics.request_duration.labels(endpoint=endpoint).observe(elapsed)
            if self.access_log:
                client = scope.get("client") or ("-", 0)
                access_logger.info(
                    '%s:%s "%s %s" %d %.1f ms request_id=%s',
                    client[0], client[1], scope["method"], _loggable(scope["path"]), status["code"], elapsed * 1000,
                    request_id,
                )

    def _endpoint_label(self, scope: Scope) -> str:
        """The path template of the route that served the request or would have (for one
        refused before routing); "unmatched" for a path of no route, so that every 404 shares
        one series and scanners cannot add a series per path they try."""
        route_path = getattr(scope.get("route"), "path", None)
        if route_path:
            return str(route_path)
        for route in self.label_routes:
            match, _ = route.matches(scope)
            if match is not Match.NONE:
                return str(getattr(route, "path", "unmatched"))
        return "unmatched"

    def _body_share(self, scope: Scope, declared: int | None) -> int:
        """What a request's body counts against max_inflight_body_bytes: its Content-Length,
        `declared` (at most max_body_bytes, past which it is refused anyway); a body sent in
        chunks, of unknown size, counts as the largest allowed."""
        if declared is not None:
            return min(declared, self.max_body_bytes)
        return self.max_body_bytes if header(scope, b"transfer-encoding") is not None else 0

    def _over_capacity(self, body_share: int) -> str | None:
        """Why a new request must wait, or None if it may be handled now."""
        in_flight = self.activity.in_flight
        if self.max_concurrent_requests is not None and in_flight >= self.max_concurrent_requests:
            return (
                f"{in_flight} requests are being handled, the limit is max_concurrent_requests="
                f"{self.max_concurrent_requests} (PLAUDIT_MAX_CONCURRENT_REQUESTS)"
            )
        budget = self.max_inflight_body_bytes
        # A request alone is always let in, however large (max_body_bytes bounds it).
        if budget is not None and self.body_bytes_in_flight and self.body_bytes_in_flight + body_share > budget:
            return (
                f"{self.body_bytes_in_flight} bytes of request bodies are being handled and this one adds "
                f"{body_share}, the limit is max_inflight_body_bytes={budget} (PLAUDIT_MAX_INFLIGHT_BODY_BYTES)"
            )
        return None

    async def _read_body(self, declared: int | None, receive: Receive) -> Receive:
        """Read the whole body (refusing it past the limit, at once if its Content-Length,
        `declared`, says so; BodyTimedOut if it takes longer than body_timeout_s), then replay
        it to the app."""
        if declared is not None and declared > self.max_body_bytes:
            raise BodyTooLarge
        try:
            async with asyncio.timeout(self.body_timeout_s):
                messages, _ = await read_body(receive, self.max_body_bytes)
        except TimeoutError:
            raise BodyTimedOut from None
        return replaying(messages, receive)

    @staticmethod
    async def _send_error(
        send: Send,
        status: int,
        code: str,
        message: str,
        request_id: str,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        body = error_json(code, message, request_id)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    *(headers or []),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


# Probes and metrics answer under any load: an orchestrator or a scraper must not read an
# overloaded server as a dead one.
PROBE_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def _is_probe(scope: Scope) -> bool:
    return scope["path"] in PROBE_PATHS
