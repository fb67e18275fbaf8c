"""Model lifecycle at run time: promote and reload over real HTTP, with real stored models.

Every server here serves `tiny` from a copy of the session's trained store, where a second
version is registered from version 1's own files (plus, for the refusal tests, a defect).
"""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import onnx
import pytest
from onnx import TensorProto, helper

from model_store.engines.deterministic import DeterministicScorer
from model_store.scoring import TextPair
from model_store.store import METADATA_DIGEST_FILE, METADATA_FILE, RESERVED_METADATA_KEYS, ModelStore
from plaudit.cli import main as plaudit_main
from service import lifecycle
from service.batching import Batcher
from service.errors import NotReady
from service.lifecycle import retire
from service.metrics import ServiceMetrics
from service.model import LoadedModel, ModelInfo
from service.settings import Settings
from tests.service.conftest import LiveServer, ServerFactory

ADMIN_KEY = "admin-key-0123456789abcdef"
SCORE_KEY = "score-key-0123456789abcdef"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
LOAD_WORKERS = 32  # the issue asks for a swap under a load at concurrency 32
MAX_REQUESTS_PER_WORKER = 400  # a bound, so a stuck swap cannot make the load run forever


# -- stores (store_dir, a private copy of the trained store: tests/service/conftest.py) ----------


def register_copy_of_v1(store_dir: Path, staging: Path, change: Callable[[Path], None] | None = None) -> int:
    """Register tiny:1's files (optionally changed by `change`) as a new version of tiny."""
    store = ModelStore(store_dir)
    v1 = store.get("tiny", 1)
    shutil.copytree(v1.path, staging, ignore=shutil.ignore_patterns(METADATA_FILE, METADATA_DIGEST_FILE))
    for path in staging.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)  # stored files are read-only
    if change is not None:
        change(staging)
    metadata = {k: v for k, v in v1.metadata.items() if k not in RESERVED_METADATA_KEYS}
    return store.register("tiny", staging, metadata).version


def flip_one_byte(path: Path) -> None:
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def replace_with_nan_model(staging: Path) -> None:
    """Well-formed ONNX graphs with the scorer's input that return NaN for every row."""
    ids = helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "tokens"])
    out = helper.make_tensor_value_info("reward", TensorProto.FLOAT, ["batch"])
    nan = helper.make_tensor("nan", TensorProto.FLOAT, [], [float("nan")])
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["input_ids"], ["ids_f"], to=TensorProto.FLOAT),
            helper.make_node("ReduceSum", ["ids_f", "axes"], ["total"], keepdims=0),
            helper.make_node("Mul", ["total", "nan"], ["reward"]),
        ],
        "nan_reward",
        [ids],
        [out],
        initializer=[nan, axes],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    # Every ONNX file: the version may serve its int8 file by default (when it passed the gate).
    for path in staging.glob("*.onnx"):
        onnx.save(model, path)


def drop_tokenizer(staging: Path) -> None:
    shutil.rmtree(staging / "tokenizer")


def corrupt_onnx(staging: Path) -> None:
    """Not a protobuf: ONNX Runtime refuses it with its own error type and text."""
    for name in ("model.onnx", "model.int8.onnx"):
        if (staging / name).exists():
            (staging / name).write_bytes(b"this is not an ONNX model\n")


def aliases(store_dir: Path) -> dict[str, int]:
    return ModelStore(store_dir).aliases("tiny")


# -- serving ---------------------------------------------------------------------------------


@pytest.fixture
def serve_tiny(live_server: ServerFactory, store_dir: Path) -> Callable[[], Any]:
    """`with serve_tiny() as srv:` -> a ready server on tiny's production alias, keys on."""

    def start() -> Any:
        return live_server(
            store_dir=store_dir,
            model="tiny",
            engine="onnx",
            intra_op_threads=1,
            feedback_enabled=False,
            api_keys={ADMIN_KEY: ["score", "admin"], SCORE_KEY: ["score"]},
        )

    return start


def served_version(srv: LiveServer) -> str:
    r = srv.client.post("/v1/score", json={"items": [{"prompt": "hi", "response": "hello"}]}, headers=ADMIN)
    assert r.status_code == 200, r.text
    version: str = r.json()["model"]["version"]
    return version


def reload(srv: LiveServer) -> httpx.Response:
    return srv.client.post("/v1/models/reload", headers=ADMIN)


def promote(srv: LiveServer, version: int, **extra: Any) -> httpx.Response:
    return srv.client.post("/v1/models/tiny/promote", json={"version": version, **extra}, headers=ADMIN)


def error_of(r: httpx.Response) -> tuple[int, str, str]:
    error = r.json()["error"]
    return r.status_code, error["code"], error["message"]


