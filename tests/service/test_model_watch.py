"""Following the store: a moved alias is swapped in without a reload request; a refused
version is tried again only after a pause; a model whose batcher died is loaded afresh.
Real stored models, served over real HTTP."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from model_store.store import ModelStore
from service import model_watch
from service.model_watch import follows_store
from service.settings import Settings
from tests.service.conftest import LiveServer, ServerFactory
from tests.service.test_lifecycle import (
    flip_one_byte,
    register_copy_of_v1,
    reload,
    replace_with_nan_model,
    served_version,
)

POLL_S = 0.1


def test_which_services_follow_the_store(tmp_path: Path) -> None:
    assert not follows_store(Settings(store_dir=tmp_path, model="tiny"))  # one worker: off unless set
    assert follows_store(Settings(store_dir=tmp_path, model="tiny", model_poll_s=2))
    assert follows_store(Settings(store_dir=tmp_path, model="tiny@candidate", model_poll_s=2))
    assert not follows_store(Settings(store_dir=tmp_path, model="tiny:3", model_poll_s=2))  # cannot move
    assert not follows_store(Settings(engine="deterministic", model_poll_s=2))  # serves no stored model


def test_a_moved_alias_is_served_without_a_reload_and_a_refused_version_is_not_retried_at_every_check(
    live_server: ServerFactory, store_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="plaudit.model_watch")
    good = register_copy_of_v1(store_dir, tmp_path / "v2")
    bad = register_copy_of_v1(store_dir, tmp_path / "v3", replace_with_nan_model)
    store = ModelStore(store_dir)
    with live_server(
        store_dir=store_dir, model="tiny", engine="onnx", intra_op_threads=1, feedback_enabled=False, model_poll_s=POLL_S
    ) as srv:
        srv.wait_ready()
        assert served_version(srv) == "1"

        store.promote("tiny", good, "production")  # what `plaudit models promote` does
        srv.wait_until(lambda: served_version(srv) == str(good), "the service to follow the alias to version 2")

        store.promote("tiny", bad, "production")
        srv.wait_until(
            lambda: any("did not swap to tiny:3" in r.getMessage() for r in caplog.records),
            "the refusal of version 3",
        )
        time.sleep(10 * POLL_S)  # ten more checks, each of which sees the alias on version 3
        refusals = [r for r in caplog.records if "did not swap to tiny:3" in r.getMessage()]
        assert len(refusals) == 1
        assert served_version(srv) == str(good)  # the old version kept serving

        store.promote("tiny", 1, "production")  # a rollback is followed like any move
        srv.wait_until(lambda: served_version(srv) == "1", "the service to follow the rollback")


def test_a_refused_version_is_tried_again_after_a_pause_and_served_once_it_loads(
    live_server: ServerFactory,
    store_dir: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A passing cause (here a damaged file, mended later) must not leave a worker behind for good."""
    monkeypatch.setattr(model_watch, "FIRST_RETRY_S", 0.5)
    caplog.set_level(logging.INFO, logger="plaudit.model_watch")
    v2 = register_copy_of_v1(store_dir, tmp_path / "v2")
    ModelStore(store_dir).promote("tiny", v2, "production")
    onnx_file = ModelStore(store_dir).get("tiny", v2).path / "model.onnx"
    flip_one_byte(onnx_file)  # now fails verification; the first load fails
    with live_server(
        store_dir=store_dir, model="tiny", engine="onnx", intra_op_threads=1, feedback_enabled=False, model_poll_s=POLL_S
    ) as srv:
        srv.wait_until(
            lambda: any("did not swap to tiny:2" in r.getMessage() for r in caplog.records),
            "the follower's first refusal of version 2",
        )
        assert srv.client.get("/readyz").status_code == 503
        flip_one_byte(onnx_file)  # mended; the alias never moved
        srv.wait_ready()
        assert served_version(srv) == str(v2)
        refusals = [r.getMessage() for r in caplog.records if "did not swap to tiny:2" in r.getMessage()]
        # Checks ran every 0.1 s, but a refused version waits 0.5 s, then 1 s, before its next try.
        assert 1 <= len(refusals) <= 3, refusals
        assert refusals[0].endswith("trying again in 0.5 s unless the alias moves")
        assert all(r.endswith("trying again in 1 s unless the alias moves") for r in refusals[1:2])


def kill_the_batcher(srv: LiveServer) -> None:
    """What a bug in the collector does: its task ends, and the batcher is no longer alive."""
    collector = srv.state["holder"].current.batcher._collector
    collector.get_loop().call_soon_threadsafe(collector.cancel)


def test_a_dead_batcher_fails_liveness_and_a_reload_loads_the_same_version_afresh(
    live_server: ServerFactory, store_dir: Path
) -> None:
    with live_server(store_dir=store_dir, model="tiny", engine="onnx", intra_op_threads=1, feedback_enabled=False) as srv:
        srv.wait_ready()
        assert srv.client.get("/healthz").status_code == 200
        kill_the_batcher(srv)
        srv.wait_until(lambda: srv.client.get("/healthz").status_code == 503, "liveness to fail")
        error = srv.client.get("/healthz").json()["error"]
        assert error["code"] == "not_ready" and "batcher stopped unexpectedly" in error["message"]
        assert srv.client.get("/readyz").status_code == 503
        scored = srv.client.post("/v1/score", json={"items": [{"prompt": "hi", "response": "hello"}]})
        assert scored.status_code == 503

        outcome = reload(srv)
        assert outcome.status_code == 200, outcome.text
        assert outcome.json()["swapped"] is True
        assert outcome.json()["old"] == outcome.json()["new"] == {"name": "tiny", "version": "1"}
        assert srv.client.get("/healthz").status_code == 200
        assert served_version(srv) == "1"


def test_a_following_service_heals_a_dead_batcher_by_itself(
    live_server: ServerFactory, store_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="plaudit.model_watch")
    with live_server(
        store_dir=store_dir, model="tiny", engine="onnx", intra_op_threads=1, feedback_enabled=False, model_poll_s=POLL_S
    ) as srv:
        srv.wait_ready()
        first = srv.state["holder"].current
        kill_the_batcher(srv)
        srv.wait_until(lambda: srv.state["holder"].current is not first, "the follower to load tiny:1 afresh")
        srv.wait_ready()
        assert served_version(srv) == "1"
        assert any("the batcher of tiny:1 has died" in r.getMessage() for r in caplog.records)
