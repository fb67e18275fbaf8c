"""Serving benchmark: the engine's in-process ceiling, then Plaudit and the naive server
under the same load, in one run.

    python -m loadtest.bench_serving --store DIR --model REF [--data PATH] [--engine onnx]
        [--precision fp32|int8] [--naive-precision fp32|int8] [--quick] [--out results.json]

1. Ceiling: `scorer.run` on length-sorted batches of 1, 8, 16, 32, 64 over pre-encoded
   items (best items/s kept), and the direct latency of scoring one item at a time.
2. Each server runs as `uvicorn --factory` on a free 127.0.0.1 port, settings in PLAUDIT_*
   variables, and gets the scenarios: c=32 k=1, c=32 k=16, c=1 at 1 req/s (idle latency).
   After the idle scenario, on the same idle server: the HTTP floor (a paced GET /healthz)
   and, for Plaudit, single-item requests interleaved with direct calls to its engine, with
   its /metrics read around them to split a served request into the engine's own work and
   the rest.
   Both load the same stored model; the naive server opens its ONNX file with ORT's default
   session options unless --naive-onnx-options plaudit gives it the service's tuned ones, and
   in Plaudit's precision unless --naive-precision names another (fp32 against int8, say).
   Around each Plaudit scenario its /metrics are read, for the engine-call time per item
   under that load (set beside the ceiling's: did the engine slow down, or time go elsewhere?).
   After each of Plaudit's closed-loop loads, the ceiling's best setting is measured once more,
   so that a load's share is also set against a ceiling taken right after it: these shared
   machines' speed drifts over the minutes between the first ceiling and a load.
3. A table and the ratios; `--out` writes everything as JSON.
The whole run is bounded by --max-total-s: every phase gets only what is left.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import httpx

from loadtest.data import DataError, ItemCycle, load_items, synthetic_items
from loadtest.generator import LoadConfig, LoadResult, endpoint_path, request_body, run_load_sync
from loadtest.http_client import make_http_client
from loadtest.machine import describe_machine, machine_line
from loadtest.naive_server import ONNX_OPTION_CHOICES, NaiveConfig
from loadtest.report import LoadReport, figure, summarize, write_json
from model_store.errors import StoreError
from service.settings import MULTIPROC_DIR_ENV, env_name
from service.supervisor import APP_FACTORY
from service.workers import provide_shared_directory

REPO_ROOT = Path(__file__).resolve().parent.parent

BATCH_SIZES = (1, 8, 16, 32, 64)
SERVERS = {
    "plaudit": APP_FACTORY,
    "naive": "loadtest.naive_server:create_naive_app",
}
IDLE_SCENARIO = "idle_c1_1rps"
INTERLEAVED_PAIRS = 60  # idle requests alternated with direct calls, one pair a second
SERVER_START_ALLOWANCE_S = 60.0  # a server start, ready and warmed up, in the budget's sums
MIN_TIMED_S = 2.0  # the least engine time behind each ceiling figure
CEILING_AGAIN_S = 3 * MIN_TIMED_S  # what measuring the best setting again may take: warm-up and timed pass
WORKER_DEATH_LINE = "exited with code"  # what the supervisor logs when a worker dies (service.supervisor)
MAX_WORKER_DEATHS = 3  # before a server is given up as unable to start
DRAIN_WAIT_S = 30.0  # for a cut scenario's abandoned requests to leave the queue


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    concurrency: int
    items_per_request: int
    requests: int
    duration_s: float
    rate: float | None = None


def scenarios(quick: bool) -> list[Scenario]:
    """Two throughput scenarios and the idle-latency one; --quick shrinks the counts."""
    if quick:
        return [
            Scenario("c32_k1", 32, 1, requests=300, duration_s=20.0),
            # 32 x 16 items in flight: at ~20 items/s one round alone takes ~25 s on 2 cores.
            Scenario("c32_k16", 32, 16, requests=64, duration_s=45.0),
            Scenario(IDLE_SCENARIO, 1, 1, requests=8, duration_s=12.0, rate=1.0),
        ]
    return [
        Scenario("c32_k1", 32, 1, requests=2000, duration_s=60.0),
        Scenario("c32_k16", 32, 16, requests=400, duration_s=60.0),
        Scenario(IDLE_SCENARIO, 1, 1, requests=20, duration_s=25.0, rate=1.0),
    ]


class Budget:
    """Seconds left of the whole run's --max-total-s."""

    def __init__(self, total_s: float) -> None:
        self._deadline = time.monotonic() + total_s

    def left(self) -> float:
        return max(0.0, self._deadline - time.monotonic())


# -- 1. the in-process ceiling -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ceiling:
    items_per_s_by_batch: dict[int, float]  # at the best worker count
    best_batch_size: int
    best_workers: int
    best_items_per_s: float
    items_per_s_by_workers: dict[int, float]  # best batch size at each worker count
    # One call at a time on the engine's lone-call session (all cores), when it has one.
    lone_session_items_per_s_by_batch: dict[int, float]
    best_on_lone_session: bool
    direct_latency_ms: float  # median of scoring the idle scenario's items one at a time, paced like it
    direct_latency_back_to_back_ms: float  # the same items, fastest of 3 back-to-back calls each


