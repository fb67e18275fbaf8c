"""API keys and scopes over real HTTP: every endpoint without a key (401), with the wrong
scope (403) and with the right one; probes; the key file; keys never in logs or reprs."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from service.app import create_app
from service.auth import ApiKeyTable
from service.settings import Settings, describe_settings_error
from tests.service.conftest import LiveServer, ServerFactory, _live_server

SCORE_KEY = "score-key-0123456789abcdef"
FEEDBACK_KEY = "feedback-key-0123456789abcdef"
ADMIN_KEY = "admin-key-0123456789abcdef"
KEYS = {SCORE_KEY: ["score"], FEEDBACK_KEY: ["feedback"], ADMIN_KEY: ["admin"]}
KEY_OF_SCOPE = {"score": SCORE_KEY, "feedback": FEEDBACK_KEY, "admin": ADMIN_KEY}
CHALLENGE = 'Bearer realm="plaudit"'
PROBES = ["/healthz", "/readyz", "/metrics"]

COMPARE = {"prompt": "Is the sun a star?", "response_a": "Yes.", "response_b": "No."}
# (method, path, body, scope, status with the right scope). The lifecycle routes belong to
# the hot-swap work: promote on the deterministic engine is refused by the route itself (409),
# which still shows that authentication let the request through.
ENDPOINTS = [
    ("POST", "/v1/score", {"items": [{"prompt": "p", "response": "r"}]}, "score", 200),
    ("POST", "/v1/compare", COMPARE, "score", 200),
    ("POST", "/v1/rank", {"prompt": "p", "responses": ["a", "b"]}, "score", 200),
    ("GET", "/v1/models", None, "score", 200),
    ("POST", "/v1/feedback", {"prompt": "p", "response": "r", "liked": True}, "feedback", 201),
    ("GET", "/v1/feedback/export", None, "admin", 200),
    ("GET", "/v1/feedback/stats", None, "admin", 200),
    ("POST", "/v1/models/reload", None, "admin", 200),
    ("POST", "/v1/models/{name}/promote", {"version": "1"}, "admin", 409),
]
ENDPOINT_IDS = [f"{method} {path}" for method, path, *_ in ENDPOINTS]


def concrete(path: str) -> str:
    return path.replace("{name}", "deterministic")


def call(srv: LiveServer, method: str, path: str, body: object, headers: dict[str, str] | None = None):
    return srv.client.request(method, concrete(path), json=body, headers=headers or {})


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    db = tmp_path_factory.mktemp("auth") / "feedback.db"
    with _live_server(Settings(engine="deterministic", api_keys=KEYS, feedback_db=f"sqlite:///{db}")) as srv:
        srv.wait_ready()
        yield srv


def test_the_table_lists_every_endpoint_the_app_has(tmp_path: Path):
    app = create_app(Settings(engine="deterministic", feedback_db=f"sqlite:///{tmp_path / 'f.db'}"))
    routes = {(method.upper(), path) for path, ops in app.openapi()["paths"].items() for method in ops}
    probes = {(method, p) for p in PROBES for method in ("GET", "HEAD")}
    assert routes == {(method, path) for method, path, *_ in ENDPOINTS} | probes


@pytest.mark.parametrize(("method", "path", "body", "scope", "ok"), ENDPOINTS, ids=ENDPOINT_IDS)
def test_without_a_key_is_401_with_a_challenge(server, method, path, body, scope, ok):
    r = call(server, method, path, body)
    assert r.status_code == 401, r.text
    assert r.headers["www-authenticate"] == CHALLENGE
    error = r.json()["error"]
    assert error["code"] == "unauthorized" and error["request_id"] == r.headers["x-request-id"]
    assert error["message"].startswith("missing API key: send Authorization: Bearer KEY or X-API-Key: KEY")


@pytest.mark.parametrize(("method", "path", "body", "scope", "ok"), ENDPOINTS, ids=ENDPOINT_IDS)
def test_unknown_key_is_401(server, method, path, body, scope, ok):
    r = call(server, method, path, body, {"Authorization": f"Bearer {SCORE_KEY}x"})
    assert r.status_code == 401, r.text
    assert r.headers["www-authenticate"] == CHALLENGE
    assert r.json()["error"]["message"].startswith("unknown API key")


@pytest.mark.parametrize(("method", "path", "body", "scope", "ok"), ENDPOINTS, ids=ENDPOINT_IDS)
def test_wrong_scope_is_403_naming_the_scope(server, method, path, body, scope, ok):
    for other_scope, key in KEY_OF_SCOPE.items():
        if other_scope == scope:
            continue
        r = call(server, method, path, body, {"X-API-Key": key})
        assert r.status_code == 403, r.text
        error = r.json()["error"]
        assert error["code"] == "forbidden"
        assert (
            f"lacks the '{scope}' scope that {method} {concrete(path)} needs (it has: {other_scope})"
            in error["message"]
        )


@pytest.mark.parametrize(("method", "path", "body", "scope", "ok"), ENDPOINTS, ids=ENDPOINT_IDS)
def test_right_scope_passes_with_either_header(server, method, path, body, scope, ok):
    key = KEY_OF_SCOPE[scope]
    for headers in (
        {"Authorization": f"Bearer {key}"},
        {"X-API-Key": key},
        {"authorization": f"bearer  {key}"},
    ):
        r = call(server, method, path, body, headers)
        assert r.status_code == ok, (headers, r.text)


# Bodies FastAPI fails to read before it runs any dependency: cut JSON, bytes that are not
# UTF-8, a form body. A caller without the route's key must learn that first, not what its
# body got wrong.
UNREADABLE_BODIES = [
    (b"{", "application/json"),
    (b'{"items": "\xff"}', "application/json"),
    (b"items=1", "application/x-www-form-urlencoded"),
]
BODY_ROUTES = [e for e in ENDPOINTS if e[2] is not None]


@pytest.mark.parametrize(("content", "content_type"), UNREADABLE_BODIES, ids=["cut", "not-utf8", "form"])
@pytest.mark.parametrize(("method", "path", "body", "scope", "ok"), BODY_ROUTES, ids=[f"{m} {p}" for m, p, *_ in BODY_ROUTES])
def test_an_unreadable_body_is_refused_for_the_key_first(server, method, path, body, scope, ok, content, content_type):
    headers = {"Content-Type": content_type}
    r = server.client.request(method, concrete(path), content=content, headers=headers)
    assert r.status_code == 401, r.text
    assert r.headers["www-authenticate"] == CHALLENGE
    wrong = next(key for other, key in KEY_OF_SCOPE.items() if other != scope)
    r = server.client.request(method, concrete(path), content=content, headers={**headers, "X-API-Key": wrong})
    assert r.status_code == 403, r.text
    assert r.json()["error"]["code"] == "forbidden"
    # With the right key, the body's own error comes back as before.
    right = {**headers, "X-API-Key": KEY_OF_SCOPE[scope]}
    r = server.client.request(method, concrete(path), content=content, headers=right)
    assert r.status_code in (415, 422), r.text
    assert r.json()["error"]["code"] in ("unsupported_media_type", "invalid_request")


def test_a_key_with_several_scopes_opens_each(live_server: ServerFactory, tmp_path: Path):
    both = "score-and-feedback-0123456789"
    with live_server(
        engine="deterministic",
        api_keys={both: "score, feedback"},
        feedback_db=f"sqlite:///{tmp_path / 'f.db'}",
    ) as srv:
        srv.wait_ready()
        headers = {"X-API-Key": both}
        assert srv.client.post("/v1/compare", json=COMPARE, headers=headers).status_code == 200
        assert (
            srv.client.post(
                "/v1/feedback", json={"prompt": "p", "response": "r", "liked": True}, headers=headers
            ).status_code
            == 201
        )
        assert srv.client.get("/v1/feedback/stats", headers=headers).status_code == 403


@pytest.mark.parametrize("probe", PROBES)
def test_probes_are_open_by_default(server, probe):
    assert server.client.get(probe).status_code == 200


def test_closed_probes_need_any_valid_key(live_server: ServerFactory, tmp_path: Path):
    with live_server(
        engine="deterministic", api_keys=KEYS, open_probes=False, feedback_db=f"sqlite:///{tmp_path / 'f.db'}"
    ) as srv:
        srv.wait_until(
            lambda: srv.client.get("/readyz", headers={"X-API-Key": FEEDBACK_KEY}).status_code == 200,
            "readiness",
        )
        for probe in PROBES:
            refused = srv.client.get(probe)
            assert refused.status_code == 401 and refused.headers["www-authenticate"] == CHALLENGE
            assert srv.client.get(probe, headers={"X-API-Key": SCORE_KEY + "!"}).status_code == 401
            assert srv.client.get(probe, headers={"X-API-Key": FEEDBACK_KEY}).status_code == 200


def test_keys_from_a_file_work_alongside_the_env_keys(live_server: ServerFactory, tmp_path: Path):
    key_file = tmp_path / "keys.txt"
    key_file.write_text(
        f"# ops keys\n\n{ADMIN_KEY} admin, score\n{FEEDBACK_KEY}   feedback\n", encoding="utf-8"
    )
    settings = {
        "api_keys": {SCORE_KEY: ["score"]},
        "api_keys_file": key_file,
        "feedback_db": f"sqlite:///{tmp_path / 'f.db'}",
    }
    with live_server(engine="deterministic", **settings) as srv:
        srv.wait_ready()
        assert srv.client.get("/v1/feedback/stats", headers={"X-API-Key": ADMIN_KEY}).status_code == 200
        assert srv.client.get("/v1/models", headers={"X-API-Key": ADMIN_KEY}).status_code == 200
        assert srv.client.get("/v1/models", headers={"X-API-Key": SCORE_KEY}).status_code == 200
        assert srv.client.get("/v1/models", headers={"X-API-Key": FEEDBACK_KEY}).status_code == 403


@pytest.mark.parametrize(
    ("lines", "says"),
    [
        (f"{ADMIN_KEY}\n", "keys.txt:1: expected `KEY scope,scope`"),
        (
            f"# c\n{ADMIN_KEY} admin,root\n",
            "keys.txt:2: unknown scope 'root'; scopes are score, feedback, admin",
        ),
        ("shortkey score\n", "keys.txt:1: the key has 8 characters, fewer than 16"),
        (
            f"{ADMIN_KEY} admin\n{ADMIN_KEY} score\n",
            "keys.txt:2: this key already appears on an earlier line",
        ),
        (f"{SCORE_KEY} admin\n", "a key in api_keys_file"),
    ],
)
def test_bad_key_files_are_refused_naming_the_line_not_the_key(tmp_path: Path, lines: str, says: str):
    key_file = tmp_path / "keys.txt"
    key_file.write_text(lines, encoding="utf-8")
    with pytest.raises(ValidationError) as caught:
        Settings(api_keys={SCORE_KEY: ["score"]}, api_keys_file=key_file)
    message = describe_settings_error(caught.value)
    assert says in message
    for text in (message, str(caught.value)):
        assert ADMIN_KEY not in text and SCORE_KEY not in text and "shortkey" not in text


def test_bad_env_keys_are_refused_without_echoing_them():
    with pytest.raises(ValidationError) as caught:
        Settings(api_keys={ADMIN_KEY: ["admin"], SCORE_KEY: ["scores"]})
    assert "PLAUDIT_API_KEYS, key #2: unknown scope 'scores'" in describe_settings_error(caught.value)
    assert SCORE_KEY not in str(caught.value) and ADMIN_KEY not in str(caught.value)
    with pytest.raises(ValidationError, match="no scopes given"):
        Settings(api_keys={ADMIN_KEY: []})


def test_missing_key_file_is_named(tmp_path: Path):
    with pytest.raises(ValidationError, match="api_keys_file .*nope.txt does not exist"):
        Settings(api_keys_file=tmp_path / "nope.txt")


def test_settings_and_key_table_reprs_hide_the_keys(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PLAUDIT_API_KEYS", f'{{"{ADMIN_KEY}": ["admin", "score"]}}')
    settings = Settings()
    assert settings.api_key_scopes() == {ADMIN_KEY: frozenset({"admin", "score"})}
    for text in (
        repr(settings),
        str(settings),
        settings.model_dump_json(),
        repr(ApiKeyTable.from_settings(settings)),
    ):
        assert ADMIN_KEY not in text


class _Everything(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(logging.Formatter("%(name)s %(message)s").format(record))  # includes tracebacks


def test_keys_never_reach_the_logs(tmp_path: Path):
    handler = _Everything()
    loggers = [
        logging.getLogger(name)
        for name in ("", "plaudit", "plaudit.service", "uvicorn", "uvicorn.error", "uvicorn.access", "httpx")
    ]
    saved = [(logger, logger.level) for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    try:
        settings = Settings(
            engine="deterministic", api_keys=KEYS, feedback_db=f"sqlite:///{tmp_path / 'f.db'}"
        )
        with _live_server(settings) as srv:
            srv.wait_ready()
            for method, path, body, _scope, _ok in ENDPOINTS:
                for key in (SCORE_KEY, FEEDBACK_KEY, ADMIN_KEY, ADMIN_KEY + "-wrong"):
                    call(srv, method, path, body, {"Authorization": f"Bearer {key}"})
                    call(srv, method, path, body, {"X-API-Key": key})
            # A refused body and an unknown route, with a key.
            srv.client.post("/v1/feedback", content=b"{not json", headers={"X-API-Key": FEEDBACK_KEY})
            srv.client.get("/v1/nothing-here", headers={"X-API-Key": ADMIN_KEY})
    finally:
        for logger, level in saved:
            logger.removeHandler(handler)
            logger.setLevel(level)
    assert any("API key authentication on: 3 keys" in line for line in handler.lines)
    assert len(handler.lines) > 3  # the capture did see the server's logging
    for line in handler.lines:
        for key in KEYS:
            assert key not in line, line


def test_no_keys_means_auth_off_with_a_warning(
    live_server: ServerFactory, caplog: pytest.LogCaptureFixture, tmp_path: Path
):
    with caplog.at_level(logging.WARNING, logger="plaudit.service"):
        with live_server(engine="deterministic", feedback_db=f"sqlite:///{tmp_path / 'f.db'}") as srv:
            srv.wait_ready()
            assert srv.client.get("/v1/feedback/stats").status_code == 200
    assert any("API key authentication is OFF" in record.getMessage() for record in caplog.records)
