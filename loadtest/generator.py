"""Asynchronous HTTP load against a scoring endpoint, bounded in request count and time.

`concurrency` clients of one keep-alive connection each (loadtest/http_client.py) carry the
load, in one of two modes:
  closed loop (no rate): `concurrency` workers each send a request, wait for the answer,
      and send the next, until `requests` have been sent;
  open loop (`rate` req/s): request i is sent at start + i / rate whether or not earlier
      ones have been answered, with at most `concurrency` in flight.
Either way the run stops after `duration_s`: nothing new is sent, requests still in
flight are abandoned and recorded as "unfinished".
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ipaddress
import json
import multiprocessing
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import httpx

from loadtest.data import ItemCycle
from loadtest.http_client import ConnectFailed, HttpClient, TransportFailed, make_http_client
from model_store.scoring import TextPair

DEFAULT_URL = "http://127.0.0.1:8000"
ENDPOINTS = ("score", "rank", "compare")
OK = "ok"
UNFINISHED = "unfinished"


class TargetError(ValueError):
    """The URL to load-test is malformed, or not on this machine without --allow-remote."""


def is_loopback_host(host: str) -> bool:
    """True for "localhost" and loopback IP literals; other names are never resolved."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_target(url: str, allow_remote: bool = False) -> None:
    """Refuse a URL that is not http(s), or whose host is not loopback unless allowed."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise TargetError(f"invalid URL {url!r}: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise TargetError(f"invalid URL {url!r}: expected http://HOST:PORT or https://HOST:PORT")
    if not allow_remote and not is_loopback_host(parsed.host):
        raise TargetError(
            f"refusing to load-test {url}: host {parsed.host!r} is not loopback "
            "(localhost, 127.0.0.0/8, ::1); pass --allow-remote to target another machine"
        )


@dataclass(frozen=True, slots=True)
class LoadConfig:
    url: str = DEFAULT_URL
    endpoint: str = "score"
    concurrency: int = 8
    requests: int = 100
    items_per_request: int = 1
    rate: float | None = None  # requests per second; None means closed loop
    duration_s: float = 60.0
    request_timeout_s: float = 30.0
    allow_remote: bool = False

    def __post_init__(self) -> None:
        if self.endpoint not in ENDPOINTS:
            raise ValueError(f"endpoint must be one of {', '.join(ENDPOINTS)}, got {self.endpoint!r}")
        for name in ("concurrency", "requests", "items_per_request"):
            value = getattr(self, name)
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if self.rate is not None and not self.rate > 0:
            raise ValueError(f"rate must be a positive number of requests per second, got {self.rate}")
        if not self.duration_s > 0:
            raise ValueError(f"duration_s must be positive, got {self.duration_s}")
        if not self.request_timeout_s > 0:
            raise ValueError(f"request_timeout_s must be positive, got {self.request_timeout_s}")


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request: `outcome` is "ok", an HTTP status code ("503"), or a failure name."""

    index: int
    n_items: int
    outcome: str
    latency_s: float

    @property
    def ok(self) -> bool:
        return self.outcome == OK


@dataclass(frozen=True, slots=True)
class LoadResult:
    config: LoadConfig
    records: list[RequestRecord] = field(repr=False)
    elapsed_s: float
    stopped_by: str  # "requests" (all sent and answered) or "duration" (hit the time cap)
    window: tuple[float, float] | None = None  # time.time() at the first send and after the last answer
    resent: int = 0  # requests sent again after their kept-alive connection was closed under them


def items_for(endpoint: str, cycle: ItemCycle, index: int, size: int) -> list[TextPair]:
    """The items request `index` carries: a compare request needs two per comparison."""
    return cycle.batch(index, 2 * size if endpoint == "compare" else size)


def _score_payload(items: list[TextPair]) -> dict[str, Any]:
    return {"items": [{"prompt": it.prompt, "response": it.response} for it in items]}


def _rank_payload(items: list[TextPair]) -> dict[str, Any]:
    # One prompt, many candidate responses: the first item's prompt stands for all.
    return {"prompt": items[0].prompt, "responses": [it.response for it in items]}


def _compare_payload(items: list[TextPair]) -> dict[str, Any]:
    # Consecutive items pair up; the first one's prompt is the comparison's prompt.
    pairs = zip(items[0::2], items[1::2], strict=True)
    return {
        "comparisons": [
            {"prompt": a.prompt, "response_a": a.response, "response_b": b.response} for a, b in pairs
        ]
    }


