"""The HTTP API end to end over real HTTP, on the deterministic engine."""

from __future__ import annotations

import math

import numpy as np

from model_store.engines.deterministic import DeterministicScorer
from model_store.scoring import TextPair
from service.routes.scoring import sigmoid

PROMPT = "How do I boil an egg?"
GOOD = "Here is how: put the egg in boiling water for eight minutes, because that sets the yolk."
BAD = "No. I hate eggs."


def expected(*pairs: tuple[str, str]) -> list[float]:
    return DeterministicScorer().score([TextPair(p, r) for p, r in pairs]).tolist()


def test_score_returns_one_score_per_item_with_model_and_request_id(deterministic_server):
    srv = deterministic_server
    body = {"items": [{"prompt": PROMPT, "response": GOOD}, {"prompt": PROMPT, "response": BAD}]}
    r = srv.client.post("/v1/score", json=body)
    assert r.status_code == 200, r.text
    data = r.json()
    np.testing.assert_allclose(data["scores"], expected((PROMPT, GOOD), (PROMPT, BAD)), atol=1e-5)
    assert data["scores"][0] > data["scores"][1]
    assert data["model"] == {"name": "deterministic", "version": "0"}
    assert data["request_id"] == r.headers["x-request-id"]
    assert len(data["request_id"]) >= 16


def test_request_id_from_the_client_is_echoed(deterministic_server):
    r = deterministic_server.client.post(
        "/v1/score", json={"items": [{"prompt": "", "response": "hi"}]}, headers={"X-Request-ID": "abc-123"}
    )
    assert r.status_code == 200
    assert r.headers["x-request-id"] == "abc-123"
    assert r.json()["request_id"] == "abc-123"


def test_compare_single_gives_stable_sigmoid_of_score_difference(deterministic_server):
    r = deterministic_server.client.post(
        "/v1/compare", json={"prompt": PROMPT, "response_a": GOOD, "response_b": BAD}
    )
    assert r.status_code == 200, r.text
    data = r.json()
    score_a, score_b = expected((PROMPT, GOOD), (PROMPT, BAD))
    assert math.isclose(data["score_a"], score_a, abs_tol=1e-5)
    assert math.isclose(data["score_b"], score_b, abs_tol=1e-5)
    assert math.isclose(data["p_a_preferred"], 1 / (1 + math.exp(-(score_a - score_b))), rel_tol=1e-6)
    assert data["p_a_preferred"] > 0.5
    assert data["model"]["name"] == "deterministic" and data["request_id"]


def test_compare_list_form_returns_results_in_order(deterministic_server):
    comparisons = [
        {"prompt": PROMPT, "response_a": GOOD, "response_b": BAD},
        {"prompt": PROMPT, "response_a": BAD, "response_b": GOOD},
    ]
    r = deterministic_server.client.post("/v1/compare", json={"comparisons": comparisons})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert len(results) == 2
    assert math.isclose(results[0]["p_a_preferred"] + results[1]["p_a_preferred"], 1.0, rel_tol=1e-6)
    assert results[0]["score_a"] == results[1]["score_b"]


def test_rank_orders_best_first_and_honours_top_n(deterministic_server):
    responses = [BAD, GOOD, "Boil it.", "Sorry, I cannot help."]
    r = deterministic_server.client.post("/v1/rank", json={"prompt": PROMPT, "responses": responses})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    want = expected(*[(PROMPT, resp) for resp in responses])
    assert [res["index"] for res in results] == sorted(range(4), key=lambda i: -want[i])
    assert [res["score"] for res in results] == sorted((res["score"] for res in results), reverse=True)

    top = deterministic_server.client.post(
        "/v1/rank", json={"prompt": PROMPT, "responses": responses, "top_n": 2}
    )
    assert top.json()["results"] == results[:2]


def test_models_describes_what_is_loaded(deterministic_server):
    r = deterministic_server.client.get("/v1/models")
    assert r.status_code == 200
    data = r.json()
    assert data["model"] == {"name": "deterministic", "version": "0"}
    assert data["engine"] == "deterministic"
    assert data["precision"] == "fp32"
    assert data["max_length"] == 512
    assert data["aliases"] == []
    assert data["request_id"]


