"""POST /v1/feedback, the A/B choice after /v1/compare, export and stats, over real HTTP
with the deterministic engine and a real feedback database (a SQLite file, or PostgreSQL)."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from service import feedback_state
from service.cli import register_commands, serve
from service.feedback.schema import scored_comparisons
from service.routes import feedback as feedback_routes
from service.feedback.store import FeedbackStore
from tests.service.conftest import LiveServer, ServerFactory
from tests.service.feedback.conftest import postgres_schema_url  # noqa: F401  # a fixture
from training.data.examples import LikeExample, PairExample, RatingExample
from training.data.loaders import load_dataset

PROMPT = "How do I boil an egg?"
GOOD = "Put the egg in boiling water for eight minutes, because that sets the yolk."
BAD = "No. I hate eggs."
SERVED = {"name": "deterministic", "version": "0"}
SCALE = (0.0, 10.0)


@pytest.fixture(scope="module")
def db_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('feedback') / 'feedback.db'}"


@pytest.fixture(scope="module")
def server(db_url: str) -> Iterator[LiveServer]:
    """One ready server with its own SQLite feedback database, a 0-10 rating scale and small limits."""
    from tests.service.conftest import _live_server
    from service.settings import Settings

    settings = Settings(
        engine="deterministic",
        feedback_db=db_url,
        rating_min=SCALE[0],
        rating_max=SCALE[1],
        max_feedback_metadata_bytes=256,
        max_chars_per_text=2000,
    )
    with _live_server(settings) as srv:
        srv.wait_ready()
        yield srv


@pytest.fixture(scope="module")
def reader(db_url: str, server: LiveServer) -> Iterator[FeedbackStore]:
    """A second, independent connection to the server's database: what is committed."""
    with FeedbackStore.open(db_url, create=False) as store:
        yield store


def post(srv: LiveServer, body: dict[str, object]):
    return srv.client.post("/v1/feedback", json=body)


def stored_pair(store: FeedbackStore, feedback_id: str) -> tuple[str | None, str | None]:
    row = store.get(feedback_id)
    assert row is not None, f"{feedback_id} is not in the database"
    return row.chosen, row.rejected


# -- the four shapes ---------------------------------------------------------------------------


def test_like_is_committed_before_201_with_the_served_model(server, reader):
    body = {
        "prompt": PROMPT,
        "response": GOOD,
        "liked": True,
        "user": "ann",
        "source": "web",
        "metadata": {"ui": 1},
    }
    r = post(server, body)
    assert r.status_code == 201, r.text
    data = r.json()
    assert data["kind"] == "like" and data["replayed"] is False
    assert data["request_id"] == r.headers["x-request-id"]
    assert "idempotent-replayed" not in r.headers
    row = reader.get(data["feedback_id"])  # another connection sees it as soon as the reply is here
    assert row is not None
    assert (row.kind, row.prompt, row.response, row.liked) == ("like", PROMPT, GOOD, True)
    assert (row.user, row.source, row.metadata) == ("ann", "web", {"ui": 1})
    assert (row.model_name, row.model_version) == (SERVED["name"], SERVED["version"])
    assert datetime.fromisoformat(data["created_at"]) == row.created_at


def test_rating_is_stored_on_the_deployments_scale(server, reader):
    r = post(server, {"prompt": PROMPT, "response": GOOD, "rating": 7})
    assert r.status_code == 201, r.text
    row = reader.get(r.json()["feedback_id"])
    assert row is not None and (row.rating, row.rating_min, row.rating_max) == (7.0, *SCALE)

    outside = post(server, {"prompt": PROMPT, "response": GOOD, "rating": 11})
    assert outside.status_code == 422
    assert outside.json()["error"]["message"] == "rating: 11 is outside the scale 0-10"