# -- hot swap under load -----------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    started: float
    ended: float
    status: int
    version: str | None
    problem: str = ""


def run_load(base_url: str, samples: list[Sample], stop: threading.Event, worker: int) -> None:
    with httpx.Client(base_url=base_url, timeout=30.0, headers=ADMIN) as client:
        for n in range(MAX_REQUESTS_PER_WORKER):
            if stop.is_set():
                return
            body = {"items": [{"prompt": f"question {worker}", "response": f"answer number {n} " * (1 + n % 5)}]}
            started = time.monotonic()
            try:
                r = client.post("/v1/score", json=body)
            except httpx.HTTPError as exc:
                samples.append(Sample(started, time.monotonic(), -1, None, repr(exc)))
                continue
            ok = r.status_code == 200
            version = r.json()["model"]["version"] if ok else None
            samples.append(Sample(started, time.monotonic(), r.status_code, version, "" if ok else r.text))


def test_hot_swap_under_load_fails_no_request_and_switches_version_once(
    serve_tiny: Callable[[], Any], store_dir: Path, tmp_path: Path
) -> None:
    assert register_copy_of_v1(store_dir, tmp_path / "v2") == 2
    samples: list[Sample] = []  # list.append is atomic; the workers share it
    stop = threading.Event()
    with serve_tiny() as srv:
        srv.wait_ready()
        workers = [
            threading.Thread(target=run_load, args=(srv.base_url, samples, stop, i), daemon=True)
            for i in range(LOAD_WORKERS)
        ]
        for thread in workers:
            thread.start()
        try:
            srv.wait_until(lambda: len(samples) >= 3 * LOAD_WORKERS, "the load to get going", limit_s=30)
            swap_started = time.monotonic()
            swapped = promote(srv, 2)
            swap_ended = time.monotonic()
            srv.wait_until(
                lambda: sum(s.started > swap_ended for s in samples) >= 3 * LOAD_WORKERS,
                "load after the swap",
                limit_s=30,
            )
        finally:
            stop.set()
            for thread in workers:
                thread.join(30)
        assert served_version(srv) == "2"

    assert swapped.status_code == 200, swapped.text
    body = swapped.json()
    assert (body["old"], body["new"], body["swapped"]) == (
        {"name": "tiny", "version": "1"},
        {"name": "tiny", "version": "2"},
        True,
    )
    assert body["promoted"] == {"name": "tiny", "version": "2", "alias": "production"}
    assert aliases(store_dir) == {"production": 2}

    failures = [s for s in samples if s.status != 200]
    assert failures == [], f"{len(failures)} of {len(samples)} requests failed during the swap"
    before = {s.version for s in samples if s.ended < swap_started}
    after = {s.version for s in samples if s.started > swap_ended}
    assert before == {"1"} and after == {"2"}
    # Monotonic: once any response named v2, no request started later was answered by v1.
    first_v2_answer = min(s.ended for s in samples if s.version == "2")
    late_v1 = [s for s in samples if s.version == "1" and s.started > first_v2_answer]
    assert late_v1 == []


# -- refusals --------------------------------------------------------------------------------


def test_a_corrupt_version_is_refused_and_the_old_one_keeps_serving(
    serve_tiny: Callable[[], Any], store_dir: Path, tmp_path: Path
) -> None:
    register_copy_of_v1(store_dir, tmp_path / "v2")
    version_dir = store_dir / "tiny" / "versions" / "2"
    flip_one_byte(version_dir / "model.onnx")
    with serve_tiny() as srv:
        srv.wait_ready()

        status, code, message = error_of(promote(srv, 2))
        assert (status, code) == (409, "checksum_failed")
        assert "tiny:2 failed verification: model.onnx: expected sha256" in message
        assert aliases(store_dir) == {"production": 1}
        assert served_version(srv) == "1"

        # The CLI path: the alias is moved while the files are intact, then they are damaged.
        version_dir.joinpath("model.onnx").chmod(0o444)
        flip_one_byte(version_dir / "model.onnx")  # flipped back: intact again
        assert plaudit_main(["models", "promote", "tiny:2", "--store", str(store_dir)]) == 0
        flip_one_byte(version_dir / "model.onnx")
        status, code, message = error_of(reload(srv))
        assert (status, code) == (409, "checksum_failed")
        assert message.startswith("refused tiny:2: tiny:2 failed verification: model.onnx: expected sha256")
        assert message.endswith("tiny:1 keeps serving")
        assert served_version(srv) == "1"
        assert srv.client.get("/readyz").json()["model"] == {"name": "tiny", "version": "1"}


