"""The load generator against a real uvicorn on 127.0.0.1 serving the naive app."""

from __future__ import annotations

import argparse
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import uvicorn

from loadtest.cli import register_commands
from loadtest.data import ItemCycle, synthetic_items
from loadtest.generator import UNFINISHED, LoadConfig, run_load_sync
from loadtest.naive_server import create_naive_app
from loadtest.report import summarize

MAX_ITEMS = 8  # the served app's PLAUDIT_MAX_ITEMS_PER_REQUEST


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Run `app` on a real uvicorn in a thread, on a port the OS picked; yield its URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        for _ in range(1000):  # startup loads the deterministic engine: well under a second
            if server.started or not thread.is_alive():
                break
            time.sleep(0.01)
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def naive_app(**environ: str) -> Any:
    env = {"PLAUDIT_ENGINE": "deterministic", "PLAUDIT_MAX_ITEMS_PER_REQUEST": str(MAX_ITEMS)}
    env.update(environ)
    return create_naive_app(environ=env)


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with serve(naive_app()) as base_url:
        yield base_url


@pytest.fixture(scope="module")
def items() -> ItemCycle:
    return ItemCycle(synthetic_items(20))


def test_closed_loop_sends_exactly_the_requests_asked_for(url: str, items: ItemCycle) -> None:
    config = LoadConfig(url=url, concurrency=5, requests=37, items_per_request=3)
    result = run_load_sync(config, items)
    assert result.stopped_by == "requests"
    assert [r.index for r in result.records] == list(range(37))
    assert all(r.ok and r.n_items == 3 for r in result.records)
    report = summarize(result)
    assert (report.requests, report.ok, report.failed, report.items_ok) == (37, 37, 0, 111)
    assert report.errors == {}


def test_open_loop_at_a_rate_sends_every_request(url: str, items: ItemCycle) -> None:
    config = LoadConfig(url=url, concurrency=2, requests=4, items_per_request=1, rate=50.0)
    report = summarize(run_load_sync(config, items))
    assert (report.ok, report.failed, report.items_ok) == (4, 0, 4)


def test_refused_requests_are_counted_by_status(url: str, items: ItemCycle) -> None:
    # More items than the server accepts in one request: every request gets a 422.
    config = LoadConfig(url=url, concurrency=3, requests=10, items_per_request=MAX_ITEMS + 1)
    report = summarize(run_load_sync(config, items))
    assert (report.ok, report.failed, report.items_ok) == (0, 10, 0)
    assert report.errors == {"422": 10}


def test_engine_failures_are_counted_as_500s(items: ItemCycle) -> None:
    with serve(naive_app(PLAUDIT_ENGINE="failing")) as failing_url:
        config = LoadConfig(url=failing_url, concurrency=2, requests=6, items_per_request=2)
        report = summarize(run_load_sync(config, items))
    assert report.errors == {"500": 6}


def test_nothing_listening_gives_connect_errors(items: ItemCycle) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but not listening: connections are refused
        config = LoadConfig(url=f"http://127.0.0.1:{port}", concurrency=2, requests=5)
        report = summarize(run_load_sync(config, items))
    assert report.errors == {"connect_error": 5}


def test_duration_cap_stops_the_run_and_abandons_in_flight(
    items: ItemCycle, capsys: pytest.CaptureFixture[str]
) -> None:
    slow = naive_app(PLAUDIT_ENGINE_OPTIONS=json.dumps({"delay_s": 0.3}))
    with serve(slow) as slow_url:
        config = LoadConfig(url=slow_url, concurrency=2, requests=100, duration_s=1.0)
        result = run_load_sync(config, items)
        # Nothing answered before the cap: the CLI says so and fails.
        assert _cli(["loadtest", "--url", slow_url, "--concurrency", "2", "--duration-s", "0.1"]) == 1
    assert result.stopped_by == "duration"
    assert len(result.records) < 100
    # Each worker is always waiting on a request, so both are abandoned at the cap.
    assert [r.outcome for r in result.records].count(UNFINISHED) == 2
    assert all(r.ok for r in result.records if r.outcome != UNFINISHED)
    assert "no request was answered within --duration-s 0.1" in capsys.readouterr().err
    report = summarize(result)
    assert (report.unfinished, report.failed, report.errors) == (2, 0, {})
    assert report.ok == len(result.records) - 2


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="plaudit")
    register_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


def test_cli_reports_json_and_exits_zero(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["loadtest", "--url", url, "--concurrency", "4", "--requests", "12"]
    code = _cli(argv + ["--items-per-request", "2", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert (report["ok"], report["failed"], report["items_ok"]) == (12, 0, 24)


def test_cli_exits_one_when_requests_fail(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["loadtest", "--url", url, "--requests", "3", "--items-per-request", str(MAX_ITEMS + 1)]
    assert _cli(argv) == 1
    captured = capsys.readouterr()
    assert "3 ok" not in captured.out and "(0 ok, 3 failed)" in captured.out
    assert "3 of 3 requests failed (422: 3)" in captured.err


@pytest.mark.parametrize("endpoint", ["score", "rank", "compare"])
def test_every_endpoint_against_the_real_service(endpoint: str, items: ItemCycle) -> None:
    from service.app import create_app
    from service.settings import Settings

    with serve(create_app(Settings(engine="deterministic", port=0))) as service_url:
        config = LoadConfig(
            url=service_url, endpoint=endpoint, concurrency=3, requests=9, items_per_request=4
        )
        report = summarize(run_load_sync(config, items))
    n_items = 8 if endpoint == "compare" else 4  # a comparison scores two items
    assert (report.ok, report.failed, report.items_ok) == (9, 0, 9 * n_items)


def test_open_loop_latency_counts_from_when_a_request_was_due(items: ItemCycle) -> None:
    """One client, a server taking 0.3 s, requests due every 0.05 s: each request waits for
    the client before it can be sent. That wait is the server's doing and must show in the
    latency (else the open loop hides it: coordinated omission)."""
    slow = naive_app(PLAUDIT_ENGINE_OPTIONS=json.dumps({"delay_s": 0.3}))
    with serve(slow) as slow_url:
        config = LoadConfig(url=slow_url, concurrency=1, requests=3, items_per_request=1, rate=20.0)
        records = run_load_sync(config, items).records
    assert [r.ok for r in records] == [True, True, True]
    # Request 2 was due at 0.1 s and could be sent only after two 0.3 s answers: answered
    # at about 0.9 s, so at least 0.9 - 0.1 = 0.8 s late (0.3 s if timed from its send).
    assert records[2].latency_s >= 0.75


def test_load_processes_share_the_requests_and_time_one_window(url: str) -> None:
    from loadtest.generator import run_load_processes

    config = LoadConfig(url=url, concurrency=4, requests=40, items_per_request=2)
    result = run_load_processes(config, synthetic_items(20), processes=2)
    assert sorted(r.index for r in result.records) == list(range(40))
    assert all(r.ok for r in result.records)
    assert result.window is not None
    first, last = result.window
    # items/s divides by the whole window, from the first share's first send to the last answer.
    assert result.elapsed_s >= last - first > 0
    assert summarize(result).items_ok == 80