def engine_items_per_s(
    scorer: Any,
    encoded: Sequence[Any],
    size: int,
    workers: int,
    lone_session: bool = False,
    min_seconds: float = MIN_TIMED_S,
) -> float:
    """Items/s of `scorer.run` over `encoded` in batches of `size`, from `workers` threads at
    once; with `lone_session`, of `scorer.run_alone` (the call a lone item gets).

    One pass over the items is timed. Where it takes under `min_seconds` (a GPU goes through
    a few thousand items in a tenth of a second, from idle clocks, allocating as it goes),
    that pass counts as the warm-up of every batch shape, and enough passes to fill
    `min_seconds` are timed instead.
    """
    run = scorer.run_alone if lone_session else scorer.run
    batches = [encoded[i : i + size] for i in range(0, len(encoded), size)]
    run(batches[len(batches) // 2])  # warm this shape up
    started = time.perf_counter()
    rate = items_per_s(run, batches, workers)
    elapsed = time.perf_counter() - started
    if elapsed >= min_seconds:
        return rate
    passes = math.ceil(min_seconds / max(elapsed, 1e-6))
    return items_per_s(run, batches * passes, workers)


def items_per_s(call: Callable[[Sequence[Any]], object], batches: Sequence[Sequence[Any]], threads: int) -> float:
    """Items/s of `call` over `batches`, the batches shared out among `threads` threads."""
    shares = [batches[t::threads] for t in range(threads)]

    def work(share: Sequence[Sequence[Any]]) -> None:
        for batch in share:
            call(batch)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(work, shares))
    return sum(map(len, batches)) / (time.perf_counter() - t0)


def direct_latency_ms(scorer: Any, items: Sequence[Any], interval_s: float | None = None) -> float:
    """Median latency of scoring each of `items` directly, as the service scores a lone item
    (`scorer.encode`, then `scorer.run_alone`).

    These are the very items the idle scenario sends. With `interval_s` the calls are
    paced like that scenario (one per interval, the machine idle in between), so the two
    medians compare like with like. Without it, each item is scored three times back to
    back and the fastest counts: warm caches and a busy core, which a server at one
    request per second never has.
    """
    per_item = []
    started = time.perf_counter()
    for index, item in enumerate(items):
        if interval_s is not None:
            time.sleep(max(0.0, started + index * interval_s - time.perf_counter()))
            t0 = time.perf_counter()
            scorer.run_alone(scorer.encode([item]))
            per_item.append((time.perf_counter() - t0) * 1000.0)
            continue
        runs = []
        for _ in range(3):
            t0 = time.perf_counter()
            scorer.run_alone(scorer.encode([item]))
            runs.append((time.perf_counter() - t0) * 1000.0)
        per_item.append(min(runs))
    return statistics.median(per_item)


def length_sorted(scorer: Any, items: Sequence[Any]) -> list[Any]:
    """`items` encoded once, shortest first: the ceiling's batches are length-sorted, as
    the batcher's are."""
    encoded = scorer.encode(list(items))
    encoded.sort(key=lambda e: e.n_tokens)
    return encoded


def measure_ceiling(
    scorer: Any,
    items: Sequence[Any],
    idle_items: Sequence[Any],
    time_limit_s: float,
    worker_counts: Sequence[int] = (1,),
    idle_interval_s: float | None = None,
    batch_sizes: Sequence[int] = BATCH_SIZES,
    min_timed_s: float = MIN_TIMED_S,
) -> Ceiling:
    """The engine alone, the most any server around it could get: items/s on length-sorted
    batches at each batch size and number of concurrent engine calls, and the direct latency.

    Encoding happens once, outside the timing. Each worker count, and the engine's lone-call
    session if it has one (one call at a time on every core), gets an equal share of
    `time_limit_s`; within it, batch sizes are tried smallest first (a batch that holds
    every item leaves all but one worker idle) until the share is spent, and at least one
    is always measured.
    """
    encoded = length_sorted(scorer, items)
    counts = sorted(set(worker_counts))
    has_lone_session = bool(getattr(scorer, "lone_call_threads", None))
    share_s = time_limit_s / (len(counts) + has_lone_session)

    def by_batch_size(workers: int, lone_session: bool) -> dict[int, float]:
        started = time.monotonic()
        by_batch: dict[int, float] = {}
        for size in sorted(batch_sizes):
            if by_batch and time.monotonic() - started > share_s:
                break
            by_batch[size] = engine_items_per_s(scorer, encoded, size, workers, lone_session, min_timed_s)
        return dict(sorted(by_batch.items()))

    table = {workers: by_batch_size(workers, lone_session=False) for workers in counts}
    lone_table = by_batch_size(1, lone_session=True) if has_lone_session else {}
    best_of = {w: max(b.values()) for w, b in table.items()}
    best_workers = max(best_of, key=lambda w: best_of[w])
    by_batch = table[best_workers]
    on_lone = bool(lone_table) and max(lone_table.values()) > best_of[best_workers]
    if on_lone:
        best_workers, by_batch = 1, lone_table
    best = max(by_batch, key=lambda s: by_batch[s])
    return Ceiling(
        items_per_s_by_batch=by_batch,
        best_batch_size=best,
        best_workers=best_workers,
        best_items_per_s=by_batch[best],
        items_per_s_by_workers=best_of,
        lone_session_items_per_s_by_batch=lone_table,
        best_on_lone_session=on_lone,
        direct_latency_ms=direct_latency_ms(scorer, idle_items, idle_interval_s),
        direct_latency_back_to_back_ms=direct_latency_ms(scorer, idle_items),
    )


def ceiling_again(scorer: Any, items: Sequence[Any], ceiling: Ceiling, min_timed_s: float = MIN_TIMED_S) -> float:
    """Items/s at the ceiling's best setting (batch size, concurrent calls, session), measured
    anew on the same items. The ceiling itself is taken minutes before a load ends, and a
    shared machine's speed can drift by a third in that time (loadtest/RESULTS.md, session
    18), so the share of a load is also given against this, taken right after it."""
    return engine_items_per_s(
        scorer,
        length_sorted(scorer, items),
        ceiling.best_batch_size,
        ceiling.best_workers,
        ceiling.best_on_lone_session,
        min_timed_s,
    )


# -- 2. servers under load -----------------------------------------------------------------


class ServerStartError(RuntimeError):
    """A server subprocess exited or never became ready; the message has its log tail."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(base: Mapping[str, str], model: NaiveConfig, port: int) -> dict[str, str]:
    """Settings for either server as PLAUDIT_* variables, and thread counts pinned.

    Both servers run the engine with `intra_op_threads` threads; the math libraries are
    held to the same count so that nothing else oversubscribes the cores. Other PLAUDIT_*
    variables in `base` (batching knobs, say) pass through unchanged.
    """
    threads = str(model.intra_op_threads or 1)
    env = dict(base)  # other PLAUDIT_* settings (max_wait_ms, ...) pass through to both
    settings = {
        "STORE_DIR": model.store_dir,
        "MODEL": model.model,
        "ENGINE": model.engine,
        "DEVICE": model.device,
        "PRECISION": model.precision,
        "INTRA_OP_THREADS": threads,
        "HOST": "127.0.0.1",
        "PORT": str(port),
    }
    if model.engine_options:
        settings["ENGINE_OPTIONS"] = json.dumps(dict(model.engine_options))
    env.update({f"PLAUDIT_{k}": v for k, v in settings.items() if v is not None})
    env.update(
        OMP_NUM_THREADS=threads,
        MKL_NUM_THREADS=threads,
        OPENBLAS_NUM_THREADS=threads,
        TOKENIZERS_PARALLELISM="false",
    )
    return offline_with_this_checkout(env)


def offline_with_this_checkout(env: dict[str, str]) -> dict[str, str]:
    """`env`, updated for a server child of a benchmark: nothing fetched from the Hub, and this
    checkout first on PYTHONPATH."""
    env.update(
        HF_HUB_OFFLINE="1",
        PYTHONPATH=os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p),
    )
    return env


class ServerProcess:
    """`uvicorn --factory FACTORY` on 127.0.0.1:PORT as a child process; single use.

    With PLAUDIT_WORKERS above 1 in `env`, the server runs that many worker processes, sharing
    a fresh directory for their metrics and readiness (removed at stop): Plaudit's app through
    `plaudit serve`, whose supervisor gives each worker its own socket (service.supervisor),
    any other factory through uvicorn's own workers."""

    def __init__(self, factory: str, env: Mapping[str, str], port: int, log_path: Path | None = None) -> None:
        self.factory = factory
        self.url = f"http://127.0.0.1:{port}"
        self._env = dict(env)
        self._port = port
        self._workers = int(self._env.get(env_name("workers"), "1"))
        self._shared: Path | None = None
        # A kept log (`log_path`, appended to: a restarted server adds to it) outlives the run;
        # on a lent GPU it is all there is to read afterwards.
        self._log = open(log_path, "a+b") if log_path is not None else tempfile.TemporaryFile(mode="w+b")  # noqa: SIM115
        self._log_start = self._log.seek(0, os.SEEK_END)  # this server's own lines begin here
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> "ServerProcess":
        cmd = [
            sys.executable, "-m", "uvicorn", "--factory", self.factory,
            "--host", "127.0.0.1", "--port", str(self._port),
            "--log-level", "warning", "--no-access-log",
        ]
        if self._workers > 1:
            self._env.pop(MULTIPROC_DIR_ENV, None)  # each server gets its own
            self._shared = provide_shared_directory(self._env)
            if self.factory == APP_FACTORY:  # settings come from the PLAUDIT_* variables
                cmd = [sys.executable, "-m", "plaudit", "serve", "--host", "127.0.0.1", "--port", str(self._port)]
            else:
                cmd += ["--workers", str(self._workers)]
        self._proc = subprocess.Popen(
            cmd, env=self._env, cwd=REPO_ROOT, stdout=self._log, stderr=subprocess.STDOUT
        )
        return self

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=5)
        self._log.close()
        if self._shared is not None:
            shutil.rmtree(self._shared, ignore_errors=True)

    def __enter__(self) -> "ServerProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        """The server's process: uvicorn itself, or with several workers their supervisor."""
        assert self._proc is not None, "start() the server first"
        return self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, n_chars: int = 2000) -> str:
        """The end of what this server (not an earlier one in the same kept log) has logged."""
        self._log.flush()
        self._log.seek(self._log_start)
        return self._log.read().decode("utf-8", "replace")[-n_chars:]

    def wait_ready(self, timeout_s: float) -> None:
        """Poll GET /readyz until 200. Fail early if the process dies, if a worker says its
        model failed to load, or if workers keep dying (the supervisor restarting them): none
        of those ends in a ready server, and waiting them out costs a lent machine minutes."""
        assert self._proc is not None, "start() the server first"
        deadline = time.monotonic() + timeout_s
        # A fresh connection per poll: with several workers, each poll may reach another one.
        with httpx.Client(base_url=self.url, timeout=2.0, trust_env=False, headers={"Connection": "close"}) as client:
            while time.monotonic() < deadline:
                if self._proc.poll() is not None:
                    raise ServerStartError(
                        f"{self.factory} exited with code {self._proc.returncode} before it was "
                        f"ready; its log ends with:\n{self.log_tail()}"
                    )
                if self.log_tail(1_000_000).count(WORKER_DEATH_LINE) >= MAX_WORKER_DEATHS:
                    raise ServerStartError(
                        f"{self.factory}'s workers keep exiting before it is ready; "
                        f"its log ends with:\n{self.log_tail()}"
                    )
                try:
                    answer = client.get("/readyz")
                    if answer.status_code == 200:
                        return
                    failed = _load_failure(answer)
                    if failed is not None:
                        raise ServerStartError(f"{self.factory} cannot get ready: {failed}")
                except httpx.HTTPError:
                    pass  # not listening yet
                time.sleep(0.25)
        raise ServerStartError(
            f"{self.factory} was not ready within {timeout_s:.0f} s; "
            f"its log ends with:\n{self.log_tail()}"
        )


