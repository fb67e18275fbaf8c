"""The service under test, which can be killed and restarted, and the load posted to it."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import random
import signal
import ssl
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from loadtest.bench_serving import ServerProcess, ServerStartError, free_port, server_env
from loadtest.feedback_bench.config import BenchConfig
from loadtest.feedback_bench.plan import Job, PlannedPost
from loadtest.naive_server import NaiveConfig

FACTORY = "service.app:create_app"
FEEDBACK_PATH = "/v1/feedback"
RETRYABLE_STATUSES = frozenset({502, 503, 504})
SERVER_START_LIMIT_S = 120.0
BACKOFF_FIRST_S = 0.05
BACKOFF_MAX_S = 1.0


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