def _list_field_has(body: Any, key: str, n: int) -> bool:
    return isinstance(body, dict) and isinstance(body.get(key), list) and len(body[key]) == n


_PAYLOADS: dict[str, Callable[[list[TextPair]], dict[str, Any]]] = {
    "score": _score_payload,
    "rank": _rank_payload,
    "compare": _compare_payload,
}
# A 200 only counts as "ok" when it answers every item: (body, n_items) -> bool.
_ANSWER_CHECKS: dict[str, Callable[[Any, int], bool]] = {
    "score": lambda body, n: _list_field_has(body, "scores", n),
    "rank": lambda body, n: _list_field_has(body, "results", n),
    "compare": lambda body, n: _list_field_has(body, "results", n // 2),
}


def endpoint_path(endpoint: str) -> str:
    return f"/v1/{endpoint}"


def request_body(endpoint: str, items: list[TextPair]) -> dict[str, Any]:
    """The JSON body of one request to `endpoint` carrying `items`."""
    return _PAYLOADS[endpoint](items)


async def _send(
    client: HttpClient, config: LoadConfig, index: int, items: list[TextPair], due: float | None = None
) -> RequestRecord:
    """One request. `due` (perf_counter) is when an open loop meant to send it: its latency then
    counts from there, so time spent waiting for a free client is not hidden (coordinated omission)."""
    payload = request_body(config.endpoint, items)
    started = time.perf_counter() if due is None else min(due, time.perf_counter())
    try:
        status, content = await client.request("POST", endpoint_path(config.endpoint), payload)
    except TimeoutError:
        outcome = "timeout"
    except ConnectFailed:
        outcome = "connect_error"
    except TransportFailed:
        outcome = "transport_error"
    else:
        if status != 200:
            outcome = str(status)
        else:
            try:
                body = json.loads(content)
            except ValueError:
                body = None
            answered = _ANSWER_CHECKS[config.endpoint](body, len(items))
            outcome = OK if answered else "bad_response"
    return RequestRecord(index, len(items), outcome, time.perf_counter() - started)


class _Run:
    """The state of one run: who is in flight, what has finished."""

    def __init__(self, config: LoadConfig, items: ItemCycle) -> None:
        self.config = config
        self.items = items
        self.records: list[RequestRecord] = []
        self.in_flight: dict[int, tuple[float, int]] = {}  # index -> (perf_counter start, n_items)
        self.next_index = 0

    async def one(self, client: HttpClient, index: int, due: float | None = None) -> None:
        batch = items_for(self.config.endpoint, self.items, index, self.config.items_per_request)
        self.in_flight[index] = (time.perf_counter() if due is None else due, len(batch))
        record = await _send(client, self.config, index, batch, due)
        del self.in_flight[index]  # only reached when not cancelled
        self.records.append(record)

    async def closed_loop(self, clients: list[HttpClient]) -> None:
        async def worker(client: HttpClient) -> None:
            # Single-threaded event loop: taking the next index needs no lock.
            while self.next_index < self.config.requests:
                index = self.next_index
                self.next_index += 1
                await self.one(client, index)

        async with asyncio.TaskGroup() as group:
            for client in clients:
                group.create_task(worker(client))

    async def open_loop(self, clients: list[HttpClient], rate: float) -> None:
        idle: asyncio.Queue[HttpClient] = asyncio.Queue()
        for client in clients:
            idle.put_nowait(client)
        start = time.perf_counter()

        async def paced(index: int, client: HttpClient, due: float) -> None:
            try:
                await self.one(client, index, due)
            finally:
                idle.put_nowait(client)

        async with asyncio.TaskGroup() as group:
            for index in range(self.config.requests):
                due = start + index / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                client = await idle.get()  # never more than `concurrency` in flight
                group.create_task(paced(index, client, due))

    def abandon_in_flight(self, now: float) -> None:
        for index, (started, n_items) in sorted(self.in_flight.items()):
            self.records.append(RequestRecord(index, n_items, UNFINISHED, now - started))
        self.in_flight.clear()


def make_client(config: LoadConfig, tls: ssl.SSLContext | None = None) -> HttpClient:
    """A client holding one connection, used by one worker at a time.

    One client per worker rather than one shared pool: a pool scans its connections on each
    request, which at concurrency 32 doubled the generator's CPU per request (httpx), CPU
    that the server under test needs on a small machine.
    """
    return make_http_client(config.url, config.request_timeout_s, tls)


async def run_load(config: LoadConfig, items: ItemCycle, start_together: Any = None) -> LoadResult:
    """Run the load described by `config`; returns when done or when `duration_s` is up.

    `start_together`: a barrier (threading or multiprocessing) to wait at before the first
    send, so that several generator processes start at once (run_load_processes)."""
    check_target(config.url, config.allow_remote)
    tls = ssl.create_default_context()  # built once: building one per client costs ~70 ms each
    async with contextlib.AsyncExitStack() as stack:
        n_clients = min(config.concurrency, config.requests)
        clients = [
            await stack.enter_async_context(make_client(config, tls)) for _ in range(n_clients)
        ]
        run = _Run(config, items)
        if start_together is not None:
            await asyncio.to_thread(start_together.wait)
        wall_started = time.time()
        started = time.perf_counter()
        if config.rate is None:
            body = run.closed_loop(clients)
        else:
            body = run.open_loop(clients, config.rate)
        task = asyncio.create_task(body)
        done, _ = await asyncio.wait({task}, timeout=config.duration_s)
        stopped_by = "requests"
        if task in done:
            task.result()  # re-raise a bug in the generator itself
        else:
            stopped_by = "duration"
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            run.abandon_in_flight(time.perf_counter())
        elapsed = time.perf_counter() - started
        window = (wall_started, wall_started + elapsed)
        resent = sum(client.resent for client in clients)
    records = sorted(run.records, key=lambda r: r.index)
    return LoadResult(
        config=config, records=records, elapsed_s=elapsed, stopped_by=stopped_by, window=window, resent=resent
    )


def run_load_sync(config: LoadConfig, items: ItemCycle, start_together: Any = None) -> LoadResult:
    return asyncio.run(run_load(config, items, start_together))


def _run_share(config: LoadConfig, items: list[TextPair], rotate: int, start_together: Any) -> LoadResult:
    """One load process's part: its own event loop, and the item list rotated so that the
    processes do not all send the same items at the same moment."""
    rotate %= len(items)
    return run_load_sync(config, ItemCycle(items[rotate:] + items[:rotate]), start_together)


def run_load_processes(config: LoadConfig, items: list[TextPair], processes: int) -> LoadResult:
    """`config` split over `processes` generator processes, merged into one result.

    One Python event loop tops out at a few hundred requests a second of JSON and
    httpx work; a GPU server answers faster than that, and the figure would then measure
    the generator. Concurrency and request count are shared out as evenly as they go.
    The shares start sending together, once every process has started (a barrier); the
    elapsed time runs from the first share's first send to the last share's last answer,
    so shares that did not overlap exactly cannot flatter items/s.
    """
    if processes < 1:
        raise ValueError(f"processes must be at least 1, got {processes}")
    if processes == 1:
        return run_load_sync(config, ItemCycle(items))
    processes = min(processes, config.concurrency, config.requests)
    shares = [
        replace(
            config,
            concurrency=config.concurrency // processes + (p < config.concurrency % processes),
            requests=config.requests // processes + (p < config.requests % processes),
            rate=config.rate / processes if config.rate is not None else None,
        )
        for p in range(processes)
    ]
    step = max(1, len(items) // processes)
    # spawn, not fork: the caller may hold CUDA or ONNX Runtime state that must not be forked.
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, concurrent.futures.ProcessPoolExecutor(processes, mp_context=context) as pool:
        barrier = manager.Barrier(processes)
        rotations = [p * step for p in range(processes)]
        results = list(pool.map(_run_share, shares, [items] * processes, rotations, [barrier] * processes))
    offset, records = 0, []
    for result in results:  # renumber so that indices stay unique across shares
        records += [replace(r, index=r.index + offset) for r in result.records]
        offset += result.config.requests
    windows = [r.window for r in results if r.window is not None]
    first, last = min(w[0] for w in windows), max(w[1] for w in windows)
    return LoadResult(
        config=config,
        records=records,
        elapsed_s=last - first,  # spans every share's own window, so never less than its elapsed
        stopped_by="duration" if any(r.stopped_by == "duration" for r in results) else "requests",
        window=(first, last),
        resent=sum(r.resent for r in results),
    )