def _load_failure(answer: httpx.Response) -> str | None:
    """The message of a /readyz 503 that says the model failed to load (it stays failed)."""
    try:
        message = answer.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return None
    return message if isinstance(message, str) and message.startswith("the model failed to load") else None


def _warm_up(url: str, items: ItemCycle, seconds: float) -> None:
    """A few untimed requests, so the first scenario does not pay for lazy initialisation."""
    if seconds > 5:
        config = LoadConfig(url=url, concurrency=4, requests=16, items_per_request=4, duration_s=seconds)
        run_load_sync(config, items)


def run_server(
    factory: str,
    env_for_port: Callable[[int], dict[str, str]],
    items: ItemCycle,
    plan: Sequence[Scenario],
    budget: Budget,
    reserve_s: float = 10.0,
    load: Callable[[LoadConfig, ItemCycle], LoadResult] = run_load_sync,
    after_idle: Callable[[str, Scenario], None] | None = None,
    before_load: Callable[[str, Scenario], None] | None = None,
    after_load: Callable[[str, Scenario], None] | None = None,
    on_report: Callable[[Scenario, LoadReport], None] | None = None,
    log_path: Path | None = None,
) -> tuple[dict[str, LoadReport | None], str | None]:
    """Run `plan` against `factory`, returning a report per scenario and the start error if any.
    `load` runs one scenario's load (one generator process by default). `after_idle` is
    called with the server's URL and the idle scenario right after that scenario, on the
    same, still idle server (for the HTTP floor and the interleaved direct calls).
    `before_load` and `after_load` are called with the URL and the scenario right before and
    right after each scenario's load, on the same server (to read its counters).
    `on_report` gets each scenario's report as soon as it exists (to show progress).
    `log_path` keeps the server's log there (every start appends); else it is dropped at stop.

    After a scenario that its time cap cut short, the requests abandoned then may still be
    being scored, and would slow the next scenario down: the next one waits until the
    server's queue is empty (Plaudit drops a gone client's waiting items), and where that
    cannot be seen or does not happen within DRAIN_WAIT_S, the server is started afresh (a
    lent GPU's budget would go on restarts of six CUDA workers otherwise). A
    scenario runs with its whole time cap or not at all, so both servers run the same
    workload; one without the time left for its cap, or after a failed start, is None.
    """
    reports: dict[str, LoadReport | None] = {sc.name: None for sc in plan}
    server: ServerProcess | None = None
    try:
        for sc in plan:
            if budget.left() - reserve_s < 3:
                break
            if server is None:
                port = free_port()
                server = ServerProcess(factory, env_for_port(port), port, log_path).start()
                server.wait_ready(timeout_s=min(180.0, budget.left() - reserve_s))
                _warm_up(server.url, items, min(30.0, budget.left() - reserve_s))
            time_left = budget.left() - reserve_s
            if time_left < sc.duration_s:
                # A shorter cap would be another workload (more of it spent on requests cut
                # at the end), and the two servers' ratio would compare unlike runs.
                print(f"  {sc.name}: skipped, it needs up to {sc.duration_s:g} s; {time_left:.0f} s left", flush=True)
                continue
            config = LoadConfig(
                url=server.url,
                concurrency=sc.concurrency,
                requests=sc.requests,
                items_per_request=sc.items_per_request,
                rate=sc.rate,
                duration_s=sc.duration_s,
            )
            if before_load is not None:
                before_load(server.url, sc)
            report = summarize(load(config, items))
            if after_load is not None:
                after_load(server.url, sc)
            reports[sc.name] = report
            if on_report is not None:
                on_report(sc, report)
            if after_idle is not None and sc.name == IDLE_SCENARIO and sc.rate:
                after_idle(server.url, sc)
            if report.stopped_by == "duration" and not queue_drained(server.url, min(DRAIN_WAIT_S, budget.left())):
                server.stop()
                server = None
    except ServerStartError as exc:
        return reports, str(exc)
    finally:
        if server is not None:
            server.stop()
    return reports, None