@pytest.mark.parametrize(
    ("defect", "failure"),
    [
        (replace_with_nan_model, "engine returned a non-finite score"),
        (drop_tokenizer, "tokenizer/tokenizer.json not found"),
        # The engine's own text names internals and paths: the caller gets its type only.
        (corrupt_onnx, "an unexpected InvalidProtobuf; see the server log"),
    ],
    ids=["warm-up-returns-nan", "tokenizer-missing", "onnx-corrupt"],
)
def test_a_version_that_fails_to_load_or_warm_up_is_refused_and_the_alias_restored(
    serve_tiny: Callable[[], Any],
    store_dir: Path,
    tmp_path: Path,
    defect: Callable[[Path], None],
    failure: str,
) -> None:
    register_copy_of_v1(store_dir, tmp_path / "v2", defect)
    with serve_tiny() as srv:
        srv.wait_ready()
        status, code, message = error_of(promote(srv, 2))
        assert (status, code) == (422, "model_load_failed")
        assert message.startswith("refused tiny:2: it could not be loaded and warmed up: ")
        assert failure in message
        assert "ONNXRuntimeError" not in message and "Protobuf parsing" not in message
        assert message.endswith("tiny:1 keeps serving; tiny@production is back at version 1")
        assert aliases(store_dir) == {"production": 1}
        assert served_version(srv) == "1"
        # The refusal released the lock and left nothing half-done: a reload finds nothing to do.
        again = reload(srv)
        assert again.status_code == 200
        assert (again.json()["old"], again.json()["swapped"]) == ({"name": "tiny", "version": "1"}, False)


# -- the CLI path, one swap at a time, auth ------------------------------------------------------