def test_pair_with_the_model_the_caller_saw(server, reader):
    model = {"name": "hh-harmless", "version": "3"}
    r = post(server, {"prompt": PROMPT, "chosen": GOOD, "rejected": BAD, "model": model})
    assert r.status_code == 201, r.text
    assert r.json()["kind"] == "pair"
    row = reader.get(r.json()["feedback_id"])
    assert row is not None
    assert (row.chosen, row.rejected, row.model_name, row.model_version) == (GOOD, BAD, "hh-harmless", "3")


def test_choice_after_a_real_compare_stores_the_scored_pair(server, reader):
    compared = server.client.post(
        "/v1/compare", json={"prompt": PROMPT, "response_a": BAD, "response_b": GOOD}
    )
    assert compared.status_code == 200, compared.text
    request_id = compared.json()["request_id"]

    r = post(server, {"request_id": request_id, "choice": "b", "user": "ann"})
    assert r.status_code == 201, r.text
    assert r.json()["kind"] == "pair"
    row = reader.get(r.json()["feedback_id"])
    assert row is not None
    assert (row.prompt, row.chosen, row.rejected, row.request_id) == (PROMPT, GOOD, BAD, request_id)
    assert (row.model_name, row.model_version) == (SERVED["name"], SERVED["version"])

    other = post(server, {"request_id": request_id, "choice": "a"})
    assert other.status_code == 201
    assert stored_pair(reader, other.json()["feedback_id"]) == (BAD, GOOD)


def test_choice_on_one_comparison_of_a_list_uses_its_index(server, reader):
    comparisons = [
        {"prompt": "first?", "response_a": "one", "response_b": "uno"},
        {"prompt": "second?", "response_a": "two", "response_b": "dos"},
    ]
    compared = server.client.post("/v1/compare", json={"comparisons": comparisons})
    assert compared.status_code == 200, compared.text
    r = post(server, {"request_id": compared.json()["request_id"], "index": 1, "choice": "a"})
    assert r.status_code == 201, r.text
    assert stored_pair(reader, r.json()["feedback_id"]) == ("two", "dos")


@pytest.mark.parametrize("index", [True, 1.0, "1"])
def test_an_index_that_is_not_an_integer_is_422_not_taken_as_one(server, reader, index):
    # true was taken as comparison 1, "1" and 1.0 as 1: as strict as /v1/rank's top_n.
    compared = server.client.post(
        "/v1/compare", json={"comparisons": [{"prompt": "q?", "response_a": "x", "response_b": "y"}] * 2}
    )
    stored_before = reader.count()
    r = post(server, {"request_id": compared.json()["request_id"], "index": index, "choice": "a"})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["message"].startswith("index: ")
    assert reader.count() == stored_before


@pytest.mark.parametrize(
    ("compared", "why"),
    [
        ({"prompt": "p", "response_a": "same", "response_b": "same"}, "is identical to 'chosen'"),
        ({"prompt": "", "response_a": "x", "response_b": "y"}, "prompt: "),
    ],
)
def test_a_choice_on_a_comparison_that_makes_no_pair_names_the_request_id(server, reader, compared, why):
    # The 422 named `rejected` or `prompt`, fields the client never sent.
    answer = server.client.post("/v1/compare", json=compared)
    assert answer.status_code == 200, answer.text
    stored_before = reader.count()
    r = post(server, {"request_id": answer.json()["request_id"], "choice": "a"})
    assert r.status_code == 422, r.text
    message = r.json()["error"]["message"]
    assert message.startswith(f"request_id: {answer.json()['request_id']!r} scored a comparison that cannot be stored")
    assert why in message
    assert reader.count() == stored_before


def test_a_choice_with_a_bad_field_of_its_own_is_named_by_that_field(server):
    answer = server.client.post("/v1/compare", json={"prompt": "p", "response_a": "x", "response_b": "y"})
    r = post(server, {"request_id": answer.json()["request_id"], "choice": "a", "user": ""})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["message"].startswith("user: ")


