"""Feedback durability benchmark: idempotent POST /v1/feedback under load, retries and a crash.

    python -m loadtest.bench_feedback --db URL [--posts 10000] [--concurrency 32]
        [--retry-fraction 0.1] [--kill-at 0.5] [--max-total-s 600] [--keep-db] [--out FILE]

1. A fresh database: for sqlite:///PATH the file PATH, which must not exist yet; for
   postgresql://... a temporary database plaudit_bench_<uuid> created on that server.
   Either is dropped at the end (--keep-db keeps it), so runs never see each other's rows.
2. The service runs as a subprocess (uvicorn, engine deterministic: feedback never touches
   the model) on a free 127.0.0.1 port, with PLAUDIT_FEEDBACK_DB pointing at that database.
3. --posts feedback rows of every shape (likes, ratings, pairs, and A/B choices on a real
   /v1/compare), each with its own feedback_id, plus --retry-fraction re-posts of those ids
   with the same body: half sent at the same moment as the original, half a little later.
   A request that fails in transport or with 502/503/504 is retried with the same
   feedback_id, as a real client would. With --kill-at F the server gets SIGKILL once F of
   the posts have been sent, and is restarted on the same port and database while the
   clients keep retrying.
4. Checks, reading the database directly: every acknowledged (2xx) feedback_id is stored
   exactly once, with the body that was sent; no duplicate ids or bodies; no row nobody
   sent; at most one 201 per id, and every answer for an id names the stored row's time;
   GET /v1/feedback/export reproduces the stored rows, ids and bodies, in order.
Prints posts/s, latency percentiles, the counts and PASS or FAIL; exits 1 on FAIL.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import signal
import ssl
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from loadtest.bench_serving import ServerProcess, ServerStartError, free_port, server_env
from loadtest.naive_server import NaiveConfig
from loadtest.report import LatencySummary, write_json

FACTORY = "service.app:create_app"
FEEDBACK_PATH = "/v1/feedback"
EXPORT_PATH = "/v1/feedback/export"
RETRYABLE_STATUSES = frozenset({502, 503, 504})
MAX_POSTS = 1_000_000
MAX_CONCURRENCY = 1024
SERVER_START_LIMIT_S = 120.0
VERIFY_RESERVE_S = 30.0  # of --max-total-s, kept for the export and the checks
BACKOFF_FIRST_S = 0.05
BACKOFF_MAX_S = 1.0
SHOWN_PROBLEMS = 20

# The body columns a stored row is compared on (everything but ids and the time).
BODY_COLUMNS = (
    "kind", "prompt", "response", "liked", "rating", "rating_min", "rating_max", "chosen", "rejected",
    "user", "source", "metadata", "model_name", "model_version", "request_id",
)
# What GET /v1/feedback/export writes per kind, besides the ids, labels and time.
EXPORT_SHAPE_FIELDS = {
    "like": ("prompt", "response", "liked"),
    "rating": ("prompt", "response", "rating", "rating_min", "rating_max"),
    "pair": ("prompt", "chosen", "rejected"),
}


class BenchError(Exception):
    """The benchmark could not run (bad URL, database unreachable, server never started)."""


@dataclass(frozen=True, slots=True)
class BenchConfig:
    db_url: str
    posts: int = 10_000
    concurrency: int = 32
    retry_fraction: float = 0.1
    kill_at: float | None = None  # fraction of the posts sent before SIGKILL; None: no kill
    max_total_s: float = 600.0
    request_timeout_s: float = 30.0
    keep_db: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.posts <= MAX_POSTS:
            raise ValueError(f"posts must be between 1 and {MAX_POSTS}, got {self.posts}")
        if not 1 <= self.concurrency <= MAX_CONCURRENCY:
            raise ValueError(f"concurrency must be between 1 and {MAX_CONCURRENCY}, got {self.concurrency}")
        if not 0 <= self.retry_fraction <= 1:
            raise ValueError(f"retry_fraction must be between 0 and 1, got {self.retry_fraction:g}")
        if self.kill_at is not None and not 0 < self.kill_at < 1:
            raise ValueError(
                f"kill_at must be strictly between 0 and 1 (a fraction of the posts), got {self.kill_at:g}"
            )
        if not self.max_total_s > VERIFY_RESERVE_S:
            raise ValueError(f"max_total_s must be above {VERIFY_RESERVE_S:g} s, got {self.max_total_s:g}")
        if not self.request_timeout_s > 0:
            raise ValueError(f"request_timeout_s must be positive, got {self.request_timeout_s:g}")


# -- 1. the plan: what is posted, and in which order -------------------------------------------


@dataclass(frozen=True, slots=True)
class PlannedPost:
    """One feedback_id and its body. For a choice, `body` holds the /v1/compare request under
    "compare" and the pick under "choice"; the POST body is known once the compare answered."""

    index: int
    feedback_id: str
    shape: str  # like | rating | pair | choice
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Job:
    """Send `post` `copies` times at once (2: a re-post concurrent with the original);
    `retry` marks a later re-post of an id already sent."""

    post: PlannedPost
    copies: int = 1
    retry: bool = False


_SHAPES = ("like", "like", "like", "rating", "rating", "pair", "pair", "choice")
_TOPICS = (
    "How do I reset my password?",
    "Summarize the plot of Hamlet in two sentences.",
    "Écris une phrase sur la pluie à Paris.",
    "What is 17 × 23?",
    "日本の首都はどこですか？",
    "Give me a recipe for pancakes.",
)
_REPLIES = (
    "Open Settings, choose Security, then Reset password.",
    "A prince avenges his father and nearly everyone dies.",
    "La pluie tombe doucement sur les toits de Paris. ☂",
    "17 × 23 = 391.",
    "東京です。",
    "Mix flour, eggs and milk; fry small rounds in butter. " * 8,
)
_SOURCES = ("web-thumbs", "app-stars", "ab-test", None)


def planned_posts(n: int, run_tag: str, rng: random.Random) -> list[PlannedPost]:
    """`n` distinct bodies cycling through the shapes; the index in every prompt keeps each
    body unique, so a body stored twice can only be a duplicate insert."""
    posts = []
    for i in range(n):
        shape = _SHAPES[i % len(_SHAPES)]
        prompt = f"[{run_tag} #{i}] {_TOPICS[i % len(_TOPICS)]}"
        reply, other = rng.sample(_REPLIES, 2)
        extras: dict[str, Any] = {}
        if i % 3:
            extras["user"] = f"annotator-{i % 7}"
        source = _SOURCES[i % len(_SOURCES)]
        if source is not None:
            extras["source"] = source
        if i % 5 == 0:
            extras["metadata"] = {"session": f"s-{i // 10}", "tags": ["bench", "ü"], "n": i}
        if shape == "like":
            body: dict[str, Any] = {"prompt": prompt, "response": reply, "liked": rng.random() < 0.6}
        elif shape == "rating":
            rating = rng.choice((1, 2, 3, 4, 5, 2.5, 4.5))
            body = {"prompt": prompt, "response": reply, "rating": rating}
        elif shape == "pair":
            body = {"prompt": prompt, "chosen": reply, "rejected": other}
        else:
            body = {
                "compare": {"prompt": prompt, "response_a": reply, "response_b": other},
                "choice": rng.choice(("a", "b")),
            }
        posts.append(PlannedPost(i, f"bench-{run_tag}-{i:07d}", shape, {**body, **extras}))
    return posts


def plan_jobs(
    posts: Sequence[PlannedPost], retry_fraction: float, concurrency: int, rng: random.Random
) -> list[Job]:
    """The posts in order, with round(retry_fraction * len(posts)) re-posts of distinct ids:
    half go out together with their original (one job, two copies), half as their own job
    1 to 4 x concurrency jobs later, when the original is in flight or just answered."""
    n_retries = min(len(posts), round(retry_fraction * len(posts)))
    retried = rng.sample(range(len(posts)), n_retries)
    concurrent = set(retried[: n_retries // 2])
    keyed: list[tuple[float, Job]] = []
    for post in posts:
        copies = 2 if post.index in concurrent else 1
        keyed.append((float(post.index), Job(post, copies=copies)))
    for index in retried[n_retries // 2 :]:
        later = index + rng.randint(1, 4 * concurrency) + 0.5  # after the original, always
        keyed.append((later, Job(posts[index], retry=True)))
    keyed.sort(key=lambda pair: pair[0])
    return [job for _, job in keyed]


# -- 2. a fresh database -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FreshDatabase:
    url: str  # with any password: for the server and the checks only
    shown: str  # without the password: for messages
    backend: str  # sqlite | postgresql
    name: str  # the SQLite file, or the PostgreSQL database's name


@contextlib.contextmanager
def fresh_database(url: str, keep: bool = False) -> Iterator[FreshDatabase]:
    """An empty database the benchmark owns, dropped afterwards unless `keep`.

    SQLite: the URL's file, which must not exist (the benchmark never deletes a file it
    did not create). PostgreSQL: a new database plaudit_bench_<uuid> on the URL's server,
    created through the URL's own database (which must exist and allow CREATE DATABASE).
    """
    from service.feedback.database import describe, parse_url
    from service.feedback.errors import FeedbackStoreError

    try:
        parsed = parse_url(url)
    except FeedbackStoreError as exc:
        raise BenchError(str(exc)) from None
    if parsed.get_backend_name() == "sqlite":
        path = Path(parsed.database or "").absolute()
        if path.exists():
            raise BenchError(
                f"{path} already exists: the benchmark needs a database file of its own, which it "
                "deletes at the end; give --db sqlite:///PATH with a PATH that does not exist"
            )
        try:
            yield FreshDatabase(url, describe(parsed), "sqlite", str(path))
        finally:
            if not keep:
                for suffix in ("", "-wal", "-shm", "-journal"):
                    Path(f"{path}{suffix}").unlink(missing_ok=True)
        return

    import psycopg

    admin = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"plaudit_bench_{uuid.uuid4().hex}"
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=10) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BenchError(f"cannot create a database on {describe(parsed)}: {reason}") from None
    fresh = parsed.set(database=name)
    try:
        yield FreshDatabase(fresh.render_as_string(hide_password=False), describe(fresh), "postgresql", name)
    finally:
        if not keep:
            with psycopg.connect(admin, autocommit=True, connect_timeout=10) as connection:
                # FORCE: a killed server's connections may not all be gone yet.
                connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def postgres_database_exists(url: str, name: str) -> bool:
    """Whether the PostgreSQL server at `url` has a database called `name`."""
    import psycopg

    from service.feedback.database import parse_url

    admin = parse_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True, connect_timeout=10) as connection:
        found = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    return found is not None


# -- 3. the service, which can be killed and restarted ------------------------------------------


class KillableServer(ServerProcess):
    def kill(self) -> None:
        """SIGKILL: no shutdown, no lifespan cleanup, open transactions cut short, like a crash
        or the OOM killer."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)


