from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from loadtest.naive_server import NaiveConfig, NaiveConfigError, create_naive_app, load_configured_scorer
from model_store.engines.deterministic import DeterministicScorer
from model_store.scoring import TextPair

ITEMS = [
    {"prompt": "How do I boil an egg?", "response": "Sure, here is how: simmer it for nine minutes."},
    {"prompt": "How do I boil an egg?", "response": "No."},
]


def test_scores_match_the_engine_and_shape_matches_the_service() -> None:
    app = create_naive_app(engine="deterministic", environ={})
    with TestClient(app) as client:
        assert client.get("/readyz").status_code == 200
        response = client.post("/v1/score", json={"items": ITEMS})
    assert response.status_code == 200
    body = response.json()
    expected = DeterministicScorer().score([TextPair(**it) for it in ITEMS])
    assert body["scores"] == pytest.approx([float(s) for s in expected])
    assert body["model"] == {"name": "deterministic", "version": "0"}
    assert isinstance(body["request_id"], str) and body["request_id"]


def test_empty_and_oversized_requests_are_refused() -> None:
    environ = {"PLAUDIT_ENGINE": "deterministic", "PLAUDIT_MAX_ITEMS_PER_REQUEST": "1"}
    app = create_naive_app(environ=environ)
    with TestClient(app) as client:
        assert client.post("/v1/score", json={"items": []}).status_code == 422
        too_many = client.post("/v1/score", json={"items": ITEMS})
        assert too_many.status_code == 422
        assert "PLAUDIT_MAX_ITEMS_PER_REQUEST" in too_many.json()["detail"]
        assert client.post("/v1/score", json={"items": ITEMS[:1]}).status_code == 200


def test_engine_failure_is_a_500_without_details() -> None:
    with TestClient(create_naive_app(engine="failing", environ={})) as client:
        response = client.post("/v1/score", json={"items": ITEMS})
    assert response.status_code == 500
    assert response.json() == {"detail": "scoring failed"}


def test_engine_options_reach_the_test_engine() -> None:
    app = create_naive_app(engine="deterministic", engine_options={"name": "slow-one"}, environ={})
    with TestClient(app) as client:
        body = client.post("/v1/score", json={"items": ITEMS[:1]}).json()
    assert body["model"]["name"] == "slow-one"


def test_arguments_override_the_environment_and_every_other_setting_comes_from_it() -> None:
    environ = {
        "PLAUDIT_ENGINE": "onnx",
        "PLAUDIT_MODEL": "rm@production",
        "PLAUDIT_INTRA_OP_SPINNING": "true",
        "PLAUDIT_NAIVE_ONNX_OPTIONS": "plaudit",
        "PLAUDIT_MAX_ITEMS_PER_REQUEST": "7",
    }
    config = create_naive_app(engine="deterministic", store_dir="/models", environ=environ).state.config
    assert (config.engine, config.store_dir, config.model) == ("deterministic", "/models", "rm@production")
    assert config.intra_op_spinning and config.onnx_options == "plaudit" and config.max_items_per_request == 7


def test_model_engine_without_store_fails_at_startup_naming_the_variables() -> None:
    app = create_naive_app(engine="onnx", environ={})
    with pytest.raises(NaiveConfigError, match="PLAUDIT_STORE_DIR and PLAUDIT_MODEL"):
        with TestClient(app):
            pass


def test_config_from_env() -> None:
    config = NaiveConfig.from_env(
        {
            "PLAUDIT_STORE_DIR": "/models",
            "PLAUDIT_MODEL": "rm@production",
            "PLAUDIT_ENGINE": "ONNX",
            "PLAUDIT_PRECISION": "int8",
            "PLAUDIT_INTRA_OP_THREADS": "2",
            "PLAUDIT_ENGINE_OPTIONS": '{"delay_s": 0.1}',
        }
    )
    assert (config.store_dir, config.model, config.engine, config.precision) == (
        "/models", "rm@production", "onnx", "int8"
    )
    assert config.intra_op_threads == 2 and config.engine_options == {"delay_s": 0.1}
    with pytest.raises(NaiveConfigError, match="PLAUDIT_INTRA_OP_THREADS='two'"):
        NaiveConfig.from_env({"PLAUDIT_INTRA_OP_THREADS": "two"})
    with pytest.raises(NaiveConfigError, match="PLAUDIT_ENGINE_OPTIONS is not valid JSON"):
        NaiveConfig.from_env({"PLAUDIT_ENGINE_OPTIONS": "{"})
    assert not config.intra_op_spinning  # the service's default
    assert NaiveConfig.from_env({"PLAUDIT_INTRA_OP_SPINNING": "True"}).intra_op_spinning
    with pytest.raises(NaiveConfigError, match="PLAUDIT_INTRA_OP_SPINNING='sometimes'"):
        NaiveConfig.from_env({"PLAUDIT_INTRA_OP_SPINNING": "sometimes"})


def test_onnx_options_default_to_ort_defaults_and_refuse_unknown_values() -> None:
    assert NaiveConfig.from_env({}).onnx_options == "ort-defaults"
    assert NaiveConfig.from_env({"PLAUDIT_NAIVE_ONNX_OPTIONS": "Plaudit"}).onnx_options == "plaudit"
    with pytest.raises(NaiveConfigError, match="PLAUDIT_NAIVE_ONNX_OPTIONS='tuned'.*ort-defaults, plaudit"):
        NaiveConfig.from_env({"PLAUDIT_NAIVE_ONNX_OPTIONS": "tuned"})


@pytest.mark.parametrize("onnx_options", ["ort-defaults", "plaudit"])
def test_naive_engine_opens_the_stored_file_with_the_chosen_session_options(
    trained_store: Path, onnx_options: str
) -> None:
    config = NaiveConfig(store_dir=str(trained_store), model="tiny", onnx_options=onnx_options)
    scorer = load_configured_scorer(config)
    try:
        options = scorer._session.get_session_options()  # type: ignore[attr-defined]
        try:  # Plaudit's options set spinning explicitly (to the service's choice)
            tuned = options.get_session_config_entry("session.intra_op.allow_spinning") in ("0", "1")
        except RuntimeError:  # ORT's defaults carry no such entry
            tuned = False
        assert tuned == (onnx_options == "plaudit")
        # Either way it is the same model: the same scores as the service's engine.
        from model_store.loading import load_scorer
        from model_store.store import ModelStore

        pairs = [TextPair(**it) for it in ITEMS]
        expected = load_scorer(ModelStore(trained_store).resolve("tiny")).score(pairs)
        assert scorer.score(pairs) == pytest.approx(expected, abs=1e-5)
    finally:
        scorer.close()


def test_serves_a_stored_onnx_model_with_the_same_scores_as_in_process(trained_store: Path) -> None:
    from model_store.loading import load_scorer
    from model_store.store import ModelStore

    app = create_naive_app(store_dir=str(trained_store), model_ref="tiny", engine="onnx", environ={})
    with TestClient(app) as client:
        body = client.post("/v1/score", json={"items": ITEMS}).json()
    in_process = load_scorer(ModelStore(trained_store).resolve("tiny"))
    expected = in_process.score([TextPair(**it) for it in ITEMS])
    assert body["model"] == {"name": "tiny", "version": "1"}
    assert body["scores"] == pytest.approx([float(s) for s in expected], abs=1e-5)