def compare_list(srv: LiveServer, request_id: str, n: int = 2) -> None:
    comparisons = [
        {"prompt": f"question {i}?", "response_a": f"yes {i}", "response_b": f"no {i}"} for i in range(n)
    ]
    compared = srv.client.post(
        "/v1/compare", json={"comparisons": comparisons}, headers={"X-Request-ID": request_id}
    )
    assert compared.status_code == 200 and compared.json()["request_id"] == request_id, compared.text


def test_choice_on_a_list_without_index_is_422_naming_index_not_never_scored(server, reader):
    compare_list(server, "cmp-2")
    stored_before = reader.count()
    r = post(server, {"request_id": "cmp-2", "choice": "b"})
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert set(error) == {"code", "message", "request_id"}
    assert error["code"] == "invalid_request"
    assert error["message"] == "index: request_id 'cmp-2' scored a list of comparisons; give its index (kept: 0-1)"
    assert error["request_id"] == r.headers["x-request-id"]
    assert reader.count() == stored_before

    fixed = post(server, {"request_id": "cmp-2", "choice": "b", "index": 1})
    assert fixed.status_code == 201, fixed.text
    assert stored_pair(reader, fixed.json()["feedback_id"]) == ("no 1", "yes 1")


def test_choice_with_an_index_past_the_kept_items_is_404_naming_them_without_the_internal_key(server, reader):
    # Only the items kept are known, not the list's length (an item may not have been stored), so
    # the answer names the kept ones rather than calling the index out of range.
    compare_list(server, "cmp-2-range")
    r = post(server, {"request_id": "cmp-2-range", "choice": "a", "index": 5})
    assert r.status_code == 404, r.text
    error = r.json()["error"]
    assert error["message"].startswith(
        "request_id 'cmp-2-range' keeps comparisons 0-1 of its list, not 5 (past the list's end, or it could "
        "not be stored); send the full pair"
    )
    assert "#" not in error["message"]


def test_choice_with_an_index_on_a_single_comparison_says_to_leave_it_out(server):
    compared = server.client.post(
        "/v1/compare",
        json={"prompt": PROMPT, "response_a": BAD, "response_b": GOOD},
        headers={"X-Request-ID": "cmp-single"},
    )
    assert compared.status_code == 200, compared.text
    r = post(server, {"request_id": "cmp-single", "choice": "a", "index": 0})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["message"] == (
        "index: request_id 'cmp-single' scored a single comparison, not a list; leave index out"
    )


def test_choice_with_an_index_on_an_unknown_request_id_is_404_naming_only_the_request_id(server):
    r = post(server, {"request_id": "never-listed", "choice": "a", "index": 3})
    assert r.status_code == 404
    error = r.json()["error"]
    assert error["code"] == "unknown_comparison"
    assert "'never-listed'" in error["message"] and "#" not in error["message"]


def test_a_reused_request_id_makes_a_choice_on_it_a_409_not_the_wrong_pair(server, reader):
    headers = {"X-Request-ID": "session-42"}  # a client that sends one id for a whole session
    stored_before = reader.count()
    for a, b in ((BAD, GOOD), ("Bonjour.", "Salut.")):
        body = {"prompt": PROMPT, "response_a": a, "response_b": b}
        compared = server.client.post("/v1/compare", json=body, headers=headers)
        assert compared.status_code == 200 and compared.json()["request_id"] == "session-42"
    r = post(server, {"request_id": "session-42", "choice": "b"})
    assert r.status_code == 409
    error = r.json()["error"]
    assert error["code"] == "ambiguous_comparison"
    assert "used by more than one /v1/compare" in error["message"] and "fresh X-Request-ID" in error["message"]
    assert reader.count() == stored_before  # neither pair went into the training data