class ServiceUnderTest:
    """The service on one 127.0.0.1 port and one database, across a kill and a restart."""

    def __init__(self, db_url: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        base = {k: v for k, v in os.environ.items() if not k.startswith("PLAUDIT_")}
        self._env = server_env(base, NaiveConfig(engine="deterministic", intra_op_threads=1), self.port)
        self._env["PLAUDIT_FEEDBACK_DB"] = db_url
        self._server: KillableServer | None = None
        self.starts = 0

    def start(self, timeout_s: float = SERVER_START_LIMIT_S) -> None:
        """Start a fresh process on the same port (SO_REUSEADDR: no wait after a kill)."""
        server = KillableServer(FACTORY, self._env, self.port).start()
        self._server = server
        self.starts += 1
        server.wait_ready(timeout_s)

    def kill(self) -> None:
        if self._server is not None:
            self._server.kill()
            self._server.stop()  # only closes its log now

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def log_tail(self) -> str:
        return self._server.log_tail() if self._server is not None else ""


# -- 4. the load -------------------------------------------------------------------------------


@dataclass(slots=True)
class Answer:
    """The end of one copy of one post: the 2xx that acknowledged it, or why there was none."""

    feedback_id: str
    retry: bool
    status: int | None  # of the last attempt; None: no HTTP answer
    outcome: str  # "ok", "unfinished" (time ran out), or the final error ("409", "422", ...)
    attempts: int
    failures: dict[str, int]  # attempts that failed and were retried, by reason
    replayed: bool | None = None
    created_at: str | None = None
    kind: str | None = None
    latency_s: float | None = None  # of the acknowledged attempt
    sent_at: float = 0.0
    answered_at: float = 0.0

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"


@dataclass(slots=True)
class KillRecord:
    after_posts: int = 0  # copies dispatched when the kill fired
    in_flight: int = 0  # HTTP requests in flight at that moment
    down_s: float = 0.0  # SIGKILL to the restarted server answering /readyz


class _Exchange:
    """The last attempt of a request sent with retries."""

    def __init__(self) -> None:
        self.response: httpx.Response | None = None
        self.outcome = "unfinished"
        self.attempts = 0
        self.failures: Counter[str] = Counter()
        self.sent_at = 0.0
        self.answered_at = 0.0


class _GaveUp(Exception):
    """A choice's /v1/compare never answered 200."""


class FeedbackLoad:
    """Runs the jobs with `concurrency` workers of two connections each; see the module docstring."""

    def __init__(self, config: BenchConfig, jobs: Sequence[Job], service: ServiceUnderTest, deadline: float) -> None:
        self.config = config
        self.jobs = list(jobs)
        self.service = service
        self.deadline = deadline  # time.monotonic()
        self.answers: list[Answer] = []
        self.resolved: dict[str, dict[str, Any]] = {}  # choice feedback_id -> the pair it names
        self.compare_failures: Counter[str] = Counter()
        self.twins = 0
        self.twins_overlapping = 0
        self.kill: KillRecord | None = None
        self.aborted: str | None = None
        self.elapsed_s = 0.0
        self._next = 0
        self._dispatched = 0
        self._in_flight = 0
        self._choice_bodies: dict[str, asyncio.Future[dict[str, Any]]] = {}
        total = sum(job.copies for job in self.jobs)
        self._kill_after = None if config.kill_at is None else max(1, math.ceil(config.kill_at * total))
        self._kill_due = asyncio.Event()

    async def run(self) -> None:
        started = time.perf_counter()
        killer = asyncio.create_task(self._kill_and_restart()) if self._kill_after is not None else None
        try:
            tls = ssl.create_default_context()  # once: building one per client costs ~70 ms each
            async with contextlib.AsyncExitStack() as stack:
                clients = [
                    [await stack.enter_async_context(self._client(tls)) for _ in range(2)]
                    for _ in range(min(self.config.concurrency, len(self.jobs)))
                ]
                async with asyncio.TaskGroup() as group:
                    for pair in clients:
                        group.create_task(self._worker(pair))
        finally:
            if killer is not None:
                if not killer.done() and not self._kill_due.is_set():
                    killer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await killer
            self.elapsed_s = time.perf_counter() - started

    def _client(self, tls: ssl.SSLContext) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.service.url,
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
            timeout=httpx.Timeout(self.config.request_timeout_s),
            verify=tls,
            trust_env=False,  # loopback only: no proxy from the environment
        )

    async def _worker(self, clients: list[httpx.AsyncClient]) -> None:
        while self._next < len(self.jobs):
            job = self.jobs[self._next]
            self._next += 1  # one event loop: no lock needed
            self._dispatched += job.copies
            if self._kill_after is not None and self._dispatched >= self._kill_after:
                self._kill_due.set()
            try:
                body = await self._body(job.post, clients[0])
            except _GaveUp:
                for _ in range(job.copies):
                    self.answers.append(
                        Answer(job.post.feedback_id, job.retry, None, "unfinished", 0, {})
                    )
                continue
            answers = await asyncio.gather(
                *(self._post(clients[k], job, body) for k in range(job.copies))
            )
            if job.copies == 2:
                self.twins += 1
                a, b = answers
                if a.ok and b.ok and a.sent_at < b.answered_at and b.sent_at < a.answered_at:
                    self.twins_overlapping += 1
            self.answers.extend(answers)

    async def _send(self, client: httpx.AsyncClient, path: str, payload: dict[str, Any]) -> _Exchange:
        """POST until an answer that is not worth retrying, or the deadline."""
        exchange = _Exchange()
        while not self.aborted:
            left = self.deadline - time.monotonic()
            if left <= 0:
                exchange.outcome = "unfinished"
                return exchange
            exchange.attempts += 1
            exchange.sent_at = time.perf_counter()
            self._in_flight += 1
            try:
                response = await client.post(path, json=payload, timeout=min(self.config.request_timeout_s, left))
            except httpx.TransportError as exc:
                reason = type(exc).__name__
            else:
                exchange.response = response
                if response.status_code not in RETRYABLE_STATUSES:
                    exchange.answered_at = time.perf_counter()
                    exchange.outcome = "ok" if 200 <= response.status_code < 300 else str(response.status_code)
                    return exchange
                reason = str(response.status_code)
            finally:
                self._in_flight -= 1
            exchange.response = None
            exchange.failures[reason] += 1
            backoff = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** min(exchange.failures.total() - 1, 10))
            await asyncio.sleep(backoff * random.uniform(0.5, 1.0))
        exchange.outcome = "unfinished"
        return exchange

    async def _post(self, client: httpx.AsyncClient, job: Job, body: dict[str, Any]) -> Answer:
        exchange = await self._send(client, FEEDBACK_PATH, body)
        answer = Answer(
            feedback_id=job.post.feedback_id,
            retry=job.retry,
            status=exchange.response.status_code if exchange.response is not None else None,
            outcome=exchange.outcome,
            attempts=exchange.attempts,
            failures=dict(exchange.failures),
            sent_at=exchange.sent_at,
            answered_at=exchange.answered_at,
        )
        if exchange.outcome == "ok" and exchange.response is not None:
            answer.latency_s = exchange.answered_at - exchange.sent_at
            try:
                data = exchange.response.json()
                answer.replayed = data["replayed"]
                answer.created_at = data["created_at"]
                answer.kind = data["kind"]
                if data["feedback_id"] != job.post.feedback_id:
                    answer.outcome = f"answered for another id {data['feedback_id']!r}"
            except (ValueError, KeyError, TypeError):
                answer.outcome = "unreadable 2xx body"
        return answer

    async def _body(self, post: PlannedPost, client: httpx.AsyncClient) -> dict[str, Any]:
        """The POST body; for a choice, after one /v1/compare shared by every copy and re-post."""
        if post.shape != "choice":
            return {**post.body, "feedback_id": post.feedback_id}
        future = self._choice_bodies.get(post.feedback_id)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._choice_bodies[post.feedback_id] = future
            try:
                future.set_result(await self._compare(post, client))
            except _GaveUp as exc:
                future.set_exception(exc)
                future.exception()  # retrieved: whoever awaits it sees it
                raise
            except BaseException:
                future.cancel()
                raise
        return await asyncio.shield(future)

    async def _compare(self, post: PlannedPost, client: httpx.AsyncClient) -> dict[str, Any]:
        compare = post.body["compare"]
        exchange = await self._send(client, "/v1/compare", compare)
        self.compare_failures.update(exchange.failures)
        if exchange.outcome != "ok" or exchange.response is None:
            self.compare_failures[f"final {exchange.outcome}"] += 1
            raise _GaveUp(post.feedback_id)
        request_id = exchange.response.json()["request_id"]
        a, b = compare["response_a"], compare["response_b"]
        chosen, rejected = (a, b) if post.body["choice"] == "a" else (b, a)
        self.resolved[post.feedback_id] = {
            "prompt": compare["prompt"], "chosen": chosen, "rejected": rejected, "request_id": request_id,
        }
        extras = {k: v for k, v in post.body.items() if k not in ("compare", "choice")}
        return {"request_id": request_id, "choice": post.body["choice"], "feedback_id": post.feedback_id, **extras}

    async def _kill_and_restart(self) -> None:
        await self._kill_due.wait()
        record = KillRecord(after_posts=self._dispatched, in_flight=self._in_flight)
        self.kill = record
        started = time.perf_counter()
        await asyncio.to_thread(self.service.kill)
        try:
            limit = max(1.0, min(SERVER_START_LIMIT_S, self.deadline - time.monotonic()))
            await asyncio.to_thread(self.service.start, limit)
        except ServerStartError as exc:
            self.aborted = f"the server did not come back after the kill: {exc}"
            return
        record.down_s = time.perf_counter() - started


