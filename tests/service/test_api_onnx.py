"""The API end to end over real HTTP, on a model that was really trained and exported to ONNX."""

from __future__ import annotations

import logging
import math
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from model_store.loading import load_scorer
from model_store.scoring import TextPair
from model_store.store import ModelStore
from tests.service.conftest import LiveServer

ITEMS = [
    {"prompt": "How do I reset my password?", "response": "Open Settings, choose Security, then Reset password."},
    {"prompt": "How do I reset my password?", "response": "Figure it out yourself."},
    {"prompt": "Suggest a name for a cat", "response": "Miso, Pepper or Biscuit are all friendly names."},
    {"prompt": "Explain recursion", "response": "A function that calls itself on a smaller input until a base case. " * 6},
    {"prompt": "", "response": "ok"},
]


@pytest.fixture(scope="module")
def onnx_server(trained_store: Path) -> LiveServer:
    from tests.service.conftest import _live_server
    from service.settings import Settings

    with _live_server(Settings(store_dir=trained_store, model="tiny", engine="onnx", max_wait_ms=2.0)) as srv:
        srv.wait_ready()
        yield srv


def _direct_scores(store: Path) -> np.ndarray:
    scorer = load_scorer(ModelStore(store).resolve("tiny"))
    return np.array([scorer.score([TextPair(i["prompt"], i["response"])])[0] for i in ITEMS])


def test_score_over_http_equals_one_at_a_time_in_process(onnx_server: LiveServer, trained_store: Path) -> None:
    r = onnx_server.client.post("/v1/score", json={"items": ITEMS})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == {"name": "tiny", "version": "1"}
    assert body["request_id"] == r.headers["x-request-id"]
    np.testing.assert_allclose(body["scores"], _direct_scores(trained_store), atol=1e-5, rtol=0)


def test_concurrent_single_item_requests_match_batched_scores(onnx_server: LiveServer, trained_store: Path) -> None:
    expected = _direct_scores(trained_store)

    def one(i: int) -> float:
        with httpx.Client(base_url=onnx_server.base_url, timeout=20) as c:
            resp = c.post("/v1/score", json={"items": [ITEMS[i % len(ITEMS)]]})
            assert resp.status_code == 200, resp.text
            return resp.json()["scores"][0]

    with ThreadPoolExecutor(max_workers=12) as pool:
        got = list(pool.map(one, range(36)))
    np.testing.assert_allclose(got, [expected[i % len(ITEMS)] for i in range(36)], atol=1e-5, rtol=0)