def test_a_request_id_reused_across_the_single_and_list_forms_is_409_too(server, reader):
    headers = {"X-Request-ID": "session-43"}
    listed = [{"prompt": PROMPT, "response_a": "Oui.", "response_b": "Non."}] * 2
    assert server.client.post("/v1/compare", json={"comparisons": listed}, headers=headers).status_code == 200
    single = {"prompt": PROMPT, "response_a": BAD, "response_b": GOOD}
    assert server.client.post("/v1/compare", json=single, headers=headers).status_code == 200
    stored_before = reader.count()
    for index in (None, 0):  # either form: which comparison the user saw cannot be told
        body = {"request_id": "session-43", "choice": "a", **({} if index is None else {"index": index})}
        r = post(server, body)
        assert r.status_code == 409, (index, r.text)
        assert r.json()["error"]["code"] == "ambiguous_comparison"
    assert reader.count() == stored_before


def test_lone_surrogates_in_metadata_or_a_request_id_are_422_naming_the_field(server):
    # The JSON escapes reach Python as lone surrogates, which no database can store.
    for body, field in (
        ({"prompt": "p", "response": "r", "liked": True, "metadata": {"k": "\udc00"}}, "metadata"),
        ({"prompt": "p", "response": "r", "liked": True, "metadata": {"\ud800": 1}}, "metadata"),
        ({"request_id": "\ud800", "choice": "a"}, "request_id"),
    ):
        escaped = json.dumps(body)  # ASCII, with the surrogates as \\u escapes, as a client sends them
        r = server.client.post("/v1/feedback", content=escaped, headers={"content-type": "application/json"})
        assert r.status_code == 422, (body, r.text)
        error = r.json()["error"]
        assert error["code"] == "invalid_request" and error["message"].startswith(field), error


def test_choice_on_an_unknown_request_id_is_404_saying_what_to_do(server):
    r = post(server, {"request_id": "never-compared", "choice": "a"})
    assert r.status_code == 404
    error = r.json()["error"]
    assert error["code"] == "unknown_comparison"
    assert "'never-compared'" in error["message"] and "{prompt, chosen, rejected}" in error["message"]


def test_compare_still_answers_when_its_texts_cannot_be_remembered(server, caplog):
    with caplog.at_level(logging.WARNING, logger="plaudit.service"):
        compared = server.client.post(
            "/v1/compare", json={"prompt": "nul \u0000 here", "response_a": "a", "response_b": "b"}
        )
    assert compared.status_code == 200, compared.text
    request_id = compared.json()["request_id"]
    assert any(request_id in rec.getMessage() and "NUL" in rec.getMessage() for rec in caplog.records)
    assert post(server, {"request_id": request_id, "choice": "a"}).status_code == 404


# -- idempotency ---------------------------------------------------------------------------------


def test_retry_with_the_same_feedback_id_replays_the_original(server, reader):
    body = {"prompt": PROMPT, "response": BAD, "liked": False, "feedback_id": "retry-1"}
    first = post(server, body)
    assert first.status_code == 201, first.text
    count = reader.count()

    again = post(server, body)
    assert again.status_code == 200, again.text
    assert again.headers["idempotent-replayed"] == "true"
    replay = again.json()
    assert replay["replayed"] is True
    assert {k: replay[k] for k in ("feedback_id", "kind", "created_at")} == {
        k: first.json()[k] for k in ("feedback_id", "kind", "created_at")
    }
    assert replay["request_id"] != first.json()["request_id"]
    assert reader.count() == count


def test_same_feedback_id_with_another_body_is_409(server, reader):
    assert (
        post(server, {"prompt": PROMPT, "response": GOOD, "liked": True, "feedback_id": "clash"}).status_code
        == 201
    )
    r = post(server, {"prompt": PROMPT, "response": GOOD, "liked": False, "feedback_id": "clash"})
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "feedback_conflict"
    assert "'clash'" in r.json()["error"]["message"]
    row = reader.get("clash")
    assert row is not None and row.liked is True


