"""Following the store: a moved alias is swapped in without a reload request; a refused
version is tried once. Real stored models, served over real HTTP."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from model_store.store import ModelStore
from service.model_watch import follows_store
from service.settings import Settings
from tests.service.conftest import ServerFactory
from tests.service.test_lifecycle import register_copy_of_v1, replace_with_nan_model, served_version

POLL_S = 0.1


def test_which_services_follow_the_store(tmp_path: Path) -> None:
    assert not follows_store(Settings(store_dir=tmp_path, model="tiny"))  # one worker: off unless set
    assert follows_store(Settings(store_dir=tmp_path, model="tiny", model_poll_s=2))
    assert follows_store(Settings(store_dir=tmp_path, model="tiny@candidate", model_poll_s=2))
    assert not follows_store(Settings(store_dir=tmp_path, model="tiny:3", model_poll_s=2))  # cannot move
    assert not follows_store(Settings(engine="deterministic", model_poll_s=2))  # serves no stored model


def test_a_moved_alias_is_served_without_a_reload_and_a_refused_version_is_tried_once(
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
