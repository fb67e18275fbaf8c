"""service.score_lane answers POST /v1/score exactly as the FastAPI route does.

Two real servers, alike but for `score_lane`, get the same requests with the same X-Request-ID;
their answers must match byte for byte, headers that matter included. The lane must also
really take the well-formed requests (its own count moves) and pass every other one on.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from service.score_lane import ScoreLane
from service.settings import Settings
from tests.service.conftest import LiveServer, _live_server

ITEM = {"prompt": "How do I boil an egg?", "response": "Put it in boiling water for 8 minutes."}
JSON = "application/json"
# Limits of both servers below: 8 items per request, 200 characters per text.
LIMITS = {"max_items_per_request": 8, "max_chars_per_text": 200}

# (case, body bytes, Content-Type or None, whether the lane answers it itself)
CASES = [
    ("one item", json.dumps({"items": [ITEM]}).encode(), JSON, True),
    ("three items", json.dumps({"items": [ITEM, {"prompt": "", "response": "No."}, ITEM]}).encode(), JSON, True),
    ("charset parameter", json.dumps({"items": [ITEM]}).encode(), "application/json; charset=utf-8", True),
    ("+json media type", json.dumps({"items": [ITEM]}).encode(), "application/vnd.plaudit+json", True),
    ("non-ASCII text", json.dumps({"items": [{"prompt": "Grüße", "response": "日本語"}]}).encode(), JSON, True),
    ("too many items (413)", json.dumps({"items": [ITEM] * 9}).encode(), JSON, True),
    ("text too long (413)", json.dumps({"items": [{"prompt": "p", "response": "x" * 201}]}).encode(), JSON, True),
    ("missing field", json.dumps({"items": [{"prompt": "p"}]}).encode(), JSON, False),
    ("unknown field", json.dumps({"items": [{"prompt": "p", "respone": "r"}]}).encode(), JSON, False),
    ("no items", json.dumps({"items": []}).encode(), JSON, False),
    ("wrong type", json.dumps({"items": [{"prompt": 1, "response": "r"}]}).encode(), JSON, False),
    ("invalid JSON", b'{"items": [', JSON, False),
    ("not UTF-8", b'{"items": [{"prompt": "\xff", "response": "r"}]}', JSON, False),
    ("lone surrogate", b'{"items": [{"prompt": "\\ud800", "response": "r"}]}', JSON, False),
    ("empty body", b"", JSON, False),
    ("a JSON array", b"[]", JSON, False),
    ("form body (415)", b"items=1", "application/x-www-form-urlencoded", False),
    ("no Content-Type", json.dumps({"items": [ITEM]}).encode(), None, False),
]
HEADERS_THAT_MATTER = ("content-type", "content-length", "retry-after", "www-authenticate", "x-request-id")


def lane_of(srv: LiveServer) -> ScoreLane | None:
    """The server's ScoreLane layer, found by walking its built middleware stack."""
    layer = srv.server.config.app.middleware_stack
    while layer is not None and not isinstance(layer, ScoreLane):
        layer = getattr(layer, "app", None)
    return layer


def post(srv: LiveServer, body: bytes, content_type: str | None, request_id: str, **headers: str):
    if content_type is not None:
        headers["content-type"] = content_type
    return srv.client.post("/v1/score", content=body, headers={"x-request-id": request_id, **headers})


def assert_same_answer(a, b, case: str) -> None:
    assert a.status_code == b.status_code, (case, a.text, b.text)
    assert a.content == b.content, case
    for name in HEADERS_THAT_MATTER:
        assert a.headers.get(name) == b.headers.get(name), (case, name)


@contextmanager
def servers_with_and_without_the_lane(**settings: object) -> Iterator[tuple[LiveServer, LiveServer]]:
    with (
        _live_server(Settings(score_lane=True, **settings)) as lane,  # type: ignore[arg-type]
        _live_server(Settings(score_lane=False, **settings)) as route,  # type: ignore[arg-type]
    ):
        yield lane, route