def test_retry_after_a_model_swap_is_still_a_replay(server, reader):
    # The original was stored while another model served; the retry names no model, so the
    # server fills in the one serving now. The model was the server's choice: still a replay.
    from service.feedback import NewFeedback

    original = reader.add(
        NewFeedback(
            kind="like",
            prompt=PROMPT,
            response=GOOD,
            liked=True,
            model_name="old",
            model_version="1",
            feedback_id="swap-1",
        )
    ).row
    r = post(server, {"prompt": PROMPT, "response": GOOD, "liked": True, "feedback_id": "swap-1"})
    assert r.status_code == 200, r.text
    assert datetime.fromisoformat(r.json()["created_at"]) == original.created_at
    named = post(
        server, {"prompt": PROMPT, "response": GOOD, "liked": True, "feedback_id": "swap-1", "model": SERVED}
    )
    assert named.status_code == 409


# -- refusals --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (
            {"prompt": PROMPT, "response": GOOD, "liked": True, "chosen": GOOD},
            "liked (a like); chosen (a pair)",
        ),
        (
            {"prompt": PROMPT, "response": GOOD, "rating": 3, "liked": True},
            "liked (a like); rating (a rating)",
        ),
        ({"request_id": "x", "choice": "a", "prompt": PROMPT}, "prompt does not belong to a choice"),
        (
            {"prompt": PROMPT, "chosen": GOOD, "rejected": BAD, "response": GOOD},
            "response does not belong to a pair",
        ),
        ({"prompt": PROMPT, "chosen": GOOD}, "missing rejected: a pair is {prompt, chosen, rejected}"),
        ({"prompt": PROMPT, "response": GOOD}, "prompt, response alone is not feedback"),
        ({"prompt": PROMPT, "response": GOOD, "liked": "yes"}, "liked: input should be a valid boolean"),
        ({"request_id": "x", "choice": "c"}, "choice: input should be 'a' or 'b'"),
        ({"prompt": " ", "response": GOOD, "liked": True}, "prompt: expected a non-empty string"),
        ({"prompt": PROMPT, "chosen": GOOD, "rejected": GOOD}, "rejected: is identical to 'chosen'"),
    ],
)
def test_unclear_or_bad_bodies_are_422_naming_the_fields(server, body, says):
    r = post(server, body)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "invalid_request"
    assert says in r.json()["error"]["message"]


def test_metadata_past_its_limit_is_413(server):
    r = post(server, {"prompt": PROMPT, "response": GOOD, "liked": True, "metadata": {"note": "x" * 300}})
    assert r.status_code == 413
    assert "max_feedback_metadata_bytes=256" in r.json()["error"]["message"]


@pytest.mark.parametrize("field", ["prompt", "response", "chosen", "rejected"])
def test_a_text_past_max_chars_per_text_is_413_and_nothing_is_stored(server, reader, field):
    # The limit /v1/score applies: a text too long to score is too long to train on.
    body: dict[str, object] = (
        {"prompt": PROMPT, "chosen": GOOD, "rejected": BAD}
        if field in ("chosen", "rejected")
        else {"prompt": PROMPT, "response": GOOD, "liked": True}
    )
    body[field] = "y" * 2001
    stored_before = reader.count()
    r = post(server, body)
    assert r.status_code == 413, r.text
    assert r.json()["error"]["message"] == (
        f"{field} has 2001 characters; the limit is max_chars_per_text=2000 (PLAUDIT_MAX_CHARS_PER_TEXT)"
    )
    assert reader.count() == stored_before
    body[field] = "y" * 2000  # at the limit is fine
    assert post(server, body).status_code == 201


def test_feedback_disabled_is_503_and_compare_still_works(live_server: ServerFactory):
    with live_server(engine="deterministic", feedback_enabled=False) as srv:
        srv.wait_ready()
        r = post(srv, {"prompt": PROMPT, "response": GOOD, "liked": True})
        assert r.status_code == 503
        assert r.json()["error"]["code"] == "feedback_unavailable"
        assert "PLAUDIT_FEEDBACK_ENABLED=false" in r.json()["error"]["message"]
        assert srv.client.get("/v1/feedback/stats").status_code == 503
        assert (
            srv.client.post(
                "/v1/compare", json={"prompt": "p", "response_a": "a", "response_b": "b"}
            ).status_code
            == 200
        )


