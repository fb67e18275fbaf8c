"""Error answers over real HTTP: one JSON shape, precise messages, the right status."""

from __future__ import annotations

import logging
import socket

from service.app import create_app
from service.settings import Settings

# deterministic_server limits: max_items_per_request=8, max_chars_per_text=200, max_body_bytes=64 KiB


def assert_error(r, status: int, code: str) -> str:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["code"] == code
    assert error["request_id"] == r.headers["x-request-id"]
    return error["message"]


def test_missing_field_names_its_path(deterministic_server):
    r = deterministic_server.client.post(
        "/v1/score", json={"items": [{"prompt": "p", "response": "r"}, {"prompt": "p"}]}
    )
    assert assert_error(r, 422, "invalid_request") == "items.1.response: field required"


def test_wrong_type_and_unknown_field_are_422(deterministic_server):
    r = deterministic_server.client.post("/v1/score", json={"items": [{"prompt": "p", "respone": "r"}]})
    message = assert_error(r, 422, "invalid_request")
    assert "items.0.response: field required" in message
    assert "items.0.respone: extra inputs are not permitted" in message

    r = deterministic_server.client.post("/v1/rank", json={"prompt": "p", "responses": ["a"], "top_n": 0})
    assert assert_error(r, 422, "invalid_request").startswith(
        "top_n: input should be greater than or equal to 1"
    )


def test_empty_items_and_invalid_json_are_422(deterministic_server):
    r = deterministic_server.client.post("/v1/score", json={"items": []})
    assert assert_error(r, 422, "invalid_request").startswith("items: list should have at least 1 item")
    r = deterministic_server.client.post(
        "/v1/score", content=b'{"items": [', headers={"content-type": "application/json"}
    )
    assert assert_error(r, 422, "invalid_request") == "body: invalid JSON at character 11: expecting value"
    for body, message in (
        (b'{"items": "a\x01"}', "body: invalid JSON at character 12: invalid control character"),
        (b'{"items": []} x', "body: invalid JSON at character 14: extra data"),
    ):
        r = deterministic_server.client.post("/v1/score", content=body, headers={"content-type": "application/json"})
        assert assert_error(r, 422, "invalid_request") == message, body


def test_lone_surrogates_are_422_naming_the_field_on_every_scoring_route(deterministic_server):
    # JSON lets a client send "\ud800", which is no valid text: no tokenizer takes it.
    client = deterministic_server.client
    bodies = {
        "/v1/score": (b'{"items": [{"prompt": "p", "response": "ok"}, {"prompt": "\\ud800", "response": "r"}]}', "items.1.prompt"),
        "/v1/compare": (b'{"prompt": "p", "response_a": "a", "response_b": "b\\udfff"}', "response_b"),
        "/v1/rank": (b'{"prompt": "p", "responses": ["a", "\\ud83d"]}', "responses.1"),
    }
    for path, (body, field) in bodies.items():
        r = client.post(path, content=body, headers={"content-type": "application/json"})
        assert assert_error(r, 422, "invalid_request").startswith(f"{field}: not valid Unicode: a lone surrogate"), path


def test_a_body_that_is_not_utf8_is_422_like_any_invalid_json(deterministic_server):
    r = deterministic_server.client.post(
        "/v1/score",
        content=b'{"items": [{"prompt": "\xff\xfe", "response": "x"}]}',
        headers={"content-type": "application/json"},
    )
    assert assert_error(r, 422, "invalid_request") == "body: not valid JSON; send a JSON object encoded as UTF-8"


