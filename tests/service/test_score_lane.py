"""service.score_lane answers POST /v1/score exactly as the FastAPI route does.

Two real servers, alike but for `score_lane`, get the same requests with the same X-Request-ID;
their answers must match byte for byte, headers that matter included. The lane must also
really take the well-formed requests (its own count moves) and pass every other one on.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.score_lane import ScoreLane
from service.settings import Settings
from tests.service.conftest import LiveServer, _live_server, hold_the_warmup

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
    ("json-patch media type", json.dumps({"items": [ITEM]}).encode(), "application/json-patch+json", True),
    ("upper-case media type", json.dumps({"items": [ITEM]}).encode(), "APPLICATION/JSON", True),
    ("a +json type not under application/ (415)", json.dumps({"items": [ITEM]}).encode(), "text/plain+json", False),
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
    ("UTF-8 byte order mark", b"\xef\xbb\xbf" + json.dumps({"items": [ITEM]}).encode(), JSON, False),
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
    # The case's name is the request id, spaces aside (an X-Request-ID with one is replaced).
    request_id = request_id.replace(" ", "-")
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


def score_requests_by_status(srv: LiveServer) -> dict[str, float]:
    """plaudit_requests_total for /v1/score by status, and the duration histogram's count."""
    text = srv.client.get("/metrics").text
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("endpoint") != "/v1/score":
                continue
            if sample.name == "plaudit_requests_total":
                out[sample.labels["status"]] = sample.value
            elif sample.name == "plaudit_request_duration_seconds_count":
                out["duration count"] = sample.value
    return out


def test_requests_are_counted_alike(lane_and_route):
    bodies = [
        json.dumps({"items": [ITEM]}).encode(),
        json.dumps({"items": [ITEM, ITEM]}).encode(),
        json.dumps({"items": [ITEM] * 9}).encode(),  # 413, from the lane
        json.dumps({"items": [{"prompt": "p"}]}).encode(),  # 422, from the route
    ]
    before = [score_requests_by_status(srv) for srv in lane_and_route]
    for n, body in enumerate(bodies):
        for srv in lane_and_route:
            post(srv, body, JSON, f"counted-{n}")
    after = [score_requests_by_status(srv) for srv in lane_and_route]
    lane_delta, route_delta = ({k: a[k] - b.get(k, 0.0) for k in a} for a, b in zip(after, before, strict=True))
    assert lane_delta == route_delta
    assert (lane_delta["200"], lane_delta["413"], lane_delta["422"], lane_delta["duration count"]) == (2, 1, 1, 4)


def test_a_body_cut_short_by_a_disconnect_goes_to_the_route(lane_and_route):
    """A client that declares more bytes than it sends, then leaves: the part it sent is valid
    JSON, but the lane must not score it; both servers count it as the route answers it."""
    lane = lane_of(lane_and_route[0])
    answered = lane.answered
    body = json.dumps({"items": [ITEM]}).encode()
    before = [score_requests_by_status(srv) for srv in lane_and_route]
    for srv in lane_and_route:
        with socket.create_connection(("127.0.0.1", srv.port)) as conn:
            head = f"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body) + 50}\r\n\r\n"
            conn.sendall(head.encode() + body)
    for srv, was in zip(lane_and_route, before, strict=True):
        srv.wait_until(lambda s=srv, w=was: sum(score_requests_by_status(s).values()) > sum(w.values()), "the cut request to be counted")
    after = [score_requests_by_status(srv) for srv in lane_and_route]
    deltas = [{k: v - b.get(k, 0.0) for k, v in a.items() if v != b.get(k, 0.0)} for a, b in zip(after, before, strict=True)]
    assert deltas[0] == deltas[1]
    assert "200" not in deltas[0] and "499" not in deltas[0]
    assert lane.answered == answered


def test_while_loading_an_over_limit_body_is_503_not_413(monkeypatch):
    """The readiness check comes before the limits, with the lane as on the route."""
    too_many = json.dumps({"items": [ITEM] * 9}).encode()
    # Both servers' loads wait for the test, however long starting the second one takes:
    # a server that finished loading would answer 413, not 503.
    release = hold_the_warmup(monkeypatch)
    settings = {"engine": "deterministic", **LIMITS}
    with servers_with_and_without_the_lane(**settings) as (lane_server, route_server):
        try:
            a = post(lane_server, too_many, JSON, "loading")
            b = post(route_server, too_many, JSON, "loading")
            assert a.status_code == 503 and a.headers["retry-after"] == "1", a.text
            assert_same_answer(a, b, "loading")
            assert lane_of(lane_server).answered == 1
        finally:
            release.set()


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