def http_floor_ms(url: str, requests: int, interval_s: float) -> float | None:
    """Median latency of GET /healthz, paced like the idle scenario, through the generator's client.

    That route does no work, so this is the HTTP round trip every idle request pays on top
    of scoring: the client, loopback, uvicorn and the middleware, each woken from idle.
    None if the server did not answer 200.
    """

    async def probe() -> float | None:
        latencies = []
        async with make_http_client(url, timeout_s=10.0) as client:
            started = time.perf_counter()
            for index in range(requests):
                await asyncio.sleep(max(0.0, started + index * interval_s - time.perf_counter()))
                t0 = time.perf_counter()
                status, _ = await client.request("GET", "/healthz")
                if status != 200:
                    return None
                latencies.append((time.perf_counter() - t0) * 1000.0)
        return statistics.median(latencies) if latencies else None

    return asyncio.run(probe())


def interleaved_idle_ms(
    url: str, scorer: Any, items: Sequence[Any], interval_s: float
) -> dict[str, float] | None:
    """Single-item requests to `url` and direct lone calls (`scorer.run_alone`) on the same items,
    taken alternately half `interval_s` apart: each one's median latency, their ratio,
    and the median of the per-item ratios (served / direct).

    The idle scenario and the paced direct calls run minutes apart, and on these machines
    what a wake from idle costs drifts over minutes (the paced direct call has measured 20
    ms in one run and 31 ms in the next, 10.7 ms back to back in both). Alternating puts
    both through the same idle machine, and the per-item ratios cancel what drifts slower
    than a second. Which of the two goes first swaps every item.
    None if the server did not answer 200.
    """

    async def probe() -> dict[str, float] | None:
        served: list[float] = []
        direct: list[float] = []
        async with make_http_client(url, timeout_s=30.0) as client:

            async def one_served(item: Any) -> bool:
                body = request_body("score", [item])
                t0 = time.perf_counter()
                status, _ = await client.request("POST", endpoint_path("score"), body)
                served.append((time.perf_counter() - t0) * 1000.0)
                return status == 200

            def one_direct(item: Any) -> bool:
                t0 = time.perf_counter()
                scorer.run_alone(scorer.encode([item]))  # as the service scores a lone item
                direct.append((time.perf_counter() - t0) * 1000.0)
                return True

            started = time.perf_counter()
            for index, item in enumerate(items):
                for half in (0, 1):
                    at = started + (index + 0.5 * half) * interval_s
                    await asyncio.sleep(max(0.0, at - time.perf_counter()))
                    served_first = index % 2 == 0
                    ok = await one_served(item) if (half == 0) == served_first else one_direct(item)
                    if not ok:
                        return None
        if not served:
            return None
        served_p50, direct_p50 = statistics.median(served), statistics.median(direct)
        return {
            "plaudit_p50_ms": served_p50,
            "direct_p50_ms": direct_p50,
            "plaudit_mean_ms": statistics.fmean(served),
            "direct_mean_ms": statistics.fmean(direct),
            "plaudit_over_direct": served_p50 / direct_p50,
            "median_paired_ratio": statistics.median(s / d for s, d in zip(served, direct, strict=True)),
            "pairs": len(served),
        }

    return asyncio.run(probe())


