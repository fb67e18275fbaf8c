"""Several worker processes behind one port: their shared directory, and real servers of two.

The servers here are `python -m plaudit serve --workers 2` child processes on 127.0.0.1, the
way a user starts them, so the workers really are separate processes sharing one socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families

from loadtest.bench_serving import free_port
from model_store.store import ModelStore
from service.cli import log_config, share_with_workers
from service.metrics import MultiprocessUnavailable, ServiceMetrics, multiprocess_enabled
from service.settings import MULTIPROC_DIR_ENV
from service.supervisor import Supervisor, probe_port, reserve_port, restart_delay
from service.workers import (
    OWNER_LOCK_FILE,
    SHARED_DIRECTORY_PREFIX,
    WORKER_FILE_PREFIX,
    WorkerGroup,
    prepare_shared_directory,
    provide_shared_directory,
    remove_abandoned_directories,
)
from tests.service.test_lifecycle import register_copy_of_v1

REPO_ROOT = Path(__file__).resolve().parents[2]
START_LIMIT_S = 90.0


# -- the shared directory ----------------------------------------------------------------------


@pytest.fixture
def other_process() -> Iterator[subprocess.Popen[bytes]]:
    """A real second process, standing in for another worker."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield proc
    proc.kill()
    proc.wait()


def test_a_worker_publishes_its_status_and_reads_everyones(tmp_path: Path, other_process: subprocess.Popen[bytes]) -> None:
    me = WorkerGroup(tmp_path, expected=2)
    other = WorkerGroup(tmp_path, expected=2, pid=other_process.pid)
    me.publish(ready=True, model="tiny:1")
    other.publish(ready=False, model=None)

    statuses = {s.pid: s for s in me.statuses()}
    assert set(statuses) == {os.getpid(), other_process.pid}
    assert (statuses[os.getpid()].ready, statuses[os.getpid()].model) == (True, "tiny:1")
    assert statuses[other_process.pid].ready is False
    assert me.ready_count(self_ready=True) == 1  # the other one is still loading

    other.publish(ready=True, model="tiny:1")
    assert me.ready_count(self_ready=True) == 2
    # A worker's own readiness is what it knows now, not what its file said a moment ago.
    assert me.ready_count(self_ready=False) == 1
    assert not list(tmp_path.glob("*.tmp"))  # written whole, then renamed


def test_a_dead_worker_is_forgotten_with_its_live_gauges(tmp_path: Path, other_process: subprocess.Popen[bytes]) -> None:
    me = WorkerGroup(tmp_path, expected=2)
    WorkerGroup(tmp_path, expected=2, pid=other_process.pid).publish(ready=True, model="tiny:1")
    me.publish(ready=True, model="tiny:1")
    live_gauge = tmp_path / f"gauge_livesum_{other_process.pid}.db"  # its queue depth, say
    live_gauge.write_bytes(b"")
    counter = tmp_path / f"counter_{other_process.pid}.db"  # counts it made stay counted
    counter.write_bytes(b"")
    assert me.ready_count(self_ready=True) == 2

    other_process.kill()
    other_process.wait()
    assert [s.pid for s in me.statuses()] == [os.getpid()]
    assert me.ready_count(self_ready=True) == 1
    assert not (tmp_path / f"{WORKER_FILE_PREFIX}{other_process.pid}.json").exists()
    assert not live_gauge.exists()
    assert counter.exists()


def test_an_unreadable_status_file_is_skipped(tmp_path: Path) -> None:
    me = WorkerGroup(tmp_path, expected=2)
    me.publish(ready=True, model="tiny:1")
    (tmp_path / f"{WORKER_FILE_PREFIX}999999.json").write_text("{not json")
    assert [s.pid for s in me.statuses()] == [os.getpid()]


def test_withdraw_removes_this_worker(tmp_path: Path) -> None:
    me = WorkerGroup(tmp_path, expected=1)
    me.publish(ready=True, model="tiny:1")
    me.withdraw()
    assert me.statuses() == []


