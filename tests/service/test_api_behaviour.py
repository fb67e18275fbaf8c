"""Service behaviour over real HTTP: batching, back-pressure, readiness, failures, deadlines."""

from __future__ import annotations

import asyncio
import gc
import json
import socket
import threading
import uuid
from collections.abc import Callable

import httpx
import pytest
import numpy as np

from model_store.engines.deterministic import DeterministicScorer
from model_store.scoring import TextPair
from tests.service.conftest import hold_the_warmup

WORDS = ["please", "help", "because", "here", "example", "sure", "no", "sorry", "thanks", "cannot", "egg"]


def varied_items(n: int) -> list[dict[str, str]]:
    """n different (prompt, response) pairs of different lengths."""
    return [
        {
            "prompt": f"question {i} about {WORDS[i % len(WORDS)]}",
            "response": " ".join(WORDS[: 1 + (i * 7) % len(WORDS)] * (1 + i % 3)),
        }
        for i in range(n)
    ]


def post_in_thread(base_url: str, path: str, body: dict) -> tuple[threading.Thread, dict]:
    """Send a request from a background thread; its response lands in the returned dict."""
    result: dict = {}

    def send() -> None:
        with httpx.Client(base_url=base_url, timeout=20.0) as client:
            result["response"] = client.post(path, json=body)

    thread = threading.Thread(target=send)
    thread.start()
    return thread, result


def hold_the_engine(monkeypatch) -> threading.Event:
    """From now on every deterministic engine call waits until the returned event is set, so a
    request can wait behind a running batch for as long as the test needs (a delay_s only lasts
    so long, and on a loaded machine the test may take longer to get its next request in).
    Call it once the server is ready: the warm-up runs the engine too."""
    release = threading.Event()
    real_run = DeterministicScorer._run

    def held_run(self, batch):  # type: ignore[no-untyped-def]
        assert release.wait(30), "the test never released the engine"
        return real_run(self, batch)

    monkeypatch.setattr(DeterministicScorer, "_run", held_run)
    return release


def start_first_batch(srv, response: str) -> tuple[threading.Thread, dict]:
    """Post one item from a thread and wait until its batch has reached the (held) engine."""
    thread, first = post_in_thread(srv.base_url, "/v1/score", {"items": [{"prompt": "p", "response": response}]})
    srv.wait_until(lambda: srv.metric("plaudit_queue_wait_seconds_count") == 1, "the first batch to start")
    return thread, first


def test_concurrent_requests_share_batches_and_score_as_if_alone(live_server):
    items = varied_items(16)
    want = DeterministicScorer().score([TextPair(it["prompt"], it["response"]) for it in items])
    with live_server(engine="deterministic", engine_options={"delay_s": 0.2}, max_wait_ms=50) as srv:
        srv.wait_ready()

        async def all_at_once() -> list[float]:
            async with httpx.AsyncClient(base_url=srv.base_url, timeout=20.0) as client:
                replies = await asyncio.gather(
                    *(client.post("/v1/score", json={"items": [it]}) for it in items)
                )
            assert all(r.status_code == 200 for r in replies)
            return [r.json()["scores"][0] for r in replies]

        batches_before = srv.metric("plaudit_batch_size_items_count")
        items_before = srv.metric("plaudit_batch_size_items_sum")
        together = asyncio.run(all_at_once())
        batches = srv.metric("plaudit_batch_size_items_count") - batches_before
        items_run = srv.metric("plaudit_batch_size_items_sum") - items_before
    with live_server(engine="deterministic") as srv:  # no delay: nothing to batch with
        srv.wait_ready()
        one_by_one = [srv.client.post("/v1/score", json={"items": [it]}).json()["scores"][0] for it in items]
        assert srv.metric("plaudit_batch_size_items_count") == srv.metric("plaudit_batch_size_items_sum")

    np.testing.assert_allclose(together, want, atol=1e-5)
    np.testing.assert_allclose(one_by_one, want, atol=1e-5)
    # 16 single-item requests went through fewer than 16 engine calls: batches were shared.
    assert 1 <= batches < 16
    assert items_run == 16  # each item ran exactly once