def test_cli_promote_then_reload_serves_the_new_version(
    serve_tiny: Callable[[], Any], store_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    register_copy_of_v1(store_dir, tmp_path / "v2")
    with serve_tiny() as srv:
        srv.wait_ready()
        assert plaudit_main(["models", "promote", "tiny:2", "--store", str(store_dir)]) == 0
        assert "tiny@production -> tiny:2 (was tiny:1)" in capsys.readouterr().out
        assert served_version(srv) == "1"  # the store moved; the service has not reloaded yet
        models = srv.client.get("/v1/models", headers=ADMIN).json()
        assert (models["model"]["version"], models["aliases"]) == ("1", [])  # production left it

        r = reload(srv)
        assert r.status_code == 200, r.text
        assert (r.json()["old"], r.json()["new"], r.json()["swapped"]) == (
            {"name": "tiny", "version": "1"},
            {"name": "tiny", "version": "2"},
            True,
        )
        assert served_version(srv) == "2"
        models = srv.client.get("/v1/models", headers=ADMIN).json()
        assert (models["model"]["version"], models["aliases"]) == ("2", ["production"])
        assert srv.metric("plaudit_model_info", name="tiny", version="2") == 1.0
        assert srv.metric("plaudit_model_info", name="tiny", version="1") == 0.0

        unchanged = reload(srv)
        assert (unchanged.json()["old"], unchanged.json()["new"], unchanged.json()["swapped"]) == (
            {"name": "tiny", "version": "2"},
            {"name": "tiny", "version": "2"},
            False,
        )

        assert plaudit_main(["models", "rollback", "tiny", "--store", str(store_dir)]) == 0
        models = srv.client.get("/v1/models", headers=ADMIN).json()
        assert (models["model"]["version"], models["aliases"]) == ("2", [])  # still served, no longer production


def test_a_second_swap_while_one_runs_is_refused(
    serve_tiny: Callable[[], Any], store_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    register_copy_of_v1(store_dir, tmp_path / "v2")
    entered, release = threading.Event(), threading.Event()
    real_load_model = lifecycle.load_model

    def gated_load_model(settings: Settings) -> Any:
        # Holds the first swap inside its load (a worker thread), so the second one meets it.
        entered.set()
        assert release.wait(30)
        return real_load_model(settings)

    with serve_tiny() as srv:
        srv.wait_ready()
        ModelStore(store_dir).promote("tiny", 2)
        monkeypatch.setattr(lifecycle, "load_model", gated_load_model)
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(reload, srv)
            try:
                assert entered.wait(10)
                for second in (reload(srv), promote(srv, 1)):
                    assert error_of(second) == (
                        409,
                        "reload_in_progress",
                        "a reload is already in progress; retry when it has finished",
                    )
                assert served_version(srv) == "1"
            finally:
                release.set()
            assert first.result().status_code == 200
        assert served_version(srv) == "2"


def test_admin_routes_need_a_key_with_the_admin_scope(serve_tiny: Callable[[], Any]) -> None:
    with serve_tiny() as srv:
        srv.wait_ready()
        for path, body in (("/v1/models/reload", None), ("/v1/models/tiny/promote", {"version": 1})):
            missing = srv.client.post(path, json=body)
            assert (missing.status_code, missing.json()["error"]["code"]) == (401, "unauthorized")
            wrong = srv.client.post(path, json=body, headers={"X-API-Key": "not-a-key-0123456789abc"})
            assert wrong.status_code == 401
            scoring_only = srv.client.post(path, json=body, headers={"Authorization": f"Bearer {SCORE_KEY}"})
            assert (scoring_only.status_code, scoring_only.json()["error"]["code"]) == (403, "forbidden")
            assert "'admin' scope" in scoring_only.json()["error"]["message"]


def test_promote_names_an_unknown_version_and_a_test_engine_has_no_store(
    serve_tiny: Callable[[], Any], live_server: ServerFactory, store_dir: Path
) -> None:
    with serve_tiny() as srv:
        srv.wait_ready()
        status, code, message = error_of(promote(srv, 7))
        assert (status, code) == (404, "model_not_found")
        assert "model 'tiny' has no version 7; versions: 1" in message
        status, code, message = error_of(promote(srv, 1, alias="Bad Alias"))
        assert (status, code) == (422, "invalid_request")
        assert "invalid alias 'Bad Alias'" in message
        for not_a_version in (1.0, True, "one", "-1"):  # true was taken as version 1
            status, code, message = error_of(promote(srv, not_a_version))
            assert (status, code) == (422, "invalid_request") and message.startswith("version: "), not_a_version
        # "1" is how every answer writes a version: taken as it is given back.
        assert promote(srv, "1", alias="candidate").json()["promoted"]["version"] == "1"
        # An alias the service does not follow: nothing is swapped, and the answer says what moved.
        moved = promote(srv, 1, alias="candidate")
        assert moved.status_code == 200, moved.text
        assert moved.json()["swapped"] is False
        assert moved.json()["promoted"] == {"name": "tiny", "version": "1", "alias": "candidate"}
        assert srv.client.post("/v1/models/reload", headers=ADMIN).json()["promoted"] is None
        assert srv.client.post("/v1/models/reload", json={}, headers=ADMIN).status_code == 200
        # A body naming what to serve was silently ignored; reload takes none.
        status, code, message = error_of(srv.client.post("/v1/models/reload", json={"model": "tiny:2"}, headers=ADMIN))
        assert (status, code) == (422, "invalid_request")
        assert message.startswith("body: POST /v1/models/reload takes no body") and "promote" in message
    assert aliases(store_dir) == {"production": 1, "candidate": 1}

    with live_server(engine="deterministic", feedback_enabled=False) as srv:
        srv.wait_ready()
        status, code, message = error_of(srv.client.post("/v1/models/tiny/promote", json={"version": 1}))
        assert (status, code) == (409, "no_model_store")
        unchanged = srv.client.post("/v1/models/reload").json()
        assert unchanged["swapped"] is False and unchanged["old"] == unchanged["new"]


# -- retiring the old model (no HTTP) ------------------------------------------------------------


def test_a_request_that_took_the_old_model_finishes_on_it_before_it_is_retired() -> None:
    """The race a swap must survive: a request holds the model but has not reached its batcher yet."""

    async def main() -> None:
        scorer = DeterministicScorer(version="1", delay_s=0.05)
        batcher = Batcher(scorer, Settings(engine="deterministic"), ServiceMetrics())
        batcher.start()
        info = ModelInfo(name="m", version="1", engine="deterministic", device="cpu", precision="fp32", max_length=512)
        old = LoadedModel(info=info, scorer=scorer, batcher=batcher)
        with old.requests.hold():
            retiring = asyncio.create_task(retire(old, timeout_s=30))
            for _ in range(20):
                await asyncio.sleep(0)
            assert not retiring.done() and batcher.accepting
            scores = await old.batcher.submit([TextPair("p", "late but admitted")])
        assert scores.shape == (1,)
        assert await retiring is True
        assert not batcher.alive
        with pytest.raises(NotReady):
            await batcher.submit([TextPair("p", "after retirement")])

    asyncio.run(main())


def test_retire_answers_stragglers_503_after_its_timeout() -> None:
    async def main() -> None:
        scorer = DeterministicScorer(delay_s=0.0)
        batcher = Batcher(scorer, Settings(engine="deterministic"), ServiceMetrics())
        batcher.start()
        info = ModelInfo(name="m", version="1", engine="deterministic", device="cpu", precision="fp32", max_length=512)
        old = LoadedModel(info=info, scorer=scorer, batcher=batcher)
        with old.requests.hold():  # a request that never gets round to submitting
            assert await retire(old, timeout_s=0.01) is False
            with pytest.raises(NotReady, match="not running"):
                await old.batcher.submit([TextPair("p", "too late")])

    asyncio.run(main())