# -- 5. the checks ------------------------------------------------------------------------------


@dataclass(slots=True)
class Verification:
    problems: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


def expected_columns(
    post: PlannedPost, resolved: Mapping[str, Any] | None, scale: tuple[float, float], model: tuple[str, str]
) -> dict[str, Any]:
    """The body columns the store should hold for `post`."""
    body = post.body
    out: dict[str, Any] = {name: None for name in BODY_COLUMNS}
    if post.shape == "choice":
        assert resolved is not None
        out.update(kind="pair", **resolved)
    else:
        out["kind"] = post.shape
        for name in ("prompt", "response", "liked", "chosen", "rejected"):
            out[name] = body.get(name)
        if post.shape == "rating":
            out.update(rating=float(body["rating"]), rating_min=scale[0], rating_max=scale[1])
    out["user"] = body.get("user")
    out["source"] = body.get("source")
    out["metadata"] = body.get("metadata") or {}
    out["model_name"], out["model_version"] = model
    return out


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text)


def read_stored_rows(db_url: str) -> list[dict[str, Any]]:
    """Every row of the feedback table, by id, read directly with SQLAlchemy."""
    import sqlalchemy as sa

    from service.feedback import database
    from service.feedback.schema import feedback

    engine = database.create_engine(database.parse_url(db_url), pool_size=1)
    try:
        with database.transaction(engine, write=False) as connection:
            return [dict(row._mapping) for row in connection.execute(sa.select(feedback).order_by(feedback.c.id))]
    finally:
        engine.dispose()