def test_full_queue_answers_429_with_retry_after(live_server, monkeypatch):
    settings = dict(engine="deterministic", max_queue_items=2, max_items_per_request=2)
    with live_server(**settings) as srv:
        srv.wait_ready()
        # The first request's items hold both of the queue's places until the test lets the
        # engine go, however long the third request takes to arrive.
        release = hold_the_engine(monkeypatch)
        try:
            two = {"items": [{"prompt": "p", "response": "first"}, {"prompt": "p", "response": "second"}]}
            thread, first = post_in_thread(srv.base_url, "/v1/score", two)
            srv.wait_until(lambda: srv.metric("plaudit_queue_depth") == 2, "the first request to be queued")
            r = srv.client.post("/v1/score", json={"items": [{"prompt": "p", "response": "third"}]})
        finally:
            release.set()
        thread.join()
        depth_after = srv.metric("plaudit_queue_depth")
    assert r.status_code == 429
    assert r.headers["retry-after"] == "1"
    error = r.json()["error"]
    assert error["code"] == "queue_full" and "max_queue_items=2" in error["message"]
    assert first["response"].status_code == 200
    assert depth_after == 0


def _garbage_holding(marker: str, send: Callable[[], httpx.Response]) -> tuple[httpx.Response, list[object]]:
    """Send a request with automatic garbage collection off, then collect: the objects only a
    reference cycle kept alive that still carry `marker` as their response text."""
    gc.disable()  # only cycles can outlive the request now, and only until we look
    try:
        answer = send()
        gc.set_debug(gc.DEBUG_SAVEALL)  # what a collection finds is kept for us to read
        gc.collect()
        return answer, [o for o in gc.garbage if getattr(o, "response", None) == marker]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