def test_a_new_server_starts_from_an_empty_directory(tmp_path: Path) -> None:
    stale = [tmp_path / "counter_123.db", tmp_path / f"{WORKER_FILE_PREFIX}123.json"]
    for path in stale:
        path.write_text("from an earlier run")
    (tmp_path / "notes.txt").write_text("not ours")
    prepare_shared_directory(tmp_path)
    assert not any(path.exists() for path in stale)
    assert (tmp_path / "notes.txt").exists()

    env: dict[str, str] = {}
    made = provide_shared_directory(env)
    try:
        assert made is not None and env[MULTIPROC_DIR_ENV] == str(made) and made.is_dir()
    finally:
        shutil.rmtree(made)
    named = {MULTIPROC_DIR_ENV: str(tmp_path)}
    assert provide_shared_directory(named) is None and named[MULTIPROC_DIR_ENV] == str(tmp_path)


def test_a_new_server_removes_the_directories_of_servers_that_were_killed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def shared_directory(name: str, owner_file: bool = True) -> Path:
        directory = tmp_path / f"{SHARED_DIRECTORY_PREFIX}{name}"
        directory.mkdir()
        (directory / "counter_1.db").write_bytes(b"metrics")
        if owner_file:
            (directory / OWNER_LOCK_FILE).touch()
        return directory

    abandoned = shared_directory("4242-abc123")  # its server was killed: nobody holds the lock
    in_use = shared_directory("4243-def456")  # a live server, perhaps in another container
    unowned = shared_directory("ghi789", owner_file=False)  # made before there were owner files
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / f"{SHARED_DIRECTORY_PREFIX}link").symlink_to(elsewhere)
    (tmp_path / f"{SHARED_DIRECTORY_PREFIX}file").write_text("not a directory")
    with open(in_use / OWNER_LOCK_FILE, "rb") as live:
        fcntl.flock(live.fileno(), fcntl.LOCK_EX)  # another open file: as another process's lock
        monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
        env: dict[str, str] = {}
        made = provide_shared_directory(env)  # what `plaudit serve --workers N` calls at start
        assert made is not None and made.name.startswith(f"{SHARED_DIRECTORY_PREFIX}{os.getpid()}-")
        assert not abandoned.exists()
        assert in_use.is_dir() and (in_use / "counter_1.db").exists()
        assert unowned.is_dir() and elsewhere.is_dir()
        assert (tmp_path / f"{SHARED_DIRECTORY_PREFIX}file").exists()
        assert remove_abandoned_directories(tmp_path) == []  # ours is held by this process
        assert made.is_dir()
    assert remove_abandoned_directories(tmp_path) == [in_use]  # its lock let go: its server ended


def test_metrics_refuse_a_shared_directory_without_multiprocess_mode(tmp_path: Path) -> None:
    assert not multiprocess_enabled()  # the test process imported prometheus_client without it
    with pytest.raises(MultiprocessUnavailable, match="plaudit serve --workers"):
        ServiceMetrics(tmp_path)


def test_serve_hands_its_options_and_a_directory_to_the_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    # A private copy: what serve puts in the environment must not reach the other tests.
    monkeypatch.setattr(os, "environ", {k: v for k, v in os.environ.items() if k != MULTIPROC_DIR_ENV})
    made = share_with_workers({"workers": 3, "max_wait_ms": 2.5, "store_dir": Path("/srv/models")})
    try:
        assert (os.environ["PLAUDIT_WORKERS"], os.environ["PLAUDIT_MAX_WAIT_MS"]) == ("3", "2.5")
        assert os.environ["PLAUDIT_STORE_DIR"] == "/srv/models"
        assert made is not None and os.environ[MULTIPROC_DIR_ENV] == str(made)
    finally:
        if made is not None:
            shutil.rmtree(made)
    config = log_config()
    # Plaudit's own loggers reach the workers' stderr, with the pid that tells workers apart.
    assert config["root"]["handlers"] == ["plaudit"]
    assert "%(process)d" in config["formatters"]["plaudit"]["format"]


# -- real servers of two workers -------------------------------------------------------------


@contextmanager
def plaudit_serve(*args: str, **options: Any) -> Iterator[httpx.Client]:
    """A client of `serve_process(*args, **options)`."""
    with serve_process(*args, **options) as (client, _):
        yield client