def verify(
    posts: Sequence[PlannedPost],
    load: FeedbackLoad,
    stored: Sequence[Mapping[str, Any]],
    exported: Sequence[Mapping[str, Any]],
    scale: tuple[float, float],
    model: tuple[str, str],
) -> Verification:
    v = Verification()
    problems = v.problems
    by_id = {post.feedback_id: post for post in posts}

    # What the clients were told.
    answers_by_id: dict[str, list[Answer]] = {}
    for answer in load.answers:
        answers_by_id.setdefault(answer.feedback_id, []).append(answer)
    acknowledged = {fid for fid, answers in answers_by_id.items() if any(a.ok for a in answers)}
    unresolved = {fid for fid, answers in answers_by_id.items() if any(not a.ok for a in answers)}
    finals = Counter(a.outcome for a in load.answers if not a.ok)
    for outcome, n in sorted(finals.items()):
        problems.append(f"{n} posts ended without a 2xx: {outcome}")
    created = Counter(a.feedback_id for a in load.answers if a.ok and a.status == 201)
    for fid, n in created.items():
        if n > 1:
            problems.append(f"{fid}: {n} answers said 201 Created; a feedback_id may be created once")
    for answer in load.answers:
        if answer.ok and answer.replayed != (answer.status == 200):
            problems.append(f"{answer.feedback_id}: status {answer.status} with replayed={answer.replayed}")

    # What the database holds.
    ids = Counter(row["feedback_id"] for row in stored)
    bodies = Counter(row["body_sha256"] for row in stored)
    duplicate_ids = [fid for fid, n in ids.items() if n > 1]
    duplicate_bodies = sum(n - 1 for n in bodies.values() if n > 1)
    for fid in duplicate_ids:
        problems.append(f"{fid} is stored {ids[fid]} times")
    if duplicate_bodies:
        problems.append(f"{duplicate_bodies} stored rows repeat another row's body (a duplicate insert)")
    strangers = [fid for fid in ids if fid not in by_id]
    if strangers:
        problems.append(f"{len(strangers)} stored rows were never sent, e.g. {strangers[0]}")
    missing = sorted(fid for fid in acknowledged if ids[fid] != 1)
    for fid in missing[:SHOWN_PROBLEMS]:
        problems.append(f"{fid} was acknowledged but is stored {ids[fid]} times")
    stored_unacknowledged = [fid for fid in ids if fid in by_id and fid not in acknowledged]
    for fid in stored_unacknowledged:
        if fid not in unresolved:
            problems.append(f"{fid} is stored, but no post of it was ever answered or abandoned")

    mismatched = 0
    for row in stored:
        post = by_id.get(row["feedback_id"])
        if post is None:
            continue
        if post.shape == "choice" and post.feedback_id not in load.resolved:
            mismatched += 1
            problems.append(f"{post.feedback_id}: a choice is stored but its /v1/compare never answered")
            continue
        expected = expected_columns(post, load.resolved.get(post.feedback_id), scale, model)
        wrong = [name for name in BODY_COLUMNS if row[name] != expected[name]]
        if wrong:
            mismatched += 1
            if mismatched <= SHOWN_PROBLEMS:
                shown = ", ".join(f"{n}={row[n]!r} (sent {expected[n]!r})" for n in wrong)
                problems.append(f"{post.feedback_id}: stored body differs from the one sent: {shown}")
        for answer in answers_by_id.get(row["feedback_id"], []):
            if answer.ok and (answer.created_at is None or _moment(answer.created_at) != row["created_at"]):
                problems.append(
                    f"{answer.feedback_id}: an answer says created_at {answer.created_at}, "
                    f"the row says {row['created_at'].isoformat()}"
                )
            if answer.ok and answer.kind != row["kind"]:
                problems.append(f"{answer.feedback_id}: an answer says kind {answer.kind}, the row is a {row['kind']}")

    # What the export says.
    export_mismatched = 0
    if len(exported) != len(stored):
        problems.append(f"the export has {len(exported)} lines, the database {len(stored)} rows")
    for line, row in zip(exported, stored, strict=False):
        expected_line = {
            "feedback_id": row["feedback_id"],
            "kind": row["kind"],
            **{name: row[name] for name in EXPORT_SHAPE_FIELDS[row["kind"]]},
            "source": row["source"],
            "annotator": row["user"],
            "model_name": row["model_name"],
            "model_version": row["model_version"],
        }
        wrong = [name for name, value in expected_line.items() if name not in line or line[name] != value]
        try:
            if _moment(str(line.get("created_at"))) != row["created_at"]:
                wrong.append("created_at")
        except ValueError:
            wrong.append("created_at")
        if wrong:
            export_mismatched += 1
            if export_mismatched <= SHOWN_PROBLEMS:
                problems.append(
                    f"export line for row {row['id']} ({row['feedback_id']}) differs in {', '.join(wrong)}"
                )
    if export_mismatched > SHOWN_PROBLEMS:
        problems.append(f"... {export_mismatched} export lines differ in all")

    v.counts = {
        "planned_posts": len(posts),
        "planned_copies": sum(job.copies for job in load.jobs),
        "concurrent_reposts": load.twins,
        "concurrent_reposts_overlapping": load.twins_overlapping,
        "later_reposts": sum(1 for job in load.jobs if job.retry),
        "answered_2xx": sum(1 for a in load.answers if a.ok),
        "created_201": sum(1 for a in load.answers if a.ok and a.status == 201),
        "replayed_200": sum(1 for a in load.answers if a.ok and a.status == 200),
        "not_acknowledged": sum(1 for a in load.answers if not a.ok),
        "acknowledged_ids": len(acknowledged),
        "acknowledged_only_by_replay": sum(1 for fid in acknowledged if created[fid] == 0),
        "attempts": sum(a.attempts for a in load.answers),
        "retried_attempts": sum(sum(a.failures.values()) for a in load.answers),
        "stored_rows": len(stored),
        "duplicate_ids": len(duplicate_ids),
        "duplicate_bodies": duplicate_bodies,
        "stored_unacknowledged": len(stored_unacknowledged),
        "body_mismatches": mismatched,
        "export_lines": len(exported),
        "export_mismatches": export_mismatched,
    }
    return v


