"""The whole loop over real HTTP with a real model: serve -> feedback -> export -> train -> promote
-> reload -> the service answers with the new version."""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from loadtest.bench_serving import ServerProcess, free_port, server_env
from loadtest.naive_server import NaiveConfig
from plaudit.cli import main as plaudit
from tests.conftest import SAMPLE_FILES

SERVER_READY_LIMIT_S = 120.0
LIKES = [
    ("How do I boil an egg?", "Simmer it for nine minutes, then cool it in cold water.", True),
    ("How do I boil an egg?", "Eggs cannot be boiled.", False),
    ("What is the capital of Peru?", "Lima is the capital of Peru.", True),
    ("What is the capital of Peru?", "I would rather not say.", False),
]


def post_feedback(http: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    response = http.post("/v1/feedback", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def score_version(http: httpx.Client) -> str:
    response = http.post("/v1/score", json={"items": [{"prompt": "Hi", "response": "Hello! How can I help?"}]})
    assert response.status_code == 200, response.text
    assert response.json()["model"]["name"] == "tiny"
    return str(response.json()["model"]["version"])


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_feedback_trains_the_next_served_version(
    tmp_path: Path, trained_store: Path, tiny_backbone: Path
) -> None:
    store = tmp_path / "models"
    shutil.copytree(trained_store, store)  # the session's store stays as it is
    db_url = f"sqlite:///{tmp_path / 'feedback.db'}"
    port = free_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith("PLAUDIT_")}
    env = server_env(base, NaiveConfig(store_dir=str(store), model="tiny", engine="onnx", intra_op_threads=1), port)
    env["PLAUDIT_FEEDBACK_DB"] = db_url

    with ServerProcess("service.app:create_app", env, port) as server:
        server.wait_ready(SERVER_READY_LIMIT_S)
        with httpx.Client(base_url=server.url, timeout=60.0, trust_env=False) as http:
            assert score_version(http) == "1"

            # Feedback of every shape, through HTTP.
            for i, (prompt, response, liked) in enumerate(LIKES):
                body = {"prompt": prompt, "response": response, "liked": liked, "feedback_id": f"like-{i}"}
                if i % 2:
                    body["user"] = "ann"  # the others are exported with annotator null
                assert post_feedback(http, body)["kind"] == "like"
            post_feedback(http, {"prompt": "Name a prime.", "response": "Seven.", "rating": 5, "user": "bob"})
            post_feedback(http, {"prompt": "Name a prime.", "chosen": "Seven.", "rejected": "Nine.", "user": "bob"})
            compared = http.post(
                "/v1/compare",
                json={
                    "prompt": "Should I back up my files?",
                    "response_a": "Yes: keep at least one copy somewhere else.",
                    "response_b": "Backups are a waste of time.",
                },
            )
            assert compared.status_code == 200, compared.text
            assert compared.json()["model"] == {"name": "tiny", "version": "1"}
            choice = {"request_id": compared.json()["request_id"], "choice": "a", "feedback_id": "ab-1"}
            assert post_feedback(http, choice)["kind"] == "pair"

            # Export with `plaudit feedback export` while the service runs.
            export = tmp_path / "export" / "feedback.jsonl"
            assert plaudit(["feedback", "export", "--db", db_url, "--out", str(export)]) == 0
            rows = read_jsonl(export)
            assert Counter(row["kind"] for row in rows) == {"like": 4, "rating": 1, "pair": 2}
            # Each row names the model that was serving (for the choice: the one that compared).
            assert {(row["model_name"], row["model_version"]) for row in rows} == {("tiny", "1")}
            ab = next(row for row in rows if row["feedback_id"] == "ab-1")
            assert ab["chosen"].startswith("Yes: keep") and ab["rejected"] == "Backups are a waste of time."

            # Train version 2 on the export plus the sample data.
            code = plaudit(
                [
                    "train", "--model", "transformer", "--backbone", str(tiny_backbone), "--max-length", "64",
                    "--epochs", "1", "--data", str(export), *[a for p in SAMPLE_FILES for a in ("--data", str(p))],
                    "--store", str(store), "--name", "tiny", "--no-progress",
                ]
            )
            assert code == 0
            # The service still serves version 1 until told otherwise.
            assert score_version(http) == "1"

            assert plaudit(["models", "promote", "tiny:2", "--store", str(store)]) == 0
            reloaded = http.post("/v1/models/reload")
            assert reloaded.status_code == 200, reloaded.text
            swap = reloaded.json()
            assert swap["swapped"] is True
            assert swap["old"] == {"name": "tiny", "version": "1"}
            assert swap["new"] == {"name": "tiny", "version": "2"}
            assert score_version(http) == "2"
            assert http.get("/v1/models").json()["model"] == {"name": "tiny", "version": "2"}

            # Feedback from now on names version 2; the HTTP export shows both generations.
            post_feedback(http, {"prompt": "Is water wet?", "response": "Yes.", "liked": True, "feedback_id": "after"})
            exported = http.get("/v1/feedback/export")
            assert exported.status_code == 200
            lines = [json.loads(line) for line in exported.text.splitlines() if line.strip()]
            assert [line["feedback_id"] for line in lines][:-1] == [row["feedback_id"] for row in rows]
            assert (lines[-1]["feedback_id"], lines[-1]["model_version"]) == ("after", "2")