@contextmanager
def serve_process(
    *args: str,
    feedback_db: Path | None = None,
    shared: Path | None = None,
    workers: int = 2,
    temp_dir: Path | None = None,
) -> Iterator[tuple[httpx.Client, subprocess.Popen[bytes]]]:
    """`python -m plaudit serve ARGS --workers N` on a free port, until the block ends: a client
    and the server's own process (the supervisor). The feedback store is off unless
    `feedback_db` names an SQLite file for it, and the workers' shared directory is a
    temporary one (in `temp_dir` if given) unless `shared` names it."""
    with tempfile.TemporaryFile() as log:
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        if temp_dir is not None:
            env["TMPDIR"] = str(temp_dir)
        if feedback_db is None:
            env["PLAUDIT_FEEDBACK_ENABLED"] = "false"
        else:
            env["PLAUDIT_FEEDBACK_DB"] = f"sqlite:///{feedback_db}"
        env.pop(MULTIPROC_DIR_ENV, None)
        if shared is not None:
            env[MULTIPROC_DIR_ENV] = str(shared)
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "plaudit", "serve", "--port", str(port), "--workers", str(workers), *args],
            cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=20.0) as client:
                give_up = time.monotonic() + START_LIMIT_S
                while not _answers_ready(client):
                    if proc.poll() is not None or time.monotonic() > give_up:
                        log.seek(0)
                        pytest.fail(f"the server was not ready; its log:\n{log.read().decode()[-3000:]}")
                    time.sleep(0.1)
                yield client, proc
        finally:
            with contextlib.suppress(ProcessLookupError):  # a test may have stopped it already
                os.killpg(proc.pid, signal.SIGTERM)  # the supervisor and its workers
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _answers_ready(client: httpx.Client) -> bool:
    try:
        return client.get("/readyz").status_code == 200
    except httpx.HTTPError:
        return False


def samples(client: httpx.Client, name: str) -> list[tuple[dict[str, str], float]]:
    """Every sample called `name` in one /metrics answer, with its labels."""
    text = client.get("/metrics").text
    return [
        (dict(sample.labels), sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]


def served_by_worker(client: httpx.Client) -> dict[str, str]:
    """pid -> the version that worker serves, from plaudit_model_info."""
    return {labels["pid"]: labels["version"] for labels, value in samples(client, "plaudit_model_info") if value == 1}


def wait_for(condition: Callable[[], bool], what: str, limit_s: float = 30.0) -> None:
    give_up = time.monotonic() + limit_s
    while not condition():
        if time.monotonic() > give_up:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.1)


def test_two_workers_answer_as_one_server() -> None:
    with plaudit_serve("--engine", "deterministic") as client:
        ready = client.get("/readyz").json()
        assert ready["workers"] == {"ready": 2, "expected": 2}
        workers = served_by_worker(client)
        # One /metrics answer holds both workers' series: it adds up the shared directory.
        assert len(workers) == 2 and set(workers.values()) == {"0"}

        body = {"items": [{"prompt": "p", "response": "r"}]}
        scores = set()
        for _ in range(20):  # a new connection each time, so either worker may take it
            with httpx.Client(base_url=str(client.base_url)) as fresh:
                scores.add(fresh.post("/v1/score", json=body).json()["scores"][0])
        assert len(scores) == 1  # the same engine everywhere

        def score_counts() -> list[float]:
            with httpx.Client(base_url=str(client.base_url)) as fresh:
                return [v for labels, v in samples(fresh, "plaudit_requests_total")
                        if labels == {"endpoint": "/v1/score", "status": "200"}]

        # A worker counts a request once its response has gone out, so the last count can
        # land a moment after the client has its answer: let it, then read it from both.
        wait_for(lambda: score_counts() == [20.0], "the 20 /v1/score requests to be counted", limit_s=10)
        for _ in range(5):  # whichever worker answers, the count is the server's
            assert score_counts() == [20.0]
        assert [v for _, v in samples(client, "plaudit_queue_depth")] == [0.0]


