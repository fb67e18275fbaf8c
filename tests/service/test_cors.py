"""CORS over real HTTP: preflights from allowed origins get the headers, others do not."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from service.settings import Settings
from tests.service.conftest import LiveServer, ServerFactory, _live_server

ALLOWED = "https://app.example"
KEY = "browser-key-0123456789abcdef"


def preflight(srv: LiveServer, origin: str, path: str = "/v1/score", method: str = "POST"):
    return srv.client.options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization, x-api-key, content-type",
        },
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    db = tmp_path_factory.mktemp("cors") / "feedback.db"
    settings = Settings(
        engine="deterministic",
        cors_origins=[ALLOWED, "http://localhost:3000"],
        api_keys={KEY: ["score", "feedback"]},
        feedback_db=f"sqlite:///{db}",
    )
    with _live_server(settings) as srv:
        srv.wait_ready()
        yield srv


@pytest.mark.parametrize("path", ["/v1/score", "/v1/feedback"])
def test_preflight_from_an_allowed_origin_gets_the_headers_without_a_key(server, path):
    r = preflight(server, ALLOWED, path)
    assert r.status_code == 200, r.text
    assert r.headers["access-control-allow-origin"] == ALLOWED
    assert "POST" in r.headers["access-control-allow-methods"]
    allowed_headers = r.headers["access-control-allow-headers"].lower()
    for header in ("authorization", "x-api-key", "content-type"):
        assert header in allowed_headers


def test_preflight_from_another_origin_gets_no_cors_headers(server):
    r = preflight(server, "https://evil.example")
    assert r.status_code == 400
    assert "access-control-allow-origin" not in r.headers


def test_actual_requests_from_an_allowed_origin_can_read_answers_and_errors(server):
    ok = server.client.post(
        "/v1/score",
        json={"items": [{"prompt": "p", "response": "r"}]},
        headers={"Origin": ALLOWED, "Authorization": f"Bearer {KEY}"},
    )
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == ALLOWED
    assert "x-request-id" in ok.headers["access-control-expose-headers"].lower()

    refused = server.client.post("/v1/score", json={"items": []}, headers={"Origin": ALLOWED})
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == ALLOWED

    elsewhere = server.client.get("/healthz", headers={"Origin": "https://evil.example"})
    assert elsewhere.status_code == 200 and "access-control-allow-origin" not in elsewhere.headers


def test_no_origins_configured_means_no_cors_headers(live_server: ServerFactory, tmp_path: Path):
    with live_server(engine="deterministic", feedback_db=f"sqlite:///{tmp_path / 'f.db'}") as srv:
        srv.wait_ready()
        r = preflight(srv, ALLOWED)
        assert "access-control-allow-origin" not in r.headers
        plain = srv.client.get("/healthz", headers={"Origin": ALLOWED})
        assert "access-control-allow-origin" not in plain.headers


@pytest.mark.parametrize("origin", ["https://app.example/", "app.example", "ftp://app.example"])
def test_origins_that_can_never_match_are_refused_at_startup(origin):
    with pytest.raises(ValidationError, match="is not an origin"):
        Settings(cors_origins=[origin])