def test_a_body_sent_as_a_form_is_415_naming_the_content_type(deterministic_server):
    # What plain `curl -d` sends: the JSON is fine, its declared type is not.
    r = deterministic_server.client.post(
        "/v1/score",
        content=b'{"items": [{"prompt": "a", "response": "b"}]}',
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    message = assert_error(r, 415, "unsupported_media_type")
    assert message == (
        "the body was sent as application/x-www-form-urlencoded; send JSON with Content-Type: application/json"
    )
    ok = deterministic_server.client.post(
        "/v1/score",
        content=b'{"items": [{"prompt": "a", "response": "b"}]}',
        headers={"content-type": "application/json; charset=utf-8"},
    )
    assert ok.status_code == 200


def test_a_body_sent_without_a_content_type_is_415_and_no_body_is_422(deterministic_server):
    # What `requests.post(url, data=json.dumps(body))` sends: JSON, with no type at all.
    r = deterministic_server.client.post("/v1/score", content=b'{"items": [{"prompt": "a", "response": "b"}]}')
    assert "content-type" not in r.request.headers
    message = assert_error(r, 415, "unsupported_media_type")
    assert message == "the body was sent without a Content-Type; send JSON with Content-Type: application/json"
    empty = deterministic_server.client.post("/v1/score")
    assert assert_error(empty, 422, "invalid_request").startswith("body:")


def test_a_compressed_body_is_415_not_bad_json(deterministic_server):
    import gzip

    r = deterministic_server.client.post(
        "/v1/score",
        content=gzip.compress(b'{"items": [{"prompt": "a", "response": "b"}]}'),
        headers={"content-type": "application/json", "content-encoding": "gzip"},
    )
    message = assert_error(r, 415, "unsupported_media_type")
    assert message == "request bodies with Content-Encoding 'gzip' are not accepted; send plain JSON"


def test_top_n_must_be_a_json_integer(deterministic_server):
    for top_n in ("2", True, 1.5):
        r = deterministic_server.client.post("/v1/rank", json={"prompt": "p", "responses": ["a", "b"], "top_n": top_n})
        assert assert_error(r, 422, "invalid_request").startswith("top_n: input should be a valid integer"), top_n


def test_compare_needs_exactly_one_form(deterministic_server):
    r = deterministic_server.client.post("/v1/compare", json={"prompt": "p", "response_a": "a"})
    assert "missing response_b" in assert_error(r, 422, "invalid_request")
    both = {
        "prompt": "p",
        "response_a": "a",
        "response_b": "b",
        "comparisons": [{"prompt": "p", "response_a": "a", "response_b": "b"}],
    }
    r = deterministic_server.client.post("/v1/compare", json=both)
    assert "not both" in assert_error(r, 422, "invalid_request")


def test_too_many_items_is_413_naming_the_limit(deterministic_server):
    items = [{"prompt": "p", "response": "r"}] * 9
    message = assert_error(
        deterministic_server.client.post("/v1/score", json={"items": items}), 413, "payload_too_large"
    )
    assert "9 scored items" in message and "max_items_per_request=8" in message

    comparisons = [{"prompt": "p", "response_a": "a", "response_b": "b"}] * 5
    r = deterministic_server.client.post("/v1/compare", json={"comparisons": comparisons})
    assert "10 scored items (2 per comparison)" in assert_error(r, 413, "payload_too_large")


def test_too_long_text_is_413_naming_the_field(deterministic_server):
    items = [{"prompt": "p", "response": "r"}, {"prompt": "p", "response": "x" * 201}]
    message = assert_error(
        deterministic_server.client.post("/v1/score", json={"items": items}), 413, "payload_too_large"
    )
    assert message.startswith("items.1.response has 201 characters")
    assert "max_chars_per_text=200" in message

    r = deterministic_server.client.post("/v1/rank", json={"prompt": "p", "responses": ["ok", "y" * 300]})
    assert assert_error(r, 413, "payload_too_large").startswith("responses.1 has 300 characters")


def test_body_over_limit_by_content_length_is_413(deterministic_server):
    r = deterministic_server.client.post(
        "/v1/score", content=b"x" * (64 * 1024 + 1), headers={"content-type": "application/json"}
    )
    assert "max_body_bytes=65536" in assert_error(r, 413, "payload_too_large")
    # The middleware answers this one below FastAPI, in the same bytes as any other error.
    small = deterministic_server.client.post("/v1/score", json={"items": [{"prompt": "p", "response": "x" * 300}]})
    assert r.content.startswith(b'{"error":{"code":"payload_too_large","message":"')
    assert small.content.startswith(b'{"error":{"code":"payload_too_large","message":"')


def test_streamed_body_over_limit_is_413(deterministic_server):
    def chunks():
        for _ in range(20):
            yield b" " * 8192  # 160 KiB in all, with no Content-Length (chunked)

    r = deterministic_server.client.post(
        "/v1/score", content=chunks(), headers={"content-type": "application/json"}
    )
    assert "content-length" not in r.request.headers
    assert "max_body_bytes=65536" in assert_error(r, 413, "payload_too_large")


def test_raw_chunked_request_over_limit_gets_413_before_the_end(deterministic_server):
    """The limit is enforced while reading: the server answers without the full body."""
    with socket.create_connection(("127.0.0.1", deterministic_server.port), timeout=10) as sock:
        head = (
            b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b"a" * 40000
        sock.sendall(
            head + b"%x\r\n" % len(chunk) + chunk + b"\r\n" + b"%x\r\n" % len(chunk) + chunk + b"\r\n"
        )
        # The body never ended (no terminating 0-chunk), yet the answer comes.
        raw = b""
        while b'"payload_too_large"' not in raw and (data := sock.recv(65536)):
            raw += data
    reply = raw.decode("latin-1")
    assert reply.startswith("HTTP/1.1 413")
    assert '"payload_too_large"' in reply


def test_unexpected_exception_is_a_generic_500_with_the_traceback_only_in_the_log(live_server, caplog):
    app = create_app(Settings(engine="deterministic"))

    @app.get("/explode")  # a route with a bug, added to the real app's full middleware stack
    async def explode() -> None:
        raise KeyError("secret internal detail")

    with caplog.at_level(logging.ERROR, logger="plaudit.service"), live_server(app=app) as srv:
        r = srv.client.get("/explode", headers={"X-Request-ID": "boom-1"})
        assert srv.client.get("/healthz").status_code == 200
    assert r.status_code == 500
    assert r.json() == {
        "error": {"code": "internal_error", "message": "internal error", "request_id": "boom-1"}
    }
    assert r.headers["x-request-id"] == "boom-1"
    assert "secret" not in r.text
    logged = [rec for rec in caplog.records if "boom-1" in rec.getMessage()]
    assert (
        logged and logged[0].exc_info is not None and "secret internal detail" in str(logged[0].exc_info[1])
    )