def test_a_worker_that_dies_is_replaced_and_its_series_dropped() -> None:
    with plaudit_serve("--engine", "deterministic") as client:
        before = served_by_worker(client)
        victim = int(next(iter(before)))
        os.kill(victim, signal.SIGKILL)

        url = str(client.base_url)  # the kept connection may have been the dead worker's

        def replaced() -> bool:
            with httpx.Client(base_url=url) as fresh:
                now = served_by_worker(fresh)  # reading /metrics forgets workers that died
            return len(now) == 2 and str(victim) not in now

        wait_for(replaced, "uvicorn to start a new worker and the dead one's series to go")
        with httpx.Client(base_url=url) as fresh:
            wait_for(lambda: _answers_ready(fresh), "the server to be ready again")
            assert fresh.get("/readyz").json()["workers"] == {"ready": 2, "expected": 2}


def workers_ready(client: httpx.Client) -> int | None:
    """How many workers /readyz counts ready (it is 503 "1 of 2 workers are ready" while one is
    missing); None where the answer counts none (a worker still loading answered it)."""
    answer = client.get("/readyz")
    if answer.status_code == 200:
        return int(answer.json()["workers"]["ready"])
    counted = re.match(r"(\d+) of \d+ workers are ready", answer.json()["error"]["message"])
    return int(counted.group(1)) if counted else None