# -- 6. the run -------------------------------------------------------------------------------


def _get_json(client: httpx.Client, path: str) -> Any:
    try:
        response = client.get(path)
    except httpx.HTTPError as exc:
        raise BenchError(f"GET {path} failed: {type(exc).__name__}: {exc}") from None
    if response.status_code != 200:
        raise BenchError(f"GET {path} answered {response.status_code}: {response.text[:300]}")
    return response.json()


def _fetch_export(client: httpx.Client) -> list[dict[str, Any]]:
    with client.stream("GET", EXPORT_PATH) as response:
        if response.status_code != 200:
            raise BenchError(f"GET {EXPORT_PATH} answered {response.status_code}: {response.read()[:300]!r}")
        return [json.loads(line) for line in response.iter_lines() if line.strip()]


def run_benchmark(config: BenchConfig) -> dict[str, Any]:
    """Everything in the module docstring; returns the results (see format_results)."""
    started = time.monotonic()
    rng = random.Random(config.seed)
    run_tag = uuid.uuid4().hex[:8]
    posts = planned_posts(config.posts, run_tag, rng)
    jobs = plan_jobs(posts, config.retry_fraction, config.concurrency, rng)
    results: dict[str, Any] = {"settings": {k: v for k, v in asdict(config).items() if k != "db_url"}}
    with fresh_database(config.db_url, keep=config.keep_db) as db:
        results["database"] = {"url": db.shown, "backend": db.backend, "name": db.name, "kept": config.keep_db}
        service = ServiceUnderTest(db.url)
        try:
            try:
                service.start()
            except ServerStartError as exc:
                raise BenchError(f"the service did not start: {exc}") from None
            with httpx.Client(base_url=service.url, timeout=60.0, trust_env=False) as client:
                served = _get_json(client, "/v1/models")["model"]
                model = (str(served["name"]), str(served["version"]))
                scale_min, scale_max = _get_json(client, "/v1/feedback/stats")["rating_scale"]
                scale = (float(scale_min), float(scale_max))
                deadline = started + config.max_total_s - VERIFY_RESERVE_S
                load = FeedbackLoad(config, jobs, service, deadline)
                asyncio.run(load.run())
                if load.aborted:
                    raise BenchError(f"{load.aborted}\n{service.log_tail()}")
                exported = _fetch_export(client)
            stored = read_stored_rows(db.url)
        finally:
            service.stop()
    check = verify(posts, load, stored, exported, scale, model)
    ok_latencies = [a.latency_s for a in load.answers if a.ok and a.latency_s is not None]
    results.update(
        served_model=f"{model[0]}:{model[1]}",
        server_starts=service.starts,
        kill=asdict(load.kill) if load.kill is not None else None,
        load_elapsed_s=load.elapsed_s,
        posts_per_s=check.counts["answered_2xx"] / load.elapsed_s if load.elapsed_s > 0 else math.nan,
        latency=asdict(LatencySummary.from_seconds(ok_latencies)),
        failed_attempts_by_reason=dict(
            sorted(sum((Counter(a.failures) for a in load.answers), Counter()).items())
        ),
        compare_failures=dict(load.compare_failures),
        counts=check.counts,
        problems=check.problems,
        passed=not check.problems,
        total_s=time.monotonic() - started,
    )
    return results


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def format_results(results: Mapping[str, Any]) -> str:
    c = results["counts"]
    s = results["settings"]
    lat = results["latency"]
    lines = [
        f"feedback benchmark on {results['database']['url']} ({results['database']['backend']}, fresh), "
        f"served model {results['served_model']}",
        f"plan          {c['planned_posts']} posts (likes, ratings, pairs, A/B choices) + "
        f"{c['planned_copies'] - c['planned_posts']} re-posts of the same ids and bodies "
        f"({c['concurrent_reposts']} concurrent with the original, {c['later_reposts']} later), "
        f"concurrency {s['concurrency']}",
    ]
    kill = results.get("kill")
    if kill is not None:
        lines.append(
            f"kill          SIGKILL after {kill['after_posts']} posts sent, {kill['in_flight']} requests in "
            f"flight; restarted on the same port and database, ready {_num(kill['down_s'], 2)} s after the kill"
        )
    failed = ", ".join(f"{k} {v}" for k, v in results["failed_attempts_by_reason"].items()) or "none"
    lines += [
        f"answers       {c['answered_2xx']} acknowledged ({c['created_201']} x 201 created, "
        f"{c['replayed_200']} x 200 replayed), {c['not_acknowledged']} not acknowledged; "
        f"{c['acknowledged_ids']} distinct ids, {c['acknowledged_only_by_replay']} acknowledged only by a replay",
        f"concurrency   {c['concurrent_reposts_overlapping']} of {c['concurrent_reposts']} concurrent re-posts "
        f"were in flight together with their original",
        f"retries       {c['retried_attempts']} attempts failed and were retried ({failed}); "
        f"{c['attempts']} attempts in all",
        f"throughput    {_num(results['posts_per_s'])} acknowledged posts/s "
        f"over {_num(results['load_elapsed_s'], 2)} s",
        f"latency ms    p50 {_num(lat['p50_ms'])}  p95 {_num(lat['p95_ms'])}  p99 {_num(lat['p99_ms'])}  "
        f"max {_num(lat['max_ms'])}  (acknowledged attempts)",
        f"store         {c['stored_rows']} rows; {c['duplicate_ids']} duplicate ids, {c['duplicate_bodies']} "
        f"duplicate bodies, {c['body_mismatches']} bodies differing from what was sent, "
        f"{c['stored_unacknowledged']} stored but never acknowledged",
        f"export        {c['export_lines']} lines, {c['export_mismatches']} differing from the stored rows",
    ]
    for problem in results["problems"][:SHOWN_PROBLEMS]:
        lines.append(f"  problem: {problem}")
    if len(results["problems"]) > SHOWN_PROBLEMS:
        lines.append(f"  ... {len(results['problems']) - SHOWN_PROBLEMS} more problems")
    lines.append("PASS" if results["passed"] else "FAIL")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m loadtest.bench_feedback", description=__doc__.split("\n\n")[0])
    p.add_argument("--db", required=True, metavar="URL",
                   help="sqlite:///PATH (a file that does not exist yet) or postgresql://USER@HOST:PORT/DB "
                   "(a temporary database is created there)")
    p.add_argument("--posts", type=int, default=10_000, help="distinct feedback rows to post (default 10000)")
    p.add_argument("--concurrency", type=int, default=32, help="clients posting at once (default 32)")
    p.add_argument("--retry-fraction", type=float, default=0.1,
                   help="re-posts of already posted ids with the same body, as a fraction of --posts (default 0.1)")
    p.add_argument("--kill-at", type=float, default=None, metavar="F",
                   help="SIGKILL the server once this fraction of the posts is sent, then restart it")
    p.add_argument("--max-total-s", type=float, default=600.0, help="bound on the whole run (default 600)")
    p.add_argument("--keep-db", action="store_true", help="keep the database afterwards (for inspection)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", metavar="FILE", help="write the results as JSON here")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = BenchConfig(
            db_url=args.db,
            posts=args.posts,
            concurrency=args.concurrency,
            retry_fraction=args.retry_fraction,
            kill_at=args.kill_at,
            max_total_s=args.max_total_s,
            keep_db=args.keep_db,
            seed=args.seed,
        )
    except ValueError as exc:
        name, _, rest = str(exc).partition(" ")  # "kill_at must be ..." -> "--kill-at must be ..."
        parser.error(f"--{name.replace('_', '-')} {rest}")
    try:
        results = run_benchmark(config)
    except BenchError as exc:
        print(f"bench_feedback: {exc}", file=sys.stderr)
        return 2
    print(format_results(results))
    if args.out:
        write_json(args.out, results)
        print(f"results written to {args.out}")
    return 0 if results["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