# Plaudit's /metrics series that say how long the engine took per item under load.
ENGINE_COUNTERS = {
    "plaudit_inference_seconds_sum": "engine_s",  # wall time inside Scorer.run, summed over batches
    "plaudit_tokenize_seconds_sum": "tokenize_s",
    "plaudit_batch_size_items_sum": "items",
    "plaudit_batch_size_items_count": "batches",
}


def metric_samples(url: str) -> list[tuple[str, float]] | None:
    """(name, value) of every sample GET /metrics gives, or None without an answer (the naive
    server has no /metrics)."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        response = httpx.get(f"{url}/metrics", timeout=10.0, trust_env=False)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    return [
        (sample.name, sample.value)
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    ]


def queue_drained(url: str, timeout_s: float) -> bool:
    """Whether the server's `plaudit_queue_depth` (summed over its workers) reaches 0 within
    `timeout_s`; False where it has no such metric (the naive server)."""
    deadline = time.monotonic() + timeout_s
    while True:
        depths = [value for name, value in metric_samples(url) or () if name == "plaudit_queue_depth"]
        if not depths:
            return False
        if sum(depths) == 0:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.25)


def engine_counters(url: str) -> dict[str, float] | None:
    """Plaudit's cumulative engine counters from GET /metrics (ENGINE_COUNTERS), or None where
    the server has none of them."""
    found = {ENGINE_COUNTERS[name]: value for name, value in metric_samples(url) or () if name in ENGINE_COUNTERS}
    return found if len(found) == len(ENGINE_COUNTERS) else None


def engine_use(before: Mapping[str, float] | None, after: Mapping[str, float] | None) -> dict[str, float] | None:
    """What the engine did between two `engine_counters` readings: the items and batches it
    ran, the engine-call time per item (summed over calls that ran at once, so comparable
    with the ceiling's calls / items per second) and the items per batch. None without
    both readings or without a batch in between.

    Set beside the ceiling, this splits a server's shortfall in two: engine calls that ran
    slower under load than alone (contention for the cores), or time spent outside them.
    """
    if before is None or after is None:
        return None
    items = after["items"] - before["items"]
    batches = after["batches"] - before["batches"]
    if items <= 0 or batches <= 0:
        return None
    return {
        "items": items,
        "batches": batches,
        "engine_ms_per_item": (after["engine_s"] - before["engine_s"]) / items * 1000.0,
        "mean_batch_items": items / batches,
    }


def idle_split(
    before: Mapping[str, float] | None, after: Mapping[str, float] | None, served_mean_ms: float
) -> dict[str, float] | None:
    """Where an idle request's time went: the engine's own work per request (tokenizing and
    scoring, from two `engine_counters` readings around the interleaved probe) and the rest
    of `served_mean_ms` (HTTP, the framework, thread hand-offs). None without both readings
    or without a request in between.

    Beside the direct call's mean, this says whether an idle request is slower than a
    direct call because its engine work ran slower in the server or because of what
    surrounds it.
    """
    if before is None or after is None:
        return None
    items = after["items"] - before["items"]
    if items <= 0:
        return None
    engine_ms = (after["engine_s"] - before["engine_s"] + after["tokenize_s"] - before["tokenize_s"]) / items * 1000.0
    return {"server_engine_mean_ms": engine_ms, "outside_engine_mean_ms": served_mean_ms - engine_ms}


def ceiling_engine_ms_per_item(ceiling: Ceiling) -> float | None:
    """Engine-call time per item at the ceiling's best setting: its concurrent calls over its
    items per second (`best_workers` is 1 when the best was the lone-call session)."""
    return ratio(ceiling.best_workers * 1000.0, ceiling.best_items_per_s)


# -- 3. comparison -------------------------------------------------------------------------


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, or None when either is missing, NaN or the divisor is 0."""
    if numerator is None or denominator is None:
        return None
    if math.isnan(numerator) or math.isnan(denominator) or denominator == 0:
        return None
    return numerator / denominator


def compare(
    plaudit: Mapping[str, LoadReport | None],
    naive: Mapping[str, LoadReport | None],
    ceiling_items_per_s: float | None,
    direct_latency_ms: float | None,
) -> dict[str, Any]:
    """The headline ratios. Throughput ratios > 1 and p99 ratios < 1 favour Plaudit."""
    out: dict[str, Any] = {}
    for name in plaudit:
        ours, theirs = plaudit[name], naive.get(name)
        if name == IDLE_SCENARIO:
            ours_p50 = ours.latency.p50_ms if ours else None
            out[name] = {
                "plaudit_p50_ms": ours_p50,
                "naive_p50_ms": theirs.latency.p50_ms if theirs else None,
                "direct_single_item_ms": direct_latency_ms,
                "plaudit_over_direct": ratio(ours_p50, direct_latency_ms),
                "plaudit_overhead_ms": (
                    ours_p50 - direct_latency_ms
                    if ours_p50 is not None and direct_latency_ms is not None
                    else None
                ),
            }
            continue
        ours_ips = ours.items_per_s if ours else None
        theirs_ips = theirs.items_per_s if theirs else None
        out[name] = {
            "plaudit_over_naive_items_per_s": ratio(ours_ips, theirs_ips),
            "plaudit_over_ceiling": ratio(ours_ips, ceiling_items_per_s),
            "naive_over_ceiling": ratio(theirs_ips, ceiling_items_per_s),
            "plaudit_p99_ms": ours.latency.p99_ms if ours else None,
            "naive_p99_ms": theirs.latency.p99_ms if theirs else None,
            "p99_plaudit_over_naive": ratio(
                ours.latency.p99_ms if ours else None, theirs.latency.p99_ms if theirs else None
            ),
        }
    return out


def _x(value: float | None) -> str:
    """A ratio with three significant digits: 0.00123, 0.25, 4, 1.5e+03."""
    return "-" if value is None else f"{value:.3g}"


def format_results(results: Mapping[str, Any]) -> str:
    lines = [machine_line(results["machine"])] if results.get("machine") else []
    ceiling = results.get("ceiling")
    if ceiling:
        sizes = ", ".join(f"b{b}: {figure(v)}" for b, v in ceiling["items_per_s_by_batch"].items())
        workers = ", ".join(f"{w} worker(s): {figure(v)}" for w, v in ceiling["items_per_s_by_workers"].items())
        lone = ceiling.get("lone_session_items_per_s_by_batch") or {}
        if lone:
            workers += ", lone-call session: " + ", ".join(f"b{b} {figure(v)}" for b, v in lone.items())
        where = " on the lone-call session" if ceiling.get("best_on_lone_session") else ""
        lines.append(
            f"engine ceiling (items/s)  {sizes}  (best b{ceiling['best_batch_size']} "
            f"with {ceiling['best_workers']} concurrent call(s){where}; best by workers: {workers})"
        )
        lines.append(
            f"direct single-item latency  {figure(ceiling['direct_latency_ms'], 2)} ms paced like the idle "
            f"scenario, {figure(ceiling['direct_latency_back_to_back_ms'], 2)} ms back to back"
        )
        lines.append("")
    header = (
        f"{'server':<8} {'scenario':<13} {'items/s':>9} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
        f"{'ok':>6} {'failed':>6} {'cut':>4}"
    )
    lines += [header, "-" * len(header)]
    for server, reports in results["servers"].items():
        for name, rep in reports.items():
            if rep is None:
                lines.append(f"{server:<8} {name:<13} (not run: no time left or server did not start)")
                continue
            lat = rep["latency"]
            lines.append(
                f"{server:<8} {name:<13} {figure(rep['items_per_s']):>9} {figure(lat['p50_ms']):>8} "
                f"{figure(lat['p95_ms']):>8} {figure(lat['p99_ms']):>8} {rep['ok']:>6} {rep['failed']:>6} "
                f"{rep['unfinished']:>4}"
            )
    lines.append("(cut: requests still in flight when the scenario's time cap ended it)")
    lines.append("")
    for name, r in results.get("comparison", {}).items():
        if name == IDLE_SCENARIO:
            lines.append(
                f"{name}: p50 Plaudit {figure(r['plaudit_p50_ms'], 2)} ms, naive "
                f"{figure(r['naive_p50_ms'], 2)} ms, direct {figure(r['direct_single_item_ms'], 2)} ms "
                f"(Plaudit/direct x{_x(r['plaudit_over_direct'])})"
            )
            floor = r.get("http_floor_p50_ms") or {}
            if floor:
                lines.append(
                    f"  HTTP floor (GET /healthz at the same pace, p50): Plaudit "
                    f"{figure(floor.get('plaudit'), 2)} ms, naive {figure(floor.get('naive'), 2)} ms"
                )
            both = r.get("interleaved")
            if both:
                lines.append(
                    f"  interleaved, one Plaudit request and one direct call per interval, {both['pairs']} "
                    f"pairs (p50): Plaudit {figure(both['plaudit_p50_ms'], 2)} ms, direct "
                    f"{figure(both['direct_p50_ms'], 2)} ms (Plaudit/direct x{_x(both['plaudit_over_direct'])}; "
                    f"median of the per-pair ratios x{_x(both['median_paired_ratio'])})"
                )
                if "server_engine_mean_ms" in both:
                    lines.append(
                        f"  their means: Plaudit {figure(both['plaudit_mean_ms'], 2)} ms = its engine "
                        f"(tokenize + score, from /metrics) {figure(both['server_engine_mean_ms'], 2)} ms + "
                        f"outside the engine {figure(both['outside_engine_mean_ms'], 2)} ms; direct "
                        f"{figure(both['direct_mean_ms'], 2)} ms"
                    )
        else:
            lines.append(
                f"{name}: Plaudit/naive items/s x{_x(r['plaudit_over_naive_items_per_s'])}, "
                f"Plaudit/ceiling {_x(r['plaudit_over_ceiling'])}, "
                f"naive/ceiling {_x(r['naive_over_ceiling'])}, "
                f"p99 Plaudit/naive {_x(r['p99_plaudit_over_naive'])}"
            )
        if r.get("ceiling_after_items_per_s") is not None:
            lines.append(
                f"  the ceiling's best setting again, right after this load: "
                f"{figure(r['ceiling_after_items_per_s'])} items/s (Plaudit/that {_x(r['plaudit_over_ceiling_after'])})"
            )
        engine = r.get("plaudit_engine")
        if engine and name != IDLE_SCENARIO:
            lines.append(
                f"  Plaudit's engine calls under this load: {figure(engine['engine_ms_per_item'], 1)} ms per item "
                f"(ceiling {figure(engine['ceiling_engine_ms_per_item'], 1)} ms, x{_x(engine['over_ceiling'])}), "
                f"{figure(engine['mean_batch_items'], 2)} items per batch"
            )
    return "\n".join(lines)


# -- the run -------------------------------------------------------------------------------


def engine_config(args: argparse.Namespace) -> NaiveConfig:
    """The model named by the --store/--model/--engine/... flags, opened with Plaudit's tuned
    session options: the ceiling is Plaudit's own engine."""
    return NaiveConfig(
        store_dir=args.store,
        model=args.model,
        engine=args.engine,
        device=args.device,
        precision=args.precision,
        intra_op_threads=args.threads,
        onnx_options="plaudit",
        lone_call_threads=getattr(args, "lone_call_threads", None),  # set by resolve_engine_layout
    )


def resolve_engine_layout(args: argparse.Namespace) -> None:
    """Fill in --threads and --engine-workers as the service would lay out its engine for the
    precision the model resolves to (Settings.engine_layout); flags given on the command line win."""
    from model_store.engines import TEST_ENGINES
    from model_store.loading import resolved_precision
    from model_store.store import ModelStore
    from service.settings import Settings

    settings = Settings(
        engine=args.engine,
        device=args.device,
        precision=args.precision,
        engine_workers=args.engine_workers,
        intra_op_threads=args.threads,
    )
    precision = "fp32"
    if args.engine not in TEST_ENGINES:
        metadata = ModelStore(args.store).resolve(args.model).metadata
        precision = resolved_precision(args.engine, args.precision, metadata)
    layout = settings.engine_layout(precision)
    args.threads, args.engine_workers = layout.threads_per_call, layout.workers
    args.lone_call_threads = layout.lone_call_threads


def server_configs(args: argparse.Namespace, model_config: NaiveConfig) -> dict[str, NaiveConfig]:
    """What each server loads: the same stored version; --naive-precision lets the naive
    server open the plain fp32 export (what a first deployment serves) while Plaudit runs int8."""
    return {
        "plaudit": model_config,
        "naive": replace(model_config, precision=args.naive_precision or args.precision),
    }


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    from loadtest.naive_server import load_configured_scorer

    budget = Budget(args.max_total_s)
    items = load_items(args.data, limit=4096) if args.data else synthetic_items(120)
    cycle = ItemCycle(items)
    plan = scenarios(args.quick)
    results: dict[str, Any] = {
        "settings": {k: v for k, v in vars(args).items() if k != "func"},
        "machine": describe_machine(),
        "n_items": len(items),
        "scenarios": [asdict(sc) for sc in plan],
        "servers": {},
    }

    model_config = engine_config(args)
    # The scorer stays open to the end: the interleaved idle probe calls it beside the server.
    scorer = load_configured_scorer(model_config)
    try:
        n_ceiling = 64 if args.quick else 256
        idle = next(sc for sc in plan if sc.name == IDLE_SCENARIO)
        # More pairs than the scenario's requests: a median of 20 moved by 10-30% between runs.
        n_pairs = idle.requests if args.quick else INTERLEAVED_PAIRS
        # Single-item request i carries item i, so the ceiling, the idle scenario and the
        # interleaved probe all take prefixes of one sequence.
        singles = [cycle.batch(i, 1)[0] for i in range(max(n_ceiling, idle.requests, n_pairs))]
        ceiling_items, idle_items = singles[:n_ceiling], singles[: idle.requests]
        ceiling = measure_ceiling(
            scorer,
            ceiling_items,
            idle_items=idle_items,
            time_limit_s=min(240.0, 0.3 * budget.left()),
            worker_counts=(1, args.engine_workers),
            idle_interval_s=1.0 / idle.rate if idle.rate else None,
        )
        results["ceiling"] = asdict(ceiling)

        reports: dict[str, dict[str, LoadReport | None]] = {}
        errors: dict[str, str] = {}
        extra_env = {
            "plaudit": {"PLAUDIT_ENGINE_WORKERS": str(args.engine_workers)},
            "naive": {"PLAUDIT_NAIVE_ONNX_OPTIONS": args.naive_onnx_options},
        }
        configs = server_configs(args, model_config)
        floors: dict[str, float | None] = {}
        interleaved: dict[str, dict[str, float] | None] = {}
        counters_before: dict[str, dict[str, float] | None] = {}
        plaudit_engine: dict[str, dict[str, float] | None] = {}
        ceilings_after: dict[str, float] = {}

        def before_load(url: str, sc: Scenario) -> None:
            counters_before[sc.name] = engine_counters(url)

        def after_load(url: str, sc: Scenario) -> None:
            plaudit_engine[sc.name] = engine_use(counters_before.pop(sc.name, None), engine_counters(url))
            if sc.rate is None and budget.left() > naive_turn_s + CEILING_AGAIN_S:  # closed-loop loads
                ceilings_after[sc.name] = ceiling_again(scorer, ceiling_items, ceiling)

        # What the naive server's turn needs after Plaudit's probes: its scenarios and a start.
        naive_turn_s = sum(sc.duration_s for sc in plan) + SERVER_START_ALLOWANCE_S

        def after_idle(server: str) -> Callable[[str, Scenario], None]:
            def measure(url: str, sc: Scenario) -> None:
                interval_s = 1.0 / sc.rate if sc.rate else 1.0
                kept_for_later = naive_turn_s if server == "plaudit" else 0.0

                def affordable(n: int) -> int:  # probes shrink to the budget, never take the next turn's
                    return max(0, min(n, int((budget.left() - kept_for_later) / interval_s)))

                try:
                    n_floor = affordable(sc.requests)
                    floors[server] = http_floor_ms(url, n_floor, interval_s) if n_floor else None
                    n_both = affordable(n_pairs) if server == "plaudit" else 0  # the direct scorer is Plaudit's
                    if n_both:
                        before = engine_counters(url)
                        both = interleaved_idle_ms(url, scorer, singles[:n_both], interval_s)
                        if both is not None:
                            both |= idle_split(before, engine_counters(url), both["plaudit_mean_ms"]) or {}
                        interleaved[server] = both
                except OSError as exc:  # ConnectFailed, TimeoutError: the loads' figures still stand
                    print(f"  idle probes on {server} failed ({type(exc).__name__}: {exc}); left out", flush=True)

            return measure

        for server, factory in SERVERS.items():
            env = {**os.environ, **extra_env[server]}
            reports[server], error = run_server(
                factory,
                lambda port, env=env, cfg=configs[server]: server_env(env, cfg, port),
                cycle,
                plan,
                budget,
                after_idle=after_idle(server),
                before_load=before_load if server == "plaudit" else None,
                after_load=after_load if server == "plaudit" else None,
            )
            if error is not None:
                errors[server] = error  # the other server still gets measured
    finally:
        scorer.close()
    results["server_errors"] = errors
    results["servers"] = {
        server: {name: (rep.to_json() if rep else None) for name, rep in reps.items()}
        for server, reps in reports.items()
    }
    results["comparison"] = compare(
        reports["plaudit"], reports["naive"], ceiling.best_items_per_s, ceiling.direct_latency_ms
    )
    ceiling_ms = ceiling_engine_ms_per_item(ceiling)
    for name, use in plaudit_engine.items():
        if use is not None and name in results["comparison"]:
            results["comparison"][name]["plaudit_engine"] = {
                **use,
                "ceiling_engine_ms_per_item": ceiling_ms,
                "over_ceiling": ratio(use["engine_ms_per_item"], ceiling_ms),
            }
    for name, again in ceilings_after.items():
        served = reports["plaudit"].get(name)
        if name in results["comparison"]:
            results["comparison"][name]["ceiling_after_items_per_s"] = again
            results["comparison"][name]["plaudit_over_ceiling_after"] = ratio(
                served.items_per_s if served else None, again
            )
    if IDLE_SCENARIO in results["comparison"]:
        idle_comparison = results["comparison"][IDLE_SCENARIO]
        idle_comparison["http_floor_p50_ms"] = {server: floors.get(server) for server in SERVERS}
        idle_comparison["interleaved"] = interleaved.get("plaudit")
    return results


def lacks_model(args: argparse.Namespace, prog: str) -> bool:
    """Whether a model engine was asked for without --store and --model (then says so)."""
    if args.engine != "deterministic" and not (args.store and args.model):
        print(f"{prog}: --store and --model are required for the onnx and torch engines", file=sys.stderr)
        return True
    return False


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m loadtest.bench_serving", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--store", help="model store folder (PLAUDIT_STORE_DIR)")
    p.add_argument("--model", help="model reference: NAME, NAME@ALIAS or NAME:VERSION")
    p.add_argument("--data", help="JSONL items to send; built-in synthetic items if omitted")
    p.add_argument("--engine", default="onnx", choices=("onnx", "torch", "deterministic"))
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "fp16", "bf16", "int8"))
    p.add_argument(
        "--naive-precision", default=None, choices=("auto", "fp32", "fp16", "bf16", "int8"),
        help="the naive server's precision (default: --precision); e.g. fp32 against Plaudit's int8",
    )
    p.add_argument(
        "--threads", type=int, default=None,
        help="threads per engine call, both servers (default: the service's layout for the model's precision)",
    )
    p.add_argument(
        "--engine-workers", type=int, default=None,
        help="Plaudit's engine_workers (batches run at once; default: the service's layout); "
        "the ceiling is measured at 1 and at this count",
    )
    p.add_argument(
        "--naive-onnx-options", default="ort-defaults", choices=ONNX_OPTION_CHOICES,
        help="the naive server opens the ONNX file with ORT's default session options (a first "
        "deployment), or with Plaudit's tuned ones (isolates what batching adds)",
    )
    p.add_argument("--quick", action="store_true", help="fewer requests, shorter scenarios")
    p.add_argument("--max-total-s", type=float, default=None, help="bound on the whole run")
    p.add_argument("--out", help="write the results as JSON here")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.max_total_s is not None and not args.max_total_s > 0:
        parser.error(f"--max-total-s must be positive, got {args.max_total_s:g}")
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be at least 1, got {args.threads}")
    if args.engine_workers is not None and args.engine_workers < 1:
        parser.error(f"--engine-workers must be at least 1, got {args.engine_workers}")
    if args.max_total_s is None:
        args.max_total_s = 360.0 if args.quick else 900.0
    if lacks_model(args, "bench_serving"):
        return 2
    try:
        resolve_engine_layout(args)
        results = run_benchmark(args)
    except (DataError, StoreError, ValueError, LookupError, OSError) as exc:
        print(f"bench_serving: {exc}", file=sys.stderr)
        return 1
    print(format_results(results))
    for server, error in results["server_errors"].items():
        print(f"bench_serving: {server} did not start: {error}", file=sys.stderr)
    if args.out:
        write_json(args.out, results)
        print(f"\nresults written to {args.out}")
    return 1 if results["server_errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