def test_compare_is_bradley_terry_of_the_two_scores(onnx_server: LiveServer, trained_store: Path) -> None:
    expected = _direct_scores(trained_store)
    r = onnx_server.client.post(
        "/v1/compare", json={"prompt": ITEMS[0]["prompt"], "response_a": ITEMS[0]["response"], "response_b": ITEMS[1]["response"]}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["score_a"] == pytest.approx(expected[0], abs=1e-5)
    assert body["score_b"] == pytest.approx(expected[1], abs=1e-5)
    assert body["p_a_preferred"] == pytest.approx(1 / (1 + math.exp(-(body["score_a"] - body["score_b"]))), abs=1e-9)


def test_rank_orders_by_score(onnx_server: LiveServer) -> None:
    responses = [i["response"] for i in ITEMS[:4]]
    r = onnx_server.client.post("/v1/rank", json={"prompt": "How do I reset my password?", "responses": responses, "top_n": 3})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert len(results) == 3
    scores = [x["score"] for x in results]
    assert scores == sorted(scores, reverse=True)
    assert len({x["index"] for x in results}) == 3 and all(0 <= x["index"] < 4 for x in results)


def test_models_endpoint_reports_the_stored_version(onnx_server: LiveServer) -> None:
    r = onnx_server.client.get("/v1/models")
    assert r.status_code == 200
    text = r.text
    assert '"tiny"' in text and "production" in text and '"onnx"' in text


def test_models_endpoint_reports_the_engine_layout_chosen_for_the_served_precision(
    onnx_server: LiveServer, trained_store: Path
) -> None:
    from service.settings import Settings

    body = onnx_server.client.get("/v1/models").json()
    stored_default = ModelStore(trained_store).resolve("tiny").metadata["default_precision"]
    assert body["precision"] == stored_default
    layout = Settings().engine_layout(stored_default)
    assert (body["engine_workers"], body["threads_per_call"], body["max_batch_items"]) == (
        layout.workers,
        layout.threads_per_call,
        layout.max_batch_items,
    )
    assert body["lone_call_threads"] == layout.lone_call_threads


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_loading_gives_the_onnx_sessions_the_layouts_thread_counts(trained_store: Path, precision: str) -> None:
    from service.model_loading import batch_limits, load_model
    from service.settings import Settings, available_cores

    cores = available_cores()
    scorer, info = load_model(Settings(store_dir=trained_store, model="tiny", precision=precision))
    options = scorer._session.get_session_options()  # type: ignore[attr-defined]
    lone_threads = scorer.lone_call_threads  # type: ignore[attr-defined]
    scorer.close()
    assert (info.precision, info.engine_workers, info.threads_per_call) == (precision, cores, 1)
    assert info.max_batch_items == 2 and batch_limits(Settings(), info).max_batch_items == 2
    assert options.intra_op_num_threads == 1  # the ONNX session really got the layout's thread count
    # and in fp32 a lone item gets a session on every core, where there is more than one
    assert info.lone_call_threads == lone_threads == (cores if cores > 1 and precision == "fp32" else None)
    scorer, info = load_model(
        Settings(store_dir=trained_store, model="tiny", precision=precision, engine_workers=1)
    )
    lone_threads = scorer.lone_call_threads  # type: ignore[attr-defined]
    scorer.close()
    assert (info.engine_workers, info.threads_per_call, info.lone_call_threads, lone_threads) == (
        1, cores, None, None
    )


@pytest.mark.parametrize(
    ("engine", "device", "precision", "kernel", "noted"),
    [
        ("onnx", "cpu", "int8", "u8u8", True),  # x86 without VNNI: int8 about as fast as fp32
        ("onnx", "cpu", "int8", "u8s8", False),  # VNNI/AMX: int8 is the fast engine
        ("onnx", "cpu", "fp32", "u8u8", False),
        ("torch", "cuda", "bf16", "u8u8", False),
    ],
)
def test_precision_note_only_where_int8_runs_the_slow_exact_kernel(
    engine: str, device: str, precision: str, kernel: str, noted: bool
) -> None:
    from service.model import ModelInfo
    from service.model_loading import precision_note

    info = ModelInfo(name="m", version="1", engine=engine, device=device, precision=precision, max_length=64)
    probed: list[str] = []
    note = precision_note(info, lambda: probed.append(kernel) or kernel)
    assert probed == ([kernel] if (engine, device, precision) == ("onnx", "cpu", "int8") else [])
    assert (note is not None) == noted
    if noted:
        assert "PLAUDIT_PRECISION=fp32" in note and "u8 x u8" in note


def test_startup_logs_the_precision_note_for_this_cpus_int8_kernel(
    trained_store: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from model_store.int8_products import int8_kernel
    from service.model_loading import load_model, log_precision_note
    from service.settings import Settings

    scorer, info = load_model(Settings(store_dir=trained_store, model="tiny", precision="int8"))
    scorer.close()
    with caplog.at_level("INFO", logger="plaudit.service"):
        log_precision_note(info)
    noted = any("u8 x u8" in r.getMessage() for r in caplog.records)
    assert noted == (int8_kernel() == "u8u8")  # this machine's own probe decides


def test_a_version_named_by_number_loads_though_its_aliases_file_is_damaged(
    linear_store: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # It needs no alias; the damaged file failed the load after the scorer was made.
    from service.model_loading import load_model
    from service.settings import Settings

    store = tmp_path / "store"
    shutil.copytree(linear_store, store)
    (store / "lin" / "aliases.json").write_text("{not json", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="plaudit.service"):
        scorer, info = load_model(Settings(store_dir=store, model="lin:1"))
    try:
        assert (info.name, info.version, info.aliases) == ("lin", "1", ())
        assert any("could not read the aliases of lin" in r.getMessage() for r in caplog.records)
    finally:
        scorer.close()


@pytest.mark.parametrize("kind", ["missing", "a file"])
def test_a_store_that_is_not_a_folder_is_named_for_what_it_is(tmp_path: Path, kind: str) -> None:
    from service.model_loading import ModelLoadError, resolve_stored_model
    from service.settings import Settings

    store = tmp_path / "store"
    if kind == "a file":
        store.write_text("not a store")
    with pytest.raises(ModelLoadError) as refused:
        resolve_stored_model(Settings(store_dir=store, model="m"))
    what = "is a file, not a store folder" if kind == "a file" else "does not exist"
    assert str(refused.value).startswith(f"model store {store} {what}; point PLAUDIT_STORE_DIR")
