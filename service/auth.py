"""API-key authentication with scopes: `require_scope("admin")` guards a route.

    router = APIRouter(dependencies=[Depends(require_scope("admin"))])

Scopes: score (score, compare, rank, models), feedback (POST /v1/feedback), admin
(feedback export and stats, model lifecycle). A key travels as `Authorization: Bearer KEY`
or `X-API-Key: KEY`. With no key configured, authentication is off (a warning is logged at
startup). Missing or unknown key: 401 with WWW-Authenticate; a key without the scope: 403.

Keys are compared in constant time: the presented key's SHA-256 is compared with every
configured key's, all of them, with hmac.compare_digest, so neither the time taken nor an
early exit tells which key (or how much of one) matched. No key ever reaches a log line.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable, Mapping

from fastapi import APIRouter, Depends, FastAPI, Request

from service.api_keys import SCOPES, ScopeName
from service.errors import ServiceError
from service.settings import Settings

log = logging.getLogger("plaudit.service")

AUTHENTICATE_CHALLENGE = 'Bearer realm="plaudit"'
API_KEY_HEADER = "x-api-key"
_KEY_HELP = "send Authorization: Bearer KEY or X-API-Key: KEY"

ScopeCheck = Callable[[Request], Awaitable[None]]
_GUARD_MARK = "plaudit_guards_route"  # set on the checks RouteGuards records from a route's own dependencies


class Unauthorized(ServiceError):
    status_code = 401
    code = "unauthorized"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"WWW-Authenticate": AUTHENTICATE_CHALLENGE})


class Forbidden(ServiceError):
    status_code = 403
    code = "forbidden"


class ApiKeyTable:
    """The configured keys, kept only as SHA-256 digests, with their scopes."""

    def __init__(self, scopes_by_key: Mapping[str, frozenset[ScopeName]]) -> None:
        self._entries = [(_digest(key), frozenset(scopes)) for key, scopes in scopes_by_key.items()]

    @classmethod
    def from_settings(cls, settings: Settings) -> ApiKeyTable:
        return cls(settings.api_key_scopes())

    @property
    def enabled(self) -> bool:
        return bool(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def scopes_for(self, presented: str) -> frozenset[ScopeName] | None:
        """The scopes of `presented`, or None when it is no configured key."""
        wanted = _digest(presented)
        found: frozenset[ScopeName] | None = None
        for digest, scopes in self._entries:  # no break: every key is compared
            if hmac.compare_digest(digest, wanted):
                found = scopes
        return found

    def __repr__(self) -> str:
        return f"ApiKeyTable({len(self._entries)} keys)"


def load_api_keys(settings: Settings) -> ApiKeyTable:
    """The key table for a starting server; says in the log whether authentication is on."""
    table = ApiKeyTable.from_settings(settings)
    if table.enabled:
        log.info("API key authentication on: %d keys", len(table))
    else:
        log.warning(
            "API key authentication is OFF: every endpoint is open to anyone who can reach the server; "
            "set PLAUDIT_API_KEYS or PLAUDIT_API_KEYS_FILE to require keys"
        )
    return table


def presented_key(request: Request) -> str | None:
    """The key from `Authorization: Bearer KEY`, else from `X-API-Key`; None when neither."""
    authorization = request.headers.get("authorization")
    if authorization:
        scheme, _, credentials = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip()
    key = request.headers.get(API_KEY_HEADER)
    return key.strip() if key and key.strip() else None


def authenticate(request: Request) -> frozenset[ScopeName] | None:
    """The caller's scopes; None when authentication is off. Raises Unauthorized (401)."""
    table: ApiKeyTable = request.state.api_keys
    if not table.enabled:
        return None
    key = presented_key(request)
    if key is None:
        raise Unauthorized(f"missing API key: {_KEY_HELP}")
    scopes = table.scopes_for(key)
    if scopes is None:
        raise Unauthorized(f"unknown API key: check the key, then {_KEY_HELP}")
    return scopes


def require_scope(scope: ScopeName) -> ScopeCheck:
    """A FastAPI dependency (use it in Depends) that lets a request through only with a key
    holding `scope`; anything goes while no key is configured."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; scopes are {', '.join(SCOPES)}")

    async def check_scope(request: Request) -> None:
        scopes = authenticate(request)
        if scopes is not None and scope not in scopes:
            raise Forbidden(
                f"this API key lacks the {scope!r} scope that {request.method} {request.url.path} needs "
                f"(it has: {', '.join(sorted(scopes))})"
            )

    check_scope.__name__ = f"require_{scope}_scope"
    setattr(check_scope, _GUARD_MARK, True)
    return check_scope


async def require_probe_access(request: Request) -> None:
    """For /healthz, /readyz, /metrics: open while settings.open_probes, else any valid key."""
    settings: Settings = request.state.settings
    if not settings.open_probes:
        authenticate(request)


setattr(require_probe_access, _GUARD_MARK, True)


class RouteGuards:
    """Which key checks guard each route, so they can run before a body error is answered.

    FastAPI decodes a JSON body before it runs any dependency, so a caller without a key
    that sends a body that is not JSON would learn what is wrong with the body (415/422)
    rather than that it needs a key. The error handlers (service.errors) call this first,
    through `app.state.route_guards`. Routers are included through `include`, which both
    installs the guards as dependencies and records them.
    """

    def __init__(self) -> None:
        # By id(): routes compare by value and are unhashable; these live as long as their router.
        self._by_route: dict[int, list[ScopeCheck]] = {}

    def include(self, app: FastAPI, router: APIRouter, *guards: ScopeCheck) -> None:
        app.include_router(router, dependencies=[Depends(guard) for guard in guards])
        for route in router.routes:
            own = [d.dependency for d in getattr(route, "dependencies", ()) if getattr(d.dependency, _GUARD_MARK, False)]
            self._by_route[id(route)] = [*guards, *own]

    async def __call__(self, request: Request) -> None:
        """Raise the 401/403 that the matched route's guards give `request`, if any."""
        for guard in self._by_route.get(id(request.scope.get("route")), ()):
            await guard(request)


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()