def test_a_worker_started_in_place_of_a_dead_one_takes_connections_only_once_ready(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # It listened while its model loaded: about half the new connections got 503 although the
    # other worker was ready (and all of them, with a version that could no longer load).
    monkeypatch.setenv("PLAUDIT_ENGINE_OPTIONS", json.dumps({"warmup_delay_s": 3.0}))
    with plaudit_serve("--engine", "deterministic") as client:
        url = str(client.base_url)
        os.kill(int(next(iter(served_by_worker(client)))), signal.SIGKILL)

        def one_short() -> bool:
            with httpx.Client(base_url=url) as fresh:
                return workers_ready(fresh) != 2

        wait_for(one_short, "the dead worker to be missed")
        body = {"items": [{"prompt": "p", "response": "r"}]}
        seen: list[tuple[int, int]] = []  # (workers ready, status of a POST on a new connection)
        give_up = time.monotonic() + 60
        while not seen or seen[-1][0] != 2:
            assert time.monotonic() < give_up, seen
            with httpx.Client(base_url=url) as fresh:  # a new connection: either socket may take it
                seen.append((workers_ready(fresh), fresh.post("/v1/score", json=body).status_code))
        while_loading = [status for ready, status in seen if ready == 1]
        assert while_loading, seen  # the replacement was loading during some of them
        assert set(status for _, status in seen) == {200}, seen


def test_a_promote_sent_to_one_worker_reaches_every_worker(store_dir: Path, tmp_path: Path) -> None:
    register_copy_of_v1(store_dir, tmp_path / "v2")
    with plaudit_serve(
        "--store", str(store_dir), "--model", "tiny", "--engine", "onnx", "--threads", "1", "--model-poll-s", "0.5"
    ) as client:
        assert set(served_by_worker(client).values()) == {"1"}
        r = client.post("/v1/models/tiny/promote", json={"version": 2})
        assert r.status_code == 200, r.text
        assert r.json()["new"] == {"name": "tiny", "version": "2"}
        assert ModelStore(store_dir).aliases("tiny") == {"production": 2}

        def all_on_2() -> bool:
            workers = served_by_worker(client)
            return len(workers) == 2 and set(workers.values()) == {"2"}

        wait_for(all_on_2, "both workers to serve tiny:2")
        body = {"items": [{"prompt": "p", "response": "r"}]}
        for _ in range(10):
            with httpx.Client(base_url=str(client.base_url)) as fresh:
                assert fresh.post("/v1/score", json=body).json()["model"] == {"name": "tiny", "version": "2"}


def test_the_status_file_holds_what_a_reader_needs(tmp_path: Path) -> None:
    WorkerGroup(tmp_path, expected=1).publish(ready=True, model="tiny:2")
    (path,) = tmp_path.glob(f"{WORKER_FILE_PREFIX}*.json")
    assert json.loads(path.read_text()) == {"pid": os.getpid(), "ready": True, "model": "tiny:2"}


def test_a_choice_resolves_whichever_worker_scored_the_comparison(tmp_path: Path) -> None:
    """Comparisons are remembered in the shared feedback store, not in a worker's memory."""
    with plaudit_serve("--engine", "deterministic", feedback_db=tmp_path / "feedback.db") as client:
        url = str(client.base_url)
        compared = []
        for i in range(8):  # fresh connections: the scoring worker is the kernel's choice
            with httpx.Client(base_url=url) as fresh:
                r = fresh.post("/v1/compare", json={"prompt": "p", "response_a": f"a{i}", "response_b": f"b{i}"})
                assert r.status_code == 200, r.text
                compared.append(r.json()["request_id"])
        for request_id in compared:
            with httpx.Client(base_url=url) as fresh:
                r = fresh.post("/v1/feedback", json={"request_id": request_id, "choice": "b"})
                assert r.status_code == 201, r.text
                assert r.json()["kind"] == "pair"
        stats = client.get("/v1/feedback/stats").json()
        assert stats["total"] == 8, stats


def scored_requests_by_worker(shared: Path) -> dict[int, float]:
    """pid -> /v1/score requests that worker answered, from its own counter file."""
    counts = {}
    for path in shared.glob("counter_*.db"):
        pid = int(path.stem.removeprefix("counter_"))
        counts[pid] = sum(
            value
            for key, value, _, _ in MmapedDict.read_all_values_from_file(str(path))
            if json.loads(key)[1] == "plaudit_requests_total" and json.loads(key)[2].get("endpoint") == "/v1/score"
        )
    return counts


def test_new_connections_under_load_are_shared_by_every_worker(tmp_path: Path) -> None:
    """64 clients connect at once and each sends 5 requests in turn, as a load generator does.
    uvicorn's own workers share one socket, and a worker that wakes accepts every connection
    waiting: over four of them, such a load left one worker 1-3 connections and another 35
    (three runs). Each worker's own SO_REUSEPORT socket gets its share, 11-23 in three runs."""
    shared = tmp_path / "shared"
    clients, rounds = 64, 5
    with plaudit_serve("--engine", "deterministic", shared=shared, workers=4) as client:
        url = str(client.base_url)
        body = {"items": [{"prompt": "p", "response": "r"}] * 8}

        async def load() -> list[int]:
            connections = [httpx.AsyncClient(base_url=url) for _ in range(clients)]

            async def in_turn(connection: httpx.AsyncClient) -> list[int]:
                return [(await connection.post("/v1/score", json=body)).status_code for _ in range(rounds)]

            try:
                answers = await asyncio.gather(*(in_turn(c) for c in connections))
            finally:
                await asyncio.gather(*(c.aclose() for c in connections))
            return [status for statuses in answers for status in statuses]

        assert asyncio.run(load()) == [200] * clients * rounds
        connections_by_worker = {pid: n / rounds for pid, n in scored_requests_by_worker(shared).items()}
        assert len(connections_by_worker) == 4 and sum(connections_by_worker.values()) == clients
        # Binomial(64, 1/4) gives some worker 3 or fewer about once in 10,000 runs.
        assert min(connections_by_worker.values()) >= 4, connections_by_worker


def test_a_taken_port_is_refused_rather_than_shared(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError):
            reserve_port("127.0.0.1", port)
        env = {**os.environ, "PLAUDIT_FEEDBACK_ENABLED": "false"}
        env.pop(MULTIPROC_DIR_ENV, None)
        done = subprocess.run(
            [sys.executable, "-m", "plaudit", "serve", "--engine", "deterministic", "--workers", "2", "--port", str(port)],
            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60,
        )
        assert done.returncode == 2
        assert f"plaudit serve: cannot listen on 127.0.0.1:{port}: Address already in use" in done.stderr

    held = reserve_port("127.0.0.1", 0)  # port 0: a free port, held for the workers
    try:
        port = held.getsockname()[1]
        assert port != 0
        with socket.socket() as other, pytest.raises(OSError):
            other.bind(("127.0.0.1", port))  # a second server cannot join it unawares
        with pytest.raises(OSError):
            reserve_port("127.0.0.1", port)
    finally:
        held.close()


@pytest.mark.parametrize("reuse_port", [False, True], ids=["after-one-uvicorn", "after-plaudit-workers"])
def test_a_port_left_in_time_wait_by_a_stopped_server_is_reserved_again(reuse_port: bool) -> None:
    """A restart right after a stop: the closed connections' TIME_WAIT must not refuse it."""
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn and our workers do
        if reuse_port:
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = server.accept()
        accepted.close()  # the server closes first: its side of the connection is in TIME_WAIT
        client.recv(1)  # the client has seen the close
        client.close()
    with socket.socket() as plain, pytest.raises(OSError):
        plain.bind(("127.0.0.1", port))  # what the check did before: refused for about a minute
    held = reserve_port("127.0.0.1", port)
    try:
        assert held.getsockname()[1] == port
    finally:
        held.close()


def test_sigterm_to_the_server_alone_stops_every_worker(tmp_path: Path) -> None:
    """As `docker stop` does: the signal reaches the supervisor only, which stops the workers."""
    with serve_process("--engine", "deterministic", temp_dir=tmp_path) as (client, server):
        (shared,) = tmp_path.glob("plaudit-workers-*")  # made by serve for the workers
        workers = [int(pid) for pid in served_by_worker(client)]
        assert len(workers) == 2
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0

        def gone(pid: int) -> bool:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            return False

        wait_for(lambda: all(gone(pid) for pid in workers), "the workers to exit", limit_s=10)
        assert not shared.exists()  # serve removes the directory it made


def test_uvicorns_workers_stop_on_a_bad_setting_instead_of_restarting_forever() -> None:
    """Every worker would fail the same way: uvicorn's supervisor gives up on STARTUP_FAILURE."""
    env = {**os.environ, "PLAUDIT_WORKERS": "2", "PLAUDIT_ENGINE": "deterministic", "PLAUDIT_FEEDBACK_ENABLED": "false"}
    env.pop(MULTIPROC_DIR_ENV, None)  # what two workers need, missing
    done = subprocess.run(
        [sys.executable, "-m", "uvicorn", "--factory", "service.app:create_app", "--workers", "2",
         "--port", str(free_port())],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=90,  # before: restarts until killed
    )
    # uvicorn's parent itself exits 0 here; what matters is that it stopped, having said why
    message = "plaudit: workers=2 needs PROMETHEUS_MULTIPROC_DIR"
    # once per worker started, not once per restart
    assert 1 <= done.stderr.count(message) <= 2, done.stderr[-3000:]


def test_a_worker_that_keeps_dying_at_start_is_retried_after_a_growing_pause() -> None:
    assert restart_delay(0) == 0.0  # it had served a while: replaced at once
    assert [restart_delay(n) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]
    assert restart_delay(7) == restart_delay(50) == 30.0


def test_stopping_workers_get_the_request_deadline_and_a_margin_to_drain() -> None:
    supervisor = Supervisor(2, "127.0.0.1", 0, {}, request_timeout_s=90.0)
    try:
        assert supervisor.stop_timeout_s == 120.0  # a request accepted just before the stop may finish
    finally:
        supervisor._reservation.close()


def _exited(pid: int) -> bool:
    """Whether `pid` has exited: gone, or a zombie its new parent has not reaped yet (an
    orphan's parent is PID 1 or a subreaper, which need not reap promptly, or at all)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    except OSError:  # no /proc here
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False
    return stat.rpartition(")")[2].split()[0] == "Z"


def _port_free(port: int) -> bool:
    try:
        probe_port("127.0.0.1", port)  # SO_REUSEADDR, as a new server binds: TIME_WAIT is no server
    except OSError:
        return False
    return True


def test_workers_stop_when_the_supervisor_is_killed(tmp_path: Path) -> None:
    """SIGKILL gives the supervisor no chance to stop its workers: they must notice and stop
    themselves, or they go on serving as orphans and a new server cannot have the port."""
    with serve_process("--engine", "deterministic", temp_dir=tmp_path) as (client, server):
        port = int(client.base_url.port or 0)
        workers = [int(pid) for pid in served_by_worker(client)]
        assert len(workers) == 2
        try:
            server.kill()
            server.wait(timeout=30)
            wait_for(lambda: all(_exited(pid) for pid in workers), "the orphaned workers to exit", limit_s=20)
            wait_for(lambda: _port_free(port), "the port to be free again", limit_s=20)
        finally:
            # Whatever happened, leave no worker behind: the supervisor's process group holds
            # them (serve_process started it in a new session), even with the supervisor gone.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)
