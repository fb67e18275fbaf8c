"""Fixtures for the service tests: a real uvicorn server on 127.0.0.1 in a thread."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from model_store.engines.deterministic import DeterministicScorer
from service.app import create_app
from service.settings import Settings

STARTUP_LIMIT_S = 15.0


@dataclass
class LiveServer:
    base_url: str
    client: httpx.Client
    port: int
    server: uvicorn.Server

    @property
    def state(self) -> dict[str, Any]:
        """The app's lifespan state (holder, swapper, ...), for tests that break a part on purpose."""
        return self.server.lifespan.state

    def metric(self, sample_name: str, **labels: str) -> float:
        """Current value of one sample from /metrics (0.0 if it does not exist yet)."""
        text = self.client.get("/metrics").text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == sample_name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    return float(sample.value)
        return 0.0

    def wait_until(self, condition: Callable[[], bool], what: str, limit_s: float = 10.0) -> None:
        """Poll until `condition()` holds; fail with `what` if it never does."""
        give_up = time.monotonic() + limit_s
        while not condition():
            if time.monotonic() > give_up:
                pytest.fail(f"gave up waiting for {what}")
            time.sleep(0.01)

    def wait_ready(self) -> None:
        self.wait_until(lambda: self.client.get("/readyz").status_code == 200, "/readyz to return 200")


@contextmanager
def _live_server(settings: Settings, app: FastAPI | None = None) -> Iterator[LiveServer]:
    """Serve `app` (default: create_app(settings)) on a free port until the block ends."""
    config = uvicorn.Config(
        app if app is not None else create_app(settings),
        host="127.0.0.1",
        port=0,
        log_level="warning",
        lifespan="on",
        access_log=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-under-test", daemon=True)
    thread.start()
    give_up = time.monotonic() + STARTUP_LIMIT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > give_up:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    base_url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base_url, timeout=20.0) as client:
            yield LiveServer(base_url=base_url, client=client, port=port, server=server)
    finally:
        server.should_exit = True
        thread.join(STARTUP_LIMIT_S)


ServerFactory = Callable[..., AbstractContextManager[LiveServer]]


def hold_the_warmup(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """From now on every deterministic engine's warm-up (its model load) waits until the returned
    event is set, so a server started after this call stays "loading" for as long as the test
    needs (a warmup_delay_s only lasts so long, and on a loaded machine the test may take longer
    to send what it must send while loading). The servers run in this process, so patching the
    class reaches them. Set the event in a `finally`, before the server block ends: a server
    whose load still waits cannot stop cleanly."""
    release = threading.Event()
    real_warmup = DeterministicScorer.warmup

    def held_warmup(self: DeterministicScorer) -> None:
        assert release.wait(30), "the test never released the warm-up"
        real_warmup(self)

    monkeypatch.setattr(DeterministicScorer, "warmup", held_warmup)
    return release


@pytest.fixture(scope="session", autouse=True)
def _feedback_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Servers built without feedback_db keep their default feedback database in a temporary
    folder, not in ./plaudit-data of whoever runs the tests."""
    previous = os.environ.get("PLAUDIT_DATA_DIR")
    os.environ["PLAUDIT_DATA_DIR"] = str(tmp_path_factory.mktemp("plaudit-data"))
    yield
    if previous is None:
        os.environ.pop("PLAUDIT_DATA_DIR", None)
    else:
        os.environ["PLAUDIT_DATA_DIR"] = previous


@pytest.fixture
def live_server() -> ServerFactory:
    """`with live_server(engine="deterministic", ...) as srv:` -> a running server, ready or not.

    `app=` serves an app built by the test (from create_app) instead of a fresh one.
    """

    def factory(app: FastAPI | None = None, **settings: object) -> AbstractContextManager[LiveServer]:
        return _live_server(Settings(**settings), app)  # type: ignore[arg-type]

    return factory


@pytest.fixture(scope="module")
def deterministic_server() -> Iterator[LiveServer]:
    """One ready server on the deterministic engine, shared by read-only tests."""
    with _live_server(
        Settings(
            engine="deterministic", max_body_bytes=64 * 1024, max_items_per_request=8, max_chars_per_text=200
        )
    ) as srv:
        srv.wait_ready()
        yield srv


@pytest.fixture
def store_dir(trained_store: Path, tmp_path: Path) -> Path:
    """A private copy of the trained store: `tiny:1`, production alias on it."""
    copy = tmp_path / "store"
    shutil.copytree(trained_store, copy)
    return copy