def test_unopenable_database_leaves_scoring_up_and_feedback_503(live_server: ServerFactory, tmp_path: Path):
    not_a_db = tmp_path / "feedback.db"
    not_a_db.write_text("this is not SQLite\n" * 100)
    with live_server(engine="deterministic", feedback_db=f"sqlite:///{not_a_db}") as srv:
        srv.wait_ready()
        r = post(srv, {"prompt": PROMPT, "response": GOOD, "liked": True})
        assert r.status_code == 503
        message = r.json()["error"]["message"]
        # The driver's words and the file's path go to the log, not to a feedback client.
        assert message.startswith("the feedback store could not be opened (see the server log); it will be retried")
        assert str(not_a_db) not in message
        assert r.headers["retry-after"] == str(int(feedback_state.FEEDBACK_RETRY_S))
        assert (
            srv.client.post("/v1/score", json={"items": [{"prompt": "p", "response": "r"}]}).status_code
            == 200
        )


def test_a_database_that_could_not_be_opened_at_start_is_opened_later_and_stores_feedback(
    live_server: ServerFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(feedback_state, "FEEDBACK_RETRY_S", 0.2)  # read when the server starts
    # A plain file where the database's folder goes: the folder cannot be made, so the start
    # cannot open the store (as root, a folder without permissions would not stop it).
    folder = tmp_path / "not-yet"
    folder.write_text("the folder of the feedback database will be here\n")
    url = f"sqlite:///{folder / 'feedback.db'}"
    like = {"prompt": PROMPT, "response": GOOD, "liked": True, "feedback_id": "late-like"}
    with live_server(engine="deterministic", feedback_db=url) as srv:
        srv.wait_ready()
        r = post(srv, like)
        assert r.status_code == 503, r.text
        assert r.json()["error"]["code"] == "feedback_unavailable"
        assert r.headers["retry-after"] == "1"  # the interval, rounded up to whole seconds
        message = r.json()["error"]["message"]
        assert "could not be opened" in message and "will be retried" in message
        assert str(folder) not in message
        stats = srv.client.get("/v1/feedback/stats")
        assert stats.status_code == 503 and stats.headers["retry-after"] == "1"
        assert srv.client.post("/v1/compare", json={"prompt": "p", "response_a": "a", "response_b": "b"}).status_code == 200

        folder.unlink()
        folder.mkdir()  # the database can be opened now
        srv.wait_until(
            lambda: post(srv, like).status_code == 201, "feedback to be accepted once its database opens", limit_s=30.0
        )
        with FeedbackStore.open(url, create=False) as store:
            row = store.get("late-like")
            assert row is not None and (row.kind, row.prompt, row.response, row.liked) == ("like", PROMPT, GOOD, True)
        # /v1/compare remembers again: a choice on it resolves.
        compared = srv.client.post("/v1/compare", json={"prompt": PROMPT, "response_a": GOOD, "response_b": BAD})
        choice = post(srv, {"request_id": compared.json()["request_id"], "choice": "b"})
        assert choice.status_code == 201, choice.text


def test_export_and_stats_are_503_with_retry_after_while_the_database_fails(
    live_server: ServerFactory, tmp_path: Path
):
    path = tmp_path / "feedback.db"
    with live_server(engine="deterministic", feedback_db=f"sqlite:///{path}") as srv:
        srv.wait_ready()
        assert post(srv, {"prompt": PROMPT, "response": GOOD, "liked": True}).status_code == 201
        assert srv.client.get("/v1/feedback/stats").status_code == 200

        def run_sql(statement: str) -> None:
            with sqlite3.connect(path) as outside:
                outside.execute(statement)

        # The table gone from under the server: every query of it is an OperationalError.
        run_sql("ALTER TABLE feedback RENAME TO feedback_away")
        try:
            answers = {
                "POST": post(srv, {"prompt": PROMPT, "response": BAD, "liked": False}),
                "stats": srv.client.get("/v1/feedback/stats"),
                "export": srv.client.get("/v1/feedback/export"),
            }
        finally:
            run_sql("ALTER TABLE feedback_away RENAME TO feedback")
        for name, r in answers.items():
            assert r.status_code == 503, (name, r.text)
            error = r.json()["error"]
            assert (error["code"], error["message"]) == (
                "feedback_unavailable", "the feedback database is unavailable; retry later"
            ), name
            assert r.headers["retry-after"] == "1", name
        assert srv.client.get("/v1/feedback/stats").json()["total"] == 1
        assert len(srv.client.get("/v1/feedback/export").text.splitlines()) == 1


# -- export and stats (each on a fresh database, so "exactly the stored rows" is checkable) ----------


def fill(srv: LiveServer) -> list[str]:
    """One judgement of each kind (the pair through a real compare); their feedback ids."""
    compared = srv.client.post("/v1/compare", json={"prompt": PROMPT, "response_a": GOOD, "response_b": BAD})
    bodies = [
        {"prompt": PROMPT, "response": GOOD, "liked": True, "user": "ann", "source": "web"},
        {"prompt": PROMPT, "response": GOOD, "liked": True, "user": "bob", "source": "web"},
        {"prompt": PROMPT, "response": BAD, "rating": 2.5, "user": "ann"},
        {"request_id": compared.json()["request_id"], "choice": "a", "source": "ab-test"},
        {"prompt": "Name a prime.", "chosen": "7", "rejected": "8", "feedback_id": "pair-é"},
    ]
    ids = []
    for body in bodies:
        r = post(srv, body)
        assert r.status_code == 201, r.text
        ids.append(r.json()["feedback_id"])
    return ids


def test_export_streams_exactly_the_stored_rows_and_training_loads_them(
    live_server: ServerFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(feedback_routes, "EXPORT_CHUNK_ROWS", 2)  # several chunks, several thread hops
    url = f"sqlite:///{tmp_path / 'feedback.db'}"
    with live_server(engine="deterministic", feedback_db=url, rating_min=0, rating_max=10) as srv:
        srv.wait_ready()
        ids = fill(srv)
        with srv.client.stream("GET", "/v1/feedback/export") as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("application/x-ndjson")
            text = "".join(r.iter_text())
        with FeedbackStore.open(url, create=False) as store:
            assert [json.loads(line) for line in text.splitlines()] == list(store.export())
        assert [json.loads(line)["feedback_id"] for line in text.splitlines()] == ids

        out = tmp_path / "export.jsonl"
        out.write_text(text, encoding="utf-8")
        dataset = load_dataset([out], rating_scale=(0, 10))
        kinds = [type(example) for example in dataset.examples]
        assert kinds == [LikeExample, LikeExample, RatingExample, PairExample, PairExample]
        pair = dataset.examples[3]
        assert (pair.prompt, pair.chosen, pair.rejected) == (PROMPT, GOOD, BAD)

        pairs = srv.client.get("/v1/feedback/export", params={"kind": "pair"}).text.splitlines()
        assert [json.loads(line)["feedback_id"] for line in pairs] == ids[3:]
        future = srv.client.get("/v1/feedback/export", params={"since": "2999-01-01T00:00:00Z"})
        assert future.status_code == 200 and future.text == ""
        past = srv.client.get("/v1/feedback/export", params={"since": "2000-01-01"})
        assert len(past.text.splitlines()) == len(ids)

        bad = srv.client.get("/v1/feedback/export", params={"since": "last week"})
        assert (
            bad.status_code == 422
            and "since: 'last week' is not an ISO 8601" in bad.json()["error"]["message"]
        )
        wrong_kind = srv.client.get("/v1/feedback/export", params={"kind": "thumbs"})
        assert wrong_kind.status_code == 422 and "kind" in wrong_kind.json()["error"]["message"]


def test_stats_count_what_was_stored(live_server: ServerFactory, tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'feedback.db'}"
    with live_server(engine="deterministic", feedback_db=url) as srv:
        srv.wait_ready()
        fill(srv)
        r = srv.client.get("/v1/feedback/stats")
        assert r.status_code == 200, r.text
        stats = r.json()
        assert stats["total"] == 5
        assert stats["by_kind"] == {"like": 2, "rating": 1, "pair": 2}
        assert stats["by_source"] == {"(none)": 2, "ab-test": 1, "web": 2}
        assert stats["likes"] == {"liked": 2, "total": 2} and stats["like_rate"] == 1.0
        assert stats["agreement"]["like"]["items_all_agree"] == 1
        assert stats["rating_scale"] == [1.0, 5.0]
        assert stats["request_id"] == r.headers["x-request-id"]


def test_expired_comparisons_are_purged_in_the_background(live_server: ServerFactory, tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'feedback.db'}"
    # Retention 1.8 s: the purge task runs every second (its floor).
    with live_server(engine="deterministic", feedback_db=url, comparison_retention_hours=0.0005) as srv:
        srv.wait_ready()
        assert (
            srv.client.post(
                "/v1/compare", json={"prompt": "p", "response_a": "a", "response_b": "b"}
            ).status_code
            == 200
        )
        engine = sa.create_engine(url)
        try:

            def remembered() -> int:
                with engine.connect() as connection:
                    return int(
                        connection.execute(
                            sa.select(sa.func.count()).select_from(scored_comparisons)
                        ).scalar_one()
                    )

            assert remembered() == 1
            srv.wait_until(lambda: remembered() == 0, "the expired comparison to be purged")
        finally:
            engine.dispose()


# -- PostgreSQL ---------------------------------------------------------------------------------------


@pytest.mark.postgres
def test_feedback_round_trip_on_postgresql(
    live_server: ServerFactory,
    postgres_schema_url: str,  # noqa: F811  # the fixture imported above
):
    with live_server(engine="deterministic", feedback_db=postgres_schema_url) as srv:
        srv.wait_ready()
        ids = fill(srv)
        replay = post(
            srv, {"prompt": "Name a prime.", "chosen": "7", "rejected": "8", "feedback_id": "pair-é"}
        )
        assert replay.status_code == 200 and replay.json()["replayed"] is True
        conflict = post(
            srv, {"prompt": "Name a prime.", "chosen": "8", "rejected": "7", "feedback_id": "pair-é"}
        )
        assert conflict.status_code == 409
        exported = srv.client.get("/v1/feedback/export").text.splitlines()
        assert [json.loads(line)["feedback_id"] for line in exported] == ids
        assert json.loads(exported[3])["chosen"] == GOOD
        assert srv.client.get("/v1/feedback/stats").json()["total"] == 5
        compare_list(srv, "cmp-2")
        no_index = post(srv, {"request_id": "cmp-2", "choice": "b"})
        assert no_index.status_code == 422
        assert no_index.json()["error"]["message"] == (
            "index: request_id 'cmp-2' scored a list of comparisons; give its index (kept: 0-1)"
        )
        past = post(srv, {"request_id": "cmp-2", "choice": "b", "index": 5})
        assert past.status_code == 404 and "keeps comparisons 0-1 of its list, not 5" in past.json()["error"]["message"]


def test_serve_takes_the_feedback_database_url():
    import argparse

    root = argparse.ArgumentParser(prog="plaudit")
    register_commands(root.add_subparsers(dest="command", required=True))
    args = root.parse_args(["serve", "--feedback-db", "postgresql://plaudit@db:5432/feedback"])
    assert args.func is serve and args.feedback_db == "postgresql://plaudit@db:5432/feedback"