@pytest.mark.parametrize(
    ("case", "settings", "n_items", "status", "code"),
    [
        ("queue full", dict(engine="deterministic", max_queue_items=2, max_items_per_request=2), 2, 429, "queue_full"),
        ("deadline", dict(engine="deterministic", request_timeout_s=0.3), 2, 504, "deadline_exceeded"),
        ("engine failed, batched", dict(engine="failing"), 2, 500, "scoring_failed"),
        ("engine failed, alone", dict(engine="failing"), 1, 500, "scoring_failed"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_a_request_that_fails_leaves_no_garbage_holding_its_items(live_server, monkeypatch, case, settings, n_items, status, code):
    """An error answer must free the request's items at once, not when a full garbage collection
    comes: under a burst, hundreds of refused requests' items were held in reference cycles."""
    marker = f"marker-{uuid.uuid4().hex}"
    items = [{"prompt": f"p{i}", "response": marker} for i in range(n_items)]
    with live_server(**settings) as srv:
        srv.wait_ready()
        first = None
        release = hold_the_engine(monkeypatch) if settings["engine"] == "deterministic" else None
        try:
            if release is not None:  # a running batch: one of the queue's places, or a wait
                first, _ = start_first_batch(srv, "running")
            answer, held = _garbage_holding(marker, lambda: srv.client.post("/v1/score", json={"items": items}))
        finally:
            if release is not None:
                release.set()
        if first is not None:
            first.join()
    assert answer.status_code == status and answer.json()["error"]["code"] == code, case
    assert held == []


def test_readiness_is_503_while_loading_then_200(live_server, monkeypatch):
    # The load waits for the test: every check below sees the server still loading.
    release = hold_the_warmup(monkeypatch)
    with live_server(engine="deterministic") as srv:
        try:
            ready = srv.client.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["error"]["code"] == "not_ready"
            assert "loading" in ready.json()["error"]["message"]
            assert srv.client.get("/healthz").status_code == 200
            early = srv.client.post("/v1/score", json={"items": [{"prompt": "p", "response": "r"}]})
            assert early.status_code == 503 and early.headers["retry-after"] == "1"
            # Not ready wins over a bad body and over the size limits, on every scoring route.
            for path, body in (
                ("/v1/score", {"items": [{"prompt": 1}]}),
                ("/v1/rank", {"prompt": "p", "responses": ["r"] * 100_000}),
                ("/v1/compare", {"prompt": "p", "response_a": "a"}),
            ):
                assert srv.client.post(path, json=body).json()["error"]["code"] == "not_ready", path
        finally:
            release.set()

        srv.wait_ready()
        assert srv.client.get("/readyz").json()["status"] == "ready"
        assert (
            srv.client.post("/v1/score", json={"items": [{"prompt": "p", "response": "r"}]}).status_code
            == 200
        )
        assert srv.metric("plaudit_model_info", name="deterministic", version="0") == 1


def test_model_that_cannot_load_keeps_readiness_503_with_the_reason(live_server, tmp_path):
    missing = tmp_path / "no-such-store"
    with live_server(engine="onnx", store_dir=missing, model="demo") as srv:
        srv.wait_until(lambda: "failed" in srv.client.get("/readyz").text, "the load to fail")
        ready = srv.client.get("/readyz")
        assert ready.status_code == 503
        message = ready.json()["error"]["message"]
        assert str(missing) in message and "PLAUDIT_STORE_DIR" in message
        # Retrying in a second will not mend a failed load: no Retry-After (loading has one).
        scored = srv.client.post("/v1/score", json={"items": [{"prompt": "p", "response": "r"}]})
        assert scored.status_code == 503
        assert "retry-after" not in ready.headers and "retry-after" not in scored.headers
        health = srv.client.get("/healthz")
        assert health.status_code == 200 and health.json()["model"] is None


def test_a_load_failure_shows_clients_plaudit_and_file_messages_but_only_the_type_of_others(tmp_path):
    from model_store.errors import StoreError
    from service.app import load_failure_reason

    missing = tmp_path / "model.onnx"
    try:
        missing.read_bytes()
    except OSError as exc:
        assert load_failure_reason(exc) == f"[Errno 2] No such file or directory: '{missing}'"
    store_error = StoreError("no model named 'demo' in the store; train one first")
    assert load_failure_reason(store_error) == "no model named 'demo' in the store; train one first"
    # An engine's own text (here torch's, as a corrupt weights file gives) stays in the log.
    engine_error = RuntimeError("PytorchStreamReader failed reading zip archive: /srv/models/x/torch/weights.pt")
    assert load_failure_reason(engine_error) == "unexpected RuntimeError; see the server log"
    assert load_failure_reason(ImportError("libcudart.so.12: cannot open shared object file")) == (
        "unexpected ImportError; see the server log"
    )


def test_failing_engine_gives_a_clear_500_and_the_service_stays_up(live_server):
    with live_server(engine="failing") as srv:
        srv.wait_ready()
        for _ in range(2):  # the batcher survives a failed batch and serves the next one
            r = srv.client.post(
                "/v1/score",
                json={"items": [{"prompt": "p", "response": "r"}, {"prompt": "q", "response": "s"}]},
            )
            assert r.status_code == 500
            error = r.json()["error"]
            assert error["code"] == "scoring_failed"
            assert error["message"] == "scoring failed while scoring: engine failure (test engine 'failing')"
            assert error["request_id"] == r.headers["x-request-id"]
        assert srv.client.get("/healthz").status_code == 200
        assert srv.client.get("/readyz").status_code == 200
        assert srv.metric("plaudit_requests_total", endpoint="/v1/score", status="500") == 2
        assert srv.metric("plaudit_queue_depth") == 0


def test_deadline_exceeded_is_504_and_expired_items_never_run(live_server, monkeypatch):
    settings = dict(engine="deterministic", request_timeout_s=0.3)
    with live_server(**settings) as srv:
        srv.wait_ready()
        release = hold_the_engine(monkeypatch)
        try:
            thread, first = start_first_batch(srv, "slow")
            late = srv.client.post(
                "/v1/score", json={"items": [{"prompt": "p", "response": "a"}, {"prompt": "p", "response": "b"}]}
            )
            thread.join()
        finally:
            release.set()
        srv.wait_until(lambda: srv.metric("plaudit_queue_depth") == 0, "the queue to empty")
        # The late items may wait in a prefetched batch behind the first one (held past both
        # deadlines); that batch drops them when its turn comes.
        srv.wait_until(
            lambda: srv.metric("plaudit_dropped_items_total", reason="deadline") == 2, "the late items' drop"
        )
        ran = srv.metric("plaudit_batch_size_items_sum")
    assert late.status_code == 504
    assert late.json()["error"]["code"] == "deadline_exceeded"
    assert first["response"].status_code == 504  # the engine is held past the 0.3 s deadline
    assert ran == 1  # only the first request's item reached the engine


def test_disconnected_clients_items_are_dropped_before_inference(live_server, monkeypatch):
    with live_server(engine="deterministic") as srv:
        srv.wait_ready()
        release = hold_the_engine(monkeypatch)
        try:
            thread, first = start_first_batch(srv, "first")

            body = json.dumps(
                {"items": [{"prompt": "p", "response": "gone"}, {"prompt": "p", "response": "away"}]}
            ).encode()
            sock = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
            sock.sendall(
                b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + b"Content-Length: %d\r\n\r\n" % len(body)
                + body
            )
            srv.wait_until(lambda: srv.metric("plaudit_queue_depth") == 3, "the second request to be queued")
            sock.close()
            # Its items wait (likely in a prefetched batch) behind the held first one: the server
            # must notice the disconnect before the engine is free to take them.
            srv.wait_until(lambda: srv.metric("plaudit_queue_depth") == 1, "the disconnect to be noticed")
        finally:
            release.set()
        srv.wait_until(
            lambda: srv.metric("plaudit_dropped_items_total", reason="cancelled") == 2,
            "the items to be dropped",
        )
        thread.join()
        srv.wait_until(lambda: srv.metric("plaudit_queue_depth") == 0, "the queue to empty")
        batches = srv.metric("plaudit_batch_size_items_count")
        ran = srv.metric("plaudit_batch_size_items_sum")
        disconnected = srv.metric("plaudit_requests_total", endpoint="/v1/score", status="499")
    assert first["response"].status_code == 200
    assert (batches, ran) == (1, 1)  # the disconnected request's two items never ran
    assert disconnected == 1


def test_metrics_move_after_requests(live_server):
    # No padding cap, so that each request's items of different lengths make one batch.
    with live_server(engine="deterministic", max_padding_waste=100) as srv:
        srv.wait_ready()
        assert srv.metric("plaudit_batch_size_items_count") == 0
        for n in (1, 3):
            assert srv.client.post("/v1/score", json={"items": varied_items(n)}).status_code == 200
        assert srv.client.post("/v1/rank", json={"prompt": "p", "responses": ["a", "b"]}).status_code == 200
        assert srv.metric("plaudit_batch_size_items_count") == 3
        assert srv.metric("plaudit_batch_size_items_sum") == 6
        assert srv.metric("plaudit_batch_size_tokens_sum") > 0
        assert srv.metric("plaudit_tokenize_seconds_count") == 3
        assert srv.metric("plaudit_inference_seconds_count") == 3
        assert srv.metric("plaudit_queue_wait_seconds_count") == 6
        assert srv.metric("plaudit_requests_total", endpoint="/v1/score", status="200") == 2
        assert srv.metric("plaudit_requests_total", endpoint="/v1/rank", status="200") == 1
        assert srv.metric("plaudit_request_duration_seconds_count", endpoint="/v1/score") == 2
        assert srv.metric("plaudit_queue_depth") == 0
        assert srv.metric("plaudit_model_info", name="deterministic", version="0") == 1


def test_request_series_are_labelled_by_route_and_every_unknown_path_shares_one(live_server):
    with live_server(engine="deterministic", max_body_bytes=1000) as srv:
        srv.wait_ready()
        for path in ("/docs", "/openapi.json", "/no-such-page", "/wp-login.php"):
            srv.client.get(path)
        # Refused before routing: still labelled by the route it was sent to.
        too_big = srv.client.post("/v1/models/demo/promote", json={"version": "1", "pad": "x" * 2000})
        assert too_big.status_code == 413
        assert srv.metric("plaudit_requests_total", endpoint="/docs", status="200") == 1
        assert srv.metric("plaudit_requests_total", endpoint="/openapi.json", status="200") == 1
        assert srv.metric("plaudit_requests_total", endpoint="/v1/models/{name}/promote", status="413") == 1
        assert srv.metric("plaudit_requests_total", endpoint="unmatched", status="404") == 2
        assert srv.metric("plaudit_requests_total", endpoint="unmatched", status="200") == 0
        assert srv.metric("plaudit_requests_total", endpoint="unmatched", status="413") == 0


def answer_to_headers_only(srv, content_length: int) -> str:
    """What the server answers a POST /v1/score whose body, announced, is never sent: only a
    refusal made before reading the body can come back."""
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as unread:
        unread.sendall(
            b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {content_length}\r\n\r\n".encode()
        )
        return unread.recv(65536).decode()


def test_past_max_concurrent_requests_a_request_is_429_before_its_body_is_read(live_server, monkeypatch):
    # A burst of large bodies, each read and parsed before the queue could refuse it, took the
    # server's memory to 2 GB; past the limit a request is now refused unread.
    with live_server(engine="deterministic", max_concurrent_requests=2) as srv:
        srv.wait_ready()
        release = hold_the_engine(monkeypatch)
        try:
            first, first_result = start_first_batch(srv, "one")
            second, second_result = post_in_thread(
                srv.base_url, "/v1/score", {"items": [{"prompt": "p", "response": "two"}]}
            )
            srv.wait_until(lambda: srv.metric("plaudit_queue_depth") == 2, "the second request to be queued")
            answer = answer_to_headers_only(srv, content_length=10_000_000)  # without the 10 MB
            assert answer.startswith("HTTP/1.1 429 ")
            assert "retry-after: 1" in answer.lower()
            assert '"code":"overloaded"' in answer and "max_concurrent_requests=2" in answer
            assert srv.client.get("/readyz").status_code == 200  # probes answer under any load
            assert srv.client.get("/metrics").status_code == 200
        finally:
            release.set()
        first.join()
        second.join()
    assert first_result["response"].status_code == 200 and second_result["response"].status_code == 200


def test_past_max_inflight_body_bytes_a_request_is_429_before_its_body_is_read(live_server, monkeypatch):
    with live_server(engine="deterministic", max_inflight_body_bytes=3000) as srv:
        srv.wait_ready()
        release = hold_the_engine(monkeypatch)
        try:
            # Alone, a body over the budget is let in (max_body_bytes bounds it).
            large = {"items": [{"prompt": "p", "response": "x" * 2500}]}
            first, first_result = post_in_thread(srv.base_url, "/v1/score", large)
            srv.wait_until(lambda: srv.metric("plaudit_queue_wait_seconds_count") == 1, "the large request to run")
            # Still fits beside it (2,500-odd bytes and 60-odd of 3,000): admitted, and waiting.
            small, small_result = post_in_thread(srv.base_url, "/v1/score", {"items": [{"prompt": "p", "response": "tiny"}]})
            srv.wait_until(lambda: srv.metric("plaudit_queue_depth") == 2, "the small request to be queued")
            answer = answer_to_headers_only(srv, content_length=1000)  # refused on what it announces
            assert answer.startswith("HTTP/1.1 429 ") and "retry-after: 1" in answer.lower()
            assert '"code":"overloaded"' in answer and "max_inflight_body_bytes=3000" in answer
            assert srv.client.get("/readyz").status_code == 200  # probes carry no body share
        finally:
            release.set()
        first.join()
        small.join()
        after = srv.client.post("/v1/score", json={"items": [{"prompt": "p", "response": "x" * 1000}]})
    assert first_result["response"].status_code == 200 and small_result["response"].status_code == 200
    assert after.status_code == 200  # the shares came back when the requests ended


def test_a_body_that_does_not_arrive_in_time_is_408_and_gives_its_place_back(live_server):
    """A client that announces a body and stalls holds a place under max_concurrent_requests and
    a share of the body budget; four stalled 8 MiB uploads refused every other request until
    their sockets closed. Past the request timeout the stalled one gets 408 and its place back."""
    with live_server(engine="deterministic", request_timeout_s=1.0, max_concurrent_requests=1) as srv:
        srv.wait_ready()
        with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as stalled:
            stalled.sendall(
                b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 100\r\n\r\n{"
            )
            answer = stalled.recv(65536).decode()  # the server answers without the rest of the body
            assert stalled.recv(65536) == b""  # and closes the connection
        assert answer.startswith("HTTP/1.1 408 ") and "connection: close" in answer.lower()
        body = json.loads(answer.split("\r\n\r\n", 1)[1])
        assert body["error"]["code"] == "request_timeout" and "PLAUDIT_REQUEST_TIMEOUT_S" in body["error"]["message"]
        assert body["error"]["request_id"]
        after = srv.client.post("/v1/score", json={"items": [{"prompt": "p", "response": "r"}]})
        assert after.status_code == 200  # the one place under max_concurrent_requests came back