def test_health_readiness_and_openapi(deterministic_server):
    client = deterministic_server.client
    health = client.get("/healthz")
    assert health.status_code == 200 and health.json()["status"] == "alive"
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["model"]["name"] == "deterministic"
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    assert {"/v1/score", "/v1/compare", "/v1/rank", "/v1/models", "/healthz", "/readyz", "/metrics"} <= set(
        paths
    )
    # Errors are documented in the shape they are sent in, not FastAPI's {"detail": [...]}.
    error_ref = {"$ref": "#/components/schemas/ErrorResponse"}
    for path in ("/v1/score", "/v1/compare", "/v1/rank"):
        responses = paths[path]["post"]["responses"]
        assert {"413", "422", "429", "503", "504"} <= set(responses), path
        assert all(responses[s]["content"]["application/json"]["schema"] == error_ref for s in ("413", "422", "429"))
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    # One operationId per operation: GET and HEAD of a probe once shared one (FastAPI warned of it).
    operation_ids = [operation["operationId"] for operations in paths.values() for operation in operations.values()]
    assert len(operation_ids) == len(set(operation_ids)), sorted(operation_ids)
    assert {paths[p]["head"]["operationId"] for p in ("/healthz", "/readyz", "/metrics")} == {
        "healthz_healthz_head", "readyz_readyz_head", "metrics_metrics_head"}
    # Every error status of every route, its own wording or its router's, in that one shape.
    documented = [
        (path, method, status, response)
        for path, operations in paths.items()
        for method, operation in operations.items()
        for status, response in operation["responses"].items()
        if status[0] in "45"
    ]
    assert len(documented) > 40
    for path, method, status, response in documented:
        assert response["content"]["application/json"]["schema"] == error_ref, (method, path, status)
    replay = paths["/v1/feedback"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert replay == {"$ref": "#/components/schemas/FeedbackCreated"}


def test_drop_and_trigger_counters_exist_at_zero_before_anything_happens(live_server):
    # Present as samples (srv.metric would read a missing one as 0 too), so that rates and
    # alerts on them see 0 rather than "no data".
    with live_server(engine="deterministic") as srv:
        srv.wait_ready()
        text = srv.client.get("/metrics").text
    for reason in ("cancelled", "deadline", "failed"):
        assert f'plaudit_dropped_items_total{{reason="{reason}"}} 0.0' in text
    for trigger in ("full", "max_wait", "nothing_coming"):
        assert f'plaudit_batch_triggers_total{{trigger="{trigger}"}} 0.0' in text


def test_probes_answer_head_as_load_balancers_send_it(deterministic_server):
    client = deterministic_server.client
    for path in ("/healthz", "/readyz", "/metrics"):
        got, head = client.get(path), client.head(path)
        assert (head.status_code, got.status_code) == (200, 200), path
        assert head.content == b"" and head.headers["content-type"] == got.headers["content-type"], path


def test_unknown_path_uses_the_error_shape(deterministic_server):
    r = deterministic_server.client.get("/v1/nope")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"
    assert r.json()["error"]["request_id"] == r.headers["x-request-id"]


def test_a_trailing_slash_is_a_404_not_a_redirect(deterministic_server):
    # A 307 carried a Location made of the client's Host header, and an empty body.
    r = deterministic_server.client.post(
        "/v1/score/", json={"items": [{"prompt": "p", "response": "r"}]}, headers={"Host": "elsewhere.example"},
        follow_redirects=False,
    )
    assert r.status_code == 404 and "location" not in r.headers
    assert r.json()["error"]["code"] == "not_found"


def test_sigmoid_is_stable_at_the_extremes():
    assert sigmoid(0.0) == 0.5
    assert sigmoid(1000.0) == 1.0 and sigmoid(-1000.0) == 0.0
    assert math.isclose(sigmoid(-30.0), math.exp(-30.0), rel_tol=1e-12)
    assert math.isclose(sigmoid(2.0) + sigmoid(-2.0), 1.0, rel_tol=1e-15)


def test_the_access_log_has_a_line_per_request_with_its_request_id(live_server, caplog):
    import logging

    with live_server(engine="deterministic", access_log=True) as srv:
        srv.wait_ready()
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="plaudit.access"):
            ok = srv.client.post(
                "/v1/score", json={"items": [{"prompt": "p", "response": "r"}]}, headers={"X-Request-ID": "trace-123"}
            )
            bad = srv.client.post("/v1/rank", json={"prompt": "p"})
            srv.wait_until(lambda: len([r for r in caplog.records if r.name == "plaudit.access"]) >= 2, "two lines")
    lines = [r.getMessage() for r in caplog.records if r.name == "plaudit.access"]
    assert ok.status_code == 200 and bad.status_code == 422
    assert '"POST /v1/score" 200 ' in lines[0] and lines[0].endswith(" ms request_id=trace-123")
    assert '"POST /v1/rank" 422 ' in lines[1] and lines[1].endswith(f"request_id={bad.headers['x-request-id']}")


def test_the_access_log_cannot_be_forged_through_a_path_or_a_request_id(live_server, caplog):
    import logging

    with live_server(engine="deterministic", access_log=True) as srv:
        srv.wait_ready()
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="plaudit.access"):
            forged_path = srv.client.get("/x%0a2026-12-08 00:00:00,000 INFO plaudit.access FORGED%00")
            spaced = srv.client.get("/healthz", headers={"X-Request-ID": "abc request_id=forged"})
            srv.wait_until(lambda: len([r for r in caplog.records if r.name == "plaudit.access"]) >= 2, "two lines")
    lines = [r.getMessage() for r in caplog.records if r.name == "plaudit.access"]
    assert forged_path.status_code == 404
    assert "\n" not in lines[0] and "\x00" not in lines[0]
    assert '"GET /x\\n2026-12-08 00:00:00,000 INFO plaudit.access FORGED\\x00" 404 ' in lines[0]
    assert spaced.status_code == 200 and spaced.headers["x-request-id"] != "abc request_id=forged"
    assert lines[1].count("request_id=") == 1 and lines[1].endswith(f"request_id={spaced.headers['x-request-id']}")


def test_no_access_log_unless_asked(deterministic_server, caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="plaudit.access"):
        assert deterministic_server.client.get("/healthz").status_code == 200
    assert not [r for r in caplog.records if r.name == "plaudit.access"]
