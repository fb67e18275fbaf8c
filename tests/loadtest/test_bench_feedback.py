"""The feedback benchmark, small: a real server subprocess, real SQLite and PostgreSQL, a real SIGKILL."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from loadtest import bench_feedback as bench
from loadtest.feedback_bench.config import BenchConfig
from loadtest.feedback_bench.databases import postgres_database_exists, read_stored_rows
from loadtest.feedback_bench.load import Answer, FeedbackLoad, ServiceUnderTest
from loadtest.feedback_bench.plan import Job, plan_jobs, planned_posts
from loadtest.feedback_bench.verify import verify
from service.feedback import FeedbackStore, NewFeedback
from service.schemas_feedback import FeedbackRequest

@pytest.fixture(scope="module")
def postgres_url(postgres_server: str) -> str:
    """The server of tests/conftest.py's `postgres_server`; the benchmark makes its own database there."""
    return postgres_server


def small(db_url: str, **overrides: Any) -> BenchConfig:
    return BenchConfig(
        db_url=db_url, posts=300, concurrency=16, retry_fraction=0.1, max_total_s=150.0, **overrides
    )


def assert_every_post_stored_once(results: dict[str, Any]) -> None:
    counts = results["counts"]
    assert results["problems"] == []
    assert results["passed"] is True
    assert counts["acknowledged_ids"] == 300  # every post was acknowledged in the end ...
    assert counts["stored_rows"] == 300  # ... and each is stored once
    assert counts["answered_2xx"] == 330  # the 30 re-posts were acknowledged too
    assert counts["not_acknowledged"] == 0
    assert counts["duplicate_ids"] == counts["duplicate_bodies"] == 0
    assert counts["body_mismatches"] == counts["export_mismatches"] == 0
    assert counts["export_lines"] == 300
    # One 201 per id; every other answer a replay.
    assert counts["created_201"] + counts["acknowledged_only_by_replay"] == 300
    assert counts["created_201"] + counts["replayed_200"] == 330


def test_plan_mixes_shapes_and_places_reposts() -> None:
    rng = random.Random(1)
    posts = planned_posts(100, "t", rng)
    jobs = plan_jobs(posts, retry_fraction=0.2, concurrency=4, rng=rng)

    assert len({p.feedback_id for p in posts}) == 100
    assert Counter(p.shape for p in posts).keys() == {"like", "rating", "pair", "choice"}
    assert sum(1 for j in jobs if j.copies == 2) == 10
    later = [i for i, j in enumerate(jobs) if j.retry]
    assert len(later) == 10
    position = {j.post.feedback_id: i for i, j in enumerate(jobs) if not j.retry}
    for i in later:  # a re-post always comes after its original, and repeats its body
        assert position[jobs[i].post.feedback_id] < i
    assert sum(j.copies for j in jobs) == 120


def test_planned_bodies_are_valid_feedback_requests() -> None:
    for post in planned_posts(40, "t", random.Random(2)):
        body = dict(post.body, feedback_id=post.feedback_id)
        if post.shape == "choice":
            body = {k: v for k, v in body.items() if k != "compare"} | {"request_id": "r1"}
        assert FeedbackRequest.model_validate(body).shape == post.shape


def test_sqlite_every_acknowledged_post_stored_once(tmp_path: Path) -> None:
    db_file = tmp_path / "bench.db"
    results = bench.run_benchmark(small(f"sqlite:///{db_file}"))

    assert_every_post_stored_once(results)
    assert results["counts"]["created_201"] == 300  # nothing was lost in transit
    assert results["counts"]["concurrent_reposts"] == 15
    assert results["counts"]["concurrent_reposts_overlapping"] >= 1
    assert results["kill"] is None and results["server_starts"] == 1
    assert not db_file.exists()  # the benchmark's own database is dropped


@pytest.mark.postgres
def test_postgres_every_acknowledged_post_stored_once(postgres_url: str) -> None:
    results = bench.run_benchmark(small(postgres_url))

    assert_every_post_stored_once(results)
    assert results["database"]["backend"] == "postgresql"
    name = results["database"]["name"]
    assert name.startswith("plaudit_bench_")
    assert not postgres_database_exists(postgres_url, name)


def test_sigkill_mid_load_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    results = bench.run_benchmark(small(f"sqlite:///{tmp_path / 'bench.db'}", kill_at=0.5))

    assert_every_post_stored_once(results)
    assert results["server_starts"] == 2
    assert results["kill"]["after_posts"] >= 165
    assert results["kill"]["in_flight"] >= 1
    assert results["counts"]["retried_attempts"] >= 1  # the kill cut requests off; clients retried


def test_verify_reports_a_lost_row_and_a_wrong_export(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'feedback.db'}"
    posts = planned_posts(3, "t", random.Random(3))
    assert [p.shape for p in posts] == ["like"] * 3
    config = BenchConfig(db_url=url, posts=3)
    load = FeedbackLoad(config, [Job(p) for p in posts], ServiceUnderTest(url), deadline=0.0)
    with FeedbackStore.open(url) as store:
        for post in posts[:2]:  # the third is acknowledged below but never stored
            row = store.add(
                NewFeedback(kind="like", feedback_id=post.feedback_id, model_name="m", model_version="1", **post.body)
            ).row
            load.answers.append(
                Answer(post.feedback_id, False, 201, "ok", 1, {}, False, row.created_at.isoformat(), "like")
            )
        exported = list(store.export())
    load.answers.append(Answer(posts[2].feedback_id, False, 201, "ok", 1, {}, False, None, "like"))
    exported[1]["prompt"] = "something else"

    check = verify(posts, load, read_stored_rows(url), exported, (1.0, 5.0), ("m", "1"))

    assert f"{posts[2].feedback_id} was acknowledged but is stored 0 times" in check.problems
    assert any("differs in prompt" in p for p in check.problems)
    assert check.counts["stored_rows"] == 2 and check.counts["export_mismatches"] == 1


def test_cli_refuses_an_existing_database_and_a_bad_kill_point(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    existing = tmp_path / "mine.db"
    existing.write_bytes(b"precious")
    assert bench.main(["--db", f"sqlite:///{existing}", "--posts", "5"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert existing.read_bytes() == b"precious"

    with pytest.raises(SystemExit) as exited:
        bench.main(["--db", f"sqlite:///{tmp_path / 'new.db'}", "--kill-at", "1"])
    assert exited.value.code == 2
    assert "--kill-at must be strictly between 0 and 1" in capsys.readouterr().err