@pytest.fixture(scope="module")
def lane_and_route() -> Iterator[tuple[LiveServer, LiveServer]]:
    with servers_with_and_without_the_lane(engine="deterministic", **LIMITS) as (lane, route):
        lane.wait_ready()
        route.wait_ready()
        yield lane, route


@pytest.mark.parametrize("case, body, content_type, taken", CASES, ids=[c[0] for c in CASES])
def test_the_lane_answers_as_the_route_does(lane_and_route, case, body, content_type, taken):
    lane_server, route_server = lane_and_route
    post(lane_server, b'{"items": [{"prompt": "warm", "response": "up"}]}', JSON, "warm-up")  # builds the stack
    lane = lane_of(lane_server)
    assert lane is not None and lane_of(route_server) is None
    answered = lane.answered

    a = post(lane_server, body, content_type, f"parity-{case}")
    b = post(route_server, body, content_type, f"parity-{case}")

    assert_same_answer(a, b, case)
    assert lane.answered == answered + int(taken), "the lane took a request it should pass on, or the reverse"
    if taken and a.status_code == 200:
        assert len(a.json()["scores"]) == len(json.loads(body)["items"])


def test_requests_through_the_lane_are_counted_under_the_route(lane_and_route):
    lane_server, _ = lane_and_route
    body = json.dumps({"items": [ITEM]}).encode()
    before = lane_server.metric("plaudit_requests_total", endpoint="/v1/score", status="200")
    for n in range(3):
        assert post(lane_server, body, JSON, f"counted-{n}").status_code == 200
    after = lane_server.metric("plaudit_requests_total", endpoint="/v1/score", status="200")
    assert after - before == 3


SCORE_KEY = "lane-score-key-0123456789abcdef"
FEEDBACK_KEY = "lane-feedback-key-0123456789abcdef"


def test_keys_and_scopes_answer_alike(tmp_path: Path):
    keys = {SCORE_KEY: ["score"], FEEDBACK_KEY: ["feedback"]}
    common = {"engine": "deterministic", "api_keys": keys, "feedback_db": f"sqlite:///{tmp_path / 'f.db'}"}
    body = json.dumps({"items": [ITEM]}).encode()
    with servers_with_and_without_the_lane(**common) as (lane_server, route_server):
        lane_server.wait_ready()
        route_server.wait_ready()
        for case, headers, status in [
            ("no key", {}, 401),
            ("unknown key", {"authorization": "Bearer not-a-key-0123456789"}, 401),
            ("key without the score scope", {"x-api-key": FEEDBACK_KEY}, 403),
            ("score key", {"authorization": f"Bearer {SCORE_KEY}"}, 200),
        ]:
            a = post(lane_server, body, JSON, f"auth-{case}", **headers)
            b = post(route_server, body, JSON, f"auth-{case}", **headers)
            assert a.status_code == status, (case, a.text)
            assert_same_answer(a, b, case)


@pytest.mark.parametrize(
    "settings, status",
    [
        ({"engine": "failing"}, 500),  # the engine raises on every batch: scoring_failed
        ({"engine": "onnx", "model": "absent"}, 503),  # the model never loads: not_ready
    ],
    ids=["failing engine", "model that never loads"],
)
def test_failures_answer_alike(tmp_path: Path, settings: dict[str, object], status: int):
    body = json.dumps({"items": [ITEM]}).encode()
    common = {"store_dir": tmp_path / "store", **settings}
    with servers_with_and_without_the_lane(**common) as (lane_server, route_server):
        for srv in (lane_server, route_server):
            srv.wait_until(lambda s=srv: s.state["holder"].state in ("ready", "failed"), "the model to load or fail")
        a = post(lane_server, body, JSON, "failure")
        b = post(route_server, body, JSON, "failure")
        assert a.status_code == status, a.text
        assert_same_answer(a, b, f"{settings}")
        assert lane_of(lane_server).answered == 1
